//! The port every outbound connector implements: a [`Sink`] delivers one recipient and
//! says whether it worked; a failure says in its type whether a retry makes sense. The
//! pipeline holds one sink per channel and names no protocol.

use futures::future::BoxFuture;

use super::Delivery;

/// Where the dispatch stage hands a recipient of its channel.
pub trait Sink: Send + Sync + 'static {
    /// For logs (`sdp`, `xmpp`, `im webhook`, ...).
    fn name(&self) -> &'static str;

    /// Deliveries at the sink at once.
    fn concurrency(&self) -> usize;

    /// A delivery that cannot be attempted now because its link is known to be down: why,
    /// and when to look again (ms). It waits in the store without spending an attempt.
    fn down(&self, _d: &Delivery) -> Option<(String, i64)> {
        None
    }

    /// Receipts for this sink's deliveries may arrive before `deliver` has returned (the
    /// SDP may report before it answers): the recipient is marked in flight meanwhile, so
    /// such a receipt is taken.
    fn early_receipts(&self) -> bool {
        false
    }

    /// One attempt.
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<Sent, SinkError>>;
}

/// A delivery the sink accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The peer's id for it (Parlay X `sendSmsResponse/result`), if it gave one.
    pub remote_id: Option<String>,
    /// No later report is to be expected: this is the last word on the recipient.
    pub final_word: bool,
}

/// Why a delivery did not work. The kind decides between retry and failure report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth another attempt later (timeouts, resets, 5xx, SVC0001); spends an attempt.
    #[error("temporary: {0}")]
    Transient(String),
    /// The peer could not be reached or said it is unavailable (refused connection, HTTP 503
    /// or 429, clamd or rspamd down under `fail_closed`): nothing was tried with this
    /// message, so it waits (with growing intervals, up to its time to live) without
    /// spending an attempt. A long outage does not use up `retry.max_attempts`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Will never work (policy faults, bad addresses, 4xx).
    #[error("permanent: {0}")]
    Permanent(String),
}

impl SinkError {
    /// Worth trying again later (temporary or unavailable).
    pub fn is_transient(&self) -> bool {
        !matches!(self, SinkError::Permanent(_))
    }

    pub fn message(&self) -> &str {
        match self {
            SinkError::Transient(m) | SinkError::Unavailable(m) | SinkError::Permanent(m) => m,
        }
    }

    /// `transient`, `unavailable` or `permanent` (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Transient(_) => "transient",
            SinkError::Unavailable(_) => "unavailable",
            SinkError::Permanent(_) => "permanent",
        }
    }
}
