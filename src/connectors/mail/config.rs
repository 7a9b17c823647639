//! The `[mail]` section: the SMTP server (inbound), the smarthost (outbound) and delivery
//! status notifications. Every field has a default; `validate` names each wrong key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::MailDomains;

/// The mail bridge.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Where the SMTP server listens (`127.0.0.1:2525`). Empty: no SMTP server.
    pub listen: String,
    /// This gateway's host name: the SMTP greeting, `Reporting-MTA` of DSNs, Message-IDs.
    pub hostname: String,
    /// Mail to `<digits>@sms_domain` goes to the phone `+<digits>`; SMS senders appear
    /// under this domain.
    pub sms_domain: String,
    /// Mail to `<node>@im_domain` goes to the IM user `<node>@im_domain` (XEP-0106 escaped).
    pub im_domain: String,
    /// Mail to `<name>@group_domain` goes to the directory group `<name>`.
    pub group_domain: String,
    /// Client networks (CIDR, `127.0.0.0/8`) allowed to connect; others get `554 5.7.1`.
    pub allow_networks: Vec<String>,
    /// Largest message accepted, in bytes (`SIZE`; `552 5.3.4` above it).
    pub max_message_bytes: usize,
    /// Most recipients per message (`452 4.5.3` beyond).
    pub max_recipients: usize,
    /// Longest line of a message body, in bytes (`554 5.6.0` beyond). Command lines are
    /// limited to 4,096 bytes (`500 5.5.2`).
    pub max_line_bytes: usize,
    /// Seconds a client has for each whole command line (from the previous reply, however
    /// it trickles it in) before the server closes with `421 4.4.2`; at most 10 s while
    /// fewer than a fifth of the `max_connections` slots are free.
    pub command_timeout_secs: u64,
    /// Seconds a client has for the whole message data (from `354` to the final dot) before
    /// the server closes with `421 4.4.2`.
    pub data_timeout_secs: u64,
    /// Most messages in one session (transactions answered for good at the end of `DATA`:
    /// accepted or refused, not "try later"); the next `MAIL` gets `421 4.7.0` and the
    /// session closes.
    pub max_messages_per_session: usize,
    /// Most messages accepted from one envelope sender per minute, over all sessions (a
    /// token bucket); beyond it `MAIL` gets `450 4.7.1`. 0: no limit.
    pub max_messages_per_sender_per_minute: u32,
    /// Most SMTP connections at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Most SMTP connections from one client address (`421 4.7.0` beyond).
    pub max_connections_per_ip: usize,
    /// PEM certificate chain for STARTTLS; with `tls_key`, STARTTLS is offered.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    pub tls_key: Option<PathBuf>,
    /// Longest SMS text made from a mail (subject + first text), in characters.
    pub sms_max_chars: usize,
    /// Mail with attachments to a phone: `text` (send the text with a note) or `refuse`
    /// (`554 5.6.1`).
    pub attachments_to_sms: String,
    /// `NOTIFY` assumed for a recipient whose `RCPT` has none (`success`, `failure`,
    /// `delay`); RFC 3461 says `failure` and `delay`.
    pub default_notify: Vec<String>,
    /// Report every outcome to mail senders, whatever their `NOTIFY` says (except `NEVER`).
    pub always_report: bool,
    /// Seconds after which a sender who asked for `NOTIFY=DELAY` hears that a recipient is
    /// still unsent (`delayed` DSN, once). 0: never.
    pub delay_report_secs: u64,
    /// The smarthost (`host:port`) for mail the gateway sends. Empty: mail recipients are
    /// held until one is configured.
    pub smarthost: String,
    /// Upgrade smarthost connections with STARTTLS (required when set).
    pub smarthost_starttls: bool,
    /// PEM file of extra CA certificates trusted for the smarthost (besides the system's).
    pub smarthost_ca: Option<PathBuf>,
    /// Most connections to the smarthost (the pool's hard maximum).
    pub smarthost_connections: usize,
    /// Concurrent mail deliveries (dispatch).
    pub concurrency: usize,
    /// Per-delivery timeout (connect, each command), in milliseconds.
    pub timeout_ms: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            listen: String::new(),
            hostname: "switchboard.example.org".into(),
            sms_domain: "sms.example.org".into(),
            im_domain: "im.example.org".into(),
            group_domain: "groups.example.org".into(),
            allow_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 100,
            max_line_bytes: 64 * 1024,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            max_messages_per_session: 100,
            max_messages_per_sender_per_minute: 60,
            max_connections: 512,
            max_connections_per_ip: 64,
            tls_cert: None,
            tls_key: None,
            sms_max_chars: 480,
            attachments_to_sms: "text".into(),
            default_notify: vec!["failure".into(), "delay".into()],
            always_report: false,
            delay_report_secs: 4 * 3600,
            smarthost: String::new(),
            smarthost_starttls: false,
            smarthost_ca: None,
            smarthost_connections: 32,
            concurrency: 64,
            timeout_ms: 30_000,
        }
    }
}

impl MailConfig {
    /// The gateway's mail domains.
    pub fn domains(&self) -> MailDomains {
        MailDomains {
            sms: self.sms_domain.to_ascii_lowercase(),
            im: self.im_domain.to_ascii_lowercase(),
            groups: self.group_domain.to_ascii_lowercase(),
        }
    }

    /// The allowed client networks, parsed.
    pub fn networks(&self) -> Vec<(IpAddr, u8)> {
        self.allow_networks
            .iter()
            .filter_map(|n| parse_cidr(n))
            .collect()
    }

    /// Every problem, each naming its key (`mail.…`).
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !self.listen.is_empty() && self.listen.parse::<SocketAddr>().is_err() {
            e.push(format!(
                "mail.listen: {:?} is not an address:port",
                self.listen
            ));
        }
        for (key, v) in [
            ("hostname", &self.hostname),
            ("sms_domain", &self.sms_domain),
            ("im_domain", &self.im_domain),
            ("group_domain", &self.group_domain),
        ] {
            if crate::address::Address::parse_user(&format!("mail:x@{v}")).is_err() {
                e.push(format!("mail.{key}: {v:?} is not a domain name"));
            }
        }
        for (i, n) in self.allow_networks.iter().enumerate() {
            if parse_cidr(n).is_none() {
                e.push(format!(
                    "mail.allow_networks[{i}]: {n:?} is not a network such as 127.0.0.0/8"
                ));
            }
        }
        if self.max_message_bytes < 1024 {
            e.push("mail.max_message_bytes: must be at least 1024".into());
        }
        for (key, v) in [
            ("max_recipients", self.max_recipients),
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("max_messages_per_session", self.max_messages_per_session),
            ("smarthost_connections", self.smarthost_connections),
            ("concurrency", self.concurrency),
            ("sms_max_chars", self.sms_max_chars),
        ] {
            if v == 0 {
                e.push(format!("mail.{key}: must be at least 1"));
            }
        }
        if self.max_line_bytes < 1000 {
            e.push("mail.max_line_bytes: must be at least 1000 (RFC 5322)".into());
        }
        for (key, v) in [
            ("command_timeout_secs", self.command_timeout_secs),
            ("data_timeout_secs", self.data_timeout_secs),
            ("timeout_ms", self.timeout_ms),
        ] {
            if v == 0 {
                e.push(format!("mail.{key}: must be at least 1"));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => e.push("mail.tls_key: required with mail.tls_cert".into()),
            (None, Some(_)) => e.push("mail.tls_cert: required with mail.tls_key".into()),
            _ => {}
        }
        if !matches!(self.attachments_to_sms.as_str(), "text" | "refuse") {
            e.push(format!(
                "mail.attachments_to_sms: {:?} must be \"text\" or \"refuse\"",
                self.attachments_to_sms
            ));
        }
        for (i, n) in self.default_notify.iter().enumerate() {
            if !matches!(n.as_str(), "success" | "failure" | "delay") {
                e.push(format!(
                    "mail.default_notify[{i}]: {n:?} must be \"success\", \"failure\" or \"delay\""
                ));
            }
        }
        if !self.smarthost.is_empty() && !valid_host_port(&self.smarthost) {
            e.push(format!(
                "mail.smarthost: {:?} is not host:port",
                self.smarthost
            ));
        }
        if self.smarthost_starttls && self.smarthost.is_empty() {
            e.push("mail.smarthost_starttls: set mail.smarthost too".into());
        }
        e
    }
}

fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

pub use crate::cidr::{allowed, parse_cidr};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match() {
        let nets = vec![
            parse_cidr("127.0.0.0/8").unwrap(),
            parse_cidr("::1").unwrap(),
        ];
        assert!(allowed(&nets, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&nets, "::1".parse().unwrap()));
        assert!(allowed(&nets, "::ffff:127.0.0.9".parse().unwrap()));
        assert!(!allowed(&nets, "10.0.0.1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }

    #[test]
    fn every_mail_error_names_its_key() {
        let cfg = MailConfig {
            listen: "nowhere".into(),
            sms_domain: "bad domain".into(),
            allow_networks: vec!["x".into()],
            max_recipients: 0,
            tls_cert: Some("a.pem".into()),
            attachments_to_sms: "mms".into(),
            default_notify: vec!["always".into()],
            smarthost: "nohost".into(),
            ..MailConfig::default()
        };
        let all = cfg.validate().join("\n");
        for key in [
            "mail.listen",
            "mail.sms_domain",
            "mail.allow_networks[0]",
            "mail.max_recipients",
            "mail.tls_key",
            "mail.attachments_to_sms",
            "mail.default_notify[0]",
            "mail.smarthost",
        ] {
            assert!(all.contains(key), "missing {key} in:\n{all}");
        }
        assert!(MailConfig::default().validate().is_empty());
    }
}
