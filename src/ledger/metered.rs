//! A [`Ledger`] decorator that counts and times every operation and every
//! store error for `/metrics`, whatever the store behind it.

use std::time::Instant;

use async_trait::async_trait;

use super::{
    AddOutcome, Holdings, LeaseId, Ledger, LedgerError, NewCredential, ReserveOutcome, Settle, SettleOutcome,
    Settled,
};
use crate::domain::OpenId;
use crate::metrics::{LEDGER_DURATION, LEDGER_OPS, STORE_ERRORS, USES_SETTLED};

pub struct MeteredLedger<L> {
    inner: L,
}

impl<L: Ledger> MeteredLedger<L> {
    pub fn new(inner: L) -> Self {
        Self { inner }
    }
}

async fn measured<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, LedgerError>>,
) -> Result<T, LedgerError> {
    let started = Instant::now();
    let result = call.await;
    metrics::histogram!(LEDGER_DURATION, "op" => op).record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(err) => {
            let kind = match err {
                LedgerError::Unavailable(_) => "unavailable",
                LedgerError::Corrupt(_) => "corrupt",
            };
            metrics::counter!(STORE_ERRORS, "kind" => kind).increment(1);
            "error"
        }
    };
    metrics::counter!(LEDGER_OPS, "op" => op, "result" => outcome).increment(1);
    result
}

#[async_trait]
impl<L: Ledger> Ledger for MeteredLedger<L> {
    async fn add(&self, openid: &OpenId, batch: &[NewCredential]) -> Result<AddOutcome, LedgerError> {
        measured("add", self.inner.add(openid, batch)).await
    }

    async fn reserve(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        hold: std::time::Duration,
    ) -> Result<ReserveOutcome, LedgerError> {
        measured("reserve", self.inner.reserve(openid, lease, hold)).await
    }

    async fn settle(
        &self,
        openid: &OpenId,
        lease: LeaseId,
        how: Settle,
    ) -> Result<SettleOutcome, LedgerError> {
        let outcome = measured("settle", self.inner.settle(openid, lease, how)).await?;
        let result = match outcome.settled {
            Settled::Spent => "spent",
            Settled::Burned { .. } => "burned",
            Settled::Refunded => "refunded",
            Settled::Lapsed => "lapsed",
            Settled::Held => "held",
            Settled::UnknownLease => "unknown_lease",
        };
        metrics::counter!(USES_SETTLED, "result" => result).increment(1);
        Ok(outcome)
    }

    async fn inspect(&self, openid: &OpenId) -> Result<Holdings, LedgerError> {
        measured("inspect", self.inner.inspect(openid)).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        measured("ping", self.inner.ping()).await
    }
}
