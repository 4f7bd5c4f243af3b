//! The official account's template message channel
//! (`POST /v1/official-account/messages`): nothing of the user's
//! is spent (following the account is the permission), so reserving and
//! settling are no-ops and the pipeline brings its retries, token control
//! and time bounds. 43004 (the user does not follow) is a refusal of the
//! message, not of a credential.
//!
//! Every message carries a `client_msg_id`: the caller's, else one derived
//! from the Idempotency-Key, else one of the request's own. WeChat sends one
//! message per (touser, `client_msg_id`) within 10 minutes, so a message
//! whose answer was lost is sent again with the same id while that window
//! lasts (with a margin, [`SAFE_RESEND`]): WeChat answers it without a
//! second message. After the window a lost answer stays unknown and the
//! message is never sent again.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use actix_web::http::StatusCode;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Channel, ChannelRoute, invalid_target};
use crate::clock::Clock;
use crate::domain::{ChannelKind, Outcome, TemplateId, parse_target, printable};
use crate::error::{ApiError, code};
use crate::ledger::{LeaseId, LedgerError, Settle};
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
    /// WeChat's own dedup key for the message, at most 32 characters
    /// (default: derived from the Idempotency-Key, else one of the
    /// request's own).
    client_msg_id: Option<String>,
}

/// How long after a message was first presented to WeChat it may be sent
/// again with its `client_msg_id`: WeChat keeps the id 10 minutes; the
/// minute left over covers our clock against WeChat's and the call itself.
pub const SAFE_RESEND: chrono::Duration = chrono::Duration::minutes(9);

/// A message presented to WeChat: the `client_msg_id` it goes with, and when
/// it was first presented (unknown for a send recorded before ids were
/// sent, which is never sent again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    client_msg_id: String,
    first_at: Option<DateTime<Utc>>,
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
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
    clock: Arc<dyn Clock>,
}

impl OfficialAccountChannel {
    pub fn new(wechat: WechatClient, clock: Arc<dyn Clock>) -> Self {
        Self { wechat, clock }
    }

    /// The official account's appid.
    pub fn appid(&self) -> &str {
        self.wechat.appid()
    }
}

#[async_trait]
impl Channel for OfficialAccountChannel {
    type Message = OfficialAccountMessage;
    type Credential = Presented;

    async fn reserve(
        &self,
        message: &OfficialAccountMessage,
        _: LeaseId,
        _: Duration,
    ) -> Result<Option<Presented>, LedgerError> {
        // The caller's id or the Idempotency-Key's, else the request's own.
        let client_msg_id = message
            .client_msg_id
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
        Ok(Some(Presented {
            client_msg_id,
            first_at: Some(self.clock.now()),
        }))
    }

    async fn settle(&self, _: &OfficialAccountMessage, _: LeaseId, _: Settle) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn call(
        &self,
        access_token: &str,
        message: &OfficialAccountMessage,
        presented: &Presented,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        self.wechat
            .send_official_account(access_token, message, &presented.client_msg_id, timeout)
            .await
    }

    /// Sent again with its `client_msg_id` while WeChat still knows it.
    fn recheck(&self, presented: &Presented) -> Recheck {
        match presented.first_at {
            Some(at) if self.clock.now() - at < SAFE_RESEND => Recheck::ByRepresenting,
            _ => Recheck::Impossible,
        }
    }

    fn is_credential_error(_: i64) -> bool {
        false
    }

    fn to_record(lease: LeaseId, presented: &Presented) -> String {
        serde_json::json!({
            "lease": lease.to_hex(),
            "client_msg_id": presented.client_msg_id,
            "first_at": presented.first_at,
        })
        .to_string()
    }

    fn from_record(record: &str) -> Option<Pending<Presented>> {
        let stored: serde_json::Value = serde_json::from_str(record).ok()?;
        let lease = LeaseId::from_hex(stored["lease"].as_str()?)?;
        Some(Pending {
            lease,
            credential: Presented {
                client_msg_id: stored["client_msg_id"].as_str().unwrap_or_default().to_owned(),
                first_at: serde_json::from_value(stored["first_at"].clone()).ok(),
            },
        })
    }
}

impl ChannelRoute for OfficialAccountChannel {
    const KIND: ChannelKind = ChannelKind::OfficialAccount;
    const PAID_WITH: Option<&'static str> = None;

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

    fn keyed(message: &mut OfficialAccountMessage, key: &str) {
        message
            .client_msg_id
            .get_or_insert_with(|| digest(&format!("key:{key}")));
    }

    fn sent(_: &Presented, attempts: u32, _: Option<i64>, msgid: Option<String>) -> Value {
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
