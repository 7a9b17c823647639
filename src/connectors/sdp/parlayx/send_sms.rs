//! `SendSms.sendSms` and its response: the request types, encoders and decoders.

use super::header::{RequestHeader, read_request_header, write_request_header};
use super::ns::Version;
use super::xml::{
    ENVELOPE_CLOSE, Elem, Envelope, SoapError, esc_len, local_version, push_elem, start_envelope,
    truncate,
};

/// `receiptRequest` (a common `SimpleReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptRequest {
    pub endpoint: String,
    pub interface_name: String,
    pub correlator: String,
}

/// A `sendSms` request (charging is not supported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendSms {
    /// `tel:` URIs.
    pub addresses: Vec<String>,
    pub sender_name: Option<String>,
    pub message: String,
    pub receipt_request: Option<ReceiptRequest>,
    pub header: Option<RequestHeader>,
}

fn send_sms_size(req: &SendSms) -> usize {
    let mut n = 400 + esc_len(&req.message);
    for a in &req.addresses {
        n += 40 + esc_len(a);
    }
    if let Some(s) = &req.sender_name {
        n += 40 + esc_len(s);
    }
    if let Some(r) = &req.receipt_request {
        n += 120 + esc_len(&r.endpoint) + esc_len(&r.interface_name) + esc_len(&r.correlator);
    }
    if let Some(h) = &req.header {
        n += 400
            + h.sp_id.len()
            + h.sp_password.len()
            + h.service_id.len()
            + h.timestamp.len()
            + h.oa.len()
            + h.fa.len();
    }
    n
}

/// Writes the standalone `<loc:sendSms xmlns:loc=…>` body element.
pub fn write_send_sms_body(out: &mut String, version: Version, req: &SendSms) {
    out.push_str("<loc:sendSms xmlns:loc=\"");
    out.push_str(version.send_ns());
    out.push_str("\">");
    for a in &req.addresses {
        push_elem(out, "loc", "addresses", a);
    }
    if let Some(s) = &req.sender_name {
        push_elem(out, "loc", "senderName", s);
    }
    push_elem(out, "loc", "message", &req.message);
    if let Some(r) = &req.receipt_request {
        out.push_str("<loc:receiptRequest>");
        push_elem(out, "", "endpoint", &r.endpoint);
        push_elem(out, "", "interfaceName", &r.interface_name);
        push_elem(out, "", "correlator", &r.correlator);
        out.push_str("</loc:receiptRequest>");
    }
    out.push_str("</loc:sendSms>");
}

/// The `sendSms` body element alone (with its namespace declaration).
pub fn encode_send_sms_body(version: Version, req: &SendSms) -> String {
    let mut out = String::with_capacity(send_sms_size(req));
    write_send_sms_body(&mut out, version, req);
    out
}

/// Full SOAP 1.1 `sendSms` request; the Huawei header only when `req.header` is `Some`.
pub fn encode_send_sms(version: Version, req: &SendSms) -> String {
    let mut out = start_envelope(send_sms_size(req));
    if let Some(h) = &req.header {
        out.push_str("<soapenv:Header>");
        write_request_header(&mut out, h);
        out.push_str("</soapenv:Header>");
    }
    out.push_str("<soapenv:Body>");
    write_send_sms_body(&mut out, version, req);
    out.push_str("</soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Full SOAP 1.1 `sendSmsResponse`.
pub fn encode_send_sms_response(version: Version, result: &str) -> String {
    let mut out = start_envelope(200 + esc_len(result));
    out.push_str("<soapenv:Body><ns1:sendSmsResponse xmlns:ns1=\"");
    out.push_str(version.send_ns());
    out.push_str("\">");
    push_elem(&mut out, "ns1", "result", result);
    out.push_str("</ns1:sendSmsResponse></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Decodes a `sendSms` request (v2_1 or v2_2, header optional).
pub fn decode_send_sms(xml: &[u8]) -> Result<SendSms, SoapError> {
    decode_send_sms_versioned(xml).map(|(_, s)| s)
}

/// The `addresses` of a send operation (at least one).
pub(super) fn read_addresses(op: &Elem) -> Result<Vec<String>, SoapError> {
    let addresses: Vec<String> = op
        .children_named("addresses")
        .map(|a| a.text.trim().to_owned())
        .collect();
    if addresses.is_empty() {
        return Err(SoapError::MissingElement("addresses"));
    }
    Ok(addresses)
}

/// A send operation's `receiptRequest`, if it has one.
pub(super) fn read_receipt_request(op: &Elem) -> Result<Option<ReceiptRequest>, SoapError> {
    op.child("receiptRequest")
        .map(|r| {
            Ok(ReceiptRequest {
                endpoint: r.req_text("endpoint")?,
                interface_name: r.child_text("interfaceName").unwrap_or_default(),
                correlator: r.req_text("correlator")?,
            })
        })
        .transpose()
}

/// Like [`decode_send_sms`], also returning the version of the operation's
/// namespace (`None` when it is neither v2_1 nor v2_2).
pub fn decode_send_sms_versioned(xml: &[u8]) -> Result<(Option<Version>, SendSms), SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "sendSms" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
    let addresses = read_addresses(op)?;
    let message = op
        .child("message")
        .map(|m| m.text.clone())
        .ok_or(SoapError::MissingElement("message"))?;
    let receipt_request = read_receipt_request(op)?;
    let header = read_request_header(&env);
    Ok((
        local_version(op),
        SendSms {
            addresses,
            sender_name: op.child_text("senderName"),
            message,
            receipt_request,
            header,
        },
    ))
}

/// Decodes a `sendSmsResponse` and returns its `result` (the request identifier).
/// A fault body gives `Err(SoapError::Fault(..))`.
pub fn decode_send_sms_response(xml: &[u8]) -> Result<String, SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    if op.name != "sendSmsResponse" {
        return Err(SoapError::UnexpectedBody(truncate(&op.name, 80)));
    }
    op.req_text("result")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sdp::parlayx::*;

    fn sample_req(header: bool) -> SendSms {
        SendSms {
            addresses: vec!["tel:+8613800000001".into(), "tel:+8613800000002".into()],
            sender_name: Some("10658000".into()),
            message: "Hello <world> & \"friends\" 'x' \u{4f60}\u{597d}\r\nline2\ttab".into(),
            receipt_request: Some(ReceiptRequest {
                endpoint: "http://gw.example.com/notify?a=1&b=2".into(),
                interface_name: "SmsNotification".into(),
                correlator: "c-123".into(),
            }),
            header: header.then(|| {
                RequestHeader::with_password(
                    "user",
                    "password",
                    "35000001000001",
                    "20130618105933",
                    "tel:8613800000001",
                    "tel:8613800000001",
                )
            }),
        }
    }

    #[test]
    fn send_sms_round_trip_both_versions() {
        for v in [Version::V2_1, Version::V2_2] {
            for header in [false, true] {
                let req = sample_req(header);
                let xml = encode_send_sms(v, &req);
                let (ver, got) = decode_send_sms_versioned(xml.as_bytes()).unwrap();
                assert_eq!(ver, Some(v));
                assert_eq!(got, req, "{xml}");
                assert_eq!(xml.contains("RequestSOAPHeader"), header);
            }
        }
    }

    #[test]
    fn send_sms_minimal_round_trip() {
        let req = SendSms {
            addresses: vec!["tel:1".into()],
            message: String::new(),
            ..Default::default()
        };
        let got = decode_send_sms(encode_send_sms(Version::V2_2, &req).as_bytes()).unwrap();
        assert_eq!(got, req);
    }

    #[test]
    fn send_sms_element_order_and_qualification() {
        let xml = encode_send_sms(Version::V2_2, &sample_req(true));
        let pos = |s: &str| {
            xml.find(s)
                .unwrap_or_else(|| panic!("{s} missing in {xml}"))
        };
        assert!(pos("<loc:addresses>") < pos("<loc:senderName>"));
        assert!(pos("<loc:senderName>") < pos("<loc:message>"));
        assert!(pos("<loc:message>") < pos("<loc:receiptRequest>"));
        assert!(pos("<endpoint>") < pos("<interfaceName>"));
        assert!(pos("<interfaceName>") < pos("<correlator>"));
        let order = [
            "<v2:spId>",
            "<v2:spPassword>",
            "<v2:serviceId>",
            "<v2:timeStamp>",
            "<v2:OA>",
            "<v2:FA>",
        ];
        for w in order.windows(2) {
            assert!(pos(w[0]) < pos(w[1]));
        }
        assert!(pos("<soapenv:Header>") < pos("<soapenv:Body>"));
        assert!(xml.contains(NS_SEND_V2_2) && xml.contains(NS_HUAWEI) && xml.contains(NS_SOAP));
        assert!(xml.contains("1f2e67e642b16f6623459fa76dc3894f"));
    }

    #[test]
    fn escaping_in_message_text() {
        let req = SendSms {
            addresses: vec!["tel:1".into()],
            message: "a<b&c>d\"e'f</loc:message>".into(),
            ..Default::default()
        };
        let xml = encode_send_sms(Version::V2_2, &req);
        assert!(xml.contains(
            "<loc:message>a&lt;b&amp;c&gt;d&quot;e&apos;f&lt;/loc:message&gt;</loc:message>"
        ));
        assert_eq!(
            decode_send_sms(xml.as_bytes()).unwrap().message,
            req.message
        );
    }

    #[test]
    fn decode_sample_send_sms_envelope() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- comment -->
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:v2="http://www.huawei.com.cn/schema/common/v2_1"
                  xmlns:loc="http://www.csapi.org/schema/parlayx/sms/send/v2_2/local">
  <soapenv:Header>
    <v2:RequestSOAPHeader>
      <v2:spId>user</v2:spId>
      <v2:spPassword>1f2e67e642b16f6623459fa76dc3894f</v2:spPassword>
      <v2:serviceId>35000001000001</v2:serviceId>
      <v2:timeStamp>20130618105933</v2:timeStamp>
      <v2:OA>tel:8613800000001</v2:OA>
      <v2:FA>tel:8613800000001</v2:FA>
    </v2:RequestSOAPHeader>
  </soapenv:Header>
  <soapenv:Body>
    <loc:sendSms>
      <loc:addresses>tel:8613800000001</loc:addresses>
      <loc:senderName>10658000</loc:senderName>
      <loc:charging>
        <description>MT SMS</description>
      </loc:charging>
      <loc:message>Hello from the SMS gateway</loc:message>
      <loc:receiptRequest>
        <endpoint>http://sp.example.com:8080/SmsNotificationService/services/SmsNotification</endpoint>
        <interfaceName>SmsNotification</interfaceName>
        <correlator>123456</correlator>
      </loc:receiptRequest>
    </loc:sendSms>
  </soapenv:Body>
</soapenv:Envelope>"#;
        let req = decode_send_sms(xml.as_bytes()).unwrap();
        assert_eq!(req.addresses, vec!["tel:8613800000001"]);
        assert_eq!(req.sender_name.as_deref(), Some("10658000"));
        assert_eq!(req.message, "Hello from the SMS gateway");
        let rr = req.receipt_request.unwrap();
        assert_eq!(rr.correlator, "123456");
        assert_eq!(rr.interface_name, "SmsNotification");
        assert_eq!(
            rr.endpoint,
            "http://sp.example.com:8080/SmsNotificationService/services/SmsNotification"
        );
        let h = req.header.unwrap();
        assert_eq!(h.sp_id, "user");
        assert_eq!(h.sp_password, "1f2e67e642b16f6623459fa76dc3894f");
        assert_eq!(h.service_id, "35000001000001");
        assert_eq!(h.timestamp, "20130618105933");
        assert_eq!(h.oa, "tel:8613800000001");
        assert_eq!(h.fa, "tel:8613800000001");
    }

    #[test]
    fn decode_v2_1_send_sms_with_default_ns_and_cdata() {
        let xml = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>
<sendSms xmlns="http://www.csapi.org/schema/parlayx/sms/send/v2_1/local">
  <addresses>tel:+447700900001</addresses>
  <message><![CDATA[<b>bold</b> & co]]> &#x4f60;&#22909;</message>
</sendSms></Body></Envelope>"#;
        let (v, req) = decode_send_sms_versioned(xml.as_bytes()).unwrap();
        assert_eq!(v, Some(Version::V2_1));
        assert_eq!(req.message, "<b>bold</b> & co \u{4f60}\u{597d}");
        assert!(req.header.is_none() && req.receipt_request.is_none());
        assert!(req.sender_name.is_none());
    }

    #[test]
    fn send_sms_response_round_trip_and_sample() {
        let xml = encode_send_sms_response(Version::V2_2, "100001200101130618105933000001");
        assert_eq!(
            decode_send_sms_response(xml.as_bytes()).unwrap(),
            "100001200101130618105933000001"
        );
        let sample = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<ns1:sendSmsResponse xmlns:ns1="http://www.csapi.org/schema/parlayx/sms/send/v2_2/local">
  <ns1:result>100001200101130618105933000001</ns1:result>
</ns1:sendSmsResponse></soapenv:Body></soapenv:Envelope>"#;
        assert_eq!(
            decode_send_sms_response(sample.as_bytes()).unwrap(),
            "100001200101130618105933000001"
        );
        // A sendSms is not a response.
        let req = encode_send_sms(Version::V2_2, &sample_req(false));
        assert!(matches!(
            decode_send_sms_response(req.as_bytes()),
            Err(SoapError::UnexpectedBody(n)) if n == "sendSms"
        ));
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let ok = encode_send_sms(Version::V2_2, &sample_req(true));
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"   ".to_vec(),
            b"not xml at all".to_vec(),
            b"<a>".to_vec(),
            b"<a></b>".to_vec(),
            b"<a/><b/>".to_vec(),
            b"<a>&amp</a>".to_vec(),
            b"<a>&#0;</a>".to_vec(),
            b"<a>&#xFFFFFFFF;</a>".to_vec(),
            b"\xff\xfe<a/>".to_vec(),
            b"<x:Envelope xmlns:x=\"urn:other\"><x:Body/></x:Envelope>".to_vec(),
            format!("<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"/>").into_bytes(),
            format!(
                "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"><soapenv:Body/></soapenv:Envelope>"
            )
            .into_bytes(),
            "<a>".repeat(10_000).into_bytes(),
            ok.as_bytes()[..ok.len() / 2].to_vec(),
            ok.replace("sendSms>", "sendSmsX>").into_bytes(),
            ok.replace("<loc:addresses>tel:+8613800000001</loc:addresses>", "")
                .replace("<loc:addresses>tel:+8613800000002</loc:addresses>", "")
                .into_bytes(),
            ok.replace("<loc:message>", "<loc:messageX>")
                .replace("</loc:message>", "</loc:messageX>")
                .into_bytes(),
        ];
        for c in &cases {
            assert!(
                decode_send_sms(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
            assert!(decode_send_sms_response(c).is_err());
            assert!(decode_notification(c).is_err());
            assert!(decode_fault(c).is_err());
        }
        // Every truncation of a valid document is handled without panicking.
        for i in 0..ok.len() {
            if ok.is_char_boundary(i) {
                let _ = decode_send_sms(&ok.as_bytes()[..i]);
            }
        }
    }

    #[test]
    fn large_message_body() {
        let req = SendSms {
            addresses: vec!["tel:1".into()],
            message: "x&<".repeat(200_000),
            ..Default::default()
        };
        let xml = encode_send_sms(Version::V2_2, &req);
        assert_eq!(decode_send_sms(xml.as_bytes()).unwrap(), req);
    }
}
