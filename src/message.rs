//! The data model: envelopes, recipients, content, states and ids.
//!
//! Ids are time-ordered 64-bit values (milliseconds since 2024-01-01, node id, sequence),
//! unique across nodes that have distinct node ids, written as 16 lower-case hex digits so
//! that text order is time order. A recipient is named by its message id and its index:
//! `RecipientId`, written as 20 hex digits. The correlator sent to the SDP is not derived
//! from it: each phone recipient gets a random one (`new_correlator`).

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::address::{Address, Channel};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) const EPOCH_2024_MS: i64 = 1_704_067_200_000;

/// Generates time-ordered ids: 41 bits of milliseconds since 2024, 10 bits of node id,
/// 12 bits of sequence (4,096 ids per millisecond; more borrow from the next millisecond).
pub struct IdGen {
    node: u64,
    state: Mutex<(i64, u64)>,
}

impl IdGen {
    pub fn new(node: u16) -> IdGen {
        IdGen {
            node: u64::from(node & 0x3ff),
            state: Mutex::new((0, 0)),
        }
    }

    pub fn next(&self) -> MsgId {
        let now = now_ms() - EPOCH_2024_MS;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, seq) = *st;
        let (ms, seq) = if now > last {
            (now, 0)
        } else if seq < 0xfff {
            (last, seq + 1)
        } else {
            (last + 1, 0)
        };
        *st = (ms, seq);
        MsgId(((ms as u64) << 22) | (self.node << 12) | seq)
    }
}

/// A message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(pub u64);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl MsgId {
    pub fn parse(s: &str) -> Option<MsgId> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(MsgId)
    }
}

/// One recipient of one message; the SDP correlator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecipientId {
    pub msg: MsgId,
    pub idx: u32,
}

impl fmt::Display for RecipientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:04x}", self.msg, self.idx)
    }
}

impl RecipientId {
    pub fn parse(s: &str) -> Option<RecipientId> {
        if s.len() != 20 || !s.is_ascii() {
            return None;
        }
        let msg = MsgId::parse(&s[..16])?;
        let idx = u32::from_str_radix(&s[16..], 16).ok()?;
        Some(RecipientId { msg, idx })
    }
}

/// A recipient's state. Only `queued`, `retry`, `held` and the final states are written to
/// the store; `authorized`, `processed` and `sending` are passed through in memory (a crash
/// in them re-runs the stages from `queued`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Authorized,
    Processed,
    Sending,
    /// Waiting in the store for its next attempt.
    Retry,
    /// Waiting in the store because no sink serves its channel.
    Held,
    Sent,
    Delivered,
    Failed,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Authorized => "authorized",
            State::Processed => "processed",
            State::Sending => "sending",
            State::Retry => "retry",
            State::Held => "held",
            State::Sent => "sent",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "queued" => State::Queued,
            "authorized" => State::Authorized,
            "processed" => State::Processed,
            "sending" => State::Sending,
            "retry" => State::Retry,
            "held" => State::Held,
            "sent" => State::Sent,
            "delivered" => State::Delivered,
            "failed" => State::Failed,
            "expired" => State::Expired,
            _ => return None,
        })
    }

    /// Delivered, failed and expired never change again.
    pub fn is_final(self) -> bool {
        matches!(self, State::Delivered | State::Failed | State::Expired)
    }

    /// Still to be sent (the store re-injects these).
    pub fn is_unsent(self) -> bool {
        matches!(
            self,
            State::Queued
                | State::Authorized
                | State::Processed
                | State::Sending
                | State::Retry
                | State::Held
        )
    }
}

/// An attachment or media part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub content_type: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Base64 in JSON, raw in memory.
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
}

/// A status report about one recipient of an earlier message, carried back to its origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBody {
    /// The message the report is about.
    pub message_id: String,
    pub client_ref: Option<String>,
    /// The recipient the report is about.
    pub recipient: String,
    /// The recipient's state after the report (`delivered`, `failed`, `expired`, `sent`).
    pub state: State,
    /// The network's own word for it (`DeliveredToTerminal`, …) or the dispatch error.
    pub detail: Option<String>,
    pub at_ms: i64,
}

/// What a message carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    #[serde(default)]
    pub text: String,
    /// A subject line, where the origin gave one apart from the text (a received MMS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportBody>,
    /// What a mail origin's delivery status notifications need (RFC 3461 parameters, the
    /// original headers); only on messages received over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailMeta>,
    /// What a registered app pushed (the app platform), beside the readable `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppMessage>,
    /// A business card (see `cards`); `text` and `parts` hold its readable form and vCard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<crate::cards::Card>,
}

/// An app message: the record the app platform keeps in the target users' message stacks
/// and carries to each of them. Its id is the envelope's id (milliseconds and a sequence:
/// unique, and increasing for every user).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMessage {
    /// The appid.
    pub app: String,
    /// The app's name, as shown to people.
    pub name: String,
    pub kind: AppKind,
    pub mode: AppMode,
    /// The app's payload: a well-formed XML element (checked when pushed).
    pub content: String,
    /// The user ids whose message stacks keep it.
    #[serde(default)]
    pub users: Vec<String>,
    /// How many app messages each of those stacks keeps (`[apps] stack_size` when pushed).
    #[serde(default)]
    pub keep: u32,
    /// The user who recommended the app (kind `recommendation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What an app message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Content the app pushed (or the platform pulled from it).
    Push,
    /// A user recommending the app to a friend.
    Recommendation,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Push => "push",
            AppKind::Recommendation => "recommendation",
        }
    }
}

/// How the receiving client shows an app message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppMode {
    Popup,
    Tip,
    Silent,
}

impl AppMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AppMode::Popup => "popup",
            AppMode::Tip => "tip",
            AppMode::Silent => "silent",
        }
    }
}

/// The SMTP envelope parameters of a received mail, kept for its DSNs (RFC 3461).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailMeta {
    /// `ENVID`, returned as `Original-Envelope-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// `RET=FULL` (else headers only).
    #[serde(default)]
    pub ret_full: bool,
    /// Per recipient (by index): what the sender asked to hear about.
    #[serde(default)]
    pub rcpts: Vec<MailRcpt>,
    /// The original header block, attached to DSNs (bounded at receive).
    #[serde(default)]
    pub headers: String,
    /// The message had attachments that an SMS recipient does not get.
    #[serde(default)]
    pub multimedia: bool,
    /// When a `delayed` DSN is due for recipients still unsent (ms); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_report_at: Option<i64>,
    /// The virus and spam checks ran before the mail was accepted (SMTP pre-queue): the
    /// process stage does not run them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_checked: bool,
}

/// One recipient's DSN request: `NOTIFY` and `ORCPT`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRcpt {
    /// As given in `RCPT TO`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    pub notify_success: bool,
    pub notify_failure: bool,
    pub notify_delay: bool,
}

/// One recipient of an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub idx: u32,
    pub address: Address,
    pub state: State,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
    /// How the text went to a phone (encoding, SMS parts), once dispatched as SMS.
    pub sms: Option<SmsInfo>,
    /// The SDP correlator of a phone recipient: 128 random bits in hex, so a receipt
    /// cannot be made up for it. `None` for other channels (and rows stored before it).
    pub correlator: Option<String>,
}

/// A new, unguessable SDP correlator (128 bits from the thread's CSPRNG, in hex).
pub fn new_correlator() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

impl Recipient {
    pub fn new(idx: u32, address: Address) -> Recipient {
        let correlator = (address.channel() == Channel::Sms).then(new_correlator);
        Recipient {
            correlator,
            idx,
            address,
            state: State::Queued,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            remote_id: None,
            sms: None,
        }
    }

    pub fn channel(&self) -> Channel {
        self.address.channel()
    }
}

/// What kind of traffic an envelope is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A message from an origin to its recipients.
    Message,
    /// A status report sent back to an origin.
    Report,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Report => "report",
        }
    }
    pub fn parse(s: &str) -> Kind {
        if s == "report" {
            Kind::Report
        } else {
            Kind::Message
        }
    }
}

/// A message and its recipients, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: MsgId,
    pub kind: Kind,
    pub origin: Address,
    /// The API client (or connector) that submitted it.
    pub client: String,
    pub client_ref: Option<String>,
    /// Where status reports about this message go, in the origin's own form: an HTTP
    /// callback URL (API), the mail sender (DSN), the IM user (XMPP receipt). `None`: the
    /// origin asked for no reports.
    pub report_to: Option<Address>,
    pub recipients: Vec<Recipient>,
    pub content: Content,
    pub created_at: i64,
    pub expires_at: i64,
    /// Why the envelope has no deliverable recipient (an unroutable MO), if so.
    pub note: Option<String>,
    /// When a member speaks as a group (the origin is then `group:…`): the member.
    pub speaker: Option<Address>,
}

impl Envelope {
    pub fn recipient_id(&self, idx: u32) -> RecipientId {
        RecipientId { msg: self.id, idx }
    }

    /// The correlator sent to the SDP for recipient `idx` (its random one; the recipient id
    /// only for recipients stored before correlators were random).
    pub fn correlator(&self, idx: u32) -> String {
        self.recipient(idx)
            .and_then(|r| r.correlator.clone())
            .unwrap_or_else(|| self.recipient_id(idx).to_string())
    }

    pub fn recipient(&self, idx: u32) -> Option<&Recipient> {
        self.recipients.iter().find(|r| r.idx == idx)
    }
}

/// A status report as received and stored against a recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub recipient: u32,
    pub status: String,
    pub state: State,
    pub received_at: i64,
}

/// What is recorded per recipient about an SMS: its encoding and how many parts it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmsInfo {
    pub encoding: Encoding,
    pub parts: u32,
}

/// How a text travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// The inverse of [`Encoding::as_str`].
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "gsm7" => Some(Encoding::Gsm7),
            "ucs2" => Some(Encoding::Ucs2),
            _ => None,
        }
    }

    /// Units in a single (unconcatenated) message.
    pub fn single_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units in each part of a concatenated message.
    pub fn part_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

pub mod b64 {
    //! Standard base64 for parts in JSON.
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(s.len() / 4 * 3);
        let mut acc = 0u32;
        let mut bits = 0;
        for c in s.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' | b'\r' | b'\n' => continue,
                _ => return None,
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }

    #[cfg(test)]
    #[test]
    fn round_trip() {
        for data in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0u8, 255, 128, 7, 9],
        ] {
            assert_eq!(decode(&encode(data)).unwrap(), data);
        }
        assert_eq!(encode(b"hello"), "aGVsbG8=");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ordered_and_unique() {
        let g = IdGen::new(3);
        let ids: Vec<MsgId> = (0..20_000).map(|_| g.next()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_string() < w[1].to_string());
        }
    }

    #[test]
    fn recipient_ids_round_trip() {
        let id = RecipientId {
            msg: MsgId(0x0123_4567_89ab_cdef),
            idx: 7,
        };
        let s = id.to_string();
        assert_eq!(s.len(), 20);
        assert_eq!(RecipientId::parse(&s), Some(id));
        assert_eq!(RecipientId::parse("nope"), None);
        assert_eq!(MsgId::parse(&id.msg.to_string()), Some(id.msg));
    }
}
