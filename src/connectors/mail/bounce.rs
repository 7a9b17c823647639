//! Null-sender mail (`MAIL FROM:<>`): delivery status notifications and bounces. Such mail
//! is never a message for anyone — it reports on a mail the gateway sent.
//!
//! Every mail the gateway sends carries a Message-ID `<{recipient id}.{token}@{hostname}>`
//! whose token is 128 random bits, kept as that recipient's remote id. A bounce names it (in
//! its `text/rfc822-headers` or `message/rfc822` part, or quoted); only a bounce repeating a
//! token the store holds for a mail recipient that was handed to the smarthost (state
//! `sent`) is applied: a failure (`Action: failed`, `Status: 5.x.x`) fails that recipient
//! with the bounce's status, as its report. Everything else is dropped and counted in
//! `switchboard_mail_null_sender_total{outcome}` (`recorded`, `duplicate`, `not_failure`,
//! `unmatched`); the SMTP client gets the same `250` either way.

use mail_parser::{MessageParser, MimeHeaders};
use rand::Rng;

use crate::address::Channel;
use crate::message::{Recipient, RecipientId, State};
use crate::pipeline::{Intake, Receipt, ReceiptResult, ReceiptTarget};

/// Message-IDs looked at in one bounce, at most.
const MAX_CANDIDATES: usize = 8;

/// A fresh Message-ID (without the angle brackets) for mail to recipient `rid`.
pub fn message_id(rid: RecipientId, hostname: &str) -> String {
    let token: [u8; 16] = rand::rng().random();
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    format!("{rid}.{hex}@{hostname}")
}

/// `{recipient id}.{token}` of a Message-ID of ours (`<…@hostname>` or bare).
fn split_id<'a>(id: &'a str, hostname: &str) -> Option<(RecipientId, &'a str)> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, host) = id.rsplit_once('@')?;
    if !host.eq_ignore_ascii_case(hostname) {
        return None;
    }
    let (rid, token) = local.split_once('.')?;
    let rid = RecipientId::parse(rid)?;
    (token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some((rid, token))
}

/// Every `<…@hostname>` in `text` that has our shape.
fn find_ids(text: &[u8], hostname: &str, out: &mut Vec<(RecipientId, String)>) {
    let host = hostname.as_bytes();
    let mut from = 0;
    while out.len() < MAX_CANDIDATES {
        let Some(at) = text[from..].iter().position(|&b| b == b'@') else {
            return;
        };
        let at = from + at;
        from = at + 1;
        let after = &text[at + 1..];
        if after.len() <= host.len()
            || !after[..host.len()].eq_ignore_ascii_case(host)
            || after[host.len()] != b'>'
        {
            continue;
        }
        // The local part: back to the `<`, at most 80 bytes.
        let start = at.saturating_sub(80);
        let Some(lt) = text[start..at].iter().rposition(|&b| b == b'<') else {
            continue;
        };
        let local = &text[start + lt + 1..at];
        let Ok(local) = std::str::from_utf8(local) else {
            continue;
        };
        if let Some((rid, token)) = split_id(&format!("{local}@{hostname}"), hostname)
            && !out.iter().any(|(r, t)| *r == rid && t == token)
        {
            out.push((rid, token.to_string()));
        }
    }
}

/// What a bounce says about its recipient (the first per-recipient block).
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
}

impl Status {
    fn failed(&self) -> bool {
        match self.action.as_deref() {
            Some(a) => a.eq_ignore_ascii_case("failed"),
            None => self.status.as_deref().is_some_and(|s| s.starts_with('5')),
        }
    }
}

/// Reads `Action`, `Status` and `Diagnostic-Code` from a `message/delivery-status` body.
fn read_status(text: &str) -> Status {
    let mut st = Status::default();
    let mut last: Option<&'static str> = None;
    for line in text.lines().take(200) {
        if line.starts_with([' ', '\t']) {
            if last == Some("diag")
                && let Some(d) = st.diagnostic.as_mut()
            {
                d.push(' ');
                d.push_str(line.trim());
            }
            continue;
        }
        last = None;
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "action" if st.action.is_none() => st.action = Some(value.to_ascii_lowercase()),
            "status" if st.status.is_none() => {
                let code: String = value
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .take(11)
                    .collect();
                if code.split('.').count() == 3 && code.split('.').all(|p| !p.is_empty()) {
                    st.status = Some(code);
                }
            }
            "diagnostic-code" if st.diagnostic.is_none() => {
                st.diagnostic = Some(value.to_string());
                last = Some("diag");
            }
            _ => {}
        }
    }
    st
}

/// Printable, one line, bounded: the part of a remote's words that is kept.
fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn count(outcome: &'static str) {
    metrics::counter!("switchboard_mail_null_sender_total", "outcome" => outcome).increment(1);
}

/// Takes one null-sender mail; returns the outcome (also counted).
pub async fn take(intake: &Intake, hostname: &str, raw: &[u8]) -> &'static str {
    let outcome = match apply(intake, hostname, raw).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "cannot apply a bounce");
            "unmatched"
        }
    };
    count(outcome);
    tracing::info!(outcome, "null-sender mail taken as a report");
    outcome
}

async fn apply(
    intake: &Intake,
    hostname: &str,
    raw: &[u8],
) -> Result<&'static str, crate::store::StoreError> {
    let parsed = MessageParser::default().parse(raw);
    let mut ids = Vec::new();
    let mut status_text: Option<String> = None;
    if let Some(msg) = &parsed {
        for part in msg.parts.iter() {
            let ct = part
                .content_type()
                .map(|c| {
                    format!(
                        "{}/{}",
                        c.ctype().to_ascii_lowercase(),
                        c.subtype().unwrap_or("").to_ascii_lowercase()
                    )
                })
                .unwrap_or_default();
            let contents = part.contents();
            if status_text.is_none()
                && matches!(
                    ct.as_str(),
                    "message/delivery-status" | "message/global-delivery-status"
                )
            {
                status_text = Some(String::from_utf8_lossy(contents).into_owned());
            }
            find_ids(contents, hostname, &mut ids);
        }
    }
    find_ids(raw, hostname, &mut ids);
    for (rid, token) in ids {
        let Some(env) = intake.message(rid.msg).await? else {
            continue;
        };
        // The mail recipient this bounce repeats the token of.
        let ours = |rcpt: &Recipient| {
            rcpt.address.channel() == Channel::Mail
                && rcpt
                    .remote_id
                    .as_deref()
                    .and_then(|r| split_id(r, hostname))
                    .is_some_and(|(r, t)| r == rid && same(t, &token))
        };
        let Some(rcpt) = env.recipient(rid.idx).filter(|r| ours(r)) else {
            continue;
        };
        let st = read_status(status_text.as_deref().unwrap_or(""));
        if !st.failed() {
            return Ok("not_failure");
        }
        if rcpt.state != State::Sent {
            return Ok("duplicate");
        }
        let code = st.status.clone().unwrap_or_else(|| "5.0.0".into());
        let why = match st.diagnostic.as_deref().map(clean) {
            Some(d) if !d.is_empty() => {
                format!("bounced by the recipient's mail system: {code} {d}")
            }
            _ => format!("bounced by the recipient's mail system: {code}"),
        };
        let owner = |r: &Recipient| ours(r) && r.state == State::Sent;
        let receipt = Receipt {
            target: ReceiptTarget::Recipient { rid, owner: &owner },
            state: State::Failed,
            final_word: true,
            status: format!("bounce {code}"),
            error: Some(why),
        };
        return Ok(match intake.receipt(receipt).await? {
            ReceiptResult::Applied => {
                tracing::info!(message = %rid.msg, "a bounce failed a mail recipient");
                "recorded"
            }
            ReceiptResult::Duplicate => "duplicate",
            ReceiptResult::NotApplicable => "unmatched",
        });
    }
    Ok("unmatched")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MsgId;

    #[test]
    fn ids_are_found_and_checked() {
        let rid = RecipientId {
            msg: MsgId(0x0123_4567_89ab_cdef),
            idx: 2,
        };
        let id = message_id(rid, "gw.example.org");
        let bracketed = format!("<{id}>");
        let (r, t) = split_id(&bracketed, "gw.example.org").unwrap();
        assert_eq!(r, rid);
        assert_eq!(t.len(), 32);
        assert!(split_id(&id, "other.example.org").is_none());
        assert!(split_id("<0123456789abcdef0002@gw.example.org>", "gw.example.org").is_none());
        let upper = id.replace("gw.example.org", "GW.EXAMPLE.ORG");
        let text = format!(
            "Message-ID: <x@gw.example.org>\r\nReferences: <{id}>\r\n\r\n> Message-Id: <{upper}>\r\n"
        );
        let mut found = Vec::new();
        find_ids(text.as_bytes(), "gw.example.org", &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found.iter().all(|(r, _)| *r == rid));
    }

    #[test]
    fn delivery_status_is_read() {
        let st = read_status(
            "Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; bob@example.com\r\n\
             Action: failed\r\nStatus: 5.1.1 (user unknown)\r\nDiagnostic-Code: smtp; 550 5.1.1\r\n <bob>: no such user\r\n",
        );
        assert!(st.failed());
        assert_eq!(st.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            st.diagnostic.as_deref(),
            Some("smtp; 550 5.1.1 <bob>: no such user")
        );
        assert!(!read_status("Action: delayed\r\nStatus: 4.4.1\r\n").failed());
        assert!(read_status("Status: 5.0.0\r\n").failed());
        assert!(!read_status("").failed());
    }
}
