//! An app's send quotas as WeChat counts them: each send API's daily limit,
//! use and remainder (`openapi/quota/get`), a clear of the mini-program's
//! or the official account's counts (`clear_quota`: 10 a month, then
//! 48006), and when the day's first 45009 came on each channel (the send
//! route records it). The calls go as the channel's app, under its central
//! token (`Templates::call`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::apps::AppContext;
use crate::clock::wechat_day;
use crate::domain::ChannelKind;
use crate::store::StoreError;
use crate::templates::TemplateError;
use crate::wechat::errcode;
use crate::wechat::templates::ManageCall;

/// How long the time of a day's first 45009 is kept (past its day).
const EXHAUSTION_KEPT: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// Which of an app's two WeChat accounts a clear is for.
pub use crate::domain::WechatAccount as Account;

/// One send API's quota today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiQuota {
    pub channel: ChannelKind,
    #[schema(example = "/cgi-bin/message/subscribe/send")]
    pub cgi_path: &'static str,
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
    /// When WeChat first answered 45009 on this channel today (Beijing day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhausted_at: Option<String>,
}

/// Why a quota could not be read or cleared.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(transparent)]
    Wechat(#[from] TemplateError),
    #[error("WeChat's quota answer is not readable: {0}")]
    Unreadable(String),
    /// WeChat's 48006: the month's 10 clears are used.
    #[error("WeChat allows 10 quota clears a month and they are used (48006)")]
    ClearsExhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn exhaustion_name(channel: ChannelKind, at: DateTime<Utc>) -> String {
    format!("quota:exhausted:{channel}:{}", wechat_day(at))
}

/// Notes that WeChat answered 45009 on `channel` at `at`; the day's first
/// note stands.
pub async fn record_exhausted(app: &AppContext, channel: ChannelKind, at: DateTime<Utc>) {
    let when = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let noted = app
        .shared
        .put_cached_if_absent(&exhaustion_name(channel, at), &when, EXHAUSTION_KEPT)
        .await;
    if let Err(err) = noted {
        tracing::warn!(error = %err, "could not note the quota's exhaustion");
    }
}

/// Each send API of the app's channels: WeChat's count today, and when its
/// 45009 first came.
pub async fn quotas(app: &AppContext) -> Result<Vec<ApiQuota>, QuotaError> {
    let now = app.clock.now();
    let mut quotas = Vec::new();
    for channel in app.channels() {
        let call = ManageCall::quota_get(channel.send_api());
        let answer = app.templates.call(channel, &call).await?;
        let count = |field: &str| {
            answer["quota"][field]
                .as_u64()
                .ok_or_else(|| QuotaError::Unreadable(format!("quota.{field} in {answer}")))
        };
        let exhausted_at = app.shared.get_cached(&exhaustion_name(channel, now)).await?;
        quotas.push(ApiQuota {
            channel,
            cgi_path: channel.send_api(),
            daily_limit: count("daily_limit")?,
            used: count("used")?,
            remain: count("remain")?,
            exhausted_at,
        });
    }
    Ok(quotas)
}

/// Clears `account`'s counts at WeChat (its own appid), and today's
/// exhaustion notes of its channels. Returns the appid cleared.
pub async fn clear(app: &AppContext, account: Account) -> Result<String, QuotaError> {
    let Some(&channel) = account.channels().first() else {
        return Err(TemplateError::NotConfigured(ChannelKind::OfficialAccount).into());
    };
    let appid = match account {
        Account::Miniprogram => app.wechat.appid().to_owned(),
        Account::OfficialAccount => app
            .official_account
            .as_ref()
            .map(|oa| oa.channel.appid().to_owned())
            .ok_or(TemplateError::NotConfigured(channel))?,
    };
    match app
        .templates
        .call(channel, &ManageCall::clear_quota(&appid))
        .await
    {
        Ok(_) => {}
        Err(TemplateError::Rejected { errcode, .. }) if errcode == errcode::CLEAR_QUOTA_LIMIT => {
            return Err(QuotaError::ClearsExhausted);
        }
        Err(err) => return Err(err.into()),
    }
    let now = app.clock.now();
    for channel in account.channels() {
        if let Err(err) = app.shared.drop_cached(&exhaustion_name(channel, now)).await {
            tracing::warn!(error = %err, "could not drop the quota's exhaustion note");
        }
    }
    Ok(appid)
}
