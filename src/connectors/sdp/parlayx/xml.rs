//! The XML writer (escaping, elements, the SOAP envelope) and the reader the decoders share:
//! a small element tree with no DOCTYPE, no custom entities and bounded depth; the decoding error.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::fault::{Fault, decode_fault_elem};
use super::ns::{
    NS_NOTIFICATION_V2_1, NS_NOTIFICATION_V2_2, NS_SEND_V2_1, NS_SEND_V2_2, NS_SOAP, NS_SOAP12,
    Version,
};

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
const ENVELOPE_OPEN: &str =
    "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">";
pub(super) const ENVELOPE_CLOSE: &str = "</soapenv:Envelope>";
/// Deepest element nesting accepted by the decoders.
const MAX_DEPTH: usize = 64;

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
pub(super) fn esc_len(s: &str) -> usize {
    s.len() + s.len() / 8
}

pub(super) fn push_elem(out: &mut String, prefix: &str, name: &str, text: &str) {
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

pub(super) fn start_envelope(capacity: usize) -> String {
    let mut out = String::with_capacity(capacity + 160);
    out.push_str(XML_DECL);
    out.push_str(ENVELOPE_OPEN);
    out
}

/// Namespace class of a parsed element (only the ones the decoders care about).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ns {
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
pub(super) struct Elem {
    pub(super) ns: Ns,
    /// The namespace exactly as resolved (for the strict notification decoders).
    pub(super) uri: NsUri,
    /// `mustUnderstand="1"` (or `"true"`) on the element.
    pub(super) must_understand: bool,
    pub(super) name: String,
    pub(super) text: String,
    pub(super) children: Vec<Elem>,
}

impl Elem {
    pub(super) fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }

    pub(super) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub(super) fn first_child(&self) -> Option<&Elem> {
        self.children.first()
    }

    /// Trimmed text of child `name`.
    pub(super) fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }

    pub(super) fn req_text(&self, name: &'static str) -> Result<String, SoapError> {
        self.child_text(name).ok_or(SoapError::MissingElement(name))
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// An element's namespace as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NsUri {
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
pub(super) struct Envelope {
    pub(super) root: Elem,
}

impl Envelope {
    pub(super) fn parse(xml: &[u8]) -> Result<Self, SoapError> {
        let root = parse(xml)?;
        if root.name != "Envelope" || root.ns != Ns::Soap {
            return Err(SoapError::Malformed(format!(
                "root element <{}> is not a SOAP Envelope",
                truncate(&root.name, 60)
            )));
        }
        Ok(Envelope { root })
    }

    pub(super) fn header(&self) -> Option<&Elem> {
        self.root.child("Header")
    }

    /// The Body's first element child; a Fault becomes `Err(SoapError::Fault)`.
    pub(super) fn body_child(&self) -> Result<&Elem, SoapError> {
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

pub(super) fn local_version(e: &Elem) -> Option<Version> {
    match e.ns {
        Ns::Local(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sdp::parlayx::*;

    #[test]
    fn escaping_of_invalid_xml_chars() {
        let mut s = String::new();
        push_escaped(&mut s, "a\u{1}b\rc\u{FFFF}d\u{FFFE}e\u{FFFD}f\u{10348}");
        assert_eq!(s, "a\u{FFFD}b&#xD;c\u{FFFD}d\u{FFFD}e\u{FFFD}f\u{10348}");
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
    fn bom_is_accepted() {
        let mut xml = b"\xEF\xBB\xBF".to_vec();
        xml.extend_from_slice(encode_send_sms_response(Version::V2_1, "r1").as_bytes());
        assert_eq!(decode_send_sms_response(&xml).unwrap(), "r1");
    }
}
