//! The durable store: the one source of truth for messages, recipients, status reports and
//! reply routes. The queues between stages are only a cache of it.
//!
//! Guarantees every backend keeps:
//! - `insert` returns only once the envelope is committed (the caller may then acknowledge);
//!   concurrent writes are folded into one commit (group commit).
//! - A recipient's state only moves forward: once final (delivered, failed, expired) later
//!   outcomes and receipts are ignored, so a late dispatch result cannot undo a receipt, and
//!   a duplicate receipt creates no second report.
//! - `recover` turns everything that was not sent when the process stopped into work that
//!   is due now, so a crash loses nothing that was acknowledged (at-least-once).
//!
//! The stages see only [`Store`]; a backend is a variant of it (SQLite now; a PostgreSQL
//! backend can be added as another variant without touching the stages).

pub mod config;
pub mod retention;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use sqlite::{CorrelatorHit, SqliteStore};

use config::{Backend, StoreConfig};

use crate::directory::{BookEntry, Change, Table};
use crate::message::{Envelope, MsgId, RecipientId, State, StatusReport};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the store is shut down")]
    Closed,
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Setup(String),
}

/// The result of one delivery attempt or status report, to be applied to a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    pub attempts: u32,
    /// When the next attempt is due (ms), for `State::Retry`.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
    /// Whether this is the last word to expect (a report goes back to the origin).
    pub final_word: bool,
    /// The network's word for it (`DeliveredToTerminal`), stored as a status report.
    pub status: Option<String>,
}

/// What applying an outcome did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The recipient was updated; `report` is the status report envelope created for the
    /// origin, if any (already stored, due now).
    Updated { report: Option<MsgId> },
    /// The recipient was already final (or already reported in this state): nothing changed.
    Ignored,
    /// No such recipient.
    Unknown,
}

/// One app message on a user's message stack, as `GET /v1/users/{id}/app-messages`
/// gives it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StackEntry {
    /// 16 hex digits: milliseconds and a sequence, increasing.
    pub id: String,
    pub app: String,
    pub name: String,
    pub kind: crate::message::AppKind,
    pub mode: crate::message::AppMode,
    pub content: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at_ms: i64,
}

impl StackEntry {
    pub fn of(env: &Envelope, app: &crate::message::AppMessage) -> StackEntry {
        StackEntry {
            id: env.id.to_string(),
            app: app.app.clone(),
            name: app.name.clone(),
            kind: app.kind,
            mode: app.mode,
            content: app.content.clone(),
            text: env.content.text.clone(),
            by: app.by.clone(),
            at_ms: env.created_at,
        }
    }
}

/// The store, whichever backend is configured.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens (creating if needed) the configured backend. `ids` names the report
    /// envelopes the store creates; `report_ttl_ms` is their time to live.
    pub fn open(
        cfg: &StoreConfig,
        ids: std::sync::Arc<crate::message::IdGen>,
        report_ttl_ms: i64,
    ) -> Result<Store, StoreError> {
        match &cfg.backend {
            Backend::Sqlite => Ok(Store::Sqlite(SqliteStore::open_with_ttl(
                cfg,
                ids,
                report_ttl_ms,
            )?)),
            Backend::Other(other) => Err(StoreError::Setup(format!(
                "unknown store backend {other:?}"
            ))),
        }
    }

    /// Commits a new envelope; returns once it is durable.
    pub async fn insert(&self, env: std::sync::Arc<Envelope>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert(env).await,
        }
    }

    /// Applies a dispatch outcome or a status report to one recipient.
    pub async fn apply(&self, rid: RecipientId, outcome: Outcome) -> Result<Applied, StoreError> {
        match self {
            Store::Sqlite(s) => s.apply(rid, outcome).await,
        }
    }

    /// [`Store::apply`], also recording how the recipient's text went out as SMS.
    pub async fn apply_sms(
        &self,
        rid: RecipientId,
        outcome: Outcome,
        sms: Option<crate::message::SmsInfo>,
    ) -> Result<Applied, StoreError> {
        match self {
            Store::Sqlite(s) => s.apply_sms(rid, outcome, sms).await,
        }
    }

    /// Marks up to `limit` recipients whose next attempt is due as taken and returns them.
    pub async fn claim_due(&self, now: i64, limit: usize) -> Result<Vec<RecipientId>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_due(now, limit).await,
        }
    }

    /// Start-up: every recipient that was not sent becomes due now. Returns how many.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.recover().await,
        }
    }

    /// One envelope with all its recipients.
    pub async fn load(&self, id: MsgId) -> Result<Option<Envelope>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load(id).await,
        }
    }

    /// The status reports received for a message's recipients.
    pub async fn reports(&self, id: MsgId) -> Result<Vec<StatusReport>, StoreError> {
        match self {
            Store::Sqlite(s) => s.reports(id).await,
        }
    }

    /// Creates the `delayed` reports that are due (mail origins that asked for them, whose
    /// recipients are still unsent after the configured wait); each is made once, and the
    /// due times are in the store, so they survive restarts. Returns how many were made.
    pub async fn delay_reports(&self, now: i64, limit: usize) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.delay_reports(now, limit).await,
        }
    }

    /// The reply-routing extension of an Internet-side party, created on first use.
    pub async fn reply_ext(&self, party: &str) -> Result<u32, StoreError> {
        match self {
            Store::Sqlite(s) => s.reply_ext(party).await,
        }
    }

    /// The Internet-side party behind a reply-routing extension.
    pub async fn reply_party(&self, ext: u32) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.reply_party(ext).await,
        }
    }

    /// One retention batch (see [`retention`]): finished messages created before
    /// `finished_before` (ms), reply routes unused since `idle_before`, `batch` of each at
    /// most.
    pub async fn prune(
        &self,
        finished_before: Option<i64>,
        idle_before: Option<i64>,
        batch: usize,
    ) -> Result<retention::Deleted, StoreError> {
        match self {
            Store::Sqlite(s) => s.prune(finished_before, idle_before, batch).await,
        }
    }

    /// Removes everything about one address (see [`retention`]).
    pub async fn erase(
        &self,
        addr: &crate::address::Address,
    ) -> Result<retention::Deleted, StoreError> {
        match self {
            Store::Sqlite(s) => s.erase(addr).await,
        }
    }

    /// The recipient an SDP correlator names (receipts), if any.
    pub async fn find_correlator(
        &self,
        correlator: &str,
    ) -> Result<Option<CorrelatorHit>, StoreError> {
        match self {
            Store::Sqlite(s) => s.find_correlator(correlator).await,
        }
    }

    /// Commits one directory change set (all or nothing); returns once it is durable.
    pub async fn write_directory(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.write_directory(changes).await,
        }
    }

    /// Every directory record, `(table, id, JSON)`.
    pub async fn directory_rows(&self) -> Result<Vec<(Table, String, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.directory_rows().await,
        }
    }

    /// Adds an entry to a user's address book, or updates the entry with its id; whether it
    /// was there before.
    pub async fn put_book_entry(&self, e: BookEntry) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.put_book_entry(e).await,
        }
    }

    /// A user's app messages with ids after `since`, oldest first, `limit` at most.
    pub async fn app_messages(
        &self,
        user: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<StackEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.app_messages(user, since, limit).await,
        }
    }

    /// A user's address book.
    pub async fn address_book(&self, owner: &str) -> Result<Vec<BookEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.address_book(owner).await,
        }
    }

    /// How many recipients are in each state.
    pub async fn state_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.state_counts().await,
        }
    }

    /// Flushes and stops the writer; later writes fail with `Closed`.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
        }
    }
}
