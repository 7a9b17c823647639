//! A received mail made into a message: groups expanded (each member keeps the DSN
//! request of the `RCPT` that named its group), the text for phones, the delivery-report
//! wishes, the virus and spam checks, and the commit that precedes the `250`.

use super::session::Session;
use super::{bounce, parse};
use crate::address::Address;
use crate::directory::Door;
use crate::message::{Content, Kind, MailMeta, MailRcpt, now_ms};
use crate::pipeline::{Draft, Refused, SubmitError};

impl Session<'_> {
    /// Builds the envelope of a received message and commits it; the reply to send.
    pub(super) async fn commit(&mut self, raw: Vec<u8>) -> String {
        let Some(mut txn) = self.txn.take() else {
            return "503 5.5.1 Need MAIL first".into();
        };
        let cfg = &self.shared.mail;
        let intake = &self.shared.intake;
        if txn.from.is_none() {
            // A bounce or DSN: recorded as a report, or dropped; the same answer either way.
            bounce::take(intake, &cfg.hostname, &raw).await;
            return "250 2.0.0 Ok: delivery report taken".into();
        }
        let ticket = txn.ticket.take();
        let parsed = parse::parse(&raw);
        let (to, given): (Vec<Address>, Vec<MailRcpt>) = txn.rcpts.into_iter().unzip();
        let origin = match &txn.from {
            Some(s) => Address::Mail(s.clone()),
            None => Address::Mail(format!("mailer-daemon@{}", cfg.hostname)),
        };
        // `RCPT` refused unknown groups and non-members; the directory may have changed
        // since, so it is asked again.
        let resolved = match intake.resolve(&origin, &to, Door::Smtp, None) {
            Ok(r) => r,
            Err(Refused::UnknownGroup(_)) => return "550 5.1.1 No such group".into(),
            Err(Refused::Sender(e)) => return format!("550 5.7.1 {e}").replace(['\r', '\n'], ""),
        };
        // A group's members keep the DSN request of the `RCPT` that named it.
        let rcpt_meta: Vec<MailRcpt> = resolved
            .to
            .iter()
            .filter_map(|(_, i)| given.get(*i).or(given.first()).cloned())
            .collect();
        let recipients: Vec<Address> = resolved.to.iter().map(|(a, _)| a.clone()).collect();
        if recipients.is_empty() {
            return "554 5.5.1 No recipients left after expanding groups".into();
        }
        let to_phone = recipients.iter().any(|a| matches!(a, Address::Sms(_)));
        let attachments = parsed.parts.len();
        if to_phone && attachments > 0 && cfg.attachments_to_sms == "refuse" {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "attachments")
                .increment(1);
            return "554 5.6.1 Attachments cannot be delivered to a phone; send text only".into();
        }
        let text = if to_phone {
            // With MMS, images, audio and video reach the phone; only the rest is left out.
            let mms = self.shared.mms_out;
            let unsent = parsed
                .parts
                .iter()
                .filter(|p| !(mms && crate::content::mms::is_media(&p.content_type)))
                .count();
            let note =
                (unsent > 0).then(|| format!(" [{unsent} attachment(s) not sent to the phone]"));
            parse::sms_text(&parsed, cfg.sms_max_chars, note.as_deref())
        } else {
            match &parsed.subject {
                Some(s) if !parsed.body.trim().is_empty() => {
                    format!("{s}\n\n{}", parsed.body.trim_end())
                }
                Some(s) => s.clone(),
                None => parsed.body.trim_end().to_string(),
            }
        };
        let now = now_ms();
        let wants_reports = rcpt_meta
            .iter()
            .any(|r| r.notify_success || r.notify_failure || r.notify_delay);
        let report_to = match (&txn.from, wants_reports) {
            (Some(sender), true) => Some(Address::Mail(sender.clone())),
            _ => None,
        };
        let delay_report_at = (cfg.delay_report_secs > 0
            && rcpt_meta.iter().any(|r| r.notify_delay))
        .then(|| now + (cfg.delay_report_secs as i64) * 1000);
        let draft = Draft {
            kind: Kind::Message,
            origin,
            client: "smtp".into(),
            client_ref: txn.envid.clone(),
            report_to,
            // Already expanded: the envelope keeps them in this order, beside their DSN
            // requests.
            to: recipients,
            content: Content {
                text,
                subject: None,
                parts: parsed.parts,
                report: None,
                mail: Some(MailMeta {
                    envid: txn.envid,
                    ret_full: txn.ret_full,
                    rcpts: rcpt_meta,
                    headers: parsed.headers,
                    multimedia: to_phone && attachments > 0,
                    delay_report_at,
                    content_checked: false,
                }),
                app: None,
                card: None,
            },
            note: None,
            door: Door::Smtp,
            speak_as: None,
        };
        let mut env = intake.stamp(draft, resolved);
        if let Err(refusal) = self.shared.pre.check(&mut env, &raw).await {
            return refusal;
        }
        drop(raw);
        match intake.submit(env).await {
            Ok(env) => {
                if let Some(t) = ticket {
                    t.keep();
                }
                tracing::debug!(message = %env.id, peer = %self.ip, "mail accepted");
                format!("250 2.0.0 Ok: queued as {}", env.id)
            }
            Err(SubmitError::QueueFull) => "451 4.3.2 Queue full; try again later".into(),
            Err(SubmitError::ShuttingDown) => {
                "421 4.3.2 Service shutting down; try again later".into()
            }
            Err(SubmitError::Store(e)) => {
                tracing::error!(error = %e, "cannot store a received mail");
                "451 4.3.0 Temporary storage failure; try again later".into()
            }
        }
    }
}
