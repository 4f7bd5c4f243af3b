//! `templateMessage.send` for mini-programs: one call, one answer. Whether
//! to retry, burn or refund is the send pipeline's decision.

use std::time::Duration;

use serde::Serialize;

use super::{CallError, WechatAnswer, WechatClient};
use crate::domain::{CredentialId, OpenId, TemplateId};

/// A template message as the backend asked for it (the credential is added
/// per attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateMessage {
    pub touser: OpenId,
    pub template_id: TemplateId,
    pub page: Option<String>,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub emphasis_keyword: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    touser: &'a str,
    template_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<&'a str>,
    form_id: &'a str,
    data: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emphasis_keyword: Option<&'a str>,
}

impl WechatClient {
    /// Sends `message` paid for by `form_id`.
    #[tracing::instrument(skip_all)]
    pub async fn send_template(
        &self,
        access_token: &str,
        message: &TemplateMessage,
        form_id: &CredentialId,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        let body = Body {
            touser: message.touser.as_str(),
            template_id: message.template_id.as_str(),
            page: message.page.as_deref(),
            form_id: form_id.as_str(),
            data: &message.data,
            emphasis_keyword: message.emphasis_keyword.as_deref(),
        };
        self.post_message(
            "/cgi-bin/message/wxopen/template/send",
            access_token,
            &body,
            timeout,
        )
        .await
    }
}
