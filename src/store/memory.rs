//! [`SharedStore`] and [`UsageStore`] for a single process: a map with
//! expiry times, and the report days. Expired entries are swept in expiry
//! order, a few at a time, so no call scans the whole map.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{
    DayCounters, KeyState, SharedStore, StoreError, StoredToken, TOTALS, USAGE_RETENTION_DAYS, UsageBatch,
    UsageDeltas, UsageStore, flush_marker,
};

enum Entry {
    Token(StoredToken),
    Lock(String),
    Cached(String),
    Claimed(String),
    Done(String, String),
    /// Fingerprint, pending state, and until when a request holds it.
    Pending(String, String, Option<DateTime<Utc>>),
}

/// Entries with their expiry, and an index of expiries soonest first.
#[derive(Default)]
struct Entries {
    map: HashMap<String, (Entry, DateTime<Utc>)>,
    /// Every expiry set, soonest first. One whose key was since replaced or
    /// removed is skipped when its time comes.
    by_expiry: BTreeSet<(DateTime<Utc>, String)>,
}

impl Entries {
    /// Drops the entries whose expiry has come, in expiry order: each
    /// expiry is visited once, so the cost is spread over the calls.
    fn sweep(&mut self, now: DateTime<Utc>) {
        while self.by_expiry.first().is_some_and(|(at, _)| *at <= now) {
            let Some((at, key)) = self.by_expiry.pop_first() else {
                break;
            };
            if self.map.get(&key).is_some_and(|(_, until)| *until == at) {
                self.map.remove(&key);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&(Entry, DateTime<Utc>)> {
        self.map.get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut (Entry, DateTime<Utc>)> {
        self.map.get_mut(key)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn insert(&mut self, key: String, value: (Entry, DateTime<Utc>)) {
        self.by_expiry.insert((value.1, key.clone()));
        self.map.insert(key, value);
    }

    fn remove(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// Whether idempotency key `key` is claimed or pending for a request
    /// whose body has `fingerprint` (not finished, not another body's).
    fn holds_key_for(&self, key: &str, fingerprint: &str) -> bool {
        matches!(self.get(key),
            Some((Entry::Claimed(f) | Entry::Pending(f, _, _), _)) if f == fingerprint)
    }
}

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<Entries>,
    usage: Mutex<UsageDeltas>,
}

impl MemoryStore {
    /// Runs `f` on the live entries (expired ones are dropped first).
    fn with<T>(&self, f: impl FnOnce(&mut Entries, DateTime<Utc>) -> T) -> T {
        let now = Utc::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.sweep(now);
        f(&mut entries, now)
    }
}

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1))
}

#[async_trait]
impl SharedStore for MemoryStore {
    async fn get_token(&self, appid: &str) -> Result<Option<StoredToken>, StoreError> {
        Ok(self.with(|e, _| match e.get(&format!("token:{appid}")) {
            Some((Entry::Token(t), _)) => Some(t.clone()),
            _ => None,
        }))
    }

    async fn put_token(&self, appid: &str, token: &StoredToken) -> Result<(), StoreError> {
        self.with(|e, _| {
            e.insert(
                format!("token:{appid}"),
                (Entry::Token(token.clone()), token.expires_at),
            )
        });
        Ok(())
    }

    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, StoreError> {
        Ok(self.with(|e, _| {
            let key = format!("token:{appid}");
            let matches = matches!(e.get(&key), Some((Entry::Token(t), _)) if t.token == failed);
            if matches {
                e.remove(&key);
            }
            matches
        }))
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with(|e, now| {
            let key = format!("lock:{name}");
            if e.contains_key(&key) {
                return false;
            }
            e.insert(key, (Entry::Lock(holder.to_owned()), until(now, ttl)));
            true
        }))
    }

    async fn get_cached(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|e, _| match e.get(&format!("cache:{name}")) {
            Some((Entry::Cached(value), _)) => Some(value.clone()),
            _ => None,
        }))
    }

    async fn put_cached(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.with(|e, now| {
            let entry = (Entry::Cached(value.to_owned()), until(now, ttl));
            e.insert(format!("cache:{name}"), entry)
        });
        Ok(())
    }

    async fn put_cached_if_absent(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with(|e, now| {
            let key = format!("cache:{name}");
            if e.contains_key(&key) {
                return false;
            }
            e.insert(key, (Entry::Cached(value.to_owned()), until(now, ttl)));
            true
        }))
    }

    async fn replace_cached(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|e, now| {
            let key = format!("cache:{name}");
            let current = match e.get(&key) {
                Some((Entry::Cached(current), _)) => Some(current.as_str()),
                _ => None,
            };
            if current != expected {
                return false;
            }
            e.insert(key, (Entry::Cached(value.to_owned()), until(now, ttl)));
            true
        }))
    }

    async fn drop_cached(&self, name: &str) -> Result<(), StoreError> {
        self.with(|e, _| e.remove(&format!("cache:{name}")));
        Ok(())
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.with(|e, _| {
            let key = format!("lock:{name}");
            if matches!(e.get(&key), Some((Entry::Lock(h), _)) if h == holder) {
                e.remove(&key);
            }
        });
        Ok(())
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        hold: Duration,
    ) -> Result<KeyState, StoreError> {
        Ok(self.with(|e, now| {
            let key = format!("idem:{key}");
            match e.get(&key) {
                None => {
                    e.insert(key, (Entry::Claimed(fingerprint.to_owned()), until(now, hold)));
                    KeyState::New
                }
                Some((Entry::Claimed(f), _)) if f == fingerprint => KeyState::InProgress,
                Some((Entry::Done(f, response), _)) if f == fingerprint => KeyState::Done(response.clone()),
                Some((Entry::Pending(f, state, claimed), _)) if f == fingerprint => {
                    if claimed.is_some_and(|until| until > now) {
                        return KeyState::InProgress;
                    }
                    let state = state.clone();
                    if let Some((Entry::Pending(_, _, claimed), _)) = e.get_mut(&key) {
                        *claimed = Some(until(now, hold));
                    }
                    KeyState::Pending(state)
                }
                Some(_) => KeyState::Mismatch,
            }
        }))
    }

    async fn finish_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        self.with(|e, now| {
            e.insert(
                format!("idem:{key}"),
                (
                    Entry::Done(fingerprint.to_owned(), response.to_owned()),
                    until(now, keep),
                ),
            )
        });
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.with(|e, _| {
            let key = format!("idem:{key}");
            if e.holds_key_for(&key, fingerprint) {
                e.remove(&key);
            }
        });
        Ok(())
    }

    async fn note_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        claim: Duration,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|e, now| {
            let key = format!("idem:{key}");
            let held = e.holds_key_for(&key, fingerprint);
            if held {
                let pending =
                    Entry::Pending(fingerprint.to_owned(), state.to_owned(), Some(until(now, claim)));
                e.insert(key, (pending, until(now, keep)));
            }
            held
        }))
    }

    async fn park_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        self.with(|e, now| {
            e.insert(
                format!("idem:{key}"),
                (
                    Entry::Pending(fingerprint.to_owned(), state.to_owned(), None),
                    until(now, keep),
                ),
            )
        });
        Ok(())
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        // The same retention as the Redis keys' TTL.
        if let Some(newest) = batch.deltas.keys().next_back().copied() {
            let oldest_kept = newest - chrono::Duration::days(USAGE_RETENTION_DAYS);
            usage.retain(|day, _| *day >= oldest_kept || *day == TOTALS);
        }
        let marker = flush_marker(&batch.source);
        let seq = i64::try_from(batch.seq).unwrap_or(i64::MAX);
        for (day, deltas) in &batch.deltas {
            let fields = usage.entry(*day).or_default();
            if fields.get(&marker).is_some_and(|applied| *applied >= seq) {
                continue;
            }
            for (field, delta) in deltas {
                *fields.entry(field.clone()).or_default() += delta;
            }
            fields.insert(marker.clone(), seq);
        }
        Ok(())
    }

    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, StoreError> {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        Ok(days
            .iter()
            .map(|day| usage.get(day).cloned().unwrap_or_default())
            .collect())
    }

    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), StoreError> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let Some(fields) = usage.get_mut(&day) else {
            return Ok(());
        };
        for prefix in fold {
            let (folded, kept): (DayCounters, DayCounters) =
                std::mem::take(fields).into_iter().partition(|(f, _)| {
                    f.strip_prefix(prefix)
                        .and_then(|r| r.strip_prefix('.'))
                        .is_some_and(|r| r != "all")
                });
            *fields = kept;
            let total: i64 = folded.values().sum();
            if !folded.is_empty() {
                *fields.entry(format!("{prefix}.all")).or_default() += total;
            }
        }
        fields.retain(|f, _| {
            !drop
                .iter()
                .any(|p| f.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> String {
        key.to_owned()
    }

    #[test]
    fn entries_leave_when_their_time_comes_and_replacements_keep_theirs() {
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut entries = Entries::default();
        entries.insert(entry("a"), (Entry::Lock("x".into()), at(10)));
        entries.insert(entry("b"), (Entry::Lock("y".into()), at(20)));
        // Replaced with a later expiry: the first expiry no longer applies.
        entries.insert(entry("a"), (Entry::Lock("z".into()), at(30)));
        entries.insert(entry("c"), (Entry::Lock("w".into()), at(5)));
        entries.remove("c");

        entries.sweep(at(10));
        assert!(entries.contains_key("a") && entries.contains_key("b"));
        entries.sweep(at(20));
        assert!(entries.contains_key("a") && !entries.contains_key("b"));
        entries.sweep(at(30));
        assert!(!entries.contains_key("a"));
        assert!(entries.by_expiry.is_empty(), "every expiry visited once");
    }
}
