//! The delivery status of a message, from WeChat's receipt pushes:
//! `GET /v1/official-account/messages/{msgid}` and
//! `GET /v1/subscribe-messages/{msgid}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::extract::{App, MsgidParam};
use crate::apps::AppContext;
use crate::auth::{Caller, Scope};
use crate::domain::ChannelKind;
use crate::error::{ApiError, ErrorBody, code};
use crate::push::receipts::Receipt;

async fn status_of(app: &AppContext, channel: ChannelKind, msgid: &str) -> Result<HttpResponse, ApiError> {
    let valid = !msgid.is_empty() && msgid.len() <= 32 && msgid.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(ApiError::invalid_request("msgid is WeChat's decimal message id"));
    }
    match app.receipts.get(channel, msgid).await? {
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
    app: App,
    caller: Caller,
    msgid: web::Path<MsgidParam>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    status_of(&app, ChannelKind::OfficialAccount, &msgid.msgid).await
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
    app: App,
    caller: Caller,
    msgid: web::Path<MsgidParam>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    status_of(&app, ChannelKind::Subscribe, &msgid.msgid).await
}
