//! When a credential stops being spendable.

use chrono::{DateTime, Duration, DurationRound, Utc};

/// WeChat's validity of a formId or prepay_id, counted from the user's action.
pub const CREDENTIAL_VALIDITY: Duration = Duration::days(7);

/// `expires_at = collected_at + 7 days − safety margin`, rounded down to
/// the granularity (default a minute).
///
/// The margin covers clock skew between the user's phone, this service and
/// WeChat, and the time a send takes: spending a credential in its last
/// seconds risks a 41028 that wastes a WeChat call. The granularity bounds
/// how many distinct expiry instants a day has, and so the size of the
/// report counters kept per expiry instant (1,440 a day at a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    safety_margin: Duration,
    granularity: Duration,
}

impl ExpiryPolicy {
    /// Panics never: a margin larger than the validity simply makes every
    /// credential arrive expired, which ingest reports item by item; a
    /// granularity under a second is a second.
    pub fn new(safety_margin: Duration, granularity: Duration) -> Self {
        Self {
            safety_margin: safety_margin.max(Duration::zero()),
            granularity: granularity.max(Duration::seconds(1)),
        }
    }

    pub fn safety_margin(&self) -> Duration {
        self.safety_margin
    }

    /// The margin and granularity in whole seconds, as the ledger's Lua
    /// scripts apply them (the same rule as [`Self::expires_at_secs`]).
    pub fn as_secs(&self) -> (i64, i64) {
        (
            self.safety_margin.num_seconds(),
            self.granularity.num_seconds().max(1),
        )
    }

    /// [`Self::expires_at`] in unix seconds, as the ledgers compute it with
    /// their own clock's `now`.
    pub fn expires_at_secs(&self, collected_at: Option<i64>, now: i64) -> i64 {
        let (margin, granularity) = self.as_secs();
        let collected = collected_at.map_or(now, |at| at.min(now));
        let expires = collected + CREDENTIAL_VALIDITY.num_seconds() - margin;
        expires.div_euclid(granularity) * granularity
    }

    /// The expiry of a credential collected at `collected_at` (now when
    /// absent). A `collected_at` in the future (a phone's clock running
    /// ahead) is clamped to `now` so it cannot stretch the validity.
    pub fn expires_at(&self, collected_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
        let collected = collected_at.map_or(now, |at| at.min(now));
        let expires = collected + CREDENTIAL_VALIDITY - self.safety_margin;
        // Rounding down, never up: a credential never outlives its validity.
        expires.duration_trunc(self.granularity).unwrap_or(expires)
    }
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self::new(Duration::seconds(3600), Duration::seconds(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn seven_days_minus_margin() {
        let policy = ExpiryPolicy::new(Duration::seconds(3600), Duration::seconds(1));
        let now = at(1_800_000_000);
        assert_eq!(
            policy.expires_at(Some(at(1_799_990_000)), now),
            at(1_799_990_000 + 7 * 86_400 - 3600)
        );
        assert_eq!(
            policy.expires_at(None, now),
            at(1_800_000_000 + 7 * 86_400 - 3600)
        );
    }

    #[test]
    fn future_collection_is_clamped_to_now() {
        let policy = ExpiryPolicy::new(Duration::zero(), Duration::seconds(1));
        let now = at(1_800_000_000);
        assert_eq!(
            policy.expires_at(Some(at(1_900_000_000)), now),
            now + CREDENTIAL_VALIDITY
        );
    }

    #[test]
    fn sub_second_precision_is_truncated() {
        let policy = ExpiryPolicy::new(Duration::zero(), Duration::seconds(1));
        let now = at(1_800_000_000) + Duration::milliseconds(999);
        assert_eq!(
            policy.expires_at(None, now),
            at(1_800_000_000) + CREDENTIAL_VALIDITY
        );
    }

    #[test]
    fn seconds_and_instants_agree() {
        let policy = ExpiryPolicy::default();
        let now = at(1_800_000_059);
        for collected in [None, Some(at(1_799_000_001)), Some(at(1_900_000_000))] {
            assert_eq!(
                policy.expires_at(collected, now).timestamp(),
                policy.expires_at_secs(collected.map(|c| c.timestamp()), now.timestamp())
            );
        }
    }

    #[test]
    fn expiries_fall_on_the_granularity() {
        let policy = ExpiryPolicy::new(Duration::zero(), Duration::seconds(60));
        let now = at(1_800_000_059);
        let expires = policy.expires_at(None, now);
        assert_eq!(expires.timestamp() % 60, 0);
        assert!(
            expires <= now + CREDENTIAL_VALIDITY
                && expires > now + CREDENTIAL_VALIDITY - Duration::seconds(60)
        );
    }
}
