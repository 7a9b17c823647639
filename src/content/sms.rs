//! SMS text encoding and segmentation (3GPP TS 23.038 / 23.040).
//!
//! A text is sent in the GSM 7-bit default alphabet when every character is in it or in its
//! extension table (the extension characters `^ { } \ [ ~ ] | €` and form feed take two
//! septets: ESC + code), otherwise in UCS-2 (UTF-16 code units; characters outside the
//! BMP, such as most emoji, take two units).
//!
//! Limits: one message holds 160 septets / 70 units; a concatenated message's parts hold
//! 153 / 67 (the rest is the user-data header). Guarantees: a part boundary never falls
//! inside an escape sequence or a surrogate pair, and joining the parts gives the text back.

use serde::{Deserialize, Serialize};

pub use crate::message::Encoding;

/// The GSM 03.38 default alphabet, in code order (0x00..=0x7F). ESC (0x1B) is a placeholder.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: characters sent as ESC + code.
const EXTENSION: [(char, u8); 10] = [
    ('\u{0c}', 0x0a),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2f),
    ('[', 0x3c),
    ('~', 0x3d),
    (']', 0x3e),
    ('|', 0x40),
    ('€', 0x65),
];

/// Septets a character takes in GSM 7-bit, or `None` if it has no GSM encoding.
pub fn gsm_septets(c: char) -> Option<usize> {
    if c != '\u{1b}' && gsm_code(c).is_some() {
        Some(1)
    } else if EXTENSION.iter().any(|(e, _)| *e == c) {
        Some(2)
    } else {
        None
    }
}

fn gsm_code(c: char) -> Option<u8> {
    // ASCII letters and digits map to themselves; look up the rest.
    if c.is_ascii_alphanumeric() {
        return Some(c as u8);
    }
    BASIC.iter().position(|b| *b == c).map(|p| p as u8)
}

/// Packs a GSM text into septet codes (ESC + code for the extension table).
pub fn gsm_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c != '\u{1b}'
            && let Some(code) = gsm_code(c)
        {
            out.push(code);
        } else if let Some((_, code)) = EXTENSION.iter().find(|(e, _)| *e == c) {
            out.push(0x1b);
            out.push(*code);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The encoding a text needs.
pub fn encoding_for(text: &str) -> Encoding {
    if text.chars().all(|c| gsm_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// Units a character takes in an encoding (septets or UTF-16 code units).
fn units(enc: Encoding, c: char) -> usize {
    match enc {
        Encoding::Gsm7 => gsm_septets(c).unwrap_or(2),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// A text cut into SMS parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Units in the whole text.
    pub units: usize,
    /// The parts' texts; one part when the text fits a single message.
    pub parts: Vec<String>,
}

/// Cuts `text` into parts: one if it fits a single message, else parts of at most 153
/// septets / 67 units, each boundary between whole characters.
pub fn segment(text: &str) -> Segments {
    let encoding = encoding_for(text);
    let total: usize = text.chars().map(|c| units(encoding, c)).sum();
    if total <= encoding.single_limit() {
        return Segments {
            encoding,
            units: total,
            parts: vec![text.to_string()],
        };
    }
    let limit = encoding.part_limit();
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut used = 0;
    for c in text.chars() {
        let u = units(encoding, c);
        if used + u > limit {
            parts.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(c);
        used += u;
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    Segments {
        encoding,
        units: total,
        parts,
    }
}

/// What to do when a text needs more parts than the configured maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Send every part anyway.
    Split,
    /// Keep the first parts, the last one ending with a marker.
    #[default]
    Truncate,
    /// Refuse the message with a clear error.
    Refuse,
    /// Send it as one multimedia message instead.
    Mms,
}

/// The result of applying the parts policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send these parts as SMS.
    Sms(Segments),
    /// Send the text as an MMS.
    Mms,
}

/// Why a text cannot go as SMS under the policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the text needs {needed} SMS parts ({units} {unit}); at most {max} are allowed")]
pub struct TooLong {
    pub needed: usize,
    pub max: usize,
    pub units: usize,
    pub unit: &'static str,
}

/// The truncation marker, in the text's own alphabet.
fn marker(enc: Encoding) -> &'static str {
    match enc {
        Encoding::Gsm7 => "...",
        Encoding::Ucs2 => "…",
    }
}

/// Applies the maximum number of parts.
pub fn plan(text: &str, max_parts: usize, policy: OverflowPolicy) -> Result<Plan, TooLong> {
    let seg = segment(text);
    let max_parts = max_parts.max(1);
    if seg.parts.len() <= max_parts {
        return Ok(Plan::Sms(seg));
    }
    match policy {
        OverflowPolicy::Split => Ok(Plan::Sms(seg)),
        OverflowPolicy::Mms => Ok(Plan::Mms),
        OverflowPolicy::Refuse => Err(TooLong {
            needed: seg.parts.len(),
            max: max_parts,
            units: seg.units,
            unit: match seg.encoding {
                Encoding::Gsm7 => "septets",
                Encoding::Ucs2 => "UCS-2 units",
            },
        }),
        OverflowPolicy::Truncate => {
            let enc = seg.encoding;
            let mark = marker(enc);
            let mark_units: usize = mark.chars().map(|c| units(enc, c)).sum();
            let used = |p: &str| p.chars().map(|c| units(enc, c)).sum::<usize>();
            // Keep whole parts and shorten the last kept one to make room for the marker,
            // so the result never needs more parts than allowed.
            let mut parts: Vec<String> = if max_parts == 1 {
                let mut first = String::new();
                for c in text.chars() {
                    if used(&first) + units(enc, c) > enc.single_limit() {
                        break;
                    }
                    first.push(c);
                }
                vec![first]
            } else {
                seg.parts.into_iter().take(max_parts).collect()
            };
            let limit = if max_parts == 1 {
                enc.single_limit()
            } else {
                enc.part_limit()
            };
            if let Some(last) = parts.last_mut() {
                while used(last) + mark_units > limit {
                    last.pop();
                }
                last.push_str(mark);
            }
            let units = parts.iter().map(|p| used(p)).sum();
            Ok(Plan::Sms(Segments {
                encoding: enc,
                units,
                parts,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_limits() {
        let t160 = "a".repeat(160);
        let s = segment(&t160);
        assert_eq!(
            (s.encoding, s.parts.len(), s.units),
            (Encoding::Gsm7, 1, 160)
        );
        let s = segment(&"a".repeat(161));
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].len(), 153);
        assert_eq!(segment(&"a".repeat(306)).parts.len(), 2);
        assert_eq!(segment(&"a".repeat(307)).parts.len(), 3);
    }

    #[test]
    fn extension_characters_count_double_and_stay_whole() {
        // 159 + one € (2 septets) = 161 septets: two parts.
        let t = format!("{}€", "a".repeat(159));
        let s = segment(&t);
        assert_eq!(
            (s.encoding, s.units, s.parts.len()),
            (Encoding::Gsm7, 161, 2)
        );
        // 158 + € = 160: one part.
        assert_eq!(segment(&format!("{}€", "a".repeat(158))).parts.len(), 1);
        // A € right on the 153rd septet moves whole to the next part.
        let t = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let s = segment(&t);
        assert_eq!(s.parts[0], "a".repeat(152));
        assert!(s.parts[1].starts_with('€'));
        assert_eq!(
            gsm_encode("{€}").unwrap(),
            vec![0x1b, 0x28, 0x1b, 0x65, 0x1b, 0x29]
        );
    }

    #[test]
    fn ucs2_limits_and_surrogates() {
        let zh70 = "中".repeat(70);
        let s = segment(&zh70);
        assert_eq!((s.encoding, s.parts.len()), (Encoding::Ucs2, 1));
        let s = segment(&"中".repeat(71));
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].chars().count(), 67);
        // 😀 is two UTF-16 units: 35 emoji fit in one message, 36 need two parts, and a
        // part never ends in the middle of one.
        assert_eq!(segment(&"😀".repeat(35)).parts.len(), 1);
        let s = segment(&"😀".repeat(36));
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].chars().count(), 33);
        // One non-GSM character makes the whole text UCS-2.
        assert_eq!(encoding_for("hello ç"), Encoding::Ucs2);
        assert_eq!(encoding_for("hello Ç"), Encoding::Gsm7);
    }

    #[test]
    fn policies() {
        let long = "x".repeat(153 * 3 + 1);
        assert!(
            matches!(plan(&long, 3, OverflowPolicy::Split), Ok(Plan::Sms(s)) if s.parts.len() == 4)
        );
        assert_eq!(plan(&long, 3, OverflowPolicy::Mms), Ok(Plan::Mms));
        let err = plan(&long, 3, OverflowPolicy::Refuse).unwrap_err();
        assert_eq!((err.needed, err.max), (4, 3));
        assert!(err.to_string().contains("4 SMS parts"), "{err}");
        let Ok(Plan::Sms(s)) = plan(&long, 3, OverflowPolicy::Truncate) else {
            panic!("truncate")
        };
        assert_eq!(s.parts.len(), 3);
        assert!(s.parts[2].ends_with("..."));
        let Ok(Plan::Sms(s)) = plan(&"中".repeat(200), 1, OverflowPolicy::Truncate) else {
            panic!("truncate")
        };
        assert_eq!(s.parts.len(), 1);
        assert!(s.parts[0].ends_with('…'));
        assert_eq!(s.units, 70);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            let gsm = prop::sample::select(vec!['a', 'Z', ' ', '@', '€', '{', '^', '\n', 'é', 'Δ']);
            let any = prop::sample::select(vec!['a', '€', '中', '😀', 'ç', '\\', '|']);
            prop_oneof![
                prop::collection::vec(gsm, 0..700).prop_map(|v| v.into_iter().collect()),
                prop::collection::vec(any, 0..400).prop_map(|v| v.into_iter().collect()),
                ".{0,300}",
            ]
        }

        proptest! {
            #[test]
            fn parts_join_back_and_respect_limits(t in text()) {
                let s = segment(&t);
                prop_assert_eq!(s.parts.concat(), t.clone());
                let limit = if s.parts.len() == 1 { s.encoding.single_limit() } else { s.encoding.part_limit() };
                for p in &s.parts {
                    let u: usize = p.chars().map(|c| units(s.encoding, c)).sum();
                    prop_assert!(u <= limit, "part of {} units over {}", u, limit);
                    // Each part is whole characters (Rust strings cannot hold half a
                    // surrogate pair), and a GSM part encodes on its own: no escape is split.
                    if s.encoding == Encoding::Gsm7 {
                        prop_assert!(gsm_encode(p).is_some());
                    }
                }
                if s.encoding == Encoding::Gsm7 {
                    prop_assert_eq!(gsm_encode(&t).map(|v| v.len()), Some(s.units));
                }
            }

            #[test]
            fn truncation_fits_the_maximum(t in text(), max in 1usize..4) {
                if let Ok(Plan::Sms(s)) = plan(&t, max, OverflowPolicy::Truncate) {
                    prop_assert!(s.parts.len() <= max);
                }
            }
        }
    }
}
