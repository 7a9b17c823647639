//! The receive side's port: what connectors hand in, and the only way they reach the
//! gateway's state. [`Intake::envelope`] stamps a received message, [`Intake::submit`]
//! commits it and queues it for auth, [`Intake::receipt`] applies a peer's receipt;
//! [`Messages`] lets sinks read stored messages.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::receipts::{Receipt, ReceiptResult};
use super::{Ctx, Job};
use crate::address::Address;
use crate::directory::ops::{Notice, Plan};
use crate::directory::{DirError, Directory, Door, SenderRefused, Snapshot, UnknownGroup};
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
    /// The door it came in through (the sender check depends on it).
    pub door: Door,
    /// An API client's member speaking as this group (`as`). Over XMPP, SMTP and the SDP a
    /// message to a group is always spoken as that group.
    pub speak_as: Option<String>,
}

/// Who a received message is from and for, once the directory has checked the sender and
/// expanded the groups ([`Intake::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The origin as stored: the group, when a member speaks as one.
    pub origin: Address,
    /// The member who spoke as the group.
    pub speaker: Option<Address>,
    /// Each recipient, with its place in the `to` given.
    pub to: Vec<(Address, usize)>,
}

/// Why a directory change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Refused(DirError),
    #[error("the store refused the change: {0}")]
    Store(#[from] StoreError),
}

/// Why the directory refused a received message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    UnknownGroup(#[from] UnknownGroup),
    #[error(transparent)]
    Sender(#[from] SenderRefused),
}

impl Refused {
    /// The stable code (API error code, metric reason).
    pub fn code(&self) -> &'static str {
        match self {
            Refused::UnknownGroup(_) => "unknown_group",
            Refused::Sender(s) => s.code(),
        }
    }
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

    /// The directory's word on a received message, the same for every connector: the
    /// sender checked at its door (`[directory] im_senders`, `mail_senders`,
    /// `mo_senders`); a message to a group from XMPP, SMTP or the SDP (or with `speak_as`)
    /// spoken as that group, by a member only (`not_a_member`), so it comes from the group
    /// and reaches everybody inside but the speaker; groups expanded through nested groups,
    /// each person once. Refusals are counted by reason.
    pub fn resolve(
        &self,
        origin: &Address,
        to: &[Address],
        door: Door,
        speak_as: Option<&str>,
    ) -> Result<Resolved, Refused> {
        let dir = &self.ctx.directory;
        let refused = |e: Refused| {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => e.code())
                .increment(1);
            tracing::info!(from = %origin, reason = e.code(), "sender refused: {e}");
            e
        };
        dir.check_sender(origin, door)
            .map_err(|e| refused(e.into()))?;
        let spoken: Vec<&str> = match speak_as {
            Some(g) => vec![g],
            None if matches!(door, Door::Xmpp | Door::Smtp | Door::Sdp) => to
                .iter()
                .filter_map(|a| match a {
                    Address::Group(g) => Some(g.as_str()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        for g in &spoken {
            dir.check_member(g, origin).map_err(|e| refused(e.into()))?;
        }
        match spoken.first() {
            Some(g) => {
                let group = Address::Group(g.to_string());
                let mut given = to.to_vec();
                if !given.contains(&group) {
                    given.push(group.clone());
                }
                let to = dir
                    .expand(&given, Some(origin))
                    .map_err(|e| refused(e.into()))?;
                Ok(Resolved {
                    origin: group,
                    speaker: Some(origin.clone()),
                    to,
                })
            }
            None => Ok(Resolved {
                origin: origin.clone(),
                speaker: None,
                to: dir.expand(to, None).map_err(|e| refused(e.into()))?,
            }),
        }
    }

    /// Stamps a received message: a new id, the time of receipt, the time to live
    /// (`[retry] ttl_secs`), and its recipients as [`Intake::resolve`] decided. The one
    /// place envelopes are made from what a connector took in.
    pub fn envelope(&self, d: Draft) -> Result<Envelope, Refused> {
        let r = self.resolve(&d.origin, &d.to, d.door, d.speak_as.as_deref())?;
        Ok(self.stamp(d, r))
    }

    /// [`Intake::envelope`] for a connector that resolved the recipients first (to shape
    /// the content for them); `d.origin` and `d.to` are taken from `r`.
    pub fn stamp(&self, mut d: Draft, r: Resolved) -> Envelope {
        let now = now_ms();
        if d.kind == Kind::Message {
            self.cards(&mut d.content, &r.origin, d.door);
        }
        Envelope {
            id: self.ctx.ids.next(),
            kind: d.kind,
            origin: r.origin,
            client: d.client,
            client_ref: d.client_ref,
            report_to: d.report_to,
            recipients: r
                .to
                .into_iter()
                .enumerate()
                .map(|(i, (a, _))| Recipient::new(i as u32, a))
                .collect(),
            content: d.content,
            created_at: now,
            expires_at: now + (self.ctx.cfg.retry.ttl_secs as i64) * 1000,
            note: d.note,
            speaker: r.speaker,
        }
    }

    /// A vCard received as a part (mail, MMS) becomes a card; a card's owner is the sender
    /// when it is the sender's own (claims the sender cannot back are dropped).
    fn cards(&self, content: &mut Content, origin: &Address, door: Door) {
        if let Err(e) = crate::cards::recognise(content, &self.ctx.cfg.cards) {
            metrics::counter!("switchboard_cards_unread_total").increment(1);
            tracing::info!(from = %origin, error = %e, "a vCard part is not a valid card; kept as an attachment");
        }
        if let Some(card) = &mut content.card {
            card.vouch(&self.ctx.directory.snapshot(), origin);
            let door = match door {
                Door::Api => "api",
                Door::Xmpp => "xmpp",
                Door::Smtp => "smtp",
                Door::Sdp => "sdp",
                Door::Gateway => "gateway",
            };
            metrics::counter!("switchboard_cards_total", "door" => door).increment(1);
        }
    }

    /// Users, groups and opt-outs.
    pub fn directory(&self) -> &Directory {
        &self.ctx.directory
    }

    /// Changes the directory: `decide` checks the change against the current snapshot;
    /// its records are committed (all or nothing), then the new snapshot is installed and
    /// the notices it asks for are sent from their group. One change at a time, so each
    /// is decided against the one before. Returns once committed.
    pub async fn change_directory<F>(&self, decide: F) -> Result<Plan, ChangeError>
    where
        F: FnOnce(&Snapshot) -> Result<Plan, DirError>,
    {
        let _one = self.ctx.dir_changes.lock().await;
        let snap = self.ctx.directory.snapshot();
        let plan = decide(&snap).map_err(ChangeError::Refused)?;
        self.ctx.store.write_directory(plan.changes.clone()).await?;
        self.ctx.directory.install(plan.snap.clone());
        metrics::counter!("switchboard_directory_changes_total").increment(1);
        for n in &plan.notices {
            self.notice(n).await;
        }
        Ok(plan)
    }

    /// Sends one of the directory's notices, from its group.
    async fn notice(&self, n: &Notice) {
        let env = self.stamp(
            Draft {
                kind: Kind::Message,
                origin: Address::Group(n.group.clone()),
                client: "directory".into(),
                client_ref: None,
                report_to: None,
                to: Vec::new(),
                content: Content {
                    text: n.text.clone(),
                    ..Content::default()
                },
                note: None,
                door: Door::Gateway,
                speak_as: None,
            },
            Resolved {
                origin: Address::Group(n.group.clone()),
                speaker: None,
                to: vec![(n.to.clone(), 0)],
            },
        );
        if let Err(e) = self.submit(env).await {
            tracing::warn!(to = %n.to, error = %e, "a directory notice was not sent");
            metrics::counter!("switchboard_directory_notices_lost_total").increment(1);
        }
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
