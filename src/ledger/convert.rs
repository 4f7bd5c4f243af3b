//! Turns the book's second-based results (from [`super::book`] directly or
//! decoded from a Lua reply) into the public outcome types, so both ledgers
//! answer through the same code.

use chrono::{DateTime, Utc};

use super::book::{Book, Event, ItemStatus, Lease, SettleResult};
use super::{
    AddOutcome, AddStatus, Holding, Holdings, LeaseId, LedgerError, LedgerEvent, Reservation, ReserveOutcome,
    SettleOutcome, Settled,
};

pub(crate) fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn events(events: &[Event]) -> Vec<LedgerEvent> {
    events
        .iter()
        .map(|event| match *event {
            Event::Collected { kind, uses, expires } => LedgerEvent::Collected {
                kind,
                uses,
                expires_at: time(expires),
            },
            Event::Spent { kind, expires } => LedgerEvent::Spent {
                kind,
                expires_at: time(expires),
            },
            Event::Burned { kind, uses, expires } => LedgerEvent::Burned {
                kind,
                uses,
                expires_at: time(expires),
            },
            Event::Refunded { kind, expires } => LedgerEvent::Refunded {
                kind,
                expires_at: time(expires),
            },
            Event::Evicted { kind, uses, expires } => LedgerEvent::Evicted {
                kind,
                uses,
                expires_at: time(expires),
            },
            Event::Reach { from, to } => LedgerEvent::Reach {
                from: from.map(time),
                to: to.map(time),
            },
        })
        .collect()
}

pub(crate) fn add_outcome(
    statuses: &[ItemStatus],
    evicted: u32,
    available: u32,
    raw_events: &[Event],
) -> AddOutcome {
    AddOutcome {
        items: statuses
            .iter()
            .map(|s| match s {
                ItemStatus::Accepted => AddStatus::Accepted,
                ItemStatus::Duplicate => AddStatus::Duplicate,
                ItemStatus::Expired => AddStatus::Expired,
            })
            .collect(),
        evicted,
        available_sends: available,
        events: events(raw_events),
    }
}

pub(crate) fn reserve_outcome(
    taken: Option<Lease>,
    raw_events: &[Event],
) -> Result<ReserveOutcome, LedgerError> {
    let reservation = match taken {
        None => None,
        Some(lease) => Some(Reservation {
            lease: LeaseId::from_bytes(lease.id),
            kind: lease.kind,
            id: lease
                .key
                .decode()
                .ok_or_else(|| LedgerError::Corrupt("stored credential id".into()))?,
            expires_at: time(lease.expires),
            deadline: time(lease.deadline),
        }),
    };
    Ok(ReserveOutcome {
        reservation,
        events: events(raw_events),
    })
}

pub(crate) fn settle_outcome(result: SettleResult, raw_events: &[Event]) -> SettleOutcome {
    let settled = match result {
        SettleResult::Spent => Settled::Spent,
        SettleResult::Burned(uses) => Settled::Burned { uses },
        SettleResult::Refunded => Settled::Refunded,
        SettleResult::Lapsed => Settled::Lapsed,
        SettleResult::UnknownLease => Settled::UnknownLease,
    };
    SettleOutcome {
        settled,
        events: events(raw_events),
    }
}

pub(crate) fn holdings(book: &Book) -> Holdings {
    Holdings {
        credentials: book
            .entries
            .iter()
            .filter(|e| e.uses_left > 0)
            .map(|e| Holding {
                kind: e.kind,
                uses_left: e.uses_left,
                expires_at: time(e.expires),
            })
            .collect(),
        leased: book.leases.len() as u32,
    }
}
