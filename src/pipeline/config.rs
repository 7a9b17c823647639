//! The `[queues]` and `[retry]` sections: the capacities between the stages, and how
//! transient failures are retried.

use serde::{Deserialize, Serialize};

use crate::config::positive;

/// Capacities of the bounded queues between the stages.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// receive → auth.
    pub auth: usize,
    /// auth → process.
    pub process: usize,
    /// process → dispatch, per channel.
    pub dispatch: usize,
    /// Most bytes of message content inside the stages at once, whatever the counts allow;
    /// over it the receive side answers "try later" (HTTP 503, SMTP 451, SOAP SVC0001).
    pub max_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            auth: 2048,
            process: 2048,
            dispatch: 2048,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl QueueConfig {
    /// Problems with `queues.…`.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        positive(&mut e, "queues.auth", self.auth);
        positive(&mut e, "queues.process", self.process);
        positive(&mut e, "queues.dispatch", self.dispatch);
        if self.max_bytes < 1024 * 1024 {
            e.push("queues.max_bytes: must be at least 1048576 (1 MiB)".into());
        }
        e
    }
}

/// Retries of transient failures.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts before a recipient fails for good.
    pub max_attempts: u32,
    /// First backoff, in milliseconds; doubled at each attempt, with jitter.
    pub initial_backoff_ms: u64,
    /// Backoff ceiling, in milliseconds.
    pub max_backoff_ms: u64,
    /// Time to live of a message, in seconds: past it, an unsent recipient expires.
    pub ttl_secs: u64,
    /// How often the store is polled for recipients whose next attempt is due, in ms.
    pub poll_interval_ms: u64,
    /// Most recipients taken from the store per poll.
    pub poll_batch: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 1000,
            max_backoff_ms: 300_000,
            ttl_secs: 86_400,
            poll_interval_ms: 200,
            poll_batch: 512,
        }
    }
}

impl RetryConfig {
    /// Problems with `retry.…`.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.max_attempts == 0 {
            e.push("retry.max_attempts: must be at least 1".into());
        }
        if self.initial_backoff_ms == 0 {
            e.push("retry.initial_backoff_ms: must be at least 1".into());
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            e.push("retry.max_backoff_ms: must be at least retry.initial_backoff_ms".into());
        }
        if self.ttl_secs == 0 {
            e.push("retry.ttl_secs: must be at least 1".into());
        }
        if self.poll_interval_ms == 0 {
            e.push("retry.poll_interval_ms: must be at least 1".into());
        }
        positive(&mut e, "retry.poll_batch", self.poll_batch);
        e
    }
}
