//! Any body read as a push, in either format, as its envelope and as its
//! message: an error or an event, never a panic; and the body behind a
//! DOCTYPE declaration never parses (a "<!DOCTYPE" inside CDATA is text).
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
        let _ = event::parse(body, format);
    }
    // The same body after a DOCTYPE declaring an entity is never read.
    let declared = format!("<!DOCTYPE xml [<!ENTITY e \"x\">]>{body}");
    assert!(
        event::parse(&declared, Format::Xml).is_err(),
        "a DOCTYPE parsed: {declared:?}"
    );
    assert!(event::envelope(&declared, Format::Xml).is_err());
});
