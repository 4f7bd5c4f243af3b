//! The embedded ledger: books in process memory, one lock per shard of
//! openids. Same rules as Redis (they live in [`super::book`]); its clock is
//! the process's. Kept on a [`Space`] of the embedded store's disk, every
//! changed book is queued to it (packed as in Redis) in the order it was
//! changed, and the books are read back at start; without one, nothing
//! survives a restart.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::book::{Book, reach_moved};
use super::packed::{decode_book, encode_book};
use super::stored_id::StoredId;
use super::{
    AddOutcome, Holdings, LeaseId, Ledger, LedgerError, LedgerEvent, LedgerSettings, NewCredential,
    ReserveOutcome, Settle, SettleOutcome,
};
use crate::clock::{Clock, SystemClock};
use crate::domain::OpenId;
use crate::store::{Change, Space};

const SHARDS: usize = 64;
/// Every this many writes to a shard, books that have ended are dropped, so
/// users who never come back do not hold memory forever.
const PURGE_EVERY: u32 = 4096;

#[derive(Default)]
struct Shard {
    books: HashMap<OpenId, Book>,
    writes: u32,
}

pub struct MemoryLedger {
    settings: LedgerSettings,
    clock: Arc<dyn Clock>,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    disk: Option<Space>,
}

impl MemoryLedger {
    pub fn new(settings: LedgerSettings) -> Self {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    pub fn with_clock(settings: LedgerSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            disk: None,
        }
    }

    /// The ledger kept on `space`: the books written there before are read
    /// back now, and every change is queued to it.
    pub fn kept_on(mut self, space: Space) -> Result<Self, LedgerError> {
        for (key, blob) in space.load()? {
            let openid = String::from_utf8(key)
                .ok()
                .and_then(|raw| OpenId::parse(&raw).ok())
                .ok_or_else(|| LedgerError::Corrupt("a stored openid is not one".into()))?;
            let book = decode_book(&blob)?;
            let shard_at = self.shard_of(&openid);
            lock(&self.shards[shard_at]).books.insert(openid, book);
        }
        self.disk = Some(space);
        Ok(self)
    }

    fn shard_of(&self, openid: &OpenId) -> usize {
        (self.hasher.hash_one(openid) as usize) % SHARDS
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Runs `op` on the openid's book under its shard lock, with the rules
    /// every write shares: housekeeping first, the reach event last, and the
    /// book stored back (or removed when empty), queued to the disk too when
    /// kept there.
    fn write<T>(
        &self,
        openid: &OpenId,
        op: impl FnOnce(&mut Book, i64, &mut Vec<LedgerEvent>) -> T,
    ) -> Result<(T, Vec<LedgerEvent>), LedgerError> {
        if let Some(disk) = &self.disk {
            disk.check()?;
        }
        let now = self.now();
        let mut changes: Vec<Change> = Vec::new();
        let mut shard = lock(&self.shards[self.shard_of(openid)]);
        shard.writes = shard.writes.wrapping_add(1);
        if shard.writes.is_multiple_of(PURGE_EVERY) {
            shard.books.retain(|openid, book| {
                let keep = book.ends_at().is_some_and(|end| end > now);
                if !keep {
                    changes.push((openid.as_str().as_bytes().to_vec(), None));
                }
                keep
            });
        }
        let stored = shard.books.remove(openid);
        let before = self.disk.as_ref().and(stored.as_ref()).map(encode_book);
        let mut book = stored.unwrap_or_default();
        let mut events = Vec::new();
        book.forget_if_ended(now);
        let reach_before = book.reach();
        book.housekeep(now, &mut events);
        let result = op(&mut book, now, &mut events);
        let reach_after = book.reach();
        if reach_before != reach_after {
            events.push(reach_moved(reach_before, reach_after));
        }
        let Some(disk) = &self.disk else {
            if book.ends_at().is_some() {
                shard.books.insert(openid.clone(), book);
            }
            return Ok((result, events));
        };
        let after = book.ends_at().map(|_| encode_book(&book));
        if after != before {
            changes.push((openid.as_str().as_bytes().to_vec(), after));
        }
        if book.ends_at().is_some() {
            shard.books.insert(openid.clone(), book);
        }
        // Queued while the shard is still locked: in the order it was made.
        disk.record(changes);
        Ok((result, events))
    }

    fn read(&self, openid: &OpenId) -> Option<Book> {
        lock(&self.shards[self.shard_of(openid)])
            .books
            .get(openid)
            .cloned()
    }
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new(LedgerSettings::default())
    }
}

/// A poisoned lock means a panic mid-operation; the book rules never leave a
/// book half-written between statements that can panic, so carry on.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError> {
        let items: Vec<_> = batch
            .iter()
            .map(|c| {
                (
                    c.kind,
                    StoredId::encode(&c.id),
                    c.collected_at.map(|t| t.timestamp()),
                )
            })
            .collect();
        let LedgerSettings {
            max_credentials_per_user: cap,
            expiry,
        } = self.settings;
        let ((items, evicted, available_sends), events) = self.write(openid, |book, now, events| {
            let (statuses, evicted) = book.add(&items, cap, &expiry, now, events);
            (statuses, evicted, book.available())
        })?;
        Ok(AddOutcome {
            items,
            evicted,
            available_sends,
            events,
        })
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: std::time::Duration,
    ) -> Result<ReserveOutcome, LedgerError> {
        let hold = i64::try_from(hold.as_secs()).unwrap_or(i64::MAX / 2);
        let (taken, events) = self.write(openid, |book, now, _| {
            book.reserve(*lease.as_bytes(), now.saturating_add(hold))
        })?;
        Ok(ReserveOutcome {
            reservation: taken.map(|lease| lease.reservation()).transpose()?,
            events,
        })
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError> {
        let (settled, events) = self.write(openid, |book, now, events| {
            book.settle(*lease.as_bytes(), how, now, events)
        })?;
        Ok(SettleOutcome { settled, events })
    }

    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError> {
        let mut book = self.read(openid).unwrap_or_default();
        book.housekeep(self.now(), &mut Vec::new());
        Ok(book.holdings())
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        match &self.disk {
            Some(disk) => Ok(disk.check()?),
            None => Ok(()),
        }
    }
}
