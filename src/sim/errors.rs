//! The two ways the simulator says no: WeChat's `{"errcode","errmsg"}` on
//! the WeChat routes, and the product's `{"code","message"}` HTTP errors on
//! the control routes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// A WeChat error answer. The messages are WeChat's own wording, so logs of
/// the product read the same against the simulator and the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WxError {
    #[error("invalid credential, access_token is invalid or not latest")]
    InvalidToken,
    #[error("invalid grant_type")]
    InvalidGrantType,
    #[error("invalid appid")]
    InvalidAppId,
    #[error("invalid code")]
    InvalidCode,
    #[error("invalid template_id")]
    InvalidTemplateId,
    #[error("invalid appsecret")]
    InvalidSecret,
    #[error("code been used")]
    CodeUsed,
    #[error("access_token missing")]
    TokenMissing,
    #[error("appid missing")]
    AppIdMissing,
    #[error("appsecret missing")]
    SecretMissing,
    #[error("missing code")]
    CodeMissing,
    #[error("invalid form id")]
    InvalidFormId,
    #[error("form id used count reach limit")]
    FormIdUsedUp,
    #[error("invalid page")]
    InvalidPage,
    #[error("access_token expired")]
    TokenExpired,
    #[error("reach max api daily quota limit")]
    DailyQuota,
    #[error("api minute-quota reach limit mustslower retry next minute")]
    TooFrequent,
    #[error("data format error")]
    DataFormat,
    #[error("argument invalid! data invalid")]
    InvalidData,
    #[error("invalid openid")]
    InvalidOpenId,
    #[error("user refuse to accept the msg")]
    NotSubscribed,
    #[error("argument invalid!")]
    InvalidArgument,
    #[error("require subscribe")]
    NotFollowing,
    #[error("template num exceeds limit")]
    TemplateLimit,
    #[error("private template count reached max limit")]
    SubscribeTemplateLimit,
    #[error("invalid tid")]
    InvalidTid,
    #[error("invalid kidList")]
    InvalidKidList,
    #[error("invalid sceneDesc")]
    InvalidSceneDesc,
    #[error("cgi_path not found, please check")]
    CgiPathNotFound,
    #[error("forbid to clear quota because of reaching the limit")]
    ClearQuotaLimit,
}

impl WxError {
    pub fn errcode(self) -> i64 {
        match self {
            WxError::InvalidToken => 40001,
            WxError::InvalidGrantType => 40002,
            WxError::InvalidAppId => 40013,
            WxError::InvalidCode => 40029,
            WxError::InvalidTemplateId => 40037,
            WxError::InvalidSecret => 40125,
            WxError::CodeUsed => 40163,
            WxError::TokenMissing => 41001,
            WxError::AppIdMissing => 41002,
            WxError::SecretMissing => 41004,
            WxError::CodeMissing => 41008,
            WxError::InvalidFormId => 41028,
            WxError::FormIdUsedUp => 41029,
            WxError::InvalidPage => 41030,
            WxError::TokenExpired => 42001,
            WxError::DailyQuota => 45009,
            WxError::TooFrequent => 45011,
            WxError::DataFormat => 47001,
            WxError::InvalidData => 47003,
            WxError::InvalidOpenId => 40003,
            WxError::NotSubscribed => 43101,
            WxError::InvalidArgument => 47003,
            WxError::NotFollowing => 43004,
            WxError::TemplateLimit => 45026,
            WxError::SubscribeTemplateLimit => 200012,
            WxError::InvalidTid => 200014,
            WxError::InvalidKidList => 200020,
            WxError::InvalidSceneDesc => 200021,
            WxError::CgiPathNotFound => 76021,
            WxError::ClearQuotaLimit => 48006,
        }
    }
}

/// WeChat reports errors in a 200 body, never in the status line.
pub fn wx_answer(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "errcode": errcode, "errmsg": errmsg }))
}

impl From<WxError> for HttpResponse {
    fn from(err: WxError) -> Self {
        wx_answer(err.errcode(), &err.to_string())
    }
}

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
}

impl ControlError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ControlError::InvalidRequest(message.into())
    }

    fn code(&self) -> &'static str {
        match self {
            ControlError::InvalidRequest(_) => "invalid_request",
            ControlError::NotFound => "not_found",
            ControlError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl ResponseError for ControlError {
    fn status_code(&self) -> StatusCode {
        match self {
            ControlError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound => StatusCode::NOT_FOUND,
            ControlError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(json!({ "code": self.code(), "message": self.to_string() }))
    }
}
