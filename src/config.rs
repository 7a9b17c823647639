//! The configuration file (TOML): serde structs with defaults, and `validate()`, which
//! reports every error at once, each naming the key that is wrong.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::connectors::mail::config::MailConfig;
use crate::connectors::sdp::parlayx::Version;
use crate::sim::SimConfig;

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
            limits: Default::default(),
            admin: Default::default(),
            retention: Default::default(),
            content: crate::content::ContentConfig::default(),
            simulator: EmbeddedSim::default(),
            log: LogConfig::default(),
        }
    }
}

/// The HTTP server: API, SDP callbacks, metrics, health.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: String,
    /// The base URL under which the SDP reaches this gateway (receiptRequest endpoints).
    /// Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes (`413 payload_too_large` above it).
    pub max_body_bytes: usize,
    /// Seconds a client is told to wait (`Retry-After`) when a queue is full.
    pub retry_after_secs: u64,
    /// Most open connections per listener; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Most open connections from one source address, per listener; the next one is closed
    /// at once.
    pub max_connections_per_ip: usize,
    /// A request's head must be complete within this many milliseconds of the connection
    /// opening or of the previous response (not reset by each byte; also the idle
    /// keep-alive limit). Also the TLS handshake's deadline.
    pub header_read_timeout_ms: u64,
    /// A request's body must be read in full within this many milliseconds of its head.
    pub body_read_timeout_ms: u64,
    /// Serve the SDP callbacks (`/parlayx/...`) on a listener of their own. Unset: on
    /// `listen`.
    pub callbacks_listen: Option<String>,
    /// The base URL under which the SDP reaches `callbacks_listen` (receiptRequest
    /// endpoints). Defaults to `http(s)://<callbacks_listen>`.
    pub callbacks_public_url: Option<String>,
    /// Serve the admin API on a listener of its own. Unset: on `listen`.
    pub admin_listen: Option<String>,
    /// HTTPS on every HTTP listener: the certificate chain and the private key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Networks (CIDR) that may read `/metrics`; others get 403 unless they send
    /// `metrics_token`.
    pub metrics_allow: Vec<String>,
    /// A bearer token that opens `/metrics` from anywhere (`Authorization: Bearer ...`).
    pub metrics_token: Option<String>,
    /// API clients, each with its bearer token and the sender addresses it may use.
    pub clients: Vec<ClientConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            retry_after_secs: 1,
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            callbacks_listen: None,
            callbacks_public_url: None,
            admin_listen: None,
            tls_cert: None,
            tls_key: None,
            metrics_allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            metrics_token: None,
            clients: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Problems with the listeners' keys (`http.…`).
    pub fn validate_listeners(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (key, v) in [
            ("callbacks_listen", &self.callbacks_listen),
            ("admin_listen", &self.admin_listen),
        ] {
            if let Some(v) = v
                && v.parse::<SocketAddr>().is_err()
            {
                e.push(format!("http.{key}: {v:?} is not an address:port"));
            }
        }
        if let Some(u) = &self.callbacks_public_url {
            if !is_http_url(u) {
                e.push(format!(
                    "http.callbacks_public_url: {u:?} is not an http(s) URL"
                ));
            }
            if self.callbacks_listen.is_none() {
                e.push("http.callbacks_public_url: set http.callbacks_listen too".into());
            }
        }
        positive(
            &mut e,
            "http.max_connections_per_ip",
            self.max_connections_per_ip,
        );
        for (key, v) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
        ] {
            if v == 0 {
                e.push(format!("http.{key}: must be at least 1"));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => e.push("http.tls_key: required with http.tls_cert".into()),
            (None, Some(_)) => e.push("http.tls_cert: required with http.tls_key".into()),
            _ => {}
        }
        for (i, n) in self.metrics_allow.iter().enumerate() {
            if crate::connectors::mail::config::parse_cidr(n).is_none() {
                e.push(format!(
                    "http.metrics_allow[{i}]: {n:?} is not a network such as 127.0.0.0/8"
                ));
            }
        }
        if let Some(t) = &self.metrics_token
            && t.len() < 16
        {
            e.push("http.metrics_token: must be at least 16 characters".into());
        }
        e
    }

    /// `https` when the listeners serve TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// An API client.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    /// The bearer token (`Authorization: Bearer <token>`).
    pub token: String,
    /// A file holding the token (its first line), instead of `token`: keeps the secret out
    /// of the config file.
    pub token_file: Option<PathBuf>,
    /// Sender address patterns this client may use as `from`, matched against the parsed
    /// address (`im:*@im.example.org`: any user of that domain, whatever the resource;
    /// `mail:*@example.com`; `sms:+86*`; `app:wx1234`; see `address::SenderPattern`).
    pub senders: Vec<String>,
    /// Most recipients in one submission (after group expansion), at most 1000.
    pub max_recipients: usize,
    /// Submissions per second this client may make (0: no limit); bursts up to
    /// `submit_burst`. Over it: `429 rate_limited` with `Retry-After`.
    pub submit_rate: u32,
    pub submit_burst: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            name: String::new(),
            token: String::new(),
            token_file: None,
            senders: Vec::new(),
            max_recipients: 100,
            submit_rate: 100,
            submit_burst: 200,
        }
    }
}

/// The durable store.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (embedded, one file, WAL).
    pub backend: String,
    /// The SQLite file.
    pub path: PathBuf,
    /// `full` (fsync at every group commit: survives power loss) or `normal` (survives a
    /// process crash; a power loss may lose the last commits).
    pub synchronous: String,
    /// Most writes folded into one commit.
    pub batch_max: usize,
    /// Capacity of the queue in front of the writer.
    pub writer_queue: usize,
    /// Read connections.
    pub readers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: "sqlite".into(),
            path: PathBuf::from("./var/switchboard.db"),
            synchronous: "full".into(),
            batch_max: 1024,
            writer_queue: 8192,
            readers: 4,
        }
    }
}

/// Capacities of the bounded queues between the stages.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// receive → auth.
    pub auth: usize,
    /// auth → process.
    pub process: usize,
    /// process → dispatch, per channel.
    pub dispatch: usize,
    /// Most bytes of message content inside the stages at once, whatever the counts allow;
    /// over it the receive side answers "try later" (HTTP 503, SMTP 451, SOAP SVC0001).
    pub max_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            auth: 2048,
            process: 2048,
            dispatch: 2048,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Retries of transient failures.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts before a recipient fails for good.
    pub max_attempts: u32,
    /// First backoff, in milliseconds; doubled at each attempt, with jitter.
    pub initial_backoff_ms: u64,
    /// Backoff ceiling, in milliseconds.
    pub max_backoff_ms: u64,
    /// Time to live of a message, in seconds: past it, an unsent recipient expires.
    pub ttl_secs: u64,
    /// How often the store is polled for recipients whose next attempt is due, in ms.
    pub poll_interval_ms: u64,
    /// Most recipients taken from the store per poll.
    pub poll_batch: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 1000,
            max_backoff_ms: 300_000,
            ttl_secs: 86_400,
            poll_interval_ms: 200,
            poll_batch: 512,
        }
    }
}

/// The operator's SDP (SMS over Parlay X).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpConfig {
    /// The SendSms endpoint. Empty: SMS recipients are held.
    pub send_sms_url: String,
    /// Parlay X version of the namespaces (`v2_2` or `v2_1`).
    pub version: Version,
    /// The service number; each Internet-side party is sent from service number +
    /// extension, and replies to that sub-address find their way back.
    pub service_number: String,
    /// Concurrent sendSms requests.
    pub concurrency: usize,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u64,
    /// The China-operator `RequestSOAPHeader`, when the SDP wants one.
    pub header: Option<SdpHeaderConfig>,
    /// How the SDP's callbacks (receipts, MO) are authenticated; closed by default.
    pub callbacks: crate::connectors::sdp::callbacks::CallbackConfig,
}

impl Default for SdpConfig {
    fn default() -> Self {
        SdpConfig {
            send_sms_url: String::new(),
            version: Version::default(),
            service_number: "10658000".into(),
            concurrency: 64,
            timeout_ms: 10_000,
            header: None,
            callbacks: Default::default(),
        }
    }
}

/// The `RequestSOAPHeader` credentials.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpHeaderConfig {
    pub sp_id: String,
    /// Plain password; the header carries MD5(spId + password + timeStamp).
    pub password: String,
    pub service_id: String,
    /// `FA`; defaults to the destination (`OA`).
    pub fa: Option<String>,
}

/// An HTTP webhook sink (IM server, report callbacks).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where `im:` messages are POSTed (for `[im]`); unused for `[reports]`, whose URL is
    /// each origin's `report_url`. Empty: IM recipients are held.
    pub url: String,
    /// Domains whose bare addresses in an MO text are IM users.
    pub domains: Vec<String>,
    pub concurrency: usize,
    pub timeout_ms: u64,
    /// Signs every POST with HMAC-SHA256 under this key (header `X-Switchboard-Signature:
    /// t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>`). Empty: unsigned.
    pub secret: String,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            domains: Vec::new(),
            concurrency: 32,
            timeout_ms: 10_000,
            secret: String::new(),
        }
    }
}

/// Routing of mobile-originated SMS.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoConfig {
    /// Where an MO goes that neither reply routing nor its first word can place.
    pub default_route: Option<String>,
    /// Whether an MO may be relayed to a phone (first word `sms:`/`tel:`/a number, or a
    /// phone as `default_route`). Off: such an MO is stored unroutable.
    pub relay_to_phones: bool,
    /// With `relay_to_phones`: the number prefixes (`+86`) a relayed MO may reach; empty
    /// reaches none.
    pub relay_networks: Vec<String>,
}

/// Static parts of the user directory.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Recipients that opted out: messages to them fail with `opted_out`.
    pub opt_outs: Vec<String>,
    /// Most messages per second one origin may send (0: no limit).
    pub rate_per_origin: u32,
    /// Groups and their members.
    pub groups: Vec<GroupConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    pub members: Vec<String>,
}

/// The simulator inside the gateway process.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSim {
    pub enabled: bool,
    #[serde(flatten)]
    pub sim: SimConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `switchboard=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
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
        if self.http.listen.parse::<SocketAddr>().is_err() {
            e.push(format!(
                "http.listen: {:?} is not an address:port",
                self.http.listen
            ));
        }
        if let Some(u) = &self.http.public_url
            && !is_http_url(u)
        {
            e.push(format!("http.public_url: {u:?} is not an http(s) URL"));
        }
        positive(&mut e, "http.max_connections", self.http.max_connections);
        e.extend(self.http.validate_listeners());
        if self.http.max_body_bytes < 1024 {
            e.push("http.max_body_bytes: must be at least 1024".into());
        }
        let mut tokens = std::collections::HashSet::new();
        for (i, c) in self.http.clients.iter().enumerate() {
            let key = format!("http.clients[{i}]");
            if c.name.is_empty() {
                e.push(format!("{key}.name: must not be empty"));
            }
            if c.token.len() < 8 {
                e.push(format!("{key}.token: must be at least 8 characters"));
            }
            if !tokens.insert(&c.token) {
                e.push(format!(
                    "{key}.token: the same token is given to two clients"
                ));
            }
            if c.senders.is_empty() {
                e.push(format!(
                    "{key}.senders: list the sender addresses this client may use"
                ));
            }
            for (j, s) in c.senders.iter().enumerate() {
                if let Err(why) = crate::address::SenderPattern::parse(s) {
                    e.push(format!("{key}.senders[{j}]: {why}"));
                }
            }
            if !(1..=1000).contains(&c.max_recipients) {
                e.push(format!("{key}.max_recipients: must be 1-1000"));
            }
            if c.submit_rate > 0 && c.submit_burst < 1 {
                e.push(format!("{key}.submit_burst: must be at least 1"));
            }
            if !self.admin.token.is_empty() && c.token == self.admin.token {
                e.push(format!(
                    "{key}.token: the admin token may not also be a client's token"
                ));
            }
        }
        e.extend(self.admin.validate());
        e.extend(self.limits.validate());
        e.extend(self.retention.validate());
        if self.store.backend != "sqlite" {
            e.push(format!(
                "store.backend: {:?} is not supported (sqlite)",
                self.store.backend
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            e.push("store.path: must not be empty".into());
        }
        if !matches!(self.store.synchronous.as_str(), "full" | "normal") {
            e.push(format!(
                "store.synchronous: {:?} must be \"full\" or \"normal\"",
                self.store.synchronous
            ));
        }
        positive(&mut e, "store.batch_max", self.store.batch_max);
        positive(&mut e, "store.writer_queue", self.store.writer_queue);
        positive(&mut e, "store.readers", self.store.readers);
        positive(&mut e, "queues.auth", self.queues.auth);
        positive(&mut e, "queues.process", self.queues.process);
        positive(&mut e, "queues.dispatch", self.queues.dispatch);
        if self.queues.max_bytes < 1024 * 1024 {
            e.push("queues.max_bytes: must be at least 1048576 (1 MiB)".into());
        }
        if self.retry.max_attempts == 0 {
            e.push("retry.max_attempts: must be at least 1".into());
        }
        if self.retry.initial_backoff_ms == 0 {
            e.push("retry.initial_backoff_ms: must be at least 1".into());
        }
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            e.push("retry.max_backoff_ms: must be at least retry.initial_backoff_ms".into());
        }
        if self.retry.ttl_secs == 0 {
            e.push("retry.ttl_secs: must be at least 1".into());
        }
        if self.retry.poll_interval_ms == 0 {
            e.push("retry.poll_interval_ms: must be at least 1".into());
        }
        positive(&mut e, "retry.poll_batch", self.retry.poll_batch);
        if !self.sdp.send_sms_url.is_empty() && !is_http_url(&self.sdp.send_sms_url) {
            e.push(format!(
                "sdp.send_sms_url: {:?} is not an http(s) URL",
                self.sdp.send_sms_url
            ));
        }
        if self.sdp.service_number.is_empty()
            || !self.sdp.service_number.chars().all(|c| c.is_ascii_digit())
        {
            e.push(format!(
                "sdp.service_number: {:?} must be digits",
                self.sdp.service_number
            ));
        }
        positive(&mut e, "sdp.concurrency", self.sdp.concurrency);
        if self.sdp.timeout_ms == 0 {
            e.push("sdp.timeout_ms: must be at least 1".into());
        }
        if let Some(h) = &self.sdp.header {
            for (k, v) in [
                ("sp_id", &h.sp_id),
                ("password", &h.password),
                ("service_id", &h.service_id),
            ] {
                if v.is_empty() {
                    e.push(format!("sdp.header.{k}: must not be empty"));
                }
            }
        }
        for (name, w) in [("im", &self.im), ("reports", &self.reports)] {
            if !w.url.is_empty() && !is_http_url(&w.url) {
                e.push(format!("{name}.url: {:?} is not an http(s) URL", w.url));
            }
            positive(&mut e, &format!("{name}.concurrency"), w.concurrency);
            if w.timeout_ms == 0 {
                e.push(format!("{name}.timeout_ms: must be at least 1"));
            }
            if !w.secret.is_empty() && w.secret.len() < 16 {
                e.push(format!("{name}.secret: must be at least 16 characters"));
            }
        }
        if let Some(r) = &self.mo.default_route
            && Address::parse_user(r).is_err()
        {
            e.push(format!("mo.default_route: {r:?} is not an address"));
        }
        e.extend(self.mail.validate());
        e.extend(self.content.validate());
        for (i, a) in self.directory.opt_outs.iter().enumerate() {
            if Address::parse_user(a).is_err() {
                e.push(format!("directory.opt_outs[{i}]: {a:?} is not an address"));
            }
        }
        for (i, g) in self.directory.groups.iter().enumerate() {
            if Address::parse_user(&format!("group:{}", g.name)).is_err() {
                e.push(format!(
                    "directory.groups[{i}].name: {:?} is not a group name",
                    g.name
                ));
            }
            for (j, m) in g.members.iter().enumerate() {
                match Address::parse_user(m) {
                    Ok(Address::Group(_)) => e.push(format!(
                        "directory.groups[{i}].members[{j}]: groups may not contain groups"
                    )),
                    Ok(_) => {}
                    Err(err) => e.push(format!("directory.groups[{i}].members[{j}]: {err}")),
                }
            }
        }
        let sdp_in_use = !self.sdp.send_sms_url.is_empty() || self.simulator.enabled;
        e.extend(self.sdp.callbacks.validate(sdp_in_use));
        for (i, n) in self.mo.relay_networks.iter().enumerate() {
            let digits = n.strip_prefix('+').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                e.push(format!(
                    "mo.relay_networks[{i}]: {n:?} is not a number prefix such as \"+86\""
                ));
            }
        }
        if self.simulator.enabled {
            if self.simulator.sim.listen.parse::<SocketAddr>().is_err() {
                e.push(format!(
                    "simulator.listen: {:?} is not an address:port",
                    self.simulator.sim.listen
                ));
            }
            for msg in self.simulator.sim.validate() {
                e.push(format!("simulator.{}", msg.trim_start_matches("sim.")));
            }
        }
        if let Some(x) = &self.xmpp {
            e.extend(x.validate());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            e.push(format!(
                "log.format: {:?} must be \"text\" or \"json\"",
                self.log.format
            ));
        }
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

fn positive(e: &mut Vec<String>, key: &str, v: usize) {
    if v == 0 {
        e.push(format!("{key}: must be at least 1"));
    }
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && u.len() > 8 && !u.contains(' ')
}

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
}
