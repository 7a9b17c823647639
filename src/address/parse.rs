//! Parsing of user-given and stored addresses: the scheme, then each scheme's own syntax
//! (mail address, JID, directory name, callback URL).

use super::{Address, AddressError, parse_e164};

impl Address {
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
}

pub(super) fn parse_mail(s: &str) -> Option<String> {
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

pub(super) fn parse_jid(s: &str) -> Option<String> {
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

pub(super) fn valid_domain(d: &str) -> bool {
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

pub(super) fn parse_name(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then(|| s.to_string())
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
}
