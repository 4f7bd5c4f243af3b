//! User session tokens: `st2.<app>.<appid>.<openid>.<expiry>.<signature>`,
//! signed with HMAC-SHA256 under `SESSION_SECRET`. Verified from the token
//! alone (no store round-trip); any instance holding the secret accepts any
//! other's. The app and its mini-program's appid are signed in, so a token
//! is good only for the app (and the WeChat account) that issued it: not
//! for another app, nor for a real instance when a sandbox issued it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::domain::OpenId;

const PREFIX: &str = "st2.";

/// Tokens of an earlier format (no app inside): refused, so the client logs
/// in again.
const EARLIER: &str = "st1.";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    /// The app that issued it, and that app's mini-program appid then.
    pub app: String,
    pub appid: String,
    pub openid: OpenId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session token is malformed")]
    Malformed,
    #[error("session token signature does not match")]
    BadSignature,
    #[error("session token has expired; log in again")]
    Expired,
}

pub struct SessionSigner {
    key: Secret,
    ttl: Duration,
}

impl SessionToken {
    /// Tells session tokens from API keys (API keys may not start this way).
    pub fn looks_like(bearer: &str) -> bool {
        bearer.starts_with(PREFIX) || bearer.starts_with(EARLIER)
    }
}

impl SessionSigner {
    pub fn new(key: Secret, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `openid` of `app`, whose mini-program is `appid`.
    pub fn issue(&self, app: &str, appid: &str, openid: &OpenId, now: DateTime<Utc>) -> String {
        let expiry = (now + self.ttl).timestamp();
        let payload = format!("{PREFIX}{app}.{appid}.{}.{expiry}", openid.as_str());
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<SessionToken, SessionError> {
        let (payload, signature) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| SessionError::Malformed)?;
        // Signature first: nothing of an unsigned token is trusted or parsed.
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| SessionError::BadSignature)?;
        let body = payload.strip_prefix(PREFIX).ok_or(SessionError::Malformed)?;
        let mut fields = body.split('.');
        let (Some(app), Some(appid), Some(openid), Some(expiry), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(SessionError::Malformed);
        };
        let openid = OpenId::parse(openid).map_err(|_| SessionError::Malformed)?;
        let expires_at = expiry
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(SessionError::Malformed)?;
        if expires_at <= now {
            return Err(SessionError::Expired);
        }
        Ok(SessionToken {
            app: app.to_owned(),
            appid: appid.to_owned(),
            openid,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> SessionSigner {
        SessionSigner::new(Secret::new(key), Duration::days(7))
    }

    #[test]
    fn round_trip() {
        let now = Utc::now();
        let openid = OpenId::parse("oAbc_123").unwrap();
        let token = signer("k1").issue("shop", "wx1111", &openid, now);
        let verified = signer("k1").verify(&token, now).unwrap();
        assert_eq!(verified.openid, openid);
        assert_eq!(
            (verified.app.as_str(), verified.appid.as_str()),
            ("shop", "wx1111")
        );
    }

    #[test]
    fn forged_tampered_and_expired_tokens_fail() {
        let now = Utc::now();
        let token = signer("k1").issue("default", "wxsandbox", &OpenId::parse("alice").unwrap(), now);
        assert_eq!(signer("k2").verify(&token, now), Err(SessionError::BadSignature));
        for (from, to) in [("alice", "mallory"), ("default", "shop"), ("wxsandbox", "wxreal")] {
            let tampered = token.replacen(from, to, 1);
            assert_eq!(
                signer("k1").verify(&tampered, now),
                Err(SessionError::BadSignature),
                "{from} -> {to}"
            );
        }
        assert_eq!(
            signer("k1").verify(&token, now + Duration::days(8)),
            Err(SessionError::Expired)
        );
        for garbage in [
            "st2.",
            "st2.x.y",
            "st2.alice.1.!!!",
            "",
            "st2.a.b.c.d",
            "st1.alice.1.x",
        ] {
            assert!(signer("k1").verify(garbage, now).is_err(), "{garbage}");
        }
    }
}
