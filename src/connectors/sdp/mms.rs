//! The operator's SDP: MMS out over Parlay X 3 `sendMessage` as SOAP with attachments.
//!
//! Results are classified like `sendSms` (see the parent module): a `sendMessageResponse`
//! is sent (its `result` kept as the remote id), SVC0001 / 5xx / transport trouble is
//! temporary, other faults and 4xx are permanent. The response body is read with a bound.

use std::time::{Duration, Instant};

use rand::Rng;

use super::parlayx::mms::{SendMessage, decode_send_message_response, encode_send_message};
use super::parlayx::{self, ReceiptRequest, RequestHeader, SoapError};
use super::{MAX_RESPONSE, classify_fault};
use crate::config::SdpConfig;
use crate::connectors::{Sent, SinkError, classify_reqwest};
use crate::content::mms::{MmsPlan, build_related};

/// Where the SDP posts MMS notifications (`receiptRequest` endpoint of `sendMessage`).
pub const MMS_NOTIFY_PATH: &str = "/parlayx/MessageNotification";

/// A Parlay X SendMessage client.
#[derive(Clone)]
pub struct MmsClient {
    client: reqwest::Client,
    url: String,
    sdp: SdpConfig,
    notify_endpoint: String,
}

/// One MMS to send.
pub struct MmsRequest<'a> {
    /// E.164 with `+`.
    pub to: &'a str,
    pub sender: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub plan: &'a MmsPlan,
    /// The recipient id: comes back in the delivery receipt.
    pub correlator: &'a str,
}

impl MmsClient {
    pub fn new(url: String, sdp: SdpConfig, notify_endpoint: String) -> MmsClient {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(sdp.timeout_ms))
            .pool_max_idle_per_host(sdp.concurrency)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        MmsClient {
            client,
            url,
            sdp,
            notify_endpoint,
        }
    }

    /// The SOAP envelope of one MMS.
    pub fn envelope(&self, req: &MmsRequest<'_>) -> String {
        let tel = format!("tel:{}", req.to);
        let header = self.sdp.header.as_ref().map(|h| {
            let ts = parlayx::timestamp_now();
            let fa = h.fa.clone().unwrap_or_else(|| tel.clone());
            RequestHeader::with_password(&h.sp_id, &h.password, &h.service_id, &ts, &tel, &fa)
        });
        encode_send_message(&SendMessage {
            addresses: vec![tel],
            sender_address: req.sender.map(|s| format!("tel:{s}")),
            subject: req.subject.map(str::to_string),
            receipt_request: Some(ReceiptRequest {
                endpoint: self.notify_endpoint.clone(),
                interface_name: "MessageNotification".into(),
                correlator: req.correlator.to_string(),
            }),
            header,
        })
    }

    /// Sends one MMS; `Ok` carries the SDP's request id.
    pub async fn send(&self, req: &MmsRequest<'_>) -> Result<Sent, SinkError> {
        let soap = self.envelope(req);
        let boundary = format!("sb-mms-{:016x}", rand::rng().random::<u64>());
        let (content_type, body) = build_related(&soap, &req.plan.text, &req.plan.parts, &boundary);
        let started = Instant::now();
        let result = self.post(content_type, body).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(SinkError::Transient(_)) => "transient",
            Err(SinkError::Permanent(_)) => "permanent",
        };
        metrics::histogram!("switchboard_sdp_request_duration_seconds", "operation" => "sendMessage", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn post(&self, content_type: String, body: Vec<u8>) -> Result<Sent, SinkError> {
        let mut resp = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, content_type)
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let status = resp.status();
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify_reqwest(&e))? {
            if buf.len() + chunk.len() > MAX_RESPONSE {
                return Err(SinkError::Transient(format!(
                    "SDP response larger than {MAX_RESPONSE} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        classify(status, &buf)
    }
}

fn classify(status: http::StatusCode, body: &[u8]) -> Result<Sent, SinkError> {
    if status.is_success() {
        return match decode_send_message_response(body) {
            Ok(id) => Ok(Sent {
                remote_id: Some(id),
                final_word: false,
            }),
            Err(SoapError::Fault(f)) => Err(classify_fault(&f)),
            Err(e) => Err(SinkError::Transient(format!(
                "unreadable sendMessage response: {e}"
            ))),
        };
    }
    match parlayx::decode_fault(body) {
        Ok(f) => Err(classify_fault(&f)),
        Err(_)
            if status.is_server_error()
                || status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::REQUEST_TIMEOUT =>
        {
            Err(SinkError::Transient(format!(
                "SDP answered HTTP {}",
                status.as_u16()
            )))
        }
        Err(_) => Err(SinkError::Permanent(format!(
            "SDP answered HTTP {}",
            status.as_u16()
        ))),
    }
}
