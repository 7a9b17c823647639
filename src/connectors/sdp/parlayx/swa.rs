//! SOAP with attachments (`multipart/related`) for Parlay X MMS, both ways: the SMIL
//! presentation, building a `sendMessage` body and reading a received one.
//!
//! Guarantees: the body built by [`build_related`] is the SOAP envelope (root part, `start`
//! parameter), a generated SMIL part, the text (if any) and every media part, each with a
//! `Content-ID` the SMIL refers to; media are base64-encoded, so no boundary can occur in
//! them. The parser ([`parse_related`]) takes at most [`MAX_PARTS`] parts and refuses a body
//! without a boundary.

use crate::message::{Part, b64};

/// Most parts read from one `multipart/related` body.
pub const MAX_PARTS: usize = 64;

/// The SMIL presentation: one slide per media part, the text on the first.
pub fn smil(has_text: bool, parts: &[Part]) -> String {
    let mut s = String::from(
        "<smil><head><layout><root-layout width=\"320\" height=\"480\"/>\
         <region id=\"Image\" top=\"0\" left=\"0\" width=\"100%\" height=\"70%\"/>\
         <region id=\"Text\" top=\"70%\" left=\"0\" width=\"100%\" height=\"30%\"/>\
         </layout></head><body>",
    );
    let slides = parts.len().max(1);
    for i in 0..slides {
        s.push_str("<par dur=\"5000ms\">");
        if let Some(p) = parts.get(i) {
            let t = p.content_type.to_ascii_lowercase();
            let (tag, region) = if t.starts_with("image/") {
                ("img", " region=\"Image\"")
            } else if t.starts_with("video/") {
                ("video", " region=\"Image\"")
            } else {
                ("audio", "")
            };
            s.push_str(&format!("<{tag} src=\"cid:{}\"{region}/>", part_cid(i)));
        }
        if i == 0 && has_text {
            s.push_str("<text src=\"cid:text\" region=\"Text\"/>");
        }
        s.push_str("</par>");
    }
    s.push_str("</body></smil>");
    s
}

fn part_cid(i: usize) -> String {
    format!("part{}", i + 1)
}

/// A file name safe in a MIME parameter.
fn param(s: &str) -> String {
    s.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A content type safe in a header (the part's own, if it is a plain `type/subtype`).
fn header_type(ct: &str) -> String {
    let ct = ct.split(';').next().unwrap_or("").trim();
    if !ct.is_empty()
        && ct.contains('/')
        && ct
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '+' | '-'))
    {
        ct.to_string()
    } else {
        "application/octet-stream".into()
    }
}

/// Builds the SwA body: returns the HTTP `Content-Type` and the body.
pub fn build_related(soap: &str, text: &str, parts: &[Part], boundary: &str) -> (String, Vec<u8>) {
    let mut out = Vec::with_capacity(
        soap.len()
            + text.len() * 2
            + parts
                .iter()
                .map(|p| p.bytes.len() * 4 / 3 + 200)
                .sum::<usize>()
            + 2048,
    );
    let head = |out: &mut Vec<u8>, lines: &[String]| {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    };
    head(
        &mut out,
        &[
            "Content-Type: text/xml; charset=utf-8".into(),
            "Content-Transfer-Encoding: 8bit".into(),
            "Content-ID: <soap-envelope>".into(),
        ],
    );
    out.extend_from_slice(soap.as_bytes());
    out.extend_from_slice(b"\r\n");
    head(
        &mut out,
        &[
            "Content-Type: application/smil; charset=utf-8".into(),
            "Content-ID: <smil>".into(),
        ],
    );
    out.extend_from_slice(smil(!text.is_empty(), parts).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !text.is_empty() {
        head(
            &mut out,
            &[
                "Content-Type: text/plain; charset=utf-8".into(),
                "Content-Transfer-Encoding: base64".into(),
                "Content-ID: <text>".into(),
            ],
        );
        push_base64(&mut out, text.as_bytes());
    }
    for (i, p) in parts.iter().enumerate() {
        let mut lines = vec![
            format!("Content-Type: {}", header_type(&p.content_type)),
            "Content-Transfer-Encoding: base64".into(),
            format!("Content-ID: <{}>", part_cid(i)),
        ];
        if let Some(n) = &p.name {
            lines.push(format!(
                "Content-Disposition: attachment; filename=\"{}\"",
                param(n)
            ));
        }
        head(&mut out, &lines);
        push_base64(&mut out, &p.bytes);
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!(
        "multipart/related; type=\"text/xml\"; start=\"<soap-envelope>\"; boundary=\"{boundary}\""
    );
    (ct, out)
}

fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let enc = b64::encode(bytes);
    for line in enc.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
}

/// One part of a `multipart/related` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelatedPart {
    pub content_type: String,
    /// Without the angle brackets.
    pub content_id: Option<String>,
    pub name: Option<String>,
    /// Decoded.
    pub bytes: Vec<u8>,
}

/// Parses a SwA body given its HTTP `Content-Type`; the first part is the root (SOAP).
pub fn parse_related(content_type: &str, body: &[u8]) -> Result<Vec<RelatedPart>, String> {
    use mail_parser::{MessageParser, MimeHeaders, PartType};
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("multipart/related")
    {
        return Err(format!("not multipart/related: {:?}", param(content_type)));
    }
    if !content_type.to_ascii_lowercase().contains("boundary=") {
        return Err("multipart/related without a boundary".into());
    }
    let clean: String = content_type
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect();
    let mut raw = format!("MIME-Version: 1.0\r\nContent-Type: {clean}\r\n\r\n").into_bytes();
    raw.extend_from_slice(body);
    let msg = MessageParser::default()
        .parse(&raw)
        .ok_or("unreadable multipart/related body")?;
    let mut out = Vec::new();
    for p in msg.parts.iter() {
        if matches!(p.body, PartType::Multipart(_)) {
            continue;
        }
        if out.len() >= MAX_PARTS {
            return Err(format!("more than {MAX_PARTS} parts"));
        }
        let content_type = p
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "text/plain".into());
        out.push(RelatedPart {
            content_type,
            content_id: p
                .content_id()
                .map(|c| c.trim().trim_matches(['<', '>']).to_string()),
            name: p.attachment_name().map(str::to_string),
            bytes: p.contents().to_vec(),
        });
    }
    if out.is_empty() {
        return Err("no parts".into());
    }
    Ok(out)
}

/// A received MMS's content: the text and the parts worth passing on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub text: String,
    pub parts: Vec<Part>,
}

/// Turns the parts of a received MMS (after the SOAP root) into a message's content:
/// the SMIL presentation is left out (it only lays out slides for a handset); `text/plain`
/// parts become the text, unless the notification gave it (`given`), when only those that
/// say something else are added; every other part is kept, named (`part2.jpg`) when it
/// came without a name.
pub fn received(given: Option<&str>, parts: Vec<RelatedPart>) -> Received {
    let mut text = given.map(str::to_string).unwrap_or_default();
    let mut out = Vec::new();
    for (i, p) in parts.into_iter().enumerate() {
        let ct = p.content_type.to_ascii_lowercase();
        if ct == "application/smil" {
            continue;
        }
        if ct == "text/plain" && p.name.is_none() {
            let t = String::from_utf8_lossy(&p.bytes);
            let t = t.trim();
            if !t.is_empty() && t != text.trim() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            continue;
        }
        let name = p
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("part{}.{}", i + 1, extension(&ct)));
        out.push(Part {
            content_type: header_type(&p.content_type),
            name: Some(name),
            bytes: p.bytes,
        });
    }
    Received { text, parts: out }
}

/// A file extension for a media type (for parts that came without a name).
fn extension(ct: &str) -> &'static str {
    match ct {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "audio/amr" => "amr",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "video/3gpp" => "3gp",
        "video/mp4" => "mp4",
        "text/plain" => "txt",
        "text/x-vcard" | "text/vcard" => "vcf",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_content_keeps_media_and_text_and_leaves_out_smil() {
        let rp = |ct: &str, name: Option<&str>, bytes: &[u8]| RelatedPart {
            content_type: ct.into(),
            content_id: None,
            name: name.map(str::to_string),
            bytes: bytes.to_vec(),
        };
        let parts = vec![
            rp("application/smil", None, b"<smil/>"),
            rp("text/plain", None, b"hello there\r\n"),
            rp("image/jpeg", None, b"\xff\xd8jpeg"),
            rp("audio/amr", Some("voice.amr"), b"#!AMR"),
        ];
        let r = received(None, parts.clone());
        assert_eq!(r.text, "hello there");
        assert_eq!(r.parts.len(), 2);
        assert_eq!(r.parts[0].name.as_deref(), Some("part3.jpg"));
        assert_eq!(r.parts[0].bytes, b"\xff\xd8jpeg");
        assert_eq!(r.parts[1].name.as_deref(), Some("voice.amr"));
        // The notification's own text is not repeated.
        assert_eq!(
            received(Some("hello there"), parts.clone()).text,
            "hello there"
        );
        assert_eq!(
            received(Some("subject line"), parts).text,
            "subject line\nhello there"
        );
    }

    fn img(name: &str, n: usize) -> Part {
        Part {
            content_type: "image/png".into(),
            name: Some(name.into()),
            bytes: (0..n).map(|i| (i % 251) as u8).collect(),
        }
    }

    #[test]
    fn related_bodies_round_trip_with_smil_and_content_ids() {
        let parts = vec![
            img("a.png", 3000),
            Part {
                content_type: "audio/amr".into(),
                name: None,
                bytes: b"#!AMR\n--boundary-like--\r\n".to_vec(),
            },
        ];
        let soap = "<soapenv:Envelope/>";
        let (ct, body) = build_related(soap, "hello ünïcode", &parts, "sb-1234");
        let got = parse_related(&ct, &body).unwrap();
        assert_eq!(got[0].content_type, "text/xml");
        assert_eq!(got[0].content_id.as_deref(), Some("soap-envelope"));
        assert_eq!(String::from_utf8_lossy(&got[0].bytes).trim(), soap);
        assert_eq!(got[1].content_type, "application/smil");
        let smil = String::from_utf8_lossy(&got[1].bytes).into_owned();
        assert!(smil.contains("<img src=\"cid:part1\""), "{smil}");
        assert!(smil.contains("<audio src=\"cid:part2\""), "{smil}");
        assert!(smil.contains("cid:text"), "{smil}");
        assert_eq!(got[2].bytes, "hello ünïcode".as_bytes());
        assert_eq!(got[3].bytes, parts[0].bytes);
        assert_eq!(got[3].content_id.as_deref(), Some("part1"));
        assert_eq!(got[3].name.as_deref(), Some("a.png"));
        assert_eq!(got[4].bytes, parts[1].bytes);
        assert!(parse_related("text/xml", &body).is_err());
        assert!(parse_related("multipart/related", &body).is_err());
    }
}
