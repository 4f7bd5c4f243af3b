//! The official account's template message channel
//! (`POST /v1/official-account/messages`): nothing of the user's
//! is spent (following the account is the permission), so reserving and
//! settling are no-ops and the pipeline brings only its retries, token
//! control and time bounds. A lost answer cannot be checked: it is reported
//! as unknown and never sent again. 43004 (the user does not follow) is a
//! refusal of the message, not of a credential.

use std::time::Duration;

use actix_web::http::StatusCode;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Channel, ChannelRoute, invalid_target};
use crate::domain::{ChannelKind, Outcome, TemplateId, parse_target, printable};
use crate::error::{ApiError, code};
use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::push::receipts::Messages;
use crate::send::Pending;
use crate::send::decision::Recheck;
use crate::wechat::{
    CallError, MiniProgramLink, OfficialAccountMessage, WechatAnswer, WechatClient, errcode,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountMessageBody {
    /// The follower's openid (of the official account).
    touser: String,
    template_id: String,
    /// A web page the message opens.
    url: Option<String>,
    /// A mini-program page the message opens instead.
    miniprogram: Option<MiniProgramLink>,
    /// `{"first": {"value": "..."}, "keyword1": {...}, ...}`.
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
    /// WeChat's own dedup key for the message, at most 32 characters.
    client_msg_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    status: &'static str,
    /// WeChat's id of the message (a string: it can exceed 2^53).
    msgid: Option<String>,
    attempts: u32,
}

/// 1 to `max` bytes without control characters.
fn text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && printable(s)
}

pub struct OfficialAccountChannel {
    wechat: WechatClient,
}

impl OfficialAccountChannel {
    pub fn new(wechat: WechatClient) -> Self {
        Self { wechat }
    }

    /// The official account's appid.
    pub fn appid(&self) -> &str {
        self.wechat.appid()
    }
}

#[async_trait]
impl Channel for OfficialAccountChannel {
    type Message = OfficialAccountMessage;
    type Credential = ();

    async fn reserve(
        &self,
        _: &OfficialAccountMessage,
        _: LeaseId,
        _: Duration,
    ) -> Result<Option<()>, LedgerError> {
        Ok(Some(()))
    }

    async fn settle(&self, _: &OfficialAccountMessage, _: LeaseId, _: Settle) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn call(
        &self,
        access_token: &str,
        message: &OfficialAccountMessage,
        _: &(),
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        self.wechat
            .send_official_account(access_token, message, timeout)
            .await
    }

    fn recheck(&self, _: &()) -> Recheck {
        Recheck::Impossible
    }

    fn is_credential_error(_: i64) -> bool {
        false
    }

    fn to_record(lease: LeaseId, _: &()) -> String {
        serde_json::json!({ "lease": lease.to_hex() }).to_string()
    }

    fn from_record(record: &str) -> Option<Pending<()>> {
        let stored: serde_json::Value = serde_json::from_str(record).ok()?;
        let lease = LeaseId::from_hex(stored["lease"].as_str()?)?;
        Some(Pending {
            lease,
            credential: (),
        })
    }
}

impl ChannelRoute for OfficialAccountChannel {
    const KIND: ChannelKind = ChannelKind::OfficialAccount;
    const PAID_WITH: Option<&'static str> = None;
    const RECEIPTS: Option<Messages> = Some(Messages::OfficialAccount);

    type Body = OfficialAccountMessageBody;

    fn parse(body: OfficialAccountMessageBody) -> Result<OfficialAccountMessage, ApiError> {
        let (touser, template_id) =
            parse_target(&body.touser, &body.template_id, None).map_err(invalid_target)?;
        let web_url = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if body.url.as_deref().is_some_and(|u| !text(u, 1024) || !web_url(u)) {
            return Err(ApiError::invalid_request(
                "url must be an http(s) URL of at most 1024 characters",
            ));
        }
        if let Some(link) = &body.miniprogram
            && (!text(&link.appid, 64) || link.pagepath.as_deref().is_some_and(|p| !text(p, 1024)))
        {
            return Err(ApiError::invalid_request(
                "miniprogram needs an appid and at most a 1024-character pagepath",
            ));
        }
        if body.client_msg_id.as_deref().is_some_and(|id| !text(id, 32)) {
            return Err(ApiError::invalid_request(
                "client_msg_id must be 1 to 32 printable characters",
            ));
        }
        if body.data.is_empty()
            || !body
                .data
                .values()
                .all(|v| v.get("value").is_some_and(Value::is_string))
        {
            return Err(ApiError::invalid_request(
                "data must map keywords to {\"value\": \"...\"}",
            ));
        }
        Ok(OfficialAccountMessage {
            touser,
            template_id,
            url: body.url,
            miniprogram: body.miniprogram,
            data: body.data,
            client_msg_id: body.client_msg_id,
        })
    }

    fn template(message: &OfficialAccountMessage) -> (&TemplateId, Vec<&str>) {
        (&message.template_id, Vec::new())
    }

    fn sent(_: &(), attempts: u32, _: Option<i64>, msgid: Option<String>) -> Value {
        serde_json::json!(Accepted {
            status: "accepted",
            msgid,
            attempts,
        })
    }

    /// Nothing is reserved for these messages, so never reached.
    fn nothing_to_spend() -> (Outcome, ApiError) {
        (
            Outcome::WechatUnavailable,
            ApiError::wechat_unavailable("nothing was sent"),
        )
    }

    fn refusal(code: i64) -> Option<(Outcome, ApiError)> {
        (code == errcode::NOT_FOLLOWING).then(|| {
            (
                Outcome::NotFollowing,
                ApiError::new(
                    StatusCode::CONFLICT,
                    code::NOT_FOLLOWING,
                    "the user does not follow the official account (43004); nothing was sent",
                ),
            )
        })
    }
}
