//! What a credential is: a formId (1 send) or a prepay_id (3 sends), and the
//! rules that tell a usable id from a dev-tools mock or garbage.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest credential id accepted, in bytes.
const MAX_ID_LEN: usize = 128;

/// The literal formId WeChat dev tools hand out; it is never valid.
const DEV_TOOLS_MOCK: &str = "the formId is a mock one";

/// The two credentials WeChat accepts as `form_id` of a template message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// From a `<form report-submit>`: one send.
    Form,
    /// From a completed payment: three sends.
    Prepay,
}

impl CredentialKind {
    /// How many template messages one credential of this kind pays for.
    pub fn uses(self) -> u8 {
        match self {
            CredentialKind::Form => 1,
            CredentialKind::Prepay => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Form => "form",
            CredentialKind::Prepay => "prepay",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "form" => Some(CredentialKind::Form),
            "prepay" => Some(CredentialKind::Prepay),
            _ => None,
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a submitted id cannot become a credential. The variants are the
/// per-item rejection reasons of `POST /v1/credentials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRejection {
    /// Dev tools' mock string or a failed `wx.requestFormId` result.
    MockFormId,
    /// Empty, over 128 bytes, or characters outside `[A-Za-z0-9_-]`.
    InvalidId,
}

/// A formId or prepay_id exactly as WeChat issued it: 1 to 128 bytes of
/// `[A-Za-z0-9_-]`. It is sent back to WeChat byte for byte, so it is never
/// normalised.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId(String);

impl CredentialId {
    pub fn parse(raw: &str) -> Result<Self, IdRejection> {
        if is_mock(raw) {
            return Err(IdRejection::MockFormId);
        }
        let well_formed = super::is_identifier(raw, MAX_ID_LEN);
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdRejection::InvalidId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_mock(raw: &str) -> bool {
    raw == DEV_TOOLS_MOCK || raw == "undefined" || raw == "null" || raw.starts_with("requestFormId:fail")
}

/// Ids are secrets of a kind (they spend a user's messages): debug output
/// shows only a prefix.
impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(6).collect();
        write!(f, "CredentialId({shown}…)")
    }
}

/// Why one item of an ingest batch was not stored (stable API values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    MockFormId,
    InvalidId,
    Expired,
    InvalidKind,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MockFormId => "mock_form_id",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::Expired => "expired",
            RejectReason::InvalidKind => "invalid_kind",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_wechat() {
        assert_eq!(CredentialKind::Form.uses(), 1);
        assert_eq!(CredentialKind::Prepay.uses(), 3);
    }

    #[test]
    fn mock_ids_are_told_apart_from_invalid_ones() {
        for mock in [
            "the formId is a mock one",
            "undefined",
            "null",
            "requestFormId:fail timeout",
        ] {
            assert_eq!(CredentialId::parse(mock), Err(IdRejection::MockFormId));
        }
        for bad in ["", "a b", "x\ny", "id{1}", "é", &"a".repeat(129)] {
            assert_eq!(CredentialId::parse(bad), Err(IdRejection::InvalidId), "{bad:?}");
        }
    }

    #[test]
    fn real_ids_parse_unchanged() {
        for good in [
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "wx201410272009395522657a690389285100",
            &"Z".repeat(128),
        ] {
            assert_eq!(CredentialId::parse(good).unwrap().as_str(), good);
        }
    }
}
