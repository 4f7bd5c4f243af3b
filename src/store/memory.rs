//! [`SharedStore`] and [`UsageStore`] for a single process: a map with
//! expiry times, and the report days. Expired entries are swept in expiry
//! order, a few at a time, so no call scans the whole map. Kept on the
//! embedded store's disk, every changed entry and day is queued to it in
//! the order it was made, and read back at start.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use serde::{Deserialize, Serialize};

use super::disk::{Change, Space};
use super::{
    DayCounters, KeyState, SharedStore, StoreError, StoredToken, TOTALS, USAGE_RETENTION_DAYS, UsageBatch,
    UsageDeltas, UsageStore, flush_marker,
};

#[derive(Serialize, Deserialize)]
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
    /// Keys changed since the last [`Entries::take_touched`].
    touched: Vec<String>,
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
                self.touched.push(key);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&(Entry, DateTime<Utc>)> {
        self.map.get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut (Entry, DateTime<Utc>)> {
        let entry = self.map.get_mut(key);
        if entry.is_some() {
            self.touched.push(key.to_owned());
        }
        entry
    }

    fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn insert(&mut self, key: String, value: (Entry, DateTime<Utc>)) {
        self.by_expiry.insert((value.1, key.clone()));
        self.touched.push(key.clone());
        self.map.insert(key, value);
    }

    fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.touched.push(key.to_owned());
        }
    }

    /// The changed keys' new values (each once), for the disk.
    fn take_touched(&mut self) -> Vec<Change> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        touched
            .into_iter()
            .map(|key| {
                let value = self.map.get(&key).map(encode_entry);
                (key.into_bytes(), value)
            })
            .collect()
    }

    /// Whether idempotency key `key` is claimed or pending for a request
    /// whose body has `fingerprint` (not finished, not another body's).
    fn holds_key_for(&self, key: &str, fingerprint: &str) -> bool {
        matches!(self.get(key),
            Some((Entry::Claimed(f) | Entry::Pending(f, _, _), _)) if f == fingerprint)
    }
}

fn encode_entry(entry: &(Entry, DateTime<Utc>)) -> Vec<u8> {
    serde_json::to_vec(entry).unwrap_or_default()
}

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<Entries>,
    usage: Mutex<UsageDeltas>,
    disk: Option<StoreSpaces>,
}

/// Where a kept store writes: its entries, and its report days.
struct StoreSpaces {
    records: Space,
    usage: Space,
}

impl MemoryStore {
    /// The store kept on `records` (and its report days on `usage`): what
    /// they hold is read back now, and every change is queued to them.
    pub fn kept_on(mut self, records: Space, usage: Space) -> Result<Self, StoreError> {
        let now = Utc::now();
        {
            let entries = self.entries.get_mut().unwrap_or_else(|p| p.into_inner());
            for (key, value) in records.load()? {
                let key = String::from_utf8(key).map_err(|_| corrupt("record key"))?;
                let (entry, until): (Entry, DateTime<Utc>) =
                    serde_json::from_slice(&value).map_err(|_| corrupt("record"))?;
                entries.insert(key, (entry, until));
            }
            // What expired while the service was down leaves the disk with
            // the next change.
            entries.touched.clear();
            entries.sweep(now);
        }
        let days = self.usage.get_mut().unwrap_or_else(|p| p.into_inner());
        for (day, counters) in usage.load()? {
            let day = std::str::from_utf8(&day)
                .ok()
                .and_then(|raw| raw.parse::<NaiveDate>().ok())
                .ok_or_else(|| corrupt("report day"))?;
            let counters = serde_json::from_slice(&counters).map_err(|_| corrupt("report day"))?;
            days.insert(day, counters);
        }
        self.disk = Some(StoreSpaces { records, usage });
        Ok(self)
    }

    /// Runs `f` on the live entries (expired ones are dropped first), and
    /// queues what it changed to the disk, when kept there.
    async fn with<T>(&self, f: impl FnOnce(&mut Entries, DateTime<Utc>) -> T) -> Result<T, StoreError> {
        if let Some(disk) = &self.disk {
            disk.records.check()?;
        }
        let now = Utc::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.sweep(now);
        let result = f(&mut entries, now);
        match &self.disk {
            // Queued under the lock: in the order the changes were made.
            Some(disk) => disk.records.record(entries.take_touched()),
            None => entries.touched.clear(),
        }
        Ok(result)
    }

    /// Runs `f` on the report days, then queues the days it names.
    async fn with_usage(&self, f: impl FnOnce(&mut UsageDeltas) -> Vec<NaiveDate>) -> Result<(), StoreError> {
        if let Some(disk) = &self.disk {
            disk.usage.check()?;
        }
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let touched = f(&mut usage);
        if let Some(disk) = &self.disk {
            let changes = touched
                .into_iter()
                .map(|day| {
                    let value = usage.get(&day).map(|c| serde_json::to_vec(c).unwrap_or_default());
                    (day.to_string().into_bytes(), value)
                })
                .collect();
            disk.usage.record(changes);
        }
        Ok(())
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a stored {what} cannot be read"))
}

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1))
}

#[async_trait]
impl SharedStore for MemoryStore {
    async fn get_token(&self, appid: &str) -> Result<Option<StoredToken>, StoreError> {
        self.with(|e, _| match e.get(&format!("token:{appid}")) {
            Some((Entry::Token(t), _)) => Some(t.clone()),
            _ => None,
        })
        .await
    }

    async fn put_token(&self, appid: &str, token: &StoredToken) -> Result<(), StoreError> {
        self.with(|e, _| {
            e.insert(
                format!("token:{appid}"),
                (Entry::Token(token.clone()), token.expires_at),
            )
        })
        .await
    }

    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, StoreError> {
        self.with(|e, _| {
            let key = format!("token:{appid}");
            let matches = matches!(e.get(&key), Some((Entry::Token(t), _)) if t.token == failed);
            if matches {
                e.remove(&key);
            }
            matches
        })
        .await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.with(|e, now| {
            let key = format!("lock:{name}");
            if e.contains_key(&key) {
                return false;
            }
            e.insert(key, (Entry::Lock(holder.to_owned()), until(now, ttl)));
            true
        })
        .await
    }

    async fn get_cached(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.with(|e, _| match e.get(&format!("cache:{name}")) {
            Some((Entry::Cached(value), _)) => Some(value.clone()),
            _ => None,
        })
        .await
    }

    async fn put_cached(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.with(|e, now| {
            let entry = (Entry::Cached(value.to_owned()), until(now, ttl));
            e.insert(format!("cache:{name}"), entry)
        })
        .await
    }

    async fn put_cached_if_absent(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.with(|e, now| {
            let key = format!("cache:{name}");
            if e.contains_key(&key) {
                return false;
            }
            e.insert(key, (Entry::Cached(value.to_owned()), until(now, ttl)));
            true
        })
        .await
    }

    async fn replace_cached(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.with(|e, now| {
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
        })
        .await
    }

    async fn drop_cached(&self, name: &str) -> Result<(), StoreError> {
        self.with(|e, _| e.remove(&format!("cache:{name}"))).await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.with(|e, _| {
            let key = format!("lock:{name}");
            if matches!(e.get(&key), Some((Entry::Lock(h), _)) if h == holder) {
                e.remove(&key);
            }
        })
        .await
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        hold: Duration,
    ) -> Result<KeyState, StoreError> {
        self.with(|e, now| {
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
        })
        .await
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
        })
        .await
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.with(|e, _| {
            let key = format!("idem:{key}");
            if e.holds_key_for(&key, fingerprint) {
                e.remove(&key);
            }
        })
        .await
    }

    async fn note_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        claim: Duration,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        self.with(|e, now| {
            let key = format!("idem:{key}");
            let held = e.holds_key_for(&key, fingerprint);
            if held {
                let pending =
                    Entry::Pending(fingerprint.to_owned(), state.to_owned(), Some(until(now, claim)));
                e.insert(key, (pending, until(now, keep)));
            }
            held
        })
        .await
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
        })
        .await
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.with_usage(|usage| {
            let mut touched = Vec::new();
            // The same retention as the Redis keys' TTL.
            if let Some(newest) = batch.deltas.keys().next_back().copied() {
                let oldest_kept = newest - chrono::Duration::days(USAGE_RETENTION_DAYS);
                usage.retain(|day, _| {
                    let keep = *day >= oldest_kept || *day == TOTALS;
                    if !keep {
                        touched.push(*day);
                    }
                    keep
                });
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
                touched.push(*day);
            }
            touched
        })
        .await
    }

    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, StoreError> {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        Ok(days
            .iter()
            .map(|day| usage.get(day).cloned().unwrap_or_default())
            .collect())
    }

    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), StoreError> {
        self.with_usage(|usage| {
            let Some(fields) = usage.get_mut(&day) else {
                return Vec::new();
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
            vec![day]
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Barrier, Disk};

    /// A record that expired while the service was down is read, dropped,
    /// and deleted from the disk by the next operation.
    #[tokio::test]
    async fn records_that_expired_while_down_leave_the_disk() {
        let dir = tempfile::TempDir::new().unwrap();
        let open = || {
            let disk = Disk::open(dir.path()).unwrap();
            let store = MemoryStore::default()
                .kept_on(disk.space("records"), disk.space("usage"))
                .unwrap();
            (store, disk)
        };
        let (store, disk) = open();
        store
            .put_cached("short", "1", Duration::from_millis(100))
            .await
            .unwrap();
        store
            .put_cached("long", "2", Duration::from_secs(3600))
            .await
            .unwrap();
        Barrier::on(disk.clone()).wait().await.unwrap();
        drop((store, disk));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let (store, disk) = open();
        assert_eq!(store.get_cached("short").await.unwrap(), None);
        Barrier::on(disk.clone()).wait().await.unwrap();
        let rows: Vec<Vec<u8>> = disk
            .space("records")
            .load()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(rows, vec![b"cache:long".to_vec()]);
    }

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
