//! Messages per envelope sender per minute, across all SMTP sessions: a token bucket per
//! sender (`max_messages_per_sender_per_minute` tokens, refilled at that rate per minute).
//!
//! A transaction takes a token at `MAIL FROM` and gives it back if it ends without a
//! stored message (refused, reset, disconnected), so only accepted mail counts. Memory is
//! bounded: full buckets are forgotten, and at most [`MAX_SENDERS`] are tracked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::message::now_ms;

/// Senders tracked at most; beyond it every bucket is forgotten (a flood of distinct
/// senders is bounded by the connection and session limits instead).
pub const MAX_SENDERS: usize = 100_000;

/// The per-sender buckets.
pub struct SenderRate {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl SenderRate {
    /// `per_minute` 0: no limit.
    pub fn new(per_minute: u32) -> Arc<SenderRate> {
        Arc::new(SenderRate {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn level(&self, tokens: f64, since: i64, now: i64) -> f64 {
        let cap = f64::from(self.per_minute);
        (tokens + (now - since).max(0) as f64 * cap / 60_000.0).min(cap)
    }

    /// Takes a token for `sender`; `None` when it has none left (the caller refuses).
    pub fn take(self: &Arc<Self>, sender: &str) -> Option<RateTicket> {
        if self.per_minute == 0 {
            return Some(RateTicket { taken: None });
        }
        let key = sender.to_ascii_lowercase();
        let now = now_ms();
        let cap = f64::from(self.per_minute);
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SENDERS && !map.contains_key(&key) {
            map.retain(|_, &mut (t, at)| self.level(t, at, now) < cap);
            if map.len() >= MAX_SENDERS {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((cap, now));
        let level = self.level(*tokens, *at, now);
        if level < 1.0 {
            *tokens = level;
            *at = now;
            return None;
        }
        *tokens = level - 1.0;
        *at = now;
        Some(RateTicket {
            taken: Some((self.clone(), key)),
        })
    }

    fn give_back(&self, key: &str) {
        let now = now_ms();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tokens, at)) = map.get_mut(key) {
            *tokens = (self.level(*tokens, *at, now) + 1.0).min(f64::from(self.per_minute));
            *at = now;
        }
    }
}

/// A token taken for one transaction: given back when dropped unless [`RateTicket::keep`]
/// was called.
pub struct RateTicket {
    taken: Option<(Arc<SenderRate>, String)>,
}

impl RateTicket {
    /// The message was stored: the token stays spent.
    pub fn keep(mut self) {
        self.taken = None;
    }
}

impl Drop for RateTicket {
    fn drop(&mut self) {
        if let Some((rate, key)) = self.taken.take() {
            rate.give_back(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_gets_its_tokens_and_unused_ones_come_back() {
        let rate = SenderRate::new(3);
        let a = rate.take("Bob@example.com").unwrap();
        let b = rate.take("bob@example.com").unwrap();
        let c = rate.take("bob@EXAMPLE.com").unwrap();
        assert!(rate.take("bob@example.com").is_none());
        assert!(rate.take("alice@example.com").is_some());
        a.keep();
        b.keep();
        drop(c);
        rate.take("bob@example.com").unwrap().keep();
        assert!(rate.take("bob@example.com").is_none());
        let off = SenderRate::new(0);
        for _ in 0..1000 {
            off.take("x@example.com").unwrap().keep();
        }
    }
}
