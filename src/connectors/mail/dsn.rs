//! Delivery status notifications (RFC 3464): a `multipart/report;
//! report-type=delivery-status` mail with a human-readable part, the machine-readable
//! `message/delivery-status` part (per-message and per-recipient fields) and the original
//! headers (`text/rfc822-headers`). Built with `mail-builder`.
//!
//! Which outcome makes which action: a handset receipt → `delivered` (2.0.0); the SDP cannot
//! confirm (the last word is "sent") → `relayed` (2.0.0); a permanent failure → `failed`
//! (5.x.x with the reason); time to live ran out → `failed` (5.4.7); still unsent after the
//! configured wait → `delayed` (4.0.0).

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use crate::message::State;

/// The DSN action for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Delivered,
    Relayed,
    Failed,
    Delayed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }

    /// The action a reported recipient state stands for.
    pub fn of(state: State) -> Action {
        match state {
            State::Delivered => Action::Delivered,
            State::Sent => Action::Relayed,
            State::Failed | State::Expired => Action::Failed,
            _ => Action::Delayed,
        }
    }
}

/// The RFC 3463 status code for a reported state and its detail.
pub fn status_code(state: State, detail: Option<&str>) -> &'static str {
    let detail = detail.unwrap_or("");
    match state {
        State::Delivered | State::Sent => "2.0.0",
        State::Expired => "5.4.7",
        State::Failed if detail.starts_with("opted_out") => "5.7.1",
        State::Failed if detail.contains("DeliveryImpossible") => "5.3.0",
        State::Failed => "5.0.0",
        _ => "4.0.0",
    }
}

/// Everything one DSN says.
pub struct Dsn<'a> {
    /// This gateway's host name (`Reporting-MTA`, the sender `MAILER-DAEMON@…`).
    pub reporting_mta: &'a str,
    /// The mail sender being told.
    pub to: &'a str,
    pub envid: Option<&'a str>,
    /// The recipient as the mail world knows it (`8613800000000@sms.example.org`).
    pub final_recipient: &'a str,
    /// `ORCPT`, if the sender gave one.
    pub original_recipient: Option<&'a str>,
    pub action: Action,
    pub status: &'a str,
    /// Why (the SDP's word or the dispatch error).
    pub diagnostic: Option<&'a str>,
    pub arrival: chrono::DateTime<chrono::Utc>,
    pub last_attempt: chrono::DateTime<chrono::Utc>,
    /// The original header block.
    pub headers: &'a str,
    /// `Message-ID` for the report.
    pub message_id: String,
}

/// Strips what must not appear inside one header-field line of the report.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

/// The whole DSN message, ready for `DATA`.
pub fn build(d: &Dsn<'_>) -> Vec<u8> {
    let mut status = String::new();
    status.push_str(&format!("Reporting-MTA: dns; {}\r\n", d.reporting_mta));
    if let Some(envid) = d.envid {
        status.push_str(&format!("Original-Envelope-Id: {}\r\n", one_line(envid)));
    }
    status.push_str(&format!("Arrival-Date: {}\r\n", d.arrival.to_rfc2822()));
    status.push_str("\r\n");
    if let Some(orcpt) = d.original_recipient {
        status.push_str(&format!(
            "Original-Recipient: rfc822; {}\r\n",
            one_line(orcpt)
        ));
    }
    status.push_str(&format!(
        "Final-Recipient: rfc822; {}\r\n",
        one_line(d.final_recipient)
    ));
    status.push_str(&format!("Action: {}\r\n", d.action.as_str()));
    status.push_str(&format!("Status: {}\r\n", d.status));
    if let Some(diag) = d.diagnostic {
        status.push_str(&format!(
            "Diagnostic-Code: x-switchboard; {}\r\n",
            one_line(diag)
        ));
    }
    status.push_str(&format!(
        "Last-Attempt-Date: {}\r\n",
        d.last_attempt.to_rfc2822()
    ));

    let (subject, human) = match d.action {
        Action::Delivered => (
            "Delivery Status Notification (delivered)",
            format!("Your message was delivered to {}.\r\n", d.final_recipient),
        ),
        Action::Relayed => (
            "Delivery Status Notification (relayed)",
            format!(
                "Your message was passed on to {}; the network cannot confirm its delivery.\r\n",
                d.final_recipient
            ),
        ),
        Action::Failed => (
            "Undelivered Mail Returned to Sender",
            format!(
                "Your message could not be delivered to {}.\r\nReason: {}\r\n",
                d.final_recipient,
                one_line(d.diagnostic.unwrap_or("unknown"))
            ),
        ),
        Action::Delayed => (
            "Delayed Mail (still being retried)",
            format!(
                "Your message to {} has not been delivered yet; it is still being retried.\r\n",
                d.final_recipient
            ),
        ),
    };
    let mut headers = d.headers.replace("\r\n", "\n").replace('\n', "\r\n");
    if !headers.ends_with("\r\n") {
        headers.push_str("\r\n");
    }
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(ContentType::new("text/plain"), human),
            MimePart::new(ContentType::new("message/delivery-status"), status),
            MimePart::new(ContentType::new("text/rfc822-headers"), headers),
        ],
    );
    MessageBuilder::new()
        .from((
            "Mail Delivery System".to_string(),
            format!("MAILER-DAEMON@{}", d.reporting_mta),
        ))
        .to(d.to.to_string())
        .subject(subject)
        .message_id(d.message_id.clone())
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    #[test]
    fn a_failed_dsn_reads_back_with_its_fields() {
        let now = chrono::Utc::now();
        let raw = build(&Dsn {
            reporting_mta: "gw.example.org",
            to: "bob@example.com",
            envid: Some("env-42"),
            final_recipient: "8613800000000@sms.example.org",
            original_recipient: Some("8613800000000@sms.example.org"),
            action: Action::Failed,
            status: status_code(State::Failed, Some("DeliveryImpossible")),
            diagnostic: Some("DeliveryImpossible"),
            arrival: now,
            last_attempt: now,
            headers: "From: bob@example.com\r\nSubject: hi\r\n",
            message_id: "x@gw.example.org".into(),
        });
        let msg = MessageParser::default().parse(&raw).unwrap();
        let ct = msg.root_part().content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let status = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .unwrap();
        let text = String::from_utf8_lossy(status.contents()).into_owned();
        for want in [
            "Reporting-MTA: dns; gw.example.org",
            "Original-Envelope-Id: env-42",
            "Final-Recipient: rfc822; 8613800000000@sms.example.org",
            "Original-Recipient: rfc822; 8613800000000@sms.example.org",
            "Action: failed",
            "Status: 5.3.0",
            "Diagnostic-Code: x-switchboard; DeliveryImpossible",
        ] {
            assert!(text.contains(want), "{want} missing in:\n{text}");
        }
        assert_eq!(Action::of(State::Sent), Action::Relayed);
        assert_eq!(Action::of(State::Retry), Action::Delayed);
    }
}
