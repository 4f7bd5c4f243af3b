//! [`SharedStore`] and [`UsageStore`] for a single process: a map with
//! expiry times, and the report days.

use std::collections::HashMap;
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
    Claimed(String),
    Done(String, String),
    /// Fingerprint, pending state, and until when a request holds it.
    Pending(String, String, Option<DateTime<Utc>>),
}

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (Entry, DateTime<Utc>)>>,
    usage: Mutex<UsageDeltas>,
}

impl MemoryStore {
    /// Runs `f` on the live entries (expired ones are dropped first).
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Entry, DateTime<Utc>)>, DateTime<Utc>) -> T) -> T {
        let now = Utc::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, until)| *until > now);
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
            if matches!(e.get(&key), Some((Entry::Claimed(f), _)) if f == fingerprint) {
                e.remove(&key);
            }
        });
        Ok(())
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
