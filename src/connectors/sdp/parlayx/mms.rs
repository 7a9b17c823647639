//! Parlay X 3 Multimedia Messaging (mms-v3_1): the SOAP parts of `sendMessage`,
//! `sendMessageResponse` and `notifyMessageDeliveryReceipt`.
//!
//! The content is not in the envelope: it travels next to it as SOAP with attachments
//! (`multipart/related`, see `content::mms`). Children of `receiptRequest` and of
//! `deliveryStatus` are unqualified (common / MMS types); the operation's own children are
//! in the local namespace. Decoders share the SMS codec's parser (no DOCTYPE, bounded depth).

use super::{
    ENVELOPE_CLOSE, Envelope, ReceiptRequest, RequestHeader, SoapError, push_elem, read_addresses,
    read_receipt_request, read_request_header, start_envelope, truncate, write_request_header,
};
use crate::connectors::sdp::parlayx::DeliveryStatus;

/// Local namespace of the SendMessage interface.
pub const NS_MM_SEND: &str =
    "http://www.csapi.org/schema/parlayx/multimedia_messaging/send/v3_1/local";
/// Local namespace of the MessageNotification interface.
pub const NS_MM_NOTIFICATION: &str =
    "http://www.csapi.org/schema/parlayx/multimedia_messaging/notification/v3_1/local";

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
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "notifyMessageDeliveryReceipt" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
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
}
