//! The Parlay X MessageNotification endpoint the SDP calls for MMS:
//! `notifyMessageDeliveryReceipt`, mapped to recipient states exactly like SMS receipts
//! (`pipeline::receipts`). The SOAP response is sent only after the receipt is committed;
//! malformed input, DOCTYPEs and unknown correlators get a ServiceException fault.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::connectors::sdp::parlayx::mms::{
    decode_notify_message_delivery_receipt, encode_notify_message_delivery_receipt_response,
};
use crate::connectors::sdp::parlayx::{self, Fault};
use crate::pipeline::receipts::{self, ReceiptResult};

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn fault(message_id: &str, variable: String, reason: &'static str) -> Response {
    metrics::counter!("switchboard_soap_faults_total", "reason" => reason).increment(1);
    let (text, code) = if message_id == "SVC0001" {
        (
            "A service error occurred. Error code is %1",
            "soapenv:Server",
        )
    } else {
        ("Invalid input value for message part %1", "soapenv:Client")
    };
    let mut f = Fault::service(message_id, text, vec![variable]);
    f.faultcode = code.into();
    xml(StatusCode::INTERNAL_SERVER_ERROR, parlayx::encode_fault(&f))
}

pub(super) async fn notification(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let receipt = match decode_notify_message_delivery_receipt(&body) {
        Ok(r) => r,
        Err(e) => return fault("SVC0002", e.to_string(), "malformed"),
    };
    match receipts::apply(st.intake.ctx(), &receipt.correlator, receipt.status).await {
        Ok(ReceiptResult::Applied | ReceiptResult::Duplicate) => xml(
            StatusCode::OK,
            encode_notify_message_delivery_receipt_response(),
        ),
        Ok(ReceiptResult::UnknownCorrelator) => fault(
            "SVC0002",
            format!("correlator {:?} is unknown", receipt.correlator),
            "unknown_correlator",
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot store an MMS delivery receipt");
            fault("SVC0001", "store unavailable".into(), "store")
        }
    }
}
