//! Every Parlay X SOAP decoder (SMS and MMS) on arbitrary bytes: no panic, bounded work.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::connectors::sdp::parlayx::{self, mms};

fuzz_target!(|data: &[u8]| {
    let _ = parlayx::decode_notification_versioned(data);
    let _ = parlayx::decode_notification_with_header(data);
    let _ = parlayx::decode_send_sms_versioned(data);
    let _ = parlayx::decode_send_sms_response(data);
    let _ = parlayx::decode_fault(data);
    let _ = parlayx::decode_notify_response(data);
    let _ = mms::decode_send_message(data);
    let _ = mms::decode_send_message_response(data);
    let _ = mms::decode_mm_notification(data);
    let _ = mms::decode_mm_notification_with_header(data);
    let _ = mms::decode_get_message(data);
    let _ = mms::decode_get_message_response(data);
});
