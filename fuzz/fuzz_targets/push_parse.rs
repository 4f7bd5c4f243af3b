//! Any body read as a push, in either format, as its envelope and as its
//! message: an error or an event, never a panic; XML with a DOCTYPE never
//! parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_wire::event::{self, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let _ = event::sniff(body);
    for format in [Format::Xml, Format::Json] {
        let _ = event::envelope(body, format);
        let parsed = event::parse(body, format);
        if format == Format::Xml && body.contains("<!DOCTYPE") {
            assert!(parsed.is_err(), "a DOCTYPE parsed: {body:?}");
        }
    }
});
