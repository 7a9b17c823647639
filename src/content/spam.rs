//! Spam checks: built-in rules that need no service (a per-sender flood of identical texts,
//! blocked words, blocked URL hosts) and an rspamd adapter (`POST /checkv2`, by its action).
//!
//! Guarantees:
//! - The built-in rules run first; each refusal says which rule (`spam_flood`,
//!   `spam_blocked_word`, `spam_blocked_url`) and is counted in
//!   `switchboard_spam_total{rule, action}`.
//! - rspamd's action decides: `reject_actions` → permanent failure (`spam_rejected`),
//!   `quarantine_actions` → kept in the quarantine folder and refused (`spam_quarantined`),
//!   `tag_actions` → delivered with `tag_prefix` before the text. rspamd unreachable or
//!   answering nonsense → the `on_unavailable` policy, counted, never silent.
//! - The flood window counts each message once, whatever its retries, and its memory is
//!   bounded ([`MAX_TRACKED_SENDERS`]). rspamd's answer is read with a bound.
//! - No refusal names a filesystem path (the quarantine folder is named by the message id).
//! - Mail received over SMTP is checked whole before it is accepted ([`SpamCheck::check_mail`]:
//!   rspamd reads the mail as received), so a refusal is an SMTP reply, never a bounce.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::scan::WhenUnavailable;
use crate::message::{Envelope, now_ms};

/// Senders tracked by the flood rule before its memory is reset.
pub const MAX_TRACKED_SENDERS: usize = 100_000;
/// Largest rspamd answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// The `[content.spam]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpamConfig {
    /// rspamd's normal worker, e.g. `http://127.0.0.1:11333`. Empty: no rspamd.
    pub rspamd_url: String,
    /// Deadline for one rspamd check, in milliseconds.
    pub timeout_ms: u64,
    /// rspamd down or failing: `fail_open` (pass, counted) or `fail_closed` (retry later).
    pub on_unavailable: WhenUnavailable,
    /// rspamd actions that refuse the message.
    pub reject_actions: Vec<String>,
    /// rspamd actions that keep the message in `quarantine_dir` and refuse it.
    pub quarantine_actions: Vec<String>,
    /// rspamd actions that deliver the message with `tag_prefix` before its text.
    pub tag_actions: Vec<String>,
    /// Put before the text of a tagged message.
    pub tag_prefix: String,
    /// Where quarantined spam is kept, one folder per message.
    pub quarantine_dir: PathBuf,
    /// More than this many messages with the same text from one sender within
    /// `flood_window_secs` are refused. 0: no flood rule.
    pub flood_max_identical: u32,
    /// The flood rule's window, in seconds.
    pub flood_window_secs: u64,
    /// Words (case-insensitive, whole words) that refuse a message.
    pub blocked_words: Vec<String>,
    /// Hosts (and their subdomains) whose URLs in a text refuse it.
    pub blocked_url_hosts: Vec<String>,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            rspamd_url: String::new(),
            timeout_ms: 5_000,
            on_unavailable: WhenUnavailable::FailOpen,
            reject_actions: vec!["reject".into()],
            quarantine_actions: vec!["soft reject".into()],
            tag_actions: vec!["add header".into(), "rewrite subject".into()],
            tag_prefix: "[SPAM] ".into(),
            quarantine_dir: PathBuf::from("var/quarantine"),
            flood_max_identical: 0,
            flood_window_secs: 60,
            blocked_words: Vec::new(),
            blocked_url_hosts: Vec::new(),
        }
    }
}

impl SpamConfig {
    /// Every error, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let u = &self.rspamd_url;
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            e.push(format!(
                "content.spam.rspamd_url: {u:?} is not an http(s) URL"
            ));
        }
        if self.timeout_ms == 0 {
            e.push("content.spam.timeout_ms: must be at least 1".into());
        }
        if self.flood_max_identical > 0 && self.flood_window_secs == 0 {
            e.push("content.spam.flood_window_secs: must be at least 1".into());
        }
        for (i, w) in self.blocked_words.iter().enumerate() {
            if w.trim().is_empty() {
                e.push(format!(
                    "content.spam.blocked_words[{i}]: must not be empty"
                ));
            }
        }
        for (i, h) in self.blocked_url_hosts.iter().enumerate() {
            if h.trim().is_empty() || h.contains('/') {
                e.push(format!(
                    "content.spam.blocked_url_hosts[{i}]: {h:?} is not a host name"
                ));
            }
        }
        e
    }

    fn enabled(&self) -> bool {
        !self.rspamd_url.is_empty()
            || self.flood_max_identical > 0
            || !self.blocked_words.is_empty()
            || !self.blocked_url_hosts.is_empty()
    }
}

/// What the process stage does with a message after the spam checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Deliver with this text instead (tagged).
    Tag(String),
    /// Permanent failure with this error.
    Refuse(String),
    /// Temporary failure: try again later.
    Retry(String),
}

struct Flood {
    /// sender → (time ms, text hash, message id), oldest first.
    seen: HashMap<String, VecDeque<(i64, u64, u64)>>,
}

/// The spam checker: rules, flood memory and the rspamd client.
pub struct SpamCheck {
    cfg: SpamConfig,
    words: Vec<String>,
    hosts: Vec<String>,
    flood: Mutex<Flood>,
    client: reqwest::Client,
}

fn count(rule: &'static str, action: &'static str) {
    metrics::counter!("switchboard_spam_total", "rule" => rule, "action" => action).increment(1);
}

impl SpamCheck {
    /// `None` when no rule and no rspamd is configured.
    pub fn new(cfg: &SpamConfig) -> Option<SpamCheck> {
        if !cfg.enabled() {
            return None;
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Some(SpamCheck {
            words: cfg
                .blocked_words
                .iter()
                .map(|w| w.trim().to_lowercase())
                .collect(),
            hosts: cfg
                .blocked_url_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_lowercase())
                .collect(),
            cfg: cfg.clone(),
            flood: Mutex::new(Flood {
                seen: HashMap::new(),
            }),
            client,
        })
    }

    /// Whether a check that cannot get its verdict holds the message (rspamd configured
    /// under `fail_closed`); the built-in rules need no service.
    pub fn fail_closed(&self) -> bool {
        !self.cfg.rspamd_url.is_empty() && self.cfg.on_unavailable == WhenUnavailable::FailClosed
    }

    /// Runs the rules, then rspamd.
    pub async fn check(&self, env: &Envelope) -> Verdict {
        self.check_with(env, None).await
    }

    /// The checks of a mail before it is accepted: the rules on `env`, rspamd on the mail as
    /// received (`raw`), which is also what a quarantine keeps.
    pub async fn check_mail(&self, env: &Envelope, raw: &[u8]) -> Verdict {
        self.check_with(env, Some(raw)).await
    }

    async fn check_with(&self, env: &Envelope, raw: Option<&[u8]>) -> Verdict {
        let text = &env.content.text;
        if let Some(v) = self.rules(env) {
            return v;
        }
        if self.cfg.rspamd_url.is_empty() {
            return Verdict::Pass;
        }
        let mail = match raw {
            Some(r) => r.to_vec(),
            None => as_mail(env),
        };
        match self.rspamd(env, &mail).await {
            Ok(action) => self.by_action(env, &action, mail).await,
            Err(e) => match self.cfg.on_unavailable {
                WhenUnavailable::FailOpen => {
                    count("rspamd", "fail_open");
                    tracing::warn!(message = %env.id, error = %e, "spam check skipped (fail_open)");
                    Verdict::Pass
                }
                WhenUnavailable::FailClosed => {
                    count("rspamd", "unavailable");
                    Verdict::Retry(format!("spam_check_unavailable: {e}"))
                }
            },
        }
        .tagged(text)
    }

    /// The built-in rules; `None` if none applies.
    fn rules(&self, env: &Envelope) -> Option<Verdict> {
        let text = &env.content.text;
        let lower = text.to_lowercase();
        if let Some(w) = self.words.iter().find(|w| has_word(&lower, w)) {
            count("blocked_word", "reject");
            return Some(Verdict::Refuse(format!(
                "spam_blocked_word: the text contains the blocked word {w:?}"
            )));
        }
        if let Some(h) = url_hosts(&lower).into_iter().find(|h| {
            self.hosts
                .iter()
                .any(|b| h == b || h.ends_with(&format!(".{b}")))
        }) {
            count("blocked_url", "reject");
            return Some(Verdict::Refuse(format!(
                "spam_blocked_url: the text links to the blocked host {h:?}"
            )));
        }
        if self.cfg.flood_max_identical > 0 && !text.is_empty() && self.flooding(env) {
            count("flood", "reject");
            return Some(Verdict::Refuse(format!(
                "spam_flood: more than {} identical texts from this sender within {} s",
                self.cfg.flood_max_identical, self.cfg.flood_window_secs
            )));
        }
        None
    }

    /// Records `env` and says whether its sender is over the identical-text limit.
    fn flooding(&self, env: &Envelope) -> bool {
        let mut h = DefaultHasher::new();
        env.content.text.hash(&mut h);
        let hash = h.finish();
        let now = now_ms();
        let since = now - (self.cfg.flood_window_secs as i64) * 1000;
        let mut f = self.flood.lock().unwrap_or_else(|e| e.into_inner());
        if f.seen.len() >= MAX_TRACKED_SENDERS {
            f.seen.clear();
        }
        let q = f.seen.entry(env.origin.to_string()).or_default();
        while q.front().is_some_and(|&(at, _, _)| at < since) {
            q.pop_front();
        }
        let id = env.id.0;
        if !q.iter().any(|&(_, _, m)| m == id) {
            q.push_back((now, hash, id));
        }
        // Bounded per sender too: the limit plus a margin is all the rule needs.
        let keep = self.cfg.flood_max_identical as usize * 4 + 16;
        while q.len() > keep {
            q.pop_front();
        }
        let same: HashSet<u64> = q
            .iter()
            .filter(|&&(_, t, _)| t == hash)
            .map(|&(_, _, m)| m)
            .collect();
        same.len() > self.cfg.flood_max_identical as usize
    }

    /// Asks rspamd; returns its action.
    async fn rspamd(&self, env: &Envelope, mail: &[u8]) -> Result<String, String> {
        let url = format!("{}/checkv2", self.cfg.rspamd_url.trim_end_matches('/'));
        let mut resp = self
            .client
            .post(&url)
            .header("From", env.origin.value())
            .header("Queue-Id", env.id.to_string())
            .body(mail.to_vec())
            .send()
            .await
            .map_err(|e| format!("rspamd at {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("rspamd answered HTTP {}", resp.status().as_u16()));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("rspamd: {e}"))? {
            if buf.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("rspamd answer larger than {MAX_ANSWER} bytes"));
            }
            buf.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct Answer {
            action: String,
        }
        serde_json::from_slice::<Answer>(&buf)
            .map(|a| a.action)
            .map_err(|e| format!("unreadable rspamd answer: {e}"))
    }

    async fn by_action(&self, env: &Envelope, action: &str, mail: Vec<u8>) -> Verdict {
        let is = |list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(action));
        if is(&self.cfg.reject_actions) {
            count("rspamd", "reject");
            Verdict::Refuse(format!("spam_rejected: rspamd says {action:?}"))
        } else if is(&self.cfg.quarantine_actions) {
            count("rspamd", "quarantine");
            let kept = match self.quarantine(env, action, mail).await {
                Ok(()) => "kept in quarantine",
                Err(e) => {
                    tracing::error!(message = %env.id, error = %e, "cannot quarantine spam");
                    "not kept: quarantine failed"
                }
            };
            Verdict::Refuse(format!("spam_quarantined: rspamd says {action:?}; {kept}"))
        } else if is(&self.cfg.tag_actions) {
            count("rspamd", "tag");
            Verdict::Tag(format!("{}{}", self.cfg.tag_prefix, env.content.text))
        } else {
            count("rspamd", "pass");
            Verdict::Pass
        }
    }

    async fn quarantine(&self, env: &Envelope, action: &str, mail: Vec<u8>) -> std::io::Result<()> {
        let dir = self.cfg.quarantine_dir.join(format!("{}-spam", env.id));
        let note = format!(
            "message {}\norigin {}\nrspamd action {action}\n",
            env.id, env.origin
        );
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("message.eml"), mail)?;
            std::fs::write(dir.join("REASON"), note)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl Verdict {
    /// A `Tag` whose text equals the original is a pass.
    fn tagged(self, original: &str) -> Verdict {
        match self {
            Verdict::Tag(t) if t == original => Verdict::Pass,
            v => v,
        }
    }
}

/// The message as rspamd reads it: the original mail headers when it came by mail, then
/// the text.
fn as_mail(env: &Envelope) -> Vec<u8> {
    let mut out = String::new();
    match env.content.mail.as_ref().filter(|m| !m.headers.is_empty()) {
        Some(m) => {
            out.push_str(m.headers.trim_end_matches(['\r', '\n']));
            out.push_str("\r\n");
        }
        None => {
            let clean = |v: &str| v.replace(['\r', '\n', '<', '>', '"'], "");
            let from = clean(env.origin.value());
            let to = env
                .recipients
                .first()
                .map(|r| clean(r.address.value()))
                .unwrap_or_default();
            let date = chrono::DateTime::from_timestamp_millis(env.created_at)
                .unwrap_or_else(chrono::Utc::now)
                .to_rfc2822();
            out.push_str(&format!(
                "From: \"{from}\" <{from}>\r\nTo: <{to}>\r\nSubject: Message\r\nDate: {date}\r\n\
                 Message-ID: <{}@switchboard>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
                env.id
            ));
        }
    }
    out.push_str("\r\n");
    out.push_str(&env.content.text.replace("\r\n", "\n").replace('\n', "\r\n"));
    out.push_str("\r\n");
    out.into_bytes()
}

/// Whether `word` occurs in `text` as a whole word (both already lowercase).
fn has_word(text: &str, word: &str) -> bool {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let start = from + i;
        let end = start + word.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return true;
        }
        from = start + word.chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The hosts of `http://` / `https://` URLs and of bare `www.` names in `text`.
fn url_hosts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'')) {
        let rest = token
            .strip_prefix("https://")
            .or_else(|| token.strip_prefix("http://"))
            .or_else(|| token.starts_with("www.").then_some(token));
        let Some(rest) = rest else { continue };
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .rsplit('@')
            .next()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .trim_end_matches(['.', ',', ';', ')'])
            .to_string();
        if !host.is_empty() {
            out.push(host);
        }
        if out.len() >= 100 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::message::{Content, IdGen, Kind, Recipient};

    fn env(ids: &IdGen, from: &str, text: &str) -> Envelope {
        Envelope {
            id: ids.next(),
            kind: Kind::Message,
            origin: Address::parse_user(from).unwrap(),
            client: "test".into(),
            client_ref: None,
            report_to: None,
            recipients: vec![Recipient::new(
                0,
                Address::parse_user("sms:+8613800000001").unwrap(),
            )],
            content: Content {
                text: text.into(),
                ..Content::default()
            },
            created_at: 0,
            expires_at: i64::MAX,
            note: None,
            speaker: None,
        }
    }

    #[test]
    fn words_and_hosts() {
        assert!(has_word("buy cheap pills now", "pills"));
        assert!(!has_word("spillsover", "pills"));
        assert!(has_word("pills!", "pills"));
        assert_eq!(
            url_hosts("see https://user@Evil.example.com:8080/x?y and www.spam.test/a, ok"),
            vec!["Evil.example.com".to_string(), "www.spam.test".to_string()]
        );
    }

    #[tokio::test]
    async fn rules_refuse_and_count_each_message_once() {
        let cfg = SpamConfig {
            flood_max_identical: 2,
            blocked_words: vec!["Casino".into()],
            blocked_url_hosts: vec!["evil.example".into()],
            ..SpamConfig::default()
        };
        let s = SpamCheck::new(&cfg).unwrap();
        let ids = IdGen::new(0);
        let from = "im:alice@im.example.org";
        assert!(matches!(
            s.check(&env(&ids, from, "Best CASINO in town")).await,
            Verdict::Refuse(e) if e.starts_with("spam_blocked_word")
        ));
        assert!(matches!(
            s.check(&env(&ids, from, "go to http://www.evil.example/win")).await,
            Verdict::Refuse(e) if e.starts_with("spam_blocked_url")
        ));
        assert_eq!(
            s.check(&env(&ids, from, "notevil.example.org")).await,
            Verdict::Pass
        );
        let first = env(&ids, from, "same");
        assert_eq!(s.check(&first).await, Verdict::Pass);
        // A retry of the same message is not a second copy.
        assert_eq!(s.check(&first).await, Verdict::Pass);
        assert_eq!(s.check(&env(&ids, from, "same")).await, Verdict::Pass);
        assert_eq!(
            s.check(&env(&ids, "im:bob@im.example.org", "same")).await,
            Verdict::Pass
        );
        assert!(matches!(
            s.check(&env(&ids, from, "same")).await,
            Verdict::Refuse(e) if e.starts_with("spam_flood")
        ));
        assert_eq!(s.check(&env(&ids, from, "different")).await, Verdict::Pass);
    }
}
