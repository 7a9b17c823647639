//! The simulator's Parlay X multimedia messaging:
//!
//! * SendMessage: accepts `sendMessage` as SOAP with attachments (`multipart/related`),
//!   keeps what it received (the envelope's fields and every part) and sends
//!   `notifyMessageDeliveryReceipt` to the `receiptRequest` endpoint.
//! * MO MMS (`POST /sim/mo-mms`): sends `notifyMessageReception` to the gateway, either with
//!   the content attached (`inline`) or naming it by `messageIdentifier`, for the gateway to
//!   fetch with ReceiveMessage `getMessage` (served here; `transient_error_rate` and `stall`
//!   apply to it as to sendSms).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{
    ReceiptJob, Simulator, bad_json, bump, json_response, lock, mo_answer, post_typed, read_lock,
    simulated_503, soap_response, tel, truncate,
};
use crate::connectors::sdp::parlayx::mms::{
    MessageReception, MessageReference, decode_get_message, decode_send_message,
    encode_get_message_response, encode_notify_message_reception, encode_send_message_response,
};
use crate::connectors::sdp::parlayx::swa::{build_related, parse_related};
use crate::connectors::sdp::parlayx::{self, DeliveryStatus, Fault};
use crate::message::Part;

/// Where the simulator serves SendMessage.
pub const SEND_MESSAGE_PATH: &str = "/parlayx/SendMessageService/services/SendMessage";
/// Where the simulator serves ReceiveMessage (`getMessage`).
pub const RECEIVE_MESSAGE_PATH: &str = "/parlayx/ReceiveMessageService/services/ReceiveMessage";

/// Body of `POST /sim/mo-mms`: an MMS from a phone.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MmsMoRequest {
    /// Subscriber, `+8613800000000` or `tel:+86…`.
    pub from: String,
    /// Service number (+ extension), `tel:` optional.
    pub to: String,
    #[serde(default)]
    pub subject: Option<String>,
    /// The text (a `text/plain` part of the content).
    #[serde(default)]
    pub text: String,
    /// Media parts (`bytes` in base64).
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Attach the content to the notification instead of naming it for `getMessage`.
    #[serde(default)]
    pub inline: bool,
    /// Overrides the configured `mms_notify_url`.
    #[serde(default)]
    pub notify_url: Option<String>,
}

/// A received MMS waiting for `getMessage`.
pub(super) struct Stored {
    id: String,
    text: String,
    parts: Vec<Part>,
}

/// One part of a received MMS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMmsPart {
    pub content_type: String,
    pub content_id: Option<String>,
    pub name: Option<String>,
    pub bytes: Vec<u8>,
}

/// An MMS accepted by the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMms {
    pub request_id: String,
    pub addresses: Vec<String>,
    pub sender_address: Option<String>,
    pub subject: Option<String>,
    pub correlator: Option<String>,
    /// The HTTP `Content-Type` it came with.
    pub content_type: String,
    /// Every part after the SOAP envelope (SMIL, text, media), in order.
    pub parts: Vec<SimMmsPart>,
}

fn bad(text: String) -> Response {
    let fault = Fault::service(
        "SVC0002",
        "Invalid input value for message part %1",
        vec![truncate(&text, 200)],
    );
    soap_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        parlayx::encode_fault(&fault),
    )
}

pub(super) async fn send_message(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sim.wait_unstalled().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parts = match parse_related(&content_type, &body) {
        Ok(p) => p,
        Err(e) => return bad(format!("body: {e}")),
    };
    let Some((root, rest)) = parts.split_first() else {
        return bad("body: no parts".into());
    };
    let req = match decode_send_message(&root.bytes) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let (transient, impossible, send_receipts, delay, keep) = {
        let c = read_lock(&sim.cfg);
        (
            c.transient_error_rate,
            c.impossible_rate,
            c.send_receipts,
            c.receipt_delay_ms,
            c.keep_messages,
        )
    };
    if let Some(refused) = simulated_503(&sim, transient) {
        return refused;
    }
    let request_id = sim.next_request_id();
    if send_receipts && let Some(rr) = &req.receipt_request {
        sim.ensure_worker();
        let due = Instant::now() + Duration::from_millis(delay);
        for address in &req.addresses {
            let status = if impossible > 0.0 && rand::random::<f64>() < impossible {
                DeliveryStatus::DeliveryImpossible
            } else {
                DeliveryStatus::DeliveredToTerminal
            };
            let job = ReceiptJob {
                due,
                endpoint: rr.endpoint.clone(),
                correlator: rr.correlator.clone(),
                address: address.clone(),
                status,
                version: Default::default(),
                mms: true,
                creds: read_lock(&sim.cfg).callbacks.clone(),
            };
            if sim.receipts_tx.send(job).is_err() {
                bump(&sim.counters.receipts_failed);
            }
        }
    }
    if keep > 0 {
        let msg = SimMms {
            request_id: request_id.clone(),
            addresses: req.addresses,
            sender_address: req.sender_address,
            subject: req.subject,
            correlator: req.receipt_request.map(|r| r.correlator),
            content_type,
            parts: rest
                .iter()
                .map(|p| SimMmsPart {
                    content_type: p.content_type.clone(),
                    content_id: p.content_id.clone(),
                    name: p.name.clone(),
                    bytes: p.bytes.clone(),
                })
                .collect(),
        };
        let mut ring = lock(&sim.mms);
        while ring.len() >= keep {
            ring.pop_front();
        }
        ring.push_back(msg);
    }
    soap_response(StatusCode::OK, encode_send_message_response(&request_id))
}

fn boundary() -> String {
    format!("sim-mms-{:016x}", rand::random::<u64>())
}

pub(super) async fn mo(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let req: MmsMoRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_json(&e),
    };
    let (configured, keep, creds) = {
        let c = read_lock(&sim.cfg);
        (
            c.mms_notify_url.clone(),
            c.keep_messages.max(1),
            c.callbacks.clone(),
        )
    };
    let Some(url) = req.notify_url.clone().or(configured) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "no mms_notify_url configured or given" }),
        );
    };
    let id = format!("mm-{}", sim.next_request_id());
    let correlator = format!("mo-{id}");
    let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let soap = encode_notify_message_reception(&MessageReception {
        correlator: correlator.clone(),
        message: MessageReference {
            message_identifier: (!req.inline).then(|| id.clone()),
            activation_number: tel(&req.to),
            sender_address: tel(&req.from),
            subject: req.subject.clone(),
            priority: "Normal".into(),
            message: None,
            date_time: Some(now),
        },
    });
    let soap = creds.sign_envelope(soap);
    let (content_type, body) = if req.inline {
        build_related(&soap, &req.text, &req.parts, &boundary())
    } else {
        let mut inbox = lock(&sim.mms_inbox);
        while inbox.len() >= keep {
            inbox.pop_front();
        }
        inbox.push_back(Stored {
            id: id.clone(),
            text: req.text.clone(),
            parts: req.parts.clone(),
        });
        (parlayx::CONTENT_TYPE.to_string(), soap.into_bytes())
    };
    let sent = post_typed(&sim.client, &url, &content_type, body, &creds).await;
    mo_answer(
        &sim,
        sent,
        serde_json::json!({ "correlator": correlator, "message_identifier": id }),
    )
}

pub(super) async fn get_message(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    if !sim.wait_unstalled().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let id = match decode_get_message(&body) {
        Ok(id) => id,
        Err(e) => return bad(e.to_string()),
    };
    let transient = read_lock(&sim.cfg).transient_error_rate;
    if let Some(refused) = simulated_503(&sim, transient) {
        return refused;
    }
    let found = lock(&sim.mms_inbox)
        .iter()
        .find(|m| m.id == id)
        .map(|m| (m.text.clone(), m.parts.clone()));
    let Some((text, parts)) = found else {
        return bad(format!("messageRefIdentifier {id:?} is unknown"));
    };
    let (content_type, body) =
        build_related(&encode_get_message_response(), &text, &parts, &boundary());
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
