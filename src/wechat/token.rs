//! access_token central control (docs/send-policy.md): one current token per appid,
//! shared by every instance through the [`SharedStore`].
//!
//! - Refreshed ahead of expiry (at 80 % of `expires_in`) by one instance at
//!   a time, holding a lease lock; the others keep serving the current
//!   token meanwhile. The current token is replaced, never deleted, by a
//!   refresh.
//! - A token WeChat rejects is invalidated only if it is still the current
//!   one (compare-and-delete); then one fetch replaces it, however many
//!   calls failed at once (a per-process single flight, then the fleet lock).
//! - App credentials WeChat refuses (a wrong secret, an IP off the
//!   whitelist) are asked about again only after a capped exponential
//!   backoff, never once a request: WeChat rate-limits an account that
//!   keeps trying. `/readyz` reports the refusal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{CallError, WechatClient, errcode};
use crate::clock::{Clock, SystemClock};
use crate::config::TokenMode;
use crate::metrics::{TOKEN_FETCH_FAILURES, TOKEN_FETCHES, TOKEN_INVALIDATIONS};
use crate::store::StoreError;
use crate::store::{SharedStore, StoredToken};

/// How long a token read from the store is reused without asking again.
const LOCAL_REUSE: chrono::Duration = chrono::Duration::milliseconds(500);
/// How long the refresh lock is held at most.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How long to wait for another instance's fetch before fetching anyway.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(3);
/// Share of `expires_in` after which a replacement is fetched.
const REFRESH_AT: f64 = 0.8;
/// First wait after WeChat refused the app credentials; doubled each time...
const REFUSAL_BACKOFF: Duration = Duration::from_secs(1);
/// ...up to this.
const REFUSAL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// WeChat's last refusal of the app credentials, while it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub errcode: i64,
    /// Refusals in a row.
    pub count: u32,
    /// No fetch before this.
    pub retry_at: DateTime<Utc>,
}

impl Refusal {
    fn after(previous: Option<Refusal>, errcode: i64, now: DateTime<Utc>) -> Self {
        let count = previous.map_or(1, |p| p.count.saturating_add(1));
        let wait = REFUSAL_BACKOFF
            .saturating_mul(1 << (count - 1).min(16))
            .min(REFUSAL_BACKOFF_MAX);
        Self {
            errcode,
            count,
            retry_at: now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Seconds until the next fetch may be tried.
    pub fn retry_in(&self, now: DateTime<Utc>) -> u64 {
        u64::try_from((self.retry_at - now).num_seconds()).unwrap_or(0)
    }
}

/// What WeChat's errcode for a refused token request means.
pub fn refusal_cause(errcode: i64) -> &'static str {
    match errcode {
        40001 | 40125 => "invalid app secret: check WECHAT_SECRET",
        40013 => "invalid appid: check WECHAT_APPID",
        40164 | 61004 => "this server's IP is not on the account's API whitelist",
        40243 => "the AppSecret is frozen",
        41002 | 41004 => "appid or secret missing",
        45009 => "the account's daily quota of token requests is used up",
        _ => "WeChat refuses the token request",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("cannot get an access token: {0}")]
    Unavailable(String),
    /// The shared store that keeps the token cannot be reached.
    #[error("the store that keeps the access token cannot be reached: {0}")]
    Store(String),
    /// WeChat refuses this appid/secret (40013, 40125, ...): a configuration
    /// problem no retry fixes.
    #[error("WeChat refuses the app credentials (errcode {0})")]
    Refused(i64),
}

impl From<StoreError> for TokenError {
    fn from(err: StoreError) -> Self {
        TokenError::Store(err.to_string())
    }
}

impl From<CallError> for TokenError {
    fn from(err: CallError) -> Self {
        TokenError::Unavailable(err.to_string())
    }
}

pub struct TokenManager {
    client: WechatClient,
    store: Arc<dyn SharedStore>,
    mode: TokenMode,
    /// This instance's name on the refresh lock.
    holder: String,
    local: Mutex<Option<(StoredToken, DateTime<Utc>)>>,
    single_flight: tokio::sync::Mutex<()>,
    /// The next stable_token fetch must rotate (the current one was refused).
    force_next: AtomicBool,
    refusal: Mutex<Option<Refusal>>,
    /// What token lifetimes, refreshes and backoffs are judged by.
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    errcode: i64,
    access_token: Option<String>,
    expires_in: Option<i64>,
}

impl TokenManager {
    pub fn new(client: WechatClient, store: Arc<dyn SharedStore>, mode: TokenMode) -> Self {
        Self::with_clock(client, store, mode, Arc::new(SystemClock))
    }

    /// [`Self::new`] judging time by `clock` (tests move it instead of
    /// waiting for tokens to come due).
    pub fn with_clock(
        client: WechatClient,
        store: Arc<dyn SharedStore>,
        mode: TokenMode,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            store,
            mode,
            holder: hex::encode(rand::random::<[u8; 8]>()),
            local: Mutex::new(None),
            single_flight: tokio::sync::Mutex::new(()),
            force_next: AtomicBool::new(false),
            refusal: Mutex::new(None),
            clock,
        }
    }

    /// Now, by this manager's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn lock_name(&self) -> String {
        format!("token-refresh:{}", self.client.appid())
    }

    fn remember(&self, token: &StoredToken) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), self.now()));
    }

    fn forget(&self) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// WeChat's refusal of the app credentials, while it stands.
    pub fn refusal(&self) -> Option<Refusal> {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token to call WeChat with.
    pub async fn token(&self) -> Result<String, TokenError> {
        let now = self.now();
        if let Some((token, read_at)) = self.local.lock().unwrap_or_else(|p| p.into_inner()).clone()
            && now - read_at < LOCAL_REUSE
            && now < token.refresh_at
        {
            return Ok(token.token);
        }
        match self.store.get_token(self.client.appid()).await? {
            Some(current) if now < current.refresh_at => {
                self.remember(&current);
                Ok(current.token)
            }
            Some(current) if now < current.expires_at => {
                // Due for refresh: whoever gets the lock fetches; the rest go on
                // with the current token, which is still valid.
                if let Ok(true) = self
                    .store
                    .try_lock(&self.lock_name(), &self.holder, LOCK_TTL)
                    .await
                {
                    let fetched = self.fetch_under_lock().await;
                    let _ = self.store.unlock(&self.lock_name(), &self.holder).await;
                    if let Ok(fresh) = fetched {
                        return Ok(fresh.token);
                    }
                }
                self.remember(&current);
                Ok(current.token)
            }
            _ => self.replace_missing().await,
        }
    }

    /// Refreshes if the current token is due; for a background task.
    pub async fn refresh_if_due(&self) -> Result<(), TokenError> {
        self.token().await.map(|_| ())
    }

    /// No usable token: one fetch for this process, one for the fleet.
    async fn replace_missing(&self) -> Result<String, TokenError> {
        let _flight = self.single_flight.lock().await;
        let started = Instant::now();
        loop {
            if let Some(current) = self.store.get_token(self.client.appid()).await?
                && self.now() < current.expires_at
            {
                self.remember(&current);
                return Ok(current.token);
            }
            let waited_enough = started.elapsed() >= WAIT_FOR_OTHERS;
            if waited_enough
                || self
                    .store
                    .try_lock(&self.lock_name(), &self.holder, LOCK_TTL)
                    .await?
            {
                let fetched = self.fetch_under_lock().await;
                if !waited_enough {
                    let _ = self.store.unlock(&self.lock_name(), &self.holder).await;
                }
                return fetched.map(|t| t.token);
            }
            // Another instance is fetching: its token will appear shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Called when WeChat rejected `failed` as invalid or expired.
    pub async fn invalidate(&self, failed: &str) {
        self.forget();
        match self.store.invalidate_token(self.client.appid(), failed).await {
            Ok(true) => {
                metrics::counter!(TOKEN_INVALIDATIONS).increment(1);
                self.force_next.store(true, Ordering::Relaxed);
                tracing::info!("access token invalidated after WeChat rejected it");
            }
            Ok(false) => {} // Someone already replaced it.
            Err(err) => tracing::warn!(error = %err, "could not invalidate the access token"),
        }
    }

    /// Holding the fleet lock: fetches unless another instance stored a
    /// token that is not yet due while this one waited for the lock (else a
    /// refresh cycle could cost two fetches).
    async fn fetch_under_lock(&self) -> Result<StoredToken, TokenError> {
        if let Some(latest) = self.store.get_token(self.client.appid()).await?
            && self.now() < latest.refresh_at
        {
            self.remember(&latest);
            return Ok(latest);
        }
        self.fetch_and_store().await
    }

    #[tracing::instrument(skip_all, fields(mode = ?self.mode))]
    async fn fetch_and_store(&self) -> Result<StoredToken, TokenError> {
        // Refused credentials: no call before the backoff has passed.
        if let Some(refusal) = self.refusal()
            && self.now() < refusal.retry_at
        {
            return Err(TokenError::Refused(refusal.errcode));
        }
        let result = self.fetch().await;
        match &result {
            Ok(_) => metrics::counter!(TOKEN_FETCHES).increment(1),
            Err(err) => {
                tracing::warn!(error = %err, "access token fetch failed");
                metrics::counter!(TOKEN_FETCH_FAILURES).increment(1);
            }
        }
        self.note_refusal(&result);
        let token = result?;
        self.store.put_token(self.client.appid(), &token).await?;
        self.remember(&token);
        tracing::info!(expires_at = %token.expires_at, "access token refreshed");
        Ok(token)
    }

    /// Starts, extends or ends the refusal backoff by a fetch's result.
    fn note_refusal(&self, result: &Result<StoredToken, TokenError>) {
        let mut refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Err(TokenError::Refused(errcode)) => {
                let now = self.now();
                let next = Refusal::after(*refusal, *errcode, now);
                tracing::error!(
                    errcode,
                    cause = refusal_cause(*errcode),
                    refusals = next.count,
                    retry_in_secs = next.retry_in(now),
                    "WeChat refuses the app credentials (WECHAT_APPID / WECHAT_SECRET); nothing can be sent until they are fixed"
                );
                *refusal = Some(next);
            }
            Ok(_) if refusal.take().is_some() => {
                tracing::info!("WeChat accepts the app credentials again");
            }
            _ => {}
        }
    }

    async fn fetch(&self) -> Result<StoredToken, TokenError> {
        let request = match self.mode {
            TokenMode::Token => self.client.http().get(self.client.url("/cgi-bin/token")).query(&[
                ("grant_type", "client_credential"),
                ("appid", self.client.appid()),
                ("secret", self.client.secret().expose()),
            ]),
            TokenMode::Stable => self
                .client
                .http()
                .post(self.client.url("/cgi-bin/stable_token"))
                .json(&json!({
                    "grant_type": "client_credential",
                    "appid": self.client.appid(),
                    "secret": self.client.secret().expose(),
                    "force_refresh": self.force_next.swap(false, Ordering::Relaxed),
                })),
        };
        let fetched_at = self.now();
        let answer: TokenAnswer = self.client.call(request).await?;
        match (answer.errcode, answer.access_token, answer.expires_in) {
            (errcode::OK, Some(token), Some(expires_in)) if expires_in > 0 && !token.is_empty() => {
                let life = chrono::Duration::seconds(expires_in);
                let refresh =
                    chrono::Duration::milliseconds((expires_in as f64 * 1000.0 * REFRESH_AT) as i64);
                Ok(StoredToken {
                    token,
                    refresh_at: fetched_at + refresh,
                    expires_at: fetched_at + life,
                })
            }
            (errcode::BUSY, ..) => Err(TokenError::Unavailable("WeChat busy (-1)".into())),
            (errcode::OK, ..) => Err(TokenError::Unavailable("WeChat answered without a token".into())),
            (code, ..) => Err(TokenError::Refused(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_exponentially_up_to_a_cap() {
        let now = Utc::now();
        let mut refusal = None;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = Refusal::after(refusal, 40125, now);
            waits.push(next.retry_in(now));
            refusal = Some(next);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(refusal.unwrap().count, 12);
    }
}
