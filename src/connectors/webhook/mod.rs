//! HTTP webhooks: messages for `im:` (and `app:`) recipients are POSTed as JSON to the IM
//! server's URL; status reports are POSTed to the origin's `report_url`. A message a member
//! spoke as a group is `"from":"group:team42"` with the member as `"speaker"`.
//!
//! Classification: 2xx is delivered; 408, 429 and 5xx and transport errors are temporary;
//! every other status is permanent. Response bodies are not read beyond a small limit.
//!
//! Signed POSTs: with a secret (`[im] secret`, `[reports] secret`) every POST carries
//! `X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`;
//! a receiver recomputes it over the raw body ([`verify_signature`]) and refuses a stale
//! `t`, which authenticates the sender and the body and bounds replays.

pub mod config;

use std::time::Duration;

use serde::Serialize;

use super::{Sent, SinkError, classify_reqwest};
use crate::message::{Envelope, Part, ReportBody};

/// One webhook target kind.
#[derive(Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    /// Fixed URL (IM server); `None` posts to the recipient's own URL (report callbacks).
    url: Option<String>,
    /// Signs every POST.
    key: Option<ring::hmac::Key>,
    concurrency: usize,
    name: &'static str,
}

/// The header that carries a webhook POST's signature.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// The signature header's value for `body` sent at `t` (unix seconds).
pub fn signature(key: &ring::hmac::Key, t: i64, body: &[u8]) -> String {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut hex = String::with_capacity(64);
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("t={t},v1={hex}")
}

/// Whether `header` (the [`SIGNATURE_HEADER`] value) signs `body` under `secret`, with a
/// `t` within `tolerance_secs` of `now` (unix seconds). For receivers.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance_secs || v1.len() != 64 {
        return false;
    }
    let Some(tag) = (0..32)
        .map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = Vec::with_capacity(body.len() + 21);
    msg.extend_from_slice(t.to_string().as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    ring::hmac::verify(&key, &msg, &tag).is_ok()
}

#[derive(Serialize)]
struct MessageBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    from: String,
    /// The member who spoke as the group `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    speaker: Option<String>,
    to: String,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Part]>::is_empty")]
    parts: &'a [Part],
    /// An app message: `{id, app, name, kind, mode, content, by?}` (the XML payload in
    /// `content`, the readable text in `text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<AppPayload<'a>>,
    /// A business card: the card element (`schemas/card.xsd`); its vCard is among `parts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    card: Option<String>,
}

#[derive(Serialize)]
struct AppPayload<'a> {
    id: String,
    app: &'a str,
    name: &'a str,
    kind: &'static str,
    mode: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
}

#[derive(Serialize)]
struct ReportPayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    report: &'a ReportBody,
}

impl WebhookSink {
    pub fn new(url: Option<String>, timeout: Duration, concurrency: usize) -> WebhookSink {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        WebhookSink {
            name: if url.is_some() {
                "im webhook"
            } else {
                "report webhook"
            },
            client,
            url,
            key: None,
            concurrency,
        }
    }

    /// Signs every POST with `secret` (none when empty).
    pub fn with_secret(mut self, secret: &str) -> WebhookSink {
        self.key = (!secret.is_empty())
            .then(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()));
        self
    }

    /// Delivers recipient `idx` of `env`.
    pub async fn deliver(&self, env: &Envelope, idx: u32) -> Result<Sent, SinkError> {
        let rcpt = env
            .recipient(idx)
            .ok_or_else(|| SinkError::Permanent(format!("no recipient {idx}")))?;
        let (url, body) = match (&env.content.report, &self.url) {
            (Some(report), _) => (
                rcpt.address.value().to_string(),
                serde_json::to_vec(&ReportPayload {
                    kind: "report",
                    report,
                }),
            ),
            (None, Some(url)) => (
                url.clone(),
                serde_json::to_vec(&MessageBody {
                    kind: "message",
                    id: env.recipient_id(idx).to_string(),
                    from: env.origin.to_string(),
                    speaker: env.speaker.as_ref().map(|a| a.to_string()),
                    to: rcpt.address.to_string(),
                    text: &env.content.text,
                    subject: env.content.subject.as_deref(),
                    parts: &env.content.parts,
                    app: env.content.app.as_ref().map(|a| AppPayload {
                        id: env.id.to_string(),
                        app: &a.app,
                        name: &a.name,
                        kind: a.kind.as_str(),
                        mode: a.mode.as_str(),
                        content: &a.content,
                        by: a.by.as_deref(),
                    }),
                    card: env.content.card.as_ref().map(crate::cards::xml::to_xml),
                }),
            ),
            (None, None) => {
                return Err(SinkError::Permanent(
                    "no webhook URL for this channel".into(),
                ));
            }
        };
        let body = body.map_err(|e| SinkError::Permanent(format!("cannot encode: {e}")))?;
        let mut req = self
            .client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            req = req.header(
                SIGNATURE_HEADER,
                signature(key, crate::message::now_ms() / 1000, &body),
            );
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Sent {
                remote_id: None,
                final_word: true,
            });
        }
        Err(super::classify_status(status, &url))
    }
}

impl crate::pipeline::Sink for WebhookSink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn deliver<'a>(
        &'a self,
        d: &'a crate::pipeline::Delivery,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SinkError>> {
        Box::pin(WebhookSink::deliver(self, &d.env, d.idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_does_not() {
        let secret = b"a-webhook-secret-of-some-length";
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let body = br#"{"type":"message","text":"hi"}"#;
        let sig = signature(&key, 1_700_000_000, body);
        assert!(verify_signature(secret, &sig, body, 1_700_000_010, 300));
        assert!(!verify_signature(
            secret,
            &sig,
            br#"{"type":"message","text":"ho"}"#,
            1_700_000_010,
            300
        ));
        assert!(!verify_signature(
            b"another-secret-entirely",
            &sig,
            body,
            1_700_000_010,
            300
        ));
        assert!(
            !verify_signature(secret, &sig, body, 1_700_001_000, 300),
            "stale"
        );
        assert!(!verify_signature(
            secret,
            "t=1700000000",
            body,
            1_700_000_000,
            300
        ));
        assert!(!verify_signature(
            secret,
            "v1=zz,t=x",
            body,
            1_700_000_000,
            300
        ));
    }
}
