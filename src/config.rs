//! The configuration file (TOML): the whole [`Config`], made of the sections each module
//! owns (its serde struct, defaults and checks live beside the code it configures), and
//! `validate()`, which reports every error at once, each naming the key that is wrong.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::connectors::mail::config::MailConfig;
pub use crate::connectors::sdp::config::{EmbeddedSim, MoConfig, SdpConfig, SdpHeaderConfig};
pub use crate::connectors::webhook::config::WebhookConfig;
pub use crate::directory::config::{DirectoryConfig, GroupConfig};
pub use crate::http::config::{ClientConfig, HttpConfig};
pub use crate::pipeline::config::{QueueConfig, RetryConfig};
pub use crate::store::config::StoreConfig;
pub use crate::telemetry::LogConfig;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id (0-1023): part of every message id, so nodes sharing a store differ.
    pub node_id: u16,
    /// How long a SIGTERM/SIGINT waits for in-flight work before exiting, in seconds.
    pub drain_timeout_secs: u64,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub queues: QueueConfig,
    pub retry: RetryConfig,
    pub sdp: SdpConfig,
    pub im: WebhookConfig,
    pub reports: WebhookConfig,
    pub mo: MoConfig,
    /// The mail bridge: SMTP server (inbound), smarthost (outbound), DSNs.
    pub mail: MailConfig,
    /// The XMPP component links to an IM server. Absent: `im:` recipients go to the `[im]`
    /// webhook.
    pub xmpp: Option<crate::connectors::xmpp::XmppConfig>,
    pub directory: DirectoryConfig,
    /// The app platform: replay window, message stacks, limits, pulls.
    pub apps: crate::apps::config::AppsConfig,
    /// Business cards: size limits, friends-only by default.
    pub cards: crate::cards::CardsConfig,
    /// Abuse ceilings: destination policy and per-recipient daily cap.
    pub limits: crate::pipeline::limits::LimitsConfig,
    /// The operator's admin API (its token).
    pub admin: crate::http::admin::AdminConfig,
    /// How long finished messages, reports, media and idle reply routes are kept.
    pub retention: crate::store::retention::RetentionConfig,
    /// Content reshaping and checks on the way to the target (SMS parts policy).
    pub content: crate::content::ContentConfig,
    /// The built-in SDP simulator, run inside the gateway process (local trial).
    pub simulator: EmbeddedSim,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 0,
            drain_timeout_secs: 10,
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            queues: QueueConfig::default(),
            retry: RetryConfig::default(),
            sdp: SdpConfig::default(),
            im: WebhookConfig::default(),
            reports: WebhookConfig::default(),
            mo: MoConfig::default(),
            mail: MailConfig::default(),
            xmpp: None,
            directory: DirectoryConfig::default(),
            apps: Default::default(),
            cards: Default::default(),
            limits: Default::default(),
            admin: Default::default(),
            retention: Default::default(),
            content: crate::content::ContentConfig::default(),
            simulator: EmbeddedSim::default(),
            log: LogConfig::default(),
        }
    }
}

/// A config file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    #[error("{} error(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse(_, m) => ConfigError::Parse(path.to_path_buf(), m),
            other => other,
        })?;
        Ok(cfg)
    }

    /// Parses and validates TOML text; secrets named by `*_file` keys are read in.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(PathBuf::new(), e.to_string()))?;
        let mut errors = cfg.read_secret_files();
        errors.extend(cfg.validate());
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Reads the tokens kept in files (`token_file`) into their `token`.
    pub fn read_secret_files(&mut self) -> Vec<String> {
        let mut e = Vec::new();
        for (i, c) in self.http.clients.iter_mut().enumerate() {
            if let Some(path) = &c.token_file {
                match read_secret(path) {
                    Ok(t) => c.token = t,
                    Err(why) => e.push(format!("http.clients[{i}].token_file: {why}")),
                }
            }
        }
        if let Some(path) = &self.admin.token_file {
            match read_secret(path) {
                Ok(t) => self.admin.token = t,
                Err(why) => e.push(format!("admin.token_file: {why}")),
            }
        }
        e
    }

    /// Every problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.node_id > 1023 {
            e.push("node_id: must be 0-1023".to_string());
        }
        if self.drain_timeout_secs == 0 {
            e.push("drain_timeout_secs: must be at least 1".into());
        }
        e.extend(self.http.validate(&self.admin.token));
        e.extend(self.admin.validate());
        e.extend(self.limits.validate());
        e.extend(self.retention.validate());
        e.extend(self.store.validate());
        e.extend(self.queues.validate());
        e.extend(self.retry.validate());
        e.extend(self.sdp.validate());
        e.extend(self.im.validate("im"));
        e.extend(self.reports.validate("reports"));
        e.extend(self.mo.validate_default_route());
        e.extend(self.mail.validate());
        e.extend(self.content.validate());
        e.extend(self.directory.validate());
        e.extend(self.apps.validate());
        e.extend(self.cards.validate());
        let sdp_in_use = !self.sdp.send_sms_url.is_empty() || self.simulator.enabled;
        e.extend(self.sdp.callbacks.validate(sdp_in_use));
        e.extend(self.mo.validate_relay_networks());
        e.extend(self.simulator.validate());
        if let Some(x) = &self.xmpp {
            e.extend(x.validate());
        }
        e.extend(self.log.validate());
        e
    }

    /// The base URL the SDP uses to reach this gateway.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.http.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("{}://{bound}", self.http.scheme()),
        }
    }

    /// The base URL the SDP uses to reach the callbacks listener bound at `bound`.
    pub fn callbacks_public_url(&self, bound: SocketAddr) -> String {
        match &self.http.callbacks_public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("{}://{bound}", self.http.scheme()),
        }
    }
}

/// A secret kept in a file: its first line, trimmed; never empty.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{path:?} is empty"));
    }
    Ok(token)
}

/// Adds "`key`: must be at least 1" when `v` is 0.
pub(crate) fn positive(e: &mut Vec<String>, key: &str, v: usize) {
    if v == 0 {
        e.push(format!("{key}: must be at least 1"));
    }
}

/// Whether `u` looks like an `http://` or `https://` URL.
pub(crate) fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && u.len() > 8 && !u.contains(' ')
}

/// A setting spelled as one of a few words (`store.synchronous = "full"`): an enum read and
/// written as its word. Any other word is kept as `Other`, so that `validate` reports it
/// with its key beside every other error, rather than the parse stopping at it.
macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A word that is none of these (an error `validate` reports).
            Other(String),
        }

        impl $name {
            /// The word, as in the config file.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $word,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($word => Self::$variant,)+
                    _ => Self::Other(s),
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::from(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                match v {
                    $name::Other(s) => s,
                    v => v.as_str().to_string(),
                }
            }
        }

        /// Shows the word, as the string setting it replaces did.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self.as_str(), f)
            }
        }
    };
}
pub(crate) use spelled;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_are_valid() {
        for path in ["config/switchboard.toml", "config/production.toml"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            if let Err(e) = Config::load(&p) {
                panic!("{path}: {e}");
            }
        }
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let text = r#"
            node_id = 5000
            [http]
            listen = "nowhere"
            [[http.clients]]
            name = ""
            token = "short"
            senders = ["fax:1"]
            [queues]
            auth = 0
            [sdp]
            send_sms_url = "ftp://x"
            service_number = "12ab"
        "#;
        let Err(ConfigError::Invalid(errs)) = Config::parse(text) else {
            panic!("expected invalid config");
        };
        let all = errs.join("\n");
        for key in [
            "node_id",
            "http.listen",
            "http.clients[0].name",
            "http.clients[0].token",
            "http.clients[0].senders[0]",
            "queues.auth",
            "sdp.send_sms_url",
            "sdp.service_number",
        ] {
            assert!(all.contains(key), "missing {key} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse("[http]\nlisten_on = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn spelled_settings_read_and_write_their_words() {
        use crate::store::config::Synchronous;
        use crate::telemetry::LogFormat;
        let cfg =
            Config::parse("[store]\nsynchronous = \"normal\"\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(cfg.store.synchronous, Synchronous::Normal);
        assert_eq!(cfg.log.format, LogFormat::Json);
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("backend = \"sqlite\""), "{text}");
        assert!(text.contains("synchronous = \"normal\""), "{text}");
        assert!(text.contains("format = \"json\""), "{text}");
        assert_eq!(format!("{:?}", cfg.store.synchronous), "\"normal\"");

        let Err(ConfigError::Invalid(errs)) = Config::parse(
            "[store]\nbackend = \"postgres\"\nsynchronous = \"FULL\"\n[log]\nformat = \"xml\"\n",
        ) else {
            panic!("expected invalid config");
        };
        assert_eq!(
            errs,
            [
                "store.backend: \"postgres\" is not supported (sqlite)",
                "store.synchronous: \"FULL\" must be \"full\" or \"normal\"",
                "log.format: \"xml\" must be \"text\" or \"json\"",
            ]
        );
        let err = Config::parse("[store]\nsynchronous = 1\n").unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn every_xmpp_error_names_its_key() {
        let text = r#"
            [xmpp]
            server = "nowhere"
            reconnect_initial_ms = 5000
            reconnect_max_ms = 10
            [[xmpp.components]]
            domain = "sms.example.org"
            secret = ""
            [[xmpp.components]]
            domain = "sms.example.org"
            network = "mail"
            secret = "x"
        "#;
        let Err(ConfigError::Invalid(errs)) = Config::parse(text) else {
            panic!("expected an invalid config");
        };
        let all = errs.join("\n");
        for key in [
            "xmpp.server",
            "xmpp.reconnect_max_ms",
            "xmpp.components[0].secret",
            "xmpp.components[1].domain",
        ] {
            assert!(all.contains(key), "missing {key} in:\n{all}");
        }
        let bad = Config::parse(
            "[xmpp]\n[[xmpp.components]]\ndomain = \"a.b\"\nnetwork = \"fax\"\nsecret = \"s\"\n",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn a_good_xmpp_section_parses_with_defaults() {
        use crate::address::Network;
        let cfg = Config::parse(
            "[xmpp]\nserver = \"127.0.0.1:5347\"\n[[xmpp.components]]\ndomain = \"mail.example.org\"\nnetwork = \"mail\"\nsecret = \"s\"\n",
        )
        .unwrap();
        let x = cfg.xmpp.unwrap();
        assert_eq!(x.components[0].network, Network::Mail);
        assert_eq!(x.reconnect_max_ms, 60_000);
        assert!(x.component_for(Network::Sms).is_none());
    }
}
