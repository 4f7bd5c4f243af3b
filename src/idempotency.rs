//! `Idempotency-Key` for the send routes (docs/api.md, docs/send-policy.md): a key and body run
//! once; a repeat gets the first answer again; a key whose send ended with
//! an unknown outcome keeps the held credential, so the next request with
//! it resolves that outcome instead of spending another. A running send
//! notes each use under its key before presenting it ([`Idempotency::note`]),
//! so a process that dies mid-send leaves the same kind of pending state.
//! What a handler does next is a [`NextAction`]; the records live in the
//! shared store.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::IdempotencyKey;
use crate::error::{ApiError, code};
use crate::store::{KeyState, SharedStore, StoreError};

/// How long a key keeps its answer or pending state.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

/// A key this request now holds; give it back with [`Idempotency::finish`].
#[derive(Debug)]
pub struct Claim {
    slot: String,
    fingerprint: String,
}

#[derive(Debug)]
pub enum NextAction {
    /// First request with this key: run it.
    Run(Claim),
    /// An earlier request's outcome is unknown: resolve this pending state.
    Resolve(Claim, String),
    /// Answered before: send this again, nothing else.
    Replay(StatusCode, Value),
}

/// What the claimed key keeps.
#[derive(Debug)]
pub enum Record {
    /// The final answer, replayed to every repeat.
    Answer(StatusCode, Value),
    /// The outcome is still unknown: the state the next request resolves.
    Pending(String),
    /// Nothing was sent and nothing is held: let a repeat run afresh.
    Release,
}

pub struct Idempotency {
    store: Arc<dyn SharedStore>,
    /// How long a running request holds its key (it outlives the send).
    hold: Duration,
}

impl Idempotency {
    pub fn new(store: Arc<dyn SharedStore>, hold: Duration) -> Self {
        Self { store, hold }
    }

    /// The fingerprint of a body as parsed (key order does not matter).
    pub fn fingerprint(body: &Value) -> String {
        hex::encode(Sha256::digest(body.to_string().as_bytes()))
    }

    /// Claims `key` of `backend` for a body, or says why not.
    pub async fn begin(
        &self,
        backend: &str,
        key: &IdempotencyKey,
        fingerprint: String,
    ) -> Result<NextAction, ApiError> {
        let slot = format!("{backend}:{}", key.as_str());
        let claim = |slot| Claim {
            slot,
            fingerprint: fingerprint.clone(),
        };
        match self
            .store
            .begin_idempotent(&slot, &fingerprint, self.hold)
            .await?
        {
            KeyState::New => Ok(NextAction::Run(claim(slot))),
            KeyState::Pending(state) => Ok(NextAction::Resolve(claim(slot), state)),
            KeyState::Done(stored) => {
                let stored: Value = serde_json::from_str(&stored).unwrap_or(Value::Null);
                let status = stored["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .ok_or_else(ApiError::store_unavailable)?;
                Ok(NextAction::Replay(status, stored["body"].clone()))
            }
            KeyState::InProgress => Err(ApiError::new(
                StatusCode::CONFLICT,
                code::REQUEST_IN_PROGRESS,
                "a request with this Idempotency-Key is still running",
            )),
            KeyState::Mismatch => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used with a different body",
            )),
        }
    }

    /// Notes under the held key the state a crash would leave (the use
    /// about to be presented): a request with the key after this one's
    /// claim ran out resolves it. Fails if the note may not be stored.
    pub async fn note(&self, claim: &Claim, state: &str) -> Result<(), StoreError> {
        let noted = self
            .store
            .note_idempotent(&claim.slot, &claim.fingerprint, state, self.hold, KEEP)
            .await?;
        if noted {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the Idempotency-Key is no longer held by this request".into(),
            ))
        }
    }

    /// Gives the key back with what it should keep. A failure is logged:
    /// the request's answer stands either way.
    pub async fn finish(&self, claim: Claim, record: Record) {
        let Claim { slot, fingerprint } = claim;
        let stored = match record {
            Record::Answer(status, body) => {
                let stored = json!({"status": status.as_u16(), "body": body}).to_string();
                self.store
                    .finish_idempotent(&slot, &fingerprint, &stored, KEEP)
                    .await
            }
            Record::Pending(state) => {
                self.store
                    .park_idempotent(&slot, &fingerprint, &state, KEEP)
                    .await
            }
            Record::Release => self.store.abandon_idempotent(&slot, &fingerprint).await,
        };
        if let Err(err) = stored {
            tracing::error!(error = %err, "idempotency record not stored");
        }
    }
}
