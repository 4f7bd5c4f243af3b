//! The embedded stores kept on disk and restarted: closed, and opened again
//! from their disk. The contract tests restart them around every operation
//! (whatever one operation leaves must be on disk, and read back, for the
//! next one to see it), as a third store beside the embedded one in memory
//! and Redis; the property tests restart them at random points.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use formid_ledger::clock::Clock;
use formid_ledger::domain::{OpenId, TemplateId};
use formid_ledger::ledger::grants::{
    Accept, GrantAddOutcome, GrantEvent, GrantHoldings, GrantLedger, GrantReserveOutcome, GrantSettings,
    GrantSettleOutcome, MemoryGrants,
};
use formid_ledger::ledger::{
    AddOutcome, Holdings, LeaseId, Ledger, LedgerError, LedgerSettings, MemoryLedger, NewCredential,
    ReserveOutcome, Settle, SettleOutcome,
};
use formid_ledger::store::{
    DayCounters, Disk, KeyState, MemoryStore, SharedStore, StoreError, StoredToken, UsageBatch, UsageStore,
};
use tempfile::TempDir;

fn disk(dir: &Path) -> Arc<Disk> {
    Disk::open(dir).expect("the data directory opens")
}

/// An embedded store kept on disk, restarted when the test says so, or
/// before every operation.
pub struct Restartable<T>(Arc<Kept<T>>);

impl<T> Clone for Restartable<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

type Opener<T> = Box<dyn Fn(&Path) -> T + Send + Sync>;

struct Kept<T> {
    dir: TempDir,
    open: Opener<T>,
    current: std::sync::Mutex<Option<Arc<T>>>,
    /// Restarted before every operation; concurrent operations then take
    /// turns, since one process serves a data directory at a time.
    every_operation: Option<tokio::sync::Mutex<()>>,
}

impl<T> Restartable<T> {
    /// `open` opens the store from the data directory it is given.
    pub fn new(open: impl Fn(&Path) -> T + Send + Sync + 'static) -> Self {
        let kept = Self(Arc::new(Kept {
            dir: TempDir::new().unwrap(),
            open: Box::new(open),
            current: std::sync::Mutex::new(None),
            every_operation: None,
        }));
        kept.restart();
        kept
    }

    /// The same, restarted before every operation.
    pub fn around_every_operation(self) -> Self {
        let kept = Arc::try_unwrap(self.0).ok().expect("not shared yet");
        Self(Arc::new(Kept {
            every_operation: Some(tokio::sync::Mutex::new(())),
            ..kept
        }))
    }

    /// Closes the store (its disk commits what is queued) and opens it
    /// again from the disk.
    pub fn restart(&self) {
        let mut current = self.0.current.lock().unwrap();
        drop(current.take());
        *current = Some(Arc::new((self.0.open)(self.0.dir.path())));
    }

    /// The open store, for one operation (restarted first, and held alone
    /// while the operation runs, when restarted before every operation).
    async fn current(&self) -> (Option<tokio::sync::MutexGuard<'_, ()>>, Arc<T>) {
        let turn = match &self.0.every_operation {
            Some(turns) => {
                let turn = turns.lock().await;
                self.restart();
                Some(turn)
            }
            None => None,
        };
        (turn, self.0.current.lock().unwrap().clone().expect("open"))
    }
}

impl Restartable<MemoryLedger> {
    pub fn ledger(settings: LedgerSettings, clock: Arc<dyn Clock>) -> Self {
        Self::new(move |dir| {
            MemoryLedger::with_clock(settings, clock.clone())
                .kept_on(disk(dir).space("credentials"))
                .expect("the books read back")
        })
    }
}

impl Restartable<MemoryGrants> {
    pub fn grants(settings: GrantSettings, clock: Arc<dyn Clock>) -> Self {
        Self::new(move |dir| {
            let disk = disk(dir);
            MemoryGrants::with_clock(settings, clock.clone())
                .kept_on(disk.space("grants"), disk.space("grants/templates"))
                .expect("the grant books read back")
        })
    }
}

impl Restartable<MemoryStore> {
    pub fn store() -> Self {
        Self::new(|dir| {
            let disk = disk(dir);
            MemoryStore::default()
                .kept_on(disk.space("records"), disk.space("usage"))
                .expect("the records read back")
        })
    }
}

#[async_trait]
impl Ledger for Restartable<MemoryLedger> {
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.add(openid, batch).await
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<ReserveOutcome, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.reserve(openid, lease, hold).await
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.settle(openid, lease, how).await
    }

    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.inspect(openid).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.ping().await
    }
}

#[async_trait]
impl GrantLedger for Restartable<MemoryGrants> {
    async fn add_accepts(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, Accept)],
    ) -> Result<GrantAddOutcome, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.add_accepts(openid, batch).await
    }

    async fn reserve_for(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.reserve_for(openid, template, long_term, lease, hold).await
    }

    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.settle_grant(openid, lease, how).await
    }

    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.burn_grants(openid, template).await
    }

    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError> {
        let (_turn, ledger) = self.current().await;
        ledger.grants(openid).await
    }
}

#[async_trait]
impl SharedStore for Restartable<MemoryStore> {
    async fn get_token(&self, appid: &str) -> Result<Option<StoredToken>, StoreError> {
        let (_turn, store) = self.current().await;
        store.get_token(appid).await
    }

    async fn put_token(&self, appid: &str, token: &StoredToken) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.put_token(appid, token).await
    }

    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, StoreError> {
        let (_turn, store) = self.current().await;
        store.invalidate_token(appid, failed).await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (_turn, store) = self.current().await;
        store.try_lock(name, holder, ttl).await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.unlock(name, holder).await
    }

    async fn get_cached(&self, name: &str) -> Result<Option<String>, StoreError> {
        let (_turn, store) = self.current().await;
        store.get_cached(name).await
    }

    async fn put_cached(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.put_cached(name, value, ttl).await
    }

    async fn put_cached_if_absent(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (_turn, store) = self.current().await;
        store.put_cached_if_absent(name, value, ttl).await
    }

    async fn replace_cached(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (_turn, store) = self.current().await;
        store.replace_cached(name, expected, value, ttl).await
    }

    async fn drop_cached(&self, name: &str) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.drop_cached(name).await
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        hold: Duration,
    ) -> Result<KeyState, StoreError> {
        let (_turn, store) = self.current().await;
        store.begin_idempotent(key, fingerprint, hold).await
    }

    async fn finish_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.finish_idempotent(key, fingerprint, response, keep).await
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.abandon_idempotent(key, fingerprint).await
    }

    async fn note_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        claim: Duration,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        let (_turn, store) = self.current().await;
        store.note_idempotent(key, fingerprint, state, claim, keep).await
    }

    async fn park_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.park_idempotent(key, fingerprint, state, keep).await
    }
}

#[async_trait]
impl UsageStore for Restartable<MemoryStore> {
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.add_usage(batch).await
    }

    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, StoreError> {
        let (_turn, store) = self.current().await;
        store.usage(days).await
    }

    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), StoreError> {
        let (_turn, store) = self.current().await;
        store.fold_usage(day, fold, drop).await
    }
}
