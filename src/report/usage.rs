//! The counters behind usage reports and where they are kept.
//!
//! Every counter is a field of the hash of one report day (days in the
//! configured UTC offset):
//! - on the day something happened: `collected.<kind>`, `duplicates`,
//!   `rejected.<reason>`, `evicted`, `sends.<outcome>`,
//!   `subscribe.sends.<outcome>`, `oa.sends.<outcome>`, `errcode.<n>`,
//!   `spent.<kind>`, `burned.<kind>`, `refunded.<kind>` (uses);
//! - on the day of an instant: `x.<kind>.<second of day>` adds a
//!   credential's uses at its expiry and takes away those spent, burned or
//!   evicted, so the sum up to an instant is what expired unspent, and the
//!   sum after it is what is still available; `r.<second of day>` does the
//!   same for the last instant each user can be reached.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike, Utc};

use crate::ledger::LedgerEvent;
use crate::ledger::grants::GrantEvent;
use crate::store::{StoreError, TOTALS, UsageBatch, UsageDeltas, UsageStore};

/// How a `POST /v1/subscribe-messages` ended, as reports count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Sent,
    NotSubscribed,
    InvalidData,
    /// Not among the account's subscribe templates: nothing spent.
    UnknownTemplate,
    WechatRejected,
    WechatQuotaExceeded,
    WechatUnavailable,
    WechatOutcomeUnknown,
}

impl SubscribeOutcome {
    pub const ALL: [SubscribeOutcome; 8] = [
        SubscribeOutcome::Sent,
        SubscribeOutcome::NotSubscribed,
        SubscribeOutcome::InvalidData,
        SubscribeOutcome::UnknownTemplate,
        SubscribeOutcome::WechatRejected,
        SubscribeOutcome::WechatQuotaExceeded,
        SubscribeOutcome::WechatUnavailable,
        SubscribeOutcome::WechatOutcomeUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscribeOutcome::Sent => "sent",
            SubscribeOutcome::NotSubscribed => "not_subscribed",
            SubscribeOutcome::InvalidData => "invalid_data",
            SubscribeOutcome::UnknownTemplate => "unknown_template",
            SubscribeOutcome::WechatRejected => "wechat_rejected",
            SubscribeOutcome::WechatQuotaExceeded => "wechat_quota_exceeded",
            SubscribeOutcome::WechatUnavailable => "wechat_unavailable",
            SubscribeOutcome::WechatOutcomeUnknown => "wechat_outcome_unknown",
        }
    }
}

/// How a `POST /v1/messages` ended, as reports count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    NoValidCredential,
    /// Not among the account's templates: nothing spent.
    UnknownTemplate,
    WechatRejected,
    WechatQuotaExceeded,
    WechatUnavailable,
    WechatOutcomeUnknown,
}

impl SendOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::NoValidCredential => "no_valid_credential",
            SendOutcome::UnknownTemplate => "unknown_template",
            SendOutcome::WechatRejected => "wechat_rejected",
            SendOutcome::WechatQuotaExceeded => "wechat_quota_exceeded",
            SendOutcome::WechatUnavailable => "wechat_unavailable",
            SendOutcome::WechatOutcomeUnknown => "wechat_outcome_unknown",
        }
    }
}

/// How a `POST /v1/official-account/messages` ended, as reports count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficialAccountOutcome {
    Sent,
    /// 43004: the user does not follow the account.
    NotFollowing,
    /// Not among the account's templates: WeChat was not called.
    UnknownTemplate,
    WechatRejected,
    WechatQuotaExceeded,
    WechatUnavailable,
    WechatOutcomeUnknown,
}

impl OfficialAccountOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OfficialAccountOutcome::Sent => "sent",
            OfficialAccountOutcome::NotFollowing => "not_following",
            OfficialAccountOutcome::UnknownTemplate => "unknown_template",
            OfficialAccountOutcome::WechatRejected => "wechat_rejected",
            OfficialAccountOutcome::WechatQuotaExceeded => "wechat_quota_exceeded",
            OfficialAccountOutcome::WechatUnavailable => "wechat_unavailable",
            OfficialAccountOutcome::WechatOutcomeUnknown => "wechat_outcome_unknown",
        }
    }
}

/// Collects counter deltas and writes them to the store in batches, each
/// applied exactly once (see [`UsageBatch`]).
pub struct UsageRecorder {
    store: Arc<dyn UsageStore>,
    offset: FixedOffset,
    pending: Mutex<UsageDeltas>,
    /// This process's name on its batches.
    source: String,
    flushing: tokio::sync::Mutex<Flushing>,
}

/// Flushes run one at a time, in sequence.
#[derive(Default)]
struct Flushing {
    seq: u64,
    /// A batch whose flush failed: retried as it is before any newer one.
    failed: Option<UsageBatch>,
}

impl UsageRecorder {
    pub fn new(store: Arc<dyn UsageStore>, offset: FixedOffset) -> Self {
        Self {
            store,
            offset,
            pending: Mutex::default(),
            source: hex::encode(rand::random::<[u8; 8]>()),
            flushing: tokio::sync::Mutex::default(),
        }
    }

    /// Where the counters are kept (reports read them there).
    pub fn store(&self) -> &dyn UsageStore {
        self.store.as_ref()
    }

    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// The report day and second of day of an instant.
    pub fn day_of(&self, at: DateTime<Utc>) -> (NaiveDate, u32) {
        let local = at.with_timezone(&self.offset);
        (local.date_naive(), local.num_seconds_from_midnight())
    }

    fn add(&self, deltas: impl IntoIterator<Item = (NaiveDate, String, i64)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (day, field, delta) in deltas {
            if delta != 0 {
                *pending.entry(day).or_default().entry(field).or_default() += delta;
            }
        }
    }

    /// Counts a happening on the day of `now`.
    pub fn count(&self, now: DateTime<Utc>, field: &str, n: i64) {
        let (day, _) = self.day_of(now);
        self.add([(day, field.to_owned(), n)]);
    }

    pub fn send(&self, now: DateTime<Utc>, outcome: SendOutcome) {
        self.count(now, &format!("sends.{}", outcome.as_str()), 1);
    }

    pub fn subscribe_send(&self, now: DateTime<Utc>, outcome: SubscribeOutcome) {
        self.count(now, &format!("subscribe.sends.{}", outcome.as_str()), 1);
    }

    pub fn official_account_send(&self, now: DateTime<Utc>, outcome: OfficialAccountOutcome) {
        self.count(now, &format!("oa.sends.{}", outcome.as_str()), 1);
    }

    pub fn wechat_errcode(&self, now: DateTime<Utc>, errcode: i64) {
        self.count(now, &format!("errcode.{errcode}"), 1);
    }

    /// Turns grant events into counter deltas: `subscribe.<what>` on the
    /// day, and the running total of grants outstanding per template
    /// (`grants.<template_id>` in [`TOTALS`]).
    pub fn grant_events(&self, now: DateTime<Utc>, events: &[GrantEvent]) {
        let (today, _) = self.day_of(now);
        let mut deltas = Vec::new();
        for event in events {
            // (day counter, how many, change to the template's outstanding grants)
            let (field, n, outstanding) = match event {
                GrantEvent::Accepted { template, grants } => ("accepted", *grants, Some((template, 1))),
                GrantEvent::Capped { grants, .. } => ("capped", *grants, None),
                GrantEvent::Spent { template } => ("spent", 1, Some((template, -1))),
                GrantEvent::Burned { template, grants } => ("burned", *grants, Some((template, -1))),
                GrantEvent::Refunded { .. } => continue,
            };
            let n = i64::from(n);
            deltas.push((today, format!("subscribe.{field}"), n));
            if let Some((template, sign)) = outstanding {
                deltas.push((TOTALS, format!("grants.{}", template.as_str()), sign * n));
            }
        }
        self.add(deltas);
    }

    /// Turns ledger events into counter deltas.
    pub fn ledger_events(&self, now: DateTime<Utc>, events: &[LedgerEvent]) {
        let (today, _) = self.day_of(now);
        let mut deltas = Vec::new();
        let mut at_instant = |field: &str, at: DateTime<Utc>, n: i64| {
            let (day, second) = self.day_of(at);
            deltas.push((day, format!("{field}.{second}"), n));
        };
        let mut on_today = Vec::new();
        for event in events {
            match *event {
                LedgerEvent::Collected {
                    kind,
                    uses,
                    expires_at,
                } => {
                    on_today.push((format!("collected.{kind}"), 1));
                    at_instant(&format!("x.{kind}"), expires_at, i64::from(uses));
                }
                LedgerEvent::Spent { kind, expires_at } => {
                    on_today.push((format!("spent.{kind}"), 1));
                    at_instant(&format!("x.{kind}"), expires_at, -1);
                }
                LedgerEvent::Burned {
                    kind,
                    uses,
                    expires_at,
                } => {
                    on_today.push((format!("burned.{kind}"), i64::from(uses)));
                    at_instant(&format!("x.{kind}"), expires_at, -i64::from(uses));
                }
                LedgerEvent::Refunded { kind, .. } => on_today.push((format!("refunded.{kind}"), 1)),
                LedgerEvent::Evicted {
                    kind,
                    uses,
                    expires_at,
                } => {
                    on_today.push(("evicted".to_owned(), 1));
                    at_instant(&format!("x.{kind}"), expires_at, -i64::from(uses));
                }
                LedgerEvent::Reach { from, to } => {
                    if let Some(from) = from {
                        at_instant("r", from, -1);
                    }
                    if let Some(to) = to {
                        at_instant("r", to, 1);
                    }
                }
            }
        }
        deltas.extend(on_today.into_iter().map(|(field, n)| (today, field, n)));
        self.add(deltas);
    }

    /// Writes what has accumulated. A batch that fails (even part-way) is
    /// kept whole and retried first next time, under the same sequence
    /// number, so the days it already reached do not count it twice and a
    /// Redis outage delays counts but does not lose them.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut flushing = self.flushing.lock().await;
        loop {
            let batch = match flushing.failed.take() {
                Some(batch) => batch,
                None => {
                    let deltas = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
                    if deltas.is_empty() {
                        return Ok(());
                    }
                    flushing.seq += 1;
                    UsageBatch {
                        source: self.source.clone(),
                        seq: flushing.seq,
                        deltas,
                    }
                }
            };
            if let Err(err) = self.store.add_usage(&batch).await {
                flushing.failed = Some(batch);
                return Err(err);
            }
        }
    }

    /// Flushes every `every` until the task is dropped.
    pub async fn flush_periodically(self: Arc<Self>, every: std::time::Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.flush().await {
                tracing::warn!(error = %err, "usage counters not flushed; will retry");
            }
        }
    }
}
