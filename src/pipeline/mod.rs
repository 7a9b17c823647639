//! The stages — receive → auth → process → dispatch — and the bounded queues between them.
//!
//! - **receive** ([`Intake::submit`]) reserves room in the auth queue first, then commits the
//!   envelope to the store, then hands it on: a full queue is refused before anything is
//!   stored (the protocol says "try later"), and nothing is acknowledged before its commit.
//! - **auth** refuses opted-out recipients and defers origins over their rate.
//! - **process** picks each recipient's sender (reply-routing sub-address for SMS) and routes
//!   it to its channel's queue; a channel with no sink holds its recipients in the store.
//! - **dispatch** runs one sink per channel with bounded concurrency and settles each
//!   attempt in the store (sent, retry with backoff, failed, expired).
//! - the **feeder** moves recipients whose next attempt is due (retries, recovered work after
//!   a restart, status reports for origins) from the store back into the auth queue.
//!
//! Every queue is bounded; a full queue makes its producer wait, except at receive, where
//! the wait becomes a refusal. On shutdown the senders are dropped in stage order, so each
//! stage ends when the one before it has ended and its queue is empty.

mod budget;
pub mod config;
mod ctx;
mod dispatch;
mod feeder;
mod intake;
pub mod limits;
pub mod receipts;
mod settle;
mod sink;
mod stages;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::Channel;
use crate::message::Envelope;

pub use budget::{BudgetPermit, ByteBudget};
pub use ctx::Ctx;
pub use intake::{ChangeError, Draft, Intake, Messages, Refused, Resolved, SubmitError};
pub use receipts::{Receipt, ReceiptResult, ReceiptTarget};
pub use settle::{Settle, backoff_ms, unavailable_backoff_ms};
pub use sink::{Sent, Sink, SinkError};

/// The sinks: one per channel that has one (a sink may serve several channels).
pub type Sinks = HashMap<Channel, Arc<dyn Sink>>;

/// Recipients of one envelope that a stage is to work on.
pub struct Job {
    pub env: Arc<Envelope>,
    pub idxs: Vec<u32>,
    /// Just received (not a retry or recovered work): counted against the daily caps.
    pub fresh: bool,
    /// The envelope's share of `[queues] max_bytes`, given back when the last job or
    /// delivery of it is dropped.
    pub budget: Option<BudgetPermit>,
}

/// One recipient on its way to its channel's sink.
pub struct Delivery {
    pub env: Arc<Envelope>,
    pub idx: u32,
    /// The sender address to present (SMS: service number + extension).
    pub sender: Option<String>,
    /// SMS only: the text as it goes out and its shape (from `[content.sms]`).
    pub sms: Option<Arc<crate::content::SmsShape>>,
    /// To a phone as MMS: the text and media after the size policy (`[content.mms]`).
    pub mms: Option<Arc<crate::content::mms::MmsPlan>>,
    /// A message a member spoke as a group: the names the sinks show it with (the SMS and
    /// MMS text already begin with them).
    pub voice: Option<Arc<crate::content::voice::Voice>>,
    /// The envelope's share of the byte budget (see [`Job::budget`]).
    pub budget: Option<BudgetPermit>,
}

/// Capacity gauges of the queues, read when metrics are rendered.
#[derive(Clone)]
pub struct Depths {
    queues: Vec<(String, mpsc::WeakSender<Job>)>,
    dispatch: Vec<(String, mpsc::WeakSender<Delivery>)>,
}

impl Depths {
    /// `(queue name, items waiting)` for every queue still open.
    pub fn read(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (name, w) in &self.queues {
            if let Some(tx) = w.upgrade() {
                out.insert(name.clone(), tx.max_capacity() - tx.capacity());
            }
        }
        for (name, w) in &self.dispatch {
            if let Some(tx) = w.upgrade() {
                out.insert(name.clone(), tx.max_capacity() - tx.capacity());
            }
        }
        out
    }
}

/// Starts the stages and the feeder on `tracker`. They stop when `shutdown` is cancelled
/// and the queues before them are drained.
pub fn start(
    ctx: Arc<Ctx>,
    sinks: Sinks,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> (Intake, Depths) {
    let q = &ctx.cfg.queues;
    let (auth_tx, auth_rx) = mpsc::channel::<Job>(q.auth);
    let (proc_tx, proc_rx) = mpsc::channel::<Job>(q.process);
    let mut dispatch_txs: HashMap<Channel, mpsc::Sender<Delivery>> = HashMap::new();
    let mut dispatch_weak = Vec::new();
    // One dispatch queue and runner per sink: channels served by the same sink share them.
    let mut runners: Vec<(Arc<dyn Sink>, mpsc::Sender<Delivery>)> = Vec::new();
    for ch in Channel::ALL {
        let Some(sink) = sinks.get(&ch) else {
            continue;
        };
        if let Some((_, tx)) = runners.iter().find(|(s, _)| Arc::ptr_eq(s, sink)) {
            dispatch_txs.insert(ch, tx.clone());
            continue;
        }
        let (tx, rx) = mpsc::channel::<Delivery>(q.dispatch);
        dispatch_weak.push((format!("dispatch_{ch}"), tx.downgrade()));
        dispatch_txs.insert(ch, tx.clone());
        runners.push((sink.clone(), tx));
        tracker.spawn(dispatch::run(
            ctx.clone(),
            ch,
            sink.clone(),
            rx,
            tracker.clone(),
        ));
    }
    drop(runners);
    let depths = Depths {
        queues: vec![
            ("auth".into(), auth_tx.downgrade()),
            ("process".into(), proc_tx.downgrade()),
        ],
        dispatch: dispatch_weak,
    };
    tracker.spawn(stages::auth_stage(ctx.clone(), auth_rx, proc_tx));
    tracker.spawn(stages::process_stage(ctx.clone(), proc_rx, dispatch_txs));
    tracker.spawn(feeder::run(ctx.clone(), auth_tx.clone(), shutdown));
    (Intake { tx: auth_tx, ctx }, depths)
}

/// Waits (up to `deadline`) for the tracked tasks; names what is left if time runs out.
pub async fn drain(tracker: &TaskTracker, depths: &Depths, deadline: Duration) -> bool {
    tracker.close();
    if tokio::time::timeout(deadline, tracker.wait()).await.is_ok() {
        return true;
    }
    let left: Vec<String> = depths
        .read()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(q, n)| format!("{q}={n}"))
        .collect();
    tracing::warn!(
        tasks = tracker.len(),
        queues = %left.join(" "),
        "drain deadline passed; what is left stays in the store and is sent after the next start"
    );
    false
}
