//! The `[xmpp]` section: which IM server to reach, the component domains served there, and
//! how the links behave when the server goes away.

use serde::{Deserialize, Serialize};

use crate::address::Network;

/// The gateway as external components (XEP-0114) of an IM server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct XmppConfig {
    /// `host:port` of the IM server's component listener (Prosody `component_ports`,
    /// ejabberd's `ejabberd_service` listener). Plain TCP: keep it on a trusted network.
    pub server: String,
    /// The component domains served, one connection each.
    pub components: Vec<ComponentConfig>,
    /// Time allowed to open the connection and complete the handshake, in milliseconds.
    pub connect_timeout_ms: u64,
    /// First wait before connecting again after a lost or refused link, in milliseconds;
    /// doubled at each failure in a row, with jitter.
    pub reconnect_initial_ms: u64,
    /// Ceiling of the wait between connection attempts, in milliseconds.
    pub reconnect_max_ms: u64,
    /// After this many seconds without traffic from the server the link is probed with a
    /// ping; without an answer it is dropped and opened again.
    pub keepalive_secs: u64,
    /// While a link is down, messages for IM users wait in the store and are looked at
    /// again after this many milliseconds (no delivery attempt is counted for it).
    pub link_down_retry_ms: u64,
    /// Messages from IM users being committed at once, per link; past it the link stops
    /// reading (back-pressure to the IM server).
    pub inbound_concurrency: usize,
    /// Largest message body accepted from an IM user, in bytes (bigger ones are refused
    /// with an error stanza).
    pub max_body_bytes: usize,
    /// Time a delivery waits for its stanza to be written to the link, in milliseconds.
    pub send_timeout_ms: u64,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            server: "127.0.0.1:5347".into(),
            components: Vec::new(),
            connect_timeout_ms: 5_000,
            reconnect_initial_ms: 1_000,
            reconnect_max_ms: 60_000,
            keepalive_secs: 60,
            link_down_retry_ms: 2_000,
            inbound_concurrency: 256,
            max_body_bytes: 16 * 1024,
            send_timeout_ms: 5_000,
        }
    }
}

/// One component domain: its own connection to the server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's domain, exactly as in the server's config (`Component "sms.example.org"`).
    pub domain: String,
    /// What the JIDs of this domain stand for: `sms` (`+8613800000000@…`), `mail`
    /// (`bob\40example.com@…`, XEP-0106) or `group` (`team42@…`).
    pub network: Network,
    /// The shared secret (Prosody `component_secret`, ejabberd `password`).
    pub secret: String,
    /// The name shown in service discovery.
    pub name: Option<String>,
}

impl Default for ComponentConfig {
    fn default() -> Self {
        ComponentConfig {
            domain: String::new(),
            network: Network::Sms,
            secret: String::new(),
            name: None,
        }
    }
}

impl XmppConfig {
    /// Every problem, each naming its key (`xmpp.components[0].secret`).
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        match self.server.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => e.push(format!(
                "xmpp.server: {:?} is not host:port (the IM server's component port)",
                self.server
            )),
        }
        if self.components.is_empty() {
            e.push("xmpp.components: list at least one component domain (or remove [xmpp])".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.components.iter().enumerate() {
            let key = format!("xmpp.components[{i}]");
            let d = c.domain.trim();
            if d.is_empty()
                || d.contains(['@', '/', ' ', ':'])
                || d.split('.').any(|l| l.is_empty() || l.len() > 63)
            {
                e.push(format!("{key}.domain: {:?} is not a domain name", c.domain));
            } else if !seen.insert(d.to_ascii_lowercase()) {
                e.push(format!("{key}.domain: {d:?} is listed twice"));
            }
            if c.secret.is_empty() {
                e.push(format!(
                    "{key}.secret: must not be empty (the server's component_secret)"
                ));
            }
        }
        for (key, v) in [
            ("xmpp.connect_timeout_ms", self.connect_timeout_ms),
            ("xmpp.reconnect_initial_ms", self.reconnect_initial_ms),
            ("xmpp.keepalive_secs", self.keepalive_secs),
            ("xmpp.link_down_retry_ms", self.link_down_retry_ms),
            ("xmpp.send_timeout_ms", self.send_timeout_ms),
        ] {
            if v == 0 {
                e.push(format!("{key}: must be at least 1"));
            }
        }
        if self.reconnect_max_ms < self.reconnect_initial_ms {
            e.push("xmpp.reconnect_max_ms: must be at least xmpp.reconnect_initial_ms".into());
        }
        if self.inbound_concurrency == 0 {
            e.push("xmpp.inbound_concurrency: must be at least 1".into());
        }
        if self.max_body_bytes < 64 {
            e.push("xmpp.max_body_bytes: must be at least 64".into());
        }
        e
    }

    /// The component serving `network`, if one does.
    pub fn component_for(&self, network: Network) -> Option<&ComponentConfig> {
        self.components.iter().find(|c| c.network == network)
    }
}
