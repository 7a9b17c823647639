//! Who may call the SDP callbacks (`SmsNotification`, `MessageNotification`).
//!
//! Closed by default: a callback is taken only when at least one credential is configured
//! (HTTP basic auth, a secret path segment, or the `NotifySOAPHeader` password) and every
//! configured check passes; an optional source allowlist narrows it further. Secrets are
//! compared in constant time and never logged. Every refusal is counted in
//! `switchboard_callbacks_refused_total{reason}` with a reason from a fixed set.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, header};
use serde::{Deserialize, Serialize};

use super::parlayx::NotifyHeader;
pub use super::parlayx::credentials::{
    BasicAuth, CallbackCredentials, HashId, NotifyHeaderAuth, PasswordAlgorithm,
};
use crate::cidr::{allowed, parse_cidr};

/// `[sdp.callbacks]`: how the SDP proves its callbacks are its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackConfig {
    /// Source networks the SDP calls from (`10.1.0.0/16`, a bare address for one host).
    /// Empty: any source; a credential is needed either way.
    pub allow_networks: Vec<String>,
    /// HTTP basic auth the SDP sends with every callback.
    pub basic: Option<BasicAuth>,
    /// A secret path segment: the gateway tells the SDP to call
    /// `/parlayx/SmsNotification/<secret_path>` and refuses the bare path. At least 16
    /// characters of `A-Z a-z 0-9 - _`.
    pub secret_path: Option<String>,
    /// The Huawei `NotifySOAPHeader` the SDP puts in every callback.
    pub header: Option<NotifyHeaderAuth>,
}

impl NotifyHeaderAuth {
    fn check(&self, h: &NotifyHeader, now: chrono::NaiveDateTime) -> Result<(), Refusal> {
        if !self.sp_rev_id.is_empty() && !ct_eq(h.sp_rev_id.as_bytes(), self.sp_rev_id.as_bytes()) {
            return Err(Refusal::Header);
        }
        if !self.sp_id.is_empty() && !ct_eq(h.sp_id.as_bytes(), self.sp_id.as_bytes()) {
            return Err(Refusal::Header);
        }
        if self.window_secs > 0 {
            let Ok(ts) = chrono::NaiveDateTime::parse_from_str(&h.timestamp, "%Y%m%d%H%M%S") else {
                return Err(Refusal::Stale);
            };
            if (now - ts).num_seconds().unsigned_abs() > self.window_secs {
                return Err(Refusal::Stale);
            }
        }
        let want = self.password_for(&h.sp_id, &h.sp_rev_id, &h.timestamp);
        let ok = match self.algorithm {
            PasswordAlgorithm::Md5 => ct_eq(
                h.sp_rev_password.to_ascii_lowercase().as_bytes(),
                want.as_bytes(),
            ),
            _ => ct_eq(h.sp_rev_password.as_bytes(), want.as_bytes()),
        };
        if ok { Ok(()) } else { Err(Refusal::Header) }
    }
}

/// The characters a secret path segment may use (it goes into a URL unescaped).
fn path_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl CallbackConfig {
    /// Whether any credential is configured (an allowlist alone is not one).
    pub fn has_credential(&self) -> bool {
        self.basic.is_some() || self.secret_path.is_some() || self.header.is_some()
    }

    /// Config errors, each naming its key (`sdp.callbacks.…`). `sdp_in_use`: an SDP is
    /// configured, so callbacks without a credential are an error.
    pub fn validate(&self, sdp_in_use: bool) -> Vec<String> {
        let mut e = Vec::new();
        for (i, n) in self.allow_networks.iter().enumerate() {
            if parse_cidr(n).is_none() {
                e.push(format!(
                    "sdp.callbacks.allow_networks[{i}]: {n:?} is not a network such as 10.0.0.0/8"
                ));
            }
        }
        if let Some(b) = &self.basic {
            if b.user.is_empty() || b.user.contains(':') {
                e.push("sdp.callbacks.basic.user: must be non-empty and without ':'".into());
            }
            if b.password.len() < 12 {
                e.push("sdp.callbacks.basic.password: must be at least 12 characters".into());
            }
        }
        if let Some(p) = &self.secret_path
            && (p.len() < 16 || !path_safe(p))
        {
            e.push(
                "sdp.callbacks.secret_path: must be at least 16 characters of A-Z a-z 0-9 - _"
                    .into(),
            );
        }
        if let Some(h) = &self.header {
            if h.password.len() < 8 {
                e.push("sdp.callbacks.header.password: must be at least 8 characters".into());
            }
            if h.sp_id.is_empty() && h.sp_rev_id.is_empty() {
                e.push("sdp.callbacks.header: name the sp_id or sp_rev_id the SDP sends".into());
            }
        }
        if sdp_in_use && !self.has_credential() {
            e.push(
                "sdp.callbacks: no credential configured, so every SDP callback (receipts, MO) is refused; set basic, secret_path or header".into(),
            );
        }
        e
    }

    /// The callback path the SDP is told to use under `base` (`/parlayx/SmsNotification`).
    pub fn path(&self, base: &str) -> String {
        match &self.secret_path {
            Some(s) => format!("{base}/{s}"),
            None => base.to_string(),
        }
    }
}

impl CallbackCredentials {
    /// What a simulated SDP needs to send callbacks `cfg` accepts.
    pub fn from_config(cfg: &CallbackConfig) -> CallbackCredentials {
        CallbackCredentials {
            basic: cfg.basic.clone(),
            header: cfg.header.clone(),
        }
    }
}

/// Why a callback was refused. The labels are the metric's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoCredential,
    Source,
    Path,
    Basic,
    /// No NotifySOAPHeader, or a wrong id or password.
    Header,
    /// `timeStamp` missing, unreadable or outside the window.
    Stale,
    /// A receipt for no recipient this SDP may report on.
    Receipt,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCredential => "no_credential",
            Refusal::Source => "source",
            Refusal::Path => "path",
            Refusal::Basic => "basic_auth",
            Refusal::Header => "header",
            Refusal::Stale => "stale_timestamp",
            Refusal::Receipt => "receipt_not_applicable",
        }
    }

    /// Counts and logs the refusal (no secrets: only the reason, endpoint and source).
    pub fn record(self, endpoint: &'static str, peer: Option<SocketAddr>) {
        metrics::counter!("switchboard_callbacks_refused_total", "reason" => self.as_str())
            .increment(1);
        tracing::warn!(
            endpoint,
            reason = self.as_str(),
            peer = peer
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
            "SDP callback refused"
        );
    }
}

/// The peer's address as the HTTP server recorded it for the connection (axum's
/// `ConnectInfo<SocketAddr>`, put in every request by `http::listener`). `None` when the
/// server did not record it: then an allowlist refuses the request.
pub fn peer_addr(ext: &Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The checks that come before the body is read: source, credential presence, secret
/// path (`secret`: the path segment after the endpoint, if any) and basic auth.
pub fn check_request(
    cfg: &CallbackConfig,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    secret: Option<&str>,
) -> Result<(), Refusal> {
    if !cfg.allow_networks.is_empty() {
        let nets: Vec<(IpAddr, u8)> = cfg
            .allow_networks
            .iter()
            .filter_map(|n| parse_cidr(n))
            .collect();
        match peer {
            Some(p) if allowed(&nets, p.ip()) => {}
            _ => return Err(Refusal::Source),
        }
    }
    if !cfg.has_credential() {
        return Err(Refusal::NoCredential);
    }
    match (&cfg.secret_path, secret) {
        (Some(want), Some(got)) if ct_eq(want.as_bytes(), got.as_bytes()) => {}
        (None, None) => {}
        _ => return Err(Refusal::Path),
    }
    if let Some(b) = &cfg.basic {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| crate::message::b64::decode(token.trim()))
                    .flatten()
            })
            .unwrap_or_default();
        let want = format!("{}:{}", b.user, b.password);
        if !ct_eq(&given, want.as_bytes()) {
            return Err(Refusal::Basic);
        }
    }
    Ok(())
}

/// The check that needs the envelope: the `NotifySOAPHeader`, when one is configured.
pub fn check_header(cfg: &CallbackConfig, header: Option<&NotifyHeader>) -> Result<(), Refusal> {
    let Some(want) = &cfg.header else {
        return Ok(());
    };
    let Some(h) = header else {
        return Err(Refusal::Header);
    };
    want.check(h, chrono::Local::now().naive_local())
}

/// Constant-time equality (the time depends only on the lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..n {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_cfg(algorithm: PasswordAlgorithm) -> NotifyHeaderAuth {
        NotifyHeaderAuth {
            sp_rev_id: "rev".into(),
            sp_id: "sp".into(),
            password: "secret-password".into(),
            algorithm,
            ..NotifyHeaderAuth::default()
        }
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn header_passwords_by_algorithm() {
        let now = chrono::Local::now().naive_local();
        let ts = now.format("%Y%m%d%H%M%S").to_string();
        for alg in [
            PasswordAlgorithm::Md5,
            PasswordAlgorithm::Md5Upper,
            PasswordAlgorithm::Md5Lower,
            PasswordAlgorithm::Plain,
        ] {
            let cfg = header_cfg(alg);
            let good = cfg.make_header(&ts);
            assert_eq!(cfg.check(&good, now), Ok(()), "{alg:?}");
            let mut bad = good.clone();
            bad.sp_rev_password.push('0');
            assert_eq!(cfg.check(&bad, now), Err(Refusal::Header), "{alg:?}");
            let mut other = good.clone();
            other.sp_id = "intruder".into();
            assert_eq!(cfg.check(&other, now), Err(Refusal::Header), "{alg:?}");
        }
        let upper = header_cfg(PasswordAlgorithm::Md5Upper);
        let mut lower = upper.make_header(&ts);
        lower.sp_rev_password = lower.sp_rev_password.to_ascii_lowercase();
        assert_eq!(upper.check(&lower, now), Err(Refusal::Header));
        let any = header_cfg(PasswordAlgorithm::Md5);
        assert_eq!(any.check(&upper.make_header(&ts), now), Ok(()));
    }

    #[test]
    fn stale_timestamps_are_refused() {
        let cfg = header_cfg(PasswordAlgorithm::Md5);
        let now = chrono::Local::now().naive_local();
        let old = (now - chrono::Duration::seconds(301))
            .format("%Y%m%d%H%M%S")
            .to_string();
        assert_eq!(cfg.check(&cfg.make_header(&old), now), Err(Refusal::Stale));
        assert_eq!(
            cfg.check(&cfg.make_header("not a time"), now),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn request_checks() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let none = HeaderMap::new();
        assert_eq!(
            check_request(&CallbackConfig::default(), Some(peer), &none, None),
            Err(Refusal::NoCredential)
        );
        let cfg = CallbackConfig {
            allow_networks: vec!["10.0.0.0/8".into()],
            secret_path: Some("0123456789abcdef".into()),
            ..CallbackConfig::default()
        };
        assert_eq!(
            check_request(&cfg, Some(peer), &none, Some("0123456789abcdef")),
            Err(Refusal::Source)
        );
        assert_eq!(
            check_request(&cfg, None, &none, Some("0123456789abcdef")),
            Err(Refusal::Source)
        );
        let cfg = CallbackConfig {
            allow_networks: vec![],
            basic: Some(BasicAuth {
                user: "sdp".into(),
                password: "a long password".into(),
            }),
            ..cfg
        };
        let mut auth = HeaderMap::new();
        auth.insert(
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                crate::message::b64::encode(b"sdp:a long password")
            )
            .parse()
            .unwrap(),
        );
        assert_eq!(
            check_request(&cfg, Some(peer), &auth, Some("0123456789abcdef")),
            Ok(())
        );
        assert_eq!(
            check_request(&cfg, Some(peer), &auth, None),
            Err(Refusal::Path)
        );
        assert_eq!(
            check_request(&cfg, Some(peer), &auth, Some("0123456789abcdeX")),
            Err(Refusal::Path)
        );
        assert_eq!(
            check_request(&cfg, Some(peer), &none, Some("0123456789abcdef")),
            Err(Refusal::Basic)
        );
    }

    #[test]
    fn validation_demands_a_credential() {
        let cfg = CallbackConfig {
            allow_networks: vec!["127.0.0.0/8".into()],
            ..CallbackConfig::default()
        };
        assert!(cfg.validate(false).is_empty());
        let errors = cfg.validate(true);
        assert!(errors[0].starts_with("sdp.callbacks:"), "{errors:?}");
        let cfg = CallbackConfig {
            secret_path: Some("short".into()),
            ..CallbackConfig::default()
        };
        assert!(
            cfg.validate(true)
                .iter()
                .any(|e| e.starts_with("sdp.callbacks.secret_path"))
        );
    }
}
