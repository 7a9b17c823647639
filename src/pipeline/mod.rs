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

mod dispatch;
mod feeder;
pub mod limits;
pub mod mo;
pub mod receipts;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::{Address, Channel};
use crate::config::Config;
use crate::connectors::webhook::WebhookSink;
use crate::connectors::mail::MailSink;
use crate::connectors::sdp::SdpClient;
use crate::connectors::xmpp::XmppSink;
use crate::connectors::{Sent, SinkError};
use crate::message::{Envelope, IdGen, Kind, State, now_ms};
use crate::store::{Applied, Outcome, Store, StoreError};

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

/// A share of the byte budget of the stages (see [`ByteBudget`]).
pub type BudgetPermit = Arc<OwnedSemaphorePermit>;

/// The bytes of message content that may be inside the stages at once (`[queues]
/// max_bytes`), whatever the counts of the queues allow. Receive takes an envelope's
/// share before it commits and refuses ("try later") when there is no room; the feeder
/// waits for room, so work due from the store stays in the store meanwhile. Messages
/// waiting for a retry are not in memory at all: only in the store.
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    max: usize,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ByteBudget {
            sem: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// What an envelope costs: its content as held in memory, plus a fixed overhead for
    /// the envelope and its recipients. Capped at the whole budget, so that one message
    /// larger than it still goes through on its own.
    pub fn cost(&self, env: &Envelope) -> u32 {
        let c = &env.content;
        let bytes = c.text.len()
            + c.subject.as_ref().map_or(0, String::len)
            + c.parts.iter().map(|p| p.bytes.len() + 64).sum::<usize>()
            + c.mail
                .as_ref()
                .map_or(0, |m| m.headers.len() + 64 * m.rcpts.len())
            + 512
            + 128 * env.recipients.len();
        bytes.min(self.max).min(u32::MAX as usize) as u32
    }

    /// A share now, or `None` when the budget is spent.
    pub fn try_take(&self, env: &Envelope) -> Option<BudgetPermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.cost(env))
            .ok()
            .map(Arc::new)
    }

    /// A share, waiting for room.
    pub async fn take(&self, env: &Envelope) -> Option<BudgetPermit> {
        self.sem
            .clone()
            .acquire_many_owned(self.cost(env))
            .await
            .ok()
            .map(Arc::new)
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.max - self.sem.available_permits()
    }
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
    /// The envelope's share of the byte budget (see [`Job::budget`]).
    pub budget: Option<BudgetPermit>,
}

/// The sinks, one per channel that has one configured.
#[derive(Clone, Default)]
pub struct Sinks {
    pub sms: Option<SdpClient>,
    /// MMS to phones (Parlay X SendMessage); absent: phones get text only.
    pub mms: Option<crate::connectors::sdp::mms::MmsClient>,
    pub im: Option<WebhookSink>,
    pub callback: Option<WebhookSink>,
    pub mail: Option<MailSink>,
    /// XMPP component links; when present they carry `im:` recipients instead of `im`.
    pub xmpp: Option<XmppSink>,
}

impl Sinks {
    fn has(&self, ch: Channel) -> bool {
        match ch {
            Channel::Sms => self.sms.is_some(),
            Channel::Im => self.im.is_some() || self.xmpp.is_some(),
            Channel::App => self.im.is_some(),
            Channel::Callback => self.callback.is_some(),
            Channel::Mail => self.mail.is_some(),
            Channel::Group => false,
        }
    }

    /// A delivery that cannot be attempted now because its link is known to be down:
    /// why, and when to look again. It waits in the store without spending an attempt.
    fn down(&self, d: &Delivery) -> Option<(String, i64)> {
        let ch = d.env.recipient(d.idx)?.channel();
        match (ch, &self.xmpp) {
            (Channel::Im, Some(x)) => x.down(&d.env),
            _ => None,
        }
    }

    async fn deliver(&self, d: &Delivery) -> Result<Sent, SinkError> {
        let ch = d
            .env
            .recipient(d.idx)
            .map(|r| r.channel())
            .ok_or_else(|| SinkError::Permanent(format!("no recipient {}", d.idx)))?;
        match ch {
            Channel::Sms if d.mms.is_some() => {
                let (Some(mms), Some(plan)) = (&self.mms, &d.mms) else {
                    return Err(SinkError::Transient("no MMS interface configured".into()));
                };
                let rcpt = d
                    .env
                    .recipient(d.idx)
                    .map(|r| r.address.value())
                    .unwrap_or("");
                let correlator = d.env.correlator(d.idx);
                mms.send(&crate::connectors::sdp::mms::MmsRequest {
                    to: rcpt,
                    sender: d.sender.as_deref(),
                    subject: d.env.content.subject.as_deref(),
                    plan,
                    correlator: &correlator,
                })
                .await
            }
            Channel::Sms => {
                let Some(sdp) = &self.sms else {
                    return Err(SinkError::Transient("no SDP configured".into()));
                };
                let rcpt = d
                    .env
                    .recipient(d.idx)
                    .map(|r| r.address.value())
                    .unwrap_or("");
                let correlator = d.env.correlator(d.idx);
                let text = match &d.sms {
                    Some(shape) => shape.text.as_str(),
                    None => d.env.content.text.as_str(),
                };
                sdp.send(&crate::connectors::sdp::SmsRequest {
                    to: rcpt,
                    sender: d.sender.as_deref(),
                    text,
                    correlator: &correlator,
                })
                .await
            }
            Channel::Im if self.xmpp.is_some() => match &self.xmpp {
                Some(x) => x.deliver(&d.env, d.idx).await,
                None => Err(SinkError::Transient("no XMPP link configured".into())),
            },
            Channel::Im | Channel::App => match &self.im {
                Some(s) => s.deliver(&d.env, d.idx).await,
                None => Err(SinkError::Transient("no IM webhook configured".into())),
            },
            Channel::Callback => match &self.callback {
                Some(s) => s.deliver(&d.env, d.idx).await,
                None => Err(SinkError::Transient("no report sink".into())),
            },
            Channel::Mail => match &self.mail {
                Some(s) => s.deliver(&d.env, d.idx).await,
                None => Err(SinkError::Transient("no mail smarthost configured".into())),
            },
            Channel::Group => Err(SinkError::Transient(format!(
                "no {ch} connector configured"
            ))),
        }
    }
}

/// What every stage shares.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub ids: Arc<IdGen>,
    /// Wakes the feeder (a report or a retry became due now).
    pub feeder_wake: Arc<Notify>,
    /// The bytes of content inside the stages (`[queues] max_bytes`).
    pub budget: ByteBudget,
    /// Messages per phone per day (`[limits] recipient_daily_max`).
    pub daily: limits::DailyCap,
    /// Reply extensions by party, with the time each was read from the store.
    reply_exts: Mutex<HashMap<String, (u32, i64)>>,
    /// Phone recipients whose send to the SDP is in flight (receipts may apply to them).
    pub sdp_in_flight: dispatch::InFlight,
}

impl Ctx {
    pub fn new(cfg: Arc<Config>, store: Store, ids: Arc<IdGen>) -> Ctx {
        Ctx {
            store,
            ids,
            feeder_wake: Arc::new(Notify::new()),
            budget: ByteBudget::new(cfg.queues.max_bytes),
            daily: limits::DailyCap::new(cfg.limits.recipient_daily_max),
            reply_exts: Mutex::new(HashMap::new()),
            sdp_in_flight: dispatch::InFlight::default(),
            cfg,
        }
    }

    /// The sender sub-address for messages from `origin` to phones: service number +
    /// the origin's reply-routing extension.
    async fn sms_sender(&self, origin: &Address) -> Result<String, StoreError> {
        let party = origin.to_string();
        let now = now_ms();
        // A cached route is looked up in the store again now and then, which marks it used
        // there, so the retention job never deletes a route that is in use.
        let refresh_ms =
            (self.cfg.retention.reply_route_idle_secs as i64 * 1000 / 4).clamp(1000, 3_600_000);
        let cached = self
            .reply_exts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&party)
            .copied()
            .filter(|&(_, at)| now - at < refresh_ms);
        let ext = match cached {
            Some((e, _)) => e,
            None => {
                let e = self.store.reply_ext(&party).await?;
                let mut map = self.reply_exts.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() >= 100_000 {
                    map.clear();
                }
                map.insert(party, (e, now));
                e
            }
        };
        Ok(format!("{}{}", self.cfg.sdp.service_number, ext))
    }

    /// Forgets the cached reply route of a party (after it was erased).
    pub fn forget_reply_route(&self, party: &Address) {
        let party = party.to_string();
        self.reply_exts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p, _| *p != party && !p.starts_with(&format!("{party}/")));
    }

    /// Records the result of one attempt (or a decision of a stage) for a recipient.
    pub async fn settle(&self, env: &Envelope, idx: u32, result: Result<Sent, Settle>) {
        self.settle_sms(env, idx, result, None).await
    }

    /// [`Ctx::settle`] for an attempt that went out as SMS in this shape: the encoding and
    /// parts are recorded with the outcome, and counted when it was sent.
    pub async fn settle_sms(
        &self,
        env: &Envelope,
        idx: u32,
        result: Result<Sent, Settle>,
        sms: Option<crate::content::SmsInfo>,
    ) {
        let Some(rcpt) = env.recipient(idx) else {
            return;
        };
        let channel = rcpt.channel().as_str();
        let attempts = rcpt.attempts;
        let now = now_ms();
        let outcome = match result {
            Ok(sent) => {
                metrics::counter!("switchboard_messages_sent_total", "channel" => channel)
                    .increment(1);
                if let Some(info) = sms {
                    metrics::counter!("switchboard_sms_parts_total", "encoding" => info.encoding.as_str())
                        .increment(u64::from(info.parts));
                }
                metrics::histogram!("switchboard_end_to_end_duration_seconds", "channel" => channel)
                    .record((now - env.created_at).max(0) as f64 / 1000.0);
                Outcome {
                    state: State::Sent,
                    attempts: attempts + 1,
                    next_attempt_at: 0,
                    last_error: None,
                    remote_id: sent.remote_id,
                    final_word: sent.final_word,
                    status: None,
                }
            }
            Err(Settle::Held(why)) => {
                metrics::counter!("switchboard_messages_held_total", "channel" => channel)
                    .increment(1);
                Outcome {
                    state: State::Held,
                    attempts,
                    next_attempt_at: 0,
                    last_error: Some(why),
                    remote_id: None,
                    final_word: false,
                    status: None,
                }
            }
            Err(Settle::Defer(why, at)) => Outcome {
                state: State::Retry,
                attempts,
                next_attempt_at: at,
                last_error: Some(why),
                remote_id: None,
                final_word: false,
                status: None,
            },
            Err(Settle::Expired) => {
                metrics::counter!("switchboard_messages_failed_total", "channel" => channel, "reason" => "expired")
                    .increment(1);
                Outcome {
                    state: State::Expired,
                    attempts,
                    next_attempt_at: 0,
                    last_error: Some(format!("time to live ran out after {attempts} attempt(s)")),
                    remote_id: None,
                    final_word: true,
                    status: None,
                }
            }
            Err(Settle::Sink(SinkError::Permanent(e))) => {
                metrics::counter!("switchboard_messages_failed_total", "channel" => channel, "reason" => "permanent")
                    .increment(1);
                Outcome {
                    state: State::Failed,
                    attempts: attempts + 1,
                    next_attempt_at: 0,
                    last_error: Some(e),
                    remote_id: None,
                    final_word: true,
                    status: None,
                }
            }
            Err(Settle::Sink(err)) => {
                // Temporary: an attempt is spent and the wait doubles. Unavailable: nothing
                // was tried with this message, so no attempt is spent; the wait grows with
                // the message's age (a quarter of it, within the backoff bounds), so a long
                // outage is not hammered, and only the time to live ends it.
                let unavailable = matches!(err, SinkError::Unavailable(_));
                let (attempts, next) = if unavailable {
                    let age = now - env.created_at;
                    (
                        attempts,
                        now + unavailable_backoff_ms(&self.cfg, age) as i64,
                    )
                } else {
                    (
                        attempts + 1,
                        now + backoff_ms(&self.cfg, attempts + 1) as i64,
                    )
                };
                let e = match err {
                    SinkError::Unavailable(e) => format!("unavailable: {e}"),
                    SinkError::Transient(e) | SinkError::Permanent(e) => e,
                };
                if !unavailable && attempts >= self.cfg.retry.max_attempts {
                    metrics::counter!("switchboard_messages_failed_total", "channel" => channel, "reason" => "attempts")
                        .increment(1);
                    Outcome {
                        state: State::Failed,
                        attempts,
                        next_attempt_at: 0,
                        last_error: Some(format!("gave up after {attempts} attempts: {e}")),
                        remote_id: None,
                        final_word: true,
                        status: None,
                    }
                } else if next > env.expires_at {
                    metrics::counter!("switchboard_messages_failed_total", "channel" => channel, "reason" => "expired")
                        .increment(1);
                    Outcome {
                        state: State::Expired,
                        attempts,
                        next_attempt_at: 0,
                        last_error: Some(format!(
                            "time to live runs out before the next attempt: {e}"
                        )),
                        remote_id: None,
                        final_word: true,
                        status: None,
                    }
                } else {
                    if unavailable {
                        metrics::counter!("switchboard_deferred_total", "channel" => channel)
                            .increment(1);
                    } else {
                        metrics::counter!("switchboard_retries_total", "channel" => channel)
                            .increment(1);
                    }
                    Outcome {
                        state: State::Retry,
                        attempts,
                        next_attempt_at: next,
                        last_error: Some(e),
                        remote_id: None,
                        final_word: false,
                        status: None,
                    }
                }
            }
        };
        self.record_sms(env, idx, outcome, sms).await;
    }

    /// Writes an outcome; wakes the feeder if it created a report.
    pub async fn record(&self, env: &Envelope, idx: u32, outcome: Outcome) {
        self.record_sms(env, idx, outcome, None).await
    }

    async fn record_sms(
        &self,
        env: &Envelope,
        idx: u32,
        outcome: Outcome,
        sms: Option<crate::content::SmsInfo>,
    ) {
        let rid = env.recipient_id(idx);
        match self.store.apply_sms(rid, outcome, sms).await {
            Ok(Applied::Updated { report: Some(_) }) => self.feeder_wake.notify_one(),
            Ok(_) => {}
            // The recipient stays as it was in the store (queued): it is sent again after
            // a restart. At-least-once, never lost.
            Err(e) => tracing::error!(recipient = %rid, error = %e, "cannot record outcome"),
        }
    }
}

/// A stage's decision about a recipient other than "sent".
pub enum Settle {
    Sink(SinkError),
    /// Not now: try again at this time (ms), without counting an attempt.
    Defer(String, i64),
    /// No sink serves the channel: wait in the store.
    Held(String),
    Expired,
}

/// Exponential backoff with jitter: `initial * 2^(attempt-1)`, capped, then a random
/// point in its upper half.
pub fn backoff_ms(cfg: &Config, attempt: u32) -> u64 {
    let base = cfg
        .retry
        .initial_backoff_ms
        .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(30))
        .min(cfg.retry.max_backoff_ms);
    let half = base / 2;
    half + rand::rng().random_range(0..=base - half)
}

/// The wait before looking again at a message whose peer was unavailable: a quarter of its
/// age, within `[initial_backoff_ms, max_backoff_ms]`, then a random point in its upper half.
pub fn unavailable_backoff_ms(cfg: &Config, age_ms: i64) -> u64 {
    let base = (u64::try_from(age_ms).unwrap_or(0) / 4)
        .clamp(cfg.retry.initial_backoff_ms, cfg.retry.max_backoff_ms);
    let half = base / 2;
    half + rand::rng().random_range(0..=base - half)
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full; try again later")]
    QueueFull,
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("the store refused the message: {0}")]
    Store(#[from] StoreError),
}

/// The receive stage's entry: where connectors hand in new envelopes.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Job>,
    ctx: Arc<Ctx>,
}

impl Intake {
    /// Commits `env` and queues it for auth. Returns only after the commit; refuses
    /// without storing anything if the auth queue is full.
    pub async fn submit(&self, env: Envelope) -> Result<Arc<Envelope>, SubmitError> {
        let channel = env.origin.channel().as_str();
        let refuse = |reason: &'static str| {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => reason)
                .increment(1);
            SubmitError::QueueFull
        };
        // The byte budget first: an envelope that does not fit is refused before anything
        // is stored, like one that finds the queue full.
        let budget = self
            .ctx
            .budget
            .try_take(&env)
            .ok_or_else(|| refuse("queue_bytes"))?;
        let permit = match self.tx.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Full(())) => return Err(refuse("queue_full")),
            Err(mpsc::error::TrySendError::Closed(())) => return Err(SubmitError::ShuttingDown),
        };
        let idxs: Vec<u32> = env
            .recipients
            .iter()
            .filter(|r| r.state == State::Queued)
            .map(|r| r.idx)
            .collect();
        let env = Arc::new(env);
        self.ctx.store.insert(env.clone()).await?;
        metrics::counter!("switchboard_messages_received_total", "channel" => channel).increment(1);
        if !idxs.is_empty() {
            permit.send(Job {
                env: env.clone(),
                idxs,
                fresh: true,
                budget: Some(budget),
            });
        }
        Ok(env)
    }

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }
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
    let mut dispatch_txs = HashMap::new();
    let mut dispatch_weak = Vec::new();
    for ch in Channel::ALL {
        if !sinks.has(ch) || ch == Channel::App {
            continue;
        }
        let (tx, rx) = mpsc::channel::<Delivery>(q.dispatch);
        dispatch_weak.push((format!("dispatch_{ch}"), tx.downgrade()));
        dispatch_txs.insert(ch, tx);
        let concurrency = match ch {
            Channel::Sms => ctx.cfg.sdp.concurrency,
            Channel::Im => ctx.cfg.im.concurrency,
            Channel::Mail => ctx.cfg.mail.concurrency,
            _ => ctx.cfg.reports.concurrency,
        };
        tracker.spawn(dispatch::run(
            ctx.clone(),
            ch,
            sinks.clone(),
            rx,
            concurrency,
            tracker.clone(),
        ));
    }
    // App recipients go through the IM webhook (one HTTP sink for third-party servers).
    if let Some(tx) = dispatch_txs.get(&Channel::Im).cloned()
        && sinks.im.is_some()
    {
        dispatch_txs.insert(Channel::App, tx);
    }
    let depths = Depths {
        queues: vec![
            ("auth".into(), auth_tx.downgrade()),
            ("process".into(), proc_tx.downgrade()),
        ],
        dispatch: dispatch_weak,
    };
    tracker.spawn(auth_stage(ctx.clone(), auth_rx, proc_tx));
    tracker.spawn(process_stage(ctx.clone(), proc_rx, dispatch_txs));
    tracker.spawn(feeder::run(ctx.clone(), auth_tx.clone(), shutdown));
    (Intake { tx: auth_tx, ctx }, depths)
}

struct RateWindow {
    second: i64,
    counts: HashMap<String, u32>,
}

async fn auth_stage(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Job>, tx: mpsc::Sender<Job>) {
    let opt_outs: std::collections::HashSet<Address> = ctx
        .cfg
        .directory
        .opt_outs
        .iter()
        .filter_map(|a| Address::parse_user(a).ok())
        .collect();
    let limit = ctx.cfg.directory.rate_per_origin;
    let mut window = RateWindow {
        second: 0,
        counts: HashMap::new(),
    };
    while let Some(job) = rx.recv().await {
        metrics::counter!("switchboard_stage_processed_total", "stage" => "auth").increment(1);
        let env = &job.env;
        let mut keep = Vec::with_capacity(job.idxs.len());
        let over_rate = env.kind == Kind::Message && limit > 0 && {
            let now = now_ms();
            if now / 1000 != window.second {
                window.second = now / 1000;
                window.counts.clear();
            }
            let n = window.counts.entry(env.origin.to_string()).or_insert(0);
            *n += 1;
            *n > limit
        };
        for &idx in &job.idxs {
            let Some(rcpt) = env.recipient(idx) else {
                continue;
            };
            if env.kind == Kind::Message && opt_outs.contains(&rcpt.address) {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => "opted_out")
                    .increment(1);
                ctx.settle(
                    env,
                    idx,
                    Err(Settle::Sink(SinkError::Permanent(
                        "opted_out: the recipient does not accept messages from this gateway"
                            .into(),
                    ))),
                )
                .await;
            } else if let Some(why) = (env.kind == Kind::Message)
                .then(|| {
                    ctx.cfg
                        .limits
                        .check_destination(&rcpt.address)
                        .err()
                        .or_else(|| {
                            // Counted once, when the message is received: a retry or a
                            // message recovered after a restart is not counted again.
                            job.fresh
                                .then(|| ctx.daily.take(&rcpt.address, now_ms()).err())
                                .flatten()
                        })
                })
                .flatten()
            {
                let reason = if why.starts_with("recipient_daily_cap") {
                    "recipient_daily_cap"
                } else {
                    "destination_denied"
                };
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => reason)
                    .increment(1);
                tracing::info!(recipient = %env.recipient_id(idx), reason, "recipient refused");
                ctx.settle(env, idx, Err(Settle::Sink(SinkError::Permanent(why))))
                    .await;
            } else if over_rate {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => "rate_limited")
                    .increment(1);
                let at = (window.second + 1) * 1000;
                ctx.settle(env, idx, Err(Settle::Defer("rate_limited".into(), at)))
                    .await;
            } else {
                keep.push(idx);
            }
        }
        if !keep.is_empty()
            && tx
                .send(Job {
                    env: job.env.clone(),
                    idxs: keep,
                    fresh: job.fresh,
                    budget: job.budget.clone(),
                })
                .await
                .is_err()
        {
            break;
        }
    }
}

async fn process_stage(
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<Job>,
    txs: HashMap<Channel, mpsc::Sender<Delivery>>,
) {
    use futures::StreamExt;
    let checks_cfg = Arc::new((
        crate::content::scan::Scanner::new(&ctx.cfg.content.scan),
        crate::content::spam::SpamCheck::new(&ctx.cfg.content.spam),
    ));
    // Nothing to check: straight to routing, as before the checks existed.
    if checks_cfg.0.is_none() && checks_cfg.1.is_none() {
        while let Some(job) = rx.recv().await {
            metrics::counter!("switchboard_stage_processed_total", "stage" => "process")
                .increment(1);
            if !route(&ctx, job, &txs).await {
                return;
            }
        }
        return;
    }
    let limit = ctx.cfg.content.check_concurrency.max(1);
    // Scans and spam checks of up to `limit` messages run at once (a slow clamd or rspamd
    // does not hold up everything behind it); messages leave the checks in arrival order.
    let mut checks = futures::stream::FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = checks.next(), if !checks.is_empty() => {
                if let Some(job) = done
                    && !route(&ctx, job, &txs).await
                {
                    return;
                }
            }
            job = rx.recv(), if checks.len() < limit => match job {
                Some(job) => {
                    metrics::counter!("switchboard_stage_processed_total", "stage" => "process")
                        .increment(1);
                    checks.push_back(check(ctx.clone(), checks_cfg.clone(), job));
                }
                None => break,
            },
        }
    }
    while let Some(done) = checks.next().await {
        if let Some(job) = done
            && !route(&ctx, job, &txs).await
        {
            return;
        }
    }
}

/// The content checks of one message: `None` when it was refused or held (every
/// recipient settled), else the job to route (its text tagged when spam rules say so).
async fn check(
    ctx: Arc<Ctx>,
    checks: Arc<(
        Option<crate::content::scan::Scanner>,
        Option<crate::content::spam::SpamCheck>,
    )>,
    mut job: Job,
) -> Option<Job> {
    let (scanner, spam) = &*checks;
    // Mail checked before its SMTP `250` is not checked a second time.
    if job
        .env
        .content
        .mail
        .as_ref()
        .is_some_and(|m| m.content_checked)
    {
        return Some(job);
    }
    // Attachments are scanned before any recipient is routed: one verdict for all.
    if let Some(scanner) = scanner
        && job.env.kind == Kind::Message
    {
        let env = &job.env;
        use crate::content::scan::Decision;
        let failure = match scanner.check(env).await {
            Decision::Pass => None,
            Decision::Refuse(why) => Some(SinkError::Permanent(why)),
            Decision::Retry(why) => Some(SinkError::Unavailable(why)),
        };
        if let Some(err) = failure {
            let reason = if err.is_transient() {
                "scanner_unavailable"
            } else {
                "virus_found"
            };
            for &idx in &job.idxs {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => reason)
                    .increment(1);
                ctx.settle(env, idx, Err(Settle::Sink(err.clone()))).await;
            }
            return None;
        }
    }
    // Spam checks: a refusal fails every recipient; a tag changes the text sent.
    if let Some(spam) = spam
        && job.env.kind == Kind::Message
    {
        use crate::content::spam::Verdict;
        let failure = match spam.check(&job.env).await {
            Verdict::Pass => None,
            Verdict::Tag(text) => {
                let mut tagged = (*job.env).clone();
                tagged.content.text = text;
                job.env = Arc::new(tagged);
                None
            }
            Verdict::Refuse(why) => Some(SinkError::Permanent(why)),
            Verdict::Retry(why) => Some(SinkError::Unavailable(why)),
        };
        if let Some(err) = failure {
            for &idx in &job.idxs {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => "spam")
                    .increment(1);
                ctx.settle(&job.env, idx, Err(Settle::Sink(err.clone())))
                    .await;
            }
            return None;
        }
    }
    Some(job)
}

/// Reshapes a checked message for each recipient's channel and hands the deliveries to
/// dispatch. `false` when dispatch has stopped.
async fn route(ctx: &Arc<Ctx>, job: Job, txs: &HashMap<Channel, mpsc::Sender<Delivery>>) -> bool {
    {
        let env = &job.env;
        // The SMS shape depends only on the text: worked out once for all phone recipients.
        let mut sms_shape: Option<Result<Arc<crate::content::SmsShape>, String>> = None;
        // Media for phones go as one MMS when the SDP's MMS interface is configured.
        // So does a text over the SMS parts maximum under the `mms` overflow policy.
        let as_mms = !ctx.cfg.content.mms.send_message_url.is_empty()
            && (env
                .content
                .parts
                .iter()
                .any(|p| crate::content::mms::is_media(&p.content_type))
                || crate::content::long_text_to_mms(&ctx.cfg.content.sms, &env.content.text));
        let mut mms_plan: Option<Result<Arc<crate::content::mms::MmsPlan>, String>> = None;
        for &idx in &job.idxs {
            let Some(rcpt) = env.recipient(idx) else {
                continue;
            };
            let ch = rcpt.channel();
            let Some(tx) = txs.get(&ch) else {
                ctx.settle(
                    env,
                    idx,
                    Err(Settle::Held(format!(
                        "no {ch} connector is configured; held until one is"
                    ))),
                )
                .await;
                continue;
            };
            let sender = if ch == Channel::Sms && env.origin.channel() != Channel::Sms {
                match ctx.sms_sender(&env.origin).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot allocate a reply route");
                        let at = now_ms() + 1000;
                        ctx.settle(env, idx, Err(Settle::Defer(format!("store: {e}"), at)))
                            .await;
                        continue;
                    }
                }
            } else {
                None
            };
            let mms = if ch == Channel::Sms && as_mms {
                let plan = mms_plan.get_or_insert_with(|| {
                    crate::content::mms::plan(
                        &ctx.cfg.content.mms,
                        &env.content.text,
                        &env.content.parts,
                    )
                    .map(Arc::new)
                });
                match plan {
                    Ok(p) => Some(p.clone()),
                    Err(why) => {
                        metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => "too_large")
                            .increment(1);
                        let why = why.clone();
                        ctx.settle(env, idx, Err(Settle::Sink(SinkError::Permanent(why))))
                            .await;
                        continue;
                    }
                }
            } else {
                None
            };
            let sms = if ch == Channel::Sms && mms.is_none() {
                let shape = sms_shape.get_or_insert_with(|| {
                    crate::content::shape_sms(&ctx.cfg.content.sms, &env.content.text).map(Arc::new)
                });
                match shape {
                    Ok(s) => Some(s.clone()),
                    Err(why) => {
                        metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => "too_long")
                            .increment(1);
                        let why = why.clone();
                        ctx.settle(env, idx, Err(Settle::Sink(SinkError::Permanent(why))))
                            .await;
                        continue;
                    }
                }
            } else {
                None
            };
            let d = Delivery {
                env: job.env.clone(),
                idx,
                sender,
                sms,
                mms,
                budget: job.budget.clone(),
            };
            if tx.send(d).await.is_err() {
                return false;
            }
        }
    }
    true
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
