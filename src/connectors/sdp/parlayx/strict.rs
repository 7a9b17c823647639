//! The strict rules for notifications the SDP sends the gateway (SMS and MMS): a SOAP 1.1
//! envelope only, every prefix declared, the operation in its interface's notification
//! namespace, and every header marked `mustUnderstand` understood (only the Huawei
//! `NotifySOAPHeader` is). The `NotifySOAPHeader` is read here, for the callback check.

use super::ns::{NS_HUAWEI, NS_SOAP, NS_SOAP12};
use super::xml::{Elem, Envelope, NsUri, SoapError, push_elem, truncate};

/// The Huawei `NotifySOAPHeader` (SDP → SP) fields the gateway checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyHeader {
    pub sp_rev_id: String,
    pub sp_rev_password: String,
    pub sp_id: String,
    /// `yyyyMMddHHmmss`.
    pub timestamp: String,
}

fn any_undeclared(e: &Elem) -> bool {
    e.uri == NsUri::Undeclared || e.children.iter().any(any_undeclared)
}

fn in_ns(e: &Elem, ns: &str) -> bool {
    matches!(&e.uri, NsUri::Bound(u) if u == ns)
}

/// Checks `env` against the rules; `op_ns`: the namespaces the operation may be in.
/// Returns the operation element and the NotifySOAPHeader, if one was sent.
pub(super) fn check<'a>(
    env: &'a Envelope,
    op_ns: &[&str],
) -> Result<(&'a Elem, Option<NotifyHeader>), SoapError> {
    let root = &env.root;
    if in_ns(root, NS_SOAP12) {
        return Err(SoapError::Namespace(
            "SOAP 1.2 envelopes are not accepted; use SOAP 1.1".into(),
        ));
    }
    if !in_ns(root, NS_SOAP) {
        return Err(SoapError::Namespace(
            "the envelope is not in the SOAP 1.1 namespace".into(),
        ));
    }
    if any_undeclared(root) {
        return Err(SoapError::Namespace(
            "an undeclared namespace prefix".into(),
        ));
    }
    for c in &root.children {
        if !in_ns(c, NS_SOAP) || !matches!(c.name.as_str(), "Header" | "Body") {
            return Err(SoapError::Namespace(format!(
                "unexpected envelope child <{}>",
                truncate(&c.name, 60)
            )));
        }
    }
    let mut header = None;
    if let Some(h) = env.header() {
        for entry in &h.children {
            if entry.name == "NotifySOAPHeader" && in_ns(entry, NS_HUAWEI) {
                let text = |n: &str| {
                    entry
                        .children
                        .iter()
                        .find(|c| c.name == n && in_ns(c, NS_HUAWEI))
                        .map(|c| c.text.trim().to_string())
                        .unwrap_or_default()
                };
                header = Some(NotifyHeader {
                    sp_rev_id: text("spRevId"),
                    sp_rev_password: text("spRevpassword"),
                    sp_id: text("spId"),
                    timestamp: text("timeStamp"),
                });
            } else if entry.must_understand {
                return Err(SoapError::MustUnderstand(truncate(&entry.name, 60)));
            }
        }
    }
    let op = env.body_child()?;
    if !op_ns.iter().any(|ns| in_ns(op, ns)) {
        return Err(SoapError::Namespace(format!(
            "<{}> is not in this interface's notification namespace",
            truncate(&op.name, 60)
        )));
    }
    Ok((op, header))
}

/// Puts a `NotifySOAPHeader` into an envelope the encoders made (one without a Header),
/// as an SDP does on its callbacks.
pub fn insert_notify_header(xml: String, h: &NotifyHeader) -> String {
    let Some(start) = xml.find("<soapenv:Envelope") else {
        return xml;
    };
    let Some(end) = xml[start..].find('>').map(|p| start + p + 1) else {
        return xml;
    };
    let mut out = String::with_capacity(xml.len() + 400);
    out.push_str(&xml[..end]);
    out.push_str("<soapenv:Header><hw:NotifySOAPHeader xmlns:hw=\"");
    out.push_str(NS_HUAWEI);
    out.push_str("\">");
    push_elem(&mut out, "hw", "spRevId", &h.sp_rev_id);
    push_elem(&mut out, "hw", "spRevpassword", &h.sp_rev_password);
    push_elem(&mut out, "hw", "spId", &h.sp_id);
    push_elem(&mut out, "hw", "timeStamp", &h.timestamp);
    out.push_str("</hw:NotifySOAPHeader></soapenv:Header>");
    out.push_str(&xml[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{
        NS_NOTIFICATION_V2_2, NS_SEND_V2_2, SoapError, decode_notification_with_header,
    };

    fn envelope(soap_ns: &str, header: &str, op_ns: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="{soap_ns}"><s:Header>{header}</s:Header><s:Body><n:notifySmsDeliveryReceipt xmlns:n="{op_ns}"><n:correlator>c</n:correlator><n:deliveryStatus><address>tel:+1</address><deliveryStatus>DeliveredToTerminal</deliveryStatus></n:deliveryStatus></n:notifySmsDeliveryReceipt></s:Body></s:Envelope>"#
        )
    }

    const HW: &str = r#"<h:NotifySOAPHeader xmlns:h="http://www.huawei.com.cn/schema/common/v2_1" s:mustUnderstand="1"><h:spRevId>r</h:spRevId><h:spRevpassword>p</h:spRevpassword><h:spId>i</h:spId><h:timeStamp>20260101000000</h:timeStamp></h:NotifySOAPHeader>"#;

    #[test]
    fn the_notify_header_is_understood_and_read() {
        let xml = envelope(super::NS_SOAP, HW, NS_NOTIFICATION_V2_2);
        let (_, _, h) = decode_notification_with_header(xml.as_bytes()).unwrap();
        let h = h.expect("the header");
        assert_eq!(
            (
                h.sp_rev_id.as_str(),
                h.sp_rev_password.as_str(),
                h.sp_id.as_str()
            ),
            ("r", "p", "i")
        );
        assert_eq!(h.timestamp, "20260101000000");
    }

    #[test]
    fn lenient_documents_are_refused() {
        let unknown = r#"<x:T xmlns:x="urn:x" s:mustUnderstand="true"/>"#;
        let xml = envelope(super::NS_SOAP, unknown, NS_NOTIFICATION_V2_2);
        assert!(matches!(
            decode_notification_with_header(xml.as_bytes()),
            Err(SoapError::MustUnderstand(n)) if n == "T"
        ));
        let ignorable = r#"<x:T xmlns:x="urn:x" s:mustUnderstand="0"/>"#;
        let xml = envelope(super::NS_SOAP, ignorable, NS_NOTIFICATION_V2_2);
        assert!(decode_notification_with_header(xml.as_bytes()).is_ok());
        for xml in [
            envelope(super::NS_SOAP12, "", NS_NOTIFICATION_V2_2),
            envelope(super::NS_SOAP, "", NS_SEND_V2_2),
            envelope(super::NS_SOAP, "<u:x/>", NS_NOTIFICATION_V2_2),
        ] {
            assert!(
                matches!(
                    decode_notification_with_header(xml.as_bytes()),
                    Err(SoapError::Namespace(_))
                ),
                "{xml}"
            );
        }
    }
}
