//! `POST /v1/credentials`: formIds and prepay_ids in, per item accepted,
//! duplicate or rejected with a reason. A malformed body stores nothing; a
//! bad item is reported and the rest of the batch is still stored.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::App;
use crate::auth::Caller;
use crate::domain::{CredentialId, CredentialKind, IdRejection, RejectReason};
use crate::error::{ApiError, ErrorBody, code};
use crate::ledger::{AddStatus, NewCredential};
use crate::metrics::{CREDENTIALS_COLLECTED, CREDENTIALS_REJECTED};
use crate::report::Counter;

/// Most items one request may carry.
pub const MAX_ITEMS: usize = 100;

/// Give `credentials`, or the shorthand `form_ids`; at most 100 items.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    /// Only with an API key; a user token collects for its own openid.
    openid: Option<String>,
    credentials: Option<Vec<ItemBody>>,
    /// Shorthand for credentials of kind `form` collected now.
    form_ids: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    /// `form` or `prepay`; other kinds are rejected item by item.
    kind: String,
    id: String,
    /// RFC 3339; default now; a future time is clamped to now.
    collected_at: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct Rejected {
    index: usize,
    reason: RejectReason,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    accepted: u32,
    duplicates: u32,
    evicted: u32,
    rejected: Vec<Rejected>,
    available_sends: u32,
}

/// One request item after parsing: either a credential for the ledger or a
/// rejection.
type Parsed = Result<NewCredential, RejectReason>;

/// Turns the body into items, or rejects the whole request.
fn parse_items(body: IngestBody) -> Result<Vec<Parsed>, ApiError> {
    let items: Vec<(String, String, Option<String>)> = match (body.credentials, body.form_ids) {
        (Some(items), None) => items
            .into_iter()
            .map(|i| (i.kind, i.id, i.collected_at))
            .collect(),
        (None, Some(ids)) => ids.into_iter().map(|id| ("form".to_owned(), id, None)).collect(),
        _ => {
            return Err(ApiError::invalid_request(
                "give exactly one of 'credentials' or 'form_ids'",
            ));
        }
    };
    if items.len() > MAX_ITEMS {
        return Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            code::TOO_MANY_ITEMS,
            format!("at most {MAX_ITEMS} credentials per request, got {}", items.len()),
        ));
    }
    // Every collected_at must parse before anything is judged: a malformed
    // body stores nothing.
    let collected: Vec<Option<DateTime<Utc>>> = items
        .iter()
        .enumerate()
        .map(|(at, (_, _, collected_at))| match collected_at {
            None => Ok(None),
            Some(raw) => DateTime::parse_from_rfc3339(raw)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| {
                    ApiError::invalid_request(format!(
                        "credentials[{at}].collected_at is not an RFC 3339 time"
                    ))
                }),
        })
        .collect::<Result<_, _>>()?;
    Ok(items
        .into_iter()
        .zip(collected)
        .map(|((kind, id, _), collected_at)| {
            let kind = CredentialKind::parse(&kind).ok_or(RejectReason::InvalidKind)?;
            let id = CredentialId::parse(&id).map_err(|e| match e {
                IdRejection::MockFormId => RejectReason::MockFormId,
                IdRejection::InvalidId => RejectReason::InvalidId,
            })?;
            // Whether it has expired is the ledger's call, on the ledger's clock.
            Ok(NewCredential {
                kind,
                id,
                collected_at,
            })
        })
        .collect())
}

/// Store formIds and prepay_ids for a user.
#[utoipa::path(post, path = "/v1/credentials", tag = "users", request_body = IngestBody,
    security(("session" = []), ("api_key" = [])),
    responses(
        (status = 200, body = IngestResponse, description = "Per item: accepted, duplicate or rejected with a reason"),
        (status = 400, body = ErrorBody, description = "invalid_request (nothing stored) or too_many_items"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: API key without collect, or a user token naming an openid"),
        (status = 413, body = ErrorBody, description = "payload_too_large"),
        (status = 503, body = ErrorBody, description = "store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn ingest(app: App, caller: Caller, body: web::Json<IngestBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let openid = caller.collecting_for(body.openid.as_deref())?;
    let parsed = parse_items(body)?;

    let batch: Vec<NewCredential> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let outcome = app.ledger.add(&openid, &batch).await?;
    let now = app.clock.now();

    let mut statuses = outcome.items.iter();
    let mut rejected = Vec::new();
    let (mut accepted, mut duplicates) = (0, 0);
    for (index, item) in parsed.iter().enumerate() {
        let reason = match item {
            Err(reason) => *reason,
            Ok(_) => match statuses.next() {
                Some(AddStatus::Accepted) => {
                    accepted += 1;
                    continue;
                }
                Some(AddStatus::Duplicate) => {
                    duplicates += 1;
                    continue;
                }
                Some(AddStatus::Expired) | None => RejectReason::Expired,
            },
        };
        rejected.push(Rejected { index, reason });
    }

    let usage = &app.usage;
    usage.ledger_events(now, &outcome.events);
    usage.count(now, Counter::Duplicates, duplicates);
    for r in &rejected {
        usage.count(now, Counter::Rejected(r.reason), 1);
        metrics::counter!(CREDENTIALS_REJECTED, "app" => app.name.clone(), "reason" => r.reason.as_str())
            .increment(1);
    }
    for event in &outcome.events {
        if let crate::ledger::LedgerEvent::Collected { kind, .. } = event {
            metrics::counter!(CREDENTIALS_COLLECTED, "app" => app.name.clone(), "kind" => kind.as_str())
                .increment(1);
        }
    }
    tracing::info!(
        accepted,
        duplicates,
        rejected = rejected.len(),
        evicted = outcome.evicted,
        "ingested"
    );
    Ok(HttpResponse::Ok().json(IngestResponse {
        accepted: accepted as u32,
        duplicates: duplicates as u32,
        evicted: outcome.evicted,
        rejected,
        available_sends: outcome.available_sends,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> IngestBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn items_are_judged_one_by_one() {
        let parsed = parse_items(body(
            r#"{"credentials": [
                {"kind": "form", "id": "abc"},
                {"kind": "form", "id": "the formId is a mock one"},
                {"kind": "sms", "id": "abc"},
                {"kind": "prepay", "id": "bad id"},
                {"kind": "form", "id": "old", "collected_at": "2020-01-01T00:00:00Z"}]}"#,
        ))
        .unwrap();
        let reasons: Vec<_> = parsed.iter().map(|p| p.as_ref().err().copied()).collect();
        use RejectReason::*;
        assert_eq!(
            reasons,
            [
                None,
                Some(MockFormId),
                Some(InvalidKind),
                Some(InvalidId),
                // Judged by the ledger, on its clock.
                None
            ]
        );
    }

    #[test]
    fn one_bad_time_rejects_the_whole_request() {
        let err = parse_items(
            body(r#"{"credentials": [{"kind": "form", "id": "a"}, {"kind": "form", "id": "b", "collected_at": "yesterday"}]}"#),
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_request");
    }

    #[test]
    fn shorthand_and_limits() {
        let ids: Vec<String> = (0..101).map(|n| format!("\"id{n}\"")).collect();
        let err = parse_items(body(&format!(r#"{{"form_ids": [{}]}}"#, ids.join(",")))).unwrap_err();
        assert_eq!(err.code(), code::TOO_MANY_ITEMS);
        let both = parse_items(body(r#"{"form_ids": [], "credentials": []}"#));
        assert_eq!(both.unwrap_err().code(), "invalid_request");
    }
}
