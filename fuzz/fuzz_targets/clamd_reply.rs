//! clamd's INSTREAM reply parser: no panic; a signature name is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::content::scan::parse_reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(name)) = parse_reply(data) {
        assert!(!name.is_empty());
    }
});
