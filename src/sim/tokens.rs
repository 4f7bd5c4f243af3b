//! access_tokens: issuing them (`/cgi-bin/token` and the stable token),
//! rotation with an overlap, the stable token's force-refresh quota, and
//! whether a presented token still works. Checking appid and secret is the
//! caller's job; nothing here knows about HTTP.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;

use super::clock::{after, wechat_day};
use super::errors::WxError;

/// Real tokens are about this long; clients must not assume less.
const TOKEN_LEN: usize = 136;
const FORCE_REFRESH_MIN_GAP: TimeDelta = TimeDelta::seconds(30);
const FORCE_REFRESHES_PER_DAY: u32 = 20;
/// A dead token is remembered this long so it answers 42001/40001 like
/// WeChat rather than looking like garbage.
const REMEMBER_DEAD: TimeDelta = TimeDelta::days(1);

/// The answer of both token endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
}

struct Token {
    expires_at: DateTime<Utc>,
    /// Set when a newer token replaced this one: end of the overlap.
    superseded_until: Option<DateTime<Utc>>,
}

impl Token {
    /// When the token stops working, and the errcode it answers from then
    /// on: whichever of ttl and overlap runs out first decides.
    fn death(&self) -> (DateTime<Utc>, WxError) {
        match self.superseded_until {
            Some(until) if until < self.expires_at => (until, WxError::InvalidToken),
            _ => (self.expires_at, WxError::TokenExpired),
        }
    }
}

pub struct Tokens {
    ttl_secs: u64,
    overlap_secs: u64,
    known: HashMap<String, Token>,
    /// Latest from `/cgi-bin/token`.
    plain: Option<String>,
    /// Latest from `/cgi-bin/stable_token`; WeChat keeps the two apart.
    stable: Option<String>,
    last_forced: Option<DateTime<Utc>>,
    forced_today: Option<(NaiveDate, u32)>,
}

impl Tokens {
    pub fn new(ttl_secs: u64, overlap_secs: u64) -> Self {
        Self {
            ttl_secs,
            overlap_secs,
            known: HashMap::new(),
            plain: None,
            stable: None,
            last_forced: None,
            forced_today: None,
        }
    }

    /// `/cgi-bin/token`: always a new token.
    pub fn fetch(&mut self, now: DateTime<Utc>) -> Issued {
        let mut current = self.plain.take();
        let access_token = self.rotate(&mut current, now);
        self.plain = current;
        Issued {
            access_token,
            expires_in: self.ttl_secs,
        }
    }

    /// `/cgi-bin/stable_token`: the same token while it lives, unless forced.
    pub fn fetch_stable(&mut self, force: bool, now: DateTime<Utc>) -> Result<Issued, WxError> {
        if force {
            self.count_forced(now)?;
        } else if let Some(current) = &self.stable
            && let Some(token) = self.known.get(current)
            && now < token.expires_at
        {
            let left = (token.expires_at - now).num_seconds();
            return Ok(Issued {
                access_token: current.clone(),
                expires_in: u64::try_from(left).unwrap_or(0),
            });
        }
        let mut current = self.stable.take();
        let access_token = self.rotate(&mut current, now);
        self.stable = current;
        Ok(Issued {
            access_token,
            expires_in: self.ttl_secs,
        })
    }

    /// Whether this issued `token` (live or not).
    pub fn issued(&self, token: &str) -> bool {
        self.known.contains_key(token)
    }

    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<(), WxError> {
        let token = self.known.get(token).ok_or(WxError::InvalidToken)?;
        let (dies_at, reason) = token.death();
        if now >= dies_at { Err(reason) } else { Ok(()) }
    }

    pub fn prune(&mut self, now: DateTime<Utc>) {
        let Some(cutoff) = now.checked_sub_signed(REMEMBER_DEAD) else {
            return;
        };
        self.known.retain(|_, token| token.death().0 > cutoff);
    }

    fn count_forced(&mut self, now: DateTime<Utc>) -> Result<(), WxError> {
        if let Some(last) = self.last_forced
            && now - last < FORCE_REFRESH_MIN_GAP
        {
            return Err(WxError::TooFrequent);
        }
        let today = wechat_day(now);
        let used = match self.forced_today {
            Some((day, used)) if day == today => used,
            _ => 0,
        };
        if used >= FORCE_REFRESHES_PER_DAY {
            return Err(WxError::DailyQuota);
        }
        self.forced_today = Some((today, used + 1));
        self.last_forced = Some(now);
        Ok(())
    }

    /// Starts the overlap of `current` and replaces it with a fresh token.
    fn rotate(&mut self, current: &mut Option<String>, now: DateTime<Utc>) -> String {
        if let Some(old) = current.take()
            && let Some(token) = self.known.get_mut(&old)
        {
            token.superseded_until = Some(after(now, self.overlap_secs));
        }
        let fresh = loop {
            let candidate = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LEN);
            if !self.known.contains_key(&candidate) {
                break candidate;
            }
        };
        let token = Token {
            expires_at: after(now, self.ttl_secs),
            superseded_until: None,
        };
        self.known.insert(fresh.clone(), token);
        *current = Some(fresh.clone());
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn superseded_token_works_for_the_overlap_then_is_not_latest() {
        let mut tokens = Tokens::new(7200, 300);
        let old = tokens.fetch(at(0)).access_token;
        let new = tokens.fetch(at(10)).access_token;
        assert_ne!(old, new);
        assert_eq!(old.len(), TOKEN_LEN);
        assert_eq!(tokens.check(&old, at(309)), Ok(()));
        assert_eq!(tokens.check(&old, at(310)), Err(WxError::InvalidToken));
        assert_eq!(tokens.check(&new, at(7209)), Ok(()));
        assert_eq!(tokens.check(&new, at(7210)), Err(WxError::TokenExpired));
        assert_eq!(tokens.check("nope", at(0)), Err(WxError::InvalidToken));
    }

    #[test]
    fn ttl_decides_when_it_runs_out_before_the_overlap() {
        let mut tokens = Tokens::new(100, 300);
        let old = tokens.fetch(at(0)).access_token;
        tokens.fetch(at(50));
        assert_eq!(tokens.check(&old, at(100)), Err(WxError::TokenExpired));
    }

    #[test]
    fn stable_token_is_reused_and_kept_apart_from_plain_tokens() {
        let mut tokens = Tokens::new(7200, 300);
        let first = tokens.fetch_stable(false, at(0));
        tokens.fetch(at(1));
        let again = tokens.fetch_stable(false, at(100));
        let (Ok(first), Ok(again)) = (first, again) else {
            panic!("stable fetch failed")
        };
        assert_eq!(first.access_token, again.access_token);
        assert_eq!(again.expires_in, 7100);
        assert_eq!(tokens.check(&first.access_token, at(7199)), Ok(()));
    }

    #[test]
    fn stable_token_is_renewed_once_expired() {
        let mut tokens = Tokens::new(60, 300);
        let first = tokens.fetch_stable(false, at(0)).map(|i| i.access_token);
        let later = tokens.fetch_stable(false, at(60)).map(|i| i.access_token);
        assert_ne!(first, later);
    }

    #[test]
    fn force_refresh_is_rate_limited_and_capped_per_day() {
        let mut tokens = Tokens::new(7200, 300);
        // at(0) is 06:13 in UTC+8: 20 refreshes a minute apart stay in one day.
        assert!(tokens.fetch_stable(true, at(0)).is_ok());
        assert_eq!(tokens.fetch_stable(true, at(29)), Err(WxError::TooFrequent));
        for i in 1..20 {
            assert!(tokens.fetch_stable(true, at(60 * i)).is_ok(), "refresh {i}");
        }
        assert_eq!(tokens.fetch_stable(true, at(60 * 20)), Err(WxError::DailyQuota));
        assert!(tokens.fetch_stable(false, at(60 * 20)).is_ok());
        assert!(tokens.fetch_stable(true, at(86_400)).is_ok());
    }

    #[test]
    fn prune_forgets_long_dead_tokens_only() {
        let mut tokens = Tokens::new(10, 0);
        let old = tokens.fetch(at(0)).access_token;
        tokens.prune(at(86_000));
        assert_eq!(tokens.check(&old, at(86_000)), Err(WxError::TokenExpired));
        tokens.prune(at(86_411));
        assert_eq!(tokens.known.len(), 0);
    }
}
