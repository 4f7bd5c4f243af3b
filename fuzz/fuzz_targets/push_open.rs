//! Opening a push as the endpoint does, with the fuzzer's bytes in three
//! places: as the message of a push WeChat signed and encrypted correctly
//! (it opens to exactly that message, if it is XML or JSON at all), as a
//! plain-mode body signed by URL,
//! and as the `Encrypt` of a push whose signature is right but whose
//! ciphertext is anything (refused or opened, never a panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_wire::crypto::{self, AesKey};
use wechat_wire::event;
use wechat_wire::verify::{self, PushQuery, PushSettings, Refused};

const TOKEN: &str = "fuzz-push-token-0123";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wxfuzz";
const NOW: i64 = 1_700_000_000;

fn signed(timestamp: &str, nonce: &str, encrypt: Option<&str>) -> PushQuery {
    PushQuery {
        signature: Some(crypto::signature(TOKEN, timestamp, nonce)),
        timestamp: Some(timestamp.to_owned()),
        nonce: Some(nonce.to_owned()),
        echostr: None,
        encrypt_type: encrypt.map(|_| "aes".to_owned()),
        msg_signature: encrypt.map(|e| crypto::msg_signature(TOKEN, timestamp, nonce, e)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = AesKey::parse(KEY).unwrap();
    let safe = PushSettings {
        token: TOKEN.into(),
        keys: vec![key.clone()],
        appid: APPID.into(),
    };
    let plain = PushSettings {
        token: TOKEN.into(),
        keys: Vec::new(),
        appid: APPID.into(),
    };
    let ts = NOW.to_string();

    // A correct safe-mode push of this message opens to exactly it.
    let encrypt = crypto::encrypt_with_random(&key, [7; 16], text, APPID);
    let decrypted = crypto::decrypt(&key, &encrypt).expect("our own ciphertext decrypts");
    assert_eq!(
        (decrypted.message.as_str(), decrypted.appid.as_str()),
        (text, APPID)
    );
    let body = serde_json::json!({"ToUserName": "gh_fuzz", "Encrypt": encrypt}).to_string();
    let opened = verify::open(&safe, &signed(&ts, "n1", Some(&encrypt)), &body, NOW);
    match event::sniff(text) {
        Some(_) => assert_eq!(opened.expect("a correct push opens").message, text),
        None => assert!(matches!(opened, Err(Refused::Malformed(_))), "{opened:?}"),
    }

    // The bytes as a plain-mode body, and as a ciphertext signed correctly.
    let _ = verify::open(&plain, &signed(&ts, "n2", None), text, NOW);
    let body = serde_json::json!({"ToUserName": "gh_fuzz", "Encrypt": text}).to_string();
    let _ = verify::open(&safe, &signed(&ts, "n3", Some(text)), &body, NOW);
    let _ = crypto::decrypt(&key, text);
});
