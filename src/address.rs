//! The address notation used everywhere (API, config, logs, store) and the mappings
//! between address spaces.
//!
//! `sms:+E164`, `mail:local@domain`, `im:jid`, `group:name`, `app:id`; `tel:`, `mailto:` and
//! `xmpp:` are accepted on input and normalised. An API origin's `report_url` becomes an
//! `http://…` / `https://…` address (channel `callback`); such addresses are never accepted
//! in the API's `to` list. Parsing never panics and reports what is wrong.

use std::fmt;
use std::str::FromStr;

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

    /// Parses an address given by a user (API, config). URLs are refused here.
    pub fn parse_user(s: &str) -> Result<Address, AddressError> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| AddressError::UnknownScheme(s.to_string()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "sms" | "tel" => parse_e164(rest, true)
                .map(Address::Sms)
                .ok_or_else(|| AddressError::BadPhone(s.to_string())),
            "mail" | "mailto" => parse_mail(rest)
                .map(Address::Mail)
                .ok_or_else(|| AddressError::BadMail(s.to_string())),
            "im" | "xmpp" => parse_jid(rest)
                .map(Address::Im)
                .ok_or_else(|| AddressError::BadIm(s.to_string())),
            "group" => parse_name(rest)
                .map(Address::Group)
                .ok_or_else(|| AddressError::BadName("group", s.to_string())),
            "app" => parse_name(rest)
                .map(Address::App)
                .ok_or_else(|| AddressError::BadName("app", s.to_string())),
            _ => Err(AddressError::UnknownScheme(s.to_string())),
        }
    }

    /// Parses any stored address, including callback URLs.
    pub fn parse_stored(s: &str) -> Result<Address, AddressError> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Address::parse_url(s);
        }
        Address::parse_user(s)
    }

    /// A callback URL (`report_url`).
    pub fn parse_url(s: &str) -> Result<Address, AddressError> {
        let ok = (s.starts_with("http://") || s.starts_with("https://"))
            && s.len() <= 2048
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.split("://").nth(1).is_some_and(|h| !h.is_empty());
        if ok {
            Ok(Address::Url(s.to_string()))
        } else {
            Err(AddressError::BadUrl(s.to_string()))
        }
    }

    /// Parses the first word of an MO text as a destination: a full address with a scheme,
    /// or a bare `local@domain`, which is an IM address when its domain is one of
    /// `im_domains`, else a mail address.
    pub fn parse_mo_target(word: &str, im_domains: &[String]) -> Option<Address> {
        if word.contains(':') {
            return Address::parse_user(word).ok();
        }
        let mail = parse_mail(word)?;
        let domain = mail.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if im_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            Some(Address::Im(mail))
        } else {
            Some(Address::Mail(mail))
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

/// E.164: `+`, then 8 to 15 digits, the first not 0. With `require_plus == false` (numbers
/// coming from the SDP, `tel:8613800000000`) the `+` may be missing. Visual separators
/// (space, `-`, `.`, parentheses) are removed.
pub fn parse_e164(s: &str, require_plus: bool) -> Option<String> {
    let s = s.trim();
    let (plus, digits) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if require_plus && !plus {
        return None;
    }
    let mut out = String::with_capacity(16);
    out.push('+');
    for c in digits.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let n = out.len() - 1;
    if !(8..=15).contains(&n) || out.as_bytes()[1] == b'0' {
        return None;
    }
    Some(out)
}

/// A number as the SDP writes it (`tel:8613800000000`, `tel:+86…`, `8613…`) to E.164.
pub fn parse_sdp_number(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix("tel:").unwrap_or(s);
    parse_e164(s, false)
}

fn parse_mail(s: &str) -> Option<String> {
    let (local, domain) = s.rsplit_once('@')?;
    if local.is_empty()
        || local.len() > 64
        || domain.len() > 253
        || !valid_domain(domain)
        || local.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"' | '\\')
        })
    {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

fn parse_jid(s: &str) -> Option<String> {
    // node@domain/resource, node and resource optional.
    let (bare, resource) = match s.split_once('/') {
        Some((b, r)) => (b, Some(r)),
        None => (s, None),
    };
    let (node, domain) = match bare.rsplit_once('@') {
        Some((n, d)) => (Some(n), d),
        None => (None, bare),
    };
    if !valid_domain(domain) {
        return None;
    }
    if let Some(n) = node
        && (n.is_empty()
            || n.len() > 1023
            || n.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
            }))
    {
        return None;
    }
    if let Some(r) = resource
        && (r.is_empty() || r.len() > 1023 || r.chars().any(|c| c.is_control()))
    {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    if let Some(n) = node {
        out.push_str(n);
        out.push('@');
    }
    out.push_str(&domain.to_ascii_lowercase());
    if let Some(r) = resource {
        out.push('/');
        out.push_str(r);
    }
    Some(out)
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

fn parse_name(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then(|| s.to_string())
}

/// Whether `addr` (as text) matches a sender pattern from the config: an exact address, or
/// a pattern with one `*` wildcard (`im:*@im.example.org`, `app:*`, `*`).
pub fn matches_pattern(pattern: &str, addr: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == addr,
        Some((pre, post)) => {
            addr.len() >= pre.len() + post.len() && addr.starts_with(pre) && addr.ends_with(post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_each_scheme() {
        let cases = [
            ("sms:+8613800000000", "sms:+8613800000000"),
            ("tel:+86 138-0000-0000", "sms:+8613800000000"),
            ("mailto:Bob@Example.COM", "mail:Bob@example.com"),
            ("xmpp:alice@IM.example.org", "im:alice@im.example.org"),
            (
                "im:alice@im.example.org/phone",
                "im:alice@im.example.org/phone",
            ),
            ("group:team42", "group:team42"),
            ("app:wx1234", "app:wx1234"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Address::parse_user(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_bad_input_with_the_right_error() {
        assert!(matches!(
            Address::parse_user("fax:123"),
            Err(AddressError::UnknownScheme(_))
        ));
        assert!(matches!(
            Address::parse_user("nothing"),
            Err(AddressError::UnknownScheme(_))
        ));
        for bad in [
            "sms:8613800000000",
            "sms:+0123456789",
            "sms:+12",
            "sms:+86138x",
            "sms:+1234567890123456",
        ] {
            assert!(
                matches!(Address::parse_user(bad), Err(AddressError::BadPhone(_))),
                "{bad}"
            );
        }
        assert!(Address::parse_user("mail:nobody").is_err());
        assert!(Address::parse_user("mail:a b@example.com").is_err());
        assert!(Address::parse_user("im:@example.org").is_err());
        assert!(Address::parse_user("group:").is_err());
        assert!(Address::parse_user("http://example.org/x").is_err());
    }

    #[test]
    fn sdp_numbers_get_their_plus() {
        assert_eq!(
            parse_sdp_number("tel:8613800000001").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(
            parse_sdp_number("tel:+8613800000001").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(parse_sdp_number("tel:abc"), None);
    }

    #[test]
    fn mo_targets() {
        let im = vec!["im.example.org".to_string()];
        assert_eq!(
            Address::parse_mo_target("bob@example.org", &im),
            Some(Address::Mail("bob@example.org".into()))
        );
        assert_eq!(
            Address::parse_mo_target("alice@im.example.org", &im),
            Some(Address::Im("alice@im.example.org".into()))
        );
        assert_eq!(
            Address::parse_mo_target("im:carol@x.org", &im),
            Some(Address::Im("carol@x.org".into()))
        );
        assert_eq!(Address::parse_mo_target("hello", &im), None);
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern(
            "im:*@im.example.org",
            "im:alice@im.example.org"
        ));
        assert!(!matches_pattern("im:*@im.example.org", "im:alice@evil.org"));
        assert!(matches_pattern("*", "app:x"));
        assert!(matches_pattern("app:wx1", "app:wx1"));
        assert!(!matches_pattern("app:wx1", "app:wx12"));
    }
}
