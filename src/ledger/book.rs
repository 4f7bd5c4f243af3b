//! One openid's credentials and leases, and the rules every operation
//! applies to them. [`MemoryLedger`](super::MemoryLedger) runs these rules
//! directly; the Lua scripts in `scripts/` are a line-by-line translation
//! (same order of steps, same tie-breaks), and the contract and property
//! tests hold the two to identical answers.
//!
//! Times are unix seconds. Rules applied at the start of every write
//! (`housekeep`):
//! 1. a book whose every credential and lease has ended is empty (in Redis
//!    its key has expired);
//! 2. leases past their deadline are refunded (to a burned credential the
//!    use is burned instead; to an expired one it lapses);
//! 3. expired credentials are dropped.
//!
//! A credential whose uses are all gone stays as a tombstone until it
//! expires, so a re-posted id counts as a duplicate instead of coming back.

use super::stored_id::StoredId;
use super::{
    AddStatus, Holding, Holdings, LeaseId, LedgerError, LedgerEvent, Reservation, Settle, Settled, instant,
};
use crate::domain::{CredentialKind, ExpiryPolicy};

pub(crate) type Secs = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub expires: Secs,
    pub kind: CredentialKind,
    pub uses_left: u8,
    pub burned: bool,
    pub key: StoredId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub id: [u8; 8],
    pub deadline: Secs,
    pub expires: Secs,
    pub kind: CredentialKind,
    pub key: StoredId,
}

/// Events in the ledger's public form, built from seconds.
fn collected(kind: CredentialKind, uses: u8, expires: Secs) -> LedgerEvent {
    LedgerEvent::Collected {
        kind,
        uses,
        expires_at: instant(expires),
    }
}

fn spent(kind: CredentialKind, expires: Secs) -> LedgerEvent {
    LedgerEvent::Spent {
        kind,
        expires_at: instant(expires),
    }
}

fn burned(kind: CredentialKind, uses: u8, expires: Secs) -> LedgerEvent {
    LedgerEvent::Burned {
        kind,
        uses,
        expires_at: instant(expires),
    }
}

fn refunded(kind: CredentialKind, expires: Secs) -> LedgerEvent {
    LedgerEvent::Refunded {
        kind,
        expires_at: instant(expires),
    }
}

fn evicted_event(kind: CredentialKind, uses: u8, expires: Secs) -> LedgerEvent {
    LedgerEvent::Evicted {
        kind,
        uses,
        expires_at: instant(expires),
    }
}

pub(crate) fn reach_moved(from: Option<Secs>, to: Option<Secs>) -> LedgerEvent {
    LedgerEvent::Reach {
        from: from.map(instant),
        to: to.map(instant),
    }
}

/// Credentials sorted by expiry, those that expire together in the order
/// they were collected (the oldest credential is spent first even when
/// expiries round to the same instant); leases in the order taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Book {
    pub leases: Vec<Lease>,
    pub entries: Vec<Entry>,
}

impl Book {
    /// The instant after which nothing in the book matters: the key's TTL.
    pub fn ends_at(&self) -> Option<Secs> {
        let entries = self.entries.iter().map(|e| e.expires);
        let leases = self.leases.iter().map(|l| l.deadline.max(l.expires));
        entries.chain(leases).max()
    }

    /// The last instant the openid can be sent anything.
    pub fn reach(&self) -> Option<Secs> {
        self.entries
            .iter()
            .filter(|e| e.uses_left > 0)
            .map(|e| e.expires)
            .max()
    }

    pub fn available(&self) -> u32 {
        self.entries.iter().map(|e| u32::from(e.uses_left)).sum()
    }

    fn position(&self, key: &StoredId) -> Option<usize> {
        self.entries.iter().position(|e| &e.key == key)
    }

    /// The credential a lease was taken from. The expiry is part of the
    /// match: an id re-posted after its first incarnation expired is another
    /// credential, and must not receive the old one's uses.
    fn leased_entry(&mut self, lease: &Lease) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|e| e.key == lease.key && e.expires == lease.expires)
    }

    fn leased_uses(&self, entry: &Entry) -> usize {
        self.leases
            .iter()
            .filter(|l| l.key == entry.key && l.expires == entry.expires)
            .count()
    }

    /// After every credential that expires no later: ties stay in
    /// collection order.
    fn insert_sorted(&mut self, entry: Entry) {
        let at = self.entries.partition_point(|e| e.expires <= entry.expires);
        self.entries.insert(at, entry);
    }

    /// Rule 1: a book that has ended is empty, as its Redis key would be.
    pub fn forget_if_ended(&mut self, now: Secs) {
        if self.ends_at().is_none_or(|end| end <= now) {
            *self = Book::default();
        }
    }

    /// Rules 1–3 of the module doc, in that order.
    pub fn housekeep(&mut self, now: Secs, events: &mut Vec<LedgerEvent>) {
        self.forget_if_ended(now);
        let (stale, live): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|l| l.deadline <= now);
        self.leases = live;
        for lease in stale {
            self.return_use(&lease, now, events);
        }
        self.entries.retain(|e| e.expires > now);
    }

    /// Gives a leased use back to its credential, or accounts for why it
    /// cannot go back.
    fn return_use(&mut self, lease: &Lease, now: Secs, events: &mut Vec<LedgerEvent>) -> Settled {
        let entry = self.leased_entry(lease).filter(|e| e.expires > now);
        match entry {
            None => Settled::Lapsed,
            Some(entry) if entry.burned => {
                events.push(burned(lease.kind, 1, lease.expires));
                Settled::Burned { uses: 1 }
            }
            Some(entry) => {
                entry.uses_left += 1;
                events.push(refunded(lease.kind, lease.expires));
                Settled::Refunded
            }
        }
    }

    /// Adds a batch of `(kind, id, collected_at)`; expiries follow from
    /// `policy` and `now`.
    pub fn add(
        &mut self,
        batch: &[(CredentialKind, StoredId, Option<Secs>)],
        cap: u32,
        policy: &ExpiryPolicy,
        now: Secs,
        events: &mut Vec<LedgerEvent>,
    ) -> (Vec<AddStatus>, u32) {
        let mut statuses = Vec::with_capacity(batch.len());
        for (kind, key, collected_at) in batch {
            let expires = &policy.expires_at_secs(*collected_at, now);
            let status = if *expires <= now {
                AddStatus::Expired
            } else if self.position(key).is_some() {
                AddStatus::Duplicate
            } else {
                let uses = kind.uses();
                self.insert_sorted(Entry {
                    expires: *expires,
                    kind: *kind,
                    uses_left: uses,
                    burned: false,
                    key: key.clone(),
                });
                events.push(collected(*kind, uses, *expires));
                AddStatus::Accepted
            };
            statuses.push(status);
        }
        let evicted = self.evict_over(cap, events);
        self.trim_tombstones(cap);
        (statuses, evicted)
    }

    /// Evicts the soonest-expiring live credentials that no lease holds
    /// until at most `cap` are live.
    fn evict_over(&mut self, cap: u32, events: &mut Vec<LedgerEvent>) -> u32 {
        let is_live = |book: &Book, e: &Entry| e.uses_left > 0 || book.leased_uses(e) > 0;
        let live = self.entries.iter().filter(|e| is_live(self, e)).count();
        let mut excess = live.saturating_sub(cap as usize);
        let mut evicted = 0;
        let mut at = 0;
        while excess > 0 && at < self.entries.len() {
            let entry = &self.entries[at];
            if entry.uses_left > 0 && self.leased_uses(entry) == 0 {
                events.push(evicted_event(entry.kind, entry.uses_left, entry.expires));
                self.entries.remove(at);
                excess -= 1;
                evicted += 1;
            } else {
                at += 1;
            }
        }
        evicted
    }

    /// Tombstones only remember ids; beyond `cap` of them the soonest
    /// expiring are forgotten.
    fn trim_tombstones(&mut self, cap: u32) {
        let is_tombstone = |book: &Book, e: &Entry| e.uses_left == 0 && book.leased_uses(e) == 0;
        let tombstones = self.entries.iter().filter(|e| is_tombstone(self, e)).count();
        let mut excess = tombstones.saturating_sub(cap as usize);
        let mut at = 0;
        while excess > 0 && at < self.entries.len() {
            if is_tombstone(self, &self.entries[at]) {
                self.entries.remove(at);
                excess -= 1;
            } else {
                at += 1;
            }
        }
    }

    /// Takes one use under `lease_id` until `deadline`, or returns the lease
    /// if it exists.
    pub fn reserve(&mut self, lease_id: [u8; 8], deadline: Secs) -> Option<Lease> {
        if let Some(existing) = self.leases.iter().find(|l| l.id == lease_id) {
            return Some(existing.clone());
        }
        let entry = self.entries.iter_mut().find(|e| e.uses_left > 0)?;
        entry.uses_left -= 1;
        let lease = Lease {
            id: lease_id,
            deadline,
            expires: entry.expires,
            kind: entry.kind,
            key: entry.key.clone(),
        };
        self.leases.push(lease.clone());
        Some(lease)
    }

    pub fn settle(
        &mut self,
        lease_id: [u8; 8],
        how: Settle,
        now: Secs,
        events: &mut Vec<LedgerEvent>,
    ) -> Settled {
        let Some(at) = self.leases.iter().position(|l| l.id == lease_id) else {
            return Settled::UnknownLease;
        };
        if how == Settle::Hold {
            let lease = &mut self.leases[at];
            lease.deadline = lease.deadline.max(lease.expires);
            return Settled::Held;
        }
        let lease = self.leases.remove(at);
        match how {
            Settle::Commit => {
                events.push(spent(lease.kind, lease.expires));
                Settled::Spent
            }
            Settle::Refund => self.return_use(&lease, now, events),
            Settle::Burn | Settle::Hold => {
                let rest = match self.leased_entry(&lease) {
                    Some(entry) if !entry.burned => {
                        let rest = entry.uses_left;
                        entry.uses_left = 0;
                        entry.burned = true;
                        rest
                    }
                    _ => 0,
                };
                let uses = 1 + rest;
                events.push(burned(lease.kind, uses, lease.expires));
                Settled::Burned { uses }
            }
        }
    }
}

impl Lease {
    /// The lease as callers see it, with the credential id decoded.
    pub fn reservation(&self) -> Result<Reservation, LedgerError> {
        Ok(Reservation {
            lease: LeaseId::from_bytes(self.id),
            kind: self.kind,
            id: self
                .key
                .decode()
                .ok_or_else(|| LedgerError::Corrupt("stored credential id".into()))?,
            expires_at: instant(self.expires),
            deadline: instant(self.deadline),
        })
    }
}

impl Book {
    /// What a report shows of the book.
    pub fn holdings(&self) -> Holdings {
        Holdings {
            credentials: self
                .entries
                .iter()
                .filter(|e| e.uses_left > 0)
                .map(|e| Holding {
                    kind: e.kind,
                    uses_left: e.uses_left,
                    expires_at: instant(e.expires),
                })
                .collect(),
            leased: self.leases.len() as u32,
        }
    }
}
