//! The mini-program template message channel (`templateMessage.send`): it
//! spends a use of the recipient's oldest formId or prepay_id. A formId
//! has one use, so presenting it again settles an unknown outcome; a
//! prepay_id's uses are counted and cannot be checked that way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::decision::Recheck;
use super::{Channel, Pending};
use crate::domain::{CredentialId, CredentialKind};
use crate::ledger::{LeaseId, Ledger, LedgerError, Reservation, Settle};
use crate::report::UsageRecorder;
use crate::wechat::{CallError, TemplateMessage, WechatAnswer, WechatClient, errcode};

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
        self.usage.ledger_events(Utc::now(), &reserved.events);
        Ok(reserved.reservation)
    }

    async fn settle(
        &self,
        message: &TemplateMessage,
        lease: LeaseId,
        how: Settle,
    ) -> Result<(), LedgerError> {
        let settled = self.ledger.settle(&message.touser, lease, how).await?;
        self.usage.ledger_events(Utc::now(), &settled.events);
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
