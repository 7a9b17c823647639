//! The receive side's port: what connectors hand in, and the only way they reach the
//! gateway's state. [`Intake::envelope`] stamps a received message, [`Intake::submit`]
//! commits it and queues it for auth, [`Intake::receipt`] applies a peer's receipt;
//! [`Messages`] lets sinks read stored messages.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::receipts::{Receipt, ReceiptResult};
use super::{Ctx, Job};
use crate::address::Address;
use crate::directory::{Directory, UnknownGroup};
use crate::message::{Content, Envelope, Kind, MsgId, Recipient, State, now_ms};
use crate::store::{Store, StoreError};

/// A message as a connector received it, before the gateway stamps it
/// ([`Intake::envelope`]).
pub struct Draft {
    pub kind: Kind,
    pub origin: Address,
    /// Who handed it in: `smtp`, `xmpp`, `sdp`, an API client's name.
    pub client: String,
    pub client_ref: Option<String>,
    pub report_to: Option<Address>,
    /// The recipients as given; groups are expanded.
    pub to: Vec<Address>,
    pub content: Content,
    pub note: Option<String>,
}

/// Stored messages, read-only: for sinks that answer about an earlier message (a DSN
/// quotes the original). Made before the stages start.
#[derive(Clone)]
pub struct Messages(Store);

impl Messages {
    pub fn new(store: Store) -> Messages {
        Messages(store)
    }

    pub async fn load(&self, id: MsgId) -> Result<Option<Envelope>, StoreError> {
        self.0.load(id).await
    }
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
    pub(super) tx: mpsc::Sender<Job>,
    pub(super) ctx: Arc<Ctx>,
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

    /// Stamps a received message: a new id, the time of receipt, the time to live
    /// (`[retry] ttl_secs`), and its recipients, with groups expanded into their members
    /// (each address once). The one place envelopes are made from what a connector took in.
    pub fn envelope(&self, d: Draft) -> Result<Envelope, UnknownGroup> {
        let to = self.ctx.directory.expand(&d.to)?;
        let now = now_ms();
        Ok(Envelope {
            id: self.ctx.ids.next(),
            kind: d.kind,
            origin: d.origin,
            client: d.client,
            client_ref: d.client_ref,
            report_to: d.report_to,
            recipients: to
                .into_iter()
                .enumerate()
                .map(|(i, (a, _))| Recipient::new(i as u32, a))
                .collect(),
            content: d.content,
            created_at: now,
            expires_at: now + (self.ctx.cfg.retry.ttl_secs as i64) * 1000,
            note: d.note,
        })
    }

    /// Groups and opt-outs.
    pub fn directory(&self) -> &Directory {
        &self.ctx.directory
    }

    /// Applies a receipt (or a bounce) that a peer sent for a recipient; returns after it
    /// is committed. See [`receipts`](super::receipts).
    pub async fn receipt(&self, r: Receipt<'_>) -> Result<ReceiptResult, StoreError> {
        super::receipts::apply(&self.ctx, r).await
    }

    /// A stored message.
    pub async fn message(&self, id: MsgId) -> Result<Option<Envelope>, StoreError> {
        self.ctx.store.load(id).await
    }

    /// The party a reply-routing extension names (`service number + ext` on a phone's
    /// reply), as stored.
    pub async fn reply_route(&self, ext: u32) -> Result<Option<String>, StoreError> {
        self.ctx.store.reply_party(ext).await
    }

    /// Creates the `delayed` reports that have come due (at most `limit`); how many.
    pub async fn delay_reports(&self, now: i64, limit: usize) -> Result<usize, StoreError> {
        let n = self.ctx.store.delay_reports(now, limit).await?;
        if n > 0 {
            self.ctx.feeder_wake.notify_one();
        }
        Ok(n)
    }

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }
}
