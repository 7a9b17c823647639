//! A card as a vCard 4.0 (RFC 6350) and back, written and read by the `vcard4` crate (it
//! does the escaping and line folding).
//!
//! | card | vCard |
//! |------|-------|
//! | name | `FN` |
//! | nickname | `NICKNAME` |
//! | gender | `GENDER` (`M`, `F`, `O`, `U`) |
//! | birth date | `BDAY` |
//! | quotation | `NOTE` |
//! | portrait | `PHOTO` (the URL, or a `data:` URI) |
//! | `sms:` / `mail:` / `im:` addresses | `TEL` (`tel:` URI) / `EMAIL` / `IMPP` (`xmpp:` URI) |
//! | age, zodiac, location | `X-AGE`, `X-ZODIAC`, `X-LOCATION` (vCard has no such text fields) |
//! | friends-only | `X-SWITCHBOARD-FRIENDS-ONLY:true` |
//!
//! The owner is not written: whoever reads the vCard could not trust it.
//!
//! vcard4 0.7 and the `uriparse` 0.6 it parses URIs with panic on some input instead of
//! returning an error (found by the `card` fuzz target: a `TEL` value such as
//! `x@ytel:+86…`, a `BDAY` starting with a non-ASCII character). A vCard comes from anyone who can mail the gateway, so every call into
//! that parser is made under `catch_unwind` and a panic is a refusal of that vCard.

use vcard4::property::{
    AnyProperty, DateAndOrTime, DateTimeOrTextProperty, ExtensionProperty, Sex, TextOrUriProperty,
};
use vcard4::{Uri, Vcard, VcardBuilder};

use super::{Card, CardError, Gender, Portrait};
use crate::address::Address;

const X_AGE: &str = "X-AGE";
const X_ZODIAC: &str = "X-ZODIAC";
const X_LOCATION: &str = "X-LOCATION";
const X_FRIENDS_ONLY: &str = "X-SWITCHBOARD-FRIENDS-ONLY";

/// `GENDER`'s sex letter.
pub fn sex_letter(g: Gender) -> &'static str {
    match g {
        Gender::Male => "M",
        Gender::Female => "F",
        Gender::Other => "O",
        Gender::Unknown => "U",
    }
}

/// The vCard / xCard property for one of the card's addresses: `(name, value kind, value)`.
pub fn address_property(a: &str) -> Option<(&'static str, &'static str, String)> {
    match Address::parse_user(a).ok()? {
        Address::Sms(n) => Some(("tel", "uri", format!("tel:{n}"))),
        Address::Mail(m) => Some(("email", "text", m)),
        Address::Im(j) => Some(("impp", "uri", format!("xmpp:{j}"))),
        _ => None,
    }
}

/// Runs `f` (a call into vcard4's parsers); `None` if it panicked.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// `s` as a vCard URI, if it reads as one.
pub fn uri(s: &str) -> Option<Uri> {
    guarded(|| s.parse::<Uri>().ok()).flatten()
}

fn extension(name: &str, value: String) -> ExtensionProperty {
    ExtensionProperty {
        name: name.to_string(),
        group: None,
        value: AnyProperty::Text(value),
        parameters: None,
    }
}

/// The card as a vCard 4.0.
pub fn to_vcard(card: &Card) -> String {
    let mut b = VcardBuilder::new(card.name.clone());
    if let Some(n) = &card.nickname {
        b = b.nickname(n.clone());
    }
    if let Some(g) = card.gender {
        b = b.gender(sex_letter(g));
    }
    if let Some(q) = &card.quotation {
        b = b.note(q.clone());
    }
    if let Some(d) = card
        .birth_date
        .as_deref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    {
        use chrono::Datelike;
        let month = vcard4::time::Month::try_from(d.month() as u8).ok();
        if let Some(date) = month
            .and_then(|m| vcard4::time::Date::from_calendar_date(d.year(), m, d.day() as u8).ok())
        {
            b = b.birthday(date.into());
        }
    }
    let photo = match &card.portrait {
        Some(Portrait::Url(u)) => Some(u.clone()),
        Some(Portrait::Inline {
            content_type,
            bytes,
        }) => Some(format!(
            "data:{content_type};base64,{}",
            crate::message::b64::encode(bytes)
        )),
        None => None,
    };
    if let Some(uri) = photo.as_deref().and_then(uri) {
        b = b.photo(uri);
    }
    for a in &card.addresses {
        match address_property(a) {
            Some(("tel", _, v)) => b = b.telephone(v),
            Some(("email", _, v)) => b = b.email(v),
            Some((_, _, v)) => {
                if let Some(u) = uri(&v) {
                    b = b.impp(u);
                }
            }
            None => {}
        }
    }
    let mut v = b.finish();
    if let Some(a) = card.age {
        v.extensions.push(extension(X_AGE, a.to_string()));
    }
    if let Some(z) = &card.zodiac {
        v.extensions.push(extension(X_ZODIAC, z.clone()));
    }
    if let Some(l) = &card.location {
        v.extensions.push(extension(X_LOCATION, l.clone()));
    }
    if card.friends_only {
        v.extensions.push(extension(X_FRIENDS_ONLY, "true".into()));
    }
    v.to_string()
}

fn text_or_uri(p: &TextOrUriProperty) -> String {
    match p {
        TextOrUriProperty::Text(t) => t.value.clone(),
        TextOrUriProperty::Uri(u) => u.value.to_string(),
    }
}

fn ext_text(v: &Vcard, name: &str) -> Option<String> {
    v.extensions
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(name))
        .map(|e| match &e.value {
            AnyProperty::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
}

/// Joins folded lines (RFC 6350 §3.2: a line break followed by a space or tab is removed).
/// vcard4 0.7 misreads an escape split by a fold (`\` CRLF SP `\`), which its own writer
/// produces, so the text is unfolded before it reads it.
fn unfold(text: &str) -> String {
    text.replace("\r\n ", "")
        .replace("\r\n\t", "")
        .replace("\n ", "")
        .replace("\n\t", "")
}

/// Reads the first vCard of `text` as a card (not yet validated). The fields with no place
/// on a card (organisation, street address…) are left out.
pub fn from_vcard(text: &str) -> Result<Card, CardError> {
    let unfolded = unfold(text);
    let mut cards = guarded(|| vcard4::parse_loose(&unfolded))
        .ok_or_else(|| CardError::new("card", "not a vCard: a value does not read"))?
        .map_err(|e| CardError::new("card", format!("not a vCard: {e}")))?;
    if cards.is_empty() {
        return Err(CardError::new("card", "no vCard"));
    }
    let v = cards.swap_remove(0);
    let name = v
        .formatted_name
        .first()
        .map(|p| p.value.clone())
        .ok_or_else(|| CardError::new("name", "is missing (FN)"))?;
    let gender = match v.gender.as_ref().map(|g| &g.value.sex) {
        None | Some(Sex::None) => None,
        Some(Sex::Male) => Some(Gender::Male),
        Some(Sex::Female) => Some(Gender::Female),
        Some(Sex::Other) => Some(Gender::Other),
        Some(Sex::NotApplicable | Sex::Unknown) => Some(Gender::Unknown),
    };
    let birth_date = match &v.bday {
        None => None,
        Some(DateTimeOrTextProperty::DateTime(d)) => match d.value.first() {
            Some(DateAndOrTime::Date(d)) => Some(vcard4::time::Date::from(d.clone()).to_string()),
            Some(DateAndOrTime::DateTime(t)) => Some(
                vcard4::time::OffsetDateTime::from(t.clone())
                    .date()
                    .to_string(),
            ),
            _ => return Err(CardError::new("birthdate", "BDAY is not a date")),
        },
        Some(DateTimeOrTextProperty::Text(t)) => Some(t.value.clone()),
    };
    let portrait = match v.photo.first().map(text_or_uri) {
        None => None,
        Some(p) if p.starts_with("data:") => {
            let (head, data) = p["data:".len()..]
                .split_once(',')
                .ok_or_else(|| CardError::new("portrait", "a data: URI without data"))?;
            let content_type = head
                .strip_suffix(";base64")
                .ok_or_else(|| CardError::new("portrait", "a data: URI that is not base64"))?
                .to_ascii_lowercase();
            let bytes = crate::message::b64::decode(data)
                .ok_or_else(|| CardError::new("portrait", "the image is not base64"))?;
            Some(Portrait::Inline {
                content_type,
                bytes,
            })
        }
        Some(url) => Some(Portrait::Url(url)),
    };
    let mut addresses = Vec::new();
    for t in &v.tel {
        let t = text_or_uri(t);
        let n = t.strip_prefix("tel:").unwrap_or(&t);
        let digits: String = n
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        if let Ok(a) = Address::parse_user(&format!("sms:{digits}")) {
            addresses.push(a.to_string());
        }
    }
    for e in &v.email {
        if let Ok(a) = Address::parse_user(&format!("mail:{}", e.value)) {
            addresses.push(a.to_string());
        }
    }
    for i in &v.impp {
        let u = i.value.to_string();
        if let Some(j) = u.strip_prefix("xmpp:")
            && let Ok(a) = Address::parse_user(&format!("im:{j}"))
        {
            addresses.push(a.to_string());
        }
    }
    addresses.truncate(super::MAX_ADDRESSES);
    let age =
        match ext_text(&v, X_AGE) {
            None => None,
            Some(a) => Some(a.trim().parse::<u8>().map_err(|_| {
                CardError::new("age", format!("{a:?} is not a whole number 0-150"))
            })?),
        };
    Ok(Card {
        owner: None,
        friends_only: ext_text(&v, X_FRIENDS_ONLY).is_some_and(|f| f.trim() == "true"),
        portrait,
        name,
        nickname: v.nickname.first().map(|n| n.value.clone()),
        gender,
        age,
        birth_date,
        zodiac: ext_text(&v, X_ZODIAC).map(|z| z.trim().to_ascii_lowercase()),
        location: ext_text(&v, X_LOCATION),
        quotation: v.note.first().map(|n| n.value.clone()),
        addresses,
    })
}
