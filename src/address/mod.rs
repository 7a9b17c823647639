//! The address notation used everywhere (API, config, logs, store) and the mappings
//! between address spaces.
//!
//! `sms:+E164`, `mail:local@domain`, `im:jid`, `group:name`, `app:id`; `tel:`, `mailto:` and
//! `xmpp:` are accepted on input and normalised. An API origin's `report_url` becomes an
//! `http://…` / `https://…` address (channel `callback`); such addresses are never accepted
//! in the API's `to` list. Parsing never panics and reports what is wrong.

mod gateway;
mod jid;
mod mail_domains;
mod mo;
mod parse;
mod pattern;
mod phone;

use std::fmt;
use std::str::FromStr;

pub use gateway::{Network, from_gateway_node, gateway_node};
pub use jid::{jid_escape, jid_unescape};
pub use mail_domains::MailDomains;
pub use pattern::SenderPattern;
pub use phone::{parse_e164, parse_sdp_number};

/// A parsed, normalised address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A phone number in E.164 form, with the leading `+`.
    Sms(String),
    /// A mail address, `local@domain` (domain lower-cased).
    Mail(String),
    /// An IM (XMPP) address: a bare or full JID.
    Im(String),
    /// A group from the user directory.
    Group(String),
    /// A third-party application.
    App(String),
    /// An HTTP(S) callback URL: the target of status reports for API origins.
    Url(String),
}

/// The channel a recipient is delivered through; one sink per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Sms,
    Mail,
    Im,
    Group,
    App,
    Callback,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Sms,
        Channel::Mail,
        Channel::Im,
        Channel::Group,
        Channel::App,
        Channel::Callback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Mail => "mail",
            Channel::Im => "im",
            Channel::Group => "group",
            Channel::App => "app",
            Channel::Callback => "callback",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "unknown address scheme in {0:?} (expected sms:, tel:, mail:, mailto:, im:, xmpp:, group: or app:)"
    )]
    UnknownScheme(String),
    #[error("bad phone number {0:?}: expected E.164 such as +8613800000000")]
    BadPhone(String),
    #[error("bad mail address {0:?}")]
    BadMail(String),
    #[error("bad IM address {0:?}")]
    BadIm(String),
    #[error("bad {0} name {1:?}: 1-64 characters of letters, digits, '.', '_' or '-'")]
    BadName(&'static str, String),
    #[error("bad URL {0:?}")]
    BadUrl(String),
}

impl AddressError {
    /// The stable API error code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            AddressError::UnknownScheme(_) => "invalid_address",
            AddressError::BadPhone(_) => "invalid_phone_number",
            _ => "invalid_address",
        }
    }
}

impl Address {
    pub fn channel(&self) -> Channel {
        match self {
            Address::Sms(_) => Channel::Sms,
            Address::Mail(_) => Channel::Mail,
            Address::Im(_) => Channel::Im,
            Address::Group(_) => Channel::Group,
            Address::App(_) => Channel::App,
            Address::Url(_) => Channel::Callback,
        }
    }

    /// The part after the scheme (`+8613800000000`, `bob@example.com`, …).
    pub fn value(&self) -> &str {
        match self {
            Address::Sms(v)
            | Address::Mail(v)
            | Address::Im(v)
            | Address::Group(v)
            | Address::App(v)
            | Address::Url(v) => v,
        }
    }
    /// The phone number as a Parlay X `tel:` URI (`tel:+8613800000000`).
    pub fn tel_uri(&self) -> Option<String> {
        match self {
            Address::Sms(n) => Some(format!("tel:{n}")),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Sms(v) => write!(f, "sms:{v}"),
            Address::Mail(v) => write!(f, "mail:{v}"),
            Address::Im(v) => write!(f, "im:{v}"),
            Address::Group(v) => write!(f, "group:{v}"),
            Address::App(v) => write!(f, "app:{v}"),
            Address::Url(v) => f.write_str(v),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse_stored(s)
    }
}
