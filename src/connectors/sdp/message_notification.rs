//! The Parlay X MessageNotification endpoint the SDP calls for MMS.
//!
//! * `notifyMessageDeliveryReceipt` is mapped to recipient states exactly like SMS receipts
//!   ([`receipts`]).
//! * `notifyMessageReception` (MO MMS) is routed like an MO SMS ([`mo`]). Its content
//!   comes with the notification as SOAP with attachments (`multipart/related`), or, when
//!   the notification only names it (`messageIdentifier`), is fetched with ReceiveMessage
//!   `getMessage` before anything is answered.
//!
//! The SOAP response is sent only after the receipt or message is committed, so an MO MMS
//! is never acknowledged before it is stored with its content; a failed fetch is answered
//! with SVC0001, and the SDP's own retry brings the notification back. Malformed input,
//! DOCTYPEs and receipts that apply to no recipient get a ServiceException fault.
//!
//! Callbacks are authenticated exactly like the SMS ones ([`sms_notification`](super::sms_notification)), and decoded
//! as strictly.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::callbacks;
use super::inbound::Inbound;
use super::mms_client::MMS_NOTIFY_PATH;
use super::mo::{self, MoError};
use super::parlayx::mms::{
    MessageReception, MmNotification, decode_mm_notification_with_header,
    encode_notify_message_delivery_receipt_response, encode_notify_message_reception_response,
};
use super::parlayx::{self, Fault};
use super::receipts;
use super::sms_notification::{Peer, decode_fault, receipt_refused, refused, secret_segment};
use crate::connectors::sdp::parlayx::swa::{RelatedPart, parse_related, received};
use crate::message::Content;
use crate::pipeline::{ReceiptResult, Refused, SubmitError};

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

pub(super) async fn notification(
    State(st): State<Arc<Inbound>>,
    Peer(peer): Peer,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = &st.callbacks;
    if let Err(r) =
        callbacks::check_request(auth, peer, &headers, secret_segment(&uri, MMS_NOTIFY_PATH))
    {
        return refused(r, "mms", peer);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // SOAP with attachments: the first part is the envelope, the rest the content.
    let (root, attached) = if content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("multipart/related")
    {
        match parse_related(content_type, &body) {
            Ok(mut parts) => {
                let root = parts.remove(0);
                (Bytes::from(root.bytes), Some(parts))
            }
            Err(e) => return fault("SVC0002", format!("body: {e}"), "malformed"),
        }
    } else {
        (body, None)
    };
    let (note, notify_header) = match decode_mm_notification_with_header(&root) {
        Ok(n) => n,
        Err(e) => return decode_fault(&e),
    };
    if let Err(r) = callbacks::check_header(auth, notify_header.as_ref()) {
        return refused(r, "mms", peer);
    }
    match note {
        MmNotification::Receipt(receipt) => {
            match receipts::apply(
                &st.intake,
                &receipt.correlator,
                &receipt.address,
                receipt.status,
            )
            .await
            {
                Ok(ReceiptResult::Applied | ReceiptResult::Duplicate) => xml(
                    StatusCode::OK,
                    encode_notify_message_delivery_receipt_response(),
                ),
                Ok(ReceiptResult::NotApplicable) => receipt_refused("mms", peer),
                Err(e) => {
                    tracing::error!(error = %e, "cannot store an MMS delivery receipt");
                    fault("SVC0001", "store unavailable".into(), "store")
                }
            }
        }
        MmNotification::Reception(rec) => reception(&st, rec, attached).await,
    }
}

/// Takes in one MO MMS: its content (attached, else fetched), then routing and commit.
async fn reception(
    st: &Inbound,
    rec: MessageReception,
    attached: Option<Vec<RelatedPart>>,
) -> Response {
    let m = rec.message;
    let mut note = None;
    let parts = match (attached, &m.message_identifier) {
        (Some(parts), _) if !parts.is_empty() => parts,
        (_, Some(id)) => match &st.mms_receive {
            Some(client) => match client.get_message(id).await {
                Ok(parts) => parts,
                Err(e) => {
                    let kind = e.kind();
                    metrics::counter!("switchboard_mms_fetch_failures_total", "kind" => kind)
                        .increment(1);
                    tracing::warn!(message_ref = %id, from = %m.sender_address, error = %e, "cannot fetch a received MMS; the SDP is asked to notify again");
                    return fault(
                        "SVC0001",
                        format!("cannot fetch message {id:?}: {e}"),
                        "mms_fetch",
                    );
                }
            },
            None => {
                tracing::warn!(message_ref = %id, "a received MMS names its content, but content.mms.receive_message_url is not set: only its text is passed on");
                note = Some(format!(
                    "content of MMS {id:?} not fetched: content.mms.receive_message_url is not set"
                ));
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    let content = received(m.message.as_deref(), parts);
    metrics::counter!("switchboard_mms_received_parts_total").increment(content.parts.len() as u64);
    let content = Content {
        text: content.text,
        subject: m.subject.clone(),
        parts: content.parts,
        ..Content::default()
    };
    match mo::receive_content(
        st,
        &m.sender_address,
        &m.activation_number,
        content,
        "mms",
        note,
    )
    .await
    {
        Ok((env, route)) => {
            tracing::debug!(message = %env.id, route = route.as_str(), correlator = %rec.correlator, "MO MMS stored");
            xml(StatusCode::OK, encode_notify_message_reception_response())
        }
        Err(MoError::BadSender(s)) => {
            fault("SVC0002", format!("senderAddress {s:?}"), "bad_sender")
        }
        Err(MoError::Refused(r @ Refused::UnknownGroup(_))) => {
            fault("SVC0002", format!("message: {r}"), "unknown_group")
        }
        Err(MoError::Refused(r)) => fault("POL0001", r.to_string(), r.code()),
        Err(MoError::Submit(SubmitError::QueueFull | SubmitError::ShuttingDown)) => fault(
            "SVC0001",
            "the gateway is at capacity; retry later".into(),
            "queue_full",
        ),
        Err(MoError::Submit(SubmitError::Store(e))) => {
            tracing::error!(error = %e, "cannot store an MO MMS");
            fault("SVC0001", "store unavailable".into(), "store")
        }
    }
}
