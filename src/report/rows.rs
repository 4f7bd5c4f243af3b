//! Report rows computed from the stored counters (named by
//! [`super::counter`]): the usage row of a day and the live summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::counter::{
    Counter, ERRCODE_PREFIX, GRANTS_TOTAL_PREFIX, GrantCounter, LONG_TERM_TOTAL_PREFIX, Series,
};
use crate::domain::{ChannelKind, CredentialKind, Outcome, RejectReason};
use crate::push::receipts::Status;
use crate::store::DayCounters;

/// Counts split by credential kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ByKind {
    pub form: i64,
    pub prepay: i64,
}

impl ByKind {
    fn from_fn(f: impl Fn(CredentialKind) -> i64) -> Self {
        Self {
            form: f(CredentialKind::Form),
            prepay: f(CredentialKind::Prepay),
        }
    }

    fn total(self) -> i64 {
        self.form + self.prepay
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rejections {
    pub mock_form_id: i64,
    pub invalid_id: i64,
    pub expired: i64,
    pub invalid_kind: i64,
}

/// How a channel's sends of a day ended: a count for every outcome the
/// channel has ([`ChannelKind::outcomes`]), zeros included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sends(BTreeMap<&'static str, i64>);

/// An object with a count for each outcome a channel can have (each
/// channel's report carries its own outcomes; an official-account row also
/// carries its deliveries beside them).
impl utoipa::PartialSchema for Sends {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let mut outcomes: Vec<Outcome> = ChannelKind::ALL
            .iter()
            .flat_map(|c| c.outcomes())
            .copied()
            .collect();
        outcomes.sort();
        outcomes.dedup();
        outcomes
            .into_iter()
            .fold(ObjectBuilder::new(), |object, outcome| {
                object.property(
                    outcome.as_str(),
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
                )
            })
            .description(Some("How a channel's sends of the day ended, by outcome"))
            .examples([serde_json::json!({"sent": 12, "wechat_rejected": 1})])
            .into()
    }
}

impl ToSchema for Sends {}

impl Sends {
    fn of(channel: ChannelKind, get: &dyn Fn(Counter) -> i64) -> Self {
        Self(
            channel
                .outcomes()
                .iter()
                .map(|&o| (o.as_str(), get(Counter::Send(channel, o))))
                .collect(),
        )
    }

    /// The count of one outcome (0 for one the channel does not have).
    pub fn get(&self, outcome: Outcome) -> i64 {
        self.0.get(outcome.as_str()).copied().unwrap_or(0)
    }
}

/// Delivery receipts WeChat pushed for a day's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Deliveries {
    pub delivered: i64,
    pub user_blocked: i64,
    pub failed: i64,
}

impl Deliveries {
    fn of(channel: ChannelKind, get: &dyn Fn(Counter) -> i64) -> Self {
        let get = |status| get(Counter::Delivery(channel, status));
        Self {
            delivered: get(Status::Delivered),
            user_blocked: get(Status::UserBlocked),
            failed: get(Status::Failed),
        }
    }
}

/// The official account's template messages of a day: how its sends
/// ended, and WeChat's receipts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct OfficialAccountRow {
    #[serde(flatten)]
    pub sends: Sends,
    pub deliveries: Deliveries,
}

/// Subscribe grants of a day: the popups' answers (from the configured
/// source only), and grants spent or burned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SubscribeRow {
    /// Grants kept (one per accept, up to the per-template cap).
    pub accepted: i64,
    pub rejected: i64,
    pub banned: i64,
    pub filtered: i64,
    pub spent: i64,
    pub burned: i64,
    /// Long-term templates, counted apart: they spend no grant.
    pub long_term: LongTermRow,
    pub sends: Sends,
    pub deliveries: Deliveries,
}

impl SubscribeRow {
    fn of(channel: ChannelKind, get: &dyn Fn(Counter) -> i64) -> Self {
        let grants = |what: GrantCounter| get(Counter::Grants(channel, what));
        Self {
            accepted: grants(GrantCounter::Accepted),
            rejected: grants(GrantCounter::Rejected),
            banned: grants(GrantCounter::Banned),
            filtered: grants(GrantCounter::Filtered),
            spent: grants(GrantCounter::Spent),
            burned: grants(GrantCounter::Burned),
            long_term: LongTermRow {
                accepted: grants(GrantCounter::LongTermAccepted),
                sent: grants(GrantCounter::LongTermSent),
                ended: grants(GrantCounter::LongTermEnded),
            },
            sends: Sends::of(channel, get),
            deliveries: Deliveries::of(channel, get),
        }
    }
}

/// Long-term subscriptions of a day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct LongTermRow {
    /// Subscriptions begun (a first accept, or one after the user turned
    /// the template off).
    pub accepted: i64,
    /// Messages sent on subscriptions (included in `sends.sent`).
    pub sent: i64,
    /// Subscriptions ended: turned off by the user, or WeChat's 43101.
    pub ended: i64,
}

/// One day of `GET /v1/reports/usage`. `spent`, `burned`, `refunded` and
/// `expired_unspent` count uses (a prepay_id has three).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageRow {
    #[schema(value_type = String, format = Date, example = "2026-11-23")]
    pub date: NaiveDate,
    pub collected: ByKind,
    pub duplicates: i64,
    pub rejected: Rejections,
    /// Credentials dropped over the per-user cap.
    pub evicted: i64,
    pub sends: Sends,
    /// WeChat's answers to sends (template and subscribe), by errcode.
    pub wechat_errcodes: BTreeMap<String, i64>,
    pub spent: ByKind,
    pub burned: ByKind,
    pub refunded: ByKind,
    /// Uses whose expiry fell on this day, up to now, never spent.
    pub expired_unspent: ByKind,
    pub subscribe: SubscribeRow,
    pub official_account: OfficialAccountRow,
    /// The official account's subscribe notifications: its followers'
    /// popup answers and grants, sends and receipts.
    pub official_account_subscribe: SubscribeRow,
}

/// `GET /v1/reports/summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    /// Users who can be sent at least one message now.
    pub users_with_credentials: i64,
    /// Uses that can be spent now.
    pub available_sends: ByKind,
    /// Uses that expire within the next 24 hours.
    pub expiring_within_24h: i64,
    /// Subscribe grants users hold (or that sends in progress hold), per
    /// template.
    pub subscribe_grants: BTreeMap<String, i64>,
    /// Users subscribed to each long-term template.
    pub long_term_subscribers: BTreeMap<String, i64>,
}

/// Days whose counters a summary needs: every instant a credential can
/// expire at lies within validity (7 days) of now.
pub fn summary_days(now: DateTime<Utc>, offset: FixedOffset) -> Vec<NaiveDate> {
    let today = now.with_timezone(&offset).date_naive();
    (0..=8)
        .filter_map(|d| today.checked_add_signed(Duration::days(d)))
        .collect()
}

/// The instant of second `second` of `day` in `offset`.
fn instant(day: NaiveDate, second: u32, offset: FixedOffset) -> Option<DateTime<Utc>> {
    let midnight = day.and_hms_opt(0, 0, 0)?;
    offset
        .from_local_datetime(&midnight)
        .single()
        .map(|t| t.with_timezone(&Utc) + Duration::seconds(i64::from(second)))
}

/// Sums the fields `<prefix>.<second>` (and a folded `<prefix>.all`, which
/// stands for instants long past) whose instant satisfies `keep`.
fn sum_at(
    fields: &DayCounters,
    day: NaiveDate,
    offset: FixedOffset,
    series: Series,
    keep: impl Fn(DateTime<Utc>) -> bool,
) -> i64 {
    fields
        .iter()
        .filter_map(|(field, value)| {
            let rest = field.strip_prefix(series.prefix())?.strip_prefix('.')?;
            let at = if rest == FOLDED {
                Some(DateTime::<Utc>::MIN_UTC)
            } else {
                instant(day, rest.parse().ok()?, offset)
            };
            at.filter(|at| keep(*at)).map(|_| *value)
        })
        .sum()
}

/// Name of the field past instants are folded into.
pub const FOLDED: &str = "all";

pub fn usage_row(day: NaiveDate, fields: &DayCounters, now: DateTime<Utc>, offset: FixedOffset) -> UsageRow {
    let get = |counter: Counter| fields.get(&counter.field()).copied().unwrap_or(0);
    let by_kind = |counter: fn(CredentialKind) -> Counter| ByKind::from_fn(|k| get(counter(k)));
    let mut wechat_errcodes: BTreeMap<String, i64> = fields
        .iter()
        .filter_map(|(f, v)| f.strip_prefix(ERRCODE_PREFIX).map(|code| (code.to_owned(), *v)))
        .collect();
    wechat_errcodes.entry("0".into()).or_insert(0);
    let reject = |r: RejectReason| get(Counter::Rejected(r));
    UsageRow {
        date: day,
        collected: by_kind(Counter::Collected),
        duplicates: get(Counter::Duplicates),
        rejected: Rejections {
            mock_form_id: reject(RejectReason::MockFormId),
            invalid_id: reject(RejectReason::InvalidId),
            expired: reject(RejectReason::Expired),
            invalid_kind: reject(RejectReason::InvalidKind),
        },
        evicted: get(Counter::Evicted),
        sends: Sends::of(ChannelKind::Template, &get),
        wechat_errcodes,
        spent: by_kind(Counter::Spent),
        burned: by_kind(Counter::Burned),
        refunded: by_kind(Counter::Refunded),
        expired_unspent: ByKind::from_fn(|k| sum_at(fields, day, offset, Series::Uses(k), |at| at <= now)),
        subscribe: SubscribeRow::of(ChannelKind::Subscribe, &get),
        official_account: OfficialAccountRow {
            sends: Sends::of(ChannelKind::OfficialAccount, &get),
            deliveries: Deliveries::of(ChannelKind::OfficialAccount, &get),
        },
        official_account_subscribe: SubscribeRow::of(ChannelKind::OfficialAccountSubscribe, &get),
    }
}

/// Grants outstanding per template, from the running totals.
pub fn subscribe_grants(totals: &DayCounters) -> BTreeMap<String, i64> {
    per_template(totals, GRANTS_TOTAL_PREFIX)
}

/// The running totals under `prefix`, per template, those above zero.
fn per_template(totals: &DayCounters, prefix: &str) -> BTreeMap<String, i64> {
    totals
        .iter()
        .filter_map(|(field, n)| Some((field.strip_prefix(prefix)?.to_owned(), *n)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The live summary from the counters of [`summary_days`] and the running
/// totals.
pub fn summary(
    days: &[(NaiveDate, DayCounters)],
    totals: &DayCounters,
    now: DateTime<Utc>,
    offset: FixedOffset,
) -> Summary {
    let sum = |series: Series, keep: &dyn Fn(DateTime<Utc>) -> bool| -> i64 {
        days.iter()
            .map(|(day, fields)| sum_at(fields, *day, offset, series, keep))
            .sum()
    };
    let live = |at: DateTime<Utc>| at > now;
    let soon = |at: DateTime<Utc>| at > now && at <= now + Duration::hours(24);
    let available = ByKind::from_fn(|k| sum(Series::Uses(k), &live));
    let expiring = ByKind::from_fn(|k| sum(Series::Uses(k), &soon));
    Summary {
        users_with_credentials: sum(Series::Reach, &live),
        available_sends: available,
        expiring_within_24h: expiring.total(),
        subscribe_grants: subscribe_grants(totals),
        long_term_subscribers: per_template(totals, LONG_TERM_TOTAL_PREFIX),
    }
}

/// Whether a day's per-second fields can be folded: every instant in it is
/// long past, so only their total matters from now on.
pub fn foldable(day: NaiveDate, fields: &DayCounters, now: DateTime<Utc>, offset: FixedOffset) -> bool {
    let long_past = instant(day, 0, offset).is_some_and(|start| start + Duration::days(2) < now);
    long_past
        && fields.keys().any(|f| {
            Series::ALL
                .iter()
                .any(|s| f.strip_prefix(s.prefix()).is_some_and(|r| r.starts_with('.')))
                && !f.ends_with(FOLDED)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    #[test]
    fn expired_unspent_counts_only_instants_already_past() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let noon = instant(day, 12 * 3600, offset()).unwrap();
        let fields: DayCounters = [
            ("x.form.100".into(), 2),
            ("x.form.43200".into(), 1),
            ("x.form.43201".into(), 5),
            ("x.prepay.all".into(), 3),
        ]
        .into();
        let row = usage_row(day, &fields, noon, offset());
        assert_eq!(row.expired_unspent, ByKind { form: 3, prepay: 3 });
        assert_eq!(row.wechat_errcodes.get("0"), Some(&0));
    }

    #[test]
    fn summary_counts_what_is_still_ahead() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let now = instant(day, 3600, offset()).unwrap();
        let next = day.succ_opt().unwrap();
        let days = vec![
            (
                day,
                [
                    ("x.form.10".into(), 4),
                    ("x.form.7200".into(), 2),
                    ("r.7200".into(), 1),
                ]
                .into(),
            ),
            (
                next,
                [
                    ("x.prepay.7200".into(), 3),
                    ("r.7200".into(), 1),
                    ("r.10".into(), -1),
                ]
                .into(),
            ),
        ];
        let totals: DayCounters = [
            ("grants.TplA".into(), 3),
            ("grants.TplB".into(), 0),
            ("flush.ab12".into(), 7),
        ]
        .into();
        let s = summary(&days, &totals, now, offset());
        assert_eq!(s.available_sends, ByKind { form: 2, prepay: 3 });
        assert_eq!(s.expiring_within_24h, 2);
        assert_eq!(s.users_with_credentials, 1);
        assert_eq!(s.subscribe_grants, [("TplA".to_owned(), 3)].into());
    }
}
