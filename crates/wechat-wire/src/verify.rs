//! Opening a push (docs/pushes.md): the URL check's `echostr`, and a POST's
//! signature, timestamp window, safe-mode decryption (current or previous
//! EncodingAESKey) and appid, in that order, before anything reads the
//! message. What is not verified is never parsed further.

use super::crypto::{self, AesKey};
use super::event::{self, EventError, Format};

/// How far a push's timestamp may be from our clock.
pub const WINDOW_SECS: i64 = 300;

/// One push endpoint's settings: the token from the WeChat console, the
/// EncodingAESKey (and the previous one during a rotation), and whose
/// pushes it takes.
#[derive(Debug, Clone)]
pub struct PushSettings {
    pub token: String,
    pub keys: Vec<AesKey>,
    pub appid: String,
}

/// The query WeChat signs a push with.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct PushQuery {
    /// SHA-1 over the sorted token, timestamp and nonce.
    pub signature: Option<String>,
    /// Unix seconds; within 300 s of now.
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    /// The console's URL check: echoed back.
    pub echostr: Option<String>,
    /// `aes` in safe mode.
    pub encrypt_type: Option<String>,
    /// Safe mode: SHA-1 over the sorted token, timestamp, nonce and `Encrypt`.
    pub msg_signature: Option<String>,
}

/// An app's push endpoints: each one's settings, or `None` when no token
/// is configured for it (it answers 404).
#[derive(Debug, Clone, Default)]
pub struct PushEndpoints {
    pub miniprogram: Option<PushSettings>,
    pub official_account: Option<PushSettings>,
}

/// Why a push was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A missing or wrong signature, a stale timestamp, a foreign appid:
    /// 401, nothing recorded.
    #[error("{0}")]
    Signature(&'static str),
    /// Verified but unreadable: 400, nothing recorded.
    #[error("{0}")]
    Malformed(String),
}

impl From<EventError> for Refused {
    fn from(err: EventError) -> Self {
        Refused::Malformed(err.to_string())
    }
}

/// The timestamp is within [`WINDOW_SECS`] of `now`.
fn fresh(timestamp: &str, now: i64) -> bool {
    timestamp
        .parse::<i64>()
        .is_ok_and(|t| (t - now).abs() <= WINDOW_SECS)
}

/// The URL signature every request carries, safe mode or not, and a
/// fresh timestamp: the `(timestamp, nonce)` it was made with.
fn url_signed<'q>(
    settings: &PushSettings,
    query: &'q PushQuery,
    now: i64,
) -> Result<(&'q str, &'q str), Refused> {
    let (Some(signature), Some(timestamp), Some(nonce)) = (&query.signature, &query.timestamp, &query.nonce)
    else {
        return Err(Refused::Signature("signature, timestamp and nonce are required"));
    };
    if !crypto::verify(signature, &crypto::signature(&settings.token, timestamp, nonce)) {
        return Err(Refused::Signature("the signature does not match"));
    }
    if !fresh(timestamp, now) {
        return Err(Refused::Signature("the timestamp is more than 5 minutes off"));
    }
    Ok((timestamp, nonce))
}

/// The URL check: `echostr` when the signature is right.
pub fn echo(settings: &PushSettings, query: &PushQuery, now: i64) -> Result<String, Refused> {
    url_signed(settings, query, now)?;
    query
        .echostr
        .clone()
        .ok_or(Refused::Signature("echostr is required"))
}

/// A verified push: its message, plain or decrypted, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub message: String,
    pub format: Format,
}

/// Verifies a POSTed push and opens it.
pub fn open(settings: &PushSettings, query: &PushQuery, body: &str, now: i64) -> Result<Opened, Refused> {
    let (timestamp, nonce) = url_signed(settings, query, now)?;
    let format =
        event::sniff(body).ok_or_else(|| Refused::Malformed("the body is neither XML nor JSON".into()))?;
    let safe = query.encrypt_type.as_deref() == Some("aes");
    if !safe {
        if !settings.keys.is_empty() {
            // Safe mode is configured: a plain push is not one of ours.
            return Err(Refused::Signature(
                "an unencrypted push where safe mode is configured",
            ));
        }
        return Ok(Opened {
            message: body.to_owned(),
            format,
        });
    }
    let envelope = event::envelope(body, format)?;
    let encrypt = envelope
        .encrypt
        .ok_or_else(|| Refused::Malformed("a safe-mode push without Encrypt".into()))?;
    let Some(msg_signature) = &query.msg_signature else {
        return Err(Refused::Signature("msg_signature is required in safe mode"));
    };
    if !crypto::verify(
        msg_signature,
        &crypto::msg_signature(&settings.token, timestamp, nonce, &encrypt),
    ) {
        return Err(Refused::Signature("the msg_signature does not match"));
    }
    if settings.keys.is_empty() {
        return Err(Refused::Malformed(
            "no EncodingAESKey is configured for safe mode".into(),
        ));
    }
    let keys: Vec<&AesKey> = settings.keys.iter().collect();
    let opened = crypto::decrypt_any(&keys, &encrypt)
        .map_err(|e| Refused::Malformed(format!("cannot decrypt: {e}")))?;
    if opened.appid != settings.appid {
        return Err(Refused::Signature("the push is for another appid"));
    }
    let format = event::sniff(&opened.message)
        .ok_or_else(|| Refused::Malformed("the decrypted message is neither XML nor JSON".into()))?;
    Ok(Opened {
        message: opened.message,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn settings(keys: &[&str]) -> PushSettings {
        PushSettings {
            token: "push-token".into(),
            keys: keys.iter().map(|k| AesKey::parse(k).unwrap()).collect(),
            appid: "wxsandbox".into(),
        }
    }

    fn signed(settings: &PushSettings, timestamp: i64, encrypt: Option<&str>) -> PushQuery {
        let ts = timestamp.to_string();
        PushQuery {
            signature: Some(crypto::signature(&settings.token, &ts, "n1")),
            timestamp: Some(ts.clone()),
            nonce: Some("n1".into()),
            encrypt_type: encrypt.map(|_| "aes".into()),
            msg_signature: encrypt.map(|e| crypto::msg_signature(&settings.token, &ts, "n1", e)),
            ..PushQuery::default()
        }
    }

    const EVENT: &str =
        r#"{"ToUserName":"gh_1","FromUserName":"oU","CreateTime":1,"MsgType":"event","Event":"x"}"#;

    #[test]
    fn the_url_check_echoes_only_when_signed_and_fresh() {
        let s = settings(&[]);
        let mut q = signed(&s, 1_000, None);
        q.echostr = Some("echo-me".into());
        assert_eq!(echo(&s, &q, 1_000), Ok("echo-me".into()));
        assert!(echo(&s, &q, 1_000 + WINDOW_SECS + 1).is_err(), "stale");
        q.signature = Some("0".repeat(40));
        assert!(echo(&s, &q, 1_000).is_err(), "forged");
    }

    #[test]
    fn plain_pushes_need_the_signature_and_a_fresh_timestamp() {
        let s = settings(&[]);
        let q = signed(&s, 5_000, None);
        assert_eq!(open(&s, &q, EVENT, 5_000).unwrap().message, EVENT);
        assert!(matches!(open(&s, &q, EVENT, 5_400), Err(Refused::Signature(_))));
        let mut forged = q.clone();
        forged.nonce = Some("n2".into());
        assert!(matches!(
            open(&s, &forged, EVENT, 5_000),
            Err(Refused::Signature(_))
        ));
        assert!(matches!(open(&s, &q, "junk", 5_000), Err(Refused::Malformed(_))));
    }

    #[test]
    fn safe_mode_checks_msg_signature_then_decrypts_with_either_key_then_the_appid() {
        let previous = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
        let s = settings(&[KEY, previous]);
        for key in [KEY, previous] {
            let encrypt = crypto::encrypt(&AesKey::parse(key).unwrap(), EVENT, "wxsandbox");
            let body = format!(r#"{{"ToUserName":"gh_1","Encrypt":"{encrypt}"}}"#);
            let q = signed(&s, 9_000, Some(&encrypt));
            assert_eq!(open(&s, &q, &body, 9_000).unwrap().message, EVENT);
            // A plain push where safe mode is configured.
            assert!(matches!(
                open(&s, &signed(&s, 9_000, None), EVENT, 9_000),
                Err(Refused::Signature(_))
            ));
        }
        let key = AesKey::parse(KEY).unwrap();
        let foreign = crypto::encrypt(&key, EVENT, "wxsomeoneelse");
        let body =
            format!("<xml><ToUserName>gh_1</ToUserName><Encrypt><![CDATA[{foreign}]]></Encrypt></xml>");
        let q = signed(&s, 9_000, Some(&foreign));
        assert!(
            matches!(open(&s, &q, &body, 9_000), Err(Refused::Signature(_))),
            "another appid"
        );
        // A tampered ciphertext fails its msg_signature before decryption
        // (CBC itself would not notice: the signature is the integrity).
        let genuine = crypto::encrypt(&key, EVENT, "wxsandbox");
        let mut tampered = genuine.clone().into_bytes();
        tampered[30] = if tampered[30] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let body = format!(r#"{{"Encrypt":"{tampered}"}}"#);
        let q = signed(&s, 9_000, Some(&genuine));
        assert!(matches!(open(&s, &q, &body, 9_000), Err(Refused::Signature(_))));
    }
}
