//! Value types of the product, each parsed once at the edge and valid by
//! construction inside: who a credential belongs to ([`OpenId`]), what it is
//! ([`CredentialKind`], [`CredentialId`]), when it stops being usable
//! ([`ExpiryPolicy`]), and which channel a message goes out on and how its
//! send ended ([`ChannelKind`], [`Outcome`]).
//!
//! Nothing here does I/O or knows about HTTP or Redis.

mod app;
mod channel;
mod credential;
mod expiry;
mod openid;
mod target;
mod template;

pub use app::{DEFAULT_APP, is_app_name};
pub use channel::{ChannelKind, Outcome, TemplateDialect, WechatAccount};
pub use credential::{CredentialId, CredentialKind, IdRejection, RejectReason};
pub use expiry::{CREDENTIAL_VALIDITY, ExpiryPolicy};
pub use openid::{InvalidOpenId, OpenId};
pub use target::{InvalidTarget, parse_target, printable};
pub use template::{IdempotencyKey, InvalidIdempotencyKey, InvalidTemplateId, TemplateId};
pub use wechat_wire::subscribe_data;

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
