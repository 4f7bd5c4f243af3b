//! `sns/jscode2session`: turns a `wx.login` code into the user's openid.
//! The session_key WeChat returns is dropped here and never leaves this
//! function: the product does not need it and must not leak it.

use serde::Deserialize;

use super::{CallError, WechatClient, errcode};
use crate::domain::OpenId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatSession {
    pub openid: OpenId,
    pub unionid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the login code is invalid, expired or already used")]
    InvalidCode,
    #[error("WeChat rate-limits logins right now")]
    RateLimited,
    #[error("WeChat has blocked this user")]
    Blocked,
    #[error("WeChat is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    openid: Option<String>,
    unionid: Option<String>,
}

impl WechatClient {
    #[tracing::instrument(skip_all)]
    pub async fn code_to_session(&self, code: &str) -> Result<WechatSession, LoginError> {
        let request = self.http().get(self.url("/sns/jscode2session")).query(&[
            ("appid", self.appid()),
            ("secret", self.secret().expose()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ]);
        let answer: Answer = self
            .call(request)
            .await
            .map_err(|e: CallError| LoginError::Unavailable(e.to_string()))?;
        match answer.errcode {
            errcode::OK => {
                let openid = answer
                    .openid
                    .as_deref()
                    .and_then(|o| OpenId::parse(o).ok())
                    .ok_or_else(|| {
                        LoginError::Unavailable("WeChat answered without a usable openid".into())
                    })?;
                Ok(WechatSession {
                    openid,
                    unionid: answer.unionid,
                })
            }
            errcode::BAD_LOGIN_CODE | errcode::LOGIN_CODE_USED => Err(LoginError::InvalidCode),
            errcode::RATE_LIMITED => Err(LoginError::RateLimited),
            errcode::USER_BLOCKED => Err(LoginError::Blocked),
            other => {
                // Debug-quoted: WeChat's text cannot start a forged log line.
                tracing::warn!(errcode = other, errmsg = ?answer.errmsg, "jscode2session failed");
                Err(LoginError::Unavailable(format!(
                    "WeChat answered errcode {other}"
                )))
            }
        }
    }
}
