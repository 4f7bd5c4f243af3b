//! The credential ledger: each openid's formIds and prepay_ids, their expiry
//! and remaining uses, and the two-phase spend (reserve → commit / burn /
//! refund) that keeps a use from being spent twice or lost.
//!
//! [`Ledger`] is the contract; [`MemoryLedger`] (embedded, one process) and
//! [`RedisLedger`] (shared by any number of instances) implement it with
//! identical results, which one contract test suite checks. Every operation
//! touches exactly one openid and is atomic for it.
//!
//! Operations report what happened to uses as [`LedgerEvent`]s; the usage
//! counters of reports are built from those events (by `report`, kept by
//! `store`), not from scans.

mod book;
mod codes;
pub mod grants;
mod memory;
mod metered;
mod packed;
mod redis;
mod stored_id;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::domain::{CredentialId, CredentialKind, ExpiryPolicy, OpenId};

pub use crate::store::RedisTarget;
pub use memory::MemoryLedger;
pub use metered::MeteredLedger;
pub use redis::RedisLedger;

/// A credential about to be added. Its expiry is computed by the ledger,
/// with the ledger's clock, from `collected_at` (now when absent; a future
/// one is clamped to now) and the [`ExpiryPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub kind: CredentialKind,
    pub id: CredentialId,
    pub collected_at: Option<DateTime<Utc>>,
}

/// What became of one item of an added batch, in batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddStatus {
    Accepted,
    /// The user already holds (or held, until it expires) this id.
    Duplicate,
    /// Its expiry is not after the ledger's now.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOutcome {
    pub items: Vec<AddStatus>,
    /// Credentials dropped because the user went over the per-user cap.
    pub evicted: u32,
    /// Uses the user can be sent after this batch.
    pub available_sends: u32,
    pub events: Vec<LedgerEvent>,
}

/// Names one reservation. Chosen by the caller, so a reserve retried after a
/// lost reply finds its own lease instead of taking a second use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId([u8; 8]);

impl LeaseId {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        hex::decode(raw).ok()?.try_into().ok().map(Self)
    }
}

impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseId({})", hex::encode(self.0))
    }
}

/// One use taken from a credential and held until settled or `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub lease: LeaseId,
    pub kind: CredentialKind,
    pub id: CredentialId,
    pub expires_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOutcome {
    /// `None`: the user has no spendable use; nothing was taken.
    pub reservation: Option<Reservation>,
    pub events: Vec<LedgerEvent>,
}

/// How a lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// WeChat accepted the message: the use is spent.
    Commit,
    /// WeChat says the credential is unusable (41028/41029): drop it with all
    /// of its uses.
    Burn,
    /// The message was not sent for another reason: the use goes back.
    Refund,
    /// Nobody knows whether WeChat delivered the message: keep the lease
    /// until the credential expires, so the use goes to no other send and
    /// the request that holds the lease can settle it later.
    Hold,
}

/// What a settle did to the leased use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Spent,
    /// `uses` counts the leased use and every use the credential had left.
    Burned {
        uses: u8,
    },
    Refunded,
    /// A refund arrived after the credential had expired: the use is gone,
    /// unspent.
    Lapsed,
    /// The lease now runs until the credential expires.
    Held,
    /// No such lease: already settled, or its deadline passed and it was
    /// refunded automatically.
    UnknownLease,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleOutcome {
    pub settled: Settled,
    pub events: Vec<LedgerEvent>,
}

/// One spendable credential as a report shows it (ids are never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub kind: CredentialKind,
    pub uses_left: u8,
    pub expires_at: DateTime<Utc>,
}

/// Everything one openid can be sent, oldest expiry first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holdings {
    pub credentials: Vec<Holding>,
    /// Uses currently held by unsettled leases.
    pub leased: u32,
}

impl Holdings {
    pub fn available_sends(&self) -> u32 {
        self.credentials.iter().map(|c| u32::from(c.uses_left)).sum()
    }
}

/// A change to the uses of one openid, as the usage counters need it.
///
/// Every use that enters the ledger (`Collected`) ends in exactly one of
/// `Spent`, `Burned`, `Evicted`, or expiring unspent; `Refunded` marks a use
/// that went back and can be spent again. `Reach` says the last instant at
/// which the openid can be sent anything moved (`None`: it cannot be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerEvent {
    Collected {
        kind: CredentialKind,
        uses: u8,
        expires_at: DateTime<Utc>,
    },
    Spent {
        kind: CredentialKind,
        expires_at: DateTime<Utc>,
    },
    Burned {
        kind: CredentialKind,
        uses: u8,
        expires_at: DateTime<Utc>,
    },
    Refunded {
        kind: CredentialKind,
        expires_at: DateTime<Utc>,
    },
    Evicted {
        kind: CredentialKind,
        uses: u8,
        expires_at: DateTime<Utc>,
    },
    Reach {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
}

/// Settings every ledger applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Live credentials an openid may hold; over it the soonest-expiring are
    /// evicted.
    pub max_credentials_per_user: u32,
    /// How an added credential's expiry follows from its collection time.
    pub expiry: ExpiryPolicy,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            max_credentials_per_user: 200,
            expiry: ExpiryPolicy::default(),
        }
    }
}

/// Where a ledger reads the time. Production ledgers read their store's
/// clock (Redis `TIME`, or the process clock for the embedded ledger);
/// tests hand both ledgers one [`ManualClock`](crate::clock::ManualClock).
pub type LedgerClock = Option<Arc<dyn Clock>>;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store cannot be reached or did not answer in time. The operation
    /// may or may not have been applied; every operation is safe to retry
    /// with the same arguments.
    #[error("ledger store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this version cannot read.
    #[error("ledger store returned unreadable data: {0}")]
    Corrupt(String),
}

impl From<crate::store::StoreError> for LedgerError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(why) => Self::Unavailable(why),
            crate::store::StoreError::Corrupt(why) => Self::Corrupt(why),
        }
    }
}

impl From<crate::store::RedisFailure> for LedgerError {
    fn from(failure: crate::store::RedisFailure) -> Self {
        match failure {
            crate::store::RedisFailure::Unavailable(why) => Self::Unavailable(why),
            crate::store::RedisFailure::Script(why) => Self::Corrupt(why),
        }
    }
}

/// The ledger contract. Time is the ledger's own (docs/ledger.md, "One clock"):
/// expiry checks, lease deadlines and the "now" of an ingest all come from
/// the store, never from the calling instance, whose clock may be off.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Adds a batch for one openid: skips duplicates (within the batch too)
    /// and already-expired items, then evicts the soonest-expiring credentials
    /// over the cap.
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError>;

    /// Takes one use of the oldest spendable credential (earliest expiry,
    /// then stored id order) under `lease` for `hold`. Calling it again
    /// with the same lease returns the same reservation.
    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: std::time::Duration,
    ) -> Result<ReserveOutcome, LedgerError>;

    /// Ends (or, with [`Settle::Hold`], extends) a lease. A repeated settle
    /// finds no lease and changes nothing.
    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError>;

    /// What the openid holds now, without changing anything.
    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), LedgerError>;
}

/// A Redis script's reply read as `T`: a reply of another shape is a
/// corrupt store.
pub(crate) fn script_reply<T: ::redis::FromRedisValue>(
    reply: Result<::redis::Value, crate::store::RedisFailure>,
) -> Result<T, LedgerError> {
    T::from_redis_value(reply.map_err(LedgerError::from)?).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

/// A unix second as an instant (the ledgers keep whole seconds).
pub(crate) fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
