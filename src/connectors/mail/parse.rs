//! Turning a received mail into gateway content, with `mail-parser`: RFC 2047 subjects and
//! charsets decoded, `text/plain` preferred, HTML turned into readable text, attachments kept
//! as parts; for phones, quoted replies and signatures are stripped and the text is trimmed.
//!
//! Never panics on bad input: a message mail-parser cannot read is treated as plain text.

use mail_parser::{MessageParser, MimeHeaders};

use crate::message::Part;

/// Longest header block kept for DSNs, in bytes.
pub const MAX_KEPT_HEADERS: usize = 16 * 1024;

/// What the gateway keeps of a received mail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMail {
    pub subject: Option<String>,
    /// The readable body (text/plain, else the HTML as text).
    pub body: String,
    pub parts: Vec<Part>,
    /// The raw header block (bounded), for DSNs.
    pub headers: String,
}

/// Parses `raw` (the message as received, CRLF line ends).
pub fn parse(raw: &[u8]) -> ParsedMail {
    let headers = header_block(raw);
    let Some(msg) = MessageParser::default().parse(raw) else {
        return ParsedMail {
            subject: None,
            body: String::from_utf8_lossy(raw).into_owned(),
            parts: Vec::new(),
            headers,
        };
    };
    let subject = msg
        .subject()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let body = msg
        .body_text(0)
        .map(|b| b.replace("\r\n", "\n"))
        .unwrap_or_default();
    let mut parts = Vec::new();
    for att in msg.attachments() {
        let content_type = att
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let bytes = if att.is_message() {
            // An attached mail: keep it whole, as it was received.
            let (start, end) = (att.raw_header_offset() as usize, att.offset_end as usize);
            raw.get(start..end).unwrap_or_default().to_vec()
        } else {
            att.contents().to_vec()
        };
        parts.push(Part {
            content_type,
            name: att.attachment_name().map(str::to_string),
            bytes,
        });
    }
    ParsedMail {
        subject,
        body,
        parts,
        headers,
    }
}

/// The header block of `raw` (up to the first empty line), cut at [`MAX_KEPT_HEADERS`] on a
/// line boundary.
fn header_block(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(raw.len());
    let mut block = &raw[..end];
    if block.len() > MAX_KEPT_HEADERS {
        block = &block[..MAX_KEPT_HEADERS];
        if let Some(p) = block.iter().rposition(|&b| b == b'\n') {
            block = &block[..=p];
        }
    }
    String::from_utf8_lossy(block).into_owned()
}

/// The body without what a phone does not need: quoted lines (`> …`), the "On … wrote:"
/// line before them, a signature (after `-- `), and runs of blank lines.
pub fn strip_for_sms(body: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for line in body.lines() {
        if line == "-- " || line == "--" {
            break;
        }
        if line.trim_start().starts_with('>') {
            // "On Mon, Bob wrote:" introduces the quote: drop it with the quote.
            if lines
                .last()
                .is_some_and(|l| l.trim_end().ends_with("wrote:"))
            {
                lines.pop();
            }
            continue;
        }
        lines.push(line.trim_end());
    }
    let mut out = String::new();
    let mut blank = false;
    for l in lines {
        if l.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(l);
    }
    out
}

/// The SMS text of a mail: subject, then the stripped body, trimmed to `max_chars`
/// characters (an ellipsis marks a cut).
pub fn sms_text(mail: &ParsedMail, max_chars: usize, note: Option<&str>) -> String {
    let body = strip_for_sms(&mail.body);
    let mut text = match (&mail.subject, body.is_empty()) {
        (Some(s), true) => s.clone(),
        (Some(s), false) if body.starts_with(s.as_str()) => body,
        (Some(s), false) => format!("{s}: {body}"),
        (None, _) => body,
    };
    if let Some(note) = note {
        text.push_str(note);
    }
    trim_chars(&text, max_chars)
}

fn trim_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2047_subject_and_8bit_body() {
        let raw = "From: a@example.com\r\nSubject: =?UTF-8?B?5L2g5aW9IEdyw7zDn2U=?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nBody — ünïcödé\r\n".as_bytes();
        let m = parse(raw);
        assert_eq!(m.subject.as_deref(), Some("你好 Grüße"));
        assert_eq!(m.body.trim_end(), "Body — ünïcödé");
        assert!(m.headers.starts_with("From: a@example.com\r\n"));
        assert!(m.headers.ends_with("\r\n") && !m.headers.contains("Body"));
    }

    #[test]
    fn html_only_becomes_text_and_attachments_are_kept() {
        let raw = b"From: a@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Caf=E9 <b>at 8</b></p>\r\n--XX\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--XX--\r\n";
        let m = parse(raw);
        assert!(m.body.contains("Café at 8"), "{:?}", m.body);
        assert!(!m.body.contains('<'));
        assert_eq!(m.parts.len(), 1);
        assert_eq!(m.parts[0].content_type, "image/png");
        assert_eq!(m.parts[0].name.as_deref(), Some("a.png"));
        assert_eq!(m.parts[0].bytes, b"hello");
    }

    #[test]
    fn quotes_and_signatures_are_stripped_for_sms() {
        let body =
            "Yes, at 8.\n\nOn Mon, Bob wrote:\n> are you coming?\n> bring wine\n\n-- \nAlice\nCEO";
        assert_eq!(strip_for_sms(body), "Yes, at 8.");
        let m = ParsedMail {
            subject: Some("Dinner".into()),
            body: body.into(),
            ..ParsedMail::default()
        };
        assert_eq!(sms_text(&m, 480, None), "Dinner: Yes, at 8.");
        assert_eq!(sms_text(&m, 8, None), "Dinner:…");
        assert_eq!(
            sms_text(&m, 480, Some(" [1 attachment]")),
            "Dinner: Yes, at 8. [1 attachment]"
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"\xff\xfe\r\n\r\n",
            b"Subject: =?x?Q?",
            b"\r\n\r\n\r\n",
        ] {
            let _ = parse(raw);
        }
    }
}
