//! The official account's template message (`cgi-bin/message/template/send`,
//! seed `004_…`): one call, one answer with the message's `msgid`. Its
//! delivery comes later, in a `TEMPLATESENDJOBFINISH` push.

use std::time::Duration;

use serde::Serialize;

use super::{CallError, WechatAnswer, WechatClient};
use crate::domain::{OpenId, TemplateId};

/// A mini-program page the message opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MiniProgramLink {
    pub appid: String,
    pub pagepath: Option<String>,
}

/// An official-account template message as the backend asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct OfficialAccountMessage {
    pub touser: OpenId,
    pub template_id: TemplateId,
    pub url: Option<String>,
    pub miniprogram: Option<MiniProgramLink>,
    pub data: serde_json::Map<String, serde_json::Value>,
    /// WeChat's own dedup key for the message (≤ 32 characters): the
    /// caller's, or one derived from the request's Idempotency-Key; without
    /// either, the channel gives the request one of its own.
    pub client_msg_id: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    touser: &'a str,
    template_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram: Option<&'a MiniProgramLink>,
    data: &'a serde_json::Map<String, serde_json::Value>,
    client_msg_id: &'a str,
}

impl WechatClient {
    #[tracing::instrument(skip_all)]
    /// `template/send` with `client_msg_id`: WeChat sends one message per
    /// (touser, `client_msg_id`) within 10 minutes, so a re-send with the
    /// same id is answered without a second message.
    pub async fn send_official_account(
        &self,
        access_token: &str,
        message: &OfficialAccountMessage,
        client_msg_id: &str,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        let body = Body {
            touser: message.touser.as_str(),
            template_id: message.template_id.as_str(),
            url: message.url.as_deref(),
            miniprogram: message.miniprogram.as_ref(),
            data: &message.data,
            client_msg_id,
        };
        self.post_message("/cgi-bin/message/template/send", access_token, &body, timeout)
            .await
    }
}
