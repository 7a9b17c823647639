//! The operator's SDP: MMS out over Parlay X 3 `sendMessage` as SOAP with attachments.
//!
//! Results are classified like `sendSms` (see the parent module): a `sendMessageResponse`
//! is sent (its `result` kept as the remote id), SVC0001 / 5xx / transport trouble is
//! temporary, other faults and 4xx are permanent. The response body is read with a bound.

use std::time::Duration;

use rand::Rng;

use super::config::SdpConfig;
use super::parlayx::mms::{
    SendMessage, decode_get_message_response, decode_send_message_response, encode_get_message,
    encode_send_message,
};
use super::parlayx::{self, ReceiptRequest, RequestHeader};
use super::{classify_answer, post_soap, post_soap_bounded, timed};
use crate::connectors::sdp::parlayx::swa::{RelatedPart, build_related, parse_related};
use crate::connectors::{Sent, SinkError};
use crate::content::mms::MmsPlan;

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
        timed("sendMessage", self.post(content_type, body)).await
    }

    async fn post(&self, content_type: String, body: Vec<u8>) -> Result<Sent, SinkError> {
        let (status, answer) = post_soap(&self.client, &self.url, &content_type, body).await?;
        classify_answer(status, &answer, "sendMessage", decode_send_message_response)
    }
}

/// A Parlay X ReceiveMessage client: fetches the content of a received MMS that the
/// notification only names (`getMessage(messageIdentifier)`; the answer carries the parts
/// as SOAP with attachments).
#[derive(Clone)]
pub struct ReceiveClient {
    client: reqwest::Client,
    url: String,
    sdp: SdpConfig,
    max_bytes: usize,
}

impl ReceiveClient {
    /// `max_bytes`: the largest answer read (the parts, base64-encoded, and the envelope).
    pub fn new(url: String, sdp: SdpConfig, max_bytes: usize) -> ReceiveClient {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(sdp.timeout_ms))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        ReceiveClient {
            client,
            url,
            sdp,
            max_bytes,
        }
    }

    /// The parts of message `message_ref` after the SOAP root (SMIL, text, media), in order.
    /// Errors are classified like `sendSms` answers: transport trouble, 5xx and SVC0001 are
    /// temporary; other faults and 4xx are permanent.
    pub async fn get_message(&self, message_ref: &str) -> Result<Vec<RelatedPart>, SinkError> {
        let header = self.sdp.header.as_ref().map(|h| {
            let ts = parlayx::timestamp_now();
            RequestHeader::with_password(&h.sp_id, &h.password, &h.service_id, &ts, "", "")
        });
        let soap = encode_get_message(message_ref, header.as_ref());
        timed("getMessage", self.fetch(soap)).await
    }

    async fn fetch(&self, soap: String) -> Result<Vec<RelatedPart>, SinkError> {
        let (status, answer_type, body) = post_soap_bounded(
            &self.client,
            &self.url,
            parlayx::CONTENT_TYPE,
            soap,
            self.max_bytes,
        )
        .await?;
        let check = |root: &[u8]| {
            classify_answer(status, root, "getMessage", |b| {
                decode_get_message_response(b).map(|()| String::new())
            })
        };
        if !answer_type
            .trim()
            .to_ascii_lowercase()
            .starts_with("multipart/related")
        {
            // No attachments: a fault, or a message with no content beyond the notification.
            check(&body)?;
            return Ok(Vec::new());
        }
        let mut parts = parse_related(&answer_type, &body)
            .map_err(|e| SinkError::Transient(format!("unreadable getMessage answer: {e}")))?;
        let root = parts.remove(0);
        check(&root.bytes)?;
        Ok(parts)
    }
}
