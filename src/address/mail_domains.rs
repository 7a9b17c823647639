//! The gateway's own mail domains and the mail addresses of parties behind them.

use super::jid::{jid_escape, jid_unescape};
use super::parse::{parse_jid, parse_mail, parse_name};
use super::{Address, AddressError, parse_e164};

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
mod tests {
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
