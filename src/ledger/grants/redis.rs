//! The Redis grant ledger: one packed string per openid beside its
//! credential book (`{prefix}:{<openid>}:g`, the same hash tag), changed only
//! by the scripts in `scripts/grants/`, on the server's clock. Template ids
//! are numbered in `{prefix}:templates` (see [`super::dictionary`]); each
//! instance caches the numbers it has used.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::{FromRedisValue, ParsingError, Script, ScriptInvocation, Value};

use super::book::{GrantBook, RawGrantEvent, Secs, Tpl};
use super::dictionary::{DICTIONARY_CAPACITY, Dictionary};
use super::packed;
use super::{
    Accept, GrantAddOutcome, GrantEvent, GrantHoldings, GrantLedger, GrantReservation, GrantReserveOutcome,
    GrantSettings, GrantSettleOutcome, Holding,
};
use crate::clock::Clock;
use crate::domain::{OpenId, TemplateId};
use crate::ledger::codes;
use crate::ledger::{LeaseId, LedgerClock, LedgerError, Settle, instant, script_reply};
use crate::store::{Durability, RedisConnection};

static ADD: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/grants/add.lua")));
static RESERVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/grants/reserve.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/grants/settle.lua")));
static BURN: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/grants/burn.lua")));
static READ: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/grants/read.lua")));
static NUMBER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../scripts/grants/number.lua")));

fn script(body: &str) -> Script {
    Script::new(&format!(
        "{}{}\n{}",
        codes::lua_prelude(),
        include_str!("../scripts/grants/book.lua"),
        body
    ))
}

pub struct RedisGrants {
    redis: RedisConnection,
    prefix: String,
    settings: GrantSettings,
    clock: LedgerClock,
    dictionary: Mutex<Dictionary>,
    /// Replicas a grant or settle waits for, as `RedisLedger::with_replicas`.
    durability: Option<Durability>,
}

impl RedisGrants {
    pub fn on(redis: RedisConnection, prefix: &str, settings: GrantSettings) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            settings,
            clock: None,
            dictionary: Mutex::default(),
            durability: None,
        }
    }

    /// See `RedisLedger::with_replicas`: adds and settles wait for
    /// `replicas` replicas (`WAIT`) or fail as unavailable.
    pub fn with_replicas(self, replicas: u32, timeout: Duration) -> Self {
        Self {
            durability: Durability::of(replicas, timeout),
            ..self
        }
    }

    /// Reads time from `clock` instead of the Redis server; only for tests
    /// that move time by hand.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock: Some(clock),
            ..self
        }
    }

    fn key(&self, openid: &OpenId) -> String {
        format!("{}:{{{}}}:g", self.prefix, openid.as_str())
    }

    fn pinned_clock(&self) -> String {
        self.clock
            .as_ref()
            .map(|c| c.now().timestamp().to_string())
            .unwrap_or_default()
    }

    fn retention(&self) -> u64 {
        self.settings.retention.as_secs()
    }

    fn dictionary(&self) -> std::sync::MutexGuard<'_, Dictionary> {
        self.dictionary.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn invoke<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, LedgerError> {
        script_reply(self.redis.invoke(invocation).await)
    }

    /// A script that writes `openid`'s grants, acknowledged once the
    /// configured replicas hold the write.
    async fn invoke_durable<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        openid: &OpenId,
    ) -> Result<T, LedgerError> {
        script_reply(
            self.redis
                .invoke_durable(invocation, &self.key(openid), self.durability)
                .await,
        )
    }

    /// The template's number, assigned by the dictionary on first sight.
    async fn number(&self, template: &TemplateId) -> Result<Tpl, LedgerError> {
        if let Some(n) = self.dictionary().number(template) {
            return Ok(n);
        }
        let n: u32 = self
            .invoke(
                NUMBER
                    .key(format!("{}:templates", self.prefix))
                    .arg(template.as_str())
                    .arg(DICTIONARY_CAPACITY),
            )
            .await?;
        let n = Tpl::try_from(n).map_err(|_| LedgerError::Corrupt("template number".into()))?;
        self.dictionary().learn(template.clone(), n);
        Ok(n)
    }

    /// The template a number stands for.
    async fn name(&self, number: Tpl) -> Result<TemplateId, LedgerError> {
        if let Some(template) = self.dictionary().template(number) {
            return Ok(template.clone());
        }
        let reply = self
            .redis
            .query(
                redis::cmd("HGET")
                    .arg(format!("{}:templates", self.prefix))
                    .arg(format!("#{number}")),
            )
            .await
            .map_err(LedgerError::from)?;
        let raw = Option::<String>::from_redis_value(reply).map_err(corrupt)?;
        let template = raw.and_then(|raw| TemplateId::parse(&raw).ok()).ok_or_else(|| {
            LedgerError::Corrupt(format!("template number {number} is not in the dictionary"))
        })?;
        self.dictionary().learn(template.clone(), number);
        Ok(template)
    }

    async fn events(&self, raw: Vec<RawGrantEvent>) -> Result<Vec<GrantEvent>, LedgerError> {
        let mut events = Vec::with_capacity(raw.len());
        for event in raw {
            events.push(GrantEvent::named(event, self.name(event.template()).await?));
        }
        Ok(events)
    }
}

fn corrupt(err: ParsingError) -> LedgerError {
    LedgerError::Corrupt(err.to_string())
}

fn bad(what: &str) -> ParsingError {
    ParsingError::from(format!("unexpected {what} in a grant script reply"))
}

/// Events as the grant scripts return them: a flat list, three per event.
struct Events(Vec<RawGrantEvent>);

impl FromRedisValue for Events {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let flat: Vec<i64> = FromRedisValue::from_redis_value(v)?;
        if !flat.len().is_multiple_of(3) {
            return Err(bad("truncated event list"));
        }
        flat.chunks_exact(3)
            .map(|e| {
                let template = Tpl::try_from(e[1]).map_err(|_| bad("template number"))?;
                let grants = u32::try_from(e[2]).map_err(|_| bad("grant count"))?;
                codes::grant_event_from(e[0], template, grants).ok_or_else(|| bad("event code"))
            })
            .collect::<Result<_, _>>()
            .map(Events)
    }
}

#[async_trait]
impl GrantLedger for RedisGrants {
    async fn add_accepts(
        &self,
        openid: &OpenId,
        batch: &[(TemplateId, Accept)],
    ) -> Result<GrantAddOutcome, LedgerError> {
        let mut call = ADD.prepare_invoke();
        call.key(self.key(openid))
            .arg(self.pinned_clock())
            .arg(self.settings.max_per_template)
            .arg(self.retention());
        for (template, accept) in batch {
            call.arg(self.number(template).await?);
            match accept {
                Accept::OneTime(n) => call.arg(*n),
                Accept::LongTerm => call.arg("L"),
            };
        }
        let (held, events): (Vec<u32>, Events) = self.invoke_durable(&call, openid).await?;
        Ok(GrantAddOutcome {
            held: held.into_iter().map(Holding::of).collect(),
            events: self.events(events.0).await?,
        })
    }

    async fn reserve_for(
        &self,
        openid: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<GrantReserveOutcome, LedgerError> {
        let number = self.number(template).await?;
        let (taken, left, events): (Vec<Value>, u32, Events) = self
            .invoke(
                RESERVE
                    .key(self.key(openid))
                    .arg(self.pinned_clock())
                    .arg(self.retention())
                    .arg(number)
                    .arg(&lease.as_bytes()[..])
                    .arg(hold.as_secs())
                    .arg(if long_term { "1" } else { "0" }),
            )
            .await?;
        let reservation = if taken.is_empty() {
            None
        } else {
            let (_, deadline, taken_template): (Vec<u8>, Secs, Tpl) =
                FromRedisValue::from_redis_value(Value::Array(taken)).map_err(corrupt)?;
            Some(GrantReservation {
                lease,
                template: self.name(taken_template).await?,
                deadline: instant(deadline),
            })
        };
        Ok(GrantReserveOutcome {
            reservation,
            left: Holding::of(left),
            events: self.events(events.0).await?,
        })
    }

    async fn settle_grant(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<GrantSettleOutcome, LedgerError> {
        let (code, burned, events): (i64, u32, Events) = self
            .invoke_durable(
                SETTLE
                    .key(self.key(openid))
                    .arg(self.pinned_clock())
                    .arg(self.retention())
                    .arg(&lease.as_bytes()[..])
                    .arg(codes::settle_code(how)),
                openid,
            )
            .await?;
        let uses = u8::try_from(burned).unwrap_or(u8::MAX);
        let settled = codes::settled_from(code, uses).ok_or_else(|| corrupt(bad("settle result")))?;
        Ok(GrantSettleOutcome {
            settled,
            events: self.events(events.0).await?,
        })
    }

    async fn burn_grants(
        &self,
        openid: &OpenId,
        template: &TemplateId,
    ) -> Result<Vec<GrantEvent>, LedgerError> {
        let number = self.number(template).await?;
        let (events,): (Events,) = self
            .invoke(
                BURN.key(self.key(openid))
                    .arg(self.pinned_clock())
                    .arg(self.retention())
                    .arg(number),
            )
            .await?;
        self.events(events.0).await
    }

    async fn grants(&self, openid: &OpenId) -> Result<GrantHoldings, LedgerError> {
        let (now, blob): (Secs, Option<Vec<u8>>) = self
            .invoke(READ.key(self.key(openid)).arg(self.pinned_clock()))
            .await?;
        let mut book = match blob {
            Some(blob) => packed::decode(&blob, now)?,
            None => GrantBook::default(),
        };
        book.housekeep(now, &mut Vec::new());
        let mut holdings = GrantHoldings {
            leased: book.leased_grants(),
            ..GrantHoldings::default()
        };
        for (number, count) in &book.entries {
            if *count > 0 {
                holdings.hold(self.name(*number).await?, *count);
            }
        }
        Ok(holdings)
    }
}
