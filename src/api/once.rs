//! The `Idempotency-Key` flow every send route shares: read the header,
//! claim the key, run the send (or resolve the pending one the key holds),
//! and give the key back with what it should keep.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::IdempotencyKey;
use crate::error::{ApiError, respond};
use crate::idempotency::{self, Claim, Idempotency, NextAction, Record};
use crate::ledger::LedgerError;
use crate::send::Journal;

/// What the route is asked to do.
pub(super) enum Attempt<'a> {
    /// Send the message, noting each use in the journal (with a key).
    Fresh(Option<&'a dyn Journal>),
    /// An earlier request with this key left this pending state: resolve it.
    Resolve(String),
}

/// The journal of a send under a claimed key: uses are noted on the key
/// and held as long as the key keeps its records.
struct KeyJournal<'a> {
    idempotency: &'a Idempotency,
    claim: &'a Claim,
}

#[async_trait::async_trait]
impl Journal for KeyJournal<'_> {
    fn hold(&self) -> Duration {
        idempotency::KEEP
    }

    async fn note(&self, record: String) -> Result<(), LedgerError> {
        self.idempotency
            .note(self.claim, &record)
            .await
            .map_err(|err| LedgerError::Unavailable(err.to_string()))
    }
}

/// The send's answer and what its key keeps.
pub(super) type Answered = (StatusCode, Value, Record);

/// An `Idempotency-Key` and the fingerprint of the body it came with.
pub(super) type Keyed = (IdempotencyKey, String);

/// What every send route reads first: the key, if any (with the body's
/// fingerprint, computed only then), and the body as `T`.
pub(super) fn read_send<T: DeserializeOwned>(
    req: &HttpRequest,
    body: Value,
) -> Result<(Option<Keyed>, T), ApiError> {
    let keyed = idempotency_key(req)?.map(|key| (key, Idempotency::fingerprint(&body)));
    let body = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
    Ok((keyed, body))
}

/// The `Idempotency-Key` header, if any.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .and_then(|k| IdempotencyKey::parse(k).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_request("Idempotency-Key must be 1 to 128 printable ASCII characters")
        })
}

/// Runs `send` at most once per key of `slot` (the caller and route) and
/// body fingerprint.
pub(super) async fn run_once(
    idempotency: &Idempotency,
    slot: &str,
    keyed: Option<Keyed>,
    send: impl AsyncFnOnce(Attempt<'_>) -> Result<Answered, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let Some((key, fingerprint)) = keyed else {
        let (status, body, _) = send(Attempt::Fresh(None)).await?;
        return Ok(respond(status, body));
    };
    let (claim, attempt, on_error) = match idempotency.begin(slot, &key, fingerprint).await? {
        NextAction::Replay(status, body) => {
            let mut response = respond(status, body);
            response.headers_mut().insert(
                HeaderName::from_static("idempotency-replayed"),
                HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
        // Failing before anything was presented sends nothing: release.
        NextAction::Run(claim) => (claim, None, Record::Release),
        // Failing leaves the pending state as it was.
        NextAction::Resolve(claim, state) => (claim, Some(state.clone()), Record::Pending(state)),
    };
    let journal = KeyJournal {
        idempotency,
        claim: &claim,
    };
    let attempt = match attempt {
        None => Attempt::Fresh(Some(&journal)),
        Some(state) => Attempt::Resolve(state),
    };
    let sent = send(attempt).await;
    match sent {
        Ok((status, body, record)) => {
            idempotency.finish(claim, record).await;
            Ok(respond(status, body))
        }
        Err(err) => {
            idempotency.finish(claim, on_error).await;
            Err(err)
        }
    }
}
