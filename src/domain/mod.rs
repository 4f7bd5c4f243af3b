//! Value types of the product, each parsed once at the edge and valid by
//! construction inside: who a credential belongs to ([`OpenId`]), what it is
//! ([`CredentialKind`], [`CredentialId`]) and when it stops being usable
//! ([`ExpiryPolicy`]).
//!
//! Nothing here does I/O or knows about HTTP or Redis.

mod credential;
mod expiry;
mod openid;
mod template;

pub use credential::{CredentialId, CredentialKind, IdRejection, RejectReason};
pub use expiry::{CREDENTIAL_VALIDITY, ExpiryPolicy};
pub use openid::{InvalidOpenId, OpenId};
pub use template::{IdempotencyKey, InvalidIdempotencyKey, InvalidTemplateId, TemplateId};
