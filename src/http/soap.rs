//! The Parlay X SmsNotification endpoint the SDP calls: `notifySmsDeliveryReceipt` and
//! `notifySmsReception`. A SOAP response is sent only after what it acknowledges is
//! committed. Malformed requests, DOCTYPEs (never expanded), unknown correlators and a full
//! queue are answered with SOAP 1.1 faults (HTTP 500) carrying a Parlay X ServiceException.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::connectors::sdp::parlayx::{self, Fault, Notification, NotificationKind};
use crate::pipeline::SubmitError;
use crate::pipeline::mo::{self, MoError};
use crate::pipeline::receipts::{self, ReceiptResult};

/// Where the SDP posts notifications (the `receiptRequest` endpoint).
pub const NOTIFY_PATH: &str = "/parlayx/SmsNotification";

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn fault(message_id: &str, text: &str, variables: Vec<String>, reason: &'static str) -> Response {
    metrics::counter!("switchboard_soap_faults_total", "reason" => reason).increment(1);
    let mut f = Fault::service(message_id, text, variables);
    if message_id == "SVC0002" {
        f.faultcode = "soapenv:Client".into();
    }
    xml(StatusCode::INTERNAL_SERVER_ERROR, parlayx::encode_fault(&f))
}

pub(super) async fn notification(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return fault(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![format!("body: {}", e.body_text())],
                "bad_body",
            );
        }
    };
    let note = match parlayx::decode_notification_versioned(&body) {
        Ok(n) => n,
        Err(parlayx::SoapError::Doctype) => {
            return fault(
                "SVC0002",
                "Invalid input value for message part %1",
                vec!["DOCTYPE and entity declarations are not accepted".into()],
                "doctype",
            );
        }
        Err(e) => {
            return fault(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![e.to_string()],
                "malformed",
            );
        }
    };
    let (version, note) = note;
    let version = version.unwrap_or(st.cfg.sdp.version);
    let ctx = st.intake.ctx();
    match note {
        Notification::DeliveryReceipt {
            correlator, status, ..
        } => match receipts::apply(ctx, &correlator, status).await {
            Ok(ReceiptResult::Applied | ReceiptResult::Duplicate) => xml(
                StatusCode::OK,
                parlayx::encode_notify_response(version, NotificationKind::DeliveryReceipt),
            ),
            Ok(ReceiptResult::UnknownCorrelator) => fault(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![format!("correlator {correlator:?} is unknown")],
                "unknown_correlator",
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot store a delivery receipt");
                fault(
                    "SVC0001",
                    "A service error occurred. Error code is %1",
                    vec!["store unavailable".into()],
                    "store",
                )
            }
        },
        Notification::Reception {
            message,
            sender_address,
            activation_number,
            ..
        } => match mo::receive(&st.intake, &sender_address, &activation_number, &message).await {
            Ok(_) => xml(
                StatusCode::OK,
                parlayx::encode_notify_response(version, NotificationKind::Reception),
            ),
            Err(MoError::BadSender(s)) => fault(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![format!("senderAddress {s:?}")],
                "bad_sender",
            ),
            Err(MoError::Submit(SubmitError::QueueFull | SubmitError::ShuttingDown)) => fault(
                "SVC0001",
                "A service error occurred. Error code is %1",
                vec!["the gateway is at capacity; retry later".into()],
                "queue_full",
            ),
            Err(MoError::Submit(SubmitError::Store(e))) => {
                tracing::error!(error = %e, "cannot store an MO");
                fault(
                    "SVC0001",
                    "A service error occurred. Error code is %1",
                    vec!["store unavailable".into()],
                    "store",
                )
            }
        },
    }
}
