//! The check an app message's content passes: one well-formed XML element, in UTF-8,
//! within the size limit, without a DTD, entities other than the five predefined ones
//! and character references, processing instructions or undeclared prefixes, nested at
//! most [`MAX_DEPTH`] deep. quick-xml reads it; this module only says what is allowed,
//! and gives the text inside (for people whose network cannot show the payload).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Deepest element nesting.
pub const MAX_DEPTH: usize = 32;

/// Content that passed: the element as given (any XML declaration left out), and the text
/// inside it, spaces collapsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub xml: String,
    pub text: String,
}

/// The character an entity or character reference stands for: only the five predefined
/// entities and character references are taken.
pub fn general_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Ok(c),
        Ok(None) => match r.as_ref() {
            "amp" => Ok('&'),
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "quot" => Ok('"'),
            "apos" => Ok('\''),
            other => Err(format!(
                "entity reference &{}; (only &amp; &lt; &gt; &quot; &apos; and character references)",
                other.chars().take(40).collect::<String>()
            )),
        },
        Err(e) => Err(format!("bad character reference: {e}")),
    }
}

/// Checks `content`; `Err` names the problem.
pub fn check(content: &str, max_bytes: usize) -> Result<Checked, String> {
    if content.len() > max_bytes {
        return Err(format!(
            "content is {} bytes; at most {max_bytes}",
            content.len()
        ));
    }
    let mut reader = NsReader::from_str(content);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut root_at: Option<usize> = None;
    let mut text = String::new();
    loop {
        let before = reader.buffer_position() as usize;
        let (ns, ev) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => {
                let at = reader.error_position();
                return Err(format!("not well-formed XML: {e} (at byte {at})"));
            }
        };
        if let ResolveResult::Unknown(p) = ns {
            return Err(format!(
                "undeclared namespace prefix {:?}",
                String::from_utf8_lossy(p.as_ref())
            ));
        }
        match ev {
            Event::Start(_) | Event::Empty(_) => {
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err("more than one root element".into());
                    }
                    root_at = Some(before);
                }
                if let Event::Start(_) = ev {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("elements nested more than {MAX_DEPTH} deep"));
                    }
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                let t = t.xml10_content();
                if depth == 0 {
                    if !t.trim().is_empty() {
                        return Err("text outside the root element".into());
                    }
                } else {
                    push_text(&mut text, &t);
                }
            }
            Event::CData(c) => {
                if depth == 0 {
                    return Err("CDATA outside the root element".into());
                }
                let c = c.xml10_content();
                push_text(&mut text, &c);
            }
            Event::GeneralRef(r) => {
                let ch = general_ref(&r)?;
                if depth == 0 {
                    return Err("text outside the root element".into());
                }
                let mut buf = [0u8; 4];
                push_text(&mut text, ch.encode_utf8(&mut buf));
            }
            Event::DocType(_) => return Err("a DTD (<!DOCTYPE …>) is not allowed".into()),
            Event::PI(_) => return Err("processing instructions are not allowed".into()),
            Event::Decl(_) => {
                if roots > 0 || before > 0 {
                    return Err("the XML declaration must come first".into());
                }
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if depth != 0 {
        return Err("unexpected end: an element is not closed".into());
    }
    let Some(at) = root_at else {
        return Err("no element: give one XML element".into());
    };
    Ok(Checked {
        xml: content[at..].trim_end().to_string(),
        text: text.trim().to_string(),
    })
}

fn push_text(out: &mut String, t: &str) {
    for word in t.split_whitespace() {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push_str(word);
    }
    if t.ends_with(char::is_whitespace) && !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Checked {
        check(s, 8192).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn bad(s: &str) -> String {
        check(s, 8192).expect_err(s)
    }

    #[test]
    fn an_element_passes_with_its_text() {
        let c = ok("<weather city='Paris'><t>3 &amp; falling</t> <sky>grey</sky></weather>");
        assert_eq!(c.text, "3 & falling grey");
        let c = ok("<?xml version='1.0'?>\n<w xmlns:g='urn:g'><g:x>&#x263A;</g:x></w>\n");
        assert_eq!(c.xml, "<w xmlns:g='urn:g'><g:x>&#x263A;</g:x></w>");
        assert_eq!(c.text, "☺");
        ok("<empty/>");
        ok("<!-- a note --><a><![CDATA[<raw>]]></a>");
    }

    #[test]
    fn what_is_refused_is_named() {
        assert!(bad("<a>").contains("not closed"), "{}", bad("<a>"));
        assert!(bad("<a></b>").contains("not well-formed"));
        assert!(bad("<a/><b/>").contains("more than one root"));
        assert!(bad("just text").contains("outside the root"));
        assert!(bad("").contains("no element"));
        assert!(bad("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>").contains("DTD"));
        assert!(bad("<a>&x;</a>").contains("entity reference &x;"));
        assert!(bad("<a><?php echo 1 ?></a>").contains("processing instructions"));
        assert!(bad("<p:a>x</p:a>").contains("undeclared namespace prefix"));
        assert!(
            check("<a>0123456789</a>", 10)
                .unwrap_err()
                .contains("at most 10")
        );
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert!(bad(&deep).contains("nested"));
    }
}
