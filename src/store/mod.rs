//! Shared state besides the ledger, for the instances of one deployment:
//! the current WeChat access token, short lease locks, idempotency records
//! of the send routes ([`SharedStore`]), and the report counters
//! ([`UsageStore`]). In Redis for a fleet, in memory for one
//! process (kept on its [`Disk`] unless `STORE=memory`). Also home of the
//! one Redis connection everything shares.
//!
//! Every operation touches one key, so all of it runs on Redis Cluster.

mod connection;
mod disk;
mod eviction;
mod info;
mod memory;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

pub use connection::{Durability, RedisConnection, RedisFailure, RedisTarget};
pub use disk::{Barrier, Change, DATABASE_FILE, Disk, Space, backup};
pub use eviction::EvictionWatch;
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// The shared store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable or too slow; the operation may or may not have applied.
    #[error("shared store unavailable: {0}")]
    Unavailable(String),
    /// It answered something this version cannot read.
    #[error("shared store returned unreadable data: {0}")]
    Corrupt(String),
}

/// An access token as shared by all instances.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredToken {
    pub token: String,
    /// From here on one instance fetches a replacement.
    pub refresh_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What an idempotency key already stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// First use: the caller now holds the key and must finish or abandon it.
    New,
    /// Another request with this key and body is still running.
    InProgress,
    /// The key was used with another body.
    Mismatch,
    /// Finished before: the stored response.
    Done(String),
    /// An earlier request's outcome is unknown: the caller now holds the
    /// key (for `hold`) and should resolve this pending state, then finish
    /// or park the key again.
    Pending(String),
}

#[async_trait]
pub trait SharedStore: Send + Sync + 'static {
    async fn get_token(&self, appid: &str) -> Result<Option<StoredToken>, StoreError>;

    /// Replaces the current token (never deletes one without a successor).
    async fn put_token(&self, appid: &str, token: &StoredToken) -> Result<(), StoreError>;

    /// Deletes the current token only if it is still `failed`; true if it was.
    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, StoreError>;

    /// Takes the lock `name` for `ttl` if nobody holds it.
    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Releases the lock if `holder` still holds it.
    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// A cached copy of something WeChat said (e.g. the account's template
    /// list), shared by every instance, while its `ttl` lasts.
    async fn get_cached(&self, name: &str) -> Result<Option<String>, StoreError>;

    async fn put_cached(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// [`Self::put_cached`] unless `name` holds something; true if written.
    async fn put_cached_if_absent(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// [`Self::put_cached`] if `name` still holds `expected` (`None`:
    /// nothing); true if written. For a record read, changed and written
    /// back: on false, read it again.
    async fn replace_cached(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    async fn drop_cached(&self, name: &str) -> Result<(), StoreError>;

    /// Claims `key` for a request whose body has `fingerprint`, for at most
    /// `hold` (a crashed request does not block the key longer).
    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        hold: Duration,
    ) -> Result<KeyState, StoreError>;

    /// Stores the final response of a claimed key for `keep`.
    async fn finish_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        keep: Duration,
    ) -> Result<(), StoreError>;

    /// Releases a claimed key without a response (the request may be
    /// retried), whether or not a state was noted under it.
    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError>;

    /// While a request holds `key`, notes the `state` it would leave if it
    /// died: the key stays claimed for `claim` from now, then turns pending
    /// with that state (kept for `keep`) for the next request to resolve.
    /// False if the key is no longer held for this body.
    async fn note_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        claim: Duration,
        keep: Duration,
    ) -> Result<bool, StoreError>;

    /// Keeps `state` under the key for `keep`, for the next request with it
    /// to resolve (and releases any claim on it).
    async fn park_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        keep: Duration,
    ) -> Result<(), StoreError>;
}

/// Counter increments for report days: day → field → delta. The field names
/// belong to the reporting code; the store only adds them up.
pub type UsageDeltas = BTreeMap<NaiveDate, BTreeMap<String, i64>>;

/// The stored counters of one day: field → value (absent fields are zero).
pub type DayCounters = BTreeMap<String, i64>;

/// One flush of an instance's counters. `seq` grows by one per flush of
/// `source`; a failed flush is retried with the same `seq` before any
/// newer one, so each day applies it exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBatch {
    pub source: String,
    pub seq: u64,
    pub deltas: UsageDeltas,
}

/// The per-day report counters. The store keeps, per day, the last flush
/// sequence number of each source as a field `flush.<source>`; readers
/// ignore fields they do not know.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Applies the batch to each of its days that has not applied it yet.
    /// May fail part-way; retrying the same batch completes it.
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;

    /// Reads report counters, one map per requested day, in order.
    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, StoreError>;

    /// For each prefix in `fold`, replaces the day's fields `<prefix>.<n>`
    /// by their sum in `<prefix>.all`; deletes the fields `<prefix>.*` of
    /// each prefix in `drop`. Atomic for the day.
    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), StoreError>;
}

/// The bucket of running totals (e.g. grants outstanding per template),
/// kept beside the report days under a date no report ever asks for.
pub const TOTALS: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");

/// How long report counters are kept: the usage report reaches 366 days back.
pub const USAGE_RETENTION_DAYS: i64 = 400;

/// The field a day keeps the last applied flush of `source` in.
fn flush_marker(source: &str) -> String {
    format!("flush.{source}")
}
