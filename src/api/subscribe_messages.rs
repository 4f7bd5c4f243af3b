//! `POST /v1/subscribe-messages`: "send this subscribe message to openid X".
//! `data` is checked against WeChat's rules first (nothing is spent on a
//! message WeChat would refuse); then the send pipeline spends one of the
//! user's grants of the template, with `Idempotency-Key` as for
//! `/v1/messages`.

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
use crate::domain::subscribe_data;
use crate::error::{ApiError, ErrorBody, code};
use crate::idempotency::Record;
use crate::metrics::SUBSCRIBE_SENDS;
use crate::push::receipts::Messages;
use crate::report::SubscribeOutcome;
use crate::send::{Channel as _, HeldGrant, SendResult, SubscribeChannel};
use crate::templates::Channel;
use crate::wechat::SubscribeMessage;

const STATES: [&str; 3] = ["developer", "trial", "formal"];
const LANGS: [&str; 4] = ["zh_CN", "en_US", "zh_HK", "zh_TW"];

/// A subscribe message, as WeChat's `subscribeMessage.send` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeMessageBody {
    /// The recipient's openid.
    touser: String,
    template_id: String,
    /// Mini-program page to open, e.g. `pages/order/detail?id=42`.
    page: Option<String>,
    /// `{"thing1": {"value": "..."}, ...}`, keys `<type><digits>`.
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
    /// `developer`, `trial` or `formal`.
    miniprogram_state: Option<String>,
    /// `zh_CN`, `en_US`, `zh_HK` or `zh_TW`.
    lang: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscribeSent {
    #[schema(example = "sent")]
    status: &'static str,
    /// WeChat's id of the message (a string: it can exceed 2^53).
    msgid: Option<String>,
    /// Grants of this template the user still holds.
    grants_left: u32,
    /// Calls made to WeChat.
    attempts: u32,
}

fn parse(body: SubscribeMessageBody) -> Result<SubscribeMessage, ApiError> {
    let (touser, template_id) = parse_target(&body.touser, &body.template_id, body.page.as_deref())?;
    if let Some(state) = &body.miniprogram_state
        && !STATES.contains(&state.as_str())
    {
        return Err(ApiError::invalid_request(
            "miniprogram_state must be developer, trial or formal",
        ));
    }
    if let Some(lang) = &body.lang
        && !LANGS.contains(&lang.as_str())
    {
        return Err(ApiError::invalid_request(
            "lang must be zh_CN, en_US, zh_HK or zh_TW",
        ));
    }
    Ok(SubscribeMessage {
        touser,
        template_id,
        page: body.page,
        data: body.data,
        miniprogram_state: body.miniprogram_state,
        lang: body.lang,
    })
}

fn invalid_data(violation: &subscribe_data::DataViolation) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code::INVALID_DATA,
        format!("{violation}; nothing was spent and WeChat was not called"),
    )
    .with("field", violation.field.clone())
    .with("rule", violation.rule.clone())
}

/// The answer to a send, and what its idempotency key keeps.
fn answer(result: &SendResult<HeldGrant>) -> (StatusCode, Value, SubscribeOutcome) {
    let error = |e: ApiError, outcome| (e.status(), e.body(), outcome);
    match result {
        SendResult::Sent {
            credential,
            attempts,
            msgid,
            ..
        } => (
            StatusCode::OK,
            json!({
                "status": "sent",
                "msgid": msgid.map(|m| m.to_string()),
                "grants_left": credential.left,
                "attempts": attempts,
            }),
            SubscribeOutcome::Sent,
        ),
        SendResult::NoValidCredential { .. } => error(
            ApiError::new(
                StatusCode::CONFLICT,
                code::NOT_SUBSCRIBED,
                "this user holds no grant of this template (never accepted, used up, or turned off); nothing was sent",
            ),
            SubscribeOutcome::NotSubscribed,
        ),
        SendResult::Rejected { errcode, errmsg, .. } => error(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::WECHAT_REJECTED,
                format!("WeChat rejected the message (errcode {errcode}); the grant was kept"),
            )
            .with("wechat_errcode", *errcode)
            .with("wechat_errmsg", errmsg.clone()),
            SubscribeOutcome::WechatRejected,
        ),
        SendResult::QuotaExceeded { .. } => error(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::WECHAT_QUOTA_EXCEEDED,
                "the mini-program's daily subscribe message quota is used up (45009); the grant was kept",
            ),
            SubscribeOutcome::WechatQuotaExceeded,
        ),
        SendResult::Unavailable { reason, .. } => error(
            ApiError::wechat_unavailable(format!("{reason}; nothing was sent and the grant was kept")),
            SubscribeOutcome::WechatUnavailable,
        ),
        SendResult::OutcomeUnknown { .. } => error(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::WECHAT_OUTCOME_UNKNOWN,
                "WeChat's answer was lost: the message may have been delivered; the grant counts as spent and the message is not sent again",
            ),
            SubscribeOutcome::WechatOutcomeUnknown,
        ),
    }
}

fn count(state: &AppState, outcome: SubscribeOutcome) {
    state.usage.subscribe_send(Utc::now(), outcome);
    metrics::counter!(SUBSCRIBE_SENDS, "outcome" => outcome.as_str()).increment(1);
}

/// Send a subscribe message to a user, spending one of their grants of its template.
#[utoipa::path(post, path = "/v1/subscribe-messages", tag = "backends", request_body = SubscribeMessageBody,
    operation_id = "send_subscribe_message",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-128 printable ASCII; the same key and body within 24 h get the first answer again")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = SubscribeSent, description = "Sent; one grant spent"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the send scope"),
        (status = 409, body = ErrorBody, description = "not_subscribed (no grant; nothing sent; after WeChat's 43101 the template's grants are burned) or request_in_progress"),
        (status = 422, body = ErrorBody, description = "invalid_data (with field and rule; nothing spent, WeChat not called; a key the template lacks included), unknown_template (not among the account's subscribe templates; nothing spent), wechat_rejected (with wechat_errcode and wechat_errmsg; refunded) or idempotency_key_reused"),
        (status = 429, body = ErrorBody, description = "wechat_quota_exceeded (refunded)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable (nothing sent; refunded), wechat_outcome_unknown (the grant counts as spent), or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let backend = caller.require(Scope::Send)?.to_owned();
    let (keyed, message_body) = read_send::<SubscribeMessageBody>(&req, body.into_inner())?;
    let message = parse(message_body)?;
    if let Err(violation) = subscribe_data::check(&message.data) {
        count(&state, SubscribeOutcome::InvalidData);
        return Err(invalid_data(&violation));
    }
    let state = state.get_ref();
    let slot = format!("{backend}:subscribe");
    run_once(&state.idempotency, &slot, keyed, async |attempt| {
        let result = match attempt {
            Attempt::Fresh(journal) => {
                let keys = message.data.keys().map(String::as_str);
                let template = message.template_id.as_str();
                if let Err(err) = known_template(state, Channel::Subscribe, template, keys).await {
                    if err.code() == code::INVALID_DATA {
                        count(state, SubscribeOutcome::InvalidData);
                    } else if err.code() == code::UNKNOWN_TEMPLATE {
                        count(state, SubscribeOutcome::UnknownTemplate);
                    }
                    return Err(err);
                }
                state.sender.send(&state.subscribe, &message, journal).await?
            }
            // A request with this key died mid-send: its grant counts as
            // spent, and the message is not sent again.
            Attempt::Resolve(record) => {
                let pending =
                    SubscribeChannel::from_record(&record).ok_or_else(ApiError::store_unavailable)?;
                state.sender.resolve(&state.subscribe, &message, pending).await
            }
        };
        if let SendResult::Sent {
            msgid: Some(msgid), ..
        } = &result
            && let Err(err) = state
                .receipts
                .accepted(Messages::Subscribe, &msgid.to_string(), Utc::now())
                .await
        {
            tracing::warn!(error = %err, "could not record the message as accepted");
        }
        let (status, body, outcome) = answer(&result);
        count(state, outcome);
        tracing::info!(?outcome, status = status.as_u16(), "subscribe send finished");
        let record = match result {
            SendResult::Unavailable { .. } => Record::Release,
            _ => Record::Answer(status, body.clone()),
        };
        Ok((status, body, record))
    })
    .await
}
