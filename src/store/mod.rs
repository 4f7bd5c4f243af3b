//! Shared state besides the ledger, for the instances of one deployment:
//! the current WeChat access token, short lease locks, and idempotency
//! records of the send routes. In Redis for a fleet, in memory for one
//! process. Also home of the one Redis connection everything shares.
//!
//! Every operation touches one key, so all of it runs on Redis Cluster.

mod connection;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use connection::{RedisConnection, RedisFailure, RedisTarget};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// Releases a claimed key without a response (the request may be retried).
    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError>;

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
