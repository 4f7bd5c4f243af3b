//! WeChat's push signatures and safe-mode encryption (the scheme of its
//! `WXBizMsgCrypt` samples), as docs/pushes.md describes it.
//!
//! Owns: the SHA-1 signatures over sorted strings (`signature` for the URL
//! check, `msg_signature` over the `Encrypt` field too), their constant-time
//! comparison, the 43-character EncodingAESKey, and AES-256-CBC with WeChat's
//! framing: plaintext = 16 random bytes ‖ 4-byte big-endian length ‖ message ‖
//! appid, PKCS#7-padded to 32-byte blocks (not AES's 16), IV = the key's first
//! 16 bytes.
//!
//! Not owned: which token, key and appid are ours, the timestamp window, and
//! the HTTP answers. The push endpoint decides those: it checks
//! `msg_signature` *before* decrypting (CBC carries no integrity of its own,
//! so an unsigned ciphertext must never reach [`decrypt`]) and compares the
//! returned appid with its own.

use std::fmt;

use aes::Aes256;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// WeChat pads to multiples of 32 bytes, so a pad byte is 1..=32.
const PAD_BLOCK: usize = 32;
/// AES's own block: a ciphertext is always a multiple of it.
const AES_BLOCK: usize = 16;
const RANDOM_LEN: usize = 16;
const LEN_FIELD: usize = 4;
const HEADER_LEN: usize = RANDOM_LEN + LEN_FIELD;
/// An EncodingAESKey is 43 base64 characters: 32 bytes once "=" is appended.
const ENCODING_AES_KEY_LEN: usize = 43;
const KEY_LEN: usize = 32;

/// Base64 for the EncodingAESKey. WeChat's keys are 43 random characters, so
/// the last one usually carries non-zero trailing bits, which the strict
/// `STANDARD` engine rejects (the official sample key
/// `jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C` is one). The other SDKs'
/// decoders (Java, PHP, Python) ignore those bits; so do we.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a key or a ciphertext was refused. The variants say which check failed
/// and never echo key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the EncodingAESKey must be 43 base64 characters that decode to 32 bytes")]
    InvalidKey,
    #[error("no EncodingAESKey to decrypt with")]
    NoKey,
    #[error("the ciphertext is not valid base64")]
    Base64,
    #[error("the ciphertext is empty or not a whole number of AES blocks")]
    BlockLength,
    #[error("the decrypted padding is malformed")]
    Padding,
    #[error("the decrypted length field does not fit the plaintext")]
    LengthField,
    #[error("the decrypted message or appid is not UTF-8")]
    Utf8,
}

/// The AES key behind an EncodingAESKey. Built once from configuration; its
/// `Debug` never shows the key.
#[derive(Clone)]
pub struct AesKey {
    key: [u8; KEY_LEN],
}

impl AesKey {
    /// Parses the 43-character EncodingAESKey from the WeChat console:
    /// base64 of `key + "="` must decode to exactly 32 bytes.
    pub fn parse(encoding_aes_key: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::InvalidKey);
        }
        let mut padded = String::with_capacity(ENCODING_AES_KEY_LEN + 1);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        let bytes = KEY_BASE64.decode(padded).map_err(|_| CryptoError::InvalidKey)?;
        let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self { key })
    }

    fn iv(&self) -> [u8; AES_BLOCK] {
        let mut iv = [0u8; AES_BLOCK];
        iv.copy_from_slice(&self.key[..AES_BLOCK]);
        iv
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

/// What a ciphertext carried. The appid is returned rather than checked here:
/// a foreign appid is the caller's 401, not a decryption failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub message: String,
    pub appid: String,
}

/// The URL-check signature: hex SHA-1 of `token`, `timestamp` and `nonce`
/// sorted bytewise and concatenated.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce])
}

/// The safe-mode signature: as [`signature`], with the `Encrypt` field as a
/// fourth string.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce, encrypt])
}

/// Compares the signature a request carried with the one we computed, in time
/// independent of where they differ. Hex case is ignored; lengths are public.
pub fn verify(expected_hex: &str, computed: &str) -> bool {
    let expected = expected_hex.to_ascii_lowercase();
    let computed = computed.to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(computed.as_bytes()))
}

fn sorted_sha1(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts.iter() {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Decrypts a base64 `Encrypt` field. Call it only after `msg_signature`
/// matched: a padding error must never be observable for an unsigned input.
pub fn decrypt(key: &AesKey, encrypt_b64: &str) -> Result<Decrypted, CryptoError> {
    let ciphertext = decode_ciphertext(encrypt_b64)?;
    open(key, &ciphertext)
}

/// Decrypts with the first key that yields a well-formed plaintext, so that
/// pushes sealed with the previous EncodingAESKey still open while WeChat
/// rotates it. Pass the current key first. Errors that no key can change
/// (base64, block length) are returned at once; otherwise the last key's.
pub fn decrypt_any(keys: &[&AesKey], encrypt_b64: &str) -> Result<Decrypted, CryptoError> {
    let ciphertext = decode_ciphertext(encrypt_b64)?;
    let mut last = CryptoError::NoKey;
    for key in keys {
        match open(key, &ciphertext) {
            Ok(decrypted) => return Ok(decrypted),
            Err(error) => last = error,
        }
    }
    Err(last)
}

fn decode_ciphertext(encrypt_b64: &str) -> Result<Vec<u8>, CryptoError> {
    let ciphertext = STANDARD.decode(encrypt_b64).map_err(|_| CryptoError::Base64)?;
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK) {
        return Err(CryptoError::BlockLength);
    }
    Ok(ciphertext)
}

fn open(key: &AesKey, ciphertext: &[u8]) -> Result<Decrypted, CryptoError> {
    // NoPadding: the crate's Pkcs7 assumes 16-byte blocks; WeChat's padding is
    // checked by `unpad` below.
    let plain = Aes256CbcDec::new(&key.key.into(), &key.iv().into())
        .decrypt_padded_vec_mut::<NoPadding>(ciphertext)
        .map_err(|_| CryptoError::BlockLength)?;
    let body = unpad(&plain)?;
    if body.len() < HEADER_LEN {
        return Err(CryptoError::LengthField);
    }
    let (header, rest) = body.split_at(HEADER_LEN);
    let mut len_field = [0u8; LEN_FIELD];
    len_field.copy_from_slice(&header[RANDOM_LEN..]);
    let message_len = usize::try_from(u32::from_be_bytes(len_field)).map_err(|_| CryptoError::LengthField)?;
    if message_len > rest.len() {
        return Err(CryptoError::LengthField);
    }
    let (message, appid) = rest.split_at(message_len);
    let message = std::str::from_utf8(message).map_err(|_| CryptoError::Utf8)?;
    let appid = std::str::from_utf8(appid).map_err(|_| CryptoError::Utf8)?;
    Ok(Decrypted {
        message: message.to_owned(),
        appid: appid.to_owned(),
    })
}

/// Strips WeChat's PKCS#7-to-32 padding: the last byte `n` must be 1..=32 and
/// the last `n` bytes must all equal it.
fn unpad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let Some(&pad) = plain.last() else {
        return Err(CryptoError::Padding);
    };
    let n = usize::from(pad);
    if !(1..=PAD_BLOCK).contains(&n) || n > plain.len() {
        return Err(CryptoError::Padding);
    }
    let (body, padding) = plain.split_at(plain.len() - n);
    if padding.iter().any(|&byte| byte != pad) {
        return Err(CryptoError::Padding);
    }
    Ok(body)
}

/// Encrypts `message` for `appid` as WeChat does, with fresh random bytes.
/// The simulator uses it to push in safe mode.
pub fn encrypt(key: &AesKey, message: &str, appid: &str) -> String {
    encrypt_with_random(key, rand::random::<[u8; RANDOM_LEN]>(), message, appid)
}

/// [`encrypt`] with caller-chosen random bytes, for known-answer tests.
///
/// The length field is 32 bits: a message of 4 GiB or more (never produced by
/// this service) would be framed with a saturated length and not decrypt.
pub fn encrypt_with_random(key: &AesKey, random: [u8; RANDOM_LEN], message: &str, appid: &str) -> String {
    let message = message.as_bytes();
    let message_len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut plain = Vec::with_capacity(HEADER_LEN + message.len() + appid.len() + PAD_BLOCK);
    plain.extend_from_slice(&random);
    plain.extend_from_slice(&message_len.to_be_bytes());
    plain.extend_from_slice(message);
    plain.extend_from_slice(appid.as_bytes());
    // 1..=32: a plaintext already on a 32-byte boundary gets a whole block.
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    let pad_byte = u8::try_from(pad).unwrap_or(PAD_BLOCK as u8);
    plain.resize(plain.len() + pad, pad_byte);
    // The plaintext is a multiple of 32 bytes, so NoPadding adds nothing.
    let ciphertext =
        Aes256CbcEnc::new(&key.key.into(), &key.iv().into()).encrypt_padded_vec_mut::<NoPadding>(&plain);
    STANDARD.encode(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- WeChat's published sample (WeCom flavour of WXBizMsgCrypt; the
    // scheme is the same). It is in the comments of Tencent's official
    // PHP/C#/Python `Sample` files and in SDK tests (EasyWeChat's encryptor
    // tests use it verbatim): POST ?msg_signature=477715d1...
    // &timestamp=1409659813&nonce=1372623149 with this Encrypt. Re-checked
    // with Python:
    //   hashlib.sha1("".join(sorted([token, ts, nonce, enc])).encode()).hexdigest()
    //   key = base64.b64decode(aeskey + "="); AES-CBC(key, iv=key[:16]).decrypt(...)
    const SAMPLE_TOKEN: &str = "QDG6eK";
    const SAMPLE_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const SAMPLE_APPID: &str = "wx5823bf96d3bd56c7";
    const SAMPLE_TIMESTAMP: &str = "1409659813";
    const SAMPLE_NONCE: &str = "1372623149";
    const SAMPLE_MSG_SIGNATURE: &str = "477715d11cdb4164915debcba66cb864d751f3e6";
    const SAMPLE_ENCRYPT: &str = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
    const SAMPLE_MESSAGE: &str = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n\
        <FromUserName><![CDATA[mycreate]]></FromUserName>\n\
        <CreateTime>1409659813</CreateTime>\n\
        <MsgType><![CDATA[text]]></MsgType>\n\
        <Content><![CDATA[hello]]></Content>\n\
        <MsgId>4561255354251345929</MsgId>\n\
        <AgentID>218</AgentID>\n\
        </xml>";
    // The same sample's URL check: echostr decrypts to "1616140317555161061".
    const SAMPLE_ECHO_SIGNATURE: &str = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3";
    const SAMPLE_ECHOSTR: &str =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";

    // ---- WeChat's official Java sample test (`WXBizMsgCryptTest`, carried
    // as WxJava's `weixin-java-common/.../crypto/WxCryptUtilTest.java`,
    // `testAesEncrypt` and `testAesEncrypt2`): fixed random "aaaabbbbccccdddd".
    // Python's `cryptography` and `openssl enc -aes-256-cbc -nopad` give the
    // same bytes.
    const JAVA_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const JAVA_APPID: &str = "wxb11529c136998cb6";
    const JAVA_MESSAGE: &str = "我是中文abcd123";
    const JAVA_ENCRYPT: &str =
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";
    const JAVA_MESSAGE_2: &str = "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>";
    const JAVA_ENCRYPT_2: &str = "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb";

    // ---- Our own vectors, made with Python 3 + cryptography 48:
    //   import base64, hashlib, struct
    //   from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    //   def wx_encrypt(k, rnd, msg, appid):
    //       key = base64.b64decode(k + "="); m = msg.encode()
    //       p = rnd + struct.pack(">I", len(m)) + m + appid.encode()
    //       n = 32 - len(p) % 32; p += bytes([n]) * n
    //       e = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    //       return base64.b64encode(e.update(p) + e.finalize()).decode()
    //   def sig(*parts): return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
    //   OWN_ENCRYPT  = wx_encrypt(JAVA_AES_KEY, bytes(range(16)), OWN_MESSAGE, OWN_APPID)
    //   FULL_BLOCK   = wx_encrypt(JAVA_AES_KEY, bytes(range(16)), "abcdefghijklmnopqrstuvwxyz", OWN_APPID)
    //   ROTATED      = wx_encrypt(PREVIOUS_AES_KEY, bytes(range(16)), "rotated", OWN_APPID)
    //   OWN_SIGNATURE     = sig(OWN_TOKEN, OWN_TIMESTAMP, OWN_NONCE)
    //   OWN_MSG_SIGNATURE = sig(OWN_TOKEN, OWN_TIMESTAMP, OWN_NONCE, OWN_ENCRYPT)
    const OWN_RANDOM: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    const OWN_APPID: &str = "wx0123456789abcdef";
    const OWN_MESSAGE: &str = r#"{"ToUserName":"gh_0123456789ab","FromUserName":"oSandboxUser0001","CreateTime":1700000000,"MsgType":"event","Event":"subscribe_msg_popup_event","List":[{"TemplateId":"tmpl-1","SubscribeStatusString":"accept","PopupScene":"0"}]}"#;
    const OWN_ENCRYPT: &str = "IG+0eOkLdhYW9kHtuT3HYyUlL1nU8F7avm2WkJ1RBIiCUbv76cRBi2s0nvq4xY3KriQsoYEurbLCH9TKNRLxJ35nYIraBjemEUO/Q5oUhdRD6mvKEu14tEC5GyWIlL1hgt65Uk4qQ3JKdc0brICbsYSuWTvV4OdPCZueKLT9gvqTLzGx90LtQo+0HARuNWoK5hf/LI7KU6niiLITioS2rXF9fKXieaRJXenjM2awpSigmTC8n7q56R49bm4Q3ZFTgM7OVPnsk5trExisI+ciwmZlG4dU9nFFO0LmJZFPhp4WYZSYu5lwon0Inwknm1uDFClZUwXgyG1+ZNP0l5pf71HYD7lUAdl5yWYL4kgKh05whDAeqspcoqUOTbQlz6Z8";
    /// 16 + 4 + 26 + 18 = 64 bytes: a whole extra block of 32 × 0x20.
    const FULL_BLOCK_ENCRYPT: &str = "IG+0eOkLdhYW9kHtuT3HYwYfHaFTUd4ONgIpT+zJC8JHwjiCYe0/v8bZb7iqE/ah5a/PCXkm+4xZvDpHX8xi8E8so38dvyBLZPW5OwPi0DZgnEUDVG2P1amYn3fY5Oua";
    const PREVIOUS_AES_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
    const ROTATED_ENCRYPT: &str =
        "nRlYwzvG5cV8b0VczI4R8IMdLZSYA5/wvMsKuVUCAEcwzDltQilgtxB8CYEE0IEZMl1EMvuuukqngc6Pvr578w==";
    const OWN_TOKEN: &str = "formid-ledger-test";
    const OWN_TIMESTAMP: &str = "1700000000";
    const OWN_NONCE: &str = "982451653";
    const OWN_SIGNATURE: &str = "750b5603f01bf1a13ba517379a52ce5b1309a662";
    const OWN_MSG_SIGNATURE: &str = "c43cf09cf2d22b4178a681e315cba370b38ca8e6";

    fn key(encoding_aes_key: &str) -> AesKey {
        AesKey::parse(encoding_aes_key).expect("test key parses")
    }

    /// Encrypts an arbitrary (block-aligned) plaintext with no framing or
    /// padding of ours, to build malformed inputs.
    fn seal_raw(key: &AesKey, plain: &[u8]) -> String {
        assert!(
            plain.len().is_multiple_of(AES_BLOCK),
            "raw plaintexts must be block-aligned"
        );
        let ciphertext =
            Aes256CbcEnc::new(&key.key.into(), &key.iv().into()).encrypt_padded_vec_mut::<NoPadding>(plain);
        STANDARD.encode(ciphertext)
    }

    fn frame(length_field: u32, message: &[u8], appid: &[u8]) -> Vec<u8> {
        let mut plain = OWN_RANDOM.to_vec();
        plain.extend_from_slice(&length_field.to_be_bytes());
        plain.extend_from_slice(message);
        plain.extend_from_slice(appid);
        plain
    }

    #[test]
    fn the_official_sample_verifies_and_decrypts() {
        let computed = msg_signature(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT);
        assert_eq!(computed, SAMPLE_MSG_SIGNATURE);
        assert!(verify(SAMPLE_MSG_SIGNATURE, &computed));

        let decrypted = decrypt(&key(SAMPLE_AES_KEY), SAMPLE_ENCRYPT).expect("sample decrypts");
        assert_eq!(decrypted.message, SAMPLE_MESSAGE);
        assert_eq!(decrypted.appid, SAMPLE_APPID);
    }

    #[test]
    fn the_official_url_check_sample_decrypts() {
        let computed = msg_signature(SAMPLE_TOKEN, "1409659589", "263014780", SAMPLE_ECHOSTR);
        assert_eq!(computed, SAMPLE_ECHO_SIGNATURE);
        let decrypted = decrypt(&key(SAMPLE_AES_KEY), SAMPLE_ECHOSTR).expect("echostr decrypts");
        assert_eq!(decrypted.message, "1616140317555161061");
        assert_eq!(decrypted.appid, SAMPLE_APPID);
    }

    #[test]
    fn the_official_java_vector_encrypts_byte_for_byte() {
        let key = key(JAVA_AES_KEY);
        let sealed = encrypt_with_random(&key, *b"aaaabbbbccccdddd", JAVA_MESSAGE, JAVA_APPID);
        assert_eq!(sealed, JAVA_ENCRYPT);
        let opened = decrypt(&key, &sealed).expect("decrypts");
        assert_eq!(
            opened,
            Decrypted {
                message: JAVA_MESSAGE.into(),
                appid: JAVA_APPID.into()
            }
        );

        let sealed = encrypt_with_random(&key, *b"aaaabbbbccccdddd", JAVA_MESSAGE_2, JAVA_APPID);
        assert_eq!(sealed, JAVA_ENCRYPT_2);
        assert_eq!(
            decrypt(&key, JAVA_ENCRYPT_2).map(|opened| opened.message),
            Ok(JAVA_MESSAGE_2.to_owned())
        );
    }

    #[test]
    fn own_vectors_match_python() {
        let key = key(JAVA_AES_KEY);
        assert_eq!(
            encrypt_with_random(&key, OWN_RANDOM, OWN_MESSAGE, OWN_APPID),
            OWN_ENCRYPT
        );
        assert_eq!(
            encrypt_with_random(&key, OWN_RANDOM, "abcdefghijklmnopqrstuvwxyz", OWN_APPID),
            FULL_BLOCK_ENCRYPT
        );
        let opened = decrypt(&key, FULL_BLOCK_ENCRYPT).expect("a whole padding block decrypts");
        assert_eq!(opened.message, "abcdefghijklmnopqrstuvwxyz");
        assert_eq!(opened.appid, OWN_APPID);
    }

    #[test]
    fn signature_vectors_match_python() {
        assert_eq!(signature(OWN_TOKEN, OWN_TIMESTAMP, OWN_NONCE), OWN_SIGNATURE);
        assert_eq!(
            msg_signature(OWN_TOKEN, OWN_TIMESTAMP, OWN_NONCE, OWN_ENCRYPT),
            OWN_MSG_SIGNATURE
        );
        // Sorting makes the argument order irrelevant.
        assert_eq!(signature(OWN_NONCE, OWN_TOKEN, OWN_TIMESTAMP), OWN_SIGNATURE);
    }

    #[test]
    fn verify_is_exact_but_case_blind() {
        assert!(verify(OWN_SIGNATURE, OWN_SIGNATURE));
        assert!(verify(&OWN_SIGNATURE.to_ascii_uppercase(), OWN_SIGNATURE));
        assert!(!verify(OWN_MSG_SIGNATURE, OWN_SIGNATURE));
        assert!(!verify(&OWN_SIGNATURE[..39], OWN_SIGNATURE));
        assert!(!verify("", OWN_SIGNATURE));
    }

    #[test]
    fn round_trips_with_fresh_random_bytes() {
        let key = key(JAVA_AES_KEY);
        let first = encrypt(&key, OWN_MESSAGE, OWN_APPID);
        let second = encrypt(&key, OWN_MESSAGE, OWN_APPID);
        assert_ne!(first, second, "each encryption draws new random bytes");
        for sealed in [first, second] {
            let opened = decrypt(&key, &sealed).expect("round trip");
            assert_eq!(opened.message, OWN_MESSAGE);
            assert_eq!(opened.appid, OWN_APPID);
        }
        let empty = decrypt(&key, &encrypt(&key, "", OWN_APPID)).expect("empty message");
        assert_eq!(
            empty,
            Decrypted {
                message: String::new(),
                appid: OWN_APPID.into()
            }
        );
    }

    #[test]
    fn a_foreign_appid_is_returned_for_the_caller_to_refuse() {
        let key = key(JAVA_AES_KEY);
        let opened = decrypt(&key, &encrypt(&key, "hi", "wxsomeoneelse")).expect("decrypts");
        assert_eq!(opened.appid, "wxsomeoneelse");
        assert_ne!(opened.appid, OWN_APPID);
    }

    #[test]
    fn every_flipped_byte_fails_or_changes_the_plaintext_without_panicking() {
        let key = key(JAVA_AES_KEY);
        let original = STANDARD.decode(OWN_ENCRYPT).expect("base64");
        for index in 0..original.len() {
            let mut tampered = original.clone();
            tampered[index] ^= 0x01;
            let tampered = STANDARD.encode(tampered);
            // The signature is the integrity check: it never survives a flip.
            let computed = msg_signature(OWN_TOKEN, OWN_TIMESTAMP, OWN_NONCE, &tampered);
            assert!(!verify(OWN_MSG_SIGNATURE, &computed));
            // CBC alone only guarantees the plaintext is not the original.
            if let Ok(opened) = decrypt(&key, &tampered) {
                assert!(
                    opened.message != OWN_MESSAGE || opened.appid != OWN_APPID,
                    "byte {index}"
                );
            }
        }
    }

    #[test]
    fn the_wrong_key_is_an_error() {
        assert!(decrypt(&key(PREVIOUS_AES_KEY), OWN_ENCRYPT).is_err());
        assert!(decrypt(&key(JAVA_AES_KEY), SAMPLE_ENCRYPT).is_err());
    }

    #[test]
    fn decrypt_any_accepts_the_previous_key_during_rotation() {
        let current = key(JAVA_AES_KEY);
        let previous = key(PREVIOUS_AES_KEY);
        assert!(decrypt(&current, ROTATED_ENCRYPT).is_err());
        let opened = decrypt_any(&[&current, &previous], ROTATED_ENCRYPT).expect("previous key opens it");
        assert_eq!(
            opened,
            Decrypted {
                message: "rotated".into(),
                appid: OWN_APPID.into()
            }
        );
        let opened = decrypt_any(&[&current, &previous], OWN_ENCRYPT).expect("current key opens it");
        assert_eq!(opened.message, OWN_MESSAGE);
        assert!(decrypt_any(&[&current], ROTATED_ENCRYPT).is_err());
        assert_eq!(decrypt_any(&[], OWN_ENCRYPT), Err(CryptoError::NoKey));
        assert_eq!(
            decrypt_any(&[&current, &previous], "%%%"),
            Err(CryptoError::Base64)
        );
    }

    #[test]
    fn undecodable_or_misaligned_ciphertexts_are_refused() {
        let key = key(JAVA_AES_KEY);
        assert_eq!(decrypt(&key, "not base64!"), Err(CryptoError::Base64));
        assert_eq!(
            decrypt(&key, &format!("{OWN_ENCRYPT}\n")),
            Err(CryptoError::Base64)
        );
        assert_eq!(decrypt(&key, ""), Err(CryptoError::BlockLength));
        assert_eq!(decrypt(&key, "AAAA"), Err(CryptoError::BlockLength));
        let seventeen = STANDARD.encode([0u8; 17]);
        assert_eq!(decrypt(&key, &seventeen), Err(CryptoError::BlockLength));
    }

    #[test]
    fn malformed_padding_is_refused() {
        let key = key(JAVA_AES_KEY);
        // 16 + 4 + 2 + 2 = 24 bytes of frame, then 8 bytes of padding.
        let body = frame(2, b"hi", b"wx");

        let mut good = body.clone();
        good.extend_from_slice(&[8; 8]);
        let opened = decrypt(&key, &seal_raw(&key, &good)).expect("well padded");
        assert_eq!(
            opened,
            Decrypted {
                message: "hi".into(),
                appid: "wx".into()
            }
        );

        let mut zero = body.clone();
        zero.extend_from_slice(&[0; 8]);
        assert_eq!(decrypt(&key, &seal_raw(&key, &zero)), Err(CryptoError::Padding));

        let mut uneven = body.clone();
        uneven.extend_from_slice(&[7, 7, 7, 7, 7, 7, 7, 8]);
        assert_eq!(decrypt(&key, &seal_raw(&key, &uneven)), Err(CryptoError::Padding));

        let mut too_big = body;
        too_big.extend_from_slice(&[33; 8]);
        assert_eq!(
            decrypt(&key, &seal_raw(&key, &too_big)),
            Err(CryptoError::Padding)
        );

        // A pad of 32 in a 16-byte plaintext claims more than there is.
        assert_eq!(
            decrypt(&key, &seal_raw(&key, &[32; 16])),
            Err(CryptoError::Padding)
        );
        // A pad that swallows everything leaves no header.
        assert_eq!(
            decrypt(&key, &seal_raw(&key, &[16; 16])),
            Err(CryptoError::LengthField)
        );
    }

    #[test]
    fn out_of_range_length_fields_are_refused() {
        let key = key(JAVA_AES_KEY);
        for length_field in [u32::MAX, 5] {
            let mut plain = frame(length_field, b"hi", b"wx");
            plain.extend_from_slice(&[8; 8]);
            assert_eq!(
                decrypt(&key, &seal_raw(&key, &plain)),
                Err(CryptoError::LengthField)
            );
        }
    }

    #[test]
    fn non_utf8_message_or_appid_is_refused() {
        let key = key(JAVA_AES_KEY);
        let mut bad_message = frame(2, &[0xff, 0xfe], b"wx");
        bad_message.extend_from_slice(&[8; 8]);
        assert_eq!(
            decrypt(&key, &seal_raw(&key, &bad_message)),
            Err(CryptoError::Utf8)
        );

        let mut bad_appid = frame(2, b"hi", &[0xc3, 0x28]);
        bad_appid.extend_from_slice(&[8; 8]);
        assert_eq!(decrypt(&key, &seal_raw(&key, &bad_appid)), Err(CryptoError::Utf8));
    }

    #[test]
    fn keys_parse_only_from_43_base64_characters() {
        // Both sample keys end in a character with non-zero trailing bits.
        assert!(AesKey::parse(SAMPLE_AES_KEY).is_ok());
        assert!(AesKey::parse(JAVA_AES_KEY).is_ok());
        assert!(AesKey::parse(PREVIOUS_AES_KEY).is_ok());

        assert_eq!(AesKey::parse("").unwrap_err(), CryptoError::InvalidKey);
        assert_eq!(
            AesKey::parse(&JAVA_AES_KEY[..42]).unwrap_err(),
            CryptoError::InvalidKey
        );
        assert_eq!(
            AesKey::parse(&format!("{JAVA_AES_KEY}A")).unwrap_err(),
            CryptoError::InvalidKey
        );
        assert_eq!(
            AesKey::parse(&format!("{}=", &JAVA_AES_KEY[..42])).unwrap_err(),
            CryptoError::InvalidKey
        );
        assert_eq!(
            AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDE!G").unwrap_err(),
            CryptoError::InvalidKey
        );
        // 43 bytes but not 43 characters.
        assert_eq!(
            AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEé").unwrap_err(),
            CryptoError::InvalidKey
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", key(JAVA_AES_KEY));
        assert_eq!(shown, "AesKey(<redacted>)");
        assert!(!shown.contains("abcdef"));
    }
}
