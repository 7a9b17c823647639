//! XEP-0106 escaping of JID nodes.

/// XEP-0106 escaping of a JID node: the characters a node may not contain (space, `"`, `&`,
/// `'`, `/`, `:`, `<`, `>`, `@`) become `\XX`, and so does a `\` that would otherwise start an
/// escape sequence.
pub fn jid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        match c {
            ' ' => out.push_str("\\20"),
            '"' => out.push_str("\\22"),
            '&' => out.push_str("\\26"),
            '\'' => out.push_str("\\27"),
            '/' => out.push_str("\\2f"),
            ':' => out.push_str("\\3a"),
            '<' => out.push_str("\\3c"),
            '>' => out.push_str("\\3e"),
            '@' => out.push_str("\\40"),
            '\\' if escape_code(&s[i + 1..]).is_some() => out.push_str("\\5c"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`jid_escape`]: each `\XX` that is one of XEP-0106's ten sequences becomes its
/// character; anything else is left as it is.
pub fn jid_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match escape_code(after) {
            Some(c) => {
                out.push(c);
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character of an XEP-0106 escape sequence starting `s` (after the backslash).
fn escape_code(s: &str) -> Option<char> {
    let code = s.get(..2)?;
    Some(match code.to_ascii_lowercase().as_str() {
        "20" => ' ',
        "22" => '"',
        "26" => '&',
        "27" => '\'',
        "2f" => '/',
        "3a" => ':',
        "3c" => '<',
        "3e" => '>',
        "40" => '@',
        "5c" => '\\',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0106_round_trips() {
        for raw in [
            "bob@example.com",
            "d'artagnan@musketeers.lit",
            "space cadet",
            "c:\\net",
            "c:\\cool stuff",
            "\\5c and \\40",
            "plain",
            "trailing\\",
        ] {
            let esc = jid_escape(raw);
            assert!(!esc.contains(['@', ' ', ':', '\'']), "{esc}");
            assert_eq!(jid_unescape(&esc), raw, "{esc}");
        }
        assert_eq!(jid_escape("c:\\net"), "c\\3a\\net");
        assert_eq!(jid_escape("c:\\cool stuff"), "c\\3a\\cool\\20stuff");
        assert_eq!(jid_unescape("bob\\40EXAMPLE.com"), "bob@EXAMPLE.com");
        assert_eq!(jid_unescape("a\\zz"), "a\\zz");
    }
}
