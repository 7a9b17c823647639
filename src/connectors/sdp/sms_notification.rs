//! The Parlay X SmsNotification endpoint the SDP calls: `notifySmsDeliveryReceipt` and
//! `notifySmsReception`. A SOAP response is sent only after what it acknowledges is
//! committed. Malformed requests, DOCTYPEs (never expanded), receipts that apply to no
//! recipient and a full queue are answered with SOAP 1.1 faults (HTTP 500) carrying a
//! Parlay X ServiceException.
//!
//! Every callback is authenticated first ([`callbacks`]): a refused one is
//! answered 401 (basic auth) or 403 with one fixed fault, changes nothing, and is counted.
//! An unknown `mustUnderstand` header gets a `soapenv:MustUnderstand` fault.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::callbacks::{self, Refusal};
use super::inbound::Inbound;
use super::mo::{self, MoError};
use super::parlayx::{self, Fault, Notification, NotificationKind};
use super::receipts;
use crate::pipeline::{ReceiptResult, Refused, SubmitError};

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

/// The peer's address for the source allowlist (see [`callbacks::peer_addr`]).
pub(super) struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Self::Rejection> {
        Ok(Peer(callbacks::peer_addr(&parts.extensions)))
    }
}

/// The path segment after `base`: `None` for the bare path.
pub(super) fn secret_segment<'a>(uri: &'a Uri, base: &str) -> Option<&'a str> {
    uri.path()
        .strip_prefix(base)
        .map(|rest| rest.trim_start_matches('/'))
        .filter(|rest| !rest.is_empty())
}

/// The answer to a refused callback: 401 for missing or wrong basic auth, else 403; the
/// same fault text whatever failed.
pub(super) fn refused(
    r: Refusal,
    endpoint: &'static str,
    peer: Option<std::net::SocketAddr>,
) -> Response {
    r.record(endpoint, peer);
    let f = Fault {
        faultcode: "soapenv:Client".into(),
        faultstring: "the callback is not authorized".into(),
        exception: None,
    };
    let mut resp = xml(
        if r == Refusal::Basic {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        },
        parlayx::encode_fault(&f),
    );
    if r == Refusal::Basic {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"switchboard\""),
        );
    }
    resp
}

/// The one answer to a receipt that applies to no recipient this SDP may report on
/// (unknown, mismatched or not applicable): it names no correlator.
pub(super) fn receipt_refused(
    endpoint: &'static str,
    peer: Option<std::net::SocketAddr>,
) -> Response {
    Refusal::Receipt.record(endpoint, peer);
    let mut f = Fault::service(
        "SVC0002",
        "Invalid input value for message part %1",
        vec!["correlator".into()],
    );
    f.faultcode = "soapenv:Client".into();
    xml(StatusCode::INTERNAL_SERVER_ERROR, parlayx::encode_fault(&f))
}

/// The answer to a decoding error: `MustUnderstand` for an unknown mandatory header, else a
/// ServiceException SVC0002.
pub(super) fn decode_fault(e: &parlayx::SoapError) -> Response {
    match e {
        parlayx::SoapError::MustUnderstand(name) => {
            metrics::counter!("switchboard_soap_faults_total", "reason" => "must_understand")
                .increment(1);
            let f = Fault {
                faultcode: "soapenv:MustUnderstand".into(),
                faultstring: format!("header <{name}> is not understood"),
                exception: None,
            };
            xml(StatusCode::INTERNAL_SERVER_ERROR, parlayx::encode_fault(&f))
        }
        parlayx::SoapError::Doctype => fault(
            "SVC0002",
            "Invalid input value for message part %1",
            vec!["DOCTYPE and entity declarations are not accepted".into()],
            "doctype",
        ),
        e => fault(
            "SVC0002",
            "Invalid input value for message part %1",
            vec![e.to_string()],
            "malformed",
        ),
    }
}

pub(super) async fn notification(
    State(st): State<Arc<Inbound>>,
    Peer(peer): Peer,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let auth = &st.callbacks;
    if let Err(r) =
        callbacks::check_request(auth, peer, &headers, secret_segment(&uri, NOTIFY_PATH))
    {
        return refused(r, "sms", peer);
    }
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
    let (version, note, notify_header) = match parlayx::decode_notification_with_header(&body) {
        Ok(n) => n,
        Err(e) => return decode_fault(&e),
    };
    if let Err(r) = callbacks::check_header(auth, notify_header.as_ref()) {
        return refused(r, "sms", peer);
    }
    let note = (version, note);
    let (version, note) = note;
    let version = version.unwrap_or(st.version);
    match note {
        Notification::DeliveryReceipt {
            correlator,
            address,
            status,
        } => match receipts::apply(&st.intake, &correlator, &address, status).await {
            Ok(ReceiptResult::Applied | ReceiptResult::Duplicate) => xml(
                StatusCode::OK,
                parlayx::encode_notify_response(version, NotificationKind::DeliveryReceipt),
            ),
            Ok(ReceiptResult::NotApplicable) => receipt_refused("sms", peer),
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
        } => match mo::receive(&st, &sender_address, &activation_number, &message).await {
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
            Err(MoError::Refused(r @ Refused::UnknownGroup(_))) => fault(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![format!("message: {r}")],
                "unknown_group",
            ),
            Err(MoError::Refused(r)) => fault(
                "POL0001",
                "A policy error occurred. Error code is %1",
                vec![r.to_string()],
                r.code(),
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
