//! Protocol connectors: one module per protocol. A sink delivers one recipient and says
//! whether it worked; a failure says in its type whether a retry makes sense.

pub mod webhook;
pub mod mail;
pub mod sdp;
pub mod xmpp;

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

/// Classifies a transport error of an HTTP request: all of them are worth a retry
/// (refused connection, timeout, reset), except a request that could not be built; a
/// connection that could not be made is `Unavailable` (the request never left).
pub(crate) fn classify_reqwest(e: &reqwest::Error) -> SinkError {
    if e.is_builder() {
        SinkError::Permanent(format!("bad request: {e}"))
    } else if e.is_timeout() {
        SinkError::Transient("timed out".into())
    } else if e.is_connect() {
        SinkError::Unavailable(format!("cannot connect: {}", root_cause(e)))
    } else {
        SinkError::Transient(format!("transport: {}", root_cause(e)))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
