//! The embedded SQLite backend: one file in WAL mode.
//!
//! All writes go through one writer thread that owns the write connection. It takes the
//! first waiting request, then every other request already queued (up to `batch_max`), runs
//! them in one transaction and commits once: one fsync for the whole batch (group commit).
//! Callers are answered only after the commit, so an answer means "durable". If one request
//! in a batch fails, the batch is rolled back and its requests are run again one by one, so
//! a bad request cannot fail its neighbours.
//!
//! Reads use a small pool of read-only connections on blocking threads; WAL lets them run
//! beside the writer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{Applied, Outcome, StoreError};
use crate::address::Address;
use crate::config::StoreConfig;
use crate::content::SmsInfo;
use crate::content::sms::Encoding;
use crate::message::{
    Content, Envelope, IdGen, Kind, MailRcpt, MsgId, Recipient, RecipientId, ReportBody, State,
    StatusReport, now_ms,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    client TEXT NOT NULL,
    client_ref TEXT,
    report_to TEXT,
    content TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS recipients (
    msg_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    remote_id TEXT,
    reported TEXT,
    updated_at INTEGER NOT NULL,
    sms_encoding TEXT,
    sms_parts INTEGER,
    correlator TEXT,
    PRIMARY KEY (msg_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipients_due ON recipients (next_attempt_at) WHERE state = 'retry';
CREATE INDEX IF NOT EXISTS recipients_unsent ON recipients (state) WHERE state IN ('queued', 'held');
CREATE TABLE IF NOT EXISTS reports (
    msg_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_msg ON reports (msg_id);
CREATE TABLE IF NOT EXISTS delay_watch (
    msg_id INTEGER PRIMARY KEY,
    due_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reply_routes (
    ext INTEGER PRIMARY KEY,
    party TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
";

enum Req {
    Insert(Arc<Envelope>),
    Apply(RecipientId, Outcome, Option<SmsInfo>),
    ClaimDue(i64, usize),
    Recover,
    ReplyExt(String),
    DelayReports(i64, usize),
    Prune(Option<i64>, Option<i64>, usize),
    Erase(Address),
}

enum Reply {
    Unit,
    Applied(Applied),
    Ids(Vec<RecipientId>),
    Count(usize),
    Ext(u32),
    Deleted(super::retention::Deleted),
}

enum Msg {
    Job(Req, oneshot::Sender<Result<Reply, StoreError>>),
    Shutdown(oneshot::Sender<()>),
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Msg>,
    readers: deadpool::unmanaged::Pool<Connection>,
}

struct Writer {
    conn: Connection,
    ids: Arc<IdGen>,
    report_ttl_ms: i64,
}

impl SqliteStore {
    /// Opens the file (creating it and its folder), sets WAL and the schema, and starts the
    /// writer thread. `ids` names the report envelopes the store creates; `report_ttl_ms`
    /// is their time to live.
    pub fn open(cfg: &StoreConfig, ids: Arc<IdGen>) -> Result<SqliteStore, StoreError> {
        Self::open_with_ttl(cfg, ids, 86_400_000)
    }

    pub fn open_with_ttl(
        cfg: &StoreConfig,
        ids: Arc<IdGen>,
        report_ttl_ms: i64,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = cfg.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(&cfg.path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", cfg.synchronous.to_uppercase())?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        add_sms_columns(&conn)?;
        super::sqlite_prune::add_columns(&conn)?;
        let mut readers = Vec::with_capacity(cfg.readers);
        for _ in 0..cfg.readers.max(1) {
            readers.push(open_reader(&cfg.path)?);
        }
        let (tx, rx) = mpsc::channel(cfg.writer_queue.max(1));
        let writer = Writer {
            conn,
            ids,
            report_ttl_ms,
        };
        let batch_max = cfg.batch_max.max(1);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx, batch_max))
            .map_err(|e| StoreError::Setup(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            tx,
            readers: deadpool::unmanaged::Pool::from(readers),
        })
    }

    async fn call(&self, req: Req) -> Result<Reply, StoreError> {
        let (tx, rx) = oneshot::channel();
        metrics::gauge!("switchboard_store_writer_queue_depth")
            .set((self.tx.max_capacity() - self.tx.capacity()) as f64);
        self.tx
            .send(Msg::Job(req, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn insert(&self, env: Arc<Envelope>) -> Result<(), StoreError> {
        match self.call(Req::Insert(env)).await? {
            Reply::Unit => Ok(()),
            _ => Err(mismatch()),
        }
    }

    pub async fn apply(&self, rid: RecipientId, o: Outcome) -> Result<Applied, StoreError> {
        self.apply_sms(rid, o, None).await
    }

    pub async fn apply_sms(
        &self,
        rid: RecipientId,
        o: Outcome,
        sms: Option<SmsInfo>,
    ) -> Result<Applied, StoreError> {
        match self.call(Req::Apply(rid, o, sms)).await? {
            Reply::Applied(a) => Ok(a),
            _ => Err(mismatch()),
        }
    }

    pub async fn claim_due(&self, now: i64, limit: usize) -> Result<Vec<RecipientId>, StoreError> {
        match self.call(Req::ClaimDue(now, limit)).await? {
            Reply::Ids(v) => Ok(v),
            _ => Err(mismatch()),
        }
    }

    pub async fn recover(&self) -> Result<usize, StoreError> {
        match self.call(Req::Recover).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    pub async fn delay_reports(&self, now: i64, limit: usize) -> Result<usize, StoreError> {
        match self.call(Req::DelayReports(now, limit)).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    pub async fn reply_ext(&self, party: &str) -> Result<u32, StoreError> {
        match self.call(Req::ReplyExt(party.to_string())).await? {
            Reply::Ext(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    pub async fn prune(
        &self,
        finished_before: Option<i64>,
        idle_before: Option<i64>,
        batch: usize,
    ) -> Result<super::retention::Deleted, StoreError> {
        match self
            .call(Req::Prune(finished_before, idle_before, batch))
            .await?
        {
            Reply::Deleted(d) => Ok(d),
            _ => Err(mismatch()),
        }
    }

    pub async fn erase(&self, addr: &Address) -> Result<super::retention::Deleted, StoreError> {
        match self.call(Req::Erase(addr.clone())).await? {
            Reply::Deleted(d) => Ok(d),
            _ => Err(mismatch()),
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.readers.get().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || f(&conn))
            .await
            .map_err(|e| StoreError::Setup(format!("reader task failed: {e}")))?
    }

    pub async fn load(&self, id: MsgId) -> Result<Option<Envelope>, StoreError> {
        self.read(move |c| load_envelope(c, id)).await
    }

    pub async fn reports(&self, id: MsgId) -> Result<Vec<StatusReport>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT idx, status, state, received_at FROM reports WHERE msg_id = ?1 ORDER BY rowid",
            )?;
            let rows = st.query_map([id.0 as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (idx, status, state, at) = row?;
                out.push(StatusReport {
                    recipient: idx as u32,
                    status,
                    state: State::parse(&state).ok_or_else(|| bad_state(&state))?,
                    received_at: at,
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn reply_party(&self, ext: u32) -> Result<Option<String>, StoreError> {
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT party FROM reply_routes WHERE ext = ?1")?
                    .query_row([ext], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    /// The recipient a receipt's correlator names, if any.
    pub async fn find_correlator(
        &self,
        correlator: &str,
    ) -> Result<Option<CorrelatorHit>, StoreError> {
        let correlator = correlator.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT msg_id, idx, address, state, attempts, remote_id
                     FROM recipients WHERE correlator = ?1",
                )?
                .query_row([correlator], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .optional()?;
            let Some((msg, idx, address, state, attempts, remote_id)) = row else {
                return Ok(None);
            };
            Ok(Some(CorrelatorHit {
                rid: RecipientId {
                    msg: MsgId(msg as u64),
                    idx: idx as u32,
                },
                address: Address::parse_stored(&address)
                    .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?,
                state: State::parse(&state).ok_or_else(|| bad_state(&state))?,
                attempts: u32::try_from(attempts).unwrap_or(0),
                remote_id,
            }))
        })
        .await
    }

    pub async fn state_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT state, COUNT(*) FROM recipients GROUP BY state")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (s, n) = row?;
                out.insert(s, n as u64);
            }
            Ok(out)
        })
        .await
    }

    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What the store knows of the recipient a correlator names.
#[derive(Clone, Debug)]
pub struct CorrelatorHit {
    pub rid: RecipientId,
    pub address: Address,
    pub state: State,
    pub attempts: u32,
    pub remote_id: Option<String>,
}

fn mismatch() -> StoreError {
    StoreError::Corrupt("writer answered with the wrong kind of reply".into())
}

fn bad_state(s: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown state {s:?}"))
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(c)
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>, batch_max: usize) {
        let mut batch: Vec<(Req, oneshot::Sender<Result<Reply, StoreError>>)> =
            Vec::with_capacity(batch_max);
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        while shutdown.is_none() {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Job(req, tx) => batch.push((req, tx)),
                    Msg::Shutdown(tx) => {
                        shutdown = Some(tx);
                        break;
                    }
                }
                if batch.len() >= batch_max {
                    break;
                }
                next = rx.try_recv().ok();
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
        }
        // Answer whatever is still queued after a shutdown request, then stop.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Job(req, tx) = msg {
                batch.push((req, tx));
                if batch.len() >= batch_max {
                    self.commit_batch(&mut batch);
                }
            }
        }
        if !batch.is_empty() {
            self.commit_batch(&mut batch);
        }
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        if let Some(tx) = shutdown {
            let _ = tx.send(());
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<(Req, oneshot::Sender<Result<Reply, StoreError>>)>) {
        let started = Instant::now();
        let n = batch.len();
        match self.run_in_tx(batch.iter().map(|(r, _)| r)) {
            Ok(replies) => {
                for ((_, tx), reply) in batch.drain(..).zip(replies) {
                    let _ = tx.send(Ok(reply));
                }
            }
            Err(_) if n > 1 => {
                // Isolate the failing request: each on its own.
                for (req, tx) in batch.drain(..) {
                    let r = self
                        .run_in_tx(std::iter::once(&req))
                        .and_then(|mut v| v.pop().ok_or_else(mismatch));
                    let _ = tx.send(r);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "store commit failed");
                for (_, tx) in batch.drain(..) {
                    let _ = tx.send(Err(StoreError::Corrupt(msg.clone())));
                }
            }
        }
        metrics::histogram!("switchboard_store_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("switchboard_store_commit_batch_size").record(n as f64);
        metrics::counter!("switchboard_store_writes_total").increment(n as u64);
    }

    fn run_in_tx<'a>(
        &mut self,
        reqs: impl Iterator<Item = &'a Req>,
    ) -> Result<Vec<Reply>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut replies = Vec::new();
        for req in reqs {
            replies.push(exec(&tx, req, &self.ids, self.report_ttl_ms)?);
        }
        tx.commit()?;
        Ok(replies)
    }
}

fn exec(c: &Connection, req: &Req, ids: &IdGen, report_ttl_ms: i64) -> Result<Reply, StoreError> {
    match req {
        Req::Insert(env) => {
            insert_envelope(c, env)?;
            Ok(Reply::Unit)
        }
        Req::Apply(rid, o, sms) => {
            let a = apply(c, *rid, o, ids, report_ttl_ms)?;
            // A dispatch outcome's SMS shape is kept even when a receipt made the
            // recipient final first.
            let keep = match a {
                Applied::Updated { .. } => true,
                Applied::Ignored => o.status.is_none(),
                Applied::Unknown => false,
            };
            if let (true, Some(info)) = (keep, sms) {
                record_sms(c, *rid, *info)?;
            }
            Ok(Reply::Applied(a))
        }
        Req::ClaimDue(now, limit) => {
            let mut st = c.prepare_cached(
                "SELECT msg_id, idx FROM recipients WHERE state = 'retry' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at LIMIT ?2",
            )?;
            let ids: Vec<RecipientId> = st
                .query_map(params![now, *limit as i64], |r| {
                    Ok(RecipientId {
                        msg: MsgId(r.get::<_, i64>(0)? as u64),
                        idx: r.get::<_, i64>(1)? as u32,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut up = c.prepare_cached(
                "UPDATE recipients SET state = 'queued', updated_at = ?3 WHERE msg_id = ?1 AND idx = ?2",
            )?;
            let t = now_ms();
            for id in &ids {
                up.execute(params![id.msg.0 as i64, id.idx, t])?;
            }
            Ok(Reply::Ids(ids))
        }
        Req::DelayReports(now, limit) => {
            delay_reports(c, *now, *limit, ids, report_ttl_ms).map(Reply::Count)
        }
        Req::Recover => {
            let n = c.execute(
                "UPDATE recipients SET state = 'retry', next_attempt_at = 0
                 WHERE state IN ('queued', 'held')",
                [],
            )?;
            Ok(Reply::Count(n))
        }
        Req::ReplyExt(party) => {
            let found: Option<i64> = c
                .prepare_cached("SELECT ext FROM reply_routes WHERE party = ?1")?
                .query_row([party], |r| r.get(0))
                .optional()?;
            let now = now_ms();
            if let Some(ext) = found {
                // In use: the retention job keeps it.
                c.prepare_cached("UPDATE reply_routes SET used_at = ?2 WHERE ext = ?1")?
                    .execute(params![ext, now])?;
                return Ok(Reply::Ext(ext as u32));
            }
            let next = super::sqlite_prune::next_reply_ext(c)?;
            c.execute(
                "INSERT INTO reply_routes (ext, party, created_at, used_at) VALUES (?1, ?2, ?3, ?3)",
                params![next, party, now],
            )?;
            Ok(Reply::Ext(next as u32))
        }
        Req::Prune(finished, idle, batch) => {
            super::sqlite_prune::prune(c, *finished, *idle, *batch).map(Reply::Deleted)
        }
        Req::Erase(addr) => super::sqlite_prune::erase(c, addr).map(Reply::Deleted),
    }
}

fn insert_envelope(c: &Connection, env: &Envelope) -> Result<(), StoreError> {
    let content = serde_json::to_string(&env.content)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode content: {e}")))?;
    c.prepare_cached(
        "INSERT INTO messages (id, kind, origin, client, client_ref, report_to, content, created_at, expires_at, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        env.id.0 as i64,
        env.kind.as_str(),
        env.origin.to_string(),
        env.client,
        env.client_ref,
        env.report_to.as_ref().map(|a| a.to_string()),
        content,
        env.created_at,
        env.expires_at,
        env.note,
    ])?;
    let mut st = c.prepare_cached(
        "INSERT INTO recipients (msg_id, idx, address, state, attempts, next_attempt_at, last_error, remote_id, updated_at, correlator)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for r in &env.recipients {
        st.execute(params![
            env.id.0 as i64,
            r.idx,
            r.address.to_string(),
            r.state.as_str(),
            r.attempts,
            r.next_attempt_at,
            r.last_error,
            r.remote_id,
            env.created_at,
            r.correlator,
        ])?;
    }
    if let (Some(at), Some(_)) = (
        env.content.mail.as_ref().and_then(|m| m.delay_report_at),
        &env.report_to,
    ) {
        c.prepare_cached("INSERT OR REPLACE INTO delay_watch (msg_id, due_at) VALUES (?1, ?2)")?
            .execute(params![env.id.0 as i64, at])?;
    }
    Ok(())
}

/// Whether the origin wants to hear about this outcome. A mail sender said so per recipient
/// (DSN `NOTIFY`, kept in the content), so no report is made that would only be dropped;
/// every other origin hears of every final outcome.
fn wants_report(
    c: &Connection,
    rid: RecipientId,
    report_to: &str,
    state: State,
) -> Result<bool, StoreError> {
    if !report_to.starts_with("mail:") {
        return Ok(true);
    }
    let rcpt: Option<String> = c
        .prepare_cached(
            "SELECT json_extract(content, '$.mail.rcpts[' || ?2 || ']') FROM messages WHERE id = ?1",
        )?
        .query_row(params![rid.msg.0 as i64, rid.idx], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(r) = rcpt.and_then(|j| serde_json::from_str::<MailRcpt>(&j).ok()) else {
        return Ok(true);
    };
    Ok(match state {
        State::Delivered | State::Sent => r.notify_success,
        State::Failed | State::Expired => r.notify_failure,
        _ => true,
    })
}

/// A recipient still unsent: idx, address, state, last error, report_to, client_ref.
type DelayRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `delayed` reports: for each message whose delay-report time has come, every recipient
/// still unsent (and not reported yet) gets a report envelope in its current state, once.
fn delay_reports(
    c: &Connection,
    now: i64,
    limit: usize,
    ids: &IdGen,
    report_ttl_ms: i64,
) -> Result<usize, StoreError> {
    // Ids are time-ordered and the wait is one setting, so id order is due order: read the
    // oldest rows and stop at the first that is not due (no index on due_at to maintain).
    let oldest: Vec<(i64, i64)> = c
        .prepare_cached("SELECT msg_id, due_at FROM delay_watch ORDER BY msg_id LIMIT ?1")?
        .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let due: Vec<i64> = oldest
        .into_iter()
        .take_while(|&(_, at)| at <= now)
        .map(|(id, _)| id)
        .collect();
    let mut made = 0;
    for msg in due {
        c.prepare_cached("DELETE FROM delay_watch WHERE msg_id = ?1")?
            .execute([msg])?;
        let rows: Vec<DelayRow> = c
            .prepare_cached(
                "SELECT r.idx, r.address, r.state, r.last_error, m.report_to, m.client_ref
                 FROM recipients r JOIN messages m ON m.id = r.msg_id
                 WHERE r.msg_id = ?1 AND r.state IN ('queued', 'retry', 'held')
                   AND r.reported IS NULL AND m.kind = 'message'",
            )?
            .query_map([msg], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (idx, address, state, last_error, report_to, client_ref) in rows {
            let Some(to) = report_to else { continue };
            let target = Address::parse_stored(&to)
                .map_err(|e| StoreError::Corrupt(format!("stored report_to: {e}")))?;
            let origin = Address::parse_stored(&address)
                .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?;
            let state = State::parse(&state).ok_or_else(|| bad_state(&state))?;
            let mut rcpt = Recipient::new(0, target);
            rcpt.state = State::Retry;
            let env = Envelope {
                id: ids.next(),
                kind: Kind::Report,
                origin,
                client: "switchboard".into(),
                client_ref: None,
                report_to: None,
                recipients: vec![rcpt],
                content: Content {
                    report: Some(ReportBody {
                        message_id: MsgId(msg as u64).to_string(),
                        client_ref,
                        recipient: address,
                        state,
                        detail: last_error,
                        at_ms: now,
                    }),
                    ..Content::default()
                },
                created_at: now,
                expires_at: now + report_ttl_ms,
                note: None,
            };
            insert_envelope(c, &env)?;
            c.prepare_cached(
                "UPDATE recipients SET reported = 'delayed' WHERE msg_id = ?1 AND idx = ?2",
            )?
            .execute(params![msg, idx])?;
            made += 1;
        }
    }
    Ok(made)
}

fn apply(
    c: &Connection,
    rid: RecipientId,
    o: &Outcome,
    ids: &IdGen,
    report_ttl_ms: i64,
) -> Result<Applied, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT r.state, r.reported, r.address, m.kind, m.report_to, m.client_ref
             FROM recipients r JOIN messages m ON m.id = r.msg_id
             WHERE r.msg_id = ?1 AND r.idx = ?2",
        )?
        .query_row(params![rid.msg.0 as i64, rid.idx], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?;
    let Some((cur, reported, address, kind, report_to, client_ref)) = row else {
        return Ok(Applied::Unknown);
    };
    let cur = State::parse(&cur).ok_or_else(|| bad_state(&cur))?;
    if cur.is_final() && o.status.is_none() {
        // A dispatch outcome for a recipient a receipt already made final (the receipt
        // came before the send's answer was recorded): the state stays, but the attempt
        // and the SDP's id are kept.
        c.prepare_cached(
            "UPDATE recipients SET attempts = MAX(attempts, ?3), remote_id = COALESCE(remote_id, ?4)
             WHERE msg_id = ?1 AND idx = ?2",
        )?
        .execute(params![rid.msg.0 as i64, rid.idx, o.attempts, o.remote_id])?;
        return Ok(Applied::Ignored);
    }
    if cur.is_final() || (reported.as_deref() == Some(o.state.as_str()) && o.status.is_some()) {
        return Ok(Applied::Ignored);
    }
    let now = now_ms();
    c.prepare_cached(
        "UPDATE recipients SET state = ?3, attempts = MAX(attempts, ?4), next_attempt_at = ?5,
             last_error = COALESCE(?6, last_error), remote_id = COALESCE(?7, remote_id), updated_at = ?8
         WHERE msg_id = ?1 AND idx = ?2",
    )?
    .execute(params![
        rid.msg.0 as i64,
        rid.idx,
        o.state.as_str(),
        o.attempts,
        o.next_attempt_at,
        o.last_error,
        o.remote_id,
        now,
    ])?;
    if let Some(status) = &o.status {
        c.prepare_cached(
            "INSERT INTO reports (msg_id, idx, status, state, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![rid.msg.0 as i64, rid.idx, status, o.state.as_str(), now])?;
    }
    let mut report = None;
    if o.final_word
        && Kind::parse(&kind) == Kind::Message
        && let Some(to) = report_to
        && wants_report(c, rid, &to, o.state)?
    {
        let origin = Address::parse_stored(&address)
            .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?;
        let target = Address::parse_stored(&to)
            .map_err(|e| StoreError::Corrupt(format!("stored report_to: {e}")))?;
        let id = ids.next();
        let mut rcpt = Recipient::new(0, target);
        rcpt.state = State::Retry;
        let env = Envelope {
            id,
            kind: Kind::Report,
            origin,
            client: "switchboard".into(),
            client_ref: None,
            report_to: None,
            recipients: vec![rcpt],
            content: Content {
                text: String::new(),
                subject: None,
                parts: Vec::new(),
                report: Some(ReportBody {
                    message_id: rid.msg.to_string(),
                    client_ref,
                    recipient: address,
                    state: o.state,
                    detail: o.status.clone().or_else(|| o.last_error.clone()),
                    at_ms: now,
                }),
                mail: None,
            },
            created_at: now,
            expires_at: now + report_ttl_ms,
            note: None,
        };
        insert_envelope(c, &env)?;
        c.prepare_cached("UPDATE recipients SET reported = ?3 WHERE msg_id = ?1 AND idx = ?2")?
            .execute(params![rid.msg.0 as i64, rid.idx, o.state.as_str()])?;
        report = Some(id);
    }
    Ok(Applied::Updated { report })
}

/// Databases made before the SMS columns existed get them (empty) at open.
fn add_sms_columns(c: &Connection) -> Result<(), StoreError> {
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('recipients')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !cols.iter().any(|n| n == "sms_encoding") {
        c.execute_batch("ALTER TABLE recipients ADD COLUMN sms_encoding TEXT")?;
    }
    if !cols.iter().any(|n| n == "sms_parts") {
        c.execute_batch("ALTER TABLE recipients ADD COLUMN sms_parts INTEGER")?;
    }
    if !cols.iter().any(|n| n == "correlator") {
        c.execute_batch("ALTER TABLE recipients ADD COLUMN correlator TEXT")?;
    }
    c.execute_batch(
        "CREATE INDEX IF NOT EXISTS recipients_correlator ON recipients (correlator)
         WHERE correlator IS NOT NULL",
    )?;
    Ok(())
}

/// Records how a recipient's text went out as SMS (in the outcome's transaction).
fn record_sms(c: &Connection, rid: RecipientId, info: SmsInfo) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE recipients SET sms_encoding = ?3, sms_parts = ?4 WHERE msg_id = ?1 AND idx = ?2",
    )?
    .execute(params![
        rid.msg.0 as i64,
        rid.idx,
        info.encoding.as_str(),
        info.parts
    ])?;
    Ok(())
}

fn load_envelope(c: &Connection, id: MsgId) -> Result<Option<Envelope>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT kind, origin, client, client_ref, report_to, content, created_at, expires_at, note
             FROM messages WHERE id = ?1",
        )?
        .query_row([id.0 as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })
        .optional()?;
    let Some((kind, origin, client, client_ref, report_to, content, created_at, expires_at, note)) =
        row
    else {
        return Ok(None);
    };
    let origin =
        Address::parse_stored(&origin).map_err(|e| StoreError::Corrupt(format!("origin: {e}")))?;
    let content: Content = serde_json::from_str(&content)
        .map_err(|e| StoreError::Corrupt(format!("content of {id}: {e}")))?;
    let mut st = c.prepare_cached(
        "SELECT idx, address, state, attempts, next_attempt_at, last_error, remote_id,
                sms_encoding, sms_parts, correlator
         FROM recipients WHERE msg_id = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map([id.0 as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<i64>>(8)?,
            r.get::<_, Option<String>>(9)?,
        ))
    })?;
    let mut recipients = Vec::new();
    for row in rows {
        let (
            idx,
            address,
            state,
            attempts,
            next_attempt_at,
            last_error,
            remote_id,
            enc,
            parts,
            correlator,
        ) = row?;
        let sms = match (enc.as_deref().and_then(Encoding::parse), parts) {
            (Some(encoding), Some(parts)) => Some(SmsInfo {
                encoding,
                parts: u32::try_from(parts).unwrap_or(0),
            }),
            _ => None,
        };
        recipients.push(Recipient {
            idx: idx as u32,
            address: Address::parse_stored(&address)
                .map_err(|e| StoreError::Corrupt(format!("recipient of {id}: {e}")))?,
            state: State::parse(&state).ok_or_else(|| bad_state(&state))?,
            attempts: attempts as u32,
            next_attempt_at,
            last_error,
            remote_id,
            sms,
            correlator,
        });
    }
    Ok(Some(Envelope {
        id,
        kind: Kind::parse(&kind),
        origin,
        client,
        client_ref,
        report_to: report_to
            .map(|a| Address::parse_stored(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("report_to of {id}: {e}")))?,
        recipients,
        content,
        created_at,
        expires_at,
        note,
    }))
}
