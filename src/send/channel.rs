//! What a channel plugs into the send pipeline: which credential it
//! spends and from which ledger, the WeChat call that spends it, and which
//! of WeChat's errcodes condemn that credential. Everything else (token
//! control, retries, time bounds, the answer → action table, settling) is
//! the pipeline's and the same for every channel.

use std::time::Duration;

use async_trait::async_trait;

use super::Pending;
use super::decision::Recheck;
use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::wechat::{CallError, WechatAnswer};

#[async_trait]
pub trait Channel: Send + Sync {
    /// A message as the backend asked for it.
    type Message: Send + Sync;
    /// One reserved use of whatever pays for a message.
    type Credential: Clone + Send + Sync;

    /// Takes one use for `message` under `lease` for `hold`; `None` when the
    /// recipient has nothing to spend. Must be idempotent per lease.
    async fn reserve(
        &self,
        message: &Self::Message,
        lease: LeaseId,
        hold: Duration,
    ) -> Result<Option<Self::Credential>, LedgerError>;

    /// Ends or holds a lease. Must be idempotent.
    async fn settle(&self, message: &Self::Message, lease: LeaseId, how: Settle) -> Result<(), LedgerError>;

    /// One WeChat call spending `credential`.
    async fn call(
        &self,
        access_token: &str,
        message: &Self::Message,
        credential: &Self::Credential,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError>;

    /// Whether presenting `credential` again tells if an unknown attempt
    /// was delivered.
    fn recheck(&self, credential: &Self::Credential) -> Recheck;

    /// The errcodes that say the credential itself is spent or void.
    fn is_credential_error(errcode: i64) -> bool;

    /// A use held under `lease`, as an Idempotency-Key record keeps it for
    /// [`super::Sender::resolve`].
    fn to_record(lease: LeaseId, credential: &Self::Credential) -> String;

    /// `None` when `record` was not written by [`Self::to_record`].
    fn from_record(record: &str) -> Option<Pending<Self::Credential>>;
}
