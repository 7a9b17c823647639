//! The business card readers (the card element, a vCard): no panic; a card either reader
//! takes is written back in a form the same reader takes again, with the same fields.
//!
//! vcard4 and the `uriparse` under it panic on some input (a malformed URI, a `BDAY` with
//! non-ASCII text); the gateway catches that and refuses the vCard (`cards::vcard`).
//! libFuzzer's hook aborts on every panic, caught or not, so this target lets through only
//! panics raised inside those two crates: any other still aborts.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use switchboard::cards::{CardsConfig, vcard, xml};

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let guarded = info.location().is_some_and(|l| {
                l.file().contains("/uriparse-") || l.file().contains("/vcard4-")
            });
            if !guarded {
                abort(info);
            }
        }));
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = CardsConfig::default();
    if let Ok(card) = xml::parse(text, &cfg) {
        let again = xml::parse(&xml::to_xml(&card), &cfg).expect("its own XML reads back");
        assert_eq!(again, card);
    }
    if let Ok(mut card) = vcard::from_vcard(text)
        && card.validate(&cfg).is_ok()
    {
        card.owner = None;
        let written = vcard::to_vcard(&card);
        let again = vcard::from_vcard(&written).expect("its own vCard reads back");
        assert_eq!(again, card, "{written}");
    }
});
