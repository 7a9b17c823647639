//! The `[im]` and `[reports]` sections: an HTTP webhook sink's target and limits.

use serde::{Deserialize, Serialize};

use crate::config::{is_http_url, positive};

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

impl WebhookConfig {
    /// Problems with the section called `name` (`im`, `reports`).
    pub fn validate(&self, name: &str) -> Vec<String> {
        let mut e = Vec::new();
        if !self.url.is_empty() && !is_http_url(&self.url) {
            e.push(format!("{name}.url: {:?} is not an http(s) URL", self.url));
        }
        positive(&mut e, &format!("{name}.concurrency"), self.concurrency);
        if self.timeout_ms == 0 {
            e.push(format!("{name}.timeout_ms: must be at least 1"));
        }
        if !self.secret.is_empty() && self.secret.len() < 16 {
            e.push(format!("{name}.secret: must be at least 16 characters"));
        }
        e
    }
}
