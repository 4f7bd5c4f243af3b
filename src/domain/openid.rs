//! The WeChat user identifier a credential belongs to.

use std::fmt;

/// Longest openid accepted. WeChat's are 28 characters; the headroom admits
/// other apps' formats without letting a caller grow Redis keys unboundedly.
const MAX_LEN: usize = 64;

/// A WeChat openid: 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// The alphabet matters beyond tidiness: the openid becomes a Redis hash tag
/// (`fl:{openid}`), so braces, spaces or control characters must never reach
/// the store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("openid must be 1 to {MAX_LEN} characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidOpenId;

impl OpenId {
    /// Longest openid accepted.
    pub const MAX_LEN: usize = MAX_LEN;

    pub fn parse(raw: &str) -> Result<Self, InvalidOpenId> {
        let well_formed = super::is_identifier(raw, MAX_LEN);
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidOpenId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenId({})", self.0)
    }
}

impl TryFrom<&str> for OpenId {
    type Error = InvalidOpenId;
    fn try_from(raw: &str) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_wechat_shaped_openids() {
        assert!(OpenId::parse("oYx8J5Xo0K2mC4_d-9qLzWc1aBcD").is_ok());
        assert!(OpenId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_what_could_break_a_hash_tag_or_a_log_line() {
        for bad in ["", "a{b}", "a b", "a\r\nb", "ä", "x:y", &"a".repeat(65)] {
            assert_eq!(OpenId::parse(bad), Err(InvalidOpenId), "{bad:?}");
        }
    }
}
