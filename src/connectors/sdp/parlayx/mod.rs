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

pub mod credentials;
mod fault;
mod header;
pub mod mms;
mod notify;
mod ns;
mod send_sms;
mod strict;
pub mod swa;
mod xml;

pub use fault::{
    ExceptionDetail, ExceptionKind, Fault, decode_fault, encode_exception_detail, encode_fault,
    write_exception_detail,
};
pub use header::{
    RequestHeader, encode_request_header, sp_password, timestamp_now, write_request_header,
};
pub use notify::{
    DeliveryOutcome, DeliveryStatus, Notification, NotificationKind, decode_notification,
    decode_notification_versioned, decode_notification_with_header, decode_notify_response,
    encode_notify_delivery_receipt, encode_notify_delivery_receipt_body, encode_notify_response,
    encode_notify_sms_reception, encode_notify_sms_reception_body,
    write_notify_delivery_receipt_body, write_notify_sms_reception_body,
};
pub use ns::{
    CONTENT_TYPE, NS_COMMON, NS_HUAWEI, NS_NOTIFICATION_V2_1, NS_NOTIFICATION_V2_2, NS_SEND_V2_1,
    NS_SEND_V2_2, NS_SOAP, NS_SOAP12, Version,
};
pub use send_sms::{
    ReceiptRequest, SendSms, decode_send_sms, decode_send_sms_response, decode_send_sms_versioned,
    encode_send_sms, encode_send_sms_body, encode_send_sms_response, write_send_sms_body,
};
pub use strict::{NotifyHeader, insert_notify_header};
pub use xml::{SoapError, push_escaped};
