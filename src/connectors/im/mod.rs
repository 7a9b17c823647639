//! HTTP webhooks: messages for `im:` (and `app:`) recipients are POSTed as JSON to the IM
//! server's URL; status reports are POSTed to the origin's `report_url`.
//!
//! Classification: 2xx is delivered; 408, 429 and 5xx and transport errors are temporary;
//! every other status is permanent. Response bodies are not read beyond a small limit.

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
}

#[derive(Serialize)]
struct MessageBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    from: String,
    to: String,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Part]>::is_empty")]
    parts: &'a [Part],
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
        WebhookSink { client, url }
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
                    to: rcpt.address.to_string(),
                    text: &env.content.text,
                    subject: env.content.subject.as_deref(),
                    parts: &env.content.parts,
                }),
            ),
            (None, None) => {
                return Err(SinkError::Permanent(
                    "no webhook URL for this channel".into(),
                ));
            }
        };
        let body = body.map_err(|e| SinkError::Permanent(format!("cannot encode: {e}")))?;
        let resp = self
            .client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
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
        let msg = format!("HTTP {} from {}", status.as_u16(), url);
        if status.is_server_error()
            || status == http::StatusCode::REQUEST_TIMEOUT
            || status == http::StatusCode::TOO_MANY_REQUESTS
        {
            Err(SinkError::Transient(msg))
        } else {
            Err(SinkError::Permanent(msg))
        }
    }
}
