//! `POST /v1/messages`: "send this template message to openid X". Runs the
//! send pipeline and maps its result to the API's answers; with an
//! `Idempotency-Key`, a repeated request gets the first answer again and
//! spends nothing.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use crate::auth::{Caller, Scope};
use crate::domain::{IdempotencyKey, OpenId, TemplateId};
use crate::error::{ApiError, ErrorBody};
use crate::report::SendOutcome;
use crate::send::SendResult;
use crate::store::Idempotency;
use crate::wechat::TemplateMessage;

/// How long an idempotency key keeps its answer.
const KEEP_ANSWERS: Duration = Duration::from_secs(24 * 3600);

/// A template message, as WeChat's `templateMessage.send` takes it minus
/// the credential, which the service picks.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The recipient's openid.
    touser: String,
    template_id: String,
    /// Mini-program page to open, e.g. `pages/order/detail?id=42`.
    page: Option<String>,
    /// `{"keyword1": {"value": "..."}, ...}`
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
    emphasis_keyword: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SpentCredential {
    kind: crate::domain::CredentialKind,
    /// RFC 3339.
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Sent {
    #[schema(example = "sent")]
    status: &'static str,
    /// The credential spent (never its id).
    credential: SpentCredential,
    /// Calls made to WeChat.
    attempts: u32,
}

fn parse(body: MessageBody) -> Result<TemplateMessage, ApiError> {
    let touser =
        OpenId::parse(&body.touser).map_err(|e| ApiError::invalid_request(format!("touser: {e}")))?;
    let template_id = TemplateId::parse(&body.template_id)
        .map_err(|e| ApiError::invalid_request(format!("template_id: {e}")))?;
    let printable = |s: &str| !s.chars().any(char::is_control);
    if let Some(page) = &body.page
        && (page.is_empty() || page.len() > 1024 || !printable(page))
    {
        return Err(ApiError::invalid_request(
            "page must be 1 to 1024 printable characters",
        ));
    }
    if let Some(keyword) = &body.emphasis_keyword
        && (keyword.len() > 128 || !printable(keyword))
    {
        return Err(ApiError::invalid_request(
            "emphasis_keyword must be at most 128 printable characters",
        ));
    }
    Ok(TemplateMessage {
        touser,
        template_id,
        page: body.page,
        data: body.data,
        emphasis_keyword: body.emphasis_keyword,
    })
}

/// The answer to a send, as status and body (also what a key replays).
fn answer(result: &SendResult) -> (StatusCode, Value, SendOutcome) {
    let error = |e: ApiError, outcome| (e.status(), e.body(), outcome);
    match result {
        SendResult::Sent {
            kind,
            expires_at,
            attempts,
        } => (
            StatusCode::OK,
            json!({
                "status": "sent",
                "credential": {"kind": kind, "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)},
                "attempts": attempts,
            }),
            SendOutcome::Sent,
        ),
        SendResult::NoValidCredential { .. } => error(
            ApiError::new(
                StatusCode::CONFLICT,
                "no_valid_credential",
                "this user has no valid formId or prepay_id; nothing was spent",
            ),
            SendOutcome::NoValidCredential,
        ),
        SendResult::Rejected { errcode, .. } => error(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wechat_rejected",
                format!("WeChat rejected the message (errcode {errcode}); the credential was kept"),
            )
            .with("wechat_errcode", *errcode),
            SendOutcome::WechatRejected,
        ),
        SendResult::QuotaExceeded { .. } => error(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "wechat_quota_exceeded",
                "the mini-program's daily template message quota is used up (45009); the credential was kept",
            ),
            SendOutcome::WechatQuotaExceeded,
        ),
        SendResult::Unavailable { reason, .. } => error(
            ApiError::wechat_unavailable(format!("{reason}; the credential was kept")),
            SendOutcome::WechatUnavailable,
        ),
    }
}

fn respond(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// Send a template message to a user, spending their oldest valid credential.
#[utoipa::path(post, path = "/v1/messages", tag = "backends", request_body = MessageBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-128 printable ASCII; the same key and body within 24 h get the first answer again")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Sent, description = "Sent; one use spent"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the send scope"),
        (status = 409, body = ErrorBody, description = "no_valid_credential (nothing spent) or request_in_progress"),
        (status = 422, body = ErrorBody, description = "wechat_rejected (with wechat_errcode; refunded) or idempotency_key_reused"),
        (status = 429, body = ErrorBody, description = "wechat_quota_exceeded (refunded)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable (refunded) or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let backend = caller.require(Scope::Send)?.to_owned();
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(raw) => Some(
            raw.to_str()
                .ok()
                .and_then(|k| IdempotencyKey::parse(k).ok())
                .ok_or_else(|| {
                    ApiError::invalid_request("Idempotency-Key must be 1 to 128 printable ASCII characters")
                })?,
        ),
    };
    // Fingerprint of the body as parsed (key order does not matter).
    let fingerprint = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    let message_body: MessageBody = serde_json::from_value(body.into_inner())
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
    let message = parse(message_body)?;

    let Some(key) = key else {
        let (status, body) = run(&state, &message).await?;
        return Ok(respond(status, &body));
    };
    let slot = format!("{backend}:{}", key.as_str());
    let hold = state.sender.policy().budget + Duration::from_secs(30);
    match state.shared.begin_idempotent(&slot, &fingerprint, hold).await? {
        Idempotency::Done(stored) => {
            let stored: Value = serde_json::from_str(&stored).unwrap_or(Value::Null);
            let status = stored["status"]
                .as_u64()
                .and_then(|s| StatusCode::from_u16(s as u16).ok());
            let Some(status) = status else {
                return Err(ApiError::store_unavailable());
            };
            Ok(HttpResponse::build(status)
                .insert_header(("idempotency-replayed", "true"))
                .json(&stored["body"]))
        }
        Idempotency::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "request_in_progress",
            "a request with this Idempotency-Key is still running",
        )),
        Idempotency::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different body",
        )),
        Idempotency::New => {
            let result = run(&state, &message).await;
            match &result {
                // Nothing was spent and the cause is passing: let a retry run.
                Err(_) | Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {
                    let _ = state.shared.abandon_idempotent(&slot, &fingerprint).await;
                }
                Ok((status, body)) => {
                    let stored = json!({"status": status.as_u16(), "body": body}).to_string();
                    if let Err(err) = state
                        .shared
                        .finish_idempotent(&slot, &fingerprint, &stored, KEEP_ANSWERS)
                        .await
                    {
                        tracing::error!(error = %err, "idempotent answer not stored");
                    }
                }
            }
            let (status, body) = result?;
            Ok(respond(status, &body))
        }
    }
}

async fn run(state: &AppState, message: &TemplateMessage) -> Result<(StatusCode, Value), ApiError> {
    let result = state.sender.send(message).await?;
    let (status, body, outcome) = answer(&result);
    state.usage.send(Utc::now(), outcome);
    metrics::counter!(crate::metrics::SENDS, "outcome" => outcome.as_str()).increment(1);
    tracing::info!(?outcome, status = status.as_u16(), "send finished");
    Ok((status, body))
}
