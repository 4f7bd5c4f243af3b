//! Time as WeChat keeps it: days begin in Beijing (UTC+8), and lifetimes
//! are added without overflowing. Pure functions; every rule of the
//! simulator takes `now` as a parameter.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};

/// `t + secs`, saturating: configured TTLs may be absurdly large.
pub fn after(t: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Wall-clock time in Beijing, where WeChat's days begin.
pub fn wechat_local(t: DateTime<Utc>) -> NaiveDateTime {
    let utc = t.naive_utc();
    utc.checked_add_signed(TimeDelta::hours(8)).unwrap_or(utc)
}

pub fn wechat_day(t: DateTime<Utc>) -> NaiveDate {
    wechat_local(t).date()
}
