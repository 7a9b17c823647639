//! The destination word at the start of a mobile-originated (MO) text.

use super::Address;
use super::parse::parse_mail;

impl Address {
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
}

#[cfg(test)]
mod tests {
    use super::Address;

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
}
