//! The official account's template messages (SPEC §12): `POST
//! /v1/official-account/messages` sends one through the send pipeline
//! (retries, token control, time bound, Idempotency-Key; nothing of the
//! user's is spent), and the delivery status of a message, from WeChat's
//! receipt push, at `GET /v1/official-account/messages/{msgid}` and, for
//! subscribe messages, `GET /v1/subscribe-messages/{msgid}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::messages::parse_target;
use super::once::{Attempt, read_send, run_once};
use super::templates::known_template;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody, code};
use crate::idempotency::Record;
use crate::metrics::OA_SENDS;
use crate::push::receipts::{Messages, Receipt};
use crate::report::OfficialAccountOutcome;
use crate::send::{Channel as _, OfficialAccountChannel, SendResult, Sender};
use crate::templates::Channel;
use crate::wechat::{MiniProgramLink, OfficialAccountMessage, errcode};

/// The official account's send pipeline: its own token control.
pub struct OfficialAccount {
    pub sender: Sender,
    pub channel: OfficialAccountChannel,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountMessageBody {
    /// The follower's openid (of the official account).
    touser: String,
    template_id: String,
    /// A web page the message opens.
    url: Option<String>,
    /// A mini-program page the message opens instead.
    miniprogram: Option<MiniProgramLink>,
    /// `{"first": {"value": "..."}, "keyword1": {...}, ...}`.
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
    /// WeChat's own dedup key for the message, at most 32 characters.
    client_msg_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    status: &'static str,
    /// WeChat's id of the message (a string: it can exceed 2^53).
    msgid: Option<String>,
    attempts: u32,
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

fn parse(body: OfficialAccountMessageBody) -> Result<OfficialAccountMessage, ApiError> {
    let (touser, template_id) = parse_target(&body.touser, &body.template_id, None)?;
    if body
        .url
        .as_deref()
        .is_some_and(|u| !printable(u, 1024) || !(u.starts_with("https://") || u.starts_with("http://")))
    {
        return Err(ApiError::invalid_request(
            "url must be an http(s) URL of at most 1024 characters",
        ));
    }
    if let Some(link) = &body.miniprogram
        && (!printable(&link.appid, 64) || link.pagepath.as_deref().is_some_and(|p| !printable(p, 1024)))
    {
        return Err(ApiError::invalid_request(
            "miniprogram needs an appid and at most a 1024-character pagepath",
        ));
    }
    if body.client_msg_id.as_deref().is_some_and(|id| !printable(id, 32)) {
        return Err(ApiError::invalid_request(
            "client_msg_id must be 1 to 32 printable characters",
        ));
    }
    if body.data.is_empty()
        || !body
            .data
            .values()
            .all(|v| v.get("value").is_some_and(Value::is_string))
    {
        return Err(ApiError::invalid_request(
            "data must map keywords to {\"value\": \"...\"}",
        ));
    }
    Ok(OfficialAccountMessage {
        touser,
        template_id,
        url: body.url,
        miniprogram: body.miniprogram,
        data: body.data,
        client_msg_id: body.client_msg_id,
    })
}

/// The answer, the outcome counted, and what the key keeps.
fn answer(result: &SendResult<()>) -> (StatusCode, Value, OfficialAccountOutcome, Record) {
    let keep = |status: StatusCode, body: Value, outcome| {
        (status, body.clone(), outcome, Record::Answer(status, body))
    };
    let error = |e: ApiError, outcome| keep(e.status(), e.body(), outcome);
    match result {
        SendResult::Sent { attempts, msgid, .. } => keep(
            StatusCode::OK,
            json!(Accepted {
                status: "accepted",
                msgid: msgid.map(|m| m.to_string()),
                attempts: *attempts,
            }),
            OfficialAccountOutcome::Sent,
        ),
        SendResult::Rejected {
            errcode: errcode::NOT_FOLLOWING,
            ..
        } => error(
            ApiError::new(
                StatusCode::CONFLICT,
                code::NOT_FOLLOWING,
                "the user does not follow the official account (43004); nothing was sent",
            ),
            OfficialAccountOutcome::NotFollowing,
        ),
        SendResult::Rejected { errcode, errmsg, .. } => error(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::WECHAT_REJECTED,
                format!("WeChat rejected the message (errcode {errcode})"),
            )
            .with("wechat_errcode", *errcode)
            .with("wechat_errmsg", errmsg.clone()),
            OfficialAccountOutcome::WechatRejected,
        ),
        SendResult::QuotaExceeded { .. } => error(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::WECHAT_QUOTA_EXCEEDED,
                "the official account's daily template message quota is used up (45009)",
            ),
            OfficialAccountOutcome::WechatQuotaExceeded,
        ),
        SendResult::OutcomeUnknown { .. } => error(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::WECHAT_OUTCOME_UNKNOWN,
                "WeChat's answer was lost: the message may have been delivered and is not sent again",
            ),
            OfficialAccountOutcome::WechatOutcomeUnknown,
        ),
        SendResult::Unavailable { reason, .. } => {
            let e = ApiError::wechat_unavailable(format!("{reason}; nothing was sent"));
            (
                e.status(),
                e.body(),
                OfficialAccountOutcome::WechatUnavailable,
                Record::Release,
            )
        }
        // Nothing is reserved for these messages, so never.
        SendResult::NoValidCredential { .. } => {
            let e = ApiError::wechat_unavailable("nothing was sent");
            (
                e.status(),
                e.body(),
                OfficialAccountOutcome::WechatUnavailable,
                Record::Release,
            )
        }
    }
}

/// Counts how a send ended, in the report and the metrics.
fn count(state: &AppState, outcome: OfficialAccountOutcome) {
    state.usage.official_account_send(Utc::now(), outcome);
    metrics::counter!(OA_SENDS, "outcome" => outcome.as_str()).increment(1);
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        code::NOT_CONFIGURED,
        "the official account is not configured (WECHAT_OA_APPID / WECHAT_OA_SECRET)",
    )
}

/// Send an official-account template message to a follower.
#[utoipa::path(post, path = "/v1/official-account/messages", tag = "backends",
    request_body = OfficialAccountMessageBody, operation_id = "send_official_account_message",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-128 printable ASCII; the same key and body within 24 h get the first answer again")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Accepted, description = "WeChat accepted the message; its delivery is reported by GET /v1/official-account/messages/{msgid}"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the send scope"),
        (status = 404, body = ErrorBody, description = "not_configured"),
        (status = 409, body = ErrorBody, description = "not_following (43004) or request_in_progress"),
        (status = 422, body = ErrorBody, description = "unknown_template, wechat_rejected (with wechat_errcode) or idempotency_key_reused"),
        (status = 429, body = ErrorBody, description = "wechat_quota_exceeded"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable (nothing sent) or wechat_outcome_unknown (not sent again)"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let backend = caller.require(Scope::Send)?.to_owned();
    let oa = state.official_account.as_ref().ok_or_else(not_configured)?;
    let (keyed, body) = read_send::<OfficialAccountMessageBody>(&req, body.into_inner())?;
    let message = parse(body)?;
    let state = state.get_ref();
    let slot = format!("{backend}:official_account");
    run_once(&state.idempotency, &slot, keyed, async |attempt| {
        let result = match attempt {
            Attempt::Fresh(journal) => {
                let template = message.template_id.as_str();
                let known =
                    known_template(state, Channel::OfficialAccount, template, std::iter::empty()).await;
                if let Err(err) = known {
                    if err.code() == code::UNKNOWN_TEMPLATE {
                        count(state, OfficialAccountOutcome::UnknownTemplate);
                    }
                    return Err(err);
                }
                oa.sender.send(&oa.channel, &message, journal).await?
            }
            // A request with this key died mid-send: the message may have
            // gone out, and is not sent again.
            Attempt::Resolve(record) => {
                let pending =
                    OfficialAccountChannel::from_record(&record).ok_or_else(ApiError::store_unavailable)?;
                oa.sender.resolve(&oa.channel, &message, pending).await
            }
        };
        let now = Utc::now();
        if let SendResult::Sent {
            msgid: Some(msgid), ..
        } = &result
            && let Err(err) = state
                .receipts
                .accepted(Messages::OfficialAccount, &msgid.to_string(), now)
                .await
        {
            tracing::warn!(error = %err, "could not record the message as accepted");
        }
        let (status, body, outcome, record) = answer(&result);
        count(state, outcome);
        tracing::info!(
            outcome = outcome.as_str(),
            status = status.as_u16(),
            "official-account send finished"
        );
        Ok((status, body, record))
    })
    .await
}

async fn status_of(state: &AppState, messages: Messages, msgid: &str) -> Result<HttpResponse, ApiError> {
    let valid = !msgid.is_empty() && msgid.len() <= 32 && msgid.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(ApiError::invalid_request("msgid is WeChat's decimal message id"));
    }
    match state.receipts.get(messages, msgid).await? {
        Some(receipt) => Ok(HttpResponse::Ok().json(receipt)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            "no message with this msgid was sent in the last 7 days",
        )),
    }
}

/// The delivery status of an official-account template message.
#[utoipa::path(get, path = "/v1/official-account/messages/{msgid}", tag = "reports",
    params(("msgid" = String, Path, description = "The msgid the send answered")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Receipt, description = "accepted, delivered, user_blocked or failed"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 404, body = ErrorBody, description = "not_found (unknown, or older than 7 days)"),
    ))]
pub async fn official_account_status(
    state: web::Data<AppState>,
    caller: Caller,
    msgid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    status_of(&state, Messages::OfficialAccount, &msgid).await
}

/// The delivery status of a subscribe message.
#[utoipa::path(get, path = "/v1/subscribe-messages/{msgid}", tag = "reports",
    params(("msgid" = String, Path, description = "The msgid the send answered")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Receipt, description = "accepted, delivered or failed"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 404, body = ErrorBody, description = "not_found (unknown, or older than 7 days)"),
    ))]
pub async fn subscribe_status(
    state: web::Data<AppState>,
    caller: Caller,
    msgid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    status_of(&state, Messages::Subscribe, &msgid).await
}
