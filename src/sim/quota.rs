//! The simulated quotas of an account's send APIs, as WeChat's
//! `openapi/quota/get` reports them and `clear_quota` resets them: each send
//! API has a daily limit (`--daily-limit`) counted per Beijing day, and an
//! account may clear its counts 10 times a calendar month (48006 after).
//! Plain data that `state` keeps and counts sends into.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::clock::wechat_day;
use super::config::{BIZSEND_PATH, OA_SEND_PATH, SEND_PATH, SUBSCRIBE_SEND_PATH};
use super::errors::WxError;

/// Clears an account may make in a calendar month.
pub const CLEARS_PER_MONTH: u32 = 10;

/// Which of an account's two apps a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    MiniProgram,
    OfficialAccount,
}

impl Side {
    /// The send APIs whose quota this side reports.
    fn paths(self) -> &'static [&'static str] {
        match self {
            Side::MiniProgram => &[SEND_PATH, SUBSCRIBE_SEND_PATH],
            Side::OfficialAccount => &[OA_SEND_PATH, BIZSEND_PATH],
        }
    }
}

/// One send API's use of the day.
#[derive(Debug, Clone, Copy, Default)]
struct Used {
    day: Option<NaiveDate>,
    count: u64,
}

/// The send APIs' daily use and the month's clears, per side.
#[derive(Debug, Default)]
pub struct Quotas {
    /// (side, cgi path) → its use on its day.
    used: HashMap<(Side, &'static str), Used>,
    /// (side, (year, month)) → clears made in it.
    clears: HashMap<(Side, (i32, u32)), u32>,
}

/// `openapi/quota/get`'s `quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
}

/// The body of `openapi/quota/get`.
#[derive(Debug, Deserialize)]
pub struct QuotaGet {
    pub cgi_path: String,
}

/// The body of `clear_quota`.
#[derive(Debug, Deserialize)]
pub struct ClearQuota {
    pub appid: String,
}

impl Quotas {
    fn entry(&mut self, side: Side, path: &'static str) -> &mut Used {
        self.used.entry((side, path)).or_default()
    }

    /// Takes one send of `path`'s daily quota, or 45009 when it is used up.
    pub fn take(
        &mut self,
        side: Side,
        path: &'static str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<(), WxError> {
        let today = wechat_day(now);
        let used = self.entry(side, path);
        if used.day != Some(today) {
            *used = Used {
                day: Some(today),
                count: 0,
            };
        }
        if used.count >= limit {
            return Err(WxError::DailyQuota);
        }
        used.count += 1;
        Ok(())
    }

    /// `openapi/quota/get`: the API's limit, use and remainder today.
    pub fn get(
        &mut self,
        side: Side,
        cgi_path: &str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Quota, WxError> {
        let path = side
            .paths()
            .iter()
            .find(|p| **p == cgi_path)
            .ok_or(WxError::CgiPathNotFound)?;
        let today = wechat_day(now);
        let used = self.entry(side, path);
        let count = if used.day == Some(today) { used.count } else { 0 };
        Ok(Quota {
            daily_limit: limit,
            used: count,
            remain: limit.saturating_sub(count),
        })
    }

    /// `clear_quota`: every send API of the side starts the day again, up
    /// to [`CLEARS_PER_MONTH`] times a month.
    pub fn clear(&mut self, side: Side, now: DateTime<Utc>) -> Result<(), WxError> {
        let day = wechat_day(now);
        let made = self.clears.entry((side, (day.year(), day.month()))).or_default();
        if *made >= CLEARS_PER_MONTH {
            return Err(WxError::ClearQuotaLimit);
        }
        *made += 1;
        self.used.retain(|(s, _), _| *s != side);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_count_against_the_day_and_clears_against_the_month() {
        let mut quotas = Quotas::default();
        let now = Utc::now();
        for _ in 0..3 {
            quotas.take(Side::MiniProgram, SEND_PATH, 3, now).unwrap();
        }
        assert_eq!(
            quotas.take(Side::MiniProgram, SEND_PATH, 3, now),
            Err(WxError::DailyQuota)
        );
        assert_eq!(
            quotas.get(Side::MiniProgram, SEND_PATH, 3, now).unwrap(),
            Quota {
                daily_limit: 3,
                used: 3,
                remain: 0
            }
        );
        assert_eq!(
            quotas
                .get(Side::MiniProgram, SUBSCRIBE_SEND_PATH, 3, now)
                .unwrap()
                .used,
            0
        );
        assert_eq!(
            quotas.get(Side::MiniProgram, OA_SEND_PATH, 3, now),
            Err(WxError::CgiPathNotFound)
        );
        for _ in 0..CLEARS_PER_MONTH {
            quotas.clear(Side::MiniProgram, now).unwrap();
        }
        assert_eq!(quotas.get(Side::MiniProgram, SEND_PATH, 3, now).unwrap().used, 0);
        assert_eq!(
            quotas.clear(Side::MiniProgram, now),
            Err(WxError::ClearQuotaLimit)
        );
        assert_eq!(
            quotas.clear(Side::OfficialAccount, now),
            Ok(()),
            "each side its own"
        );
    }
}
