//! Gateway domains: the network a component or mail gateway domain stands for, and the
//! JID node that names a party of that network.

use super::jid::{jid_escape, jid_unescape};
use super::parse::{parse_mail, parse_name};
use super::{Address, AddressError, parse_e164};

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

#[cfg(test)]
mod tests {
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
}
