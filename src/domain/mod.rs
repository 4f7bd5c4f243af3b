//! Value types of the product, each parsed once at the edge and valid by
//! construction inside: who a credential belongs to ([`OpenId`]), what it is
//! ([`CredentialKind`], [`CredentialId`]) and when it stops being usable
//! ([`ExpiryPolicy`]).
//!
//! Nothing here does I/O or knows about HTTP or Redis.

mod credential;
mod expiry;
mod openid;
pub mod subscribe_data;
mod template;

pub use credential::{CredentialId, CredentialKind, IdRejection, RejectReason};
pub use expiry::{CREDENTIAL_VALIDITY, ExpiryPolicy};
pub use openid::{InvalidOpenId, OpenId};
pub use template::{IdempotencyKey, InvalidIdempotencyKey, InvalidTemplateId, TemplateId};

/// WeChat's identifier alphabet: 1 to `max_len` bytes of `[A-Za-z0-9_-]`.
/// Openids, credential ids and template ids use it, and nothing in it can
/// break a Redis hash tag, a header or a log line.
pub fn is_identifier(raw: &str, max_len: usize) -> bool {
    !raw.is_empty()
        && raw.len() <= max_len
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
