//! `GET /v1/quota`: the app's send APIs' quotas as WeChat counts them today,
//! and when each channel's 45009 first came; `POST /v1/quota/clear`: the
//! mini-program's or the official account's counts start the day again
//! (WeChat allows 10 clears a month).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::App;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody, code};
use crate::quota::{self, Account, ApiQuota, QuotaError};
use crate::wechat::errcode;

impl From<QuotaError> for ApiError {
    fn from(err: QuotaError) -> Self {
        match err {
            QuotaError::Wechat(err) => err.into(),
            QuotaError::Unreadable(why) => ApiError::wechat_unavailable(why),
            QuotaError::ClearsExhausted => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::QUOTA_CLEARS_EXHAUSTED,
                "WeChat allows 10 quota clears a month and they are used (48006)",
            )
            .with("wechat_errcode", errcode::CLEAR_QUOTA_LIMIT),
            QuotaError::Store(err) => err.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QuotaReport {
    app: String,
    apis: Vec<ApiQuota>,
}

/// Each send API's daily limit, use and remainder today (WeChat's day ends
/// at midnight in Beijing), with the time of the day's first 45009.
#[utoipa::path(get, path = "/v1/quota", tag = "reports", operation_id = "get_quota",
    security(("api_key" = [])),
    responses(
        (status = 200, body = QuotaReport, description = "One entry per send API of the app's channels"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 422, body = ErrorBody, description = "wechat_rejected (with wechat_errcode)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn get(app: App, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let apis = quota::quotas(&app).await?;
    Ok(HttpResponse::Ok().json(QuotaReport {
        app: app.name.clone(),
        apis,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    /// Whose counts to clear: the mini-program's (template and subscribe
    /// sends) or the official account's.
    account: Account,
}

#[derive(Serialize, ToSchema)]
pub struct Cleared {
    account: Account,
    appid: String,
}

/// Clears the account's API counts at WeChat (`clear_quota`, 10 a month).
#[utoipa::path(post, path = "/v1/quota/clear", tag = "reports", operation_id = "clear_quota",
    request_body = ClearBody, security(("api_key" = [])),
    responses(
        (status = 200, body = Cleared, description = "WeChat cleared the account's counts"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the admin scope"),
        (status = 404, body = ErrorBody, description = "not_configured (no official account)"),
        (status = 429, body = ErrorBody, description = "quota_clears_exhausted: WeChat's 10 clears this month are used (48006)"),
        (status = 422, body = ErrorBody, description = "wechat_rejected (with wechat_errcode)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable or store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn clear(app: App, caller: Caller, body: web::Json<ClearBody>) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let account = body.into_inner().account;
    let appid = quota::clear(&app, account).await?;
    tracing::warn!(app = %app.name, ?account, "WeChat's API counts were cleared");
    Ok(HttpResponse::Ok().json(Cleared { account, appid }))
}
