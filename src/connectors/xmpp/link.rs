//! One component link: connect, authenticate (XEP-0114 handshake), then read and write
//! stanzas until the link is lost; connect again with exponential backoff and jitter.
//!
//! - The link's state is published in `up` (read by `/readyz` and the sink) and as the gauge
//!   `switchboard_xmpp_connected{domain}`; every connection attempt counts in
//!   `switchboard_xmpp_connect_attempts_total{domain}`.
//! - A refused handshake (wrong secret, or `conflict` while the server still holds an old
//!   link for the domain) is logged with its condition and retried like any lost link, so a
//!   misconfiguration never becomes a tight loop against the server.
//! - Messages from IM users are committed by tasks bounded by `inbound_concurrency`; when
//!   all are busy the link stops reading, which pushes back on the server.
//! - Outbound stanzas arrive on a bounded channel; each is acknowledged once written and
//!   flushed to the socket. While the link is down they are refused at once (transient).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_xmpp::connect::{DnsConfig, ServerConnector, TcpServerConnector};
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, Timeouts, XmppStream, XmppStreamElement,
};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ns;
use xmpp_parsers::stanza::Stanza;

use super::config::XmppConfig;
use super::stanzas::{self, Domain, Inbound, Refusal, Submission};
use crate::address::Address;
use crate::connectors::SinkError;
use crate::directory::{Door, SenderRefused};
use crate::message::{Content, Kind, Recipient, RecipientId, State};
use crate::pipeline::{Draft, Intake, Receipt, ReceiptResult, ReceiptTarget, Refused, SubmitError};

/// A stanza for the link, and where to say whether it was written.
pub struct Outgoing {
    pub stanza: Stanza,
    pub ack: Option<oneshot::Sender<Result<(), SinkError>>>,
}

type Stream = XmppStream<BufStream<TcpStream>>;

/// Why a link could not be opened or was lost.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    #[error("the server refused the component: {0}")]
    Refused(String),
    #[error("the server closed the stream: {0}")]
    StreamError(String),
    #[error("the server ended the stream")]
    Closed,
    #[error("{0}")]
    Io(String),
}

/// Everything one link needs.
pub(super) struct Link {
    pub cfg: Arc<XmppConfig>,
    /// Index in `xmpp.components`, for log lines that name the key.
    pub index: usize,
    pub dom: Domain,
    pub secret: String,
    pub up: Arc<AtomicBool>,
    pub rx: mpsc::Receiver<Outgoing>,
    /// For replies from the inbound tasks.
    pub tx: mpsc::Sender<Outgoing>,
    pub intake: Intake,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Link {
    /// Runs until `shutdown`.
    pub async fn run(mut self) {
        let domain = self.dom.domain.clone();
        let connected = metrics::gauge!("switchboard_xmpp_connected", "domain" => domain.clone());
        let attempts = metrics::counter!("switchboard_xmpp_connect_attempts_total", "domain" => domain.clone());
        connected.set(0.0);
        let mut failures: u32 = 0;
        while !self.shutdown.is_cancelled() {
            attempts.increment(1);
            let opened = tokio::select! {
                r = self.connect() => r,
                _ = self.shutdown.cancelled() => break,
            };
            match opened {
                Ok(stream) => {
                    failures = 0;
                    self.up.store(true, Ordering::Release);
                    connected.set(1.0);
                    tracing::info!(domain = %domain, server = %self.cfg.server, "XMPP component link up");
                    let ended = self.session(stream).await;
                    self.up.store(false, Ordering::Release);
                    connected.set(0.0);
                    match ended {
                        Ok(()) => break,
                        Err(e) => {
                            metrics::counter!("switchboard_xmpp_link_lost_total", "domain" => domain.clone())
                                .increment(1);
                            tracing::warn!(domain = %domain, error = %e, "XMPP component link lost; messages for IM users wait in the store until it is back");
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    match &e {
                        LinkError::Refused(cond) if cond.starts_with("conflict") => tracing::warn!(
                            domain = %domain, error = %e,
                            "the server still holds an earlier link for this domain; trying again later"
                        ),
                        LinkError::Refused(_) => tracing::error!(
                            domain = %domain, error = %e,
                            "the XMPP server refused the component handshake: check xmpp.components[{}].secret against the server's component_secret for {domain}",
                            self.index
                        ),
                        _ => {
                            tracing::warn!(domain = %domain, error = %e, "cannot open the XMPP component link")
                        }
                    }
                }
            }
            let wait = self.backoff(failures);
            tracing::debug!(domain = %domain, wait_ms = wait.as_millis() as u64, "next XMPP connection attempt");
            let until = tokio::time::Instant::now() + wait;
            // While down, deliveries are refused at once rather than left to time out.
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(until) => break,
                    out = self.rx.recv() => match out {
                        Some(o) => refuse(o),
                        None => break,
                    },
                }
            }
        }
        connected.set(0.0);
        self.up.store(false, Ordering::Release);
    }

    /// `initial * 2^(failures-1)`, capped, then a random point in its upper half; right
    /// after a link that worked (`failures == 0`), the initial wait.
    fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .cfg
            .reconnect_initial_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(30))
            .min(self.cfg.reconnect_max_ms);
        let half = base / 2;
        Duration::from_millis(half + rand::rng().random_range(0..=base - half))
    }

    async fn connect(&self) -> Result<Stream, LinkError> {
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        match tokio::time::timeout(limit, self.handshake()).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout(limit)),
        }
    }

    async fn handshake(&self) -> Result<Stream, LinkError> {
        let server = &self.cfg.server;
        let addr = tokio::net::lookup_host(server.as_str())
            .await
            .map_err(|e| LinkError::Connect(server.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| LinkError::Connect(server.clone(), "no address".into()))?;
        let jid = Jid::new(&self.dom.domain)
            .map_err(|e| LinkError::Io(format!("bad domain {:?}: {e}", self.dom.domain)))?;
        let keepalive = Duration::from_secs(self.cfg.keepalive_secs);
        let timeouts = Timeouts {
            read_timeout: keepalive,
            response_timeout: (keepalive / 2).max(Duration::from_secs(1)),
        };
        let connector = TcpServerConnector::from(DnsConfig::addr(&addr.to_string()));
        let (mut pending, _) = connector
            .connect(&jid, ns::COMPONENT, timeouts)
            .await
            .map_err(|e| LinkError::Connect(server.clone(), e.to_string()))?;
        let header = pending.take_header();
        let stream_id = header
            .id
            .ok_or_else(|| LinkError::Io("the server sent no stream id".into()))?
            .into_owned();
        let mut stream: Stream = pending.skip_features();
        // Stanzas are small and flushed as they come: do not let Nagle hold them back.
        let _ = stream.get_stream().get_ref().set_nodelay(true);
        let hs = Handshake::from_stream_id_and_password(stream_id, &self.secret);
        stream
            .send(&XmppStreamElement::ComponentHandshake(hs))
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
        loop {
            match stream.next().await {
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                    return Ok(stream);
                }
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                    return Err(LinkError::Refused(e.0.to_string()));
                }
                Some(Ok(_)) => {
                    return Err(LinkError::Refused(
                        "unexpected answer to the handshake".into(),
                    ));
                }
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(e)) => return Err(LinkError::Io(e.to_string())),
                None => return Err(LinkError::Closed),
            }
        }
    }

    /// Serves an open link until it is lost (`Err`) or the gateway stops (`Ok`).
    async fn session(&mut self, mut stream: Stream) -> Result<(), LinkError> {
        let permits = Arc::new(Semaphore::new(self.cfg.inbound_concurrency));
        let ping_seq = AtomicU64::new(0);
        let result = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break Ok(()),
                item = stream.next() => match item {
                    None => break Err(LinkError::Closed),
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(st)))) => {
                        if let Err(e) = self.inbound(&mut stream, st, &permits).await {
                            break Err(e);
                        }
                    }
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                        break Err(LinkError::StreamError(e.0.to_string()));
                    }
                    Some(Ok(FallibleStreamElement::Ok(_))) => {}
                    Some(Ok(FallibleStreamElement::Err(e))) => {
                        metrics::counter!("switchboard_xmpp_stanzas_invalid_total").increment(1);
                        tracing::debug!(domain = %self.dom.domain, error = %e, "unparsable stanza ignored");
                    }
                    Some(Err(ReadError::SoftTimeout)) => {
                        let id = format!("keepalive-{}", ping_seq.fetch_add(1, Ordering::Relaxed));
                        if let Some(ping) = stanzas::self_ping(&self.dom, id) {
                            write(&mut stream, [ping]).await?;
                        }
                    }
                    Some(Err(ReadError::ParseError(e))) => {
                        metrics::counter!("switchboard_xmpp_stanzas_invalid_total").increment(1);
                        tracing::debug!(domain = %self.dom.domain, error = %e, "unparsable element ignored");
                    }
                    Some(Err(ReadError::StreamFooterReceived)) => break Err(LinkError::Closed),
                    Some(Err(ReadError::HardError(e))) => break Err(LinkError::Io(e.to_string())),
                },
                out = self.rx.recv() => {
                    let Some(first) = out else { break Ok(()) };
                    // Take what else is waiting, write it all, flush once.
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match self.rx.try_recv() {
                            Ok(o) => batch.push(o),
                            Err(_) => break,
                        }
                    }
                    let mut failed = None;
                    for o in &batch {
                        if let Err(e) = stream.feed(&XmppStreamElement::Stanza(clone_stanza(&o.stanza))).await {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                    if failed.is_none()
                        && let Err(e) = SinkExt::<&XmppStreamElement>::flush(&mut stream).await
                    {
                        failed = Some(e.to_string());
                    }
                    let n = batch.len() as u64;
                    for o in batch {
                        if let Some(ack) = o.ack {
                            let _ = ack.send(match &failed {
                                None => Ok(()),
                                Some(e) => Err(SinkError::Transient(format!("xmpp link lost while writing: {e}"))),
                            });
                        }
                    }
                    if let Some(e) = failed {
                        break Err(LinkError::Io(e));
                    }
                    metrics::counter!("switchboard_xmpp_stanzas_sent_total", "domain" => self.dom.domain.clone())
                        .increment(n);
                }
            }
        };
        if result.is_ok() {
            // Stopping: say goodbye properly, but never wait long for it.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                SinkExt::<&XmppStreamElement>::close(&mut stream),
            )
            .await;
        }
        result
    }

    /// Handles one inbound stanza. Returns an error only when the link failed.
    async fn inbound(
        &self,
        stream: &mut Stream,
        st: Stanza,
        permits: &Arc<Semaphore>,
    ) -> Result<(), LinkError> {
        metrics::counter!("switchboard_xmpp_stanzas_received_total", "domain" => self.dom.domain.clone())
            .increment(1);
        match stanzas::classify(&self.dom, st, self.cfg.max_body_bytes) {
            Inbound::Reply(replies) => {
                if !replies.is_empty() {
                    write(stream, replies).await?;
                }
            }
            Inbound::Ignore(why) => {
                tracing::trace!(domain = %self.dom.domain, why, "stanza ignored");
            }
            Inbound::Submit(sub) => {
                // Waiting here stops reading the link: back-pressure to the server.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return Ok(());
                };
                let (intake, tx) = (self.intake.clone(), self.tx.clone());
                self.tracker.spawn(async move {
                    let refusal = submit(&intake, sub).await;
                    drop(permit);
                    if let Some(reply) = refusal {
                        let _ = tx.try_send(Outgoing {
                            stanza: reply,
                            ack: None,
                        });
                    }
                });
            }
            Inbound::Receipt { rid, from } => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return Ok(());
                };
                let intake = self.intake.clone();
                self.tracker.spawn(async move {
                    record_report(&intake, rid, &from, None).await;
                    drop(permit);
                });
            }
            Inbound::Bounce {
                rid,
                from,
                condition,
            } => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return Ok(());
                };
                let intake = self.intake.clone();
                self.tracker.spawn(async move {
                    record_report(&intake, rid, &from, Some(condition)).await;
                    drop(permit);
                });
            }
        }
        Ok(())
    }
}

/// Stanzas are written by reference; the batch keeps the originals for the acks.
fn clone_stanza(st: &Stanza) -> Stanza {
    match st {
        Stanza::Iq(i) => Stanza::Iq(i.clone()),
        Stanza::Message(m) => Stanza::Message(m.clone()),
        Stanza::Presence(p) => Stanza::Presence(p.clone()),
    }
}

async fn write(
    stream: &mut Stream,
    stanzas: impl IntoIterator<Item = Stanza>,
) -> Result<(), LinkError> {
    for st in stanzas {
        stream
            .feed(&XmppStreamElement::Stanza(st))
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
    }
    SinkExt::<&XmppStreamElement>::flush(stream)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))
}

fn refuse(o: Outgoing) {
    if let Some(ack) = o.ack {
        let _ = ack.send(Err(SinkError::Transient("xmpp link down".into())));
    }
}

/// Commits a message from an IM user; on refusal, the error stanza to answer with.
async fn submit(intake: &Intake, sub: Submission) -> Option<Stanza> {
    let refuse = |r: Refusal, text: &str| {
        Some(stanzas::error_message(
            &sub.user,
            &sub.gateway_jid,
            sub.id.clone(),
            r,
            text,
        ))
    };
    let mut content = Content {
        text: sub.text.clone(),
        ..Content::default()
    };
    if let Some(xml) = &sub.card {
        match crate::cards::xml::parse(xml, &intake.ctx().cfg.cards) {
            Ok(card) => {
                // The body the sender's client wrote is the card's readable form already.
                content.text.clear();
                crate::cards::attach(&mut content, card);
            }
            Err(e) => {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "invalid_card")
                    .increment(1);
                return refuse(
                    Refusal::NotAcceptable,
                    &format!("The card was refused: {e}."),
                );
            }
        }
    }
    let draft = Draft {
        kind: Kind::Message,
        origin: sub.origin.clone(),
        client: "xmpp".into(),
        client_ref: sub.client_ref.clone(),
        report_to: Some(sub.report_to.clone()),
        to: vec![sub.recipient.clone()],
        content,
        note: None,
        door: Door::Xmpp,
        speak_as: None,
    };
    let env = match intake.envelope(draft) {
        Ok(env) => env,
        Err(Refused::UnknownGroup(g)) => {
            return refuse(
                Refusal::NotAcceptable,
                &format!("There is no group named {:?}.", g.name),
            );
        }
        Err(Refused::Sender(SenderRefused::NotAMember { group, .. })) => {
            return refuse(
                Refusal::Forbidden,
                &format!("Only members may write to group {group:?}."),
            );
        }
        Err(Refused::Sender(e)) => {
            tracing::info!(from = %sub.origin, reason = e.code(), "IM sender refused");
            return refuse(
                Refusal::Forbidden,
                "You are not allowed to send messages through this gateway.",
            );
        }
    };
    match intake.submit(env).await {
        Ok(env) => {
            tracing::debug!(message = %env.id, from = %sub.origin, "message from an IM user accepted");
            None
        }
        Err(SubmitError::QueueFull) => refuse(
            Refusal::Busy,
            "The gateway is busy and did not accept this message. Please send it again in a moment.",
        ),
        Err(SubmitError::ShuttingDown) => refuse(
            Refusal::Unavailable,
            "The gateway is restarting and did not accept this message. Please send it again in a moment.",
        ),
        Err(SubmitError::Store(e)) => {
            tracing::error!(error = %e, "cannot store a message from an IM user");
            refuse(
                Refusal::Internal,
                "The gateway could not store this message. Please send it again later.",
            )
        }
    }
}

/// Records a receipt (`bounce == None`) or a bounce from `from` for recipient `rid`, if
/// `rid` really is a message the gateway delivered to `from`.
async fn record_report(intake: &Intake, rid: RecipientId, from: &BareJid, bounce: Option<String>) {
    let label = if bounce.is_some() {
        "xmpp_error"
    } else {
        "xmpp_received"
    };
    let count = |outcome: &'static str| {
        metrics::counter!("switchboard_reports_received_total", "status" => label, "outcome" => outcome)
            .increment(1);
    };
    // Only the user it was sent to may report on it.
    let theirs = |r: &Recipient| match &r.address {
        Address::Im(j) => j.split('/').next() == Some(from.as_str()),
        _ => false,
    };
    let receipt = match &bounce {
        None => Receipt {
            target: ReceiptTarget::Recipient {
                rid,
                owner: &theirs,
            },
            state: State::Delivered,
            final_word: true,
            status: "xmpp:received".into(),
            error: None,
        },
        Some(cond) => Receipt {
            target: ReceiptTarget::Recipient {
                rid,
                owner: &theirs,
            },
            state: State::Failed,
            final_word: true,
            status: format!("xmpp:{cond}"),
            error: Some(format!("the IM server returned it: {cond}")),
        },
    };
    match intake.receipt(receipt).await {
        Ok(ReceiptResult::Applied) => count("applied"),
        Ok(ReceiptResult::Duplicate) => count("duplicate"),
        Ok(ReceiptResult::NotApplicable) => count("unknown"),
        Err(e) => {
            tracing::warn!(recipient = %rid, error = %e, "cannot record an IM receipt");
            count("error");
        }
    }
}
