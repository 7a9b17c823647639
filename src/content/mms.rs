//! Multimedia messages to phones: which messages go as MMS, the operator's size limit.
//! Building and reading the SOAP-with-attachments body is `connectors::sdp::parlayx::swa`.

use serde::{Deserialize, Serialize};

use crate::message::Part;

/// What happens to a message over the operator's size limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Leave out the largest media parts until it fits, and say so in the text.
    #[default]
    DropParts,
    /// Refuse the message (a permanent failure, reported to the origin).
    Refuse,
}

/// The `[content.mms]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MmsConfig {
    /// The SDP's Parlay X SendMessage endpoint (mms-v3_1). Empty: no MMS; media parts for
    /// phones are left out and the text goes as SMS.
    pub send_message_url: String,
    /// The operator's size limit for one MMS (text and media), in bytes.
    pub max_bytes: usize,
    /// Over the limit: `drop_parts` (largest media first, with a note in the text) or
    /// `refuse`.
    pub oversize: Oversize,
    /// The SDP's Parlay X ReceiveMessage endpoint, for fetching received MMS that the
    /// notification names by `messageIdentifier` (`getMessage`). Empty: only content sent
    /// with the notification is taken.
    pub receive_message_url: String,
    /// The largest received MMS fetched, in bytes (its parts as they travel, base64).
    pub max_receive_bytes: usize,
}

impl Default for MmsConfig {
    fn default() -> Self {
        MmsConfig {
            send_message_url: String::new(),
            max_bytes: 300 * 1024,
            oversize: Oversize::DropParts,
            receive_message_url: String::new(),
            max_receive_bytes: 2 * 1024 * 1024,
        }
    }
}

impl MmsConfig {
    /// Every error, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let u = &self.send_message_url;
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            e.push(format!(
                "content.mms.send_message_url: {u:?} is not an http(s) URL"
            ));
        }
        let u = &self.receive_message_url;
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            e.push(format!(
                "content.mms.receive_message_url: {u:?} is not an http(s) URL"
            ));
        }
        if self.max_receive_bytes < 64 * 1024 {
            e.push("content.mms.max_receive_bytes: must be at least 65536".into());
        }
        if self.max_bytes < 1024 {
            e.push("content.mms.max_bytes: must be at least 1024".into());
        }
        e
    }
}

/// Images, audio and video: what makes a message for a phone an MMS.
pub fn is_media(content_type: &str) -> bool {
    let t = content_type.trim().to_ascii_lowercase();
    t.starts_with("image/") || t.starts_with("audio/") || t.starts_with("video/")
}

/// Whether a part goes in an MMS: media, or a vCard (a business card).
pub fn is_mms_part(content_type: &str) -> bool {
    let t = content_type.trim().to_ascii_lowercase();
    is_media(&t) || t.starts_with("text/vcard") || t.starts_with("text/x-vcard")
}

/// An MMS ready to send: its text and media after the size policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmsPlan {
    pub text: String,
    pub parts: Vec<Part>,
}

/// Applies the size limit to `text` + the media among `parts`. `Err` is a refusal saying
/// why.
pub fn plan(cfg: &MmsConfig, text: &str, parts: &[Part]) -> Result<MmsPlan, String> {
    let mut media: Vec<Part> = parts
        .iter()
        .filter(|p| is_mms_part(&p.content_type))
        .cloned()
        .collect();
    let size = |text: &str, media: &[Part]| {
        text.len() + media.iter().map(|p| p.bytes.len()).sum::<usize>()
    };
    let total = size(text, &media);
    if total <= cfg.max_bytes {
        return Ok(MmsPlan {
            text: text.to_string(),
            parts: media,
        });
    }
    if cfg.oversize == Oversize::Refuse {
        return Err(format!(
            "message_too_large: the MMS is {total} bytes; the operator allows {}",
            cfg.max_bytes
        ));
    }
    let mut dropped = Vec::new();
    while size(text, &media) + 80 > cfg.max_bytes && !media.is_empty() {
        let (i, _) = media
            .iter()
            .enumerate()
            .max_by_key(|(_, p)| p.bytes.len())
            .unwrap_or((0, &media[0]));
        let p = media.remove(i);
        dropped.push(p.name.unwrap_or_else(|| p.content_type.clone()));
    }
    let note = format!(
        "[{} part(s) left out, over the {} byte limit: {}]",
        dropped.len(),
        cfg.max_bytes,
        dropped.join(", ")
    );
    let text = if text.is_empty() {
        note
    } else {
        format!("{text}\n{note}")
    };
    if size(&text, &media) > cfg.max_bytes {
        return Err(format!(
            "message_too_large: even the text alone is over the operator's {} byte limit",
            cfg.max_bytes
        ));
    }
    Ok(MmsPlan { text, parts: media })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, n: usize) -> Part {
        Part {
            content_type: "image/png".into(),
            name: Some(name.into()),
            bytes: (0..n).map(|i| (i % 251) as u8).collect(),
        }
    }

    #[test]
    fn the_size_limit_drops_the_largest_parts_or_refuses() {
        let cfg = MmsConfig {
            max_bytes: 10_000,
            ..MmsConfig::default()
        };
        let parts = vec![img("big.png", 9800), img("small.png", 500)];
        let p = plan(&cfg, "hi", &parts).unwrap();
        assert_eq!(p.parts.len(), 1);
        assert_eq!(p.parts[0].name.as_deref(), Some("small.png"));
        assert!(
            p.text.contains("big.png") && p.text.starts_with("hi\n"),
            "{}",
            p.text
        );
        let fits = plan(&cfg, "hi", &parts[1..]).unwrap();
        assert_eq!((fits.text.as_str(), fits.parts.len()), ("hi", 1));
        let refuse = MmsConfig {
            oversize: Oversize::Refuse,
            ..cfg
        };
        let e = plan(&refuse, "hi", &parts).unwrap_err();
        assert!(e.starts_with("message_too_large"), "{e}");
    }

    #[test]
    fn media_types() {
        assert!(is_media("image/jpeg"));
        assert!(is_media("Video/MP4"));
        assert!(is_media("audio/amr"));
        assert!(!is_media("application/pdf"));
        assert!(!is_media("text/plain"));
    }
}
