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
use crate::domain::CredentialKind;

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

/// Events in seconds; [`super::LedgerEvent`] is built from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Collected {
        kind: CredentialKind,
        uses: u8,
        expires: Secs,
    },
    Spent {
        kind: CredentialKind,
        expires: Secs,
    },
    Burned {
        kind: CredentialKind,
        uses: u8,
        expires: Secs,
    },
    Refunded {
        kind: CredentialKind,
        expires: Secs,
    },
    Evicted {
        kind: CredentialKind,
        uses: u8,
        expires: Secs,
    },
    Reach {
        from: Option<Secs>,
        to: Option<Secs>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemStatus {
    Accepted,
    Duplicate,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettleMode {
    Commit,
    Burn,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettleResult {
    Spent,
    Burned(u8),
    Refunded,
    Lapsed,
    UnknownLease,
}

/// Credentials sorted by (expiry, stored id); leases in the order taken.
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

    fn insert_sorted(&mut self, entry: Entry) {
        let at = self
            .entries
            .partition_point(|e| (e.expires, &e.key) < (entry.expires, &entry.key));
        self.entries.insert(at, entry);
    }

    /// Rule 1: a book that has ended is empty, as its Redis key would be.
    pub fn forget_if_ended(&mut self, now: Secs) {
        if self.ends_at().is_none_or(|end| end <= now) {
            *self = Book::default();
        }
    }

    /// Rules 1–3 of the module doc, in that order.
    pub fn housekeep(&mut self, now: Secs, events: &mut Vec<Event>) {
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
    fn return_use(&mut self, lease: &Lease, now: Secs, events: &mut Vec<Event>) -> SettleResult {
        let entry = self.leased_entry(lease).filter(|e| e.expires > now);
        match entry {
            None => SettleResult::Lapsed,
            Some(entry) if entry.burned => {
                events.push(Event::Burned {
                    kind: lease.kind,
                    uses: 1,
                    expires: lease.expires,
                });
                SettleResult::Burned(1)
            }
            Some(entry) => {
                entry.uses_left += 1;
                events.push(Event::Refunded {
                    kind: lease.kind,
                    expires: lease.expires,
                });
                SettleResult::Refunded
            }
        }
    }

    pub fn add(
        &mut self,
        batch: &[(CredentialKind, StoredId, Secs)],
        cap: u32,
        now: Secs,
        events: &mut Vec<Event>,
    ) -> (Vec<ItemStatus>, u32) {
        let mut statuses = Vec::with_capacity(batch.len());
        for (kind, key, expires) in batch {
            let status = if *expires <= now {
                ItemStatus::Expired
            } else if self.position(key).is_some() {
                ItemStatus::Duplicate
            } else {
                let uses = kind.uses();
                self.insert_sorted(Entry {
                    expires: *expires,
                    kind: *kind,
                    uses_left: uses,
                    burned: false,
                    key: key.clone(),
                });
                events.push(Event::Collected {
                    kind: *kind,
                    uses,
                    expires: *expires,
                });
                ItemStatus::Accepted
            };
            statuses.push(status);
        }
        let evicted = self.evict_over(cap, events);
        self.trim_tombstones(cap);
        (statuses, evicted)
    }

    /// Evicts the soonest-expiring live credentials that no lease holds
    /// until at most `cap` are live.
    fn evict_over(&mut self, cap: u32, events: &mut Vec<Event>) -> u32 {
        let is_live = |book: &Book, e: &Entry| e.uses_left > 0 || book.leased_uses(e) > 0;
        let live = self.entries.iter().filter(|e| is_live(self, e)).count();
        let mut excess = live.saturating_sub(cap as usize);
        let mut evicted = 0;
        let mut at = 0;
        while excess > 0 && at < self.entries.len() {
            let entry = &self.entries[at];
            if entry.uses_left > 0 && self.leased_uses(entry) == 0 {
                events.push(Event::Evicted {
                    kind: entry.kind,
                    uses: entry.uses_left,
                    expires: entry.expires,
                });
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

    /// Takes one use under `lease_id`, or returns the lease if it exists.
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
        mode: SettleMode,
        now: Secs,
        events: &mut Vec<Event>,
    ) -> (SettleResult, Option<Lease>) {
        let Some(at) = self.leases.iter().position(|l| l.id == lease_id) else {
            return (SettleResult::UnknownLease, None);
        };
        let lease = self.leases.remove(at);
        let result = match mode {
            SettleMode::Commit => {
                events.push(Event::Spent {
                    kind: lease.kind,
                    expires: lease.expires,
                });
                SettleResult::Spent
            }
            SettleMode::Refund => self.return_use(&lease, now, events),
            SettleMode::Burn => {
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
                events.push(Event::Burned {
                    kind: lease.kind,
                    uses,
                    expires: lease.expires,
                });
                SettleResult::Burned(uses)
            }
        };
        (result, Some(lease))
    }
}
