//! WeChat errcodes the product treats specially (docs/send-policy.md).

/// System busy: retry with backoff.
pub const BUSY: i64 = -1;
pub const OK: i64 = 0;
/// The access token is invalid or not the latest.
pub const TOKEN_INVALID: i64 = 40001;
pub const BAD_APPID: i64 = 40013;
pub const TOKEN_INVALID_2: i64 = 40014;
pub const BAD_LOGIN_CODE: i64 = 40029;
pub const BAD_TEMPLATE: i64 = 40037;
pub const BAD_SECRET: i64 = 40125;
pub const LOGIN_CODE_USED: i64 = 40163;
pub const USER_BLOCKED: i64 = 40226;
/// The access token is missing: a bug on our side, never retried.
pub const TOKEN_MISSING: i64 = 41001;
/// form_id invalid or expired.
pub const FORM_ID_INVALID: i64 = 41028;
/// form_id already used.
pub const FORM_ID_USED: i64 = 41029;
pub const BAD_PAGE: i64 = 41030;
pub const TOKEN_EXPIRED: i64 = 42001;
/// Daily quota of the account reached.
pub const DAILY_LIMIT: i64 = 45009;
/// The user has no subscribe grant of that template (refused, or cancelled).
pub const NOT_SUBSCRIBED: i64 = 43101;
/// The user does not follow the official account.
pub const NOT_FOLLOWING: i64 = 43004;
pub const RATE_LIMITED: i64 = 45011;
/// `clear_quota`: the month's 10 clears are used.
pub const CLEAR_QUOTA_LIMIT: i64 = 48006;
pub const BAD_DATA_FORMAT: i64 = 47001;
pub const BAD_ARGUMENT: i64 = 47003;

/// The token used was rejected: refresh it and retry once.
pub fn is_token_error(code: i64) -> bool {
    matches!(code, TOKEN_INVALID | TOKEN_INVALID_2 | TOKEN_EXPIRED)
}

/// The credential itself is unusable: burn it and try the next one.
pub fn is_credential_error(code: i64) -> bool {
    matches!(code, FORM_ID_INVALID | FORM_ID_USED)
}
