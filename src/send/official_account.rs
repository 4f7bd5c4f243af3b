//! The official account's template message channel: nothing of the user's
//! is spent (following the account is the permission), so reserving and
//! settling are no-ops and the pipeline brings only its retries, token
//! control and time bounds. A lost answer cannot be checked: it is reported
//! as unknown and never sent again. 43004 (the user does not follow) is a
//! refusal of the message, not of a credential.

use std::time::Duration;

use async_trait::async_trait;

use super::decision::Recheck;
use super::{Channel, Pending};
use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::wechat::{CallError, OfficialAccountMessage, WechatAnswer, WechatClient};

pub struct OfficialAccountChannel {
    wechat: WechatClient,
}

impl OfficialAccountChannel {
    pub fn new(wechat: WechatClient) -> Self {
        Self { wechat }
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
