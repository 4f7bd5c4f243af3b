//! The subscribe message channel (`subscribeMessage.send`,
//! `POST /v1/subscribe-messages`): `data` is checked against WeChat's rules
//! first (nothing is spent on a message WeChat would refuse); then it spends
//! one of the recipient's grants of the message's template. Grants are counted,
//! not named, so a lost answer cannot be checked: it counts as spent. 43101
//! means the user cancelled: every grant of the template is burned. A
//! long-term template the user subscribed to spends nothing: the send
//! leases the subscription, and 43101 ends it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Channel, ChannelRoute, invalid_target};
use crate::domain::{ChannelKind, OpenId, Outcome, TemplateId, parse_target, subscribe_data};
use crate::error::{ApiError, code};
use crate::ledger::grants::{GrantLedger, GrantReservation, Holding};
use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::report::UsageRecorder;
use crate::send::Pending;
use crate::send::decision::Recheck;
use crate::wechat::{CallError, SubscribeMessage, WechatAnswer, WechatClient, errcode};

const STATES: [&str; 3] = ["developer", "trial", "formal"];
const LANGS: [&str; 4] = ["zh_CN", "en_US", "zh_HK", "zh_TW"];

/// A subscribe message, as WeChat's `subscribeMessage.send` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeMessageBody {
    /// The recipient's openid.
    touser: String,
    template_id: String,
    /// Mini-program page to open, e.g. `pages/order/detail?id=42`.
    page: Option<String>,
    /// `{"thing1": {"value": "..."}, ...}`, keys `<type><digits>`.
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
    /// `developer`, `trial` or `formal`.
    miniprogram_state: Option<String>,
    /// `zh_CN`, `en_US`, `zh_HK` or `zh_TW`.
    lang: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscribeSent {
    #[schema(example = "sent")]
    status: &'static str,
    /// WeChat's id of the message (a string: it can exceed 2^53).
    msgid: Option<String>,
    /// Grants of this template the user still holds; absent when the
    /// message went on a long-term subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    grants_left: Option<u32>,
    /// Sent on the user's long-term subscription: nothing was spent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    long_term: bool,
    /// Calls made to WeChat.
    attempts: u32,
}

pub struct SubscribeChannel {
    spend: GrantSpend,
    wechat: WechatClient,
}

impl SubscribeChannel {
    pub fn new(grants: Arc<dyn GrantLedger>, wechat: WechatClient, usage: Arc<UsageRecorder>) -> Self {
        Self {
            spend: GrantSpend::new(ChannelKind::Subscribe, grants, usage),
            wechat,
        }
    }
}

/// What every channel paid for with subscribe grants shares (the
/// mini-program's subscribe messages, the official account's subscribe
/// notifications): one grant of the message's template reserved from the
/// channel's own grant ledger (or its long-term subscription leased),
/// settled by WeChat's answer, and counted under the channel's name; the
/// `data` rules; the answers.
pub struct GrantSpend {
    kind: ChannelKind,
    grants: Arc<dyn GrantLedger>,
    usage: Arc<UsageRecorder>,
}

impl GrantSpend {
    pub fn new(kind: ChannelKind, grants: Arc<dyn GrantLedger>, usage: Arc<UsageRecorder>) -> Self {
        Self { kind, grants, usage }
    }

    pub async fn reserve(
        &self,
        touser: &OpenId,
        template: &TemplateId,
        long_term: bool,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<Option<HeldGrant>, LedgerError> {
        let reserved = self
            .grants
            .reserve_for(touser, template, long_term, lease, hold)
            .await?;
        self.usage
            .grant_events(self.usage.now(), self.kind, &reserved.events);
        let left = reserved.left;
        Ok(reserved
            .reservation
            .map(|reservation| HeldGrant { reservation, left }))
    }

    pub async fn settle(&self, touser: &OpenId, lease: LeaseId, how: Settle) -> Result<(), LedgerError> {
        let settled = self.grants.settle_grant(touser, lease, how).await?;
        self.usage
            .grant_events(self.usage.now(), self.kind, &settled.events);
        Ok(())
    }

    pub fn to_record(lease: LeaseId, held: &HeldGrant) -> String {
        let stored = StoredGrant {
            lease: lease.to_hex(),
            template: held.reservation.template.as_str().to_owned(),
            deadline: held.reservation.deadline,
            left: match held.left {
                Holding::Grants(n) => n,
                Holding::LongTerm => 0,
            },
            long_term: held.left == Holding::LongTerm,
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub fn from_record(record: &str) -> Option<Pending<HeldGrant>> {
        let stored: StoredGrant = serde_json::from_str(record).ok()?;
        let lease = LeaseId::from_hex(&stored.lease)?;
        let reservation = GrantReservation {
            lease,
            template: TemplateId::parse(&stored.template).ok()?,
            deadline: stored.deadline,
        };
        Some(Pending {
            lease,
            credential: HeldGrant {
                reservation,
                left: if stored.long_term {
                    Holding::LongTerm
                } else {
                    Holding::Grants(stored.left)
                },
            },
        })
    }

    /// WeChat's `data` rules, checked before anything is spent.
    pub fn check(data: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
        subscribe_data::check(data).map_err(|violation| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::INVALID_DATA,
                format!("{violation}; nothing was spent and WeChat was not called"),
            )
            .with("field", violation.field.clone())
            .with("rule", violation.rule.clone())
        })
    }

    /// The 200 body of a message WeChat accepted.
    pub fn sent(held: &HeldGrant, attempts: u32, msgid: Option<String>) -> Value {
        let (grants_left, long_term) = match held.left {
            Holding::Grants(n) => (Some(n), false),
            Holding::LongTerm => (None, true),
        };
        serde_json::json!(SubscribeSent {
            status: "sent",
            msgid,
            grants_left,
            long_term,
            attempts,
        })
    }

    pub fn nothing_to_spend() -> (Outcome, ApiError) {
        (
            Outcome::NotSubscribed,
            ApiError::new(
                StatusCode::CONFLICT,
                code::NOT_SUBSCRIBED,
                "this user holds no grant of this template (never accepted, used up, or turned off); nothing was sent",
            ),
        )
    }
}

/// A reserved grant (or a leased long-term subscription), and what the
/// user holds of its template besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldGrant {
    pub reservation: GrantReservation,
    pub left: Holding,
}

#[async_trait]
impl Channel for SubscribeChannel {
    type Message = SubscribeMessage;
    type Credential = HeldGrant;

    async fn reserve(
        &self,
        message: &SubscribeMessage,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<Option<HeldGrant>, LedgerError> {
        let (touser, template) = (&message.touser, &message.template_id);
        self.spend
            .reserve(touser, template, message.long_term, lease, hold)
            .await
    }

    async fn settle(
        &self,
        message: &SubscribeMessage,
        lease: LeaseId,
        how: Settle,
    ) -> Result<(), LedgerError> {
        self.spend.settle(&message.touser, lease, how).await
    }

    async fn call(
        &self,
        access_token: &str,
        message: &SubscribeMessage,
        _: &HeldGrant,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        self.wechat.send_subscribe(access_token, message, timeout).await
    }

    fn recheck(&self, _: &HeldGrant) -> Recheck {
        Recheck::Impossible
    }

    fn is_credential_error(code: i64) -> bool {
        code == errcode::NOT_SUBSCRIBED
    }

    fn to_record(lease: LeaseId, held: &HeldGrant) -> String {
        GrantSpend::to_record(lease, held)
    }

    fn from_record(record: &str) -> Option<Pending<HeldGrant>> {
        GrantSpend::from_record(record)
    }
}

/// A held grant as an idempotency record keeps it.
#[derive(Serialize, Deserialize)]
struct StoredGrant {
    lease: String,
    template: String,
    deadline: DateTime<Utc>,
    left: u32,
    #[serde(default)]
    long_term: bool,
}

impl ChannelRoute for SubscribeChannel {
    const KIND: ChannelKind = ChannelKind::Subscribe;
    const PAID_WITH: Option<&'static str> = Some("grant");

    type Body = SubscribeMessageBody;

    fn parse(body: SubscribeMessageBody) -> Result<SubscribeMessage, ApiError> {
        let (touser, template_id) =
            parse_target(&body.touser, &body.template_id, body.page.as_deref()).map_err(invalid_target)?;
        if let Some(state) = &body.miniprogram_state
            && !STATES.contains(&state.as_str())
        {
            return Err(ApiError::invalid_request(
                "miniprogram_state must be developer, trial or formal",
            ));
        }
        if let Some(lang) = &body.lang
            && !LANGS.contains(&lang.as_str())
        {
            return Err(ApiError::invalid_request(
                "lang must be zh_CN, en_US, zh_HK or zh_TW",
            ));
        }
        Ok(SubscribeMessage {
            touser,
            template_id,
            page: body.page,
            data: body.data,
            miniprogram_state: body.miniprogram_state,
            lang: body.lang,
            long_term: false,
        })
    }

    fn template(message: &SubscribeMessage) -> (&TemplateId, Vec<&str>) {
        (
            &message.template_id,
            message.data.keys().map(String::as_str).collect(),
        )
    }

    fn listed(message: &mut SubscribeMessage, long_term: bool) {
        message.long_term = long_term;
    }

    fn check(message: &SubscribeMessage) -> Result<(), ApiError> {
        GrantSpend::check(&message.data)
    }

    fn sent(held: &HeldGrant, attempts: u32, _: Option<i64>, msgid: Option<String>) -> Value {
        GrantSpend::sent(held, attempts, msgid)
    }

    fn nothing_to_spend() -> (Outcome, ApiError) {
        GrantSpend::nothing_to_spend()
    }
}
