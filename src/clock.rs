//! Where "now" comes from. Code that decides by time takes a [`Clock`], so
//! production reads the system clock and tests move a [`ManualClock`]
//! instead of sleeping.
//!
//! The ledger is the exception that proves the rule: on Redis its scripts
//! read the server's own clock (`TIME`), so every instance of a fleet sees
//! one clock whatever its own says (docs/ledger.md, "One clock"). Only a
//! test hands the ledgers a clock (`app::Clocks::ledgers`), to move an
//! expiry or a lease by hand.

use std::sync::Mutex;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};

/// Beijing time (UTC+8), where WeChat's days, and so its daily quotas,
/// begin and end.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The WeChat day `at` falls on.
pub fn wechat_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&beijing()).date_naive()
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The process's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    /// Now, to the whole second (what the ledgers work in).
    pub fn at_current_second() -> Self {
        Self::new(DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default())
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.lock() = at;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The wall clock, moved ahead by what a test skips: time runs on as it
/// does, and a test skips a wait instead of sleeping through it.
#[derive(Debug, Default)]
pub struct ShiftedClock(Mutex<Duration>);

impl ShiftedClock {
    pub fn skip(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}
