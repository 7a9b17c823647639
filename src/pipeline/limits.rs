//! Abuse ceilings applied to every message, whichever connector it came in by: the
//! destination policy for phones (allowed and denied number ranges, premium-rate ranges
//! denied by default) and the per-recipient daily cap (no phone gets more than
//! `recipient_daily_max` SMS/MMS from this gateway in one UTC day, so nobody can use it to
//! bomb a handset).
//!
//! Each refusal is a permanent failure of that recipient with a stable code at the start of
//! its error (`destination_denied`, `recipient_daily_cap`), reported to the origin and
//! counted in `switchboard_messages_refused_total{stage="auth",reason}`.
//!
//! The daily counts are kept in memory by the node that routes the message: a restart
//! starts the day's counts again, and they hold at most [`MAX_TRACKED`] phones per day
//! (beyond that, new phones are not counted, and a warning says so once).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::address::Address;

/// Most phones whose daily count is kept (≈ 60 bytes each).
pub const MAX_TRACKED: usize = 2_000_000;

/// Premium-rate and shared-cost ranges refused unless `deny_premium = false`: the NANP
/// 900 and 976 ranges, the ITU's international premium rate service (+979), and the UK
/// (09), German (0900) and French (089) premium ranges.
pub const PREMIUM_PREFIXES: [&str; 6] = ["+1900", "+1976", "+979", "+449", "+49900", "+3389"];

/// `[limits]`: what any sender may make the gateway send to phones.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most SMS/MMS one phone number receives per UTC day (0: no cap).
    pub recipient_daily_max: u32,
    /// Refuse the premium-rate ranges in `premium_prefixes`.
    pub deny_premium: bool,
    /// The premium-rate number prefixes (E.164, with `+`).
    pub premium_prefixes: Vec<String>,
    /// When not empty: only numbers starting with one of these prefixes may be sent to.
    pub allow_destinations: Vec<String>,
    /// Numbers starting with one of these prefixes are never sent to.
    pub deny_destinations: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            recipient_daily_max: 100,
            deny_premium: true,
            premium_prefixes: PREMIUM_PREFIXES.iter().map(|p| p.to_string()).collect(),
            allow_destinations: Vec::new(),
            deny_destinations: Vec::new(),
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (key, list) in [
            ("limits.premium_prefixes", &self.premium_prefixes),
            ("limits.allow_destinations", &self.allow_destinations),
            ("limits.deny_destinations", &self.deny_destinations),
        ] {
            for (i, p) in list.iter().enumerate() {
                let ok = p.len() >= 2
                    && p.starts_with('+')
                    && p[1..].chars().all(|c| c.is_ascii_digit());
                if !ok {
                    e.push(format!(
                        "{key}[{i}]: {p:?} is not a number prefix such as \"+86\""
                    ));
                }
            }
        }
        e
    }

    /// Why a phone may not be sent to, if it may not: `destination_denied: …`.
    pub fn check_destination(&self, addr: &Address) -> Result<(), String> {
        let Address::Sms(n) = addr else {
            return Ok(());
        };
        let starts = |list: &[String]| list.iter().find(|p| n.starts_with(p.as_str())).cloned();
        if let Some(p) = starts(&self.deny_destinations) {
            return Err(format!(
                "destination_denied: numbers starting with {p} are not served"
            ));
        }
        if self.deny_premium
            && let Some(p) = starts(&self.premium_prefixes)
        {
            return Err(format!(
                "destination_denied: {p} is a premium-rate range, denied by this gateway"
            ));
        }
        if !self.allow_destinations.is_empty() && starts(&self.allow_destinations).is_none() {
            return Err(format!(
                "destination_denied: only numbers starting with {} are served",
                self.allow_destinations.join(", ")
            ));
        }
        Ok(())
    }
}

/// The per-recipient daily counts.
pub struct DailyCap {
    max: u32,
    inner: Mutex<Day>,
}

struct Day {
    day: i64,
    counts: HashMap<String, u32>,
    warned: bool,
}

impl DailyCap {
    pub fn new(max: u32) -> DailyCap {
        DailyCap {
            max,
            inner: Mutex::new(Day {
                day: -1,
                counts: HashMap::new(),
                warned: false,
            }),
        }
    }

    /// Counts one message to `addr` at `now_ms`; refuses it (and does not count it) when
    /// the phone has had its cap today: `recipient_daily_cap: …`.
    pub fn take(&self, addr: &Address, now_ms: i64) -> Result<(), String> {
        let Address::Sms(n) = addr else {
            return Ok(());
        };
        if self.max == 0 {
            return Ok(());
        }
        let day = now_ms.div_euclid(86_400_000);
        let mut d = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if d.day != day {
            d.day = day;
            d.counts.clear();
            d.warned = false;
        }
        let tracked = d.counts.len();
        match d.counts.get_mut(n.as_str()) {
            Some(c) if *c >= self.max => Err(format!(
                "recipient_daily_cap: {n} has had {} messages today, the most this gateway sends to one phone per day",
                self.max
            )),
            Some(c) => {
                *c += 1;
                Ok(())
            }
            None if tracked >= MAX_TRACKED => {
                if !d.warned {
                    d.warned = true;
                    tracing::warn!(
                        tracked,
                        "daily caps: too many phones today; new phones are not counted until tomorrow"
                    );
                }
                Ok(())
            }
            None => {
                d.counts.insert(n.clone(), 1);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(n: &str) -> Address {
        Address::Sms(n.into())
    }

    #[test]
    fn premium_ranges_are_denied_by_default() {
        let l = LimitsConfig::default();
        let err = l.check_destination(&phone("+19005550100")).unwrap_err();
        assert!(err.starts_with("destination_denied"), "{err}");
        assert!(l.check_destination(&phone("+8613800000000")).is_ok());
        let open = LimitsConfig {
            deny_premium: false,
            ..LimitsConfig::default()
        };
        assert!(open.check_destination(&phone("+19005550100")).is_ok());
    }

    #[test]
    fn allow_and_deny_lists_hold() {
        let l = LimitsConfig {
            allow_destinations: vec!["+86".into()],
            deny_destinations: vec!["+86170".into()],
            ..LimitsConfig::default()
        };
        assert!(l.check_destination(&phone("+8613800000000")).is_ok());
        assert!(l.check_destination(&phone("+8617000000000")).is_err());
        assert!(l.check_destination(&phone("+4915100000000")).is_err());
        assert!(
            l.check_destination(&Address::Mail("a@b.org".into()))
                .is_ok()
        );
    }

    #[test]
    fn the_daily_cap_refuses_the_one_over_and_resets_the_next_day() {
        let cap = DailyCap::new(3);
        let day = 20_000 * 86_400_000;
        for _ in 0..3 {
            cap.take(&phone("+8613800000000"), day).unwrap();
        }
        let err = cap.take(&phone("+8613800000000"), day + 1).unwrap_err();
        assert!(err.contains("has had 3 messages today"), "{err}");
        // Another phone is counted on its own.
        cap.take(&phone("+8613800000001"), day).unwrap();
        // A new day starts again.
        cap.take(&phone("+8613800000000"), day + 86_400_000)
            .unwrap();
    }
}
