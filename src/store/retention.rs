//! Data has a lifetime: finished messages (every recipient delivered, failed, expired or
//! sent long ago), their recipients, status reports and content — media included, which
//! live in the message — are deleted once they are older than `finished_after_secs`;
//! reply routes nobody used for `reply_route_idle_secs` go too. A background job does it
//! in bounded batches (each one transaction of the writer, so the stages are held up for
//! one batch at most), counts what it deleted, and logs each pass that deleted something.
//!
//! `erase` (the CLI's `switchboard erase <address>` and the admin API) removes everything
//! about one address at once.
//!
//! A deleted reply extension is never handed out again (a high-water mark is kept), so a
//! late answer from a phone can never reach a new party.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::message::now_ms;

/// `[retention]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished messages older than this are deleted with their recipients, reports and
    /// media, in seconds (0: kept for ever).
    pub finished_after_secs: u64,
    /// Reply routes unused for this long are deleted, in seconds (0: kept for ever).
    pub reply_route_idle_secs: u64,
    /// How often the job runs, in seconds.
    pub interval_secs: u64,
    /// Most messages deleted in one transaction.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            finished_after_secs: 30 * 86_400,
            reply_route_idle_secs: 90 * 86_400,
            interval_secs: 600,
            batch: 1000,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.interval_secs == 0 {
            e.push("retention.interval_secs: must be at least 1".into());
        }
        if !(1..=100_000).contains(&self.batch) {
            e.push("retention.batch: must be 1-100000".into());
        }
        e
    }
}

/// What one pass (or one erase) deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub messages: u64,
    pub recipients: u64,
    pub reports: u64,
    pub reply_routes: u64,
}

impl Deleted {
    pub fn add(&mut self, o: Deleted) {
        self.messages += o.messages;
        self.recipients += o.recipients;
        self.reports += o.reports;
        self.reply_routes += o.reply_routes;
    }

    fn is_empty(&self) -> bool {
        *self == Deleted::default()
    }

    fn count(&self) {
        for (what, n) in [
            ("messages", self.messages),
            ("recipients", self.recipients),
            ("reports", self.reports),
            ("reply_routes", self.reply_routes),
        ] {
            metrics::counter!("switchboard_retention_deleted_total", "what" => what).increment(n);
        }
    }
}

/// One whole pass: batches until nothing more is due (or `shutdown`).
pub async fn pass(
    store: &Store,
    cfg: &RetentionConfig,
    now: i64,
    shutdown: &CancellationToken,
) -> Result<Deleted, StoreError> {
    let finished_before = (cfg.finished_after_secs > 0)
        .then(|| now.saturating_sub((cfg.finished_after_secs as i64).saturating_mul(1000)));
    let idle_before = (cfg.reply_route_idle_secs > 0)
        .then(|| now.saturating_sub((cfg.reply_route_idle_secs as i64).saturating_mul(1000)));
    let mut total = Deleted::default();
    loop {
        let d = store.prune(finished_before, idle_before, cfg.batch).await?;
        d.count();
        total.add(d);
        let more = d.messages as usize >= cfg.batch || d.reply_routes as usize >= cfg.batch;
        if !more || shutdown.is_cancelled() {
            return Ok(total);
        }
        // Let the stages' writes in between two batches.
        tokio::task::yield_now().await;
    }
}

/// The background job: a pass every `interval_secs` until `shutdown`.
pub async fn run(store: Store, cfg: RetentionConfig, shutdown: CancellationToken) {
    if cfg.finished_after_secs == 0 && cfg.reply_route_idle_secs == 0 {
        return;
    }
    let interval = Duration::from_secs(cfg.interval_secs.max(1));
    loop {
        match pass(&store, &cfg, now_ms(), &shutdown).await {
            Ok(d) if !d.is_empty() => tracing::info!(
                messages = d.messages,
                recipients = d.recipients,
                reports = d.reports,
                reply_routes = d.reply_routes,
                "retention: deleted what was due"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
