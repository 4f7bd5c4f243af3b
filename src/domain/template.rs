//! What a send request names: the WeChat template and the request's
//! idempotency key.

use std::fmt;

/// A WeChat template id: 1 to 128 characters of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template_id must be 1 to 128 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidTemplateId;

impl TemplateId {
    /// Longest template id accepted.
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidTemplateId> {
        let ok = super::is_identifier(raw, Self::MAX_LEN);
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidTemplateId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateId({})", self.0)
    }
}

/// An `Idempotency-Key` header: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 128 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        let ok = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids() {
        assert!(TemplateId::parse("bDmywsp2oEHjwAadTGKkUHpC0RgBVSqDHSU1R1Gk-Ac").is_ok());
        for bad in ["", "a b", "a{b}", &"a".repeat(129)] {
            assert!(TemplateId::parse(bad).is_err());
        }
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse("order-42 shipped").is_ok());
        for bad in ["", "a\nb", "é", &"k".repeat(129)] {
            assert!(IdempotencyKey::parse(bad).is_err());
        }
    }
}
