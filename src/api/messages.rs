//! `POST /v1/messages`: "send this template message to openid X". Runs the
//! send pipeline and maps its result to the API's answers; with an
//! `Idempotency-Key`, a repeated request gets the first answer again and
//! spends nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::once::{Attempt, read_send, run_once};
use super::templates::known_template;
use crate::auth::{Caller, Scope};
use crate::domain::{OpenId, TemplateId};
use crate::error::{ApiError, ErrorBody, code};
use crate::idempotency::Record;
use crate::ledger::Reservation;
use crate::report::SendOutcome;
use crate::send::{Channel as _, SendResult, TemplateChannel};
use crate::templates::Channel;
use crate::wechat::TemplateMessage;

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
    /// `"41029"` when an earlier attempt's lost answer turned out to have
    /// been delivered (the formId was presented again and found used).
    #[schema(example = "41029")]
    confirmed_by: Option<String>,
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Recipient, template and page, as every send route takes them.
pub(super) fn parse_target(
    touser: &str,
    template_id: &str,
    page: Option<&str>,
) -> Result<(OpenId, TemplateId), ApiError> {
    let touser = OpenId::parse(touser).map_err(|e| ApiError::invalid_request(format!("touser: {e}")))?;
    let template_id =
        TemplateId::parse(template_id).map_err(|e| ApiError::invalid_request(format!("template_id: {e}")))?;
    if let Some(page) = page
        && (page.is_empty() || page.len() > 1024 || !printable(page))
    {
        return Err(ApiError::invalid_request(
            "page must be 1 to 1024 printable characters",
        ));
    }
    Ok((touser, template_id))
}

fn parse(body: MessageBody) -> Result<TemplateMessage, ApiError> {
    let (touser, template_id) = parse_target(&body.touser, &body.template_id, body.page.as_deref())?;
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

/// The answer to a send, as status and body, and what the idempotency key
/// keeps of it.
fn answer(result: &SendResult<Reservation>) -> (StatusCode, Value, SendOutcome, Record) {
    let error = |e: ApiError, outcome| (e.status(), e.body(), outcome);
    let (status, body, outcome) = match result {
        SendResult::Sent {
            credential,
            attempts,
            confirmed_by,
            ..
        } => {
            let mut body = json!({
                "status": "sent",
                "credential": {
                    "kind": credential.kind,
                    "expires_at": credential.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                },
                "attempts": attempts,
            });
            if let Some(errcode) = confirmed_by {
                body["confirmed_by"] = json!(errcode.to_string());
            }
            (StatusCode::OK, body, SendOutcome::Sent)
        }
        SendResult::NoValidCredential { .. } => error(
            ApiError::new(
                StatusCode::CONFLICT,
                code::NO_VALID_CREDENTIAL,
                "this user has no valid formId or prepay_id; nothing was spent",
            ),
            SendOutcome::NoValidCredential,
        ),
        SendResult::Rejected { errcode, .. } => error(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::WECHAT_REJECTED,
                format!("WeChat rejected the message (errcode {errcode}); the credential was kept"),
            )
            .with("wechat_errcode", *errcode),
            SendOutcome::WechatRejected,
        ),
        SendResult::QuotaExceeded { .. } => error(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::WECHAT_QUOTA_EXCEEDED,
                "the mini-program's daily template message quota is used up (45009); the credential was kept",
            ),
            SendOutcome::WechatQuotaExceeded,
        ),
        SendResult::Unavailable { reason, .. } => error(
            ApiError::wechat_unavailable(format!("{reason}; nothing was sent and the credential was kept")),
            SendOutcome::WechatUnavailable,
        ),
        SendResult::OutcomeUnknown { pending, .. } => error(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::WECHAT_OUTCOME_UNKNOWN,
                match pending {
                    Some(_) => {
                        "WeChat's answer was lost: the message may have been delivered. Retry with the same Idempotency-Key to find out; it will not be sent twice"
                    }
                    None => {
                        "WeChat's answer was lost: the message may have been delivered; the credential use counts as spent and the message is not sent again"
                    }
                },
            ),
            SendOutcome::WechatOutcomeUnknown,
        ),
    };
    let record = match result {
        SendResult::Unavailable { .. } => Record::Release,
        SendResult::OutcomeUnknown {
            pending: Some(pending),
            ..
        } => Record::Pending(TemplateChannel::to_record(pending.lease, &pending.credential)),
        _ => Record::Answer(status, body.clone()),
    };
    (status, body, outcome, record)
}

/// Send a template message to a user, spending their oldest valid credential.
#[utoipa::path(post, path = "/v1/messages", tag = "backends", request_body = MessageBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-128 printable ASCII; the same key and body within 24 h get the first answer again")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Sent, description = "Sent; one use spent (`confirmed_by: \"41029\"` when a lost answer was confirmed as delivered)"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the send scope"),
        (status = 409, body = ErrorBody, description = "no_valid_credential (nothing spent) or request_in_progress"),
        (status = 422, body = ErrorBody, description = "unknown_template (not among the account's templates; nothing spent, WeChat not called), wechat_rejected (with wechat_errcode; refunded) or idempotency_key_reused"),
        (status = 429, body = ErrorBody, description = "wechat_quota_exceeded (refunded)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable (nothing sent; refunded), wechat_outcome_unknown (WeChat's answer was lost: a formId is held for a retry with the same Idempotency-Key, a prepay_id use counts as spent), or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let backend = caller.require(Scope::Send)?.to_owned();
    let (keyed, message_body) = read_send::<MessageBody>(&req, body.into_inner())?;
    let message = parse(message_body)?;
    let state = state.get_ref();
    run_once(&state.idempotency, &backend, keyed, async |attempt| {
        let result = match attempt {
            Attempt::Fresh(journal) => {
                let template = message.template_id.as_str();
                if let Err(err) = known_template(state, Channel::Template, template, std::iter::empty()).await
                {
                    if err.code() == code::UNKNOWN_TEMPLATE {
                        count(state, SendOutcome::UnknownTemplate);
                    }
                    return Err(err);
                }
                state.sender.send(&state.template, &message, journal).await?
            }
            Attempt::Resolve(record) => {
                let pending =
                    TemplateChannel::from_record(&record).ok_or_else(ApiError::store_unavailable)?;
                tracing::info!("resolving a send whose outcome was unknown");
                state.sender.resolve(&state.template, &message, pending).await
            }
        };
        Ok(finished(state, &result))
    })
    .await
}

/// Counts how a send ended, in the report and the metrics.
fn count(state: &AppState, outcome: SendOutcome) {
    state.usage.send(Utc::now(), outcome);
    metrics::counter!(crate::metrics::SENDS, "outcome" => outcome.as_str()).increment(1);
}

/// Counts a finished send and turns it into its answer.
fn finished(state: &AppState, result: &SendResult<Reservation>) -> (StatusCode, Value, Record) {
    let (status, body, outcome, record) = answer(result);
    count(state, outcome);
    tracing::info!(?outcome, status = status.as_u16(), "send finished");
    (status, body, record)
}
