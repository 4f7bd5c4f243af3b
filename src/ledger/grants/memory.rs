//! The embedded grant ledger: grant books in process memory, one lock per
//! shard of openids, the rules of [`super::book`], the process clock. Kept
//! on a [`Space`] of the embedded store's disk (and one for its template
//! numbers), every change is queued to it in the order it was made, and
//! read back at start.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::book::{GrantBook, RawGrantEvent, Secs, Tpl};
use super::dictionary::Dictionary;
use super::packed;
use super::{
    Accept, GrantAddOutcome, GrantEvent, GrantHoldings, GrantLedger, GrantReservation, GrantReserveOutcome,
    GrantSettings, GrantSettleOutcome, Holding,
};
use crate::clock::{Clock, SystemClock};
use crate::domain::{OpenId, TemplateId};
use crate::ledger::{LeaseId, LedgerError, Settle, instant};
use crate::store::{Change, Space};

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
    disk: Option<GrantSpaces>,
}

/// Where a kept grant ledger writes: its books, and its template numbers.
struct GrantSpaces {
    books: Space,
    templates: Space,
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
            disk: None,
        }
    }

    /// The grant ledger kept on `books` (and its template numbers on
    /// `templates`): what they hold is read back now, and every change is
    /// queued to them.
    pub fn kept_on(mut self, books: Space, templates: Space) -> Result<Self, LedgerError> {
        let corrupt = |what: &str| LedgerError::Corrupt(format!("a stored {what} is not one"));
        {
            let mut dictionary = lock(&self.dictionary);
            for (number, template) in templates.load()? {
                let number = Tpl::from_be_bytes(number.try_into().map_err(|_| corrupt("template number"))?);
                let template = String::from_utf8(template)
                    .ok()
                    .and_then(|raw| TemplateId::parse(&raw).ok())
                    .ok_or_else(|| corrupt("template id"))?;
                dictionary.learn(template, number);
            }
        }
        let now = self.clock.now().timestamp();
        for (key, blob) in books.load()? {
            let openid = String::from_utf8(key)
                .ok()
                .and_then(|raw| OpenId::parse(&raw).ok())
                .ok_or_else(|| corrupt("openid"))?;
            let until = kept_until(&blob)?;
            let book = packed::decode(&blob, now)?;
            let shard_at = self.shard_of(&openid);
            lock(&self.shards[shard_at]).books.insert(openid, (book, until));
        }
        self.disk = Some(GrantSpaces { books, templates });
        Ok(self)
    }

    /// The template's number, numbering it (queued to the disk before any
    /// book that uses it, when kept there) if it is new.
    fn number(&self, template: &TemplateId) -> Result<Tpl, LedgerError> {
        let mut dictionary = lock(&self.dictionary);
        let known = dictionary.number(template);
        let number = dictionary
            .assign(template)
            .ok_or_else(|| LedgerError::Unavailable("the template dictionary is full".into()))?;
        if let (Some(disk), None) = (&self.disk, known) {
            let name = template.as_str().as_bytes().to_vec();
            disk.templates
                .record(vec![(number.to_be_bytes().to_vec(), Some(name))]);
        }
        Ok(number)
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
    /// first, the retention renewed after (or the book dropped when empty);
    /// queued to the disk too when kept there.
    fn write<T>(
        &self,
        openid: &OpenId,
        op: impl FnOnce(&mut GrantBook, Secs, &mut Vec<RawGrantEvent>) -> T,
    ) -> Result<(T, Vec<RawGrantEvent>), LedgerError> {
        if let Some(disk) = &self.disk {
            disk.books.check()?;
        }
        let now = self.clock.now().timestamp();
        let keep = i64::try_from(self.settings.retention.as_secs()).unwrap_or(i64::MAX / 4);
        let mut changes: Vec<Change> = Vec::new();
        let mut shard = lock(&self.shards[self.shard_of(openid)]);
        shard.writes = shard.writes.wrapping_add(1);
        if shard.writes.is_multiple_of(PURGE_EVERY) {
            shard.books.retain(|openid, (_, until)| {
                let keep = *until > now;
                if !keep {
                    changes.push((openid.as_str().as_bytes().to_vec(), None));
                }
                keep
            });
        }
        let stored = shard.books.remove(openid);
        let before = stored
            .as_ref()
            .filter(|_| self.disk.is_some())
            .map(|(book, until)| packed::encode(book, *until));
        let mut book = match stored {
            Some((book, until)) if until > now => book,
            _ => GrantBook::default(),
        };
        let mut events = Vec::new();
        book.housekeep(now, &mut events);
        let result = op(&mut book, now, &mut events);
        let mut after = None;
        if !(book.entries.is_empty() && book.leases.is_empty()) {
            let last_deadline = book.leases.iter().map(|l| l.deadline).max().unwrap_or(now);
            let until = (now + keep).max(last_deadline);
            if self.disk.is_some() {
                after = Some(packed::encode(&book, until));
            }
            shard.books.insert(openid.clone(), (book, until));
        }
        if let Some(disk) = &self.disk {
            if after != before {
                changes.push((openid.as_str().as_bytes().to_vec(), after));
            }
            // Queued while the shard is still locked: in order.
            disk.books.record(changes);
        }
        Ok((result, events))
    }

    fn shard_of(&self, openid: &OpenId) -> usize {
        (self.hasher.hash_one(openid) as usize) % SHARDS
    }
}

/// The "kept until" of a packed grant book.
fn kept_until(blob: &[u8]) -> Result<Secs, LedgerError> {
    let at: [u8; 4] = blob
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LedgerError::Corrupt("malformed grant book".into()))?;
    Ok(Secs::from(u32::from_be_bytes(at)))
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
        let mut numbered = Vec::with_capacity(batch.len());
        for (template, accept) in batch {
            numbered.push((self.number(template)?, *accept));
        }
        let cap = self.settings.max_per_template;
        let (held, raw) = self.write(openid, |book, _, events| book.add(&numbered, cap, events))?;
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
        })?;
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
        })?;
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
        let (_, raw) = self.write(openid, |book, _, events| book.burn_all(number, events))?;
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
