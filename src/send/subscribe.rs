//! The subscribe message channel (`subscribeMessage.send`): it spends one
//! of the recipient's grants of the message's template. Grants are counted,
//! not named, so a lost answer cannot be checked: it counts as spent. 43101
//! means the user cancelled: every grant of the template is burned.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::decision::Recheck;
use super::{Channel, Pending};
use crate::domain::TemplateId;
use crate::ledger::grants::{GrantLedger, GrantReservation};
use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::report::UsageRecorder;
use crate::wechat::{CallError, SubscribeMessage, WechatAnswer, WechatClient, errcode};

pub struct SubscribeChannel {
    grants: Arc<dyn GrantLedger>,
    wechat: WechatClient,
    usage: Arc<UsageRecorder>,
}

impl SubscribeChannel {
    pub fn new(grants: Arc<dyn GrantLedger>, wechat: WechatClient, usage: Arc<UsageRecorder>) -> Self {
        Self {
            grants,
            wechat,
            usage,
        }
    }
}

/// A reserved grant, and how many of its template the user holds besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldGrant {
    pub reservation: GrantReservation,
    pub left: u32,
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
        let reserved = self
            .grants
            .reserve_grant(&message.touser, &message.template_id, lease, hold)
            .await?;
        self.usage.grant_events(Utc::now(), &reserved.events);
        let left = reserved.left;
        Ok(reserved
            .reservation
            .map(|reservation| HeldGrant { reservation, left }))
    }

    async fn settle(
        &self,
        message: &SubscribeMessage,
        lease: LeaseId,
        how: Settle,
    ) -> Result<(), LedgerError> {
        let settled = self.grants.settle_grant(&message.touser, lease, how).await?;
        self.usage.grant_events(Utc::now(), &settled.events);
        Ok(())
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
        let stored = StoredGrant {
            lease: lease.to_hex(),
            template: held.reservation.template.as_str().to_owned(),
            deadline: held.reservation.deadline,
            left: held.left,
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    fn from_record(record: &str) -> Option<Pending<HeldGrant>> {
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
                left: stored.left,
            },
        })
    }
}

/// A held grant as an idempotency record keeps it.
#[derive(Serialize, Deserialize)]
struct StoredGrant {
    lease: String,
    template: String,
    deadline: DateTime<Utc>,
    left: u32,
}
