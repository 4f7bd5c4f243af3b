//! The numbers the Lua scripts and Rust exchange, named once here. The
//! scripts do not spell them: [`lua_prelude`] defines them as Lua locals
//! ahead of every script, so the two sides cannot drift apart.

use super::grants::{RawGrantEvent, STANDING};
use super::{AddStatus, Settle, Settled};
use crate::domain::CredentialKind;

pub const KIND_FORM: i64 = 0;
pub const KIND_PREPAY: i64 = 1;

pub const ADD_ACCEPTED: i64 = 1;
pub const ADD_DUPLICATE: i64 = 2;
pub const ADD_EXPIRED: i64 = 3;

pub const SETTLE_COMMIT: i64 = 1;
pub const SETTLE_BURN: i64 = 2;
pub const SETTLE_REFUND: i64 = 3;
pub const SETTLE_HOLD: i64 = 4;

pub const SETTLED_SPENT: i64 = 1;
pub const SETTLED_BURNED: i64 = 2;
pub const SETTLED_REFUNDED: i64 = 3;
pub const SETTLED_LAPSED: i64 = 4;
pub const SETTLED_UNKNOWN_LEASE: i64 = 5;
pub const SETTLED_HELD: i64 = 6;

pub const EV_COLLECTED: i64 = 1;
pub const EV_SPENT: i64 = 2;
pub const EV_BURNED: i64 = 3;
pub const EV_REFUNDED: i64 = 4;
pub const EV_EVICTED: i64 = 5;
pub const EV_REACH: i64 = 6;

pub const GEV_ACCEPTED: i64 = 1;
pub const GEV_CAPPED: i64 = 2;
pub const GEV_SPENT: i64 = 3;
pub const GEV_BURNED: i64 = 4;
pub const GEV_REFUNDED: i64 = 5;
/// A long-term subscription began; the count is the one-time grants it absorbed.
pub const GEV_SUBSCRIBED: i64 = 6;
pub const GEV_SENT_LONG_TERM: i64 = 7;
pub const GEV_ENDED: i64 = 8;

/// `local NAME = value` for every constant above.
pub fn lua_prelude() -> String {
    let named = [
        ("KIND_FORM", KIND_FORM),
        ("KIND_PREPAY", KIND_PREPAY),
        ("ADD_ACCEPTED", ADD_ACCEPTED),
        ("ADD_DUPLICATE", ADD_DUPLICATE),
        ("ADD_EXPIRED", ADD_EXPIRED),
        ("SETTLE_COMMIT", SETTLE_COMMIT),
        ("SETTLE_BURN", SETTLE_BURN),
        ("SETTLE_REFUND", SETTLE_REFUND),
        ("SETTLE_HOLD", SETTLE_HOLD),
        ("SETTLED_SPENT", SETTLED_SPENT),
        ("SETTLED_BURNED", SETTLED_BURNED),
        ("SETTLED_REFUNDED", SETTLED_REFUNDED),
        ("SETTLED_LAPSED", SETTLED_LAPSED),
        ("SETTLED_UNKNOWN_LEASE", SETTLED_UNKNOWN_LEASE),
        ("SETTLED_HELD", SETTLED_HELD),
        ("EV_COLLECTED", EV_COLLECTED),
        ("EV_SPENT", EV_SPENT),
        ("EV_BURNED", EV_BURNED),
        ("EV_REFUNDED", EV_REFUNDED),
        ("EV_EVICTED", EV_EVICTED),
        ("EV_REACH", EV_REACH),
        ("GEV_ACCEPTED", GEV_ACCEPTED),
        ("GEV_CAPPED", GEV_CAPPED),
        ("GEV_SPENT", GEV_SPENT),
        ("GEV_BURNED", GEV_BURNED),
        ("GEV_REFUNDED", GEV_REFUNDED),
        ("GEV_SUBSCRIBED", GEV_SUBSCRIBED),
        ("GEV_SENT_LONG_TERM", GEV_SENT_LONG_TERM),
        ("GEV_ENDED", GEV_ENDED),
        // The count of a grant entry that is a long-term subscription.
        ("GRANT_STANDING", i64::from(STANDING)),
    ];
    named
        .iter()
        .map(|(name, value)| format!("local {name} = {value}\n"))
        .collect()
}

pub fn kind_code(kind: CredentialKind) -> i64 {
    match kind {
        CredentialKind::Form => KIND_FORM,
        CredentialKind::Prepay => KIND_PREPAY,
    }
}

pub fn kind_from(code: i64) -> Option<CredentialKind> {
    match code {
        KIND_FORM => Some(CredentialKind::Form),
        KIND_PREPAY => Some(CredentialKind::Prepay),
        _ => None,
    }
}

pub fn add_status_from(code: i64) -> Option<AddStatus> {
    match code {
        ADD_ACCEPTED => Some(AddStatus::Accepted),
        ADD_DUPLICATE => Some(AddStatus::Duplicate),
        ADD_EXPIRED => Some(AddStatus::Expired),
        _ => None,
    }
}

pub fn settle_code(how: Settle) -> i64 {
    match how {
        Settle::Commit => SETTLE_COMMIT,
        Settle::Burn => SETTLE_BURN,
        Settle::Refund => SETTLE_REFUND,
        Settle::Hold => SETTLE_HOLD,
    }
}

/// `uses` is only read for a burn.
pub fn settled_from(code: i64, uses: u8) -> Option<Settled> {
    match code {
        SETTLED_SPENT => Some(Settled::Spent),
        SETTLED_BURNED => Some(Settled::Burned { uses }),
        SETTLED_REFUNDED => Some(Settled::Refunded),
        SETTLED_LAPSED => Some(Settled::Lapsed),
        SETTLED_UNKNOWN_LEASE => Some(Settled::UnknownLease),
        SETTLED_HELD => Some(Settled::Held),
        _ => None,
    }
}

/// A grant event as the grant scripts return it: `(code, template, grants)`.
pub fn grant_event_from(code: i64, template: u16, grants: u32) -> Option<RawGrantEvent> {
    Some(match code {
        GEV_ACCEPTED => RawGrantEvent::Accepted { template, grants },
        GEV_CAPPED => RawGrantEvent::Capped { template, grants },
        GEV_SPENT => RawGrantEvent::Spent { template },
        GEV_BURNED => RawGrantEvent::Burned { template, grants },
        GEV_REFUNDED => RawGrantEvent::Refunded { template },
        GEV_SUBSCRIBED => RawGrantEvent::Subscribed {
            template,
            absorbed: grants,
        },
        GEV_SENT_LONG_TERM => RawGrantEvent::SentLongTerm { template },
        GEV_ENDED => RawGrantEvent::Ended { template },
        _ => return None,
    })
}
