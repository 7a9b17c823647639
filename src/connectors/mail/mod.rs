//! The mail bridge: an SMTP server for mail to the gateway's domains (phones, IM users,
//! groups), an SMTP client that hands mail the gateway makes to a smarthost, and delivery
//! status notifications (RFC 3464) back to mail senders.
//!
//! - `server`: inbound SMTP on `smtp-proto` (+ STARTTLS with `tokio-rustls`); `250` only
//!   after the commit, `451 4.3.2` when the queue is full.
//! - `parse`: the received mail as gateway content (`mail-parser`).
//! - `client`: the smarthost pool (lettre over `TCP_NODELAY` sockets, `deadpool` bounded).
//! - `dsn`: the reports (`mail-builder`).
//! - `data`: the DATA framing (only `CRLF . CRLF` ends a message; bare CR/LF refused).
//! - `bounce`: null-sender mail, matched to the mail it reports on by its Message-ID token.
//! - `precheck`: virus and spam checks before the `250`.
//! - `limits`: messages per sender per minute.
//!
//! [`MailSink`] is the dispatch sink of the `mail` channel: a message becomes a mail from
//! the origin's mapped address (`8613800000000@sms.example.org`), a status report for a mail
//! origin becomes a DSN — if the sender asked for that outcome (`NOTIFY`), else it is
//! settled without sending anything. A message a member spoke as a group comes from the
//! group, the member named beside it, and replies go to the group:
//! `From: "Team 42 (Alice)" <team42@groups.example.org>`,
//! `Reply-To: <team42@groups.example.org>` ([`group_from`]). An app's message comes from
//! `"Weather" <noreply@gw.example.org>` (`[mail] hostname`), the app's name as its subject.

pub mod bounce;
pub mod client;
pub mod config;
pub mod data;
pub mod dsn;
pub mod limits;
pub mod parse;
pub mod precheck;
mod receive;
pub mod server;
pub mod service;
mod session;
mod sink;

use std::sync::Arc;
use std::time::Duration;

use mail_builder::MessageBuilder;
use tokio_util::sync::CancellationToken;

use super::{Sent, SinkError};
use crate::address::{Address, MailDomains};
use crate::content::voice::Voice;
use crate::message::{Envelope, MailRcpt, MsgId, ReportBody};
use crate::pipeline::{Intake, Messages};
use config::MailConfig;

/// The sink of the `mail` channel.
#[derive(Clone)]
pub struct MailSink {
    inner: Arc<Inner>,
    concurrency: usize,
}

struct Inner {
    client: client::SmtpClient,
    messages: Messages,
    hostname: String,
    domains: MailDomains,
}

impl MailSink {
    /// A sink sending through `cfg.smarthost`; `messages` are read for DSNs (the original
    /// message's envelope parameters).
    pub fn new(cfg: &MailConfig, messages: Messages) -> Result<MailSink, String> {
        let ca_pem = match &cfg.smarthost_ca {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| format!("mail.smarthost_ca: cannot read {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let client = client::SmtpClient::new(client::ClientConfig {
            smarthost: &cfg.smarthost,
            hello_name: &cfg.hostname,
            starttls: cfg.smarthost_starttls,
            ca_pem,
            max_connections: cfg.smarthost_connections,
            timeout: Duration::from_millis(cfg.timeout_ms),
        })?;
        Ok(MailSink {
            inner: Arc::new(Inner {
                client,
                messages,
                hostname: cfg.hostname.clone(),
                domains: cfg.domains(),
            }),
            concurrency: cfg.concurrency,
        })
    }

    /// Delivers recipient `idx` of `env`: a message as a mail, a report as a DSN. `voice`:
    /// the message was spoken as its group (origin) by a member.
    pub async fn deliver(
        &self,
        env: &Envelope,
        idx: u32,
        voice: Option<&Voice>,
    ) -> Result<Sent, SinkError> {
        let rcpt = env
            .recipient(idx)
            .ok_or_else(|| SinkError::Permanent(format!("no recipient {idx}")))?;
        let Address::Mail(to) = &rcpt.address else {
            return Err(SinkError::Permanent(format!(
                "{} is not a mail address",
                rcpt.address
            )));
        };
        if let Some(report) = &env.content.report {
            return self.deliver_report(env, to, report).await;
        }
        let me = &self.inner;
        let from = me
            .domains
            .mail_for(&env.origin)
            .unwrap_or_else(|| format!("noreply@{}", me.hostname));
        let subject = match (&env.origin, &env.content.subject) {
            (_, Some(s)) if !s.trim().is_empty() => s.clone(),
            (Address::Group(_), _) if let Some(v) = voice => format!("Message from {}", v.group),
            (Address::Sms(n), _) if !env.content.parts.is_empty() => format!("MMS from {n}"),
            (Address::Sms(n), _) => format!("SMS from {n}"),
            (other, _) => format!("Message from {}", other.value()),
        };
        // The Message-ID's token, kept as the remote id, is what a bounce must repeat.
        let message_id = bounce::message_id(env.recipient_id(idx), &me.hostname);
        let mut b = MessageBuilder::new();
        b = match (voice, &env.content.app) {
            (Some(v), _) => group_from(b, v, &from),
            // An app has no mail address of its own: its name shows who it is from.
            (None, Some(app)) => b.from((app.name.clone(), from.clone())),
            (None, None) => b.from(from.clone()),
        };
        let mut b = b
            .to(to.clone())
            .subject(subject)
            .message_id(message_id.clone())
            .text_body(env.content.text.clone());
        for p in &env.content.parts {
            b = b.attachment(
                p.content_type.clone(),
                p.name.clone().unwrap_or_else(|| "part".into()),
                p.bytes.clone(),
            );
        }
        let bytes = b
            .write_to_vec()
            .map_err(|e| SinkError::Permanent(format!("cannot build the mail: {e}")))?;
        let reply = me.client.send(Some(&from), to, &bytes).await?;
        tracing::debug!(message = %env.id, smarthost = %reply, "mail handed to the smarthost");
        Ok(Sent {
            remote_id: Some(format!("<{message_id}>")),
            final_word: true,
        })
    }

    async fn deliver_report(
        &self,
        env: &Envelope,
        to: &str,
        report: &ReportBody,
    ) -> Result<Sent, SinkError> {
        let me = &self.inner;
        let original = match MsgId::parse(&report.message_id) {
            Some(id) => me
                .messages
                .load(id)
                .await
                .map_err(|e| SinkError::Transient(format!("store: {e}")))?,
            None => None,
        };
        let meta = original.as_ref().and_then(|o| o.content.mail.as_ref());
        let rcpt_idx = original.as_ref().and_then(|o| {
            o.recipients
                .iter()
                .find(|r| r.address.to_string() == report.recipient)
                .map(|r| r.idx)
        });
        let rcpt_meta: Option<&MailRcpt> = meta
            .zip(rcpt_idx)
            .and_then(|(m, i)| m.rcpts.get(i as usize));
        let action = dsn::Action::of(report.state);
        // No DSN parameters on record (not a mail origin): report failures only.
        let wanted = match (rcpt_meta, action) {
            (Some(r), dsn::Action::Delivered | dsn::Action::Relayed) => r.notify_success,
            (Some(r), dsn::Action::Failed) => r.notify_failure,
            (Some(r), dsn::Action::Delayed) => r.notify_delay,
            (None, a) => a == dsn::Action::Failed,
        };
        if !wanted {
            metrics::counter!("switchboard_dsn_total", "action" => action.as_str(), "outcome" => "not_requested")
                .increment(1);
            return Ok(Sent {
                remote_id: None,
                final_word: true,
            });
        }
        let final_recipient = Address::parse_stored(&report.recipient)
            .ok()
            .and_then(|a| me.domains.mail_for(&a))
            .unwrap_or_else(|| report.recipient.clone());
        let arrival = original
            .as_ref()
            .map(|o| o.created_at)
            .unwrap_or(env.created_at);
        let ts = |ms: i64| {
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default()
        };
        let bytes = dsn::build(&dsn::Dsn {
            reporting_mta: &me.hostname,
            to,
            envid: meta.and_then(|m| m.envid.as_deref()),
            final_recipient: &final_recipient,
            original_recipient: rcpt_meta.and_then(|r| r.orcpt.as_deref()),
            action,
            status: dsn::status_code(report.state, report.detail.as_deref()),
            diagnostic: report.detail.as_deref(),
            arrival: ts(arrival),
            last_attempt: ts(report.at_ms),
            headers: meta.map(|m| m.headers.as_str()).unwrap_or(""),
            message_id: format!("{}.dsn@{}", env.id, me.hostname),
        });
        let reply = me.client.send(None, to, &bytes).await?;
        metrics::counter!("switchboard_dsn_total", "action" => action.as_str(), "outcome" => "sent")
            .increment(1);
        Ok(Sent {
            remote_id: Some(reply).filter(|r| !r.is_empty()),
            final_word: true,
        })
    }
}

/// The headers of a mail a member spoke as the group at `group_mail`: from the group, with
/// the group's and the member's names as its display name, and replies to the group (where
/// they reach every other member).
pub fn group_from<'x>(
    b: MessageBuilder<'x>,
    voice: &Voice,
    group_mail: &str,
) -> MessageBuilder<'x> {
    b.from((voice.mail_name(), group_mail.to_string()))
        .reply_to(group_mail.to_string())
}

/// Makes the `delayed` reports that have come due, until `stop`. The due times live in the
/// store, so a restart neither loses nor repeats them.
pub async fn delay_reporter(intake: Intake, wait_ms: u64, stop: CancellationToken) {
    let period = Duration::from_millis((wait_ms / 10).clamp(100, 30_000));
    loop {
        match intake.delay_reports(crate::message::now_ms(), 256).await {
            Ok(n) if n > 0 => {
                metrics::counter!("switchboard_dsn_delayed_created_total").increment(n as u64);
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot make delayed reports"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_mail_is_from_the_group_and_answered_to_it() {
        let v = Voice {
            group: "Team 42".into(),
            speaker: "Alice".into(),
        };
        let bytes = group_from(MessageBuilder::new(), &v, "team42@groups.example.org")
            .to("bob@example.com")
            .subject("hi")
            .text_body("hello")
            .write_to_vec()
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("From: \"Team 42 (Alice)\" <team42@groups.example.org>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Reply-To: <team42@groups.example.org>\r\n"),
            "{text}"
        );
        let parsed = mail_parser::MessageParser::default().parse(&text).unwrap();
        let from = parsed.from().and_then(|f| f.first()).unwrap();
        assert_eq!(from.name(), Some("Team 42 (Alice)"));
        assert_eq!(from.address(), Some("team42@groups.example.org"));
    }

    #[test]
    fn a_speaker_name_outside_ascii_is_encoded() {
        let v = Voice {
            group: "Équipe \"42\"".into(),
            speaker: "Zoë".into(),
        };
        let bytes = group_from(MessageBuilder::new(), &v, "team42@groups.example.org")
            .to("bob@example.com")
            .text_body("hello")
            .write_to_vec()
            .unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let from = parsed.from().and_then(|f| f.first()).unwrap();
        assert_eq!(from.name(), Some("Équipe \"42\" (Zoë)"));
        let reply = parsed.reply_to().and_then(|f| f.first()).unwrap();
        assert_eq!(reply.address(), Some("team42@groups.example.org"));
    }
}
