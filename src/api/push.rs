//! WeChat's push endpoints (docs/pushes.md), outside `/v1` and not API-key
//! protected: `/wechat/push/miniprogram` and `/wechat/push/official-account`.
//! GET answers the console's URL check; POST takes a push, verified and
//! opened by `push::verify` before anything reads it, applied once however
//! often WeChat retries it (`push::inbox` claims it), and acknowledged with
//! `success`.
//!
//! What an event does: a popup grants (when grants come from pushes), a
//! change to "reject" burns the template's grants (or ends its long-term
//! subscription), a change to "accept" subscribes a long-term template
//! again, a subscribe sent event
//! and `TEMPLATESENDJOBFINISH` record the message's delivery. Anything else
//! is counted and acknowledged.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::BODY_LIMIT;
use super::extract::App;
use crate::apps::{Answer, AppContext};
use crate::config::GrantSource;
use crate::domain::{ChannelKind, OpenId, TemplateId};
use crate::error::{ApiError, ErrorBody, code};
use crate::metrics::{PUSH_EVENTS, RECEIPTS_UNMATCHED};
use crate::push::event::{self, Push, PushKind};
use crate::push::inbox::{Endpoint, Inbox};
use crate::push::receipts::Status;
use crate::push::verify::{self, PushQuery, PushSettings, Refused};

/// The push settings of the endpoint a push came to.
fn settings(endpoint: Endpoint, app: &AppContext) -> Result<&PushSettings, ApiError> {
    let settings = match endpoint {
        Endpoint::MiniProgram => app.push.miniprogram.as_ref(),
        Endpoint::OfficialAccount => app.push.official_account.as_ref(),
    };
    settings.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            code::NOT_CONFIGURED,
            "no push token is configured for this endpoint",
        )
    })
}

fn refused(err: Refused) -> ApiError {
    match err {
        Refused::Signature(why) => ApiError::new(StatusCode::UNAUTHORIZED, code::INVALID_SIGNATURE, why),
        Refused::Malformed(why) => ApiError::invalid_request(why),
    }
}

fn success() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("success")
}

/// The console's URL check of a push endpoint: `echostr` back.
#[utoipa::path(get, path = "/wechat/push/miniprogram", tag = "wechat", params(PushQuery),
    operation_id = "miniprogram_check",
    responses(
        (status = 200, description = "`echostr`, as text", content_type = "text/plain"),
        (status = 400, body = ErrorBody, description = "invalid_request: a signing parameter is missing"),
        (status = 401, body = ErrorBody, description = "invalid_signature, or a timestamp outside the window"),
        (status = 404, body = ErrorBody, description = "not_configured: no push token for this endpoint, or unknown_app"),
    ))]
pub async fn miniprogram_check(app: App, query: web::Query<PushQuery>) -> Result<HttpResponse, ApiError> {
    check(&app, Endpoint::MiniProgram, &query)
}

/// The console's URL check of the official-account endpoint (documented
/// with the mini-program's, [`crate::api::openapi`]).
pub async fn official_account_check(
    app: App,
    query: web::Query<PushQuery>,
) -> Result<HttpResponse, ApiError> {
    check(&app, Endpoint::OfficialAccount, &query)
}

/// A push from WeChat to a push endpoint: verified, opened, applied once
/// however often WeChat retries it, and answered `success`.
#[utoipa::path(post, path = "/wechat/push/miniprogram", tag = "wechat", params(PushQuery),
    operation_id = "miniprogram_push",
    request_body(content = String, description = "WeChat's XML or JSON push (safe mode: an envelope with `Encrypt`)", content_type = "text/xml"),
    responses(
        (status = 200, description = "`success`, as text", content_type = "text/plain"),
        (status = 400, body = ErrorBody, description = "invalid_request: not a push this endpoint can read"),
        (status = 401, body = ErrorBody, description = "invalid_signature, a timestamp outside the window, or a plain-mode signed URL already used with another body"),
        (status = 404, body = ErrorBody, description = "not_configured: no push token for this endpoint, or unknown_app"),
        (status = 413, body = ErrorBody, description = "payload_too_large"),
        (status = 503, body = ErrorBody, description = "store_unavailable (WeChat retries the push)"),
    ))]
pub async fn miniprogram(
    app: App,
    query: web::Query<PushQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    receive(&app, Endpoint::MiniProgram, &query, &read(body).await?).await
}

/// A push to the official-account endpoint (documented with the
/// mini-program's).
pub async fn official_account(
    app: App,
    query: web::Query<PushQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    receive(&app, Endpoint::OfficialAccount, &query, &read(body).await?).await
}

/// A push's body, at most [`BODY_LIMIT`] bytes: a larger one is the JSON
/// 413 every other route answers, not the framework's plain text.
async fn read(body: web::Payload) -> Result<web::Bytes, ApiError> {
    match body.to_bytes_limited(BODY_LIMIT).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::invalid_request("the push body could not be read")),
        Err(_) => Err(ApiError::payload_too_large()),
    }
}

/// The console's URL check: `echostr` back, as text.
fn check(app: &AppContext, endpoint: Endpoint, query: &PushQuery) -> Result<HttpResponse, ApiError> {
    let settings = settings(endpoint, app)?;
    let echo = verify::echo(settings, query, app.clock.now().timestamp()).map_err(refused)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(echo))
}

#[tracing::instrument(skip_all, fields(endpoint = endpoint.as_str()))]
async fn receive(
    app: &AppContext,
    endpoint: Endpoint,
    query: &PushQuery,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let settings = settings(endpoint, app)?;
    let body = std::str::from_utf8(body).map_err(|_| ApiError::invalid_request("the body is not UTF-8"))?;
    let opened = verify::open(settings, query, body, app.clock.now().timestamp()).map_err(|err| {
        tracing::warn!(error = %err, "push refused");
        metrics::counter!(PUSH_EVENTS, "app" => app.name.clone(), "endpoint" => endpoint.as_str(), "event" => "unknown", "result" => "unverified")
            .increment(1);
        refused(err)
    })?;
    let push =
        event::parse(&opened.message, opened.format).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let inbox = Inbox::new(app.shared.clone(), endpoint);
    if query.encrypt_type.as_deref() != Some("aes") {
        // WeChat's signature covers only the URL here, not the body.
        let (timestamp, nonce) = (
            query.timestamp.as_deref().unwrap_or_default(),
            query.nonce.as_deref().unwrap_or_default(),
        );
        if !inbox
            .signed_url_carries(timestamp, nonce, &opened.message)
            .await?
        {
            tracing::warn!("a signed push URL came again with another body");
            metrics::counter!(PUSH_EVENTS, "app" => app.name.clone(), "endpoint" => endpoint.as_str(), "event" => "unknown", "result" => "unverified")
                .increment(1);
            return Err(refused(Refused::Signature(
                "this signed URL was already used with another body",
            )));
        }
    }
    // WeChat retries a push it got no `success` for: the first to arrive
    // claims it, whichever instance takes it.
    let Some(claim) = inbox.claim(&opened.message).await? else {
        tracing::info!(event = ?push.event, "a repeated push, applied before");
        metrics::counter!(PUSH_EVENTS, "app" => app.name.clone(), "endpoint" => endpoint.as_str(), "event" => event_label(&push), "result" => "repeated")
            .increment(1);
        return Ok(success());
    };
    if let Err(err) = apply(app, endpoint, &push).await {
        // Not applied: let WeChat's retry try again.
        let _ = claim.give_back().await;
        return Err(err);
    }
    Ok(success())
}

/// The event, for metrics: the four acted on by name, the rest `other`
/// (labels stay few whatever WeChat sends).
fn event_label(push: &Push) -> &'static str {
    match push.kind {
        PushKind::SubscribePopup(_) => event::SUBSCRIBE_MSG_POPUP_EVENT,
        PushKind::SubscribeChange(_) => event::SUBSCRIBE_MSG_CHANGE_EVENT,
        PushKind::SubscribeSent(_) => event::SUBSCRIBE_MSG_SENT_EVENT,
        PushKind::TemplateSendJobFinish { .. } => event::TEMPLATE_SEND_JOB_FINISH,
        PushKind::Other { .. } => "other",
    }
}

/// What a verified push does.
async fn apply(app: &AppContext, endpoint: Endpoint, push: &Push) -> Result<(), ApiError> {
    let label = event_label(push);
    let openid = || {
        OpenId::parse(&push.from_user_name)
            .map_err(|e| ApiError::invalid_request(format!("FromUserName: {e}")))
    };
    // The subscribe events of each endpoint are about its account's grant
    // channel (the mini-program's subscribe messages, the official
    // account's notifications); a channel whose grants the frontend posts
    // takes them from pushes only when configured to.
    let grant_channel = ChannelKind::ALL
        .into_iter()
        .find(|c| c.account() == endpoint.account() && c.grant_keys().is_some());
    let popup_channel =
        grant_channel.filter(|c| !c.grants_posted_by_client() || app.grant_source == GrantSource::Push);
    let acted = match (&push.kind, endpoint, grant_channel) {
        (PushKind::SubscribePopup(choices), _, _) if let Some(grant_channel) = popup_channel => {
            let answers = choices
                .iter()
                .filter_map(|c| {
                    TemplateId::parse(&c.template_id)
                        .ok()
                        .map(|t| (t, Answer::parse(&c.status), c.status.clone()))
                })
                .collect::<Vec<_>>();
            let applied = app.apply_answers(grant_channel, &openid()?, &answers).await?;
            tracing::info!(granted = applied.granted.len(), "popup answers applied");
            true
        }
        (PushKind::SubscribeChange(choices), _, Some(grant_channel)) => {
            let changes: Vec<(TemplateId, bool)> = choices
                .iter()
                .filter(|c| c.status == "reject" || Answer::parse(&c.status) == Answer::Accept)
                .filter_map(|c| Some((TemplateId::parse(&c.template_id).ok()?, c.status != "reject")))
                .collect();
            app.apply_changes(grant_channel, &openid()?, &changes).await?;
            true
        }
        (PushKind::SubscribeSent(results), _, Some(grant_channel)) => {
            for result in results {
                let status = Status::of_subscribe(result.error_code);
                record(app, grant_channel, &result.msg_id, status, &result.error_status).await?;
            }
            true
        }
        (PushKind::TemplateSendJobFinish { msg_id, status }, Endpoint::OfficialAccount, _) => {
            record(
                app,
                ChannelKind::OfficialAccount,
                msg_id,
                Status::of_job(status),
                status,
            )
            .await?;
            true
        }
        _ => false,
    };
    let result = if acted { "applied" } else { "ignored" };
    metrics::counter!(PUSH_EVENTS, "app" => app.name.clone(), "endpoint" => endpoint.as_str(), "event" => label, "result" => result)
        .increment(1);
    Ok(())
}

/// A delivery receipt: the message's status, and the day's count of it
/// (once a message, and only for messages this app sent: a receipt that
/// came before its message's acceptance is counted when that comes).
async fn record(
    app: &AppContext,
    channel: ChannelKind,
    msgid: &str,
    status: Status,
    detail: &str,
) -> Result<(), ApiError> {
    let before = app
        .receipts
        .finished(channel, msgid, status, detail, app.clock.now())
        .await?;
    match before {
        Some(Status::Accepted) => app.count_delivery(channel, status),
        Some(_) => {} // WeChat said it again.
        // Its send's answer carried no msgid to record: counted now, once.
        None if !channel.answer_carries_msgid() => app.count_delivery(channel, status),
        None => {
            tracing::info!(
                channel = channel.as_str(),
                "a receipt for a msgid with no recorded acceptance"
            );
            metrics::counter!(RECEIPTS_UNMATCHED, "app" => app.name.clone(), "channel" => channel.as_str())
                .increment(1);
        }
    }
    Ok(())
}
