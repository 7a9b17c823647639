//! XMPP: the gateway as external components (XEP-0114) of an IM server. Users chat with
//! `+8613800000000@sms.example.org` (or `bob\40example.com@mail.example.org`, or
//! `team42@groups.example.org`) from any XMPP client; the server routes those domains to
//! the gateway, one component link per domain.
//!
//! - Inbound: `chat`/`normal` messages with a body become envelopes (origin `im:` + the
//!   sender's bare JID, recipient mapped from the JID written to by [`crate::address`]); a
//!   XEP-0184 request makes the stanza id the envelope's `client_ref`, and every message
//!   reports back to the sender's full JID. Refusals are answered with an error stanza
//!   carrying a human text. Receipts and bounces for messages the gateway delivered are
//!   recorded as status reports of their recipients.
//! - Outbound ([`XmppSink`]): messages for `im:` recipients are sent from the JID that stands
//!   for their origin (a member speaking as a group: the group's JID with the member's name
//!   as resource, [`speaking_jid`]; with no group component, from the first domain with the
//!   text after `<group> / <member>: `), with the recipient id as stanza id and a receipt
//!   request; reports go
//!   back as `<received/>` (delivered, when a receipt was asked for) or as an error message
//!   with `<recipient-unavailable/>` (failed, expired). A `sent` last word (the network
//!   cannot tell) says nothing: a receipt would claim more than is known.
//! - Links ([`link`]) reconnect by themselves with backoff and jitter; while one is down the
//!   recipients it would carry wait in the store (no attempt counted) and `/readyz` says so.

pub mod config;
mod link;
pub mod stanzas;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xmpp_parsers::jid::Jid;

pub use config::{ComponentConfig, XmppConfig};
use link::{Link, Outgoing};
use stanzas::Domain;

use super::{Sent, SinkError};
use crate::address::{Address, Network};
use crate::content::media::MediaLinks;
use crate::content::voice::Voice;
use crate::message::{Envelope, Kind, State, now_ms};
use crate::pipeline::Intake;

/// Stanzas waiting for one link.
const LINK_QUEUE: usize = 4096;

struct Handle {
    dom: Domain,
    up: Arc<AtomicBool>,
    tx: mpsc::Sender<Outgoing>,
}

/// Delivers `im:` recipients (and reports for IM origins) over the component links.
#[derive(Clone)]
pub struct XmppSink {
    links: Arc<Vec<Handle>>,
    /// Signs the links to media parts (XEP-0066); `None`: parts are only named in the text.
    media: Option<Arc<MediaLinks>>,
    send_timeout: Duration,
    down_retry_ms: i64,
    concurrency: usize,
}

/// The links' tasks, made with the sink and started once the pipeline's intake exists.
pub struct Links {
    cfg: Arc<XmppConfig>,
    parts: Vec<LinkPart>,
}

struct LinkPart {
    index: usize,
    dom: Domain,
    secret: String,
    up: Arc<AtomicBool>,
    rx: mpsc::Receiver<Outgoing>,
    tx: mpsc::Sender<Outgoing>,
}

/// Whether one component link is up, for `/readyz`.
#[derive(Clone)]
pub struct LinkState {
    pub domain: String,
    pub up: Arc<AtomicBool>,
}

impl XmppSink {
    /// The sink and its (not yet started) links.
    pub fn new(
        cfg: &XmppConfig,
        media: Option<Arc<MediaLinks>>,
    ) -> (XmppSink, Links, Vec<LinkState>) {
        let cfg = Arc::new(cfg.clone());
        let mut handles = Vec::new();
        let mut parts = Vec::new();
        let mut states = Vec::new();
        for (i, c) in cfg.components.iter().enumerate() {
            let dom = Domain {
                domain: c.domain.trim().to_ascii_lowercase(),
                network: c.network,
                name: c.name.clone().unwrap_or_else(|| match c.network {
                    Network::Sms => "SMS gateway".into(),
                    Network::Mail => "Mail gateway".into(),
                    Network::Group => "Group messages".into(),
                }),
            };
            let up = Arc::new(AtomicBool::new(false));
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            handles.push(Handle {
                dom: dom.clone(),
                up: up.clone(),
                tx: tx.clone(),
            });
            states.push(LinkState {
                domain: dom.domain.clone(),
                up: up.clone(),
            });
            parts.push(LinkPart {
                index: i,
                dom,
                secret: c.secret.clone(),
                up,
                rx,
                tx,
            });
        }
        let sink = XmppSink {
            links: Arc::new(handles),
            media,
            send_timeout: Duration::from_millis(cfg.send_timeout_ms),
            down_retry_ms: cfg.link_down_retry_ms as i64,
            concurrency: 64,
        };
        (sink, Links { cfg, parts }, states)
    }

    /// Deliveries at the links at once (`[im] concurrency`).
    pub fn with_concurrency(mut self, n: usize) -> XmppSink {
        self.concurrency = n;
        self
    }

    /// The link and sender JID for a delivery: the domain standing for the party the
    /// message (or report) is from, else the first domain, speaking as itself.
    fn route(&self, env: &Envelope) -> Option<(&Handle, Jid, bool)> {
        let party = match (&env.kind, &env.content.report) {
            (Kind::Report, Some(r)) => Address::parse_stored(&r.recipient).ok(),
            _ => Some(env.origin.clone()),
        };
        if let Some(party) = &party
            && let Some(net) = Network::of(party)
            && let Some(h) = self.links.iter().find(|h| h.dom.network == net)
            && let Some(jid) = h.dom.jid_for(party)
        {
            return Some((h, jid, true));
        }
        let h = self.links.first()?;
        Some((h, h.dom.jid()?, false))
    }

    /// Why recipient `idx` of `env` cannot be attempted now, and when to look again: its
    /// link is down. The recipient then waits in the store without spending an attempt.
    pub fn down(&self, env: &Envelope) -> Option<(String, i64)> {
        let (h, _, _) = self.route(env)?;
        (!h.up.load(Ordering::Acquire)).then(|| {
            metrics::counter!("switchboard_xmpp_deferred_total", "domain" => h.dom.domain.clone())
                .increment(1);
            (
                format!("xmpp link down ({})", h.dom.domain),
                now_ms() + self.down_retry_ms,
            )
        })
    }

    /// Hands recipient `idx` of `env` to the IM server. `voice`: the message was spoken as
    /// its group (origin) by a member.
    pub async fn deliver(
        &self,
        env: &Envelope,
        idx: u32,
        voice: Option<&Voice>,
    ) -> Result<Sent, SinkError> {
        let rcpt = env
            .recipient(idx)
            .ok_or_else(|| SinkError::Permanent(format!("no recipient {idx}")))?;
        let Address::Im(to) = &rcpt.address else {
            return Err(SinkError::Permanent(format!(
                "{} is not an IM address",
                rcpt.address
            )));
        };
        let to = Jid::new(to).map_err(|e| SinkError::Permanent(format!("bad JID {to:?}: {e}")))?;
        let (link, from, mapped) = self
            .route(env)
            .ok_or_else(|| SinkError::Permanent("no XMPP component is configured".into()))?;
        let id = env.recipient_id(idx).to_string();
        let nothing = Ok(Sent {
            remote_id: None,
            final_word: true,
        });
        let stanza = match (&env.kind, &env.content.report) {
            (Kind::Report, Some(r)) => {
                let party = Address::parse_stored(&r.recipient)
                    .map(|a| a.value().to_string())
                    .unwrap_or_else(|_| r.recipient.clone());
                match r.state {
                    State::Delivered => match &r.client_ref {
                        Some(of) => stanzas::receipt(from, to, id, of.clone()),
                        // No receipt was asked for.
                        None => return nothing,
                    },
                    State::Failed | State::Expired => {
                        let why = r.detail.as_deref().unwrap_or("no reason given");
                        let text = if r.state == State::Expired {
                            format!("Your message to {party} was not delivered in time: {why}")
                        } else {
                            format!("Your message to {party} could not be delivered: {why}")
                        };
                        stanzas::failure_notice(from, to, r.client_ref.clone(), &text)
                    }
                    // `sent` as the last word: the network cannot say more.
                    _ => return nothing,
                }
            }
            _ if env.content.card.is_some() => {
                let card = env.content.card.as_ref().expect("checked");
                let from = match voice {
                    Some(v) if mapped => speaking_jid(&from, v),
                    _ => from,
                };
                stanzas::card_message(from, to, id, &env.content.text, card)
                    .ok_or_else(|| SinkError::Permanent("the card does not read as XML".into()))?
            }
            _ if env.content.app.is_some() => {
                let app = env.content.app.as_ref().expect("checked");
                stanzas::app_message(from, to, id, &env.content.text, app, &env.id.to_string())
                    .ok_or_else(|| {
                        SinkError::Permanent("the app payload does not read as XML".into())
                    })?
            }
            _ => {
                let mut text = match (mapped, voice) {
                    (true, _) => env.content.text.clone(),
                    (false, Some(v)) => v.prefixed(&env.content.text),
                    (false, None) => format!("{}: {}", env.origin, env.content.text),
                };
                let from = match voice {
                    Some(v) if mapped => speaking_jid(&from, v),
                    _ => from,
                };
                if let Some(subject) = &env.content.subject {
                    text = if text.is_empty() {
                        subject.clone()
                    } else {
                        format!("{subject}\n{text}")
                    };
                }
                let mut links = Vec::new();
                if !env.content.parts.is_empty() {
                    match &self.media {
                        // Each part as an out-of-band link (XEP-0066), also written in the
                        // text for clients that do not show them.
                        Some(media) => {
                            for (i, p) in env.content.parts.iter().enumerate() {
                                let name = p.name.clone().unwrap_or_else(|| format!("part{i}"));
                                let url = media.url(env.id, i, &name);
                                if !text.is_empty() {
                                    text.push('\n');
                                }
                                text.push_str(&url);
                                links.push((url, name));
                            }
                        }
                        None => {
                            let kinds: Vec<&str> = env
                                .content
                                .parts
                                .iter()
                                .map(|p| p.content_type.as_str())
                                .collect();
                            text.push_str(&format!(
                                "\n[{} attachment(s) not shown: {}]",
                                kinds.len(),
                                kinds.join(", ")
                            ));
                        }
                    }
                }
                stanzas::chat_message_with_links(from, to, id, &text, links)
            }
        };
        if !link.up.load(Ordering::Acquire) {
            return Err(SinkError::Transient("xmpp link down".into()));
        }
        let (ack, done) = oneshot::channel();
        let queued = tokio::time::timeout(
            self.send_timeout,
            link.tx.send(Outgoing {
                stanza,
                ack: Some(ack),
            }),
        )
        .await;
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(SinkError::Transient("xmpp link stopped".into())),
            Err(_) => {
                return Err(SinkError::Transient(
                    "xmpp link busy: timed out waiting to send".into(),
                ));
            }
        }
        match tokio::time::timeout(self.send_timeout, done).await {
            Ok(Ok(Ok(()))) => Ok(Sent {
                remote_id: None,
                final_word: true,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(SinkError::Transient("xmpp link stopped".into())),
            Err(_) => Err(SinkError::Transient(
                "xmpp link did not write the message in time".into(),
            )),
        }
    }
}

/// The JID a member speaks as the group from: the group's JID with the member's name as
/// its resource (`team42@groups.example.org/Alice`); the bare group JID if that name makes
/// no valid JID.
pub fn speaking_jid(group: &Jid, voice: &Voice) -> Jid {
    Jid::new(&format!("{}/{}", group.to_bare(), voice.resource())).unwrap_or_else(|_| group.clone())
}

impl Links {
    /// Starts one task per link on `tracker`; each stops when `shutdown` is cancelled.
    pub fn start(self, intake: Intake, tracker: &TaskTracker, shutdown: CancellationToken) {
        for p in self.parts {
            let link = Link {
                cfg: self.cfg.clone(),
                index: p.index,
                dom: p.dom,
                secret: p.secret,
                up: p.up,
                rx: p.rx,
                tx: p.tx,
                intake: intake.clone(),
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
            };
            tracker.spawn(link.run());
        }
    }
}

/// The component links stop with the HTTP server (`shutdown`): no new work comes in while
/// the stages drain; deliveries still queued for them wait in the store.
impl crate::connectors::Service for Links {
    fn start(
        self: Box<Self>,
        intake: Intake,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        Links::start(*self, intake, tracker, shutdown);
        None
    }
}

impl crate::pipeline::Sink for XmppSink {
    fn name(&self) -> &'static str {
        "xmpp"
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn down(&self, d: &crate::pipeline::Delivery) -> Option<(String, i64)> {
        XmppSink::down(self, &d.env)
    }

    fn deliver<'a>(
        &'a self,
        d: &'a crate::pipeline::Delivery,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SinkError>> {
        Box::pin(XmppSink::deliver(self, &d.env, d.idx, d.voice.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_speaks_from_the_group_jid_with_their_name_as_resource() {
        let group = Jid::new("team42@groups.example.org").unwrap();
        let v = Voice {
            group: "Team 42".into(),
            speaker: "Alice  Smith\n".into(),
        };
        assert_eq!(
            speaking_jid(&group, &v).to_string(),
            "team42@groups.example.org/Alice Smith"
        );
        let v = Voice {
            group: "Team 42".into(),
            speaker: "Zoë\u{7}".into(),
        };
        let jid = speaking_jid(&group, &v);
        assert_eq!(jid.resource().map(|r| r.as_str()), Some("Zoë"));
        assert_eq!(jid.to_bare().to_string(), "team42@groups.example.org");
    }
}
