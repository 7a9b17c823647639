//! Business cards: one person's card (portrait, name, nickname, gender, age, birth date,
//! zodiac sign, location, quotation and addresses) carried between networks.
//!
//! A card travels as [`Card`] on the message (`Content.card`) and each network gets its own
//! form of it: IM the card element (`schemas/card.xsd`, [`xml`]) with a readable body and
//! the XEP-0292 vCard4 form, mail and MMS a `text/vcard` vCard 4.0 part ([`vcard`], written
//! and read by the `vcard4` crate), phones without MMS a compact text ([`sms_text`]).
//! Every card, from whichever side, passes [`Card::validate`]; a refusal names the field.
//!
//! Who owns a card is never taken from the card itself: the gateway sets `owner` to the
//! directory user who sent it, when it is that user's own card ([`Card::vouch`]). Address
//! books key their contacts on it ([`Card::contact_key`]), and a card restricted to friends
//! (its own flag, or `[cards] friends_only`) reaches only its owner's friends
//! ([`may_see`]).

pub mod vcard;
pub mod xml;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::directory::Snapshot;
use crate::message::{Content, Part};

/// The card element's namespace.
pub const NS: &str = "urn:switchboard:card:1";
/// The vCard part's media type.
pub const VCARD_TYPE: &str = "text/vcard";

/// Most characters of the name, nickname, location and quotation.
pub const MAX_NAME: usize = 100;
pub const MAX_NICKNAME: usize = 50;
pub const MAX_LOCATION: usize = 200;
pub const MAX_QUOTATION: usize = 500;
/// Most addresses on one card.
pub const MAX_ADDRESSES: usize = 10;
/// Longest portrait URL.
pub const MAX_URL: usize = 2048;
/// The oldest age a card may give.
pub const MAX_AGE: u8 = 150;
/// Portrait types taken inline.
pub const PORTRAIT_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif"];

/// `[cards]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CardsConfig {
    /// Every card reaches only its owner's friends (as if each had `friends-only`).
    pub friends_only: bool,
    /// Most bytes of a card as XML or vCard.
    pub max_card_bytes: usize,
    /// Most bytes of an inline portrait (decoded).
    pub max_portrait_bytes: usize,
    /// Most contacts in one user's address book.
    pub max_contacts: usize,
}

impl Default for CardsConfig {
    fn default() -> Self {
        CardsConfig {
            friends_only: false,
            max_card_bytes: 64 * 1024,
            max_portrait_bytes: 32 * 1024,
            max_contacts: 1000,
        }
    }
}

impl CardsConfig {
    /// Every error, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.max_card_bytes < 1024 {
            e.push("cards.max_card_bytes: at least 1024".to_string());
        }
        if self.max_portrait_bytes * 4 / 3 + 1024 > self.max_card_bytes {
            e.push(
                "cards.max_portrait_bytes: an inline portrait (as base64) must fit in cards.max_card_bytes"
                    .to_string(),
            );
        }
        if self.max_contacts == 0 {
            e.push("cards.max_contacts: at least 1".to_string());
        }
        e
    }
}

/// The card's picture of its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Portrait {
    /// Where the picture is (`http(s)`).
    Url(String),
    /// The picture itself.
    Inline {
        content_type: String,
        #[serde(with = "crate::message::b64")]
        bytes: Vec<u8>,
    },
}

/// As the card gives it (vCard `GENDER`: `M`, `F`, `O`, `U`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

impl Gender {
    pub const ALL: [Gender; 4] = [Gender::Male, Gender::Female, Gender::Other, Gender::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Gender> {
        Gender::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// The twelve signs, in order from Aries.
pub const ZODIAC: [&str; 12] = [
    "aries",
    "taurus",
    "gemini",
    "cancer",
    "leo",
    "virgo",
    "libra",
    "scorpio",
    "sagittarius",
    "capricorn",
    "aquarius",
    "pisces",
];

/// One person's business card.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The directory user whose own card it is (set by the gateway, see [`Card::vouch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Only the owner's friends may see it.
    #[serde(default)]
    pub friends_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portrait: Option<Portrait>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<u8>,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// One of [`ZODIAC`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zodiac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotation: Option<String>,
    /// The owner's addresses (`im:`, `mail:`, `sms:`), as the gateway writes them.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// What a user's own card gives beside the name and addresses, kept on the user in the
/// directory (`card` of `PUT /v1/users/{id}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portrait_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zodiac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotation: Option<String>,
}

/// A card refused: the field at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("card {field}: {problem}")]
pub struct CardError {
    pub field: &'static str,
    pub problem: String,
}

impl CardError {
    pub fn new(field: &'static str, problem: impl Into<String>) -> CardError {
        CardError {
            field,
            problem: problem.into(),
        }
    }
}

/// A text field: trimmed, non-empty, at most `max` characters, no control characters
/// other than line breaks and tabs.
fn text_field(field: &'static str, v: &str, max: usize) -> Result<(), CardError> {
    if v.trim().is_empty() {
        return Err(CardError::new(field, "is empty"));
    }
    let n = v.chars().count();
    if n > max {
        return Err(CardError::new(
            field,
            format!("is {n} characters; at most {max}"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(CardError::new(field, "holds a control character"));
    }
    Ok(())
}

impl Card {
    /// Checks every field; the first one at fault is named.
    pub fn validate(&self, cfg: &CardsConfig) -> Result<(), CardError> {
        text_field("name", &self.name, MAX_NAME)?;
        if self.name.contains('\n') {
            return Err(CardError::new("name", "is more than one line"));
        }
        if let Some(n) = &self.nickname {
            text_field("nickname", n, MAX_NICKNAME)?;
        }
        if let Some(a) = self.age
            && a > MAX_AGE
        {
            return Err(CardError::new("age", format!("{a} is over {MAX_AGE}")));
        }
        if let Some(d) = &self.birth_date {
            let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .ok()
                .filter(|_| d.len() == 10)
                .ok_or_else(|| {
                    CardError::new("birthdate", format!("{d:?} is not a YYYY-MM-DD date"))
                })?;
            if date > chrono::Local::now().date_naive() {
                return Err(CardError::new("birthdate", format!("{d} is in the future")));
            }
        }
        if let Some(z) = &self.zodiac
            && !ZODIAC.contains(&z.as_str())
        {
            return Err(CardError::new(
                "zodiac",
                format!("{z:?} is not one of {}", ZODIAC.join(", ")),
            ));
        }
        if let Some(l) = &self.location {
            text_field("location", l, MAX_LOCATION)?;
        }
        if let Some(q) = &self.quotation {
            text_field("quotation", q, MAX_QUOTATION)?;
        }
        match &self.portrait {
            None => {}
            Some(Portrait::Url(u)) => {
                if u.len() > MAX_URL || !(u.starts_with("https://") || u.starts_with("http://")) {
                    return Err(CardError::new(
                        "portrait",
                        format!("url: an http(s) URL of at most {MAX_URL} bytes"),
                    ));
                }
                let uri_char =
                    |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
                if !u.chars().all(uri_char) || vcard::uri(u).is_none() {
                    return Err(CardError::new(
                        "portrait",
                        "url: not a URI (RFC 3986 characters only)",
                    ));
                }
            }
            Some(Portrait::Inline {
                content_type,
                bytes,
            }) => {
                if !PORTRAIT_TYPES.contains(&content_type.as_str()) {
                    return Err(CardError::new(
                        "portrait",
                        format!(
                            "type {content_type:?}: one of {}",
                            PORTRAIT_TYPES.join(", ")
                        ),
                    ));
                }
                if bytes.is_empty() {
                    return Err(CardError::new("portrait", "is empty"));
                }
                if bytes.len() > cfg.max_portrait_bytes {
                    return Err(CardError::new(
                        "portrait",
                        format!(
                            "is {} bytes; at most {}",
                            bytes.len(),
                            cfg.max_portrait_bytes
                        ),
                    ));
                }
            }
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(CardError::new(
                "address",
                format!("at most {MAX_ADDRESSES} addresses"),
            ));
        }
        for a in &self.addresses {
            match Address::parse_user(a) {
                Ok(p @ (Address::Im(_) | Address::Mail(_) | Address::Sms(_))) => {
                    // Each address must have its vCard form (IMPP is a URI).
                    let writable = vcard::address_property(a)
                        .is_some_and(|(_, kind, v)| kind != "uri" || vcard::uri(&v).is_some());
                    if !writable {
                        return Err(CardError::new(
                            "address",
                            format!("{a:?} has no vCard form"),
                        ));
                    }
                    if p.to_string() != *a {
                        return Err(CardError::new("address", format!("{a:?} is written {p}")));
                    }
                }
                Ok(p) => {
                    return Err(CardError::new(
                        "address",
                        format!("{p}: a card gives im:, mail: or sms: addresses"),
                    ));
                }
                Err(e) => return Err(CardError::new("address", format!("{a:?}: {e}"))),
            }
        }
        if let Some(o) = &self.owner
            && (o.is_empty()
                || o.len() > 128
                || o.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(CardError::new(
                "owner",
                "a user id of 1 to 128 bytes, without spaces",
            ));
        }
        Ok(())
    }

    /// A directory user's own card: name, addresses, and the profile kept with the user.
    pub fn of_user(user: &crate::directory::User) -> Card {
        let p = user.card.clone().unwrap_or_default();
        Card {
            owner: Some(user.id.clone()),
            friends_only: user.friends_only,
            portrait: p.portrait_url.map(Portrait::Url),
            name: user.name.clone(),
            nickname: p.nickname,
            gender: p.gender,
            age: p.age,
            birth_date: p.birth_date,
            zodiac: p.zodiac,
            location: p.location,
            quotation: p.quotation,
            addresses: user
                .addresses
                .iter()
                .filter(|a| matches!(a, Address::Im(_) | Address::Mail(_) | Address::Sms(_)))
                .take(MAX_ADDRESSES)
                .map(|a| a.to_string())
                .collect(),
        }
    }

    /// Sets who owns the card: `origin`'s directory user when the card names that user as
    /// owner or names no owner and lists one of the user's addresses; no owner otherwise.
    /// A claim the sender cannot back is dropped, never believed.
    pub fn vouch(&mut self, snap: &Snapshot, origin: &Address) {
        let sender = snap.user_of(origin).map(|u| u.id.clone());
        self.owner = match (self.owner.take(), sender) {
            (Some(claimed), Some(s)) if claimed == s => Some(s),
            (None, Some(s)) => {
                let own = self.addresses.iter().any(|a| {
                    Address::parse_user(a)
                        .ok()
                        .and_then(|a| snap.user_of(&a).map(|u| u.id == s))
                        .unwrap_or(false)
                });
                own.then_some(s)
            }
            _ => None,
        };
    }

    /// What a contact made from this card is keyed on: its owner, else its first address,
    /// else its name.
    pub fn contact_key(&self) -> String {
        match (&self.owner, self.addresses.first()) {
            (Some(o), _) => format!("user:{o}"),
            (None, Some(a)) => format!("address:{a}"),
            (None, None) => format!("name:{}", self.name.trim().to_lowercase()),
        }
    }

    /// Whether only the owner's friends may see it.
    pub fn restricted(&self, cfg: &CardsConfig) -> bool {
        self.friends_only || cfg.friends_only
    }

    /// `(label, value)` for each field a person reads, in card order.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for a in &self.addresses {
            if let Ok(p) = Address::parse_user(a) {
                let label = match p {
                    Address::Sms(_) => "Tel",
                    Address::Mail(_) => "Mail",
                    _ => "IM",
                };
                out.push((label, p.value().to_string()));
            }
        }
        let mut push = |label, v: &Option<String>| {
            if let Some(v) = v {
                out.push((label, v.replace('\n', " ")));
            }
        };
        push("Nickname", &self.nickname);
        push("Gender", &self.gender.map(|g| g.as_str().to_string()));
        push("Age", &self.age.map(|a| a.to_string()));
        push("Born", &self.birth_date);
        push("Zodiac", &self.zodiac);
        push("Location", &self.location);
        push("Quote", &self.quotation);
        if let Some(Portrait::Url(u)) = &self.portrait {
            out.push(("Portrait", u.clone()));
        }
        out
    }

    /// The card as a person reads it, one field a line.
    pub fn readable(&self) -> String {
        let mut s = format!("Card: {}", self.name);
        for (label, v) in self.lines() {
            s.push_str(&format!("\n{label}: {v}"));
        }
        s
    }
}

/// The card as a phone without MMS gets it: the name, then each field's line while the text
/// stays within `max_parts` SMS parts (whole lines only).
pub fn sms_text(card: &Card, max_parts: usize) -> String {
    let fits = |t: &str| crate::content::sms::segment(t).parts.len() <= max_parts.max(1);
    let mut text = format!("Card: {}", card.name);
    if !fits(&text) {
        return text;
    }
    for (label, v) in card.lines() {
        let next = format!("{text}\n{label}: {v}");
        if fits(&next) {
            text = next;
        }
    }
    text
}

/// Whether `to` may see `card`: always unless the card is restricted; then only its owner
/// and the owner's friends.
pub fn may_see(snap: &Snapshot, cfg: &CardsConfig, card: &Card, to: &Address) -> bool {
    if !card.restricted(cfg) {
        return true;
    }
    let Some(owner) = card.owner.as_ref().and_then(|o| snap.users.get(o)) else {
        return false;
    };
    snap.user_of(to)
        .is_some_and(|u| u.id == owner.id || owner.friends.contains(&u.id))
}

/// Makes `content` carry `card`: the card itself, its vCard (and inline portrait) as parts
/// for mail and MMS, and its readable form after any text given.
pub fn attach(content: &mut Content, card: Card) {
    let readable = card.readable();
    content.text = if content.text.trim().is_empty() {
        readable
    } else {
        format!("{}\n\n{readable}", content.text.trim_end())
    };
    let file = card_file_name(&card.name);
    let mut parts = vec![Part {
        content_type: VCARD_TYPE.to_string(),
        name: Some(format!("{file}.vcf")),
        bytes: vcard::to_vcard(&card).into_bytes(),
    }];
    if let Some(Portrait::Inline {
        content_type,
        bytes,
    }) = &card.portrait
    {
        let ext = content_type.trim_start_matches("image/");
        parts.push(Part {
            content_type: content_type.clone(),
            name: Some(format!("{file}.{ext}")),
            bytes: bytes.clone(),
        });
    }
    content.parts = parts;
    content.card = Some(card);
}

/// A file name from a person's name: letters and digits, else `card`.
fn card_file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
        .take(40)
        .collect::<String>()
        .trim()
        .replace(' ', "-");
    if s.is_empty() { "card".into() } else { s }
}

/// Whether a part is a vCard (by type, or a `.vcf` name).
pub fn is_vcard(p: &Part) -> bool {
    let t = p.content_type.trim().to_ascii_lowercase();
    let t = t.split(';').next().unwrap_or("").trim();
    matches!(t, "text/vcard" | "text/x-vcard" | "text/directory")
        || p.name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".vcf"))
}

/// A received message whose parts hold a vCard (mail, MMS) becomes a card message: the
/// first vCard part that reads as a valid card. One that does not stays an attachment
/// (`Err` says why, for the log).
pub fn recognise(content: &mut Content, cfg: &CardsConfig) -> Result<bool, CardError> {
    if content.card.is_some() {
        return Ok(false);
    }
    let Some(p) = content.parts.iter().find(|p| is_vcard(p)) else {
        return Ok(false);
    };
    if p.bytes.len() > cfg.max_card_bytes {
        return Err(CardError::new(
            "card",
            format!(
                "the vCard is {} bytes; at most {}",
                p.bytes.len(),
                cfg.max_card_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(&p.bytes)
        .map_err(|_| CardError::new("card", "the vCard is not UTF-8"))?;
    let card = vcard::from_vcard(text)?;
    card.validate(cfg)?;
    // The text given stays, and so do the other attachments.
    let others: Vec<Part> = content.parts.drain(..).filter(|p| !is_vcard(p)).collect();
    attach(content, card);
    content.parts.extend(others);
    Ok(true)
}
