//! The operator's SDP, the whole connector: SMS out over Parlay X `sendSms` (SOAP 1.1 over
//! HTTP, here), MMS out over `sendMessage` ([`mms_client`]), both as the pipeline's sink
//! ([`SdpSink`]); and what the SDP calls ([`inbound`]): delivery receipts
//! ([`receipts`]) and MO SMS and MMS ([`mo`]) on the SmsNotification
//! ([`sms_notification`]) and MessageNotification ([`message_notification`]) endpoints,
//! authenticated by [`callbacks`]. The wire format is [`parlayx`].
//!
//!
//! Classification of results (decides retry vs failure report):
//! - HTTP 2xx with a `sendSmsResponse`: sent; its `result` is kept as the remote id.
//! - A SOAP fault `SVC0001` (service error), HTTP 5xx without a fault, timeouts, reset
//!   connections: temporary (an attempt is spent).
//! - A refused or unmade connection, HTTP 503 or 429 without a fault: unavailable (the SDP
//!   did not take the request; the message waits without spending an attempt).
//! - Any `POLxxxx` fault and every other `SVCxxxx` fault, other 4xx: permanent.

pub mod callbacks;
pub mod config;
pub mod inbound;
pub mod message_notification;
pub mod mms_client;
pub mod mo;
pub mod parlayx;
pub mod receipts;
mod sink;
pub mod sms_notification;

pub use config::MoConfig;
pub use inbound::{Inbound, MoRouting};
pub use mms_client::MMS_NOTIFY_PATH;
pub use sink::SdpSink;
pub use sms_notification::NOTIFY_PATH;

use std::time::{Duration, Instant};

use parlayx::{ReceiptRequest, RequestHeader, SendSms, SoapError, Version};

use super::{Sent, SinkError, classify_reqwest};
use config::SdpConfig;

/// Largest SDP response body read.
pub(crate) const MAX_RESPONSE: usize = 256 * 1024;

/// A Parlay X SendSms client.
#[derive(Clone)]
pub struct SdpClient {
    client: reqwest::Client,
    cfg: SdpConfig,
    /// The gateway's SmsNotification endpoint, given as `receiptRequest/endpoint`.
    notify_endpoint: String,
}

/// One SMS to send.
pub struct SmsRequest<'a> {
    /// E.164 with `+`.
    pub to: &'a str,
    /// Sender sub-address (service number + extension).
    pub sender: Option<&'a str>,
    pub text: &'a str,
    /// The recipient id: comes back in the delivery receipt.
    pub correlator: &'a str,
}

impl SdpClient {
    pub fn new(cfg: SdpConfig, notify_endpoint: String) -> SdpClient {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .pool_max_idle_per_host(cfg.concurrency)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        SdpClient {
            client,
            cfg,
            notify_endpoint,
        }
    }

    pub fn version(&self) -> Version {
        self.cfg.version
    }

    /// Builds the SOAP request for one SMS.
    pub fn encode(&self, req: &SmsRequest<'_>) -> String {
        let tel = format!("tel:{}", req.to);
        let header = self.cfg.header.as_ref().map(|h| {
            let ts = parlayx::timestamp_now();
            let fa = h.fa.clone().unwrap_or_else(|| tel.clone());
            RequestHeader::with_password(&h.sp_id, &h.password, &h.service_id, &ts, &tel, &fa)
        });
        let send = SendSms {
            addresses: vec![tel],
            sender_name: req.sender.map(str::to_string),
            message: req.text.to_string(),
            receipt_request: Some(ReceiptRequest {
                endpoint: self.notify_endpoint.clone(),
                interface_name: "SmsNotification".into(),
                correlator: req.correlator.to_string(),
            }),
            header,
        };
        parlayx::encode_send_sms(self.cfg.version, &send)
    }

    /// Sends one SMS; `Ok` carries the SDP's request id.
    pub async fn send(&self, req: &SmsRequest<'_>) -> Result<Sent, SinkError> {
        let body = self.encode(req);
        timed("sendSms", self.post(body)).await
    }

    async fn post(&self, body: String) -> Result<Sent, SinkError> {
        let (status, answer) = post_soap(
            &self.client,
            &self.cfg.send_sms_url,
            "text/xml; charset=utf-8",
            body,
        )
        .await?;
        classify_response(status, &answer)
    }
}

/// Runs one SDP request, recording its duration by operation and outcome
/// (`switchboard_sdp_request_duration_seconds`).
pub(crate) async fn timed<T>(
    operation: &'static str,
    request: impl std::future::Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    let started = Instant::now();
    let result = request.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics::histogram!("switchboard_sdp_request_duration_seconds", "operation" => operation, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

/// POSTs one SOAP request to the SDP and reads its answer, at most `MAX_RESPONSE` bytes.
pub(crate) async fn post_soap(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Result<(http::StatusCode, Vec<u8>), SinkError> {
    post_soap_bounded(client, url, content_type, body, MAX_RESPONSE)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Like [`post_soap`], reading at most `max` bytes of answer and also returning its
/// `Content-Type` (a `getMessage` answer is `multipart/related`).
pub(crate) async fn post_soap_bounded(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    max: usize,
) -> Result<(http::StatusCode, String, Vec<u8>), SinkError> {
    let mut resp = client
        .post(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await
        .map_err(|e| classify_reqwest(&e))?;
    let status = resp.status();
    let answer_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify_reqwest(&e))? {
        if buf.len() + chunk.len() > max {
            return Err(SinkError::Transient(format!(
                "SDP response larger than {max} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((status, answer_type, buf))
}

/// Turns an SDP `sendSms` answer into a result (see the module doc for the rules).
pub fn classify_response(status: http::StatusCode, body: &[u8]) -> Result<Sent, SinkError> {
    classify_answer(status, body, "sendSms", parlayx::decode_send_sms_response)
}

/// Turns an SDP answer into a result; `decode` reads the operation's response and gives the
/// SDP's id for the request.
pub(crate) fn classify_answer(
    status: http::StatusCode,
    body: &[u8],
    operation: &str,
    decode: impl FnOnce(&[u8]) -> Result<String, SoapError>,
) -> Result<Sent, SinkError> {
    if status.is_success() {
        return match decode(body) {
            Ok(id) => Ok(Sent {
                remote_id: Some(id),
                final_word: false,
            }),
            Err(SoapError::Fault(f)) => Err(classify_fault(&f)),
            Err(e) => Err(SinkError::Transient(format!(
                "unreadable {operation} response: {e}"
            ))),
        };
    }
    let answered = || format!("SDP answered HTTP {}", status.as_u16());
    match parlayx::decode_fault(body) {
        Ok(f) => Err(classify_fault(&f)),
        // "Not now" from the SDP itself (or a proxy before it): the request was not taken.
        Err(_)
            if status == http::StatusCode::SERVICE_UNAVAILABLE
                || status == http::StatusCode::TOO_MANY_REQUESTS =>
        {
            Err(SinkError::Unavailable(answered()))
        }
        Err(_)
            if status.is_server_error()
                || status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::REQUEST_TIMEOUT =>
        {
            Err(SinkError::Transient(answered()))
        }
        Err(_) => Err(SinkError::Permanent(answered())),
    }
}

/// SVC0001 (a service error on the SDP's side) is worth a retry; every other Parlay X
/// exception is about the request itself or the SP's policy and will not change.
pub fn classify_fault(f: &parlayx::Fault) -> SinkError {
    match f.message_id() {
        Some("SVC0001") => SinkError::Transient(f.to_string()),
        Some(_) => SinkError::Permanent(f.to_string()),
        // A fault with no Parlay X detail: a server fault may pass, a client fault won't.
        None if f.faultcode.ends_with("Server") => SinkError::Transient(f.to_string()),
        None => SinkError::Permanent(f.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlayx::Fault;

    #[test]
    fn faults_are_classified() {
        assert!(classify_fault(&Fault::service("SVC0001", "busy", vec![])).is_transient());
        assert!(!classify_fault(&Fault::service("SVC0002", "bad", vec![])).is_transient());
        assert!(!classify_fault(&Fault::policy("POL0003", "too many", vec![])).is_transient());
    }

    #[test]
    fn http_statuses_are_classified() {
        let t = |code: u16| {
            classify_response(http::StatusCode::from_u16(code).unwrap(), b"oops")
                .unwrap_err()
                .is_transient()
        };
        assert!(t(503));
        assert!(t(500));
        assert!(t(429));
        assert!(!t(404));
        assert!(!t(400));
        let fault = parlayx::encode_fault(&Fault::policy("POL0001", "no", vec![]));
        let e = classify_response(http::StatusCode::INTERNAL_SERVER_ERROR, fault.as_bytes())
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
    }
}
