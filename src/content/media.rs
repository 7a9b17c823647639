//! Links to the media parts of stored messages, for IM users (XEP-0066 out-of-band data).
//!
//! A link names a message, a part and an expiry time, and carries an HMAC-SHA256 over the
//! three, keyed with `[content.media] secret`: `…/media/<message>/<part>/<name>?e=<unix
//! seconds>&s=<hex>`. The gateway serves the part only for a link it signed and only until
//! the expiry; the file name in the path is for the user's client and is not signed.
//! Without a configured secret a random key is drawn at start, so links stop working after
//! a restart (logged).

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::message::MsgId;

/// Where media links point, under the base URL.
pub const MEDIA_PATH: &str = "/media";

/// The `[content.media]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The base URL IM users reach the gateway's HTTP listener under (`https://gw.example.org`).
    /// Default: `http.public_url`, else `http://<http.listen>`.
    pub base_url: Option<String>,
    /// The key links are signed with (at least 16 characters). Empty: a random key per
    /// start.
    pub secret: String,
    /// How long a link works, in seconds.
    pub link_ttl_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            base_url: None,
            secret: String::new(),
            link_ttl_secs: 7 * 24 * 3600,
        }
    }
}

impl MediaConfig {
    /// Every error, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if let Some(u) = &self.base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            e.push(format!(
                "content.media.base_url: {u:?} is not an http(s) URL"
            ));
        }
        if !self.secret.is_empty() && self.secret.len() < 16 {
            e.push("content.media.secret: must be at least 16 characters".into());
        }
        if self.link_ttl_secs == 0 {
            e.push("content.media.link_ttl_secs: must be at least 1".into());
        }
        e
    }
}

/// Why a link is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is not valid")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

/// Makes and checks media links.
pub struct MediaLinks {
    base: String,
    key: hmac::Key,
    ttl_secs: u64,
}

impl MediaLinks {
    /// `public_url`: the HTTP listener's public base URL, used when `base_url` is not set.
    pub fn new(cfg: &MediaConfig, public_url: &str) -> MediaLinks {
        let base = cfg
            .base_url
            .clone()
            .unwrap_or_else(|| public_url.to_string())
            .trim_end_matches('/')
            .to_string();
        let key = if cfg.secret.is_empty() {
            tracing::warn!(
                "content.media.secret is not set: media links are signed with a random key and stop working after a restart"
            );
            let random: [u8; 32] = rand::random();
            hmac::Key::new(hmac::HMAC_SHA256, &random)
        } else {
            hmac::Key::new(hmac::HMAC_SHA256, cfg.secret.as_bytes())
        };
        MediaLinks {
            base,
            key,
            ttl_secs: cfg.link_ttl_secs,
        }
    }

    fn signed(msg: MsgId, part: usize, expires: u64) -> String {
        format!("{msg}/{part}/{expires}")
    }

    /// A link to part `part` of message `msg`, working for the configured time from now.
    pub fn url(&self, msg: MsgId, part: usize, name: &str) -> String {
        let now = u64::try_from(crate::message::now_ms() / 1000).unwrap_or(0);
        self.url_until(msg, part, name, now + self.ttl_secs)
    }

    /// A link working until `expires` (Unix seconds).
    pub fn url_until(&self, msg: MsgId, part: usize, name: &str, expires: u64) -> String {
        let tag = hmac::sign(&self.key, Self::signed(msg, part, expires).as_bytes());
        format!(
            "{}{MEDIA_PATH}/{msg}/{part}/{}?e={expires}&s={}",
            self.base,
            path_name(name),
            hex(tag.as_ref())
        )
    }

    /// Checks a link's message, part, expiry and signature (as they came in the request)
    /// at `now` (Unix seconds).
    pub fn verify(
        &self,
        msg: &str,
        part: &str,
        expires: &str,
        sig: &str,
        now: u64,
    ) -> Result<(MsgId, usize), LinkError> {
        let msg = MsgId::parse(msg).ok_or(LinkError::Invalid)?;
        let part: usize = part.parse().map_err(|_| LinkError::Invalid)?;
        let expires: u64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        let tag = unhex(sig).ok_or(LinkError::Invalid)?;
        hmac::verify(&self.key, Self::signed(msg, part, expires).as_bytes(), &tag)
            .map_err(|_| LinkError::Invalid)?;
        if now > expires {
            return Err(LinkError::Expired);
        }
        Ok((msg, part))
    }
}

/// A file name safe in a URL path (letters, digits, `.`, `-`, `_`).
fn path_name(name: &str) -> String {
    let n: String = name
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() || n.chars().all(|c| c == '.') {
        "part".into()
    } else {
        n
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> MediaLinks {
        MediaLinks::new(
            &MediaConfig {
                secret: "0123456789abcdef-test".into(),
                ..MediaConfig::default()
            },
            "http://127.0.0.1:8080/",
        )
    }

    /// The path segments and query of a link.
    fn pieces(url: &str) -> (String, String, String, String) {
        let rest = url.split_once("/media/").unwrap().1;
        let (path, query) = rest.split_once('?').unwrap();
        let seg: Vec<&str> = path.split('/').collect();
        let e = query.split('&').next().unwrap().trim_start_matches("e=");
        let s = query.split('&').nth(1).unwrap().trim_start_matches("s=");
        (seg[0].into(), seg[1].into(), e.into(), s.into())
    }

    #[test]
    fn signed_links_verify_until_they_expire() {
        let l = links();
        let msg = MsgId(0x1234_5678_9abc_def0);
        let url = l.url_until(msg, 2, "holiday photo.jpg", 1_000);
        assert!(
            url.starts_with(
                "http://127.0.0.1:8080/media/123456789abcdef0/2/holiday_photo.jpg?e=1000&s="
            ),
            "{url}"
        );
        let (m, p, e, s) = pieces(&url);
        assert_eq!(l.verify(&m, &p, &e, &s, 999), Ok((msg, 2)));
        assert_eq!(l.verify(&m, &p, &e, &s, 1_001), Err(LinkError::Expired));
        // Any change to what is signed breaks it.
        assert_eq!(l.verify(&m, "3", &e, &s, 999), Err(LinkError::Invalid));
        assert_eq!(l.verify(&m, &p, "2000", &s, 999), Err(LinkError::Invalid));
        assert_eq!(
            l.verify("123456789abcdef1", &p, &e, &s, 999),
            Err(LinkError::Invalid)
        );
        let mut bad = s.clone();
        bad.replace_range(0..1, if s.starts_with('0') { "1" } else { "0" });
        assert_eq!(l.verify(&m, &p, &e, &bad, 999), Err(LinkError::Invalid));
        assert_eq!(l.verify(&m, &p, &e, "zz", 999), Err(LinkError::Invalid));
        // Another key does not accept it.
        let other = MediaLinks::new(&MediaConfig::default(), "http://x");
        assert_eq!(other.verify(&m, &p, &e, &s, 999), Err(LinkError::Invalid));
    }

    #[test]
    fn names_are_made_safe_for_a_path() {
        assert_eq!(path_name("a b/../c?.png"), "a_b_.._c_.png");
        assert_eq!(path_name(""), "part");
        assert_eq!(path_name(".."), "part");
    }
}
