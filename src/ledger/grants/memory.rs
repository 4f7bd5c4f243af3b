//! The embedded grant ledger: grant books in process memory, one lock per
//! shard of openids, the rules of [`super::book`], the process clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::book::{GrantBook, RawGrantEvent, Secs, Tpl};
use super::dictionary::Dictionary;
use super::{
    Accept, GrantAddOutcome, GrantEvent, GrantHoldings, GrantLedger, GrantReservation, GrantReserveOutcome,
    GrantSettings, GrantSettleOutcome, Holding,
};
use crate::clock::{Clock, SystemClock};
use crate::domain::{OpenId, TemplateId};
use crate::ledger::{LeaseId, LedgerError, Settle, instant};

const SHARDS: usize = 64;
/// Every this many writes to a shard, books past their retention are
/// dropped, as Redis would expire their keys.
const PURGE_EVERY: u32 = 4096;

#[derive(Default)]
struct Shard {
    /// The book and when it stops being kept.
    books: HashMap<OpenId, (GrantBook, Secs)>,
    writes: u32,
}

pub struct MemoryGrants {
    settings: GrantSettings,
    clock: Arc<dyn Clock>,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    dictionary: Mutex<Dictionary>,
}

impl MemoryGrants {
    pub fn new(settings: GrantSettings) -> Self {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    pub fn with_clock(settings: GrantSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            dictionary: Mutex::default(),
        }
    }

    fn number(&self, template: &TemplateId) -> Result<Tpl, LedgerError> {
        lock(&self.dictionary)
            .assign(template)
            .ok_or_else(|| LedgerError::Unavailable("the template dictionary is full".into()))
    }

    fn events(&self, raw: &[RawGrantEvent]) -> Vec<GrantEvent> {
        let dictionary = lock(&self.dictionary);
        raw.iter()
            .filter_map(|event| {
                let template = dictionary.template(event.template())?.clone();
                Some(GrantEvent::named(*event, template))
            })
            .collect()
    }

    /// Runs `op` on the openid's book under its shard lock: lapsed leases
    /// first, the retention renewed after (or the book dropped when empty).
    fn write<T>(
        &self,
        openid: &OpenId,
        op: impl FnOnce(&mut GrantBook, Secs, &mut Vec<RawGrantEvent>) -> T,
    ) -> (T, Vec<RawGrantEvent>) {
        let now = self.clock.now().timestamp();
        let keep = i64::try_from(self.settings.retention.as_secs()).unwrap_or(i64::MAX / 4);
        let mut shard = lock(&self.shards[self.shard_of(openid)]);
        shard.writes = shard.writes.wrapping_add(1);
        if shard.writes.is_multiple_of(PURGE_EVERY) {
            shard.books.retain(|_, (_, until)| *until > now);
        }
        let mut book = match shard.books.remove(openid) {
            Some((book, until)) if until > now => book,
            _ => GrantBook::default(),
        };
        let mut events = Vec::new();
        book.housekeep(now, &mut events);
        let result = op(&mut book, now, &mut events);
        if !(book.entries.is_empty() && book.leases.is_empty()) {
            let last_deadline = book.leases.iter().map(|l| l.deadline).max().unwrap_or(now);
            shard
                .books
                .insert(openid.clone(), (book, (now + keep).max(last_deadline)));
        }
        (result, events)
    }

    fn shard_of(&self, openid: &OpenId) -> usize {
        (self.hasher.hash_one(openid) as usize) % SHARDS
    }
}

impl Default for MemoryGrants {
    fn default() -> Self {
        Self::new(GrantSettings::default())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn hold_secs(hold: Duration) -> Secs {
    i64::try_from(hold.as_secs()).unwrap_or(i64::MAX / 4)
}

#[async_trait]
impl GrantLedger for MemoryGrants {
    async fn add_accepts(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, Accept)],
    ) -> Result<GrantAddOutcome, LedgerError> {
        let numbered = batch
            .iter()
            .map(|(t, accept)| Ok((self.number(t)?, *accept)))
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let cap = self.settings.max_per_template;
        let (held, raw) = self.write(openid, |book, _, events| book.add(&numbered, cap, events));
        Ok(GrantAddOutcome {
            held: held.into_iter().map(Holding::of).collect(),
            events: self.events(&raw),
        })
    }

    async fn reserve_for(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError> {
        let number = self.number(template)?;
        let ((taken, left), raw) = self.write(openid, |book, now, events| {
            let deadline = now.saturating_add(hold_secs(hold));
            let taken = book.reserve(number, long_term, *lease.as_bytes(), deadline, events);
            (taken, Holding::of(book.held(number)))
        });
        let reservation = match taken {
            None => None,
            Some(taken) => Some(GrantReservation {
                lease,
                template: lock(&self.dictionary)
                    .template(taken.template)
                    .cloned()
                    .ok_or_else(|| LedgerError::Corrupt("unnumbered template".into()))?,
                deadline: instant(taken.deadline),
            }),
        };
        Ok(GrantReserveOutcome {
            reservation,
            left,
            events: self.events(&raw),
        })
    }

    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError> {
        let retention = hold_secs(self.settings.retention);
        let ((settled, _), raw) = self.write(openid, |book, now, events| {
            book.settle(*lease.as_bytes(), how, now.saturating_add(retention), events)
        });
        Ok(GrantSettleOutcome {
            settled,
            events: self.events(&raw),
        })
    }

    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError> {
        let number = self.number(template)?;
        let (_, raw) = self.write(openid, |book, _, events| book.burn_all(number, events));
        Ok(self.events(&raw))
    }

    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError> {
        let now = self.clock.now().timestamp();
        let book = {
            let shard = lock(&self.shards[self.shard_of(openid)]);
            match shard.books.get(openid) {
                Some((book, until)) if *until > now => book.clone(),
                _ => GrantBook::default(),
            }
        };
        let mut book = book;
        book.housekeep(now, &mut Vec::new());
        let dictionary = lock(&self.dictionary);
        let mut holdings = GrantHoldings {
            leased: book.leased_grants(),
            ..GrantHoldings::default()
        };
        for (number, count) in &book.entries {
            let Some(template) = dictionary.template(*number) else {
                continue;
            };
            holdings.hold(template.clone(), *count);
        }
        Ok(holdings)
    }
}
