//! The simulator's Parlay X SendMessage (MMS): accepts `sendMessage` as SOAP with
//! attachments (`multipart/related`), keeps what it received (the envelope's fields and
//! every part) and sends `notifyMessageDeliveryReceipt` to the `receiptRequest` endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{ReceiptJob, Simulator, bump, lock, read_lock, soap_response, truncate};
use crate::connectors::sdp::parlayx::mms::{decode_send_message, encode_send_message_response};
use crate::connectors::sdp::parlayx::{self, DeliveryStatus, Fault};
use crate::content::mms::parse_related;

/// Where the simulator serves SendMessage.
pub const SEND_MESSAGE_PATH: &str = "/parlayx/SendMessageService/services/SendMessage";

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
    if transient > 0.0 && rand::random::<f64>() < transient {
        bump(&sim.counters.transient_errors);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable (simulated)",
        )
            .into_response();
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
