//! Ledgers under a test's own clock: every operation first sets the clock
//! to the instant the test names, so a test reads like a timeline and both
//! ledgers see exactly the same time.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use formid_ledger::clock::ManualClock;
use formid_ledger::domain::{CREDENTIAL_VALIDITY, CredentialId, CredentialKind, ExpiryPolicy, OpenId};
use formid_ledger::ledger::{
    AddOutcome, Holdings, LeaseId, Ledger, LedgerError, LedgerSettings, MemoryLedger, NewCredential,
    RedisLedger, RedisTarget, ReserveOutcome, Settle, SettleOutcome,
};

use super::RedisServer;

/// Settings whose expiries are exact: no safety margin, one-second
/// granularity, so a credential "collected" 7 days before `t` expires at `t`.
pub fn exact(max_credentials_per_user: u32) -> LedgerSettings {
    LedgerSettings {
        max_credentials_per_user,
        expiry: ExpiryPolicy::new(Duration::zero(), Duration::seconds(1)),
    }
}

/// formIds collected now, as `{"form_ids": [...]}` posts them.
pub fn collected_now<S: AsRef<str>>(ids: &[S]) -> Vec<NewCredential> {
    ids.iter()
        .map(|id| NewCredential {
            kind: CredentialKind::Form,
            id: CredentialId::parse(id.as_ref()).unwrap(),
            collected_at: None,
        })
        .collect()
}

/// A credential that expires at `expires_at` under [`exact`] settings.
pub fn cred(kind: CredentialKind, id: &str, expires_at: DateTime<Utc>) -> NewCredential {
    NewCredential {
        kind,
        id: CredentialId::parse(id).unwrap(),
        collected_at: Some(expires_at - CREDENTIAL_VALIDITY),
    }
}

pub struct TimedLedger {
    pub ledger: Box<dyn Ledger>,
    pub clock: Arc<ManualClock>,
}

impl TimedLedger {
    pub fn memory(settings: LedgerSettings) -> Self {
        let clock = Arc::new(ManualClock::at_current_second());
        Self {
            ledger: Box::new(MemoryLedger::with_clock(settings, clock.clone())),
            clock,
        }
    }

    pub fn redis(server: &RedisServer, prefix: &str, settings: LedgerSettings) -> Self {
        let clock = Arc::new(ManualClock::at_current_second());
        let ledger =
            RedisLedger::new(RedisTarget::Single(server.url()), prefix, settings).with_clock(clock.clone());
        Self {
            ledger: Box::new(ledger),
            clock,
        }
    }

    /// The embedded ledger kept on disk, restarted when the test says so.
    pub fn restartable(settings: LedgerSettings) -> (Self, super::reopen::Restartable<MemoryLedger>) {
        let clock = Arc::new(ManualClock::at_current_second());
        let ledger = super::reopen::Restartable::ledger(settings, clock.clone());
        let timed = Self {
            ledger: Box::new(ledger.clone()),
            clock,
        };
        (timed, ledger)
    }

    /// The embedded ledger kept on disk, reopened around every operation.
    pub fn on_disk(settings: LedgerSettings) -> Self {
        let clock = Arc::new(ManualClock::at_current_second());
        Self {
            ledger: Box::new(
                super::reopen::Restartable::ledger(settings, clock.clone()).around_every_operation(),
            ),
            clock,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        use formid_ledger::clock::Clock;
        self.clock.now()
    }

    pub async fn add(
        &self,
        openid: &OpenId,
        batch: &[NewCredential],
        at: DateTime<Utc>,
    ) -> Result<AddOutcome, LedgerError> {
        self.clock.set(at);
        self.ledger.add(openid, batch).await
    }

    pub async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<ReserveOutcome, LedgerError> {
        self.clock.set(at);
        let hold = (deadline - at).to_std().unwrap_or_default();
        self.ledger.reserve(openid, lease, hold).await
    }

    pub async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
        at: DateTime<Utc>,
    ) -> Result<SettleOutcome, LedgerError> {
        self.clock.set(at);
        self.ledger.settle(openid, lease, how).await
    }

    pub async fn inspect(&self, openid: &OpenId, at: DateTime<Utc>) -> Result<Holdings, LedgerError> {
        self.clock.set(at);
        self.ledger.inspect(openid).await
    }
}
