//! Parlay X 2.1 / 2.2 SMS SOAP 1.1 codec (pure functions, no I/O).
//!
//! This module encodes and decodes the documents exchanged with an operator SDP
//! (Huawei flavour included) for `SendSms.sendSms`, the `SmsNotification`
//! callbacks (`notifySmsDeliveryReceipt`, `notifySmsReception`) and SOAP faults
//! carrying a Parlay X `ServiceException` / `PolicyException`.
//!
//! Guarantees:
//! * Encoders write straight into one pre-sized `String` (no DOM) and follow the
//!   XSD rules of `specs/parlayx`: operation children are qualified in the
//!   local namespace, children of common/SMS types (`receiptRequest`,
//!   `deliveryStatus`, `message`, fault details) are unqualified, Huawei
//!   `RequestSOAPHeader` children are qualified in the huawei namespace, and
//!   elements appear in XSD sequence order. All text is XML-escaped; characters
//!   that XML 1.0 cannot carry at all (C0 controls other than TAB/LF/CR,
//!   U+FFFE, U+FFFF) are replaced by U+FFFD and CR is written as `&#xD;` so it
//!   survives end-of-line normalisation.
//! * Decoders never panic on any input. They refuse any `<!DOCTYPE` with
//!   [`SoapError::Doctype`] before looking at anything else, never expand custom
//!   entities (only the five predefined entities and numeric character
//!   references are resolved; any other reference is [`SoapError::Malformed`]),
//!   accept CDATA, match elements by local name (any prefix), accept v2_1 and
//!   v2_2 namespaces, and limit element nesting depth.
//! * A SOAP Fault in a body is always reported as [`SoapError::Fault`], with the
//!   detail parsed from `ServiceException`, `PolicyException`,
//!   `ServiceExceptionDetail` or `PolicyExceptionDetail`.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub mod mms;
mod strict;

pub use strict::{NotifyHeader, insert_notify_header};

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace (accepted when decoding only).
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// Huawei SDP header namespace (`RequestSOAPHeader`, `NotifySOAPHeader`).
pub const NS_HUAWEI: &str = "http://www.huawei.com.cn/schema/common/v2_1";
/// Parlay X common types namespace (fault details, `SimpleReference`).
pub const NS_COMMON: &str = "http://www.csapi.org/schema/parlayx/common/v2_1";
/// SMS send local namespace, Parlay X 2.1.
pub const NS_SEND_V2_1: &str = "http://www.csapi.org/schema/parlayx/sms/send/v2_1/local";
/// SMS send local namespace, Parlay X 2.2.
pub const NS_SEND_V2_2: &str = "http://www.csapi.org/schema/parlayx/sms/send/v2_2/local";
/// SMS notification local namespace, Parlay X 2.1.
pub const NS_NOTIFICATION_V2_1: &str =
    "http://www.csapi.org/schema/parlayx/sms/notification/v2_1/local";
/// SMS notification local namespace, Parlay X 2.2.
pub const NS_NOTIFICATION_V2_2: &str =
    "http://www.csapi.org/schema/parlayx/sms/notification/v2_2/local";

/// HTTP `Content-Type` to send with every SOAP 1.1 document.
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
const ENVELOPE_OPEN: &str =
    "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">";
const ENVELOPE_CLOSE: &str = "</soapenv:Envelope>";
/// Deepest element nesting accepted by the decoders.
const MAX_DEPTH: usize = 64;

/// Parlay X SMS interface version; selects the local namespaces.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// `.../sms/{send,notification}/v2_1/local`
    V2_1,
    /// `.../sms/{send,notification}/v2_2/local`
    #[default]
    V2_2,
}

impl Version {
    /// Local namespace of the SendSms interface.
    pub fn send_ns(self) -> &'static str {
        match self {
            Version::V2_1 => NS_SEND_V2_1,
            Version::V2_2 => NS_SEND_V2_2,
        }
    }

    /// Local namespace of the SmsNotification interface.
    pub fn notification_ns(self) -> &'static str {
        match self {
            Version::V2_1 => NS_NOTIFICATION_V2_1,
            Version::V2_2 => NS_NOTIFICATION_V2_2,
        }
    }
}

/// Huawei `RequestSOAPHeader` (SP → SDP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHeader {
    pub sp_id: String,
    /// Already hashed, see [`sp_password`].
    pub sp_password: String,
    pub service_id: String,
    /// `yyyyMMddHHmmss`, the same string that went into the hash.
    pub timestamp: String,
    pub oa: String,
    pub fa: String,
}

impl RequestHeader {
    /// Builds a header from the plain password, hashing it with `timestamp`.
    pub fn with_password(
        sp_id: &str,
        password: &str,
        service_id: &str,
        timestamp: &str,
        oa: &str,
        fa: &str,
    ) -> Self {
        RequestHeader {
            sp_id: sp_id.to_owned(),
            sp_password: sp_password(sp_id, password, timestamp),
            service_id: service_id.to_owned(),
            timestamp: timestamp.to_owned(),
            oa: oa.to_owned(),
            fa: fa.to_owned(),
        }
    }
}

/// `spPassword` = lowercase hex MD5(spId + password + timeStamp).
pub fn sp_password(sp_id: &str, password: &str, timestamp: &str) -> String {
    let mut h = Md5::new();
    h.update(sp_id.as_bytes());
    h.update(password.as_bytes());
    h.update(timestamp.as_bytes());
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Current local time formatted `yyyyMMddHHmmss`.
pub fn timestamp_now() -> String {
    chrono::Local::now().format("%Y%m%d%H%M%S").to_string()
}

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

/// Which Parlay X exception a fault detail carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionKind {
    Service,
    Policy,
}

impl ExceptionKind {
    /// Element name used in the detail (`ServiceException` / `PolicyException`).
    pub fn element_name(self) -> &'static str {
        match self {
            ExceptionKind::Service => "ServiceException",
            ExceptionKind::Policy => "PolicyException",
        }
    }
}

/// Parlay X exception found in a fault `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionDetail {
    pub kind: ExceptionKind,
    /// e.g. `SVC0001`, `POL0003`.
    pub message_id: String,
    pub text: String,
    pub variables: Vec<String>,
}

/// A SOAP 1.1 fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// QName text, e.g. `soapenv:Server` (the encoder declares the `soapenv` prefix).
    pub faultcode: String,
    pub faultstring: String,
    pub exception: Option<ExceptionDetail>,
}

impl Fault {
    /// `soapenv:Server` fault carrying a `ServiceException`.
    pub fn service(message_id: &str, text: &str, variables: Vec<String>) -> Self {
        Self::with_exception(ExceptionKind::Service, message_id, text, variables)
    }

    /// `soapenv:Server` fault carrying a `PolicyException`.
    pub fn policy(message_id: &str, text: &str, variables: Vec<String>) -> Self {
        Self::with_exception(ExceptionKind::Policy, message_id, text, variables)
    }

    fn with_exception(
        kind: ExceptionKind,
        message_id: &str,
        text: &str,
        variables: Vec<String>,
    ) -> Self {
        Fault {
            faultcode: "soapenv:Server".to_owned(),
            faultstring: format!("{message_id}: {text}"),
            exception: Some(ExceptionDetail {
                kind,
                message_id: message_id.to_owned(),
                text: text.to_owned(),
                variables,
            }),
        }
    }

    /// The Parlay X message id (`SVC0001`, `POL0003`, …) if a detail was present.
    pub fn message_id(&self) -> Option<&str> {
        self.exception.as_ref().map(|e| e.message_id.as_str())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.faultcode, self.faultstring)?;
        if let Some(e) = &self.exception {
            write!(f, " ({:?} {}: {}", e.kind, e.message_id, e.text)?;
            if !e.variables.is_empty() {
                write!(f, " [{}]", e.variables.join(", "))?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

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

/// Decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum SoapError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("DOCTYPE/entity declarations are not accepted")]
    Doctype,
    #[error("unexpected SOAP body element <{0}>")]
    UnexpectedBody(String),
    /// Boxed to keep `Result<_, SoapError>` small.
    #[error("SOAP fault {0}")]
    Fault(Box<Fault>),
    #[error("missing element <{0}>")]
    MissingElement(&'static str),
    #[error("invalid value for <{element}>: {value:?}")]
    InvalidValue {
        element: &'static str,
        value: String,
    },
    /// A notification outside what the interface allows: SOAP 1.2, an undeclared prefix,
    /// an element in the wrong namespace.
    #[error("not accepted: {0}")]
    Namespace(String),
    /// A header marked `mustUnderstand` that the gateway does not understand.
    #[error("header <{0}> marked mustUnderstand is not understood")]
    MustUnderstand(String),
}

impl SoapError {
    /// The fault, when the peer answered with one.
    pub fn as_fault(&self) -> Option<&Fault> {
        match self {
            SoapError::Fault(f) => Some(f),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Appends `s` XML-escaped (text and attribute safe) to `out`.
pub fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            b'\r' => "&#xD;",
            b'\t' | b'\n' => continue,
            0..=0x1f => "\u{FFFD}",
            // U+FFFE / U+FFFF are EF BF BE / EF BF BF; handled below.
            0xEF => {
                if bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
                {
                    out.push_str(&s[start..i]);
                    out.push('\u{FFFD}');
                    start = i + 3;
                }
                continue;
            }
            _ => continue,
        };
        if i >= start {
            out.push_str(&s[start..i]);
            out.push_str(rep);
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push_str(&s[start..]);
    }
}

/// Rough size of the escaped form, for capacity planning.
fn esc_len(s: &str) -> usize {
    s.len() + s.len() / 8
}

fn push_elem(out: &mut String, prefix: &str, name: &str, text: &str) {
    out.push('<');
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push(':');
    }
    out.push_str(name);
    out.push('>');
    push_escaped(out, text);
    out.push_str("</");
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push(':');
    }
    out.push_str(name);
    out.push('>');
}

fn start_envelope(capacity: usize) -> String {
    let mut out = String::with_capacity(capacity + 160);
    out.push_str(XML_DECL);
    out.push_str(ENVELOPE_OPEN);
    out
}

/// Writes the standalone `<v2:RequestSOAPHeader xmlns:v2=…>` element.
pub fn write_request_header(out: &mut String, h: &RequestHeader) {
    out.push_str("<v2:RequestSOAPHeader xmlns:v2=\"");
    out.push_str(NS_HUAWEI);
    out.push_str("\">");
    push_elem(out, "v2", "spId", &h.sp_id);
    push_elem(out, "v2", "spPassword", &h.sp_password);
    push_elem(out, "v2", "serviceId", &h.service_id);
    push_elem(out, "v2", "timeStamp", &h.timestamp);
    push_elem(out, "v2", "OA", &h.oa);
    push_elem(out, "v2", "FA", &h.fa);
    out.push_str("</v2:RequestSOAPHeader>");
}

/// The `RequestSOAPHeader` element alone (with its namespace declaration).
pub fn encode_request_header(h: &RequestHeader) -> String {
    let mut out = String::with_capacity(512);
    write_request_header(&mut out, h);
    out
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

/// Writes the standalone `<ns2:ServiceException xmlns:ns2=…>` (or PolicyException) element.
pub fn write_exception_detail(out: &mut String, e: &ExceptionDetail) {
    let name = e.kind.element_name();
    out.push_str("<ns2:");
    out.push_str(name);
    out.push_str(" xmlns:ns2=\"");
    out.push_str(NS_COMMON);
    out.push_str("\">");
    push_elem(out, "", "messageId", &e.message_id);
    push_elem(out, "", "text", &e.text);
    for v in &e.variables {
        push_elem(out, "", "variables", v);
    }
    out.push_str("</ns2:");
    out.push_str(name);
    out.push('>');
}

/// The exception detail element alone (with its namespace declaration).
pub fn encode_exception_detail(e: &ExceptionDetail) -> String {
    let mut out = String::with_capacity(256);
    write_exception_detail(&mut out, e);
    out
}

/// Full SOAP 1.1 fault envelope (send it with HTTP 500).
pub fn encode_fault(fault: &Fault) -> String {
    let mut out = start_envelope(400 + esc_len(&fault.faultstring));
    out.push_str("<soapenv:Body><soapenv:Fault>");
    push_elem(&mut out, "", "faultcode", &fault.faultcode);
    push_elem(&mut out, "", "faultstring", &fault.faultstring);
    if let Some(e) = &fault.exception {
        out.push_str("<detail>");
        write_exception_detail(&mut out, e);
        out.push_str("</detail>");
    }
    out.push_str("</soapenv:Fault></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
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

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Namespace class of a parsed element (only the ones the decoders care about).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ns {
    None,
    Soap,
    Local(Version),
    Other,
}

fn classify_ns(r: &ResolveResult<'_>) -> Ns {
    match r {
        ResolveResult::Bound(ns) => match ns.0 {
            NS_SOAP | NS_SOAP12 => Ns::Soap,
            NS_SEND_V2_1 | NS_NOTIFICATION_V2_1 => Ns::Local(Version::V2_1),
            NS_SEND_V2_2 | NS_NOTIFICATION_V2_2 => Ns::Local(Version::V2_2),
            _ => Ns::Other,
        },
        ResolveResult::Unbound => Ns::None,
        // Undeclared prefix: be lenient, treat as an unknown namespace.
        ResolveResult::Unknown(_) => Ns::Other,
    }
}

/// Minimal element tree used by the decoders (documents are small).
#[derive(Debug)]
struct Elem {
    ns: Ns,
    /// The namespace exactly as resolved (for the strict notification decoders).
    uri: NsUri,
    /// `mustUnderstand="1"` (or `"true"`) on the element.
    must_understand: bool,
    name: String,
    text: String,
    children: Vec<Elem>,
}

impl Elem {
    fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn first_child(&self) -> Option<&Elem> {
        self.children.first()
    }

    /// Trimmed text of child `name`.
    fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }

    fn req_text(&self, name: &'static str) -> Result<String, SoapError> {
        self.child_text(name).ok_or(SoapError::MissingElement(name))
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// An element's namespace as written.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NsUri {
    Unbound,
    /// A prefix with no declaration in scope.
    Undeclared,
    Bound(String),
}

fn new_elem(ns: ResolveResult<'_>, start: &quick_xml::events::BytesStart<'_>) -> Elem {
    let local = start.local_name();
    let local: &str = local.as_ref();
    let uri = match &ns {
        ResolveResult::Bound(n) => NsUri::Bound(n.0.to_owned()),
        ResolveResult::Unbound => NsUri::Unbound,
        ResolveResult::Unknown(_) => NsUri::Undeclared,
    };
    let must_understand = start.attributes().flatten().any(|a| {
        let key = a.key.local_name();
        let key: &str = key.as_ref();
        key == "mustUnderstand" && matches!(a.value.as_ref().trim(), "1" | "true")
    });
    Elem {
        ns: classify_ns(&ns),
        uri,
        must_understand,
        name: local.to_owned(),
        text: String::new(),
        children: Vec::new(),
    }
}

fn attach(stack: &mut [Elem], root: &mut Option<Elem>, e: Elem) -> Result<(), SoapError> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(e);
            Ok(())
        }
        None if root.is_none() => {
            *root = Some(e);
            Ok(())
        }
        None => Err(SoapError::Malformed("more than one root element".into())),
    }
}

fn push_text(stack: &mut [Elem], text: &str) -> Result<(), SoapError> {
    match stack.last_mut() {
        Some(e) => {
            e.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(SoapError::Malformed("text outside the root element".into())),
    }
}

/// Parses `xml` into a tree. Refuses DOCTYPE, never expands custom entities.
fn parse(xml: &[u8]) -> Result<Elem, SoapError> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    // Pre-check so that nothing at all is processed when a DTD is present.
    if prolog_has_doctype(xml) {
        return Err(SoapError::Doctype);
    }
    let text = std::str::from_utf8(xml)
        .map_err(|e| SoapError::Malformed(format!("invalid UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    let malformed = |e: quick_xml::Error, pos: u64| {
        SoapError::Malformed(truncate(&format!("{e} (at byte {pos})"), 300))
    };
    loop {
        let ev = match reader.read_resolved_event() {
            Ok((ns, ev)) => match ev {
                Event::Start(s) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(SoapError::Malformed("element nesting too deep".into()));
                    }
                    Some(Ok(new_elem(ns, &s)))
                }
                Event::Empty(s) => Some(Err(new_elem(ns, &s))),
                Event::End(_) => {
                    let Some(done) = stack.pop() else {
                        return Err(SoapError::Malformed("unmatched end tag".into()));
                    };
                    attach(&mut stack, &mut root, done)?;
                    None
                }
                Event::Text(t) => {
                    push_text(&mut stack, &t.xml10_content())?;
                    None
                }
                Event::CData(c) => {
                    if stack.is_empty() {
                        return Err(SoapError::Malformed(
                            "CDATA outside the root element".into(),
                        ));
                    }
                    push_text(&mut stack, &c.xml10_content())?;
                    None
                }
                Event::GeneralRef(r) => {
                    let ch = match r.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        Ok(None) => match r.as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            other => {
                                return Err(SoapError::Malformed(format!(
                                    "undefined entity reference &{};",
                                    truncate(other, 40)
                                )));
                            }
                        },
                        Err(e) => return Err(malformed(e, reader.error_position())),
                    };
                    let mut buf = [0u8; 4];
                    push_text(&mut stack, ch.encode_utf8(&mut buf))?;
                    None
                }
                Event::DocType(_) => return Err(SoapError::Doctype),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => None,
                Event::Eof => break,
            },
            Err(e) => return Err(malformed(e, reader.error_position())),
        };
        match ev {
            Some(Ok(start)) => {
                if stack.is_empty() && root.is_some() {
                    return Err(SoapError::Malformed("more than one root element".into()));
                }
                stack.push(start);
            }
            Some(Err(empty)) => attach(&mut stack, &mut root, empty)?,
            None => {}
        }
    }
    if !stack.is_empty() {
        return Err(SoapError::Malformed("unexpected end of document".into()));
    }
    root.ok_or_else(|| SoapError::Malformed("empty document".into()))
}

/// True if the prolog (everything before the root element: XML declaration,
/// comments, processing instructions, whitespace) contains `<!DOCTYPE` in any
/// case. Checked before parsing so a DTD is refused even when it is itself
/// malformed; a DOCTYPE anywhere else is reported by the parser's DocType event.
fn prolog_has_doctype(xml: &[u8]) -> bool {
    let mut rest = xml;
    loop {
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[start..];
        let skip_to = |rest: &[u8], end: &[u8]| -> Option<usize> {
            rest.windows(end.len())
                .position(|w| w == end)
                .map(|p| p + end.len())
        };
        let next = if rest.starts_with(b"<?") {
            skip_to(rest, b"?>")
        } else if rest.starts_with(b"<!--") {
            skip_to(&rest[4..], b"-->").map(|p| p + 4)
        } else {
            return rest.len() >= 9
                && rest[..2] == *b"<!"
                && rest[2..9].eq_ignore_ascii_case(b"DOCTYPE");
        };
        match next {
            Some(n) => rest = &rest[n..],
            // Unterminated PI/comment: the parser will report it as malformed.
            None => return false,
        }
    }
}

/// The envelope's Header (if any) and the Body's first element child.
struct Envelope {
    root: Elem,
}

impl Envelope {
    fn parse(xml: &[u8]) -> Result<Self, SoapError> {
        let root = parse(xml)?;
        if root.name != "Envelope" || root.ns != Ns::Soap {
            return Err(SoapError::Malformed(format!(
                "root element <{}> is not a SOAP Envelope",
                truncate(&root.name, 60)
            )));
        }
        Ok(Envelope { root })
    }

    fn header(&self) -> Option<&Elem> {
        self.root.child("Header")
    }

    /// The Body's first element child; a Fault becomes `Err(SoapError::Fault)`.
    fn body_child(&self) -> Result<&Elem, SoapError> {
        let body = self
            .root
            .child("Body")
            .ok_or(SoapError::MissingElement("Body"))?;
        let child = body
            .first_child()
            .ok_or(SoapError::MissingElement("Body child"))?;
        if child.name == "Fault" {
            return Err(SoapError::Fault(Box::new(decode_fault_elem(child))));
        }
        Ok(child)
    }
}

fn decode_fault_elem(f: &Elem) -> Fault {
    // SOAP 1.1: faultcode/faultstring; SOAP 1.2: Code/Value, Reason/Text.
    let faultcode = f
        .child_text("faultcode")
        .or_else(|| f.child("Code").and_then(|c| c.child_text("Value")))
        .unwrap_or_default();
    let faultstring = f
        .child_text("faultstring")
        .or_else(|| f.child("Reason").and_then(|c| c.child_text("Text")))
        .unwrap_or_default();
    let detail = f.child("detail").or_else(|| f.child("Detail"));
    let exception = detail.and_then(|d| {
        d.children.iter().find_map(|c| {
            let kind = match c.name.as_str() {
                "ServiceException" | "ServiceExceptionDetail" => ExceptionKind::Service,
                "PolicyException" | "PolicyExceptionDetail" => ExceptionKind::Policy,
                _ => return None,
            };
            Some(ExceptionDetail {
                kind,
                message_id: c.child_text("messageId").unwrap_or_default(),
                text: c.child_text("text").unwrap_or_default(),
                variables: c
                    .children_named("variables")
                    .map(|v| v.text.trim().to_owned())
                    .collect(),
            })
        })
    });
    Fault {
        faultcode,
        faultstring,
        exception,
    }
}

fn local_version(e: &Elem) -> Option<Version> {
    match e.ns {
        Ns::Local(v) => Some(v),
        _ => None,
    }
}

/// Decodes a `sendSms` request (v2_1 or v2_2, header optional).
pub fn decode_send_sms(xml: &[u8]) -> Result<SendSms, SoapError> {
    decode_send_sms_versioned(xml).map(|(_, s)| s)
}

/// The `addresses` of a send operation (at least one).
fn read_addresses(op: &Elem) -> Result<Vec<String>, SoapError> {
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
fn read_receipt_request(op: &Elem) -> Result<Option<ReceiptRequest>, SoapError> {
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

/// The `RequestSOAPHeader`, if present; read leniently (a missing child is empty).
fn read_request_header(env: &Envelope) -> Option<RequestHeader> {
    env.header()
        .and_then(|h| h.child("RequestSOAPHeader"))
        .map(|h| RequestHeader {
            sp_id: h.child_text("spId").unwrap_or_default(),
            sp_password: h.child_text("spPassword").unwrap_or_default(),
            service_id: h.child_text("serviceId").unwrap_or_default(),
            timestamp: h.child_text("timeStamp").unwrap_or_default(),
            oa: h.child_text("OA").unwrap_or_default(),
            fa: h.child_text("FA").unwrap_or_default(),
        })
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

/// Decodes a fault envelope. Returns `Ok(fault)` if the body is a fault,
/// `Err(UnexpectedBody)` if it is something else.
pub fn decode_fault(xml: &[u8]) -> Result<Fault, SoapError> {
    let env = Envelope::parse(xml)?;
    match env.body_child() {
        Err(SoapError::Fault(f)) => Ok(*f),
        Err(e) => Err(e),
        Ok(other) => Err(SoapError::UnexpectedBody(truncate(&other.name, 80))),
    }
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
    fn md5_test_vector() {
        assert_eq!(
            sp_password("user", "password", "20130618105933"),
            "1f2e67e642b16f6623459fa76dc3894f"
        );
    }

    #[test]
    fn timestamp_format() {
        let t = timestamp_now();
        assert_eq!(t.len(), 14);
        assert!(t.bytes().all(|b| b.is_ascii_digit()));
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
    fn escaping_of_invalid_xml_chars() {
        let mut s = String::new();
        push_escaped(&mut s, "a\u{1}b\rc\u{FFFF}d\u{FFFE}e\u{FFFD}f\u{10348}");
        assert_eq!(s, "a\u{FFFD}b&#xD;c\u{FFFD}d\u{FFFD}e\u{FFFD}f\u{10348}");
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
    fn fault_round_trip() {
        for f in [
            Fault::service(
                "SVC0002",
                "Invalid input value for message part %1",
                vec!["addresses".into()],
            ),
            Fault::policy("POL0001", "A policy error occurred", vec![]),
            Fault {
                faultcode: "soapenv:Client".into(),
                faultstring: "bad <thing> & co".into(),
                exception: None,
            },
        ] {
            let xml = encode_fault(&f);
            match decode_send_sms_response(xml.as_bytes()) {
                Err(SoapError::Fault(got)) => assert_eq!(*got, f),
                other => panic!("expected fault, got {other:?}"),
            }
            assert_eq!(decode_fault(xml.as_bytes()).unwrap(), f);
            assert!(matches!(
                decode_notification(xml.as_bytes()),
                Err(SoapError::Fault(_))
            ));
        }
    }

    #[test]
    fn fault_decoding_xsd_style_detail() {
        let xml = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
<soapenv:Body><soapenv:Fault>
  <faultcode>soapenv:Server</faultcode>
  <faultstring>Service error</faultstring>
  <detail>
    <ns2:ServiceException xmlns:ns2="http://www.csapi.org/schema/parlayx/common/v2_1">
      <messageId>SVC0002</messageId>
      <text>Invalid input value for message part %1</text>
      <variables>addresses</variables>
    </ns2:ServiceException>
  </detail>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let err = decode_send_sms_response(xml.as_bytes()).unwrap_err();
        let f = err.as_fault().unwrap();
        assert_eq!(f.faultcode, "soapenv:Server");
        assert_eq!(f.faultstring, "Service error");
        let e = f.exception.as_ref().unwrap();
        assert_eq!(e.kind, ExceptionKind::Service);
        assert_eq!(e.message_id, "SVC0002");
        assert_eq!(e.text, "Invalid input value for message part %1");
        assert_eq!(e.variables, vec!["addresses"]);
        assert!(err.to_string().contains("SVC0002"));
    }

    #[test]
    fn fault_decoding_vumi_style_detail() {
        let xml = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/">
<S:Body><S:Fault>
  <faultcode>S:Server</faultcode>
  <faultstring>Policy</faultstring>
  <detail>
    <ns2:PolicyExceptionDetail xmlns:ns2="http://www.csapi.org/schema/parlayx/common/v2_1">
      <messageId>POL0003</messageId>
      <text>Too many addresses specified in message part %1</text>
      <variables>addresses</variables>
      <variables>10</variables>
    </ns2:PolicyExceptionDetail>
  </detail>
</S:Fault></S:Body></S:Envelope>"#;
        let f = decode_fault(xml.as_bytes()).unwrap();
        assert_eq!(f.message_id(), Some("POL0003"));
        let e = f.exception.unwrap();
        assert_eq!(e.kind, ExceptionKind::Policy);
        assert_eq!(e.variables, vec!["addresses", "10"]);
        // ServiceExceptionDetail too
        let xml2 = xml
            .replace("PolicyExceptionDetail", "ServiceExceptionDetail")
            .replace("POL0003", "SVC0001");
        let f2 = decode_fault(xml2.as_bytes()).unwrap();
        let e2 = f2.exception.unwrap();
        assert_eq!(
            (e2.kind, e2.message_id.as_str()),
            (ExceptionKind::Service, "SVC0001")
        );
    }

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

    #[test]
    fn doctype_refused() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<loc:sendSms xmlns:loc="http://www.csapi.org/schema/parlayx/sms/send/v2_2/local">
<loc:addresses>tel:1</loc:addresses><loc:message>&lol9;</loc:message></loc:sendSms>
</soapenv:Body></soapenv:Envelope>"#;
        assert!(matches!(
            decode_send_sms(laughs.as_bytes()),
            Err(SoapError::Doctype)
        ));
        let ext = r#"<!doctype x SYSTEM "file:///etc/passwd"><x>&xxe;</x>"#;
        assert!(matches!(
            decode_notification(ext.as_bytes()),
            Err(SoapError::Doctype)
        ));
        assert!(matches!(
            decode_fault(laughs.as_bytes()),
            Err(SoapError::Doctype)
        ));
        // After comments/PIs, and even when the DTD itself is unterminated.
        let hidden =
            "\u{FEFF}<?xml version=\"1.0\"?><!-- x --><?pi y?>\n<!DocType a [ <!ENTITY e \"";
        assert!(matches!(
            decode_send_sms(hidden.as_bytes()),
            Err(SoapError::Doctype)
        ));
        // A DOCTYPE inside the document is refused too.
        let inner = format!(
            "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"><!DOCTYPE a><soapenv:Body/></soapenv:Envelope>"
        );
        assert!(decode_send_sms(inner.as_bytes()).is_err());
        // The text "<!DOCTYPE" inside CDATA is just text.
        let cdata = format!(
            "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"><soapenv:Body><sendSms><addresses>tel:1</addresses><message><![CDATA[<!DOCTYPE html>]]></message></sendSms></soapenv:Body></soapenv:Envelope>"
        );
        assert_eq!(
            decode_send_sms(cdata.as_bytes()).unwrap().message,
            "<!DOCTYPE html>"
        );
    }

    #[test]
    fn undefined_entity_refused() {
        let xml = format!(
            "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"><soapenv:Body><sendSms><addresses>tel:1</addresses><message>&xxe;</message></sendSms></soapenv:Body></soapenv:Envelope>"
        );
        assert!(matches!(
            decode_send_sms(xml.as_bytes()),
            Err(SoapError::Malformed(m)) if m.contains("xxe")
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

    #[test]
    fn bom_is_accepted() {
        let mut xml = b"\xEF\xBB\xBF".to_vec();
        xml.extend_from_slice(encode_send_sms_response(Version::V2_1, "r1").as_bytes());
        assert_eq!(decode_send_sms_response(&xml).unwrap(), "r1");
    }
}
