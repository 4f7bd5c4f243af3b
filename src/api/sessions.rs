//! `POST /v1/sessions`: a mini-program's `wx.login` code in, a session token
//! for that user out. The session_key never leaves the WeChat client.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::App;
use crate::auth::Authenticator;
use crate::error::{ApiError, ErrorBody, code};
use crate::wechat::LoginError;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The code from `wx.login()`.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    /// Bearer token for the user's own requests.
    token: String,
    openid: String,
    /// Seconds until the token expires.
    expires_in: i64,
}

/// Log a mini-program user in.
#[utoipa::path(post, path = "/v1/sessions", tag = "users", request_body = LoginBody, responses(
    (status = 201, body = Session, description = "Logged in"),
    (status = 400, body = ErrorBody, description = "invalid_request"),
    (status = 401, body = ErrorBody, description = "invalid_code: unknown, expired or used code"),
    (status = 403, body = ErrorBody, description = "user_blocked"),
    (status = 429, body = ErrorBody, description = "rate_limited"),
    (status = 503, body = ErrorBody, description = "wechat_unavailable"),
))]
#[tracing::instrument(skip_all)]
pub async fn create(
    app: App,
    auth: web::Data<Arc<Authenticator>>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let code = body.code.trim();
    if !crate::domain::is_identifier(code, 128) {
        return Err(invalid_code());
    }
    let session = app.wechat.code_to_session(code).await.map_err(|err| match err {
        LoginError::InvalidCode => invalid_code(),
        LoginError::RateLimited => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            code::RATE_LIMITED,
            "WeChat rate-limits logins; retry later",
        ),
        LoginError::Blocked => ApiError::new(
            StatusCode::FORBIDDEN,
            code::USER_BLOCKED,
            "WeChat has blocked this user",
        ),
        LoginError::Unavailable(why) => ApiError::wechat_unavailable(format!("login failed: {why}")),
    })?;
    Ok(HttpResponse::Created().json(Session {
        token: auth
            .sessions
            .issue(&app.name, app.wechat.appid(), &session.openid, auth.clock.now()),
        openid: session.openid.as_str().to_owned(),
        expires_in: auth.sessions.ttl().num_seconds(),
    }))
}

fn invalid_code() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        code::INVALID_CODE,
        "the login code is invalid, expired or already used",
    )
}
