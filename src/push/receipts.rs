//! Delivery status by msgid (docs/pushes.md): `accepted` when WeChat took a
//! message, then `delivered`, `user_blocked` or `failed` from its receipt
//! push. Kept 7 days in the shared store, so any instance can answer and
//! any instance can take the push. A receipt for a msgid with no recorded
//! acceptance is kept only [`UNMATCHED`]: WeChat may push it before the
//! send that got the msgid has recorded it (the acceptance then keeps it
//! for good and never overwrites it), or it is of a message this app never
//! sent, which then leaves no lasting record. Every change is a
//! compare-and-set on the record, so a receipt pushed twice at once, or
//! racing its own acceptance, is applied (and counted) exactly once.

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

/// How many times a receipt is read again when others keep writing it.
const CONTENDED: usize = 16;

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

    /// The record of `msgid` among `channel`'s messages (each channel's
    /// msgids are a space of their own).
    fn name(channel: ChannelKind, msgid: &str) -> String {
        format!(
            "receipt:{}:{msgid}",
            channel.receipts().unwrap_or(channel.as_str())
        )
    }

    /// WeChat took `msgid`. Returns the receipt's status if WeChat's
    /// receipt push came first (it is kept, now for good): counted now, by
    /// this call alone.
    pub async fn accepted(
        &self,
        channel: ChannelKind,
        msgid: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Status>, StoreError> {
        let at = time(at);
        // The common case, the receipt not yet pushed, in one write.
        let first = Receipt {
            msgid: msgid.to_owned(),
            status: Status::Accepted,
            accepted_at: Some(at.clone()),
            finished_at: None,
            detail: None,
        };
        let name = Self::name(channel, msgid);
        if self
            .store
            .replace_cached(&name, None, &encode(&first)?, KEEP)
            .await?
        {
            return Ok(None);
        }
        let before = self
            .update(channel, msgid, |before| match before {
                None => Some(first.clone()),
                Some(early) if early.accepted_at.is_none() => Some(Receipt {
                    accepted_at: Some(at.clone()),
                    ..early.clone()
                }),
                Some(_) => None,
            })
            .await?;
        Ok(before
            .filter(|early| early.accepted_at.is_none())
            .map(|early| early.status))
    }

    /// WeChat's receipt for `msgid`; the first one stands. Returns the
    /// status it had before: `Accepted` for this call alone among the
    /// receipts of a message this app sent.
    pub async fn finished(
        &self,
        channel: ChannelKind,
        msgid: &str,
        status: Status,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Status>, StoreError> {
        let receipt = Receipt {
            msgid: msgid.to_owned(),
            status,
            accepted_at: None,
            finished_at: Some(time(at)),
            detail: (!detail.is_empty()).then(|| detail.to_owned()),
        };
        let before = self
            .update(channel, msgid, |before| match before {
                None => Some(receipt.clone()),
                Some(accepted) if accepted.finished_at.is_none() => Some(Receipt {
                    accepted_at: accepted.accepted_at.clone(),
                    ..receipt.clone()
                }),
                Some(_) => None,
            })
            .await?;
        Ok(before.map(|r| r.status))
    }

    /// Reads `msgid`'s record, and writes what `change` makes of it (nothing
    /// for `None`) unless another instance wrote it in between, in which
    /// case it reads again. Returns the record as it was before the change.
    /// Kept for good once accepted, else only [`UNMATCHED`].
    async fn update(
        &self,
        channel: ChannelKind,
        msgid: &str,
        change: impl Fn(Option<&Receipt>) -> Option<Receipt>,
    ) -> Result<Option<Receipt>, StoreError> {
        let name = Self::name(channel, msgid);
        for _ in 0..CONTENDED {
            let raw = self.store.get_cached(&name).await?;
            let before = raw.as_deref().and_then(|raw| serde_json::from_str(raw).ok());
            let Some(after) = change(before.as_ref()) else {
                return Ok(before);
            };
            let keep = if after.accepted_at.is_some() {
                KEEP
            } else {
                UNMATCHED
            };
            if self
                .store
                .replace_cached(&name, raw.as_deref(), &encode(&after)?, keep)
                .await?
            {
                return Ok(before);
            }
        }
        Err(StoreError::Unavailable(format!(
            "the receipt of msgid {msgid} changed {CONTENDED} times while being written"
        )))
    }

    pub async fn get(&self, channel: ChannelKind, msgid: &str) -> Result<Option<Receipt>, StoreError> {
        let raw = self.store.get_cached(&Self::name(channel, msgid)).await?;
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
