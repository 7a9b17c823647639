//! Who is calling the HTTP API: an API client, named by its bearer token, or the operator,
//! named by the admin token.
//!
//! Tokens are looked up by their SHA-256 digest, so the time a lookup takes says nothing
//! about how much of a guessed token was right. A client may send only as the sender
//! patterns its config gives it (matched against the parsed address), at most
//! `submit_rate` submissions per second (a token bucket holding `submit_burst`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode, header};

use super::ApiError;
use super::config::ClientConfig;
use crate::address::{Address, SenderPattern};
use crate::config::Config;

/// Most recipients any client may put in one submission.
pub const MAX_RECIPIENTS: usize = 1000;

type Digest = [u8; 32];

fn digest(token: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The API clients and the admin token.
pub struct Callers {
    clients: HashMap<Digest, Arc<Client>>,
    admin: Option<Digest>,
}

/// One API client.
pub struct Client {
    pub cfg: ClientConfig,
    patterns: Vec<SenderPattern>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Who made a request.
pub enum Caller {
    Client(Arc<Client>),
    Admin,
}

impl Callers {
    pub fn new(cfg: &Config) -> Callers {
        let clients = cfg
            .http
            .clients
            .iter()
            .map(|c| {
                let client = Client {
                    patterns: c
                        .senders
                        .iter()
                        .filter_map(|p| SenderPattern::parse(p).ok())
                        .collect(),
                    bucket: Mutex::new(Bucket {
                        tokens: f64::from(c.submit_burst),
                        at: Instant::now(),
                    }),
                    cfg: c.clone(),
                };
                (digest(&c.token), Arc::new(client))
            })
            .collect();
        let admin = (!cfg.admin.token.is_empty()).then(|| digest(&cfg.admin.token));
        Callers { clients, admin }
    }

    /// The caller named by the `Authorization: Bearer` header, or `401 unauthorized`.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized());
        };
        let d = digest(token);
        if self.admin == Some(d) {
            return Ok(Caller::Admin);
        }
        match self.clients.get(&d) {
            Some(c) => Ok(Caller::Client(c.clone())),
            None => Err(unauthorized()),
        }
    }

    /// The admin, or `401`/`403`.
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.caller(headers)? {
            Caller::Admin => Ok(()),
            Caller::Client(_) => {
                refused("admin_only");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "admin_only",
                    "this call needs the admin token",
                ))
            }
        }
    }
}

impl Client {
    /// Whether this client may send as `from`.
    pub fn may_send_as(&self, from: &Address) -> bool {
        self.patterns.iter().any(|p| p.matches(from))
    }

    /// Takes one submission from the client's rate; `Err(seconds to wait)` when it is spent.
    pub fn take_submit(&self) -> Result<(), u64> {
        let rate = f64::from(self.cfg.submit_rate);
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.cfg.submit_burst.max(1));
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Most recipients in one submission.
    pub fn max_recipients(&self) -> usize {
        self.cfg.max_recipients.clamp(1, MAX_RECIPIENTS)
    }
}

/// Counts a refusal of the receive side.
pub fn refused(reason: &'static str) {
    metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => reason)
        .increment(1);
}

fn unauthorized() -> ApiError {
    refused("unauthorized");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or unknown bearer token",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(rate: u32, burst: u32) -> Client {
        Client {
            cfg: ClientConfig {
                submit_rate: rate,
                submit_burst: burst,
                ..ClientConfig::default()
            },
            patterns: Vec::new(),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            }),
        }
    }

    #[test]
    fn the_rate_allows_the_burst_then_refuses() {
        let c = client(1, 3);
        for _ in 0..3 {
            c.take_submit().unwrap();
        }
        assert_eq!(c.take_submit(), Err(1));
        assert!(client(0, 0).take_submit().is_ok());
    }
}
