//! Sender patterns from the config, matched against parsed addresses.

use super::parse::{parse_jid, parse_mail, parse_name, valid_domain};
use super::{Address, Channel, parse_e164};

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

#[cfg(test)]
mod tests {
    use super::SenderPattern;
    use crate::address::Address;

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
