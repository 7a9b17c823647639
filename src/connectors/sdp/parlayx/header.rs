//! The Huawei `RequestSOAPHeader` (SP → SDP): its fields, the `spPassword` hash, writing and reading.

use md5::{Digest, Md5};

use super::ns::NS_HUAWEI;
use super::xml::{Envelope, push_elem};

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

/// The `RequestSOAPHeader`, if present; read leniently (a missing child is empty).
pub(super) fn read_request_header(env: &Envelope) -> Option<RequestHeader> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
