//! Talking to WeChat: the HTTP client with its timeouts, the errcodes the
//! product acts on, and one function per API it calls. What to *do* with an
//! answer (retry, burn, refund) is decided by the callers (`send/`, `api/`).

pub mod errcode;
mod login;
mod message;
mod official_account;
mod subscribe;
pub mod templates;
mod token;

use std::time::Duration;

use serde::de::DeserializeOwned;

pub use login::{LoginError, WechatSession};
pub use message::TemplateMessage;
pub use official_account::{MiniProgramLink, OfficialAccountMessage};
pub use subscribe::SubscribeMessage;
pub use token::{Refusal, TokenError, TokenManager, refusal_cause};

use crate::config::Secret;

/// Where and as whom to call WeChat.
#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    base: String,
    appid: String,
    secret: Secret,
}

/// What WeChat answered a send with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct WechatAnswer {
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
    /// The message's id, on sends that return one.
    #[serde(default)]
    pub msgid: Option<i64>,
}

/// A call that produced no WeChat answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Connecting failed: the request never reached WeChat.
    #[error("WeChat unreachable: {0}")]
    NotSent(String),
    /// Timed out or closed after the request was written: WeChat may have
    /// acted on it.
    #[error("WeChat did not answer: {0}")]
    NoAnswer(String),
    /// An HTTP status other than 200 (WeChat answers errors with 200).
    #[error("WeChat answered HTTP {0}")]
    Http(u16),
    /// A 200 whose body is not the JSON expected.
    #[error("WeChat answered an unreadable body: {0}")]
    Malformed(String),
}

impl CallError {
    /// Whether WeChat may have acted on the request (docs/send-policy.md: only a request
    /// that never left is known not to have been).
    pub fn outcome_unknown(&self) -> bool {
        !matches!(self, CallError::NotSent(_))
    }

    /// A label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::NotSent(_) => "not_sent",
            CallError::NoAnswer(_) => "no_answer",
            CallError::Http(_) => "http",
            CallError::Malformed(_) => "malformed",
        }
    }
}

impl WechatClient {
    /// `base` is `https://api.weixin.qq.com` or the simulator's
    /// `http://<listen>/sandbox/wechat`.
    pub fn new(base: &str, appid: &str, secret: Secret, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            appid: appid.to_owned(),
            secret,
        })
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs a message to a send route (`path`) under `access_token`.
    pub(crate) async fn post_message(
        &self,
        path: &str,
        access_token: &str,
        body: &impl serde::Serialize,
        timeout: Duration,
    ) -> Result<WechatAnswer, CallError> {
        let request = self
            .http()
            .post(self.url(path))
            .query(&[("access_token", access_token)])
            .timeout(timeout)
            .json(body);
        self.call(request).await
    }

    /// Sends a request and reads a 200 JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(CallError::Http(status.as_u16()));
        }
        let body = response.bytes().await.map_err(transport)?;
        serde_json::from_slice(&body).map_err(|e| CallError::Malformed(e.to_string()))
    }
}

/// Never includes the URL: it carries the access token or the app secret.
fn transport(err: reqwest::Error) -> CallError {
    if err.is_connect() {
        CallError::NotSent("connection failed".into())
    } else if err.is_timeout() {
        CallError::NoAnswer("timed out".into())
    } else {
        CallError::NoAnswer("connection closed without an answer".into())
    }
}
