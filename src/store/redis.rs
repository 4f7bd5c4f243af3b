//! [`SharedStore`] on Redis: `{prefix}:token:{<appid>}`,
//! `{prefix}:lock:{<name>}` and `{prefix}:idem:{<key>}`, one key per call;
//! [`UsageStore`]: one hash per report day, `{prefix}:usage:{<date>}`,
//! written by scripts, so flushes apply whole per day and run on Cluster.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use redis::{FromRedisValue, Script, Value};

use super::{
    DayCounters, Durability, KeyState, RedisConnection, SharedStore, StoreError, StoredToken,
    USAGE_RETENTION_DAYS, UsageBatch, UsageStore,
};

static DELETE_IF_EQUAL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/delete_if_equal.lua")));
static REPLACE_IF_EQUAL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/replace_if_equal.lua")));
static IDEMPOTENCY_BEGIN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/idempotency_begin.lua")));
static IDEMPOTENCY_NOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/idempotency_note.lua")));
static IDEMPOTENCY_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/idempotency_release.lua")));
static USAGE_ADD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/usage_add.lua")));
static USAGE_FOLD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/usage_fold.lua")));

pub struct RedisStore {
    redis: RedisConnection,
    prefix: String,
    /// Replicas an idempotency record waits for, and how long.
    durability: Option<Durability>,
}

impl RedisStore {
    pub fn new(redis: RedisConnection, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            durability: None,
        }
    }

    /// Idempotency records (a noted use, a final answer, a pending state)
    /// are acknowledged only once `replicas` replicas hold them, as the
    /// ledger's ingests and settles are (`RedisLedger::with_replicas`): a
    /// failover then never forgets that a request was sent.
    pub fn with_replicas(self, replicas: u32, timeout: Duration) -> Self {
        Self {
            durability: Durability::of(replicas, timeout),
            ..self
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{{{name}}}", self.prefix)
    }

    fn usage_key(&self, day: NaiveDate) -> String {
        self.key("usage", &day.format("%Y-%m-%d").to_string())
    }

    /// `SET key value NX PX ttl`: true if it was written.
    async fn set_if_absent(&self, key: String, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .to_owned();
        let reply = self.redis.query(&cmd).await.map_err(StoreError::from)?;
        Ok(matches!(reply, Value::Okay) || text(&reply).as_deref() == Some("OK"))
    }

    /// Replaces idempotency key `key`'s record, kept for `keep`, once the
    /// configured replicas hold it.
    async fn put_idempotent(&self, key: &str, record: String, keep: Duration) -> Result<(), StoreError> {
        let key = self.key("idem", key);
        let cmd = redis::cmd("SET")
            .arg(&key)
            .arg(record)
            .arg("PX")
            .arg(millis(keep))
            .to_owned();
        self.redis.query_durable(&cmd, &key, self.durability).await?;
        Ok(())
    }

    async fn delete_if_equal(&self, key: String, value: &str) -> Result<bool, StoreError> {
        let reply = self
            .redis
            .invoke(DELETE_IF_EQUAL.key(key).arg(value))
            .await
            .map_err(StoreError::from)?;
        Ok(matches!(reply, Value::Int(1)))
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Tokens are stored as `<refresh_at>:<expires_at>:<token>`.
fn encode_token(token: &StoredToken) -> String {
    format!(
        "{}:{}:{}",
        token.refresh_at.timestamp(),
        token.expires_at.timestamp(),
        token.token
    )
}

fn decode_token(raw: &str) -> Option<StoredToken> {
    let mut parts = raw.splitn(3, ':');
    let refresh_at = DateTime::from_timestamp(parts.next()?.parse().ok()?, 0)?;
    let expires_at = DateTime::from_timestamp(parts.next()?.parse().ok()?, 0)?;
    Some(StoredToken {
        token: parts.next()?.to_owned(),
        refresh_at,
        expires_at,
    })
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

#[async_trait]
impl SharedStore for RedisStore {
    async fn get_token(&self, appid: &str) -> Result<Option<StoredToken>, StoreError> {
        let reply = self
            .redis
            .query(redis::cmd("GET").arg(self.key("token", appid)))
            .await
            .map_err(StoreError::from)?;
        Ok(text(&reply).and_then(|raw| decode_token(&raw)))
    }

    async fn put_token(&self, appid: &str, token: &StoredToken) -> Result<(), StoreError> {
        let cmd = redis::cmd("SET")
            .arg(self.key("token", appid))
            .arg(encode_token(token))
            .arg("EXAT")
            .arg(token.expires_at.timestamp())
            .to_owned();
        self.redis.query(&cmd).await.map_err(StoreError::from).map(|_| ())
    }

    async fn invalidate_token(&self, appid: &str, failed: &str) -> Result<bool, StoreError> {
        let key = self.key("token", appid);
        let Some(current) = self.get_token(appid).await? else {
            return Ok(false);
        };
        if current.token != failed {
            return Ok(false);
        }
        // Compare-and-delete on the exact stored value: a token stored by
        // another instance in between is left alone.
        self.delete_if_equal(key, &encode_token(&current)).await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_if_absent(self.key("lock", name), holder, ttl).await
    }

    async fn get_cached(&self, name: &str) -> Result<Option<String>, StoreError> {
        let reply = self
            .redis
            .query(redis::cmd("GET").arg(self.key("cache", name)))
            .await
            .map_err(StoreError::from)?;
        Ok(text(&reply))
    }

    async fn put_cached(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let cmd = redis::cmd("SET")
            .arg(self.key("cache", name))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .to_owned();
        self.redis.query(&cmd).await.map_err(StoreError::from).map(|_| ())
    }

    async fn put_cached_if_absent(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_if_absent(self.key("cache", name), value, ttl).await
    }

    async fn replace_cached(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let reply = self
            .redis
            .invoke(
                REPLACE_IF_EQUAL
                    .key(self.key("cache", name))
                    .arg(if expected.is_some() { "1" } else { "0" })
                    .arg(expected.unwrap_or(""))
                    .arg(value)
                    .arg(millis(ttl)),
            )
            .await
            .map_err(StoreError::from)?;
        Ok(matches!(reply, Value::Int(1)))
    }

    async fn drop_cached(&self, name: &str) -> Result<(), StoreError> {
        let cmd = redis::cmd("DEL").arg(self.key("cache", name)).to_owned();
        self.redis.query(&cmd).await.map_err(StoreError::from).map(|_| ())
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.delete_if_equal(self.key("lock", name), holder)
            .await
            .map(|_| ())
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        hold: Duration,
    ) -> Result<KeyState, StoreError> {
        let reply = self
            .redis
            .invoke(
                IDEMPOTENCY_BEGIN
                    .key(self.key("idem", key))
                    .arg(fingerprint)
                    .arg(millis(hold)),
            )
            .await
            .map_err(StoreError::from)?;
        let parts: Vec<String> = match &reply {
            Value::Array(items) => items.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        match parts.as_slice() {
            [state] if state == "new" => Ok(KeyState::New),
            [state] if state == "in_progress" => Ok(KeyState::InProgress),
            [state] if state == "mismatch" => Ok(KeyState::Mismatch),
            [state, response] if state == "done" => Ok(KeyState::Done(response.clone())),
            [state, pending] if state == "pending" => Ok(KeyState::Pending(pending.clone())),
            _ => Err(StoreError::Corrupt(format!("idempotency reply {reply:?}"))),
        }
    }

    async fn finish_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        self.put_idempotent(key, format!("d:{fingerprint}:{response}"), keep)
            .await
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.redis
            .invoke(IDEMPOTENCY_RELEASE.key(self.key("idem", key)).arg(fingerprint))
            .await
            .map_err(StoreError::from)
            .map(|_| ())
    }

    async fn note_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        claim: Duration,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key("idem", key);
        let noted = |reply: &Value| matches!(reply, Value::Int(1));
        let reply = self
            .redis
            .invoke_durable_if(
                IDEMPOTENCY_NOTE
                    .key(&key)
                    .arg(fingerprint)
                    .arg(millis(claim))
                    .arg(millis(keep))
                    .arg(state),
                &key,
                self.durability,
                noted,
            )
            .await
            .map_err(StoreError::from)?;
        Ok(noted(&reply))
    }

    async fn park_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        state: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        self.put_idempotent(key, format!("u:{fingerprint}:0:{state}"), keep)
            .await
    }
}

#[async_trait]
impl UsageStore for RedisStore {
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        // One script per day (days live in different slots); each applies
        // the batch to its day once, so a retry after a partial failure
        // adds only the days still missing.
        for (day, fields) in &batch.deltas {
            let mut call = USAGE_ADD.prepare_invoke();
            call.key(self.usage_key(*day))
                .arg(USAGE_RETENTION_DAYS * 86_400)
                .arg(&batch.source)
                .arg(batch.seq);
            for (field, delta) in fields {
                call.arg(field).arg(*delta);
            }
            self.redis.invoke(&call).await.map_err(StoreError::from)?;
        }
        Ok(())
    }

    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, StoreError> {
        let mut out = Vec::with_capacity(days.len());
        for day in days {
            let reply = self
                .redis
                .query(redis::cmd("HGETALL").arg(self.usage_key(*day)))
                .await
                .map_err(StoreError::from)?;
            out.push(DayCounters::from_redis_value(reply).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), StoreError> {
        let mut call = USAGE_FOLD.prepare_invoke();
        call.key(self.usage_key(day)).arg(fold.len()).arg(fold).arg(drop);
        self.redis
            .invoke(&call)
            .await
            .map_err(StoreError::from)
            .map(|_| ())
    }
}
