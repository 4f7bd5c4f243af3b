//! The one error type of the HTTP API. Every failure, including actix's own
//! extractor errors, unknown routes and wrong methods, leaves the service as
//! `{"code": "<stable snake_case>", "message": "<human text>"}` plus extra
//! fields where the API says so. The codes are API: never rename one.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::{Map, Value, json};

use crate::ledger::LedgerError;

/// Every error the API answers with. `code` is stable API:
/// `invalid_request`, `too_many_items`, `payload_too_large`, `unauthorized`,
/// `forbidden`, `invalid_code`, `rate_limited`, `user_blocked`, `not_found`,
/// `method_not_allowed`, `no_valid_credential`, `request_in_progress`,
/// `wechat_rejected`, `idempotency_key_reused`, `wechat_quota_exceeded`,
/// `wechat_unavailable`, `store_unavailable`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[schema(example = "invalid_request")]
    pub code: String,
    pub message: String,
    /// With `wechat_rejected`: WeChat's errcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_errcode: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds a field next to `code` and `message`.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(field.to_owned(), value.into());
        self
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body this error renders as.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.extra.clone());
        Value::Object(body)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request bodies are limited to 64 KiB",
        )
    }

    pub fn store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the ledger store cannot be reached; nothing was changed or the change is safe to retry",
        )
    }

    pub fn wechat_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "wechat_unavailable", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self.body())
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        tracing::error!(error = %err, "ledger store error");
        ApiError::store_unavailable()
    }
}

/// actix's JSON extractor errors → 400 `invalid_request` or 413.
pub fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::payload_too_large()
        }
        JsonPayloadError::Payload(actix_web::error::PayloadError::Overflow) => ApiError::payload_too_large(),
        JsonPayloadError::Deserialize(e) => ApiError::invalid_request(format!("invalid JSON body: {e}")),
        other => ApiError::invalid_request(format!("invalid JSON body: {other}")),
    };
    api.into()
}

pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::invalid_request(format!("invalid path: {err}")).into()
}

pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::invalid_request(format!("invalid query string: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn renders_code_message_and_extras() {
        let err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wechat_rejected",
            "bad template",
        )
        .with("wechat_errcode", 40037);
        let response = err.error_response();
        assert_eq!(response.status(), 422);
        let body: Value = serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"code": "wechat_rejected", "message": "bad template", "wechat_errcode": 40037})
        );
    }
}
