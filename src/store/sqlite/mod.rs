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
//!
//! `writer` runs the group commit, `write` and `read` hold the SQL of each side, `schema`
//! the tables, `prune` retention and erasure.

mod directory;
mod prune;
mod read;
mod schema;
mod stacks;
mod write;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use self::writer::{Msg, Reply, Req, Writer};
use super::{Applied, Outcome, StoreError};
use crate::address::Address;
use crate::config::StoreConfig;
use crate::directory::{BookEntry, Change, Table};
use crate::message::SmsInfo;
use crate::message::{Envelope, IdGen, MsgId, RecipientId, State, StatusReport};

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Msg>,
    readers: deadpool::unmanaged::Pool<Connection>,
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
        schema::create(&conn)?;
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

    pub async fn write_directory(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        match self.call(Req::Directory(changes)).await? {
            Reply::Unit => Ok(()),
            _ => Err(mismatch()),
        }
    }

    pub async fn put_book_entry(&self, e: BookEntry) -> Result<bool, StoreError> {
        match self.call(Req::BookEntry(e)).await? {
            Reply::Existed(b) => Ok(b),
            _ => Err(mismatch()),
        }
    }

    pub async fn directory_rows(&self) -> Result<Vec<(Table, String, String)>, StoreError> {
        self.read(directory::rows).await
    }

    pub async fn app_messages(
        &self,
        user: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<crate::store::StackEntry>, StoreError> {
        let user = user.to_string();
        self.read(move |c| stacks::after(c, &user, since, limit))
            .await
    }

    pub async fn address_book(&self, owner: &str) -> Result<Vec<BookEntry>, StoreError> {
        let owner = owner.to_string();
        self.read(move |c| directory::book(c, &owner)).await
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
        self.read(move |c| read::load_envelope(c, id)).await
    }

    pub async fn reports(&self, id: MsgId) -> Result<Vec<StatusReport>, StoreError> {
        self.read(move |c| read::reports(c, id)).await
    }

    pub async fn reply_party(&self, ext: u32) -> Result<Option<String>, StoreError> {
        self.read(move |c| read::reply_party(c, ext)).await
    }

    /// The recipient a receipt's correlator names, if any.
    pub async fn find_correlator(
        &self,
        correlator: &str,
    ) -> Result<Option<CorrelatorHit>, StoreError> {
        let correlator = correlator.to_string();
        self.read(move |c| read::find_correlator(c, &correlator))
            .await
    }

    pub async fn state_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(read::state_counts).await
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
