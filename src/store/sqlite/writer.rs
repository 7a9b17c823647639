//! The writer thread: takes the queued write requests, runs them in one transaction and
//! commits once (group commit), answering each caller after the commit.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{directory, mismatch, prune, write};
use crate::address::Address;
use crate::directory::{BookEntry, Change};
use crate::message::SmsInfo;
use crate::message::{Envelope, IdGen, RecipientId};
use crate::store::{Applied, Outcome, StoreError, retention::Deleted};

/// One write request; each runs inside a batch's transaction.
pub(super) enum Req {
    Insert(Arc<Envelope>),
    Apply(RecipientId, Outcome, Option<SmsInfo>),
    ClaimDue(i64, usize),
    Recover,
    ReplyExt(String),
    DelayReports(i64, usize),
    Prune(Option<i64>, Option<i64>, usize),
    Erase(Address),
    Directory(Vec<Change>),
    BookEntry(BookEntry),
}

/// The answer to a [`Req`], sent after the commit.
pub(super) enum Reply {
    Unit,
    Applied(Applied),
    Ids(Vec<RecipientId>),
    Count(usize),
    Ext(u32),
    Deleted(Deleted),
    Existed(bool),
}

/// What the writer thread receives.
pub(super) enum Msg {
    Job(Req, oneshot::Sender<Result<Reply, StoreError>>),
    Shutdown(oneshot::Sender<()>),
}

/// The writer thread's state: the one write connection.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) ids: Arc<IdGen>,
    pub(super) report_ttl_ms: i64,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Msg>, batch_max: usize) {
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
            write::insert_envelope(c, env)?;
            Ok(Reply::Unit)
        }
        Req::Apply(rid, o, sms) => {
            let a = write::apply(c, *rid, o, ids, report_ttl_ms)?;
            // A dispatch outcome's SMS shape is kept even when a receipt made the
            // recipient final first.
            let keep = match a {
                Applied::Updated { .. } => true,
                Applied::Ignored => o.status.is_none(),
                Applied::Unknown => false,
            };
            if let (true, Some(info)) = (keep, sms) {
                write::record_sms(c, *rid, *info)?;
            }
            Ok(Reply::Applied(a))
        }
        Req::ClaimDue(now, limit) => write::claim_due(c, *now, *limit).map(Reply::Ids),
        Req::DelayReports(now, limit) => {
            write::delay_reports(c, *now, *limit, ids, report_ttl_ms).map(Reply::Count)
        }
        Req::Recover => write::recover(c).map(Reply::Count),
        Req::ReplyExt(party) => write::reply_ext(c, party).map(Reply::Ext),
        Req::Prune(finished, idle, batch) => {
            prune::prune(c, *finished, *idle, *batch).map(Reply::Deleted)
        }
        Req::Erase(addr) => prune::erase(c, addr).map(Reply::Deleted),
        Req::Directory(changes) => directory::write(c, changes).map(|()| Reply::Unit),
        Req::BookEntry(e) => directory::put_book_entry(c, e).map(Reply::Existed),
    }
}
