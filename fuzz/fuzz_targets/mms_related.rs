//! The SOAP-with-attachments parser (`multipart/related`): the first line is taken as the
//! HTTP Content-Type, the rest as the body. No panic; at most the part limit is returned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::connectors::sdp::parlayx::swa::{MAX_PARTS, parse_related};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let content_type = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(parts) = parse_related(&content_type, body) {
        assert!(!parts.is_empty() && parts.len() <= MAX_PARTS);
    }
});
