//! The subscribe grant ledger (docs/ledger.md): per (openid, template), how many
//! one-time grants the user gave in `wx.requestSubscribeMessage` and has not
//! used, spent two-phase like credentials (reserve → commit / burn / refund,
//! leases that lapse back). WeChat offers no way to count grants; this is
//! the count.
//!
//! [`GrantLedger`] is the contract; [`MemoryGrants`] (embedded) and
//! [`RedisGrants`] (the openid's `{prefix}:{<openid>}:g` key, beside its
//! credential book and under the same hash tag) implement it with identical
//! results, which one contract test suite checks. Every operation touches
//! one openid and is atomic for it; time is the store's, as for credentials.

mod book;
mod dictionary;
mod memory;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub(crate) use book::RawGrantEvent;
pub use dictionary::DICTIONARY_CAPACITY;
pub use memory::MemoryGrants;
pub use redis::RedisGrants;

use super::{LeaseId, LedgerError, Settle, Settled};
use crate::domain::{OpenId, TemplateId};

/// Settings every grant ledger applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantSettings {
    /// Grants one openid may hold of one template (held and leased).
    pub max_per_template: u32,
    /// How long an openid's grants are kept after their last change.
    pub retention: Duration,
}

impl Default for GrantSettings {
    fn default() -> Self {
        Self {
            max_per_template: 50,
            retention: Duration::from_secs(365 * 86_400),
        }
    }
}

/// A change to grants, as reports count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantEvent {
    Accepted {
        template: TemplateId,
        grants: u32,
    },
    /// Accepts over the per-template cap, not kept.
    Capped {
        template: TemplateId,
        grants: u32,
    },
    Spent {
        template: TemplateId,
    },
    Burned {
        template: TemplateId,
        grants: u32,
    },
    Refunded {
        template: TemplateId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantAddOutcome {
    /// Grants now held of each template of the batch, in batch order.
    pub held: Vec<u32>,
    pub events: Vec<GrantEvent>,
}

/// One grant taken under a lease until settled or `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantReservation {
    pub lease: LeaseId,
    pub template: TemplateId,
    pub deadline: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantReserveOutcome {
    /// `None`: no grant of that template; nothing was taken.
    pub reservation: Option<GrantReservation>,
    /// Grants of the template left after this reserve.
    pub left: u32,
    pub events: Vec<GrantEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSettleOutcome {
    pub settled: Settled,
    pub events: Vec<GrantEvent>,
}

/// What one openid holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantHoldings {
    /// Grants held per template (templates with none are left out).
    pub templates: BTreeMap<TemplateId, u32>,
    /// Grants currently held by unsettled leases.
    pub leased: u32,
}

#[async_trait]
pub trait GrantLedger: Send + Sync + 'static {
    /// Adds `accepts` grants of each template (a template may appear once),
    /// up to the per-template cap.
    async fn add_grants(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, u32)],
    ) -> Result<GrantAddOutcome, LedgerError>;

    /// Takes one grant of `template` under `lease` for `hold`. Calling it
    /// again with the same lease returns the same reservation.
    async fn reserve_grant(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError>;

    /// Ends a lease: commit spends the grant, refund gives it back, burn
    /// drops every grant of its template (WeChat's 43101: the user cancelled).
    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError>;

    /// Drops every grant of `template` (the user turned it off) and cancels
    /// its leases.
    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError>;

    /// What the openid holds now, without changing anything.
    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError>;
}
