//! The simulated official account (docs/simulator.md):
//! `cgi-bin/message/template/send` under its own token, checked in WeChat's
//! order against its followers and the users who block it (`followers`).
//! Whether a message reached its follower is told later, in a
//! `TEMPLATESENDJOBFINISH` push (`pusher`). A message sent again with the
//! same `client_msg_id` to the same follower within [`CLIENT_MSG_ID_WINDOW`]
//! is not sent again: WeChat answers it as it answered the first (errcode 0,
//! the first message's msgid) and delivers and pushes nothing more.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::{BIZSEND_PATH, OA_SEND_PATH};
use super::errors::WxError;
use super::library::Channel;
use super::quota::Side;
use super::state::{Message, State, SubscribeRefusal};
use super::subscribe;

/// How long WeChat remembers a (touser, `client_msg_id`) it sent.
pub const CLIENT_MSG_ID_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

/// A message WeChat took: its id, and what its receipt will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub msgid: u64,
    pub touser: String,
    /// `success`, or `failed:user block` when the follower blocks the account.
    pub status: &'static str,
    /// The same `client_msg_id` came within the window: nothing was sent.
    pub repeated: bool,
}

#[derive(Deserialize)]
struct SendBody {
    touser: String,
    template_id: String,
    url: Option<String>,
    data: Option<Map<String, Value>>,
    client_msg_id: Option<String>,
}

/// The bizsend body. Unknown fields are ignored, as WeChat does.
#[derive(Deserialize)]
struct BizsendBody {
    touser: String,
    template_id: String,
    page: Option<String>,
    miniprogram: Option<Value>,
    data: Option<Map<String, Value>>,
}

/// A subscribe notification WeChat took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    pub msgid: u64,
    pub touser: String,
    pub template_id: String,
}

impl State {
    /// `cgi-bin/message/subscribe/bizsend` of the official account:
    /// checked in WeChat's order, one grant used (none on a long-term
    /// subscription).
    pub fn send_bizsend(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<Notified, SubscribeRefusal> {
        let result = self.try_send_bizsend(access_token, body, now);
        self.count_send(result.as_ref().map_or_else(SubscribeRefusal::errcode, |_| 0));
        result
    }

    fn try_send_bizsend(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<Notified, SubscribeRefusal> {
        self.check_oa_token(access_token, now)?;
        let body: BizsendBody = body
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or(WxError::DataFormat)?;
        if !self.knows_follower(&body.touser) {
            return Err(WxError::InvalidOpenId.into());
        }
        let keywords = self
            .oa_subscriptions
            .keywords(&body.template_id)
            .ok_or(WxError::InvalidTemplateId)?;
        let link_ok = |link: &Value| link.get("appid").is_some_and(Value::is_string);
        if body.page.as_deref().is_some_and(str::is_empty)
            || body.miniprogram.as_ref().is_some_and(|l| !link_ok(l))
        {
            return Err(WxError::InvalidData.into());
        }
        let data = body.data.ok_or(WxError::InvalidData)?;
        if let Some(key) = subscribe::refused_key(keywords, &data) {
            return Err(SubscribeRefusal::Data(key));
        }
        if !self.oa_subscriptions.may_send(&body.touser, &body.template_id) {
            return Err(WxError::NotSubscribed.into());
        }
        self.quotas
            .take(Side::OfficialAccount, BIZSEND_PATH, self.config.daily_limit, now)?;
        let msgid = self.oa_subscriptions.spend(&body.touser, &body.template_id);
        self.deliver(
            body.touser.clone(),
            Message {
                kind: "official_account_subscribe",
                template_id: body.template_id.clone(),
                page: body.page,
                data: Value::Object(data),
                emphasis_keyword: None,
                form_id: None,
                msgid: Some(msgid),
                sent_at: now,
            },
        );
        Ok(Notified {
            msgid,
            touser: body.touser,
            template_id: body.template_id,
        })
    }

    /// `cgi-bin/message/template/send` of the official account.
    pub fn send_official_account(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<Taken, WxError> {
        let result = self.try_send_official_account(access_token, body, now);
        self.count_send(result.as_ref().map_or_else(|e| e.errcode(), |_| 0));
        result
    }

    fn try_send_official_account(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<Taken, WxError> {
        self.check_oa_token(access_token, now)?;
        let body: SendBody = body
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or(WxError::DataFormat)?;
        if !self.account.contains(Channel::OfficialAccount, &body.template_id) {
            return Err(WxError::InvalidTemplateId);
        }
        if !self.followers.following.contains(&body.touser) {
            return Err(WxError::NotFollowing);
        }
        let data = body
            .data
            .filter(|d| !d.is_empty() && d.values().all(|v| v.get("value").is_some_and(Value::is_string)))
            .ok_or(WxError::InvalidData)?;
        let status = match self.followers.blocking.contains(&body.touser) {
            true => "failed:user block",
            false => "success",
        };
        let dedup = body.client_msg_id.clone().map(|id| (body.touser.clone(), id));
        let repeated = dedup
            .as_ref()
            .and_then(|key| self.followers.sent_recently(key, CLIENT_MSG_ID_WINDOW, now));
        if let Some(msgid) = repeated {
            return Ok(Taken {
                msgid,
                touser: body.touser,
                status,
                repeated: true,
            });
        }
        self.quotas
            .take(Side::OfficialAccount, OA_SEND_PATH, self.config.daily_limit, now)?;
        self.followers.next_msgid += 1;
        let msgid = 2_000_000_000 + self.followers.next_msgid;
        if let Some(key) = dedup {
            self.followers.remember_sent(key, msgid, now);
        }
        if status == "success" {
            self.deliver(
                body.touser.clone(),
                Message {
                    kind: "official_account",
                    template_id: body.template_id,
                    page: body.url,
                    data: Value::Object(data),
                    emphasis_keyword: None,
                    form_id: None,
                    msgid: Some(msgid),
                    sent_at: now,
                },
            );
        }
        Ok(Taken {
            msgid,
            touser: body.touser,
            status,
            repeated: false,
        })
    }
}
