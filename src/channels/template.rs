//! The mini-program template message channel (`templateMessage.send`,
//! `POST /v1/messages`): it spends a use of the recipient's oldest formId
//! or prepay_id. A formId has one use, so presenting it again settles an
//! unknown outcome; a prepay_id's uses are counted and cannot be checked
//! that way.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Channel, ChannelRoute, invalid_target};
use crate::domain::{
    ChannelKind, CredentialId, CredentialKind, Outcome, TemplateId, parse_target, printable,
};
use crate::error::{ApiError, code};
use crate::ledger::{LeaseId, Ledger, LedgerError, Reservation, Settle};
use crate::report::UsageRecorder;
use crate::send::Pending;
use crate::send::decision::Recheck;
use crate::wechat::{CallError, TemplateMessage, WechatAnswer, WechatClient, errcode};

/// A template message, as WeChat's `templateMessage.send` takes it minus
/// the credential, which the service picks.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The recipient's openid.
    touser: String,
    template_id: String,
    /// Mini-program page to open, e.g. `pages/order/detail?id=42`.
    page: Option<String>,
    /// `{"keyword1": {"value": "..."}, ...}`
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
    emphasis_keyword: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SpentCredential {
    kind: CredentialKind,
    /// RFC 3339.
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Sent {
    #[schema(example = "sent")]
    status: &'static str,
    /// The credential spent (never its id).
    credential: SpentCredential,
    /// Calls made to WeChat.
    attempts: u32,
    /// `"41029"` when an earlier attempt's lost answer turned out to have
    /// been delivered (the formId was presented again and found used).
    #[schema(example = "41029")]
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_by: Option<String>,
}

pub struct TemplateChannel {
    ledger: Arc<dyn Ledger>,
    wechat: WechatClient,
    usage: Arc<UsageRecorder>,
}

impl TemplateChannel {
    pub fn new(ledger: Arc<dyn Ledger>, wechat: WechatClient, usage: Arc<UsageRecorder>) -> Self {
        Self {
            ledger,
            wechat,
            usage,
        }
    }
}

#[async_trait]
impl Channel for TemplateChannel {
    type Message = TemplateMessage;
    type Credential = Reservation;

    async fn reserve(
        &self,
        message: &TemplateMessage,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<Option<Reservation>, LedgerError> {
        let reserved = self.ledger.reserve(&message.touser, lease, hold).await?;
        self.usage.ledger_events(self.usage.now(), &reserved.events);
        Ok(reserved.reservation)
    }

    async fn settle(
        &self,
        message: &TemplateMessage,
        lease: LeaseId,
        how: Settle,
    ) -> Result<(), LedgerError> {
        let settled = self.ledger.settle(&message.touser, lease, how).await?;
        self.usage.ledger_events(self.usage.now(), &settled.events);
        Ok(())
    }

    async fn call(
        &self,
        access_token: &str,
        message: &TemplateMessage,
        credential: &Reservation,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        self.wechat
            .send_template(access_token, message, &credential.id, timeout)
            .await
    }

    fn recheck(&self, credential: &Reservation) -> Recheck {
        match credential.kind {
            CredentialKind::Form => Recheck::ByRepresenting,
            CredentialKind::Prepay => Recheck::Impossible,
        }
    }

    fn is_credential_error(code: i64) -> bool {
        errcode::is_credential_error(code)
    }

    fn to_record(lease: LeaseId, credential: &Reservation) -> String {
        let stored = StoredPending {
            lease: lease.to_hex(),
            kind: credential.kind,
            id: credential.id.as_str().to_owned(),
            expires_at: credential.expires_at,
            deadline: credential.deadline,
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    fn from_record(record: &str) -> Option<Pending<Reservation>> {
        let stored: StoredPending = serde_json::from_str(record).ok()?;
        let lease = LeaseId::from_hex(&stored.lease)?;
        Some(Pending {
            lease,
            credential: Reservation {
                lease,
                kind: stored.kind,
                id: CredentialId::parse(&stored.id).ok()?,
                expires_at: stored.expires_at,
                deadline: stored.deadline,
            },
        })
    }
}

/// A held formId or prepay_id use as an idempotency record keeps it.
#[derive(Serialize, Deserialize)]
struct StoredPending {
    lease: String,
    kind: CredentialKind,
    id: String,
    expires_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
}

impl ChannelRoute for TemplateChannel {
    const KIND: ChannelKind = ChannelKind::Template;
    const PAID_WITH: Option<&'static str> = Some("credential");

    type Body = MessageBody;

    fn parse(body: MessageBody) -> Result<TemplateMessage, ApiError> {
        let (touser, template_id) =
            parse_target(&body.touser, &body.template_id, body.page.as_deref()).map_err(invalid_target)?;
        if let Some(keyword) = &body.emphasis_keyword
            && (keyword.len() > 128 || !printable(keyword))
        {
            return Err(ApiError::invalid_request(
                "emphasis_keyword must be at most 128 printable characters",
            ));
        }
        Ok(TemplateMessage {
            touser,
            template_id,
            page: body.page,
            data: body.data,
            emphasis_keyword: body.emphasis_keyword,
        })
    }

    fn template(message: &TemplateMessage) -> (&TemplateId, Vec<&str>) {
        (&message.template_id, Vec::new())
    }

    fn sent(credential: &Reservation, attempts: u32, confirmed_by: Option<i64>, _: Option<String>) -> Value {
        serde_json::json!(Sent {
            status: "sent",
            credential: SpentCredential {
                kind: credential.kind,
                expires_at: credential.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            },
            attempts,
            confirmed_by: confirmed_by.map(|errcode| errcode.to_string()),
        })
    }

    fn nothing_to_spend() -> (Outcome, ApiError) {
        (
            Outcome::NoValidCredential,
            ApiError::new(
                StatusCode::CONFLICT,
                code::NO_VALID_CREDENTIAL,
                "this user has no valid formId or prepay_id; nothing was spent",
            ),
        )
    }
}
