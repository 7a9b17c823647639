//! Phone numbers: E.164 as users write it and numbers as the SDP writes them.

/// E.164: `+`, then 8 to 15 digits, the first not 0. With `require_plus == false` (numbers
/// coming from the SDP, `tel:8613800000000`) the `+` may be missing. Visual separators
/// (space, `-`, `.`, parentheses) are removed.
pub fn parse_e164(s: &str, require_plus: bool) -> Option<String> {
    let s = s.trim();
    let (plus, digits) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if require_plus && !plus {
        return None;
    }
    let mut out = String::with_capacity(16);
    out.push('+');
    for c in digits.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let n = out.len() - 1;
    if !(8..=15).contains(&n) || out.as_bytes()[1] == b'0' {
        return None;
    }
    Some(out)
}

/// A number as the SDP writes it (`tel:8613800000000`, `tel:+86…`, `8613…`) to E.164.
pub fn parse_sdp_number(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix("tel:").unwrap_or(s);
    parse_e164(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_numbers_get_their_plus() {
        assert_eq!(
            parse_sdp_number("tel:8613800000001").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(
            parse_sdp_number("tel:+8613800000001").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(parse_sdp_number("tel:abc"), None);
    }
}
