//! `[apps]`: the app platform's limits.

use serde::{Deserialize, Serialize};

/// The app platform's config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// How far a signed request's `X-App-Timestamp` may be from the gateway's clock, in
    /// seconds; a nonce is remembered this long.
    pub replay_window_secs: u64,
    /// Most app messages each user's message stack keeps (the oldest go first).
    pub stack_size: usize,
    /// Most bytes of XML content in one app message.
    pub max_content_bytes: usize,
    /// Most characters of fallback text (and of a recommendation's comment).
    pub max_text_chars: usize,
    /// Most people one push reaches.
    pub max_recipients_per_push: usize,
    /// Apps that may push to users who have not installed them.
    pub platform: Vec<String>,
    /// Nonces remembered at most (across apps); when full, signed requests are refused
    /// with `503` until the oldest expire.
    pub max_nonces: usize,
    /// A pull's time limit (connect, answer and body), in milliseconds.
    pub pull_timeout_ms: u64,
    /// Most bytes of a pull's answer.
    pub pull_max_bytes: usize,
    /// Pulls in flight at once, across apps.
    pub pull_concurrency: usize,
    /// Longest wait between pulls of an app that keeps failing, in seconds.
    pub pull_max_backoff_secs: u64,
    /// A report POST's time limit, in milliseconds.
    pub report_timeout_ms: u64,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            replay_window_secs: 300,
            stack_size: 100,
            max_content_bytes: 8192,
            max_text_chars: 500,
            max_recipients_per_push: 1000,
            platform: Vec::new(),
            max_nonces: 100_000,
            pull_timeout_ms: 5000,
            pull_max_bytes: 256 * 1024,
            pull_concurrency: 4,
            pull_max_backoff_secs: 3600,
            report_timeout_ms: 5000,
        }
    }
}

impl AppsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (key, v) in [
            ("replay_window_secs", self.replay_window_secs as usize),
            ("stack_size", self.stack_size),
            ("max_content_bytes", self.max_content_bytes),
            ("max_text_chars", self.max_text_chars),
            ("max_recipients_per_push", self.max_recipients_per_push),
            ("max_nonces", self.max_nonces),
            ("pull_timeout_ms", self.pull_timeout_ms as usize),
            ("pull_max_bytes", self.pull_max_bytes),
            ("pull_concurrency", self.pull_concurrency),
            ("pull_max_backoff_secs", self.pull_max_backoff_secs as usize),
            ("report_timeout_ms", self.report_timeout_ms as usize),
        ] {
            crate::config::positive(&mut e, &format!("apps.{key}"), v);
        }
        if self.max_recipients_per_push > crate::http::auth::MAX_RECIPIENTS {
            e.push(format!(
                "apps.max_recipients_per_push: at most {}",
                crate::http::auth::MAX_RECIPIENTS
            ));
        }
        for (i, a) in self.platform.iter().enumerate() {
            if crate::address::Address::parse_user(&format!("app:{a}")).is_err() {
                e.push(format!("apps.platform[{i}]: {a:?} is not an appid"));
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_key_is_named() {
        assert!(AppsConfig::default().validate().is_empty());
        let bad = AppsConfig {
            stack_size: 0,
            max_recipients_per_push: 5000,
            platform: vec!["ok".into(), "not ok".into()],
            ..AppsConfig::default()
        };
        let e = bad.validate();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("apps.stack_size"), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("apps.max_recipients_per_push: at most 1000"))
        );
        assert!(e.iter().any(|m| m.contains("apps.platform[1]")));
    }
}
