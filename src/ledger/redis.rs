//! The Redis ledger: one packed string per openid (`{prefix}:{<openid>}`),
//! changed only by the Lua scripts in `scripts/`, so every operation is
//! atomic for its openid across any number of service instances, and runs
//! unchanged on Redis Cluster (one key per script).
//!
//! Time is the server's (`TIME` inside every script), so instances whose
//! clocks disagree still agree on every deadline and expiry. Reads
//! (`inspect`) fetch the string and the server's time in one script and
//! apply the book rules in Rust without writing.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::{FromRedisValue, ParsingError, Script, ScriptInvocation, Value};

use super::book::{Book, Lease, Secs, reach_moved};
use super::codes::{self, EV_BURNED, EV_COLLECTED, EV_EVICTED, EV_REACH, EV_REFUNDED, EV_SPENT};
use super::packed;
use super::stored_id::StoredId;
use super::{
    AddOutcome, Holdings, LeaseId, Ledger, LedgerClock, LedgerError, LedgerEvent, LedgerSettings,
    NewCredential, ReserveOutcome, Settle, SettleOutcome, instant, script_reply,
};
use crate::clock::Clock;
use crate::domain::{CREDENTIAL_VALIDITY, OpenId};
use crate::store::{Durability, RedisConnection, RedisTarget};

static ADD: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/add.lua")));
static RESERVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/reserve.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/settle.lua")));
static READ: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/read.lua")));

/// Every book script starts with the named codes and the shared codec and
/// rules.
fn script(body: &str) -> Script {
    Script::new(&format!(
        "{}{}\n{}",
        codes::lua_prelude(),
        include_str!("scripts/book.lua"),
        body
    ))
}

pub struct RedisLedger {
    redis: RedisConnection,
    prefix: String,
    settings: LedgerSettings,
    clock: LedgerClock,
    /// Replicas an ingest or settle waits for (`WAIT`), and for how long.
    durability: Option<Durability>,
}

impl RedisLedger {
    /// A ledger with a connection of its own (2 s timeouts). `prefix` starts
    /// every key (`fl` in production; tests use their own).
    pub fn new(target: RedisTarget, prefix: &str, settings: LedgerSettings) -> Self {
        Self::on(
            RedisConnection::new(target, Duration::from_secs(2)),
            prefix,
            settings,
        )
    }

    /// A ledger on a connection shared with the rest of the service.
    pub fn on(redis: RedisConnection, prefix: &str, settings: LedgerSettings) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            settings,
            clock: None,
            durability: None,
        }
    }

    /// Ingests and settles return only once `replicas` replicas hold them
    /// (`WAIT` on the book's node), else fail as unavailable after
    /// `timeout`: an acknowledged credential or spend then survives the
    /// master's failover. Both are idempotent, so a failed one is retried.
    pub fn with_replicas(self, replicas: u32, timeout: Duration) -> Self {
        Self {
            durability: Durability::of(replicas, timeout),
            ..self
        }
    }

    /// Reads time from `clock` instead of the Redis server. Only for tests
    /// that move time by hand: instances on their own clocks are exactly
    /// what the server clock exists to prevent.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock: Some(clock),
            ..self
        }
    }

    /// Bounds connecting and every command.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let target = self.redis.target().clone();
        Self {
            redis: RedisConnection::new(target, timeout),
            ..self
        }
    }

    fn book_key(&self, openid: &OpenId) -> String {
        format!("{}:{{{}}}", self.prefix, openid.as_str())
    }

    /// The scripts' first argument: empty for the server's clock.
    fn pinned_clock(&self) -> String {
        self.clock
            .as_ref()
            .map(|c| c.now().timestamp().to_string())
            .unwrap_or_default()
    }

    async fn invoke<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, LedgerError> {
        script_reply(self.redis.invoke(invocation).await)
    }

    /// A script that writes `openid`'s book, acknowledged once the
    /// configured replicas hold the write.
    async fn invoke_durable<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        openid: &OpenId,
    ) -> Result<T, LedgerError> {
        script_reply(
            self.redis
                .invoke_durable(invocation, &self.book_key(openid), self.durability)
                .await,
        )
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, LedgerError> {
        self.redis.query(cmd).await.map_err(LedgerError::from)
    }
}

fn corrupt(err: ParsingError) -> LedgerError {
    LedgerError::Corrupt(err.to_string())
}

fn bad(what: &str) -> ParsingError {
    ParsingError::from(format!("unexpected {what} in a ledger script reply"))
}

/// A lease as reserve.lua returns it: `{id, deadline, expires, kind, key}`.
impl FromRedisValue for Lease {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (id, deadline, expires, kind, key): (Vec<u8>, Secs, Secs, i64, Vec<u8>) =
            FromRedisValue::from_redis_value(v)?;
        Ok(Lease {
            id: id.try_into().map_err(|_| bad("lease id"))?,
            deadline,
            expires,
            kind: codes::kind_from(kind).ok_or_else(|| bad("kind"))?,
            key: StoredId::from_bytes(key).ok_or_else(|| bad("stored id"))?,
        })
    }
}

/// Events as the scripts return them: a flat list of integers, four per
/// event (see `push` in book.lua).
struct Events(Vec<LedgerEvent>);

impl FromRedisValue for Events {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let flat: Vec<i64> = FromRedisValue::from_redis_value(v)?;
        if !flat.len().is_multiple_of(4) {
            return Err(bad("truncated event list"));
        }
        flat.chunks_exact(4)
            .map(|e| {
                let (code, a, b, c) = (e[0], e[1], e[2], e[3]);
                let kind = || codes::kind_from(a).ok_or_else(|| bad("event kind"));
                let uses = || u8::try_from(b).map_err(|_| bad("event uses"));
                let expires_at = instant(c);
                let instant_or_none = |t: i64| (t >= 0).then_some(t);
                Ok(match code {
                    EV_COLLECTED => LedgerEvent::Collected {
                        kind: kind()?,
                        uses: uses()?,
                        expires_at,
                    },
                    EV_SPENT => LedgerEvent::Spent {
                        kind: kind()?,
                        expires_at,
                    },
                    EV_BURNED => LedgerEvent::Burned {
                        kind: kind()?,
                        uses: uses()?,
                        expires_at,
                    },
                    EV_REFUNDED => LedgerEvent::Refunded {
                        kind: kind()?,
                        expires_at,
                    },
                    EV_EVICTED => LedgerEvent::Evicted {
                        kind: kind()?,
                        uses: uses()?,
                        expires_at,
                    },
                    EV_REACH => reach_moved(instant_or_none(a), instant_or_none(b)),
                    _ => return Err(bad("event code")),
                })
            })
            .collect::<Result<_, _>>()
            .map(Events)
    }
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError> {
        let (margin, granularity) = self.settings.expiry.as_secs();
        let mut call = ADD.prepare_invoke();
        call.key(self.book_key(openid))
            .arg(self.pinned_clock())
            .arg(self.settings.max_credentials_per_user)
            .arg(CREDENTIAL_VALIDITY.num_seconds() - margin)
            .arg(granularity);
        for item in batch {
            let collected = item.collected_at.map(|t| t.timestamp().to_string());
            call.arg(codes::kind_code(item.kind))
                .arg(StoredId::encode(&item.id).as_bytes())
                .arg(collected.unwrap_or_default());
        }
        let (statuses, evicted, available_sends, events): (Vec<i64>, u32, u32, Events) =
            self.invoke_durable(&call, openid).await?;
        let items = statuses
            .into_iter()
            .map(|code| codes::add_status_from(code).ok_or_else(|| corrupt(bad("add status"))))
            .collect::<Result<_, _>>()?;
        Ok(AddOutcome {
            items,
            evicted,
            available_sends,
            events: events.0,
        })
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<ReserveOutcome, LedgerError> {
        let (taken, events): (Vec<Value>, Events) = self
            .invoke(
                RESERVE
                    .key(self.book_key(openid))
                    .arg(self.pinned_clock())
                    .arg(&lease.as_bytes()[..])
                    .arg(hold.as_secs()),
            )
            .await?;
        let reservation = match taken.is_empty() {
            true => None,
            false => Some(
                Lease::from_redis_value(Value::Array(taken))
                    .map_err(corrupt)?
                    .reservation()?,
            ),
        };
        Ok(ReserveOutcome {
            reservation,
            events: events.0,
        })
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError> {
        let (code, uses, events): (i64, u8, Events) = self
            .invoke_durable(
                SETTLE
                    .key(self.book_key(openid))
                    .arg(self.pinned_clock())
                    .arg(&lease.as_bytes()[..])
                    .arg(codes::settle_code(how)),
                openid,
            )
            .await?;
        let settled = codes::settled_from(code, uses).ok_or_else(|| corrupt(bad("settle result")))?;
        Ok(SettleOutcome {
            settled,
            events: events.0,
        })
    }

    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError> {
        let (now, blob): (Secs, Option<Vec<u8>>) = self
            .invoke(READ.key(self.book_key(openid)).arg(self.pinned_clock()))
            .await?;
        let mut book = match blob {
            Some(blob) => packed::decode_book(&blob)?,
            None => Book::default(),
        };
        book.housekeep(now, &mut Vec::new());
        Ok(book.holdings())
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.query(&redis::cmd("PING")).await.map(|_| ())
    }
}
