//! The `[http]` section: the listeners, their limits and TLS, who may read `/metrics`, and
//! the API clients.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::SenderPattern;
use crate::cidr::parse_cidr;
use crate::config::{is_http_url, positive};

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
    /// Problems with `http.…`; a client's token may not be `admin_token`.
    pub fn validate(&self, admin_token: &str) -> Vec<String> {
        let mut e = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            e.push(format!(
                "http.listen: {:?} is not an address:port",
                self.listen
            ));
        }
        if let Some(u) = &self.public_url
            && !is_http_url(u)
        {
            e.push(format!("http.public_url: {u:?} is not an http(s) URL"));
        }
        positive(&mut e, "http.max_connections", self.max_connections);
        e.extend(self.validate_listeners());
        if self.max_body_bytes < 1024 {
            e.push("http.max_body_bytes: must be at least 1024".into());
        }
        let mut tokens = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
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
                if let Err(why) = SenderPattern::parse(s) {
                    e.push(format!("{key}.senders[{j}]: {why}"));
                }
            }
            if !(1..=1000).contains(&c.max_recipients) {
                e.push(format!("{key}.max_recipients: must be 1-1000"));
            }
            if c.submit_rate > 0 && c.submit_burst < 1 {
                e.push(format!("{key}.submit_burst: must be at least 1"));
            }
            if !admin_token.is_empty() && c.token == admin_token {
                e.push(format!(
                    "{key}.token: the admin token may not also be a client's token"
                ));
            }
        }
        e
    }

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
            if parse_cidr(n).is_none() {
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
