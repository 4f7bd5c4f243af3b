//! The counters behind usage reports and where they are kept.
//!
//! Every counter is a field of the hash of one report day (days in the
//! configured UTC offset), named by a [`Counter`] (on the day something
//! happened) or a [`Series`] (on the day of an instant: a credential's
//! uses at its expiry, minus those spent, burned or evicted, so the sum up
//! to an instant is what expired unspent and the sum after it what is
//! still available; likewise the last instant each user can be reached).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike, Utc};

use super::counter::{Counter, GRANTS_TOTAL_PREFIX, GrantCounter, LONG_TERM_TOTAL_PREFIX, Series};
use crate::clock::{Clock, SystemClock};
use crate::domain::{ChannelKind, Outcome, TemplateId};
use crate::ledger::LedgerEvent;
use crate::ledger::grants::GrantEvent;
use crate::store::{StoreError, TOTALS, UsageBatch, UsageDeltas, UsageStore};

/// Collects counter deltas and writes them to the store in batches, each
/// applied exactly once (see [`UsageBatch`]).
pub struct UsageRecorder {
    store: Arc<dyn UsageStore>,
    offset: FixedOffset,
    /// What the day of a happening counted by the pipeline is read from.
    clock: Arc<dyn Clock>,
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
        Self::with_clock(store, offset, Arc::new(SystemClock))
    }

    /// A recorder that dates what it is given without a time by `clock`.
    pub fn with_clock(store: Arc<dyn UsageStore>, offset: FixedOffset, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            offset,
            clock,
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

    /// Now, by the recorder's clock: the day the send pipeline's counts fall on.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
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
    pub fn count(&self, now: DateTime<Utc>, counter: Counter, n: i64) {
        let (day, _) = self.day_of(now);
        self.add([(day, counter.field(), n)]);
    }

    /// Counts how a send on `channel` ended.
    pub fn send(&self, now: DateTime<Utc>, channel: ChannelKind, outcome: Outcome) {
        self.count(now, Counter::Send(channel, outcome), 1);
    }

    pub fn wechat_errcode(&self, now: DateTime<Utc>, errcode: i64) {
        self.count(now, Counter::WechatErrcode(errcode), 1);
    }

    /// Turns grant events of `channel` into counter deltas:
    /// [`Counter::Grants`] on the day and, for the mini-program's subscribe
    /// grants (the ones the summary shows), the running totals of one-time
    /// grants outstanding per template (`grants.<template_id>` in
    /// [`TOTALS`]) and of long-term subscribers (`long_term.<template_id>`).
    pub fn grant_events(&self, now: DateTime<Utc>, channel: ChannelKind, events: &[GrantEvent]) {
        let (today, _) = self.day_of(now);
        let mut deltas = Vec::new();
        let summarised = channel == ChannelKind::Subscribe;
        let mut total = |prefix: &str, template: &TemplateId, n: i64| {
            if summarised {
                deltas.push((TOTALS, format!("{prefix}{}", template.as_str()), n));
            }
        };
        let mut counted = Vec::new();
        for event in events {
            let (counter, n) = match event {
                GrantEvent::Accepted { template, grants } => {
                    total(GRANTS_TOTAL_PREFIX, template, i64::from(*grants));
                    (GrantCounter::Accepted, *grants)
                }
                GrantEvent::Capped { grants, .. } => (GrantCounter::Capped, *grants),
                GrantEvent::Spent { template } => {
                    total(GRANTS_TOTAL_PREFIX, template, -1);
                    (GrantCounter::Spent, 1)
                }
                GrantEvent::Burned { template, grants } => {
                    total(GRANTS_TOTAL_PREFIX, template, -i64::from(*grants));
                    (GrantCounter::Burned, *grants)
                }
                GrantEvent::Refunded { .. } => continue,
                GrantEvent::Subscribed { template, absorbed } => {
                    total(GRANTS_TOTAL_PREFIX, template, -i64::from(*absorbed));
                    total(LONG_TERM_TOTAL_PREFIX, template, 1);
                    (GrantCounter::LongTermAccepted, 1)
                }
                GrantEvent::SentLongTerm { .. } => (GrantCounter::LongTermSent, 1),
                GrantEvent::Ended { template } => {
                    total(LONG_TERM_TOTAL_PREFIX, template, -1);
                    (GrantCounter::LongTermEnded, 1)
                }
            };
            counted.push((today, Counter::Grants(channel, counter).field(), i64::from(n)));
        }
        deltas.extend(counted);
        self.add(deltas);
    }

    /// Turns ledger events into counter deltas.
    pub fn ledger_events(&self, now: DateTime<Utc>, events: &[LedgerEvent]) {
        let (today, _) = self.day_of(now);
        let mut deltas = Vec::new();
        let mut at_instant = |series: Series, at: DateTime<Utc>, n: i64| {
            let (day, second) = self.day_of(at);
            deltas.push((day, series.at(second), n));
        };
        let mut on_today = Vec::new();
        for event in events {
            match *event {
                LedgerEvent::Collected {
                    kind,
                    uses,
                    expires_at,
                } => {
                    on_today.push((Counter::Collected(kind), 1));
                    at_instant(Series::Uses(kind), expires_at, i64::from(uses));
                }
                LedgerEvent::Spent { kind, expires_at } => {
                    on_today.push((Counter::Spent(kind), 1));
                    at_instant(Series::Uses(kind), expires_at, -1);
                }
                LedgerEvent::Burned {
                    kind,
                    uses,
                    expires_at,
                } => {
                    on_today.push((Counter::Burned(kind), i64::from(uses)));
                    at_instant(Series::Uses(kind), expires_at, -i64::from(uses));
                }
                LedgerEvent::Refunded { kind, .. } => on_today.push((Counter::Refunded(kind), 1)),
                LedgerEvent::Evicted {
                    kind,
                    uses,
                    expires_at,
                } => {
                    on_today.push((Counter::Evicted, 1));
                    at_instant(Series::Uses(kind), expires_at, -i64::from(uses));
                }
                LedgerEvent::Reach { from, to } => {
                    if let Some(from) = from {
                        at_instant(Series::Reach, from, -1);
                    }
                    if let Some(to) = to {
                        at_instant(Series::Reach, to, 1);
                    }
                }
            }
        }
        deltas.extend(
            on_today
                .into_iter()
                .map(|(counter, n)| (today, counter.field(), n)),
        );
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
