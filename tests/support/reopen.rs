//! The embedded stores kept on disk, closed and opened again around every
//! operation: whatever one operation leaves must be on disk, and read back,
//! for the next one to see it. The contract tests run these as a third
//! store beside the embedded one in memory and Redis; the property test
//! restarts kept ledgers at random points ([`Restartable`]).

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

/// One process serves a data directory: concurrent operations take turns
/// (each opens the directory alone).
type Turn = tokio::sync::Mutex<()>;

fn disk(dir: &Path) -> Arc<Disk> {
    Disk::open(dir).expect("the data directory opens")
}

pub struct ReopeningLedger {
    dir: TempDir,
    settings: LedgerSettings,
    clock: Arc<dyn Clock>,
    turn: Turn,
}

impl ReopeningLedger {
    pub fn new(settings: LedgerSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            dir: TempDir::new().unwrap(),
            settings,
            clock,
            turn: Turn::default(),
        }
    }

    fn open(&self) -> MemoryLedger {
        MemoryLedger::with_clock(self.settings, self.clock.clone())
            .kept_on(disk(self.dir.path()).space("credentials"))
            .expect("the books read back")
    }
}

#[async_trait]
impl Ledger for ReopeningLedger {
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().add(openid, batch).await
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<ReserveOutcome, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().reserve(openid, lease, hold).await
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().settle(openid, lease, how).await
    }

    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().inspect(openid).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().ping().await
    }
}

pub struct ReopeningGrants {
    dir: TempDir,
    settings: GrantSettings,
    clock: Arc<dyn Clock>,
    turn: Turn,
}

impl ReopeningGrants {
    pub fn new(settings: GrantSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            dir: TempDir::new().unwrap(),
            settings,
            clock,
            turn: Turn::default(),
        }
    }

    fn open(&self) -> MemoryGrants {
        let disk = disk(self.dir.path());
        MemoryGrants::with_clock(self.settings, self.clock.clone())
            .kept_on(disk.space("grants"), disk.space("grants/templates"))
            .expect("the grant books read back")
    }
}

#[async_trait]
impl GrantLedger for ReopeningGrants {
    async fn add_accepts(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, Accept)],
    ) -> Result<GrantAddOutcome, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().add_accepts(openid, batch).await
    }

    async fn reserve_for(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open()
            .reserve_for(openid, template, long_term, lease, hold)
            .await
    }

    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().settle_grant(openid, lease, how).await
    }

    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().burn_grants(openid, template).await
    }

    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError> {
        let _turn = self.turn.lock().await;
        self.open().grants(openid).await
    }
}

pub struct ReopeningStore {
    dir: TempDir,
    turn: Turn,
}

impl ReopeningStore {
    pub fn new() -> Self {
        Self {
            dir: TempDir::new().unwrap(),
            turn: Turn::default(),
        }
    }

    fn open(&self) -> MemoryStore {
        let disk = disk(self.dir.path());
        MemoryStore::default()
            .kept_on(disk.space("records"), disk.space("usage"))
            .expect("the records read back")
    }
}

#[async_trait]
impl SharedStore for ReopeningStore {
    async fn get_token(&self, appid: &str) -> Result<Option<StoredToken>, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().get_token(appid).await
    }

    async fn put_token(&self, appid: &str, token: &StoredToken) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().put_token(appid, token).await
    }

    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().invalidate_token(appid, failed).await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().try_lock(name, holder, ttl).await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().unlock(name, holder).await
    }

    async fn get_cached(&self, name: &str) -> Result<Option<String>, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().get_cached(name).await
    }

    async fn put_cached(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().put_cached(name, value, ttl).await
    }

    async fn put_cached_if_absent(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().put_cached_if_absent(name, value, ttl).await
    }

    async fn replace_cached(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().replace_cached(name, expected, value, ttl).await
    }

    async fn drop_cached(&self, name: &str) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().drop_cached(name).await
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        hold: Duration,
    ) -> Result<KeyState, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().begin_idempotent(key, fingerprint, hold).await
    }

    async fn finish_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open()
            .finish_idempotent(key, fingerprint, response, keep)
            .await
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().abandon_idempotent(key, fingerprint).await
    }

    async fn note_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        claim: Duration,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        let _turn = self.turn.lock().await;
        self.open()
            .note_idempotent(key, fingerprint, state, claim, keep)
            .await
    }

    async fn park_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().park_idempotent(key, fingerprint, state, keep).await
    }
}

#[async_trait]
impl UsageStore for ReopeningStore {
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().add_usage(batch).await
    }

    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, StoreError> {
        let _turn = self.turn.lock().await;
        self.open().usage(days).await
    }

    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.open().fold_usage(day, fold, drop).await
    }
}

/// An embedded store kept on disk, restarted (closed, and opened again from
/// its disk) when the test says so, between two operations.
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
}

impl<T> Restartable<T> {
    /// `open` opens the store from the data directory it is given.
    pub fn new(open: impl Fn(&Path) -> T + Send + Sync + 'static) -> Self {
        let kept = Self(Arc::new(Kept {
            dir: TempDir::new().unwrap(),
            open: Box::new(open),
            current: std::sync::Mutex::new(None),
        }));
        kept.restart();
        kept
    }

    /// Closes the store (its disk commits what is queued) and opens it
    /// again from the disk.
    pub fn restart(&self) {
        let mut current = self.0.current.lock().unwrap();
        drop(current.take());
        *current = Some(Arc::new((self.0.open)(self.0.dir.path())));
    }

    fn current(&self) -> Arc<T> {
        self.0.current.lock().unwrap().clone().expect("open")
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

#[async_trait]
impl Ledger for Restartable<MemoryLedger> {
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError> {
        self.current().add(openid, batch).await
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<ReserveOutcome, LedgerError> {
        self.current().reserve(openid, lease, hold).await
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError> {
        self.current().settle(openid, lease, how).await
    }

    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError> {
        self.current().inspect(openid).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.current().ping().await
    }
}

#[async_trait]
impl GrantLedger for Restartable<MemoryGrants> {
    async fn add_accepts(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, Accept)],
    ) -> Result<GrantAddOutcome, LedgerError> {
        self.current().add_accepts(openid, batch).await
    }

    async fn reserve_for(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError> {
        self.current()
            .reserve_for(openid, template, long_term, lease, hold)
            .await
    }

    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError> {
        self.current().settle_grant(openid, lease, how).await
    }

    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError> {
        self.current().burn_grants(openid, template).await
    }

    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError> {
        self.current().grants(openid).await
    }
}
