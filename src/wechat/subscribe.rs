//! `subscribeMessage.send`: one call, one answer. Which grant pays for it
//! and what to do with the answer is the send pipeline's business.

use std::time::Duration;

use serde::Serialize;

use super::{CallError, WechatAnswer, WechatClient};
use crate::domain::{OpenId, TemplateId};

/// A subscribe message as the backend asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeMessage {
    pub touser: OpenId,
    pub template_id: TemplateId,
    pub page: Option<String>,
    pub data: serde_json::Map<String, serde_json::Value>,
    /// `developer`, `trial` or `formal`.
    pub miniprogram_state: Option<String>,
    /// `zh_CN`, `en_US`, `zh_HK` or `zh_TW`.
    pub lang: Option<String>,
    /// The account's list names the template long-term (not sent to
    /// WeChat: it decides what the ledger spends).
    pub long_term: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    touser: &'a str,
    template_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<&'a str>,
    data: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram_state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<&'a str>,
}

impl WechatClient {
    #[tracing::instrument(skip_all)]
    pub async fn send_subscribe(
        &self,
        access_token: &str,
        message: &SubscribeMessage,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        let body = Body {
            touser: message.touser.as_str(),
            template_id: message.template_id.as_str(),
            page: message.page.as_deref(),
            data: &message.data,
            miniprogram_state: message.miniprogram_state.as_deref(),
            lang: message.lang.as_deref(),
        };
        self.post_message("/cgi-bin/message/subscribe/send", access_token, &body, timeout)
            .await
    }
}
