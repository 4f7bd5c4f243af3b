//! The one error type of the HTTP API. Every failure, including actix's own
//! extractor errors, unknown routes and wrong methods, leaves the service as
//! `{"code": "<stable snake_case>", "message": "<human text>"}` plus extra
//! fields where the API says so. The codes are API: never rename one.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Datelike, NaiveTime, Utc};
use serde_json::{Map, Value, json};

use crate::clock::{beijing, wechat_day};
use crate::ledger::LedgerError;
use crate::store::StoreError;

/// The stable error codes of the API, all of them; handlers name these
/// constants, never a string.
pub mod code {
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const TOO_MANY_ITEMS: &str = "too_many_items";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const INVALID_CODE: &str = "invalid_code";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const USER_BLOCKED: &str = "user_blocked";
    pub const NO_VALID_CREDENTIAL: &str = "no_valid_credential";
    pub const REQUEST_IN_PROGRESS: &str = "request_in_progress";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
    pub const WECHAT_REJECTED: &str = "wechat_rejected";
    pub const WECHAT_QUOTA_EXCEEDED: &str = "wechat_quota_exceeded";
    pub const WECHAT_UNAVAILABLE: &str = "wechat_unavailable";
    pub const WECHAT_OUTCOME_UNKNOWN: &str = "wechat_outcome_unknown";
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    pub const NOT_SUBSCRIBED: &str = "not_subscribed";
    pub const INVALID_DATA: &str = "invalid_data";
    pub const UNKNOWN_TEMPLATE: &str = "unknown_template";
    pub const NOT_CONFIGURED: &str = "not_configured";
    /// A request body that stalled past its deadline.
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// A route names an app the deployment does not have.
    pub const UNKNOWN_APP: &str = "unknown_app";
    pub const NOT_FOLLOWING: &str = "not_following";
    /// `POST /v1/quota/clear`: WeChat's 10 clears this month are used.
    pub const QUOTA_CLEARS_EXHAUSTED: &str = "quota_clears_exhausted";
    /// The push endpoints: a missing or wrong signature, a stale
    /// timestamp, a foreign appid.
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
    /// `/readyz` only: Redis's maxmemory-policy would evict keys.
    pub const STORE_EVICTING: &str = "store_evicting";
    /// `/readyz` only: WeChat refuses WECHAT_APPID / WECHAT_SECRET.
    pub const WECHAT_CREDENTIALS_REFUSED: &str = "wechat_credentials_refused";
}

/// Every error the API answers with; `code` is one of [`code`].
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
        Self::new(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, "no such route")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            code::METHOD_NOT_ALLOWED,
            "this route does not take that method",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::PAYLOAD_TOO_LARGE,
            "request bodies are limited to 64 KiB",
        )
    }

    pub fn store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::STORE_UNAVAILABLE,
            "the ledger store cannot be reached; nothing was changed or the change is safe to retry",
        )
    }

    pub fn wechat_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code::WECHAT_UNAVAILABLE, message)
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
        respond(self.status, self.body())
    }
}

/// A response with `status` and JSON `body`, carrying `Retry-After` when
/// the status is 429 or 503 (every answer of the API is built here).
pub fn respond(status: StatusCode, body: Value) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    let code = body.get("code").and_then(Value::as_str).unwrap_or_default();
    if let Some(seconds) = retry_after(status, code, Utc::now()) {
        response.insert_header((RETRY_AFTER, seconds.to_string()));
    }
    response.json(body)
}

/// Seconds a client should wait before trying again after a 429 or 503
/// with `code`: WeChat's daily quotas renew at midnight Beijing time;
/// its per-minute rate limits within a minute; a busy WeChat or an
/// unreachable store is worth another try within seconds.
pub fn retry_after(status: StatusCode, code: &str, now: DateTime<Utc>) -> Option<u64> {
    match (status, code) {
        (StatusCode::TOO_MANY_REQUESTS, code::WECHAT_QUOTA_EXCEEDED) => Some(until_beijing_midnight(now)),
        (StatusCode::TOO_MANY_REQUESTS, code::QUOTA_CLEARS_EXHAUSTED) => Some(until_beijing_next_month(now)),
        (StatusCode::TOO_MANY_REQUESTS, _) => Some(60),
        (StatusCode::SERVICE_UNAVAILABLE, code::WECHAT_UNAVAILABLE) => Some(5),
        (StatusCode::SERVICE_UNAVAILABLE, _) => Some(1),
        _ => None,
    }
}

fn until_beijing_midnight(now: DateTime<Utc>) -> u64 {
    until_beijing_start_of(wechat_day(now) + chrono::Days::new(1), now)
}

/// WeChat counts quota clears per calendar month.
fn until_beijing_next_month(now: DateTime<Utc>) -> u64 {
    let today = wechat_day(now);
    let first = today.with_day(1).unwrap_or(today) + chrono::Months::new(1);
    until_beijing_start_of(first, now)
}

fn until_beijing_start_of(day: chrono::NaiveDate, now: DateTime<Utc>) -> u64 {
    let beijing = beijing();
    let midnight = day
        .and_time(NaiveTime::MIN)
        .and_local_timezone(beijing)
        .single()
        .expect("a fixed offset has one midnight");
    (midnight.with_timezone(&Utc) - now).num_seconds().max(1) as u64
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        tracing::error!(error = %err, "ledger store error");
        ApiError::store_unavailable()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "shared store error");
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
        JsonPayloadError::Payload(actix_web::error::PayloadError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                code::REQUEST_TIMEOUT,
                "the request body did not arrive in time (REQUEST_BODY_TIMEOUT_SECS)",
            )
        }
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

    #[test]
    fn retry_after_says_when_trying_again_can_work() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 23:00 in Beijing: the daily quota renews in an hour.
        let late = at("2026-11-24T15:00:00Z");
        let quota = retry_after(StatusCode::TOO_MANY_REQUESTS, code::WECHAT_QUOTA_EXCEEDED, late);
        assert_eq!(quota, Some(3600));
        // 00:30 in Beijing: 23.5 hours.
        let early = at("2026-11-24T16:30:00Z");
        let quota = retry_after(StatusCode::TOO_MANY_REQUESTS, code::WECHAT_QUOTA_EXCEEDED, early);
        assert_eq!(quota, Some(23 * 3600 + 1800));
        // Quota clears renew with the month: 2026-11-30 23:00 in Beijing.
        let month_end = at("2026-11-30T15:00:00Z");
        let clears = retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            code::QUOTA_CLEARS_EXHAUSTED,
            month_end,
        );
        assert_eq!(clears, Some(3600));
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, code::RATE_LIMITED, late),
            Some(60)
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, code::WECHAT_UNAVAILABLE, late),
            Some(5)
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, code::STORE_UNAVAILABLE, late),
            Some(1)
        );
        assert_eq!(
            retry_after(StatusCode::CONFLICT, code::NOT_SUBSCRIBED, late),
            None
        );
    }

    #[test]
    fn every_429_and_503_carries_retry_after() {
        let busy = ApiError::wechat_unavailable("busy").error_response();
        assert_eq!(busy.headers().get(RETRY_AFTER).unwrap(), "5");
        let store = ApiError::store_unavailable().error_response();
        assert_eq!(store.headers().get(RETRY_AFTER).unwrap(), "1");
        assert!(
            ApiError::forbidden("no")
                .error_response()
                .headers()
                .get(RETRY_AFTER)
                .is_none()
        );
    }
}
