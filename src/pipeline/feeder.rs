//! The feeder: takes recipients whose next attempt is due from the store (retries, work
//! recovered after a restart, status reports for origins) and puts them back into the auth
//! queue. It claims at most `poll_batch` at a time and waits for room in the queue, so
//! waiting work stays in the store, not in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ctx, Job};
use crate::message::{MsgId, now_ms};

pub(super) async fn run(ctx: Arc<Ctx>, tx: mpsc::Sender<Job>, shutdown: CancellationToken) {
    let interval = Duration::from_millis(ctx.cfg.retry.poll_interval_ms);
    let batch = ctx.cfg.retry.poll_batch;
    loop {
        let claimed = match ctx.store.claim_due(now_ms(), batch).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "feeder cannot read the store");
                Vec::new()
            }
        };
        let full = claimed.len() >= batch;
        let mut by_msg: BTreeMap<MsgId, Vec<u32>> = BTreeMap::new();
        for id in claimed {
            by_msg.entry(id.msg).or_default().push(id.idx);
        }
        for (msg, idxs) in by_msg {
            let env = match ctx.store.load(msg).await {
                Ok(Some(env)) => Arc::new(env),
                Ok(None) => continue,
                Err(e) => {
                    // Claimed but not handed on: it is re-injected at the next start.
                    tracing::error!(message = %msg, error = %e, "feeder cannot load a message");
                    continue;
                }
            };
            metrics::counter!("switchboard_feeder_injected_total").increment(idxs.len() as u64);
            // Room in the byte budget first: while the stages are full of content, due work
            // waits here, one message at a time, instead of piling up in memory.
            let budget = tokio::select! {
                b = ctx.budget.take(&env) => b,
                _ = shutdown.cancelled() => return,
            };
            let job = Job {
                env,
                idxs,
                fresh: false,
                budget,
            };
            tokio::select! {
                r = tx.send(job) => if r.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.feeder_wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
