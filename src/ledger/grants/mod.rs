//! The subscribe grant ledger (docs/ledger.md): per (openid, template), how many
//! one-time grants the user gave in `wx.requestSubscribeMessage` and has not
//! used, spent two-phase like credentials (reserve → commit / burn / refund,
//! leases that lapse back). WeChat offers no way to count grants; this is
//! the count.
//!
//! A long-term template (WeChat's type 3) the user accepted is held as a
//! subscription instead of a count ([`Holding::LongTerm`]): its sends spend
//! nothing, and it lasts until the user turns it off or WeChat answers
//! 43101.
//!
//! [`GrantLedger`] is the contract; [`MemoryGrants`] (embedded) and
//! [`RedisGrants`] (the openid's `{prefix}:{<openid>}:g` key, beside its
//! credential book and under the same hash tag) implement it with identical
//! results, which one contract test suite checks. Every operation touches
//! one openid and is atomic for it; time is the store's, as for credentials.

mod book;
mod dictionary;
mod memory;
mod packed;
mod redis;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use book::Accept;
pub(crate) use book::{RawGrantEvent, STANDING};
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

/// What a user holds of one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// One-time grants (held, not leased).
    Grants(u32),
    /// A long-term subscription.
    LongTerm,
}

impl Holding {
    /// A stored count as what it means.
    pub(crate) fn of(count: u32) -> Self {
        if count == STANDING {
            Holding::LongTerm
        } else {
            Holding::Grants(count)
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
    /// A long-term subscription began, replacing `absorbed` one-time grants
    /// of the template.
    Subscribed {
        template: TemplateId,
        absorbed: u32,
    },
    /// A message sent on a long-term subscription (nothing spent).
    SentLongTerm {
        template: TemplateId,
    },
    /// A long-term subscription ended.
    Ended {
        template: TemplateId,
    },
}

impl GrantEvent {
    /// `raw`, its template number named `template`.
    pub(crate) fn named(raw: RawGrantEvent, template: TemplateId) -> Self {
        match raw {
            RawGrantEvent::Accepted { grants, .. } => GrantEvent::Accepted { template, grants },
            RawGrantEvent::Capped { grants, .. } => GrantEvent::Capped { template, grants },
            RawGrantEvent::Spent { .. } => GrantEvent::Spent { template },
            RawGrantEvent::Burned { grants, .. } => GrantEvent::Burned { template, grants },
            RawGrantEvent::Refunded { .. } => GrantEvent::Refunded { template },
            RawGrantEvent::Subscribed { absorbed, .. } => GrantEvent::Subscribed { template, absorbed },
            RawGrantEvent::SentLongTerm { .. } => GrantEvent::SentLongTerm { template },
            RawGrantEvent::Ended { .. } => GrantEvent::Ended { template },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantAddOutcome {
    /// What is now held of each template of the batch, in batch order.
    pub held: Vec<Holding>,
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
    /// What the user holds of the template after this reserve.
    pub left: Holding,
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
    /// Grants held per one-time template (templates with none are left out).
    pub templates: BTreeMap<TemplateId, u32>,
    /// Long-term templates the user is subscribed to.
    pub long_term: BTreeSet<TemplateId>,
    /// Grants currently held by unsettled leases.
    pub leased: u32,
}

impl GrantHoldings {
    /// Notes a stored entry: a count, or a subscription.
    pub(crate) fn hold(&mut self, template: TemplateId, count: u32) {
        match Holding::of(count) {
            Holding::LongTerm => {
                self.long_term.insert(template);
            }
            Holding::Grants(0) => {}
            Holding::Grants(n) => {
                self.templates.insert(template, n);
            }
        }
    }
}

#[async_trait]
pub trait GrantLedger: Send + Sync + 'static {
    /// Applies the accepts of each template (a template may appear once):
    /// one-time grants up to the per-template cap, long-term templates as
    /// subscriptions (which absorb the template's one-time grants, and
    /// later one-time accepts of it).
    async fn add_accepts(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, Accept)],
    ) -> Result<GrantAddOutcome, LedgerError>;

    /// Adds `accepts` one-time grants of each template.
    async fn add_grants(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, u32)],
    ) -> Result<GrantAddOutcome, LedgerError> {
        let batch: Vec<(TemplateId, Accept)> = batch
            .iter()
            .map(|(template, n)| (template.clone(), Accept::OneTime(*n)))
            .collect();
        self.add_accepts(openid, &batch).await
    }

    /// Takes one grant of `template` under `lease` for `hold`, or leases
    /// the user's long-term subscription to it without spending anything.
    /// `long_term` says the account's list names the template long-term:
    /// one-time grants the user holds of it become the subscription. Calling
    /// it again with the same lease returns the same reservation.
    async fn reserve_for(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError>;

    /// [`Self::reserve_for`] a template not known to be long-term.
    async fn reserve_grant(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError> {
        self.reserve_for(openid, template, false, lease, hold).await
    }

    /// Ends a lease: commit spends the grant, refund gives it back, burn
    /// drops every grant of its template (WeChat's 43101: the user
    /// cancelled). On a long-term subscription a commit and a refund change
    /// nothing, and a burn ends it.
    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError>;

    /// Drops every grant of `template`, or ends the subscription to it (the
    /// user turned it off), and cancels its leases.
    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError>;

    /// What the openid holds now, without changing anything.
    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError>;
}
