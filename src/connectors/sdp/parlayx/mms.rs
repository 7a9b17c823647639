//! Parlay X 3 Multimedia Messaging (mms-v3_1): the SOAP parts of `sendMessage`,
//! `sendMessageResponse`, `notifyMessageDeliveryReceipt`, `notifyMessageReception` (MO) and
//! ReceiveMessage `getMessage` (fetching a received message's content by reference).
//!
//! The content is not in the envelope: it travels next to it as SOAP with attachments
//! (`multipart/related`, see `swa`). Children of `receiptRequest` and of
//! `deliveryStatus` are unqualified (common / MMS types); the operation's own children are
//! in the local namespace. Decoders share the SMS codec's parser (no DOCTYPE, bounded depth).

use super::header::{RequestHeader, read_request_header, write_request_header};
use super::send_sms::{ReceiptRequest, read_addresses, read_receipt_request};
use super::xml::{ENVELOPE_CLOSE, Elem, Envelope, SoapError, push_elem, start_envelope, truncate};
use crate::connectors::sdp::parlayx::DeliveryStatus;

/// Local namespace of the SendMessage interface.
pub const NS_MM_SEND: &str =
    "http://www.csapi.org/schema/parlayx/multimedia_messaging/send/v3_1/local";
/// Local namespace of the MessageNotification interface.
pub const NS_MM_NOTIFICATION: &str =
    "http://www.csapi.org/schema/parlayx/multimedia_messaging/notification/v3_1/local";

/// Local namespace of the ReceiveMessage interface.
pub const NS_MM_RECEIVE: &str =
    "http://www.csapi.org/schema/parlayx/multimedia_messaging/receive/v3_1/local";

/// A received MMS as the notification describes it (`MessageReference`; its children are
/// unqualified). The content either travels with the notification as attachments or is
/// fetched with `getMessage(messageIdentifier)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageReference {
    /// The SDP's handle on the content, for `getMessage`.
    pub message_identifier: Option<String>,
    /// The number the phone wrote to (`tel:` URI).
    pub activation_number: String,
    /// The phone (`tel:` URI).
    pub sender_address: String,
    pub subject: Option<String>,
    /// `Default`, `Low`, `Normal` or `High`.
    pub priority: String,
    /// The text, when the SDP gives it in the notification.
    pub message: Option<String>,
    pub date_time: Option<String>,
}

/// `notifyMessageReception` (SDP → gateway).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageReception {
    pub correlator: String,
    pub message: MessageReference,
}

/// What arrives at the MessageNotification endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmNotification {
    Receipt(MessageReceipt),
    Reception(MessageReception),
}

/// A `sendMessage` request (charging and priority are not sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendMessage {
    /// `tel:` URIs.
    pub addresses: Vec<String>,
    /// `senderAddress` (a `tel:` URI of the service number + extension).
    pub sender_address: Option<String>,
    pub subject: Option<String>,
    pub receipt_request: Option<ReceiptRequest>,
    pub header: Option<RequestHeader>,
}

/// A delivery receipt for an MMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageReceipt {
    pub correlator: String,
    pub address: String,
    pub status: DeliveryStatus,
}

/// The full SOAP 1.1 `sendMessage` envelope.
pub fn encode_send_message(req: &SendMessage) -> String {
    let mut out = start_envelope(1024);
    match &req.header {
        Some(h) => {
            out.push_str("<soapenv:Header>");
            write_request_header(&mut out, h);
            out.push_str("</soapenv:Header>");
        }
        None => out.push_str("<soapenv:Header/>"),
    }
    out.push_str("<soapenv:Body><loc:sendMessage xmlns:loc=\"");
    out.push_str(NS_MM_SEND);
    out.push_str("\">");
    for a in &req.addresses {
        push_elem(&mut out, "loc", "addresses", a);
    }
    if let Some(s) = &req.sender_address {
        push_elem(&mut out, "loc", "senderAddress", s);
    }
    if let Some(s) = &req.subject {
        push_elem(&mut out, "loc", "subject", s);
    }
    if let Some(r) = &req.receipt_request {
        out.push_str("<loc:receiptRequest>");
        push_elem(&mut out, "", "endpoint", &r.endpoint);
        push_elem(&mut out, "", "interfaceName", &r.interface_name);
        push_elem(&mut out, "", "correlator", &r.correlator);
        out.push_str("</loc:receiptRequest>");
    }
    out.push_str("</loc:sendMessage></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Decodes a `sendMessage` envelope (the SDP side; used by the simulator).
pub fn decode_send_message(xml: &[u8]) -> Result<SendMessage, SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "sendMessage" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
    let addresses = read_addresses(op)?;
    let receipt_request = read_receipt_request(op)?;
    let header = read_request_header(&env);
    Ok(SendMessage {
        addresses,
        sender_address: op.child_text("senderAddress"),
        subject: op.child_text("subject"),
        receipt_request,
        header,
    })
}

/// `sendMessageResponse` carrying the SDP's request identifier.
pub fn encode_send_message_response(result: &str) -> String {
    let mut out = start_envelope(256);
    out.push_str("<soapenv:Body><ns1:sendMessageResponse xmlns:ns1=\"");
    out.push_str(NS_MM_SEND);
    out.push_str("\">");
    push_elem(&mut out, "ns1", "result", result);
    out.push_str("</ns1:sendMessageResponse></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// The `result` of a `sendMessageResponse`; a fault gives `Err(SoapError::Fault(..))`.
pub fn decode_send_message_response(xml: &[u8]) -> Result<String, SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "sendMessageResponse" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
    op.req_text("result")
}

/// `notifyMessageDeliveryReceipt` (SDP → gateway).
pub fn encode_notify_message_delivery_receipt(r: &MessageReceipt) -> String {
    let mut out = start_envelope(512);
    out.push_str("<soapenv:Body><ns1:notifyMessageDeliveryReceipt xmlns:ns1=\"");
    out.push_str(NS_MM_NOTIFICATION);
    out.push_str("\">");
    push_elem(&mut out, "ns1", "correlator", &r.correlator);
    out.push_str("<ns1:deliveryStatus>");
    push_elem(&mut out, "", "address", &r.address);
    push_elem(&mut out, "", "deliveryStatus", r.status.as_str());
    out.push_str("</ns1:deliveryStatus></ns1:notifyMessageDeliveryReceipt></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Decodes `notifyMessageDeliveryReceipt`.
pub fn decode_notify_message_delivery_receipt(xml: &[u8]) -> Result<MessageReceipt, SoapError> {
    match decode_mm_notification(xml)? {
        MmNotification::Receipt(r) => Ok(r),
        MmNotification::Reception(_) => {
            Err(SoapError::UnexpectedBody("notifyMessageReception".into()))
        }
    }
}

/// Decodes either operation of the MessageNotification interface.
pub fn decode_mm_notification(xml: &[u8]) -> Result<MmNotification, SoapError> {
    decode_mm_notification_with_header(xml).map(|(n, _)| n)
}

/// Like [`decode_mm_notification`], also returning the `NotifySOAPHeader` (for the
/// callback check). Strict like the SMS notifications (`parlayx::strict`).
pub fn decode_mm_notification_with_header(
    xml: &[u8],
) -> Result<(MmNotification, Option<super::NotifyHeader>), SoapError> {
    let env = Envelope::parse(xml)?;
    let (op, header) = super::strict::check(&env, &[NS_MM_NOTIFICATION])?;
    let n = match op.name.as_str() {
        "notifyMessageDeliveryReceipt" => read_receipt(op).map(MmNotification::Receipt),
        "notifyMessageReception" => {
            let m = op
                .child("message")
                .ok_or(SoapError::MissingElement("message"))?;
            Ok(MmNotification::Reception(MessageReception {
                correlator: op.req_text("correlator")?,
                message: MessageReference {
                    message_identifier: m.child_text("messageIdentifier").filter(|s| !s.is_empty()),
                    activation_number: m.req_text("messageServiceActivationNumber")?,
                    sender_address: m.req_text("senderAddress")?,
                    subject: m.child_text("subject").filter(|s| !s.is_empty()),
                    priority: m.child_text("priority").unwrap_or_default(),
                    // Not trimmed: the text is the user's.
                    message: m.child("message").map(|t| t.text.clone()),
                    date_time: m.child_text("dateTime").filter(|s| !s.is_empty()),
                },
            }))
        }
        other => Err(SoapError::UnexpectedBody(truncate(other, 80))),
    }?;
    Ok((n, header))
}

fn read_receipt(op: &Elem) -> Result<MessageReceipt, SoapError> {
    let ds = op
        .child("deliveryStatus")
        .ok_or(SoapError::MissingElement("deliveryStatus"))?;
    let status = ds
        .child("deliveryStatus")
        .ok_or(SoapError::MissingElement("deliveryStatus/deliveryStatus"))?;
    Ok(MessageReceipt {
        correlator: op.req_text("correlator")?,
        address: ds.req_text("address")?,
        status: status.text.parse()?,
    })
}

/// `notifyMessageReception` (SDP → gateway; the simulator sends it).
pub fn encode_notify_message_reception(r: &MessageReception) -> String {
    let m = &r.message;
    let mut out = start_envelope(768);
    out.push_str("<soapenv:Body><ns1:notifyMessageReception xmlns:ns1=\"");
    out.push_str(NS_MM_NOTIFICATION);
    out.push_str("\">");
    push_elem(&mut out, "ns1", "correlator", &r.correlator);
    out.push_str("<ns1:message>");
    if let Some(id) = &m.message_identifier {
        push_elem(&mut out, "", "messageIdentifier", id);
    }
    push_elem(
        &mut out,
        "",
        "messageServiceActivationNumber",
        &m.activation_number,
    );
    push_elem(&mut out, "", "senderAddress", &m.sender_address);
    if let Some(s) = &m.subject {
        push_elem(&mut out, "", "subject", s);
    }
    let priority = if m.priority.is_empty() {
        "Normal"
    } else {
        &m.priority
    };
    push_elem(&mut out, "", "priority", priority);
    if let Some(t) = &m.message {
        push_elem(&mut out, "", "message", t);
    }
    if let Some(d) = &m.date_time {
        push_elem(&mut out, "", "dateTime", d);
    }
    out.push_str("</ns1:message></ns1:notifyMessageReception></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// The gateway's answer to `notifyMessageReception`.
pub fn encode_notify_message_reception_response() -> String {
    let mut out = start_envelope(256);
    out.push_str("<soapenv:Body><ns1:notifyMessageReceptionResponse xmlns:ns1=\"");
    out.push_str(NS_MM_NOTIFICATION);
    out.push_str("\"/></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// ReceiveMessage `getMessage(messageRefIdentifier)` (gateway → SDP), with the operator's
/// header when one is configured.
pub fn encode_get_message(message_ref: &str, header: Option<&RequestHeader>) -> String {
    let mut out = start_envelope(512);
    match header {
        Some(h) => {
            out.push_str("<soapenv:Header>");
            write_request_header(&mut out, h);
            out.push_str("</soapenv:Header>");
        }
        None => out.push_str("<soapenv:Header/>"),
    }
    out.push_str("<soapenv:Body><loc:getMessage xmlns:loc=\"");
    out.push_str(NS_MM_RECEIVE);
    out.push_str("\">");
    push_elem(&mut out, "loc", "messageRefIdentifier", message_ref);
    out.push_str("</loc:getMessage></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// The `messageRefIdentifier` of a `getMessage` request (the SDP side; the simulator).
pub fn decode_get_message(xml: &[u8]) -> Result<String, SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "getMessage" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
    op.req_text("messageRefIdentifier")
}

/// `getMessageResponse`: empty; the content travels next to it as attachments.
pub fn encode_get_message_response() -> String {
    let mut out = start_envelope(256);
    out.push_str("<soapenv:Body><ns1:getMessageResponse xmlns:ns1=\"");
    out.push_str(NS_MM_RECEIVE);
    out.push_str("\"/></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Checks the root of a `getMessage` answer: `Ok` for `getMessageResponse`, a fault as
/// `Err(SoapError::Fault(..))`.
pub fn decode_get_message_response(xml: &[u8]) -> Result<(), SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "getMessageResponse" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
    Ok(())
}

/// The gateway's answer to `notifyMessageDeliveryReceipt`.
pub fn encode_notify_message_delivery_receipt_response() -> String {
    let mut out = start_envelope(256);
    out.push_str("<soapenv:Body><ns1:notifyMessageDeliveryReceiptResponse xmlns:ns1=\"");
    out.push_str(NS_MM_NOTIFICATION);
    out.push_str("\"/></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_message_round_trips() {
        let req = SendMessage {
            addresses: vec!["tel:+8613800000001".into()],
            sender_address: Some("tel:106580001".into()),
            subject: Some("Holiday <picture> & more".into()),
            receipt_request: Some(ReceiptRequest {
                endpoint: "http://gw/parlayx/MessageNotification".into(),
                interface_name: "MessageNotification".into(),
                correlator: "42.0".into(),
            }),
            header: None,
        };
        let xml = encode_send_message(&req);
        assert!(xml.contains("<endpoint>http://gw/parlayx/MessageNotification</endpoint>"));
        assert_eq!(decode_send_message(xml.as_bytes()).unwrap(), req);
        let resp = encode_send_message_response("mms-1");
        assert_eq!(
            decode_send_message_response(resp.as_bytes()).unwrap(),
            "mms-1"
        );
    }

    #[test]
    fn receipts_round_trip_and_the_sample_decodes() {
        let r = MessageReceipt {
            correlator: "42.0".into(),
            address: "tel:+8613800000001".into(),
            status: DeliveryStatus::DeliveredToTerminal,
        };
        let xml = encode_notify_message_delivery_receipt(&r);
        assert_eq!(
            decode_notify_message_delivery_receipt(xml.as_bytes()).unwrap(),
            r
        );
        // The spec sample's body element, wrapped in an envelope.
        let sample = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>\
            <ns1:notifyMessageDeliveryReceipt xmlns:ns1=\"http://www.csapi.org/schema/parlayx/multimedia_messaging/notification/v3_1/local\">\
            <ns1:correlator>mms-0001</ns1:correlator><ns1:deliveryStatus><address>tel:8613800000001</address>\
            <deliveryStatus>DeliveredToTerminal</deliveryStatus></ns1:deliveryStatus>\
            </ns1:notifyMessageDeliveryReceipt></soapenv:Body></soapenv:Envelope>";
        let got = decode_notify_message_delivery_receipt(sample.as_bytes()).unwrap();
        assert_eq!(got.correlator, "mms-0001");
        assert_eq!(got.status, DeliveryStatus::DeliveredToTerminal);
        assert!(decode_notify_message_delivery_receipt(b"<!DOCTYPE x []><x/>").is_err());
    }

    #[test]
    fn reception_and_get_message_round_trip_and_the_sample_decodes() {
        let r = MessageReception {
            correlator: "mo-1".into(),
            message: MessageReference {
                message_identifier: Some("mm-1".into()),
                activation_number: "tel:106580001".into(),
                sender_address: "tel:+8613800000001".into(),
                subject: Some("Photo & <more>".into()),
                priority: "Normal".into(),
                message: Some(" see this ".into()),
                date_time: Some("2026-11-21T10:00:00+08:00".into()),
            },
        };
        let xml = encode_notify_message_reception(&r);
        assert_eq!(
            decode_mm_notification(xml.as_bytes()).unwrap(),
            MmNotification::Reception(r)
        );
        assert!(decode_notify_message_delivery_receipt(xml.as_bytes()).is_err());
        let sample = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>\
            <ns1:notifyMessageReception xmlns:ns1=\"http://www.csapi.org/schema/parlayx/multimedia_messaging/notification/v3_1/local\">\
            <ns1:correlator>mo-mms-1</ns1:correlator><ns1:message><messageIdentifier>mm-20130618-0001</messageIdentifier>\
            <messageServiceActivationNumber>tel:10658000</messageServiceActivationNumber>\
            <senderAddress>tel:8613800000001</senderAddress><subject>Photo</subject><priority>Normal</priority>\
            <dateTime>2013-06-18T10:59:33+08:00</dateTime></ns1:message></ns1:notifyMessageReception></soapenv:Body></soapenv:Envelope>";
        let MmNotification::Reception(got) = decode_mm_notification(sample.as_bytes()).unwrap()
        else {
            panic!("not a reception")
        };
        assert_eq!(
            got.message.message_identifier.as_deref(),
            Some("mm-20130618-0001")
        );
        assert_eq!(got.message.message, None);
        assert_eq!(got.message.subject.as_deref(), Some("Photo"));
        let get = encode_get_message("mm-1", None);
        assert_eq!(decode_get_message(get.as_bytes()).unwrap(), "mm-1");
        assert!(decode_get_message_response(encode_get_message_response().as_bytes()).is_ok());
        assert!(decode_get_message_response(get.as_bytes()).is_err());
    }
}
