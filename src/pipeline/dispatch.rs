//! The dispatch stage: one runner per sink, at most `concurrency` deliveries at the sink
//! at once. A recipient leaves the live queue only once its outcome is recorded in the
//! store, so only a sink-confirmed (or finally failed) recipient is ever done.
//!
//! The sink permit is released as soon as the sink has answered: recording the outcome
//! waits for a group commit, and holding the sink's slot meanwhile would cap deliveries at
//! `concurrency` per commit interval. Deliveries whose outcome is still being recorded are
//! bounded too, by [`SETTLING_FACTOR`] × `concurrency` in all.

//!
//! Deliveries to a sink whose receipts may come early ([`Sink::early_receipts`]: the SDP)
//! are in [`InFlight`] from before the sink is asked until their outcome is recorded: a
//! receipt may come back before the sink's answer is recorded (the store still says
//! `queued`), and only such a recipient, or one recorded as sent, takes one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use super::{Ctx, Delivery, Settle, Sink};
use crate::address::Channel;
use crate::message::{RecipientId, now_ms};

/// The recipients whose send to a sink with early receipts is under way.
#[derive(Default)]
pub struct InFlight(Arc<Mutex<HashSet<RecipientId>>>);

impl InFlight {
    pub fn contains(&self, rid: RecipientId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&rid)
    }

    fn enter(&self, rid: RecipientId) -> InFlightGuard {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(rid);
        InFlightGuard {
            set: self.0.clone(),
            rid,
        }
    }
}

/// Removes its recipient from the set when dropped (outcome recorded, or the task ended).
struct InFlightGuard {
    set: Arc<Mutex<HashSet<RecipientId>>>,
    rid: RecipientId,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.rid);
    }
}

/// Deliveries in flight (at the sink or being recorded), as a multiple of the sink's
/// concurrency.
pub(super) const SETTLING_FACTOR: usize = 4;

pub(super) async fn run(
    ctx: Arc<Ctx>,
    channel: Channel,
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<Delivery>,
    tracker: TaskTracker,
) {
    let concurrency = sink.concurrency();
    let early = sink.early_receipts();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let slots = Arc::new(Semaphore::new(concurrency.max(1) * SETTLING_FACTOR));
    let in_flight =
        metrics::gauge!("switchboard_dispatch_in_flight", "channel" => channel.as_str());
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let Some(d) = rx.recv().await else { break };
        let ctx = ctx.clone();
        let sink = sink.clone();
        let in_flight = in_flight.clone();
        in_flight.increment(1.0);
        tracker.spawn(async move {
            let _sending = early.then(|| ctx.in_flight.enter(d.env.recipient_id(d.idx)));
            let result = if now_ms() > d.env.expires_at {
                Err(Settle::Expired)
            } else {
                match sink.down(&d) {
                    Some((why, at)) => Err(Settle::Defer(why, at)),
                    None => sink.deliver(&d).await.map_err(Settle::Sink),
                }
            };
            drop(permit);
            if let Err(Settle::Sink(e)) = &result {
                tracing::debug!(recipient = %d.env.recipient_id(d.idx), channel = %channel, error = %e, "delivery attempt failed");
            }
            let sms = d.sms.as_ref().map(|s| s.info());
            ctx.settle_sms(&d.env, d.idx, result, sms).await;
            in_flight.decrement(1.0);
            drop(slot);
        });
    }
}
