//! The `SmsNotification` callbacks (`notifySmsDeliveryReceipt`, `notifySmsReception`), their
//! responses and the SMS `DeliveryStatus`.

use std::fmt;
use std::str::FromStr;

use super::NotifyHeader;
use super::ns::{NS_NOTIFICATION_V2_1, NS_NOTIFICATION_V2_2, Version};
use super::strict;
use super::xml::{
    ENVELOPE_CLOSE, Envelope, SoapError, esc_len, local_version, push_elem, start_envelope,
    truncate,
};

/// Parlay X SMS `DeliveryStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DeliveryStatus {
    DeliveredToNetwork,
    DeliveryUncertain,
    DeliveryImpossible,
    MessageWaiting,
    DeliveredToTerminal,
    DeliveryNotificationNotSupported,
}

/// Coarse meaning of a [`DeliveryStatus`] (vumi's mapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    Pending,
    Failed,
}

impl DeliveryStatus {
    /// All values in the SMS XSD order.
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::DeliveredToNetwork,
        DeliveryStatus::DeliveryUncertain,
        DeliveryStatus::DeliveryImpossible,
        DeliveryStatus::MessageWaiting,
        DeliveryStatus::DeliveredToTerminal,
        DeliveryStatus::DeliveryNotificationNotSupported,
    ];

    /// The XSD enumeration value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::DeliveredToNetwork => "DeliveredToNetwork",
            DeliveryStatus::DeliveryUncertain => "DeliveryUncertain",
            DeliveryStatus::DeliveryImpossible => "DeliveryImpossible",
            DeliveryStatus::MessageWaiting => "MessageWaiting",
            DeliveryStatus::DeliveredToTerminal => "DeliveredToTerminal",
            DeliveryStatus::DeliveryNotificationNotSupported => "DeliveryNotificationNotSupported",
        }
    }

    /// Delivered (DeliveredToNetwork, DeliveredToTerminal), pending (DeliveryUncertain,
    /// MessageWaiting) or failed (DeliveryImpossible, DeliveryNotificationNotSupported).
    pub fn outcome(self) -> DeliveryOutcome {
        match self {
            DeliveryStatus::DeliveredToNetwork | DeliveryStatus::DeliveredToTerminal => {
                DeliveryOutcome::Delivered
            }
            DeliveryStatus::DeliveryUncertain | DeliveryStatus::MessageWaiting => {
                DeliveryOutcome::Pending
            }
            DeliveryStatus::DeliveryImpossible
            | DeliveryStatus::DeliveryNotificationNotSupported => DeliveryOutcome::Failed,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = SoapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        DeliveryStatus::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| SoapError::InvalidValue {
                element: "deliveryStatus",
                value: truncate(s, 64),
            })
    }
}

/// Which `SmsNotification` operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationKind {
    DeliveryReceipt,
    Reception,
}

impl NotificationKind {
    /// Operation element name.
    pub fn operation(self) -> &'static str {
        match self {
            NotificationKind::DeliveryReceipt => "notifySmsDeliveryReceipt",
            NotificationKind::Reception => "notifySmsReception",
        }
    }

    /// Response element name.
    pub fn response_element(self) -> &'static str {
        match self {
            NotificationKind::DeliveryReceipt => "notifySmsDeliveryReceiptResponse",
            NotificationKind::Reception => "notifySmsReceptionResponse",
        }
    }
}

/// A decoded `SmsNotification` callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    DeliveryReceipt {
        correlator: String,
        address: String,
        status: DeliveryStatus,
    },
    Reception {
        correlator: Option<String>,
        message: String,
        sender_address: String,
        activation_number: String,
        date_time: Option<String>,
    },
}

impl Notification {
    pub fn kind(&self) -> NotificationKind {
        match self {
            Notification::DeliveryReceipt { .. } => NotificationKind::DeliveryReceipt,
            Notification::Reception { .. } => NotificationKind::Reception,
        }
    }
}

/// Writes the standalone `notifySmsDeliveryReceipt` body element.
pub fn write_notify_delivery_receipt_body(
    out: &mut String,
    version: Version,
    correlator: &str,
    address: &str,
    status: DeliveryStatus,
) {
    out.push_str("<ns1:notifySmsDeliveryReceipt xmlns:ns1=\"");
    out.push_str(version.notification_ns());
    out.push_str("\">");
    push_elem(out, "ns1", "correlator", correlator);
    out.push_str("<ns1:deliveryStatus>");
    push_elem(out, "", "address", address);
    push_elem(out, "", "deliveryStatus", status.as_str());
    out.push_str("</ns1:deliveryStatus></ns1:notifySmsDeliveryReceipt>");
}

/// The `notifySmsDeliveryReceipt` body element alone.
pub fn encode_notify_delivery_receipt_body(
    version: Version,
    correlator: &str,
    address: &str,
    status: DeliveryStatus,
) -> String {
    let mut out = String::with_capacity(300 + esc_len(correlator) + esc_len(address));
    write_notify_delivery_receipt_body(&mut out, version, correlator, address, status);
    out
}

/// Full SOAP 1.1 `notifySmsDeliveryReceipt` request.
pub fn encode_notify_delivery_receipt(
    version: Version,
    correlator: &str,
    address: &str,
    status: DeliveryStatus,
) -> String {
    let mut out = start_envelope(300 + esc_len(correlator) + esc_len(address));
    out.push_str("<soapenv:Body>");
    write_notify_delivery_receipt_body(&mut out, version, correlator, address, status);
    out.push_str("</soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Writes the standalone `notifySmsReception` body element. `date_time` is
/// omitted for [`Version::V2_1`], whose `SmsMessage` has no `dateTime`.
pub fn write_notify_sms_reception_body(
    out: &mut String,
    version: Version,
    correlator: &str,
    message: &str,
    sender_address: &str,
    activation_number: &str,
    date_time: Option<&str>,
) {
    out.push_str("<ns1:notifySmsReception xmlns:ns1=\"");
    out.push_str(version.notification_ns());
    out.push_str("\">");
    push_elem(out, "ns1", "correlator", correlator);
    out.push_str("<ns1:message>");
    push_elem(out, "", "message", message);
    push_elem(out, "", "senderAddress", sender_address);
    push_elem(out, "", "smsServiceActivationNumber", activation_number);
    if let (Version::V2_2, Some(dt)) = (version, date_time) {
        push_elem(out, "", "dateTime", dt);
    }
    out.push_str("</ns1:message></ns1:notifySmsReception>");
}

fn reception_size(message: &str, sender: &str, activation: &str, correlator: &str) -> usize {
    400 + esc_len(message) + esc_len(sender) + esc_len(activation) + esc_len(correlator)
}

/// The `notifySmsReception` body element alone.
pub fn encode_notify_sms_reception_body(
    version: Version,
    correlator: &str,
    message: &str,
    sender_address: &str,
    activation_number: &str,
    date_time: Option<&str>,
) -> String {
    let mut out = String::with_capacity(reception_size(
        message,
        sender_address,
        activation_number,
        correlator,
    ));
    write_notify_sms_reception_body(
        &mut out,
        version,
        correlator,
        message,
        sender_address,
        activation_number,
        date_time,
    );
    out
}

/// Full SOAP 1.1 `notifySmsReception` request (no NotifySOAPHeader).
pub fn encode_notify_sms_reception(
    version: Version,
    correlator: &str,
    message: &str,
    sender_address: &str,
    activation_number: &str,
    date_time: Option<&str>,
) -> String {
    let mut out = start_envelope(reception_size(
        message,
        sender_address,
        activation_number,
        correlator,
    ));
    out.push_str("<soapenv:Body>");
    write_notify_sms_reception_body(
        &mut out,
        version,
        correlator,
        message,
        sender_address,
        activation_number,
        date_time,
    );
    out.push_str("</soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Full SOAP 1.1 `notifySmsDeliveryReceiptResponse` / `notifySmsReceptionResponse` (empty).
pub fn encode_notify_response(version: Version, kind: NotificationKind) -> String {
    let mut out = start_envelope(200);
    out.push_str("<soapenv:Body><ns1:");
    out.push_str(kind.response_element());
    out.push_str(" xmlns:ns1=\"");
    out.push_str(version.notification_ns());
    out.push_str("\"/></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// Decodes `notifySmsDeliveryReceipt` or `notifySmsReception` (v2_1 or v2_2;
/// a NotifySOAPHeader is read by [`decode_notification_with_header`]; `dateTime` is optional).
pub fn decode_notification(xml: &[u8]) -> Result<Notification, SoapError> {
    decode_notification_versioned(xml).map(|(_, n)| n)
}

/// Like [`decode_notification`], also returning the version of the operation's namespace.
pub fn decode_notification_versioned(
    xml: &[u8],
) -> Result<(Option<Version>, Notification), SoapError> {
    decode_notification_with_header(xml).map(|(v, n, _)| (v, n))
}

/// Like [`decode_notification_versioned`], also returning the `NotifySOAPHeader` (for the
/// callback check). Strict: SOAP 1.1 only, every prefix declared, the operation in a
/// notification namespace, no unknown `mustUnderstand` header.
pub fn decode_notification_with_header(
    xml: &[u8],
) -> Result<(Option<Version>, Notification, Option<NotifyHeader>), SoapError> {
    let env = Envelope::parse(xml)?;
    let (op, header) = strict::check(&env, &[NS_NOTIFICATION_V2_1, NS_NOTIFICATION_V2_2])?;
    let n = match op.name.as_str() {
        "notifySmsDeliveryReceipt" => {
            let ds = op
                .child("deliveryStatus")
                .ok_or(SoapError::MissingElement("deliveryStatus"))?;
            let status_text = ds
                .child("deliveryStatus")
                .ok_or(SoapError::MissingElement("deliveryStatus/deliveryStatus"))?;
            Notification::DeliveryReceipt {
                correlator: op.req_text("correlator")?,
                address: ds.req_text("address")?,
                status: status_text.text.parse()?,
            }
        }
        "notifySmsReception" => {
            let m = op
                .child("message")
                .ok_or(SoapError::MissingElement("message"))?;
            let text = m
                .child("message")
                .map(|t| t.text.clone())
                .ok_or(SoapError::MissingElement("message/message"))?;
            Notification::Reception {
                correlator: op.child_text("correlator"),
                message: text,
                sender_address: m.req_text("senderAddress")?,
                activation_number: m.req_text("smsServiceActivationNumber")?,
                date_time: m.child_text("dateTime").filter(|d| !d.is_empty()),
            }
        }
        other => return Err(SoapError::UnexpectedBody(truncate(other, 80))),
    };
    Ok((local_version(op), n, header))
}

/// Decodes the gateway's answer to a notification (`notifySms…Response`).
pub fn decode_notify_response(xml: &[u8]) -> Result<NotificationKind, SoapError> {
    let env = Envelope::parse(xml)?;
    let op = env.body_child()?;
    match op.name.as_str() {
        "notifySmsDeliveryReceiptResponse" => Ok(NotificationKind::DeliveryReceipt),
        "notifySmsReceptionResponse" => Ok(NotificationKind::Reception),
        other => Err(SoapError::UnexpectedBody(truncate(other, 80))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sdp::parlayx::*;

    #[test]
    fn delivery_status_str_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>().unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!("Delivered".parse::<DeliveryStatus>().is_err());
        assert_eq!(
            DeliveryStatus::DeliveryImpossible.outcome(),
            DeliveryOutcome::Failed
        );
    }

    #[test]
    fn notification_round_trips() {
        for v in [Version::V2_1, Version::V2_2] {
            for s in DeliveryStatus::ALL {
                let xml = encode_notify_delivery_receipt(v, "corr&1", "tel:+8613800000000", s);
                let (ver, n) = decode_notification_versioned(xml.as_bytes()).unwrap();
                assert_eq!(ver, Some(v));
                assert_eq!(
                    n,
                    Notification::DeliveryReceipt {
                        correlator: "corr&1".into(),
                        address: "tel:+8613800000000".into(),
                        status: s
                    }
                );
            }
            let xml = encode_notify_sms_reception(
                v,
                "mo-1",
                " hi <there> ",
                "tel:+8613800000000",
                "tel:10658000123",
                Some("2013-06-18T10:59:33+08:00"),
            );
            let n = decode_notification(xml.as_bytes()).unwrap();
            assert_eq!(n.kind(), NotificationKind::Reception);
            assert_eq!(
                n,
                Notification::Reception {
                    correlator: Some("mo-1".into()),
                    message: " hi <there> ".into(),
                    sender_address: "tel:+8613800000000".into(),
                    activation_number: "tel:10658000123".into(),
                    date_time: (v == Version::V2_2).then(|| "2013-06-18T10:59:33+08:00".into()),
                }
            );
        }
    }

    #[test]
    fn notify_responses() {
        for v in [Version::V2_1, Version::V2_2] {
            for k in [
                NotificationKind::DeliveryReceipt,
                NotificationKind::Reception,
            ] {
                let xml = encode_notify_response(v, k);
                assert_eq!(decode_notify_response(xml.as_bytes()).unwrap(), k);
            }
        }
    }

    #[test]
    fn decode_sample_notify_sms_reception_with_header() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Header>
    <ns1:NotifySOAPHeader xmlns:ns1="http://www.huawei.com.cn/schema/common/v2_1">
      <ns1:spRevId>sp_rev_user</ns1:spRevId>
      <ns1:spRevpassword>0123456789abcdef0123456789abcdef</ns1:spRevpassword>
      <ns1:spId>user</ns1:spId>
      <ns1:serviceId>35000001000001</ns1:serviceId>
      <ns1:timeStamp>20130618105933</ns1:timeStamp>
      <ns1:traceUniqueID>504021505181306181059330001</ns1:traceUniqueID>
    </ns1:NotifySOAPHeader>
  </soapenv:Header>
  <soapenv:Body>
    <ns2:notifySmsReception xmlns:ns2="http://www.csapi.org/schema/parlayx/sms/notification/v2_2/local">
      <ns2:correlator>654321</ns2:correlator>
      <ns2:message>
        <message>HELLO</message>
        <senderAddress>tel:8613800000001</senderAddress>
        <smsServiceActivationNumber>tel:10658000</smsServiceActivationNumber>
        <dateTime>2013-06-18T10:59:33+08:00</dateTime>
      </ns2:message>
    </ns2:notifySmsReception>
  </soapenv:Body>
</soapenv:Envelope>"#;
        assert_eq!(
            decode_notification(xml.as_bytes()).unwrap(),
            Notification::Reception {
                correlator: Some("654321".into()),
                message: "HELLO".into(),
                sender_address: "tel:8613800000001".into(),
                activation_number: "tel:10658000".into(),
                date_time: Some("2013-06-18T10:59:33+08:00".into()),
            }
        );
    }

    #[test]
    fn decode_sample_delivery_receipts_v2_1_and_v2_2() {
        let wrap = |body: &str| {
            format!(
                "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
            )
        };
        let v22 = wrap(
            r#"<ns1:notifySmsDeliveryReceipt xmlns:ns1="http://www.csapi.org/schema/parlayx/sms/notification/v2_2/local">
  <ns1:correlator>123456</ns1:correlator>
  <ns1:deliveryStatus>
    <address>tel:8613800000001</address>
    <deliveryStatus>DeliveredToTerminal</deliveryStatus>
  </ns1:deliveryStatus>
</ns1:notifySmsDeliveryReceipt>"#,
        );
        assert_eq!(
            decode_notification(v22.as_bytes()).unwrap(),
            Notification::DeliveryReceipt {
                correlator: "123456".into(),
                address: "tel:8613800000001".into(),
                status: DeliveryStatus::DeliveredToTerminal
            }
        );
        let v21 = wrap(
            r#"<ns1:notifySmsDeliveryReceipt xmlns:ns1="http://www.csapi.org/schema/parlayx/sms/notification/v2_1/local">
  <ns1:correlator>abc-1</ns1:correlator>
  <ns1:deliveryStatus>
    <address>tel:+447700900001</address>
    <deliveryStatus>DeliveryImpossible</deliveryStatus>
  </ns1:deliveryStatus>
</ns1:notifySmsDeliveryReceipt>"#,
        );
        let (v, n) = decode_notification_versioned(v21.as_bytes()).unwrap();
        assert_eq!(v, Some(Version::V2_1));
        assert!(matches!(
            n,
            Notification::DeliveryReceipt { status: DeliveryStatus::DeliveryImpossible, ref correlator, .. } if correlator == "abc-1"
        ));
        let v21_mo = wrap(
            r#"<ns1:notifySmsReception xmlns:ns1="http://www.csapi.org/schema/parlayx/sms/notification/v2_1/local">
  <ns1:message>
    <message>HELLO</message>
    <senderAddress>tel:+447700900001</senderAddress>
    <smsServiceActivationNumber>tel:80000</smsServiceActivationNumber>
  </ns1:message>
</ns1:notifySmsReception>"#,
        );
        assert_eq!(
            decode_notification(v21_mo.as_bytes()).unwrap(),
            Notification::Reception {
                correlator: None,
                message: "HELLO".into(),
                sender_address: "tel:+447700900001".into(),
                activation_number: "tel:80000".into(),
                date_time: None,
            }
        );
        let bad = v22.replace(">DeliveredToTerminal<", ">Delivered<");
        assert!(matches!(
            decode_notification(bad.as_bytes()),
            Err(SoapError::InvalidValue {
                element: "deliveryStatus",
                ..
            })
        ));
    }
}
