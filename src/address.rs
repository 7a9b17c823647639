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

/// A sender pattern from the config, matched against *parsed* addresses, never raw text:
///
/// - `*` — any address; `im:*`, `mail:*`, `sms:*`, `app:*`, `group:*` — any of that kind;
/// - `im:alice@im.example.org` — that bare JID, with any resource;
/// - `im:*@im.example.org`, `mail:*@example.com` — any local part *of that domain*: the
///   domain of the bare JID or mail address must equal it, and a local part with `%`, `@` or
///   `/` (another domain routed through this one, a resource) never matches a wildcard;
/// - `mail:bob@example.com` — that mailbox;
/// - `sms:+8613800000000` — that number; `sms:+86*` — numbers starting with `+86`;
/// - `app:wx*`, `group:team-*` — names with that prefix (one `*` at the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderPattern {
    Any,
    /// Every address of one kind (`im:*`).
    Kind(Channel),
    /// One IM party: node (if any) and domain of a bare JID.
    ImBare(Option<String>, String),
    /// Any node of one IM domain.
    ImDomain(String),
    /// One mailbox (local part kept as written, domain lower-cased).
    Mailbox(String),
    /// Any mailbox of one mail domain.
    MailDomain(String),
    /// One number, or every number with this prefix (`+86`).
    Phone {
        number: String,
        prefix: bool,
    },
    /// An app or group name, or a name prefix.
    Name {
        channel: Channel,
        name: String,
        prefix: bool,
    },
}

impl SenderPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(p: &str) -> Result<SenderPattern, String> {
        let p = p.trim();
        if p == "*" {
            return Ok(SenderPattern::Any);
        }
        let (scheme, rest) = p
            .split_once(':')
            .ok_or_else(|| format!("{p:?}: expected scheme:pattern (im:*@example.org)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let channel = match scheme.as_str() {
            "sms" | "tel" => Channel::Sms,
            "mail" | "mailto" => Channel::Mail,
            "im" | "xmpp" => Channel::Im,
            "app" => Channel::App,
            "group" => Channel::Group,
            _ => return Err(format!("{p:?}: unknown address scheme")),
        };
        if rest == "*" {
            return Ok(SenderPattern::Kind(channel));
        }
        let stars = rest.matches('*').count();
        if stars > 1 {
            return Err(format!("{p:?}: at most one '*' wildcard"));
        }
        match channel {
            Channel::Im | Channel::Mail => {
                if stars == 1 {
                    let domain = rest.strip_prefix("*@").ok_or_else(|| {
                        format!("{p:?}: a wildcard stands for a whole local part (*@domain)")
                    })?;
                    if !valid_domain(domain) {
                        return Err(format!("{p:?}: bad domain"));
                    }
                    let domain = domain.to_ascii_lowercase();
                    return Ok(if channel == Channel::Im {
                        SenderPattern::ImDomain(domain)
                    } else {
                        SenderPattern::MailDomain(domain)
                    });
                }
                if channel == Channel::Im {
                    let jid = parse_jid(rest).ok_or_else(|| format!("{p:?}: bad JID"))?;
                    let (node, domain) = split_bare(&jid);
                    Ok(SenderPattern::ImBare(node, domain))
                } else {
                    parse_mail(rest)
                        .map(SenderPattern::Mailbox)
                        .ok_or_else(|| format!("{p:?}: bad mail address"))
                }
            }
            Channel::Sms => {
                let (digits, prefix) = match rest.strip_suffix('*') {
                    Some(d) => (d, true),
                    None => (rest, false),
                };
                let ok = digits.len() >= 2
                    && digits.starts_with('+')
                    && digits[1..].chars().all(|c| c.is_ascii_digit());
                if !ok || stars == 1 && !prefix {
                    return Err(format!(
                        "{p:?}: a number (+8613800000000) or a number prefix (+86*)"
                    ));
                }
                if !prefix && parse_e164(digits, true).is_none() {
                    return Err(format!("{p:?}: not an E.164 number"));
                }
                Ok(SenderPattern::Phone {
                    number: digits.to_string(),
                    prefix,
                })
            }
            _ => {
                let (name, prefix) = match rest.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                if stars == 1 && !prefix {
                    return Err(format!("{p:?}: the wildcard may only end a name (app:wx*)"));
                }
                if parse_name(name).is_none() {
                    return Err(format!("{p:?}: bad name"));
                }
                Ok(SenderPattern::Name {
                    channel,
                    name: name.to_string(),
                    prefix,
                })
            }
        }
    }

    /// Whether a parsed address is covered by this pattern.
    pub fn matches(&self, addr: &Address) -> bool {
        match (self, addr) {
            (SenderPattern::Any, Address::Url(_)) => false,
            (SenderPattern::Any, _) => true,
            (SenderPattern::Kind(ch), a) => a.channel() == *ch,
            (SenderPattern::ImBare(node, domain), Address::Im(jid)) => {
                let (n, d) = split_bare(jid);
                n == *node && d == *domain
            }
            (SenderPattern::ImDomain(domain), Address::Im(jid)) => {
                let (n, d) = split_bare(jid);
                d == *domain && n.is_some_and(|n| plain_local(&n))
            }
            (SenderPattern::Mailbox(m), Address::Mail(a)) => {
                // Mailbox local parts are compared as written; domains are lower-cased.
                m == a
            }
            (SenderPattern::MailDomain(domain), Address::Mail(a)) => a
                .rsplit_once('@')
                .is_some_and(|(local, d)| d == domain && plain_local(local)),
            (SenderPattern::Phone { number, prefix }, Address::Sms(n)) => {
                if *prefix {
                    n.starts_with(number.as_str())
                } else {
                    n == number
                }
            }
            (
                SenderPattern::Name {
                    channel,
                    name,
                    prefix,
                },
                a,
            ) if a.channel() == *channel && matches!(a, Address::App(_) | Address::Group(_)) => {
                if *prefix {
                    a.value().starts_with(name.as_str())
                } else {
                    a.value() == name
                }
            }
            _ => false,
        }
    }
}

/// The node (if any) and the lower-cased domain of a JID's bare part; the resource is left
/// out.
fn split_bare(jid: &str) -> (Option<String>, String) {
    let bare = jid.split_once('/').map(|(b, _)| b).unwrap_or(jid);
    match bare.rsplit_once('@') {
        Some((n, d)) => (Some(n.to_string()), d.to_ascii_lowercase()),
        None => (None, bare.to_ascii_lowercase()),
    }
}

/// A local part a wildcard may stand for: nothing that routes to another domain (`%`, the
/// percent hack and the gateway's `node%domain` JIDs), no second `@`, no resource.
fn plain_local(local: &str) -> bool {
    !local.is_empty() && !local.contains(['%', '@', '/', '!'])
}

/// The network that a gateway domain stands for: the JIDs of an XMPP component domain (and
/// the mail addresses of a mail gateway domain) name parties of this network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Phones: `+8613800000000@sms.example.org` ↔ `sms:+8613800000000`.
    Sms,
    /// Mail: `bob\40example.com@mail.example.org` (XEP-0106) ↔ `mail:bob@example.com`.
    Mail,
    /// Directory groups: `team42@groups.example.org` ↔ `group:team42`.
    Group,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Sms => "sms",
            Network::Mail => "mail",
            Network::Group => "group",
        }
    }

    /// The network an address belongs to, if it is one a gateway domain can stand for.
    pub fn of(addr: &Address) -> Option<Network> {
        match addr {
            Address::Sms(_) => Some(Network::Sms),
            Address::Mail(_) => Some(Network::Mail),
            Address::Group(_) => Some(Network::Group),
            _ => None,
        }
    }
}

/// The address a JID node at a gateway domain of `network` stands for:
/// `+8613800000000` (or `8613800000000`) → `sms:+8613800000000`,
/// `bob\40example.com` → `mail:bob@example.com` (XEP-0106 unescaped), `team42` → `group:team42`.
pub fn from_gateway_node(network: Network, node: &str) -> Result<Address, AddressError> {
    match network {
        Network::Sms => parse_e164(node, false)
            .map(Address::Sms)
            .ok_or_else(|| AddressError::BadPhone(node.to_string())),
        Network::Mail => {
            let raw = jid_unescape(node);
            parse_mail(&raw)
                .map(Address::Mail)
                .ok_or(AddressError::BadMail(raw))
        }
        Network::Group => parse_name(node)
            .map(Address::Group)
            .ok_or_else(|| AddressError::BadName("group", node.to_string())),
    }
}

/// The JID node that stands for `addr` at a gateway domain of its network (the inverse of
/// [`from_gateway_node`]); `None` for addresses no gateway domain stands for.
pub fn gateway_node(addr: &Address) -> Option<(Network, String)> {
    let network = Network::of(addr)?;
    let node = match addr {
        Address::Mail(m) => jid_escape(m),
        other => other.value().to_string(),
    };
    Some((network, node))
}

/// XEP-0106 escaping of a JID node: the characters a node may not contain (space, `"`, `&`,
/// `'`, `/`, `:`, `<`, `>`, `@`) become `\XX`, and so does a `\` that would otherwise start an
/// escape sequence.
pub fn jid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        match c {
            ' ' => out.push_str("\\20"),
            '"' => out.push_str("\\22"),
            '&' => out.push_str("\\26"),
            '\'' => out.push_str("\\27"),
            '/' => out.push_str("\\2f"),
            ':' => out.push_str("\\3a"),
            '<' => out.push_str("\\3c"),
            '>' => out.push_str("\\3e"),
            '@' => out.push_str("\\40"),
            '\\' if escape_code(&s[i + 1..]).is_some() => out.push_str("\\5c"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`jid_escape`]: each `\XX` that is one of XEP-0106's ten sequences becomes its
/// character; anything else is left as it is.
pub fn jid_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match escape_code(after) {
            Some(c) => {
                out.push(c);
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character of an XEP-0106 escape sequence starting `s` (after the backslash).
fn escape_code(s: &str) -> Option<char> {
    let code = s.get(..2)?;
    Some(match code.to_ascii_lowercase().as_str() {
        "20" => ' ',
        "22" => '"',
        "26" => '&',
        "27" => '\'',
        "2f" => '/',
        "3a" => ':',
        "3c" => '<',
        "3e" => '>',
        "40" => '@',
        "5c" => '\\',
        _ => return None,
    })
}

#[cfg(test)]
mod gateway_node_tests {
    use super::*;

    #[test]
    fn gateway_nodes_map_both_ways() {
        let cases = [
            (Network::Sms, "+8613800000000", "sms:+8613800000000"),
            (Network::Mail, "bob\\40example.com", "mail:bob@example.com"),
            (Network::Group, "team42", "group:team42"),
        ];
        for (net, node, addr) in cases {
            let a = from_gateway_node(net, node).unwrap();
            assert_eq!(a.to_string(), addr);
            assert_eq!(gateway_node(&a), Some((net, node.to_string())));
        }
        assert_eq!(
            from_gateway_node(Network::Sms, "8613800000000").unwrap(),
            Address::Sms("+8613800000000".into())
        );
        assert!(from_gateway_node(Network::Sms, "hello").is_err());
        assert!(from_gateway_node(Network::Mail, "bob").is_err());
        assert!(from_gateway_node(Network::Group, "a b").is_err());
        assert_eq!(gateway_node(&Address::Im("a@b".into())), None);
    }

    #[test]
    fn xep_0106_round_trips() {
        for raw in [
            "bob@example.com",
            "d'artagnan@musketeers.lit",
            "space cadet",
            "c:\\net",
            "c:\\cool stuff",
            "\\5c and \\40",
            "plain",
            "trailing\\",
        ] {
            let esc = jid_escape(raw);
            assert!(!esc.contains(['@', ' ', ':', '\'']), "{esc}");
            assert_eq!(jid_unescape(&esc), raw, "{esc}");
        }
        assert_eq!(jid_escape("c:\\net"), "c\\3a\\net");
        assert_eq!(jid_escape("c:\\cool stuff"), "c\\3a\\cool\\20stuff");
        assert_eq!(jid_unescape("bob\\40EXAMPLE.com"), "bob@EXAMPLE.com");
        assert_eq!(jid_unescape("a\\zz"), "a\\zz");
    }
}

/// The gateway's own mail domains (`[mail]` config): mail to them is for phones, IM users and
/// groups, and mail the gateway sends for those parties comes from them.
///
/// - `8613800000000@sms.example.org` ↔ `sms:+8613800000000`;
/// - `alice@im.example.org` ↔ `im:alice@im.example.org`: the local part is the JID node,
///   XEP-0106-escaped where a mail local part has characters a node may not
///   (`o'brien` ↔ `o\27brien`); a JID of another domain is `node%domain@im.example.org`;
/// - `team42@groups.example.org` ↔ `group:team42`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailDomains {
    pub sms: String,
    pub im: String,
    pub groups: String,
}

impl MailDomains {
    /// What a recipient mail address stands for: `Ok(None)` when its domain is not one of
    /// the gateway's (relaying), an error when the local part does not fit its domain.
    pub fn recipient(&self, mail: &str) -> Result<Option<Address>, AddressError> {
        let Some((local, domain)) = mail.rsplit_once('@') else {
            return Err(AddressError::BadMail(mail.to_string()));
        };
        if local.is_empty() {
            return Err(AddressError::BadMail(mail.to_string()));
        }
        if domain.eq_ignore_ascii_case(&self.sms) {
            parse_e164(local, false)
                .map(|n| Some(Address::Sms(n)))
                .ok_or_else(|| AddressError::BadPhone(mail.to_string()))
        } else if domain.eq_ignore_ascii_case(&self.im) {
            let jid = match local.rsplit_once('%') {
                Some((node, other)) => format!("{}@{other}", jid_escape(node)),
                None => format!("{}@{}", jid_escape(local), self.im.to_ascii_lowercase()),
            };
            parse_jid(&jid)
                .map(|j| Some(Address::Im(j)))
                .ok_or_else(|| AddressError::BadIm(mail.to_string()))
        } else if domain.eq_ignore_ascii_case(&self.groups) {
            parse_name(local)
                .map(|g| Some(Address::Group(g)))
                .ok_or_else(|| AddressError::BadName("group", mail.to_string()))
        } else {
            Ok(None)
        }
    }

    /// How `addr` appears as a mail address (the `From` of mail sent on its behalf);
    /// `None` for parties that have no mail form (apps, URLs).
    pub fn mail_for(&self, addr: &Address) -> Option<String> {
        match addr {
            Address::Sms(n) => Some(format!("{}@{}", n.trim_start_matches('+'), self.sms)),
            Address::Mail(m) => Some(m.clone()),
            Address::Group(g) => Some(format!("{g}@{}", self.groups)),
            Address::Im(jid) => {
                let bare = jid.split('/').next().unwrap_or(jid);
                let (node, domain) = bare.rsplit_once('@')?;
                let local = jid_unescape(node);
                let local = if parse_mail(&format!("{local}@{}", self.im)).is_some() {
                    local
                } else {
                    node.to_string()
                };
                if domain.eq_ignore_ascii_case(&self.im) {
                    Some(format!("{local}@{}", self.im))
                } else {
                    Some(format!("{local}%{domain}@{}", self.im))
                }
            }
            Address::App(_) | Address::Url(_) => None,
        }
    }
}

#[cfg(test)]
mod mail_domain_tests {
    use super::*;

    fn domains() -> MailDomains {
        MailDomains {
            sms: "sms.example.org".into(),
            im: "im.example.org".into(),
            groups: "groups.example.org".into(),
        }
    }

    #[test]
    fn gateway_mail_addresses_map_both_ways() {
        let d = domains();
        let cases = [
            ("8613800000000@sms.example.org", "sms:+8613800000000"),
            ("alice@im.example.org", "im:alice@im.example.org"),
            ("o'brien@im.example.org", "im:o\\27brien@im.example.org"),
            ("carol%jabber.org@im.example.org", "im:carol@jabber.org"),
            ("team42@groups.example.org", "group:team42"),
        ];
        for (mail, addr) in cases {
            let a = d.recipient(mail).unwrap().unwrap();
            assert_eq!(a.to_string(), addr, "{mail}");
            assert_eq!(d.mail_for(&a).as_deref(), Some(mail), "{addr}");
        }
        assert_eq!(
            d.recipient("8613800000000@SMS.example.org").unwrap(),
            Some(Address::Sms("+8613800000000".into()))
        );
        assert_eq!(d.recipient("x@gmail.com").unwrap(), None);
        assert!(d.recipient("hello@sms.example.org").is_err());
        assert!(d.recipient("a b@groups.example.org").is_err());
        assert_eq!(d.mail_for(&Address::App("wx1".into())), None);
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

    fn allowed(pattern: &str, addr: &str) -> bool {
        let p = SenderPattern::parse(pattern).unwrap();
        p.matches(&Address::parse_user(addr).unwrap())
    }

    #[test]
    fn patterns_match_parsed_addresses() {
        assert!(allowed("im:*@im.example.org", "im:alice@im.example.org"));
        assert!(allowed(
            "im:*@im.example.org",
            "im:alice@IM.example.org/phone"
        ));
        assert!(!allowed("im:*@im.example.org", "im:alice@evil.org"));
        assert!(allowed("*", "app:x"));
        assert!(allowed("app:wx1", "app:wx1"));
        assert!(!allowed("app:wx1", "app:wx12"));
        assert!(allowed("app:wx*", "app:wx12"));
        assert!(!allowed("app:wx*", "group:wx12"));
        assert!(allowed(
            "im:alice@im.example.org",
            "im:alice@im.example.org/x"
        ));
        assert!(!allowed("im:alice@im.example.org", "im:bob@im.example.org"));
        assert!(allowed("mail:*@example.com", "mail:bob@Example.COM"));
        assert!(!allowed(
            "mail:*@example.com",
            "mail:bob@example.com.evil.org"
        ));
        assert!(allowed("sms:+86*", "sms:+8613800000000"));
        assert!(!allowed("sms:+86*", "sms:+18005550100"));
        assert!(allowed("sms:+8613800000000", "tel:+8613800000000"));
        assert!(allowed("im:*", "im:anyone@anywhere.org"));
        assert!(!allowed("im:*", "mail:anyone@anywhere.org"));
    }

    #[test]
    fn a_resource_or_a_percent_cannot_widen_a_pattern() {
        // The resource holds what looks like the allowed domain; the bare JID is elsewhere.
        assert!(!allowed(
            "im:*@im.example.org",
            "im:mallory@evil.org/x@im.example.org"
        ));
        assert!(!allowed(
            "im:*@im.example.org",
            "im:evil.org/x@im.example.org"
        ));
        // `node%domain@im.example.org` stands for a JID of another domain.
        assert!(!allowed(
            "im:*@im.example.org",
            "im:mallory%evil.org@im.example.org"
        ));
        assert!(!allowed(
            "mail:*@example.com",
            "mail:mallory%evil.org@example.com"
        ));
        // A JID without a node is the server itself, not one of its users.
        assert!(!allowed("im:*@im.example.org", "im:im.example.org"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "fax:*",
            "im:a*b*@x.org",
            "im:alice*@x.org",
            "im:*@",
            "sms:86*",
            "sms:+86*1",
            "app:*wx",
            "nocolon",
        ] {
            assert!(SenderPattern::parse(p).is_err(), "{p}");
        }
    }
}
