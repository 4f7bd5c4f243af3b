//! Delivery status by msgid (docs/pushes.md): `accepted` when WeChat took a
//! message, then `delivered`, `user_blocked` or `failed` from its receipt
//! push. Kept 7 days in the shared store, so any instance can answer and
//! any instance can take the push. A receipt for a msgid with no recorded
//! acceptance is kept only [`UNMATCHED`]: WeChat may push it before the
//! send that got the msgid has recorded it (the acceptance then keeps it
//! for good and never overwrites it), or it is of a message this app never
//! sent, which then leaves no lasting record.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::ChannelKind;
use crate::store::{SharedStore, StoreError};

/// How long a message's status is kept.
pub const KEEP: Duration = Duration::from_secs(7 * 86_400);

/// How long a receipt waits for its message's acceptance.
pub const UNMATCHED: Duration = Duration::from_secs(15 * 60);

/// Which messages a msgid belongs to (their ids are separate spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Messages {
    Subscribe,
    OfficialAccount,
}

impl Messages {
    /// The channel these messages go out on.
    pub fn channel(self) -> ChannelKind {
        match self {
            Messages::Subscribe => ChannelKind::Subscribe,
            Messages::OfficialAccount => ChannelKind::OfficialAccount,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Messages::Subscribe => "receipt:subscribe",
            Messages::OfficialAccount => "receipt:oa",
        }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Accepted,
    Delivered,
    UserBlocked,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Delivered => "delivered",
            Status::UserBlocked => "user_blocked",
            Status::Failed => "failed",
        }
    }

    /// The official account's `TEMPLATESENDJOBFINISH` status: `success`,
    /// `failed:user block`, anything else `failed:*`.
    pub fn of_job(status: &str) -> Self {
        match status.trim() {
            "success" => Status::Delivered,
            s if s.replace(' ', "") == "failed:userblock" => Status::UserBlocked,
            _ => Status::Failed,
        }
    }

    /// A `subscribe_msg_sent_event`'s `ErrorCode`: 0 is delivered.
    pub fn of_subscribe(error_code: i64) -> Self {
        match error_code {
            0 => Status::Delivered,
            _ => Status::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub msgid: String,
    pub status: Status,
    /// When WeChat took the message (absent if its receipt came first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// WeChat's own words for the outcome (`failed: system failed`, an
    /// `ErrorStatus`), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct Receipts {
    store: Arc<dyn SharedStore>,
}

fn encode(receipt: &Receipt) -> Result<String, StoreError> {
    serde_json::to_string(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Receipts {
    pub fn new(store: Arc<dyn SharedStore>) -> Self {
        Self { store }
    }

    fn name(messages: Messages, msgid: &str) -> String {
        format!("{}:{msgid}", messages.prefix())
    }

    /// WeChat took `msgid`. Returns the receipt's status if WeChat's
    /// receipt push came first (it is kept, now for good).
    pub async fn accepted(
        &self,
        messages: Messages,
        msgid: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Status>, StoreError> {
        let name = Self::name(messages, msgid);
        let receipt = Receipt {
            msgid: msgid.to_owned(),
            status: Status::Accepted,
            accepted_at: Some(time(at)),
            finished_at: None,
            detail: None,
        };
        if self
            .store
            .put_cached_if_absent(&name, &encode(&receipt)?, KEEP)
            .await?
        {
            return Ok(None);
        }
        let Some(early) = self.get(messages, msgid).await? else {
            return Ok(None);
        };
        let kept = Receipt {
            accepted_at: receipt.accepted_at,
            ..early
        };
        self.store.put_cached(&name, &encode(&kept)?, KEEP).await?;
        Ok((kept.status != Status::Accepted).then_some(kept.status))
    }

    /// WeChat's receipt for `msgid`. Returns the status it had before.
    pub async fn finished(
        &self,
        messages: Messages,
        msgid: &str,
        status: Status,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Status>, StoreError> {
        let before = self.get(messages, msgid).await?;
        let accepted_at = before.as_ref().and_then(|r| r.accepted_at.clone());
        // Without an acceptance, only until the send that got the msgid says so.
        let keep = if accepted_at.is_some() { KEEP } else { UNMATCHED };
        let receipt = Receipt {
            msgid: msgid.to_owned(),
            status,
            accepted_at,
            finished_at: Some(time(at)),
            detail: (!detail.is_empty()).then(|| detail.to_owned()),
        };
        self.store
            .put_cached(&Self::name(messages, msgid), &encode(&receipt)?, keep)
            .await?;
        Ok(before.map(|r| r.status))
    }

    pub async fn get(&self, messages: Messages, msgid: &str) -> Result<Option<Receipt>, StoreError> {
        let raw = self.store.get_cached(&Self::name(messages, msgid)).await?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_statuses_map_as_wechat_words_them() {
        assert_eq!(Status::of_job("success"), Status::Delivered);
        assert_eq!(Status::of_job("failed:user block"), Status::UserBlocked);
        assert_eq!(Status::of_job("failed: user block"), Status::UserBlocked);
        assert_eq!(Status::of_job("failed: system failed"), Status::Failed);
        assert_eq!(Status::of_job("failed:anything new"), Status::Failed);
        assert_eq!(Status::of_subscribe(0), Status::Delivered);
        assert_eq!(Status::of_subscribe(20004), Status::Failed);
    }
}
