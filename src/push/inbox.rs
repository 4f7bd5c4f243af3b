//! Where an app's pushes are taken in once. WeChat retries a push it got no
//! `success` for, and any instance may take the retry: the inbox claims each
//! push by its content in the shared store, and gives the claim back when
//! applying it failed, so the retry applies it instead. In plain mode, where
//! WeChat's signature covers only the URL, it also ties each signed URL to
//! the one body it first came with.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::verify;
use crate::domain::WechatAccount;
use crate::store::{SharedStore, StoreError};

/// How long a push (and, in plain mode, its signed URL) is remembered:
/// longer than twice the timestamp window, so a push stamped at one edge of
/// it cannot come back once it is forgotten and still be fresh.
pub const REMEMBER: Duration = Duration::from_secs(2 * verify::WINDOW_SECS as u64 + 300);

/// What a claim holds in the store.
const APPLIED: &str = "applied";

/// Which endpoint a push came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    MiniProgram,
    OfficialAccount,
}

impl Endpoint {
    /// The WeChat account whose pushes come here.
    pub fn account(self) -> WechatAccount {
        match self {
            Endpoint::MiniProgram => WechatAccount::Miniprogram,
            Endpoint::OfficialAccount => WechatAccount::OfficialAccount,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::MiniProgram => "miniprogram",
            Endpoint::OfficialAccount => "official_account",
        }
    }
}

/// One app's inbox on one endpoint.
pub struct Inbox {
    shared: Arc<dyn SharedStore>,
    endpoint: Endpoint,
}

/// A push this instance is applying; [`Claim::give_back`] if it could not.
#[must_use = "a claim is given back when applying the push failed"]
pub struct Claim<'a> {
    inbox: &'a Inbox,
    name: String,
}

impl Claim<'_> {
    /// Applying failed: WeChat's retry applies the push instead.
    pub async fn give_back(self) -> Result<(), StoreError> {
        self.inbox.shared.unlock(&self.name, APPLIED).await
    }
}

impl Inbox {
    pub fn new(shared: Arc<dyn SharedStore>, endpoint: Endpoint) -> Self {
        Self { shared, endpoint }
    }

    /// Claims the opened push `message`; `None` when it was taken before
    /// (applied, or being applied by another instance).
    pub async fn claim(&self, message: &str) -> Result<Option<Claim<'_>>, StoreError> {
        let name = format!("push:{}:{}", self.endpoint.as_str(), digest(message));
        Ok(self
            .shared
            .try_lock(&name, APPLIED, REMEMBER)
            .await?
            .then_some(Claim { inbox: self, name }))
    }

    /// Plain mode: whether the URL signed with `timestamp` and `nonce` may
    /// carry `message` — true the first time and for the same message again
    /// (WeChat's retry), false for another message under the same URL (a
    /// forgery).
    pub async fn signed_url_carries(
        &self,
        timestamp: &str,
        nonce: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let url = digest(&format!("{timestamp}\n{nonce}"));
        let name = format!("push-url:{}:{url}", self.endpoint.as_str());
        let message = digest(message);
        Ok(self
            .shared
            .put_cached_if_absent(&name, &message, REMEMBER)
            .await?
            || self.shared.get_cached(&name).await?.as_deref() == Some(message.as_str()))
    }
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn inbox() -> Inbox {
        Inbox::new(Arc::new(MemoryStore::default()), Endpoint::MiniProgram)
    }

    #[tokio::test]
    async fn a_push_is_claimed_once_until_given_back() {
        let inbox = inbox();
        let claim = inbox.claim("<xml>one</xml>").await.unwrap().expect("first claim");
        assert!(inbox.claim("<xml>one</xml>").await.unwrap().is_none());
        assert!(inbox.claim("<xml>two</xml>").await.unwrap().is_some());
        claim.give_back().await.unwrap();
        assert!(inbox.claim("<xml>one</xml>").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_signed_url_carries_one_message() {
        let inbox = inbox();
        assert!(inbox.signed_url_carries("1700000000", "n1", "a").await.unwrap());
        assert!(inbox.signed_url_carries("1700000000", "n1", "a").await.unwrap());
        assert!(!inbox.signed_url_carries("1700000000", "n1", "b").await.unwrap());
        assert!(inbox.signed_url_carries("1700000000", "n2", "b").await.unwrap());
    }
}
