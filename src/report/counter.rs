//! The report's counters as one type. Every writer (ingest, sends, grants,
//! pushes, ledger events) and every reader (the usage row, the summary)
//! names a counter by a [`Counter`] value and gets its stored field name
//! from [`Counter::field`], so a misspelt name cannot silently read as zero.
//!
//! Field names are what the store keeps: they stay as they are across
//! versions (reports of past days read them).

use crate::domain::{ChannelKind, CredentialKind, Outcome, RejectReason};
use crate::push::receipts::Status;

/// A counter of one report day: something that happened on that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Credentials collected.
    Collected(CredentialKind),
    /// Credentials posted again.
    Duplicates,
    /// Items of an ingest refused.
    Rejected(RejectReason),
    /// Credentials dropped over the per-user cap.
    Evicted,
    /// How a send on a channel ended.
    Send(ChannelKind, Outcome),
    /// WeChat's answers to send calls, by errcode.
    WechatErrcode(i64),
    /// Uses of formIds and prepay_ids spent, burned and given back.
    Spent(CredentialKind),
    Burned(CredentialKind),
    Refunded(CredentialKind),
    /// Subscribe popups' answers and grants, of a channel paid for with
    /// grants.
    Grants(ChannelKind, GrantCounter),
    /// Delivery receipts WeChat pushed, by channel and status.
    Delivery(ChannelKind, Status),
}

/// What happened to subscribe grants on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantCounter {
    /// Grants kept (one per accept, up to the per-template cap).
    Accepted,
    /// Accepts over the per-template cap.
    Capped,
    Rejected,
    Banned,
    Filtered,
    Spent,
    Burned,
    /// Long-term subscriptions begun.
    LongTermAccepted,
    /// Messages sent on long-term subscriptions (nothing spent).
    LongTermSent,
    /// Long-term subscriptions ended (turned off, or WeChat's 43101).
    LongTermEnded,
}

impl GrantCounter {
    fn as_str(self) -> &'static str {
        match self {
            GrantCounter::Accepted => "accepted",
            GrantCounter::Capped => "capped",
            GrantCounter::Rejected => "rejected",
            GrantCounter::Banned => "banned",
            GrantCounter::Filtered => "filtered",
            GrantCounter::Spent => "spent",
            GrantCounter::Burned => "burned",
            GrantCounter::LongTermAccepted => "long_term.accepted",
            GrantCounter::LongTermSent => "long_term.sent",
            GrantCounter::LongTermEnded => "long_term.ended",
        }
    }
}

impl Counter {
    /// The field of the day's hash this counter is kept in.
    pub fn field(self) -> String {
        match self {
            Counter::Collected(kind) => format!("collected.{}", kind.as_str()),
            Counter::Duplicates => "duplicates".to_owned(),
            Counter::Rejected(reason) => format!("rejected.{}", reason.as_str()),
            Counter::Evicted => "evicted".to_owned(),
            Counter::Send(channel, outcome) => {
                format!("{}sends.{}", channel.report_prefix(), outcome.as_str())
            }
            Counter::WechatErrcode(code) => format!("errcode.{code}"),
            Counter::Spent(kind) => format!("spent.{}", kind.as_str()),
            Counter::Burned(kind) => format!("burned.{}", kind.as_str()),
            Counter::Refunded(kind) => format!("refunded.{}", kind.as_str()),
            Counter::Grants(channel, what) => format!("{}{}", channel.report_prefix(), what.as_str()),
            Counter::Delivery(channel, status) => {
                format!("{}deliveries.{}", channel.report_prefix(), status.as_str())
            }
        }
    }
}

/// Prefix of the errcode counters, for reading them all back.
pub const ERRCODE_PREFIX: &str = "errcode.";

/// Series kept per second of a day (`<prefix>.<second of day>`): the sum up
/// to an instant is what already passed, the sum after it what is ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// A credential's uses, added at its expiry and taken away when spent,
    /// burned or evicted.
    Uses(CredentialKind),
    /// The last instant each user can be reached.
    Reach,
}

impl Series {
    pub const ALL: [Series; 3] = [
        Series::Uses(CredentialKind::Form),
        Series::Uses(CredentialKind::Prepay),
        Series::Reach,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            Series::Uses(CredentialKind::Form) => "x.form",
            Series::Uses(CredentialKind::Prepay) => "x.prepay",
            Series::Reach => "r",
        }
    }

    /// The field of one second of a day.
    pub fn at(self, second: u32) -> String {
        format!("{}.{second}", self.prefix())
    }
}

/// Prefix of the running totals of grants outstanding per template.
pub const GRANTS_TOTAL_PREFIX: &str = "grants.";
/// Prefix of the running totals of long-term subscribers per template.
pub const LONG_TERM_TOTAL_PREFIX: &str = "long_term.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_field_names_stay_as_past_days_keep_them() {
        let cases = [
            (Counter::Send(ChannelKind::Template, Outcome::Sent), "sends.sent"),
            (
                Counter::Send(ChannelKind::Subscribe, Outcome::NotSubscribed),
                "subscribe.sends.not_subscribed",
            ),
            (
                Counter::Send(ChannelKind::OfficialAccount, Outcome::NotFollowing),
                "oa.sends.not_following",
            ),
            (
                Counter::Delivery(ChannelKind::OfficialAccount, Status::UserBlocked),
                "oa.deliveries.user_blocked",
            ),
            (
                Counter::Delivery(ChannelKind::Subscribe, Status::Delivered),
                "subscribe.deliveries.delivered",
            ),
            (
                Counter::Grants(ChannelKind::Subscribe, GrantCounter::Banned),
                "subscribe.banned",
            ),
            (
                Counter::Grants(ChannelKind::Subscribe, GrantCounter::LongTermSent),
                "subscribe.long_term.sent",
            ),
            (Counter::Collected(CredentialKind::Prepay), "collected.prepay"),
            (
                Counter::Rejected(RejectReason::MockFormId),
                "rejected.mock_form_id",
            ),
            (Counter::WechatErrcode(-1), "errcode.-1"),
        ];
        for (counter, field) in cases {
            assert_eq!(counter.field(), field);
        }
        assert_eq!(Series::Uses(CredentialKind::Form).at(7), "x.form.7");
        assert_eq!(Series::Reach.at(0), "r.0");
    }
}
