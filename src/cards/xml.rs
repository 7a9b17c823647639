//! The card element (`schemas/card.xsd`, namespace [`NS`]): read with quick-xml after the
//! same safety check as app content (no DTD, no entities, bounded depth), written by hand
//! because it is a dozen flat elements; and its XEP-0292 vCard4 (RFC 6351 xCard) form for
//! XMPP clients that show vCards.
//!
//! ```xml
//! <card xmlns="urn:switchboard:card:1" friends-only="false">
//!   <portrait type="image/png">iVBORw0…</portrait>   <!-- or <portrait url="https://…"/> -->
//!   <name>Alice Liu</name>
//!   <nickname>Ali</nickname>
//!   <gender>female</gender>
//!   <age>30</age>
//!   <birthdate>1994-03-21</birthdate>
//!   <zodiac>aries</zodiac>
//!   <location>Beijing</location>
//!   <quotation>Stay hungry</quotation>
//!   <address>sms:+8613800000001</address>
//! </card>
//! ```

use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{Card, CardError, CardsConfig, Gender, NS, Portrait};

/// The XEP-0292 vCard4 namespace.
pub const VCARD4_NS: &str = "urn:ietf:params:xml:ns:vcard-4.0";

/// The card's elements, in the order the schema gives them.
const ORDER: [&str; 10] = [
    "portrait",
    "name",
    "nickname",
    "gender",
    "age",
    "birthdate",
    "zodiac",
    "location",
    "quotation",
    "address",
];

/// Reads and validates a card element. `Err` names the field at fault (`card` for the
/// document as a whole).
pub fn parse(xml: &str, cfg: &CardsConfig) -> Result<Card, CardError> {
    crate::apps::xml::check(xml, cfg.max_card_bytes).map_err(|e| CardError::new("card", e))?;
    let mut reader = NsReader::from_str(xml);
    let mut card = Card::default();
    let mut seen_name = false;
    let mut last: Option<usize> = None;
    // The leaf being read: its rank in ORDER and its text so far.
    let mut leaf: Option<(usize, String)> = None;
    let mut portrait_attrs: (Option<String>, Option<String>) = (None, None);
    let mut depth = 0usize;
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|e| CardError::new("card", format!("not well-formed XML: {e}")))?;
        let in_ns = matches!(ns, ResolveResult::Bound(n) if n.0 == NS);
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let local: String = {
                    let l = e.local_name();
                    let l: &str = l.as_ref();
                    l.to_string()
                };
                if depth == 0 {
                    if !in_ns || local != "card" {
                        return Err(CardError::new(
                            "card",
                            format!("the root element must be <card xmlns=\"{NS}\">"),
                        ));
                    }
                    for a in e.attributes() {
                        let a = a.map_err(|e| CardError::new("card", e.to_string()))?;
                        let key: &str = a.key.as_ref();
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|e| CardError::new("card", e.to_string()))?;
                        match key {
                            "xmlns" => {}
                            "owner" => card.owner = Some(value.into_owned()),
                            "friends-only" => {
                                card.friends_only = match value.as_ref() {
                                    "true" | "1" => true,
                                    "false" | "0" => false,
                                    v => {
                                        return Err(CardError::new(
                                            "friends-only",
                                            format!("{v:?} is not true or false"),
                                        ));
                                    }
                                }
                            }
                            k if k.starts_with("xmlns:") => {}
                            k => {
                                return Err(CardError::new(
                                    "card",
                                    format!("unknown attribute {k:?}"),
                                ));
                            }
                        }
                    }
                    if empty {
                        break;
                    }
                    depth = 1;
                    continue;
                }
                if depth > 1 || leaf.is_some() {
                    return Err(CardError::new(
                        field_name(leaf.as_ref().map(|l| l.0)),
                        "holds an element; give text only",
                    ));
                }
                let rank = ORDER
                    .iter()
                    .position(|n| *n == local)
                    .filter(|_| in_ns)
                    .ok_or_else(|| CardError::new("card", format!("unknown element <{local}>")))?;
                match last {
                    Some(l) if l > rank || (l == rank && ORDER[rank] != "address") => {
                        return Err(CardError::new(
                            ORDER[rank],
                            if l == rank {
                                "given twice".to_string()
                            } else {
                                format!("must come before <{}>", ORDER[l])
                            },
                        ));
                    }
                    _ => {}
                }
                last = Some(rank);
                if ORDER[rank] == "portrait" {
                    for a in e.attributes() {
                        let a = a.map_err(|e| CardError::new("portrait", e.to_string()))?;
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|e| CardError::new("portrait", e.to_string()))?
                            .into_owned();
                        let key: &str = a.key.as_ref();
                        match key {
                            "url" => portrait_attrs.0 = Some(value),
                            "type" => portrait_attrs.1 = Some(value),
                            k => {
                                return Err(CardError::new(
                                    "portrait",
                                    format!("unknown attribute {k:?}"),
                                ));
                            }
                        }
                    }
                } else if e.attributes().next().is_some() {
                    return Err(CardError::new(ORDER[rank], "takes no attributes"));
                }
                if empty {
                    set(
                        &mut card,
                        rank,
                        String::new(),
                        &mut portrait_attrs,
                        &mut seen_name,
                    )?;
                } else {
                    leaf = Some((rank, String::new()));
                    depth = 2;
                }
            }
            Event::End(_) => {
                if let Some((rank, text)) = leaf.take() {
                    set(&mut card, rank, text, &mut portrait_attrs, &mut seen_name)?;
                    depth = 1;
                } else {
                    break;
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                match &mut leaf {
                    Some((_, s)) => s.push_str(&t),
                    None if t.trim().is_empty() => {}
                    None => {
                        return Err(CardError::new("card", "text between the fields"));
                    }
                }
            }
            Event::CData(c) => {
                let c = c.xml10_content();
                match &mut leaf {
                    Some((_, s)) => s.push_str(&c),
                    None => return Err(CardError::new("card", "text between the fields")),
                }
            }
            Event::GeneralRef(r) => {
                let ch =
                    crate::apps::xml::general_ref(&r).map_err(|e| CardError::new("card", e))?;
                match &mut leaf {
                    Some((_, s)) => s.push(ch),
                    None => return Err(CardError::new("card", "text between the fields")),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_name {
        return Err(CardError::new("name", "is missing"));
    }
    card.validate(cfg)?;
    Ok(card)
}

fn field_name(rank: Option<usize>) -> &'static str {
    rank.map(|r| ORDER[r]).unwrap_or("card")
}

/// Puts one field's text on the card.
fn set(
    card: &mut Card,
    rank: usize,
    text: String,
    portrait: &mut (Option<String>, Option<String>),
    seen_name: &mut bool,
) -> Result<(), CardError> {
    let field = ORDER[rank];
    let opt = |t: String| -> Result<Option<String>, CardError> {
        if t.trim().is_empty() {
            Err(CardError::new(field, "is empty"))
        } else {
            Ok(Some(t))
        }
    };
    match field {
        "portrait" => {
            card.portrait = Some(match (portrait.0.take(), portrait.1.take()) {
                (Some(url), None) if text.trim().is_empty() => Portrait::Url(url),
                (None, Some(content_type)) => {
                    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                    let bytes = crate::message::b64::decode(&clean)
                        .ok_or_else(|| CardError::new("portrait", "the image is not base64"))?;
                    Portrait::Inline {
                        content_type,
                        bytes,
                    }
                }
                _ => {
                    return Err(CardError::new(
                        "portrait",
                        "give url=\"…\" (and no content), or type=\"image/…\" and the image in base64",
                    ));
                }
            })
        }
        "name" => {
            *seen_name = true;
            card.name = text;
        }
        "nickname" => card.nickname = opt(text)?,
        "gender" => {
            card.gender = Some(Gender::parse(text.trim()).ok_or_else(|| {
                CardError::new(
                    "gender",
                    format!("{text:?} is not male, female, other or unknown"),
                )
            })?)
        }
        "age" => {
            card.age = Some(text.trim().parse::<u8>().map_err(|_| {
                CardError::new("age", format!("{text:?} is not a whole number 0-150"))
            })?)
        }
        "birthdate" => card.birth_date = Some(text.trim().to_string()),
        "zodiac" => card.zodiac = Some(text.trim().to_string()),
        "location" => card.location = opt(text)?,
        "quotation" => card.quotation = opt(text)?,
        "address" => card.addresses.push(text.trim().to_string()),
        _ => unreachable!("ORDER holds the fields"),
    }
    Ok(())
}

/// The card element, in the schema's order.
pub fn to_xml(card: &Card) -> String {
    let mut s = format!("<card xmlns=\"{NS}\"");
    if let Some(o) = &card.owner {
        s.push_str(&format!(" owner=\"{}\"", escape(o.as_str())));
    }
    if card.friends_only {
        s.push_str(" friends-only=\"true\"");
    }
    s.push('>');
    match &card.portrait {
        None => {}
        Some(Portrait::Url(u)) => {
            s.push_str(&format!("<portrait url=\"{}\"/>", escape(u.as_str())))
        }
        Some(Portrait::Inline {
            content_type,
            bytes,
        }) => s.push_str(&format!(
            "<portrait type=\"{}\">{}</portrait>",
            escape(content_type.as_str()),
            crate::message::b64::encode(bytes)
        )),
    }
    let mut el = |name: &str, v: &str| {
        s.push_str(&format!("<{name}>{}</{name}>", escape(v)));
    };
    el("name", &card.name);
    if let Some(v) = &card.nickname {
        el("nickname", v);
    }
    if let Some(v) = card.gender {
        el("gender", v.as_str());
    }
    if let Some(v) = card.age {
        el("age", &v.to_string());
    }
    if let Some(v) = &card.birth_date {
        el("birthdate", v);
    }
    if let Some(v) = &card.zodiac {
        el("zodiac", v);
    }
    if let Some(v) = &card.location {
        el("location", v);
    }
    if let Some(v) = &card.quotation {
        el("quotation", v);
    }
    for a in &card.addresses {
        el("address", a);
    }
    s.push_str("</card>");
    s
}

/// The XEP-0292 `<vcard/>` element for the fields that map (RFC 6351).
pub fn to_vcard4(card: &Card) -> String {
    let mut s = format!("<vcard xmlns=\"{VCARD4_NS}\">");
    let mut prop = |name: &str, kind: &str, v: &str| {
        s.push_str(&format!("<{name}><{kind}>{}</{kind}></{name}>", escape(v)));
    };
    prop("fn", "text", &card.name);
    if let Some(v) = &card.nickname {
        prop("nickname", "text", v);
    }
    if let Some(g) = card.gender {
        prop("gender", "sex", super::vcard::sex_letter(g));
    }
    if let Some(d) = &card.birth_date {
        prop("bday", "date", &d.replace('-', ""));
    }
    if let Some(v) = &card.quotation {
        prop("note", "text", v);
    }
    match &card.portrait {
        Some(Portrait::Url(u)) => prop("photo", "uri", u),
        Some(Portrait::Inline {
            content_type,
            bytes,
        }) => prop(
            "photo",
            "uri",
            &format!(
                "data:{content_type};base64,{}",
                crate::message::b64::encode(bytes)
            ),
        ),
        None => {}
    }
    for a in &card.addresses {
        if let Some((name, kind, v)) = super::vcard::address_property(a) {
            prop(name, kind, &v);
        }
    }
    s.push_str("</vcard>");
    s
}
