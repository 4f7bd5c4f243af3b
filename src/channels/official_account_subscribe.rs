//! The official account's subscribe notifications (服务号订阅通知,
//! `cgi-bin/message/subscribe/bizsend`,
//! `POST /v1/official-account/subscribe-messages`): paid for with grants
//! exactly as the mini-program's subscribe messages are ([`GrantSpend`]),
//! from the official account's own grant ledger, which only WeChat's
//! verified `subscribe_msg_popup_event` pushes to the official account's
//! endpoint fill. One-time and long-term templates, WeChat's `data` rules,
//! 43101 burning the template's grants, a lost answer counted as spent.
//!
//! WeChat's bizsend answer often carries no msgid; when it does, the
//! message's receipt is kept by it like the others'.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::subscribe::{GrantSpend, HeldGrant};
use super::{Channel, ChannelRoute, invalid_target};
use crate::domain::{ChannelKind, OpenId, Outcome, TemplateId, parse_target};
use crate::error::ApiError;
use crate::ledger::grants::GrantLedger;
use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::report::UsageRecorder;
use crate::send::Pending;
use crate::send::decision::Recheck;
use crate::wechat::{CallError, MiniProgramLink, WechatAnswer, WechatClient, errcode};

/// The WeChat call of these notifications.
const BIZSEND: &str = "/cgi-bin/message/subscribe/bizsend";

/// An official-account subscribe notification, as WeChat's `bizsend`
/// takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountSubscribeBody {
    /// The follower's openid (of the official account).
    touser: String,
    template_id: String,
    /// A web page the notification opens.
    page: Option<String>,
    /// A mini-program page it opens instead.
    miniprogram: Option<MiniProgramLink>,
    /// `{"thing1": {"value": "..."}, ...}`, keys `<type><digits>`, checked
    /// as for the mini-program's subscribe messages.
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
}

/// A notification as the backend asked for it (and as `bizsend` sends it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfficialAccountSubscribeMessage {
    #[serde(serialize_with = "openid_text")]
    touser: OpenId,
    #[serde(serialize_with = "template_text")]
    template_id: TemplateId,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram: Option<MiniProgramLink>,
    data: serde_json::Map<String, Value>,
    /// The account's list names the template long-term (not sent).
    #[serde(skip)]
    long_term: bool,
}

fn openid_text<S: serde::Serializer>(openid: &OpenId, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(openid.as_str())
}

fn template_text<S: serde::Serializer>(template: &TemplateId, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(template.as_str())
}

pub struct OfficialAccountSubscribeChannel {
    spend: GrantSpend,
    wechat: WechatClient,
}

impl OfficialAccountSubscribeChannel {
    /// `wechat` is the official account's client; `grants` its own ledger.
    pub fn new(grants: Arc<dyn GrantLedger>, wechat: WechatClient, usage: Arc<UsageRecorder>) -> Self {
        Self {
            spend: GrantSpend::new(ChannelKind::OfficialAccountSubscribe, grants, usage),
            wechat,
        }
    }
}

#[async_trait]
impl Channel for OfficialAccountSubscribeChannel {
    type Message = OfficialAccountSubscribeMessage;
    type Credential = HeldGrant;

    async fn reserve(
        &self,
        message: &Self::Message,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<Option<HeldGrant>, LedgerError> {
        let (touser, template) = (&message.touser, &message.template_id);
        self.spend
            .reserve(touser, template, message.long_term, lease, hold)
            .await
    }

    async fn settle(&self, message: &Self::Message, lease: LeaseId, how: Settle) -> Result<(), LedgerError> {
        self.spend.settle(&message.touser, lease, how).await
    }

    async fn call(
        &self,
        access_token: &str,
        message: &Self::Message,
        _: &HeldGrant,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        self.wechat
            .post_message(BIZSEND, access_token, message, timeout)
            .await
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

/// `text` is 1 to `max` characters with no control character.
fn text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

impl ChannelRoute for OfficialAccountSubscribeChannel {
    const KIND: ChannelKind = ChannelKind::OfficialAccountSubscribe;
    const PAID_WITH: Option<&'static str> = Some("grant");

    type Body = OfficialAccountSubscribeBody;

    fn parse(body: OfficialAccountSubscribeBody) -> Result<Self::Message, ApiError> {
        let (touser, template_id) =
            parse_target(&body.touser, &body.template_id, None).map_err(invalid_target)?;
        if body.page.as_deref().is_some_and(|p| !text(p, 1024)) {
            return Err(ApiError::invalid_request("page must be 1 to 1024 characters"));
        }
        if let Some(link) = &body.miniprogram
            && (!text(&link.appid, 64) || link.pagepath.as_deref().is_some_and(|p| !text(p, 1024)))
        {
            return Err(ApiError::invalid_request(
                "miniprogram needs an appid and at most a 1024-character pagepath",
            ));
        }
        Ok(OfficialAccountSubscribeMessage {
            touser,
            template_id,
            page: body.page,
            miniprogram: body.miniprogram,
            data: body.data,
            long_term: false,
        })
    }

    fn template(message: &Self::Message) -> (&TemplateId, Vec<&str>) {
        (
            &message.template_id,
            message.data.keys().map(String::as_str).collect(),
        )
    }

    fn listed(message: &mut Self::Message, long_term: bool) {
        message.long_term = long_term;
    }

    fn check(message: &Self::Message) -> Result<(), ApiError> {
        GrantSpend::check(&message.data)
    }

    fn sent(held: &HeldGrant, attempts: u32, _: Option<i64>, msgid: Option<String>) -> Value {
        GrantSpend::sent(held, attempts, msgid)
    }

    fn nothing_to_spend() -> (Outcome, ApiError) {
        GrantSpend::nothing_to_spend()
    }
}
