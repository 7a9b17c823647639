//! Content conversion: reshaping a message for the channel it goes to.
//!
//! The process stage first has every attachment scanned ([`scan`]) and the message checked
//! for spam ([`spam`]); then, for phones, media go as one MMS ([`mms`]) and text is shaped
//! by [`shape_sms`] (encoding, parts, the overflow policy). The shape travels with the
//! delivery and is recorded with its outcome. A message a member spoke as a group is shown
//! as from the group on every network ([`voice`]).

pub mod media;
pub mod mms;
pub mod scan;
pub mod sms;
pub mod spam;
pub mod voice;

use serde::{Deserialize, Serialize};

pub use crate::message::{Encoding, SmsInfo};
use sms::{OverflowPolicy, Plan};

/// The `[content]` section: how content is reshaped for its target.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentConfig {
    /// Messages whose virus scan and spam checks run at the same time (1-1024).
    pub check_concurrency: usize,
    /// Text to phones (`[content.sms]`).
    pub sms: SmsConfig,
    /// Virus scanning of attachments and media with clamd (`[content.scan]`).
    pub scan: scan::ScanConfig,
    /// Media to phones as MMS over Parlay X SendMessage (`[content.mms]`).
    pub mms: mms::MmsConfig,
    /// Spam checks: built-in rules and rspamd (`[content.spam]`).
    pub spam: spam::SpamConfig,
    /// Links to media parts served to IM users (`[content.media]`).
    pub media: media::MediaConfig,
}

/// The `[content.sms]` section: long texts to phones.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// Most SMS parts one text may take (1-255; a concatenated message has at most 255).
    pub max_parts: usize,
    /// What happens to a text that needs more parts: `split` (send them all anyway),
    /// `truncate` (keep `max_parts` parts, the last ending with a marker), `refuse`
    /// (a permanent failure, reported to the origin), `mms` (send it as one MMS; needs
    /// `content.mms.send_message_url`).
    pub overflow: OverflowPolicy,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            max_parts: 6,
            overflow: OverflowPolicy::Truncate,
        }
    }
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            check_concurrency: 16,
            sms: SmsConfig::default(),
            scan: scan::ScanConfig::default(),
            mms: mms::MmsConfig::default(),
            spam: spam::SpamConfig::default(),
            media: media::MediaConfig::default(),
        }
    }
}

impl ContentConfig {
    /// Every error, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(1..=1024).contains(&self.check_concurrency) {
            e.push("content.check_concurrency: must be 1-1024".into());
        }
        if !(1..=255).contains(&self.sms.max_parts) {
            e.push("content.sms.max_parts: must be 1-255".into());
        }
        if self.sms.overflow == OverflowPolicy::Mms && self.mms.send_message_url.is_empty() {
            e.push(
                "content.sms.overflow: \"mms\" needs content.mms.send_message_url (the SDP's \
                 MMS interface)"
                    .into(),
            );
        }
        e.extend(self.scan.validate());
        e.extend(self.mms.validate());
        e.extend(self.spam.validate());
        e.extend(self.media.validate());
        e
    }
}

/// How one text goes to a phone: the text as sent and its SMS shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsShape {
    /// The text the SDP receives (shortened under `truncate`).
    pub text: String,
    pub encoding: Encoding,
    /// SMS parts it takes.
    pub parts: u32,
}

impl SmsShape {
    pub fn info(&self) -> SmsInfo {
        SmsInfo {
            encoding: self.encoding,
            parts: self.parts,
        }
    }
}

/// Whether `text` is to go as MMS under the `mms` overflow policy.
pub fn long_text_to_mms(cfg: &SmsConfig, text: &str) -> bool {
    cfg.overflow == OverflowPolicy::Mms
        && matches!(sms::plan(text, cfg.max_parts, cfg.overflow), Ok(Plan::Mms))
}

/// Applies the `[content.sms]` policy to `text`. `Err` is a permanent refusal whose
/// message says why.
pub fn shape_sms(cfg: &SmsConfig, text: &str) -> Result<SmsShape, String> {
    match sms::plan(text, cfg.max_parts, cfg.overflow) {
        Ok(Plan::Sms(seg)) => Ok(SmsShape {
            parts: u32::try_from(seg.parts.len()).unwrap_or(u32::MAX),
            text: seg.parts.concat(),
            encoding: seg.encoding,
        }),
        // The process stage sends these as MMS; without an MMS interface (refused by
        // validation) the text is kept whole rather than lost.
        Ok(Plan::Mms) => {
            let seg = sms::segment(text);
            Ok(SmsShape {
                text: text.to_string(),
                encoding: seg.encoding,
                parts: u32::try_from(seg.parts.len()).unwrap_or(u32::MAX),
            })
        }
        Err(too_long) => Err(format!("message_too_long: {too_long}")),
    }
}
