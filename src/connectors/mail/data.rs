//! The framing of the DATA phase (RFC 5321 §2.3.8, §4.1.1.4, §4.5.2), byte by byte.
//!
//! Guarantees:
//! - Only `CRLF . CRLF` ends a message; a leading dot of a line is removed (dot-stuffing).
//! - A bare CR or a bare LF anywhere in the data (`\r\n.\r\r\n`, `\n.\n`, a lone `\n` in a
//!   line) makes the message invalid: nothing of it is kept, and the reader still finds where
//!   the client meant it to end (any dot line, whatever its line ends), so the server can
//!   refuse it and close the session instead of reading smuggled commands from its body.
//! - The bytes kept are bounded by the size limit (beyond it they are counted, not kept), and
//!   the longest line is tracked.

/// Where the reader is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// At the start of a line (also the start of the data).
    LineStart,
    /// Inside a line.
    Mid,
    /// Just after a CR inside a line.
    Cr,
    /// Just after a dot at the start of a line.
    Dot,
    /// Just after `.` CR at the start of a line.
    DotCr,
}

/// One message's DATA, being read.
pub struct DataReader {
    at: At,
    max_size: usize,
    max_line: usize,
    bytes: Vec<u8>,
    /// Bytes of content seen so far (also those dropped beyond the size limit).
    seen: usize,
    line_len: usize,
    /// The message is larger than the size limit.
    pub too_big: bool,
    /// A line is longer than the line limit.
    pub long_line: bool,
    /// A bare CR or LF was seen: the message is invalid.
    pub bare_newline: bool,
}

impl DataReader {
    pub fn new(max_size: usize, max_line: usize) -> DataReader {
        DataReader {
            at: At::LineStart,
            max_size,
            max_line,
            bytes: Vec::with_capacity(4096),
            seen: 0,
            line_len: 0,
            too_big: false,
            long_line: false,
            bare_newline: false,
        }
    }

    /// The message as received (CRLF line ends, dots unstuffed); empty when it was invalid
    /// or too big.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn keeping(&self) -> bool {
        !self.too_big && !self.bare_newline
    }

    fn text(&mut self, s: &[u8]) {
        self.line_len += s.len();
        if self.line_len > self.max_line {
            self.long_line = true;
        }
        self.push(s);
    }

    fn push(&mut self, s: &[u8]) {
        self.seen += s.len();
        if self.seen > self.max_size {
            self.too_big = true;
            self.bytes = Vec::new();
        }
        if self.keeping() {
            self.bytes.extend_from_slice(s);
        }
    }

    fn bare(&mut self) {
        self.bare_newline = true;
        self.bytes = Vec::new();
    }

    /// Reads `input`; `Some(n)` when the end of the data was found after its first `n`
    /// bytes (the rest are the client's next commands).
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            let plain = c != b'\r' && c != b'\n';
            if plain && (self.at == At::Mid || (self.at == At::LineStart && c != b'.')) {
                // A run of ordinary bytes: up to the next CR or LF at once.
                let end = input[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .map_or(input.len(), |p| i + p);
                self.text(&input[i..end]);
                self.at = At::Mid;
                i = end;
                continue;
            }
            i += 1;
            match (self.at, c) {
                (At::LineStart, b'.') => self.at = At::Dot,
                (At::LineStart | At::Mid, b'\r') => self.at = At::Cr,
                (At::LineStart | At::Mid, _) => {
                    // A bare LF; it still ends the line, so a dot line after it is found.
                    self.bare();
                    self.line_len = 0;
                    self.at = At::LineStart;
                }
                (At::Cr, b'\n') => {
                    self.push(b"\r\n");
                    self.line_len = 0;
                    self.at = At::LineStart;
                }
                // A bare CR (before another CR or a byte that is not LF).
                (At::Cr, b'\r') => self.bare(),
                (At::Cr, _) => {
                    self.bare();
                    self.at = At::Mid;
                    i -= 1;
                }
                (At::Dot, b'\r') => self.at = At::DotCr,
                (At::Dot, b'\n') => {
                    self.bare();
                    return Some(i);
                }
                (At::Dot, _) => {
                    // A stuffed dot: it goes, the rest of the line is text.
                    self.at = At::Mid;
                    i -= 1;
                }
                (At::DotCr, b'\n') => return Some(i),
                // `.\r\r\n` and the like: the client may believe this ended the message.
                (At::DotCr, b'\r') => self.bare(),
                (At::DotCr, _) => {
                    self.bare();
                    self.at = At::Mid;
                    i -= 1;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; (message, consumed, bare) once it ends.
    fn read(input: &[u8], step: usize) -> Option<(Vec<u8>, usize, bool)> {
        let mut r = DataReader::new(1 << 20, 1000);
        let mut off = 0;
        for chunk in input.chunks(step) {
            if let Some(n) = r.feed(chunk) {
                let bare = r.bare_newline;
                return Some((r.into_bytes(), off + n, bare));
            }
            off += chunk.len();
        }
        None
    }

    #[test]
    fn only_crlf_dot_crlf_ends_and_dots_are_unstuffed() {
        for step in [1, 2, 3, 7, 1000] {
            let input = b"Subject: a\r\n\r\n..dot\r\n.x\r\nend\r\n.\r\nMAIL FROM:<x>\r\n";
            let (msg, n, bare) = read(input, step).unwrap();
            assert_eq!(msg, b"Subject: a\r\n\r\n.dot\r\nx\r\nend\r\n");
            assert_eq!(&input[n..], b"MAIL FROM:<x>\r\n");
            assert!(!bare);
            assert_eq!(read(b".\r\n", step).unwrap().0, b"");
        }
    }

    #[test]
    fn bare_cr_and_lf_invalidate_and_still_find_the_end() {
        for step in [1, 2, 5, 1000] {
            // The smuggling end: refused, and the end is found where the client put it.
            let input = b"hi\r\n.\r\r\nMAIL FROM:<x>\r\n";
            let (msg, n, bare) = read(input, step).unwrap();
            assert!(bare && msg.is_empty());
            assert_eq!(&input[n..], b"MAIL FROM:<x>\r\n");
            for input in [
                &b"hi\n.\nQUIT\r\n"[..],
                b"hi\n.\r\nQUIT\r\n",
                b"a\rb\r\n.\r\nQUIT\r\n",
                b"a\nb\r\n.\r\nQUIT\r\n",
                b"a\r\n.\rx\r\n.\r\nQUIT\r\n",
            ] {
                let (msg, n, bare) = read(input, step).unwrap();
                assert!(bare && msg.is_empty(), "{input:?}");
                assert_eq!(&input[n..], b"QUIT\r\n", "{input:?}");
            }
        }
        // Without any end: still reading.
        assert!(read(b"a\r\n.\r\r", 1).is_none());
        assert!(read(b"a\r\n..\r\n", 1).is_none());
    }

    #[test]
    fn size_and_line_limits() {
        let mut r = DataReader::new(10, 1000);
        assert!(r.feed(b"0123456789abc\r\n").is_none());
        assert!(r.feed(b".\r\n").is_some());
        assert!(r.too_big && r.into_bytes().is_empty());
        let mut r = DataReader::new(1 << 20, 4);
        assert!(r.feed(b"abcd\r\nabcde\r\n.\r\n").is_some());
        assert!(r.long_line);
    }
}
