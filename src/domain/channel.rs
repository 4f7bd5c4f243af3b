//! The channels a message can go out on and how a send on any of them can
//! end. Both are labels, not code paths: routes, report counters, metrics
//! and the dashboard name a channel and an outcome by these values, so a
//! new channel is a new variant, not a new set of names.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A kind of WeChat message, and the templates it is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Mini-program template messages, paid for with formIds and prepay_ids.
    Template,
    /// Mini-program subscribe messages, paid for with subscribe grants.
    Subscribe,
    /// The official account's template messages (following is the permission).
    OfficialAccount,
    /// The official account's subscribe notifications, paid for with the
    /// grants its followers give in its popups.
    OfficialAccountSubscribe,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Template,
        ChannelKind::Subscribe,
        ChannelKind::OfficialAccount,
        ChannelKind::OfficialAccountSubscribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Template => "template",
            ChannelKind::Subscribe => "subscribe",
            ChannelKind::OfficialAccount => "official_account",
            ChannelKind::OfficialAccountSubscribe => "official_account_subscribe",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// Every channel's name, for messages that list them.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// The WeChat account its messages are sent as (whose token, quota and
    /// template lists they use).
    pub fn account(self) -> WechatAccount {
        match self {
            ChannelKind::Template | ChannelKind::Subscribe => WechatAccount::Miniprogram,
            ChannelKind::OfficialAccount | ChannelKind::OfficialAccountSubscribe => {
                WechatAccount::OfficialAccount
            }
        }
    }

    /// The WeChat API its messages go through, as `openapi/quota/get`
    /// names it.
    pub fn send_api(self) -> &'static str {
        match self {
            ChannelKind::Template => "/cgi-bin/message/wxopen/template/send",
            ChannelKind::Subscribe => "/cgi-bin/message/subscribe/send",
            ChannelKind::OfficialAccount => "/cgi-bin/message/template/send",
            ChannelKind::OfficialAccountSubscribe => "/cgi-bin/message/subscribe/bizsend",
        }
    }

    /// Where its counters live among a report day's fields (stored names:
    /// they never change).
    pub fn report_prefix(self) -> &'static str {
        match self {
            ChannelKind::Template => "",
            ChannelKind::Subscribe => "subscribe.",
            ChannelKind::OfficialAccount => "oa.",
            ChannelKind::OfficialAccountSubscribe => "oa_subscribe.",
        }
    }

    /// Where the grants paying for its messages are kept, under the app's
    /// key prefix (`""`: the prefix itself, as before channels had names);
    /// `None` for a channel that spends no grants. Not a valid app name, so
    /// no app's keys can meet them.
    pub fn grant_keys(self) -> Option<&'static str> {
        match self {
            ChannelKind::Subscribe => Some(""),
            ChannelKind::OfficialAccountSubscribe => Some("oa_subscribe"),
            ChannelKind::Template | ChannelKind::OfficialAccount => None,
        }
    }

    /// Whether the frontend may post its grants (`POST /v1/subscriptions`):
    /// only the mini-program's popups answer the page that showed them; the
    /// official account learns its followers' answers from WeChat's pushes
    /// alone.
    pub fn grants_posted_by_client(self) -> bool {
        self == ChannelKind::Subscribe
    }

    /// The msgid space of its messages' delivery receipts, which WeChat
    /// pushes; `None` when WeChat sends none.
    pub fn receipts(self) -> Option<&'static str> {
        match self {
            ChannelKind::Subscribe => Some("subscribe"),
            ChannelKind::OfficialAccount => Some("oa"),
            ChannelKind::OfficialAccountSubscribe => Some("oa_subscribe"),
            ChannelKind::Template => None,
        }
    }

    /// Whether WeChat's answer to a send names the message's msgid (bizsend's
    /// usually does not: its receipt is the first word of the message).
    pub fn answer_carries_msgid(self) -> bool {
        self != ChannelKind::OfficialAccountSubscribe
    }

    /// Which of WeChat's template dialects its templates are.
    pub fn templates(self) -> TemplateDialect {
        match self {
            ChannelKind::Template => TemplateDialect::OldLibrary,
            ChannelKind::Subscribe | ChannelKind::OfficialAccountSubscribe => TemplateDialect::Subscribe,
            ChannelKind::OfficialAccount => TemplateDialect::OfficialAccount,
        }
    }

    /// The outcomes a send on this channel can end with, in report order.
    pub fn outcomes(self) -> &'static [Outcome] {
        use Outcome::*;
        match self {
            ChannelKind::Template => &[
                Sent,
                NoValidCredential,
                UnknownTemplate,
                WechatRejected,
                WechatQuotaExceeded,
                WechatUnavailable,
                WechatOutcomeUnknown,
            ],
            ChannelKind::Subscribe | ChannelKind::OfficialAccountSubscribe => &[
                Sent,
                NotSubscribed,
                InvalidData,
                UnknownTemplate,
                WechatRejected,
                WechatQuotaExceeded,
                WechatUnavailable,
                WechatOutcomeUnknown,
            ],
            ChannelKind::OfficialAccount => &[
                Sent,
                NotFollowing,
                UnknownTemplate,
                WechatRejected,
                WechatQuotaExceeded,
                WechatUnavailable,
                WechatOutcomeUnknown,
            ],
        }
    }
}

/// Which of an app's two WeChat accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WechatAccount {
    Miniprogram,
    OfficialAccount,
}

impl WechatAccount {
    /// The channels whose messages are sent as this account.
    pub fn channels(self) -> Vec<ChannelKind> {
        ChannelKind::ALL
            .into_iter()
            .filter(|c| c.account() == self)
            .collect()
    }
}

/// The template calls and shapes of a channel: the old library
/// (`wxopen/template/*`), subscribe templates (`wxaapi/newtmpl/*`, with
/// `data` keys WeChat checks), or the official account's
/// (`cgi-bin/template/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateDialect {
    OldLibrary,
    Subscribe,
    OfficialAccount,
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a send ended, on any channel. The names are report fields and
/// metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// WeChat accepted the message.
    Sent,
    /// Template: the user has no valid formId or prepay_id; nothing spent.
    NoValidCredential,
    /// Subscribe: the user holds no grant of the template; nothing sent.
    NotSubscribed,
    /// Official account: the user does not follow it (43004).
    NotFollowing,
    /// `data` breaks WeChat's rules or the template's keywords; nothing spent.
    InvalidData,
    /// Not among the account's templates; nothing spent, WeChat not called.
    UnknownTemplate,
    WechatRejected,
    WechatQuotaExceeded,
    WechatUnavailable,
    WechatOutcomeUnknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::NoValidCredential => "no_valid_credential",
            Outcome::NotSubscribed => "not_subscribed",
            Outcome::NotFollowing => "not_following",
            Outcome::InvalidData => "invalid_data",
            Outcome::UnknownTemplate => "unknown_template",
            Outcome::WechatRejected => "wechat_rejected",
            Outcome::WechatQuotaExceeded => "wechat_quota_exceeded",
            Outcome::WechatUnavailable => "wechat_unavailable",
            Outcome::WechatOutcomeUnknown => "wechat_outcome_unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_names_each_outcome_once_and_starts_with_sent() {
        for kind in ChannelKind::ALL {
            let outcomes = kind.outcomes();
            assert_eq!(outcomes[0], Outcome::Sent);
            let mut names: Vec<_> = outcomes.iter().map(|o| o.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), outcomes.len(), "{kind}");
            assert_eq!(ChannelKind::parse(kind.as_str()), Some(kind));
        }
    }
}
