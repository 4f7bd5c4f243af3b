//! Any JSON object as a subscribe message's `data`: WeChat's rules accept or
//! name the first rule broken, never panic, and say the same twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use wechat_wire::subscribe_data;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let first = subscribe_data::check(&object);
    assert_eq!(first, subscribe_data::check(&object));
    if first.is_ok() {
        assert!(!object.is_empty(), "empty data accepted");
    }
});
