//! Signed requests between the gateway and an app, both ways: an app's pushes, and the
//! gateway's pulls and delivery reports. HMAC-SHA256 with the app's secret over
//! `METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body))`, in the headers
//! `X-App-Timestamp` (Unix seconds), `X-App-Nonce` (1-64 visible ASCII characters) and
//! `X-App-Signature` (lowercase hex). PATH is the request target as sent (path and query).
//!
//! [`Replay`] refuses a timestamp outside the window or a nonce already seen within it.
//! Nonces are remembered in memory, so after a start every timestamp from before the start
//! is refused too: a request captured before a restart cannot be replayed after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub const TIMESTAMP: &str = "x-app-timestamp";
pub const NONCE: &str = "x-app-nonce";
pub const SIGNATURE: &str = "x-app-signature";

/// Longest nonce.
pub const MAX_NONCE: usize = 64;

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The text that is signed.
pub fn string_to_sign(method: &str, path: &str, ts: i64, nonce: &str, body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!(
        "{}\n{path}\n{ts}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        hex(digest.as_ref())
    )
}

/// The signature (lowercase hex).
pub fn sign(secret: &str, method: &str, path: &str, ts: i64, nonce: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(
        &key,
        string_to_sign(method, path, ts, nonce, body).as_bytes(),
    );
    hex(tag.as_ref())
}

/// Whether `signature` signs the request under `secret` (compared in constant time).
pub fn verify(
    secret: &str,
    method: &str,
    path: &str,
    ts: i64,
    nonce: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    let Some(tag) = unhex(signature).filter(|t| t.len() == 32) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(
        &key,
        string_to_sign(method, path, ts, nonce, body).as_bytes(),
        &tag,
    )
    .is_ok()
}

/// A fresh nonce: 128 random bits in hex.
pub fn new_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The three headers for a request the gateway sends to an app.
pub fn headers(secret: &str, method: &str, path: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let ts = crate::message::now_ms() / 1000;
    let nonce = new_nonce();
    let sig = sign(secret, method, path, ts, &nonce, body);
    [
        (TIMESTAMP, ts.to_string()),
        (NONCE, nonce),
        (SIGNATURE, sig),
    ]
}

/// Whether a nonce is well formed: 1-64 visible ASCII characters.
pub fn nonce_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= MAX_NONCE && n.bytes().all(|b| b.is_ascii_graphic())
}

/// Why a signed request's timing was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Outside the window (or from before the gateway started).
    Stale,
    /// Seen within the window.
    Replayed,
    /// Too many nonces remembered.
    Full,
}

/// The replay window and the nonces seen within it.
pub struct Replay {
    window: i64,
    started: i64,
    max: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// `(app, nonce)` → until when it is remembered.
    until: HashMap<(String, String), i64>,
    /// In the order they were seen, for expiry.
    order: VecDeque<(i64, (String, String))>,
}

impl Replay {
    pub fn new(window_secs: u64, max: usize, started: i64) -> Replay {
        Replay {
            window: window_secs as i64,
            started,
            max,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Checks a request's timestamp and nonce at `now` (Unix seconds), and remembers the
    /// nonce when it passes.
    pub fn check(&self, app: &str, ts: i64, nonce: &str, now: i64) -> Result<(), ReplayError> {
        if (now - ts).abs() > self.window || ts < self.started {
            return Err(ReplayError::Stale);
        }
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        while s.order.front().is_some_and(|(until, _)| *until < now) {
            if let Some((until, key)) = s.order.pop_front()
                && s.until.get(&key) == Some(&until)
            {
                s.until.remove(&key);
            }
        }
        let key = (app.to_string(), nonce.to_string());
        if s.until.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if s.until.len() >= self.max {
            return Err(ReplayError::Full);
        }
        // Remembered until its timestamp leaves the window: after that it is stale anyway.
        let until = ts + self.window;
        s.until.insert(key.clone(), until);
        s.order.push_back((until.max(now), key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let s = sign("k3y", "POST", "/v1/apps/w/messages", 100, "n1", b"{}");
        assert_eq!(s.len(), 64);
        assert!(verify(
            "k3y",
            "POST",
            "/v1/apps/w/messages",
            100,
            "n1",
            b"{}",
            &s
        ));
        assert!(!verify(
            "k3y",
            "POST",
            "/v1/apps/w/messages",
            100,
            "n1",
            b"{ }",
            &s
        ));
        assert!(!verify(
            "k3y",
            "POST",
            "/v1/apps/x/messages",
            100,
            "n1",
            b"{}",
            &s
        ));
        assert!(!verify(
            "k3y",
            "POST",
            "/v1/apps/w/messages",
            101,
            "n1",
            b"{}",
            &s
        ));
        assert!(!verify(
            "k3y",
            "POST",
            "/v1/apps/w/messages",
            100,
            "n2",
            b"{}",
            &s
        ));
        assert!(!verify(
            "other",
            "POST",
            "/v1/apps/w/messages",
            100,
            "n1",
            b"{}",
            &s
        ));
        assert!(!verify(
            "k3y",
            "POST",
            "/v1/apps/w/messages",
            100,
            "n1",
            b"{}",
            &s.to_uppercase()
        ));
        assert!(!verify(
            "k3y",
            "POST",
            "/v1/apps/w/messages",
            100,
            "n1",
            b"{}",
            "zz"
        ));
    }

    #[test]
    fn the_string_to_sign_is_as_documented() {
        // SHA-256 of the empty string.
        assert_eq!(
            string_to_sign("get", "/p?q=1", 7, "n", b""),
            "GET\n/p?q=1\n7\nn\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn stale_and_replayed_requests_are_refused() {
        let r = Replay::new(300, 3, 1000);
        assert_eq!(r.check("a", 2000, "n1", 2000), Ok(()));
        assert_eq!(r.check("a", 2000, "n1", 2001), Err(ReplayError::Replayed));
        assert_eq!(r.check("b", 2000, "n1", 2001), Ok(()), "per app");
        assert_eq!(r.check("a", 1600, "n2", 2000), Err(ReplayError::Stale));
        assert_eq!(r.check("a", 2400, "n2", 2000), Err(ReplayError::Stale));
        assert_eq!(
            r.check("a", 999, "n2", 1100),
            Err(ReplayError::Stale),
            "before the start"
        );
        assert_eq!(r.check("a", 2000, "n3", 2000), Ok(()));
        assert_eq!(r.check("a", 2000, "n4", 2000), Err(ReplayError::Full));
        // Once the window has passed, the nonces are forgotten (and stale anyway).
        assert_eq!(r.check("a", 2400, "n1", 2400), Ok(()));
    }

    #[test]
    fn nonces_are_bounded() {
        assert!(nonce_ok("abc-123"));
        assert!(!nonce_ok(""));
        assert!(!nonce_ok(&"x".repeat(65)));
        assert!(!nonce_ok("a b"));
    }
}
