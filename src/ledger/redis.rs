//! The Redis ledger: one packed string per openid (`{prefix}:{<openid>}`),
//! changed only by the Lua scripts in `scripts/`, so every operation is
//! atomic for its openid across any number of service instances, and runs
//! unchanged on Redis Cluster (one key per script).
//!
//! Reads (`inspect`) fetch the string and apply the book rules in Rust
//! without writing. Report counters live in one hash per day
//! (`{prefix}:usage:{<date>}`), written in batches by the reporting code.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use redis::{Script, ScriptInvocation, Value};

use super::book::{Book, Entry, Event, ItemStatus, Lease, Secs, SettleResult};
use super::stored_id::StoredId;
use super::{
    AddOutcome, DayCounters, Holdings, LeaseId, Ledger, LedgerError, LedgerLimits, NewCredential,
    ReserveOutcome, Settle, SettleOutcome, UsageDeltas, convert,
};
use crate::domain::{CredentialKind, OpenId};
use crate::store::{RedisConnection, RedisTarget};

static ADD: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/add.lua")));
static RESERVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/reserve.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/settle.lua")));
static USAGE_ADD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/usage_add.lua")));
static USAGE_FOLD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/usage_fold.lua")));

/// Every book script starts with the shared codec and rules.
fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{}", include_str!("scripts/book.lua"), body))
}

/// How long report counters are kept: the usage report reaches 366 days back.
const USAGE_RETENTION_SECS: u64 = 400 * 86_400;

pub struct RedisLedger {
    redis: RedisConnection,
    prefix: String,
    limits: LedgerLimits,
}

impl RedisLedger {
    /// A ledger with a connection of its own (2 s timeouts). `prefix` starts
    /// every key (`fl` in production; tests use their own).
    pub fn new(target: RedisTarget, prefix: &str, limits: LedgerLimits) -> Self {
        Self::on(
            RedisConnection::new(target, Duration::from_secs(2)),
            prefix,
            limits,
        )
    }

    /// A ledger on a connection shared with the rest of the service.
    pub fn on(redis: RedisConnection, prefix: &str, limits: LedgerLimits) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            limits,
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

    fn usage_key(&self, day: NaiveDate) -> String {
        format!("{}:usage:{{{}}}", self.prefix, day.format("%Y-%m-%d"))
    }

    async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> Result<Value, LedgerError> {
        self.redis.invoke(invocation).await.map_err(LedgerError::from)
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, LedgerError> {
        self.redis.query(cmd).await.map_err(LedgerError::from)
    }

    async fn read_book(&self, openid: &OpenId) -> Result<Book, LedgerError> {
        match self.query(redis::cmd("GET").arg(self.book_key(openid))).await? {
            Value::Nil => Ok(Book::default()),
            Value::BulkString(blob) => decode_book(&blob),
            other => Err(corrupt("book", &other)),
        }
    }
}

fn corrupt(what: &str, value: &Value) -> LedgerError {
    LedgerError::Corrupt(format!("unexpected {what} reply: {value:?}"))
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn add(
        &self,
        openid: &OpenId,
        batch: &[NewCredential],
        now: DateTime<Utc>,
    ) -> Result<AddOutcome, LedgerError> {
        let mut call = ADD.prepare_invoke();
        call.key(self.book_key(openid))
            .arg(now.timestamp())
            .arg(self.limits.max_credentials_per_user);
        for item in batch {
            call.arg(kind_code(item.kind))
                .arg(StoredId::encode(&item.id).as_bytes())
                .arg(item.expires_at.timestamp());
        }
        let reply = self.invoke(&call).await?;
        let parts = array(&reply, 4, "add")?;
        let statuses = array(&parts[0], usize::MAX, "add statuses")?
            .iter()
            .map(|v| match int(v)? {
                1 => Ok(ItemStatus::Accepted),
                2 => Ok(ItemStatus::Duplicate),
                3 => Ok(ItemStatus::Expired),
                _ => Err(corrupt("add status", v)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let events = events(&parts[3])?;
        let count = |v: &Value| int(v).map(|n| u32::try_from(n).unwrap_or(0));
        Ok(convert::add_outcome(
            &statuses,
            count(&parts[1])?,
            count(&parts[2])?,
            &events,
        ))
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, LedgerError> {
        let reply = self
            .invoke(
                RESERVE
                    .key(self.book_key(openid))
                    .arg(now.timestamp())
                    .arg(&lease.as_bytes()[..])
                    .arg(deadline.timestamp()),
            )
            .await?;
        let parts = array(&reply, 2, "reserve")?;
        let lease = match array(&parts[0], usize::MAX, "lease")? {
            [] => None,
            [id, deadline, expires, kind, key] => Some(Lease {
                id: bytes(id)?.try_into().map_err(|_| corrupt("lease id", id))?,
                deadline: int(deadline)?,
                expires: int(expires)?,
                kind: kind_from(kind)?,
                key: StoredId::from_bytes(bytes(key)?).ok_or_else(|| corrupt("stored id", key))?,
            }),
            _ => return Err(corrupt("lease", &parts[0])),
        };
        convert::reserve_outcome(lease, &events(&parts[1])?)
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, LedgerError> {
        let mode = match how {
            Settle::Commit => 1,
            Settle::Burn => 2,
            Settle::Refund => 3,
        };
        let reply = self
            .invoke(
                SETTLE
                    .key(self.book_key(openid))
                    .arg(now.timestamp())
                    .arg(&lease.as_bytes()[..])
                    .arg(mode),
            )
            .await?;
        let parts = array(&reply, 3, "settle")?;
        let result = match int(&parts[0])? {
            1 => SettleResult::Spent,
            2 => SettleResult::Burned(u8::try_from(int(&parts[1])?).map_err(|_| corrupt("uses", &parts[1]))?),
            3 => SettleResult::Refunded,
            4 => SettleResult::Lapsed,
            5 => SettleResult::UnknownLease,
            _ => return Err(corrupt("settle result", &parts[0])),
        };
        Ok(convert::settle_outcome(result, &events(&parts[2])?))
    }

    async fn inspect(&self, openid: &OpenId, now: DateTime<Utc>) -> Result<Holdings, LedgerError> {
        let mut book = self.read_book(openid).await?;
        book.housekeep(now.timestamp(), &mut Vec::new());
        Ok(convert::holdings(&book))
    }

    async fn add_usage(&self, deltas: &UsageDeltas) -> Result<(), LedgerError> {
        for (day, fields) in deltas {
            let mut call = USAGE_ADD.prepare_invoke();
            call.key(self.usage_key(*day)).arg(USAGE_RETENTION_SECS);
            for (field, delta) in fields {
                call.arg(field).arg(*delta);
            }
            self.invoke(&call).await?;
        }
        Ok(())
    }

    async fn usage(&self, days: &[NaiveDate]) -> Result<Vec<DayCounters>, LedgerError> {
        let mut out = Vec::with_capacity(days.len());
        for day in days {
            let reply = self
                .query(redis::cmd("HGETALL").arg(self.usage_key(*day)))
                .await?;
            let pairs: Vec<(String, i64)> = match &reply {
                Value::Map(pairs) => pairs
                    .iter()
                    .map(|(k, v)| Ok((String::from_utf8_lossy(&bytes(k)?).into_owned(), int(v)?)))
                    .collect::<Result<_, LedgerError>>()?,
                Value::Array(flat) => flat
                    .chunks(2)
                    .map(|kv| match kv {
                        [k, v] => Ok((String::from_utf8_lossy(&bytes(k)?).into_owned(), int(v)?)),
                        _ => Err(corrupt("usage", &reply)),
                    })
                    .collect::<Result<_, LedgerError>>()?,
                other => return Err(corrupt("usage", other)),
            };
            out.push(pairs.into_iter().collect());
        }
        Ok(out)
    }

    async fn fold_usage(&self, day: NaiveDate, fold: &[&str], drop: &[&str]) -> Result<(), LedgerError> {
        let mut call = USAGE_FOLD.prepare_invoke();
        call.key(self.usage_key(day)).arg(fold.len()).arg(fold).arg(drop);
        self.invoke(&call).await.map(|_| ())
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.query(&redis::cmd("PING")).await.map(|_| ())
    }
}

fn kind_code(kind: CredentialKind) -> u8 {
    match kind {
        CredentialKind::Form => 0,
        CredentialKind::Prepay => 1,
    }
}

fn kind_from(value: &Value) -> Result<CredentialKind, LedgerError> {
    match int(value)? {
        0 => Ok(CredentialKind::Form),
        1 => Ok(CredentialKind::Prepay),
        _ => Err(corrupt("kind", value)),
    }
}

fn array<'v>(value: &'v Value, len: usize, what: &str) -> Result<&'v [Value], LedgerError> {
    match value {
        Value::Array(items) if len == usize::MAX || items.len() == len => Ok(items),
        other => Err(corrupt(what, other)),
    }
}

fn int(value: &Value) -> Result<i64, LedgerError> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("integer", value)),
        other => Err(corrupt("integer", other)),
    }
}

fn bytes(value: &Value) -> Result<Vec<u8>, LedgerError> {
    match value {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        other => Err(corrupt("string", other)),
    }
}

/// Events come as a flat list of integers, four per event (see book.lua).
fn events(value: &Value) -> Result<Vec<Event>, LedgerError> {
    let flat = array(value, usize::MAX, "events")?
        .iter()
        .map(int)
        .collect::<Result<Vec<_>, _>>()?;
    flat.chunks(4)
        .map(|e| {
            let &[code, a, b, c] = e else {
                return Err(LedgerError::Corrupt("truncated event list".into()));
            };
            let kind = || kind_from(&Value::Int(a));
            let uses = || u8::try_from(b).map_err(|_| LedgerError::Corrupt("event uses".into()));
            let instant = |t: i64| (t >= 0).then_some(t);
            Ok(match code {
                1 => Event::Collected {
                    kind: kind()?,
                    uses: uses()?,
                    expires: c,
                },
                2 => Event::Spent {
                    kind: kind()?,
                    expires: c,
                },
                3 => Event::Burned {
                    kind: kind()?,
                    uses: uses()?,
                    expires: c,
                },
                4 => Event::Refunded {
                    kind: kind()?,
                    expires: c,
                },
                5 => Event::Evicted {
                    kind: kind()?,
                    uses: uses()?,
                    expires: c,
                },
                6 => Event::Reach {
                    from: instant(a),
                    to: instant(b),
                },
                _ => return Err(LedgerError::Corrupt(format!("event code {code}"))),
            })
        })
        .collect()
}

const PREPAY: u8 = 4;
const HEX: u8 = 8;
const BURNED: u8 = 16;

/// Reads the packed book written by `book.lua` (its header gives the form).
pub(crate) fn decode_book(blob: &[u8]) -> Result<Book, LedgerError> {
    let bad = || LedgerError::Corrupt("malformed book".into());
    let mut r = Reader { blob, at: 0 };
    if r.u8().ok_or_else(bad)? != 1 {
        return Err(LedgerError::Corrupt("unknown book version".into()));
    }
    let count = r.u16().ok_or_else(bad)?;
    let mut book = Book::default();
    for _ in 0..count {
        let deadline = Secs::from(r.u32().ok_or_else(bad)?);
        let expires = Secs::from(r.u32().ok_or_else(bad)?);
        let id: [u8; 8] = r.take(8).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let meta = r.u8().ok_or_else(bad)?;
        let key = r.key(meta).ok_or_else(bad)?;
        book.leases.push(Lease {
            id,
            deadline,
            expires,
            kind: kind_of(meta),
            key,
        });
    }
    while r.at < blob.len() {
        let expires = Secs::from(r.u32().ok_or_else(bad)?);
        let meta = r.u8().ok_or_else(bad)?;
        let key = r.key(meta).ok_or_else(bad)?;
        book.entries.push(Entry {
            expires,
            kind: kind_of(meta),
            uses_left: meta & 3,
            burned: meta & BURNED != 0,
            key,
        });
    }
    Ok(book)
}

fn kind_of(meta: u8) -> CredentialKind {
    if meta & PREPAY != 0 {
        CredentialKind::Prepay
    } else {
        CredentialKind::Form
    }
}

struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.blob.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A length-prefixed id; the meta byte says whether it is packed hex.
    fn key(&mut self, meta: u8) -> Option<StoredId> {
        let len = usize::from(self.u8()?);
        let mut key = vec![u8::from(meta & HEX != 0)];
        key.extend_from_slice(self.take(len)?);
        StoredId::from_bytes(key)
    }
}
