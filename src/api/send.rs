//! The send route, one for every channel: parse the channel's body, check
//! it, claim the Idempotency-Key, check the template is the account's, run
//! the send pipeline (or resolve what an earlier request with the key left
//! pending), record the receipt's msgid, count the outcome and answer.
//! What differs per channel is in `crate::channels`; the functions below
//! are the documented routes, one per channel, each naming its channel.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, Route, web};
use serde_json::Value;
use utoipa::OpenApi;

use super::extract::App;
use super::once::{Attempt, read_send, run_once};
use super::templates::known_template;
use crate::apps::AppContext;
use crate::auth::{Caller, Scope};
use crate::channels::{
    Accepted, ChannelRoute, MessageBody, OfficialAccountMessageBody, OfficialAccountSubscribeBody, Sent,
    SubscribeMessageBody, SubscribeSent, answer,
};
use crate::domain::{ChannelKind, Outcome};
use crate::error::{ApiError, ErrorBody, code};
use crate::metrics::SENDS;
use crate::send::{SendResult, Sender};

/// The send routes, one per channel, as the route table takes them (each
/// also under `/v1/apps/{app}`).
pub(super) fn routes() -> Vec<(Method, &'static str, Route)> {
    vec![
        (Method::POST, "/v1/messages", web::post().to(template)),
        (Method::POST, "/v1/subscribe-messages", web::post().to(subscribe)),
        (
            Method::POST,
            "/v1/official-account/messages",
            web::post().to(official_account),
        ),
        (
            Method::POST,
            "/v1/official-account/subscribe-messages",
            web::post().to(official_account_subscribe),
        ),
    ]
}

/// The send routes' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(template, subscribe, official_account, official_account_subscribe))]
pub(super) struct SendRoutes;

/// Counts how a send ended, in the report and the metrics.
fn count(app: &AppContext, channel: ChannelKind, outcome: Outcome) {
    app.usage.send(app.clock.now(), channel, outcome);
    metrics::counter!(SENDS, "app" => app.name.clone(), "channel" => channel.as_str(), "outcome" => outcome.as_str())
        .increment(1);
}

/// The outcome a refusal before anything was spent counts as.
fn refused(err: &ApiError) -> Option<Outcome> {
    match err.code() {
        code::INVALID_DATA => Some(Outcome::InvalidData),
        code::UNKNOWN_TEMPLATE => Some(Outcome::UnknownTemplate),
        _ => None,
    }
}

/// Where the Idempotency-Keys of a caller's sends on a channel live. A key
/// is the caller's per channel; template sends keep the bare caller name
/// they always had, so keys held across an upgrade still match.
fn idempotency_slot(backend: &str, channel: ChannelKind) -> String {
    match channel {
        ChannelKind::Template => backend.to_owned(),
        other => format!("{backend}:{other}"),
    }
}

/// Sends a message on channel `C` through `sender`.
async fn send_on<C: ChannelRoute>(
    app: &AppContext,
    sender: &Sender,
    channel: &C,
    caller: Caller,
    req: HttpRequest,
    body: Value,
) -> Result<HttpResponse, ApiError> {
    let backend = caller.require(Scope::Send)?.to_owned();
    let (keyed, body) = read_send::<C::Body>(&req, body)?;
    let mut message = C::parse(body)?;
    if let Err(err) = C::check(&message) {
        count(app, C::KIND, Outcome::InvalidData);
        return Err(err);
    }
    let slot = idempotency_slot(&backend, C::KIND);
    if let Some((key, _)) = &keyed {
        C::keyed(&mut message, &format!("{slot}:{}", key.as_str()));
    }
    run_once(&app.idempotency, &slot, keyed, async |attempt| {
        let result = match attempt {
            Attempt::Fresh(journal) => {
                let (template, keys) = C::template(&message);
                match known_template(app, C::KIND, template.as_str(), keys).await {
                    Ok(long_term) => C::listed(&mut message, long_term),
                    Err(err) => {
                        if let Some(outcome) = refused(&err) {
                            count(app, C::KIND, outcome);
                        }
                        return Err(err);
                    }
                }
                sender.send(channel, &message, journal).await?
            }
            // A request with this key died mid-send or lost WeChat's answer:
            // resolve what it left, never send the message a second time.
            Attempt::Resolve(record) => {
                let pending = C::from_record(&record).ok_or_else(ApiError::store_unavailable)?;
                tracing::info!("resolving a send whose outcome was unknown");
                sender.resolve(channel, &message, pending).await
            }
        };
        if let (
            Some(_),
            SendResult::Sent {
                msgid: Some(msgid), ..
            },
        ) = (C::KIND.receipts(), &result)
        {
            match app
                .receipts
                .accepted(C::KIND, &msgid.to_string(), app.clock.now())
                .await
            {
                Ok(None) => {}
                // WeChat's receipt came first: counted now, once (unless
                // its receipt counted it already).
                Ok(Some(status)) if C::KIND.answer_carries_msgid() => app.count_delivery(C::KIND, status),
                Ok(Some(_)) => {}
                Err(err) => tracing::warn!(error = %err, "could not record the message as accepted"),
            }
        }
        let (status, body, outcome, record) = answer::<C>(&result);
        count(app, C::KIND, outcome);
        if outcome == Outcome::WechatQuotaExceeded {
            crate::quota::record_exhausted(app, C::KIND, app.clock.now()).await;
        }
        tracing::info!(
            channel = C::KIND.as_str(),
            outcome = outcome.as_str(),
            status = status.as_u16(),
            "send finished"
        );
        Ok((status, body, record))
    })
    .await
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
pub async fn template(
    app: App,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    send_on(&app, &app.sender, &app.template, caller, req, body.into_inner()).await
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
pub async fn subscribe(
    app: App,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    send_on(&app, &app.sender, &app.subscribe, caller, req, body.into_inner()).await
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
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the send scope"),
        (status = 404, body = ErrorBody, description = "not_configured"),
        (status = 409, body = ErrorBody, description = "not_following (43004) or request_in_progress"),
        (status = 422, body = ErrorBody, description = "unknown_template, wechat_rejected (with wechat_errcode) or idempotency_key_reused"),
        (status = 429, body = ErrorBody, description = "wechat_quota_exceeded"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable (nothing sent), wechat_outcome_unknown (not sent again) or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn official_account(
    app: App,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Send)?;
    let oa = app.official_account()?;
    send_on(&app, &oa.sender, &oa.channel, caller, req, body.into_inner()).await
}

/// Send an official-account subscribe notification to a follower, spending
/// one of their grants of its template.
#[utoipa::path(post, path = "/v1/official-account/subscribe-messages", tag = "backends",
    request_body = OfficialAccountSubscribeBody, operation_id = "send_official_account_subscribe_message",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-128 printable ASCII; the same key and body within 24 h get the first answer again")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = SubscribeSent, description = "Sent; one grant spent (none on a long-term subscription)"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the send scope"),
        (status = 404, body = ErrorBody, description = "not_configured"),
        (status = 409, body = ErrorBody, description = "not_subscribed (no grant from the follower's popup; nothing sent; after WeChat's 43101 the template's grants are burned) or request_in_progress"),
        (status = 422, body = ErrorBody, description = "invalid_data (with field and rule; nothing spent), unknown_template (not among the official account's subscribe templates), wechat_rejected (refunded) or idempotency_key_reused"),
        (status = 429, body = ErrorBody, description = "wechat_quota_exceeded (refunded)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable (nothing sent; refunded), wechat_outcome_unknown (the grant counts as spent), or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn official_account_subscribe(
    app: App,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Send)?;
    let oa = app.official_account()?;
    send_on(&app, &oa.sender, &oa.subscribe, caller, req, body.into_inner()).await
}
