//! The apps of a deployment: each a tenant with its own WeChat mini-program
//! (and official account), ledgers, idempotency records, receipts, push
//! settings, template caches and report counters ([`AppContext`]), found by
//! name in [`Apps`]. Handlers receive the app their route names; nothing
//! below them reaches for another app's state.

mod subscriptions;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::channels::{
    OfficialAccountChannel, OfficialAccountSubscribeChannel, SubscribeChannel, TemplateChannel,
};
use crate::clock::Clock;
use crate::config::GrantSource;
use crate::domain::ChannelKind;
use crate::idempotency::Idempotency;
use crate::ledger::Ledger;
use crate::ledger::grants::GrantLedger;
use crate::metrics::DELIVERIES;
use crate::push::receipts::{Receipts, Status};
use crate::push::verify::PushEndpoints;
use crate::report::{Counter, UsageRecorder};
use crate::send::Sender;
use crate::store::SharedStore;
use crate::templates::Templates;
use crate::wechat::{TokenManager, WechatClient};

pub use crate::domain::{DEFAULT_APP, is_app_name};
pub use subscriptions::{Answer, Answered, Applied};

/// The key prefix of an app's data in the store: `default` keeps the
/// deployment's prefix (today's layout, no migration); any other app adds
/// its name after it (`fl:shop:{<openid>}`: hash tags stay per openid).
pub fn key_prefix(deployment: &str, app: &str) -> String {
    if app == DEFAULT_APP {
        deployment.to_owned()
    } else {
        format!("{deployment}:{app}")
    }
}

/// An official account's send pipeline (its own token control) and its
/// two channels: template messages, and subscribe notifications paid for
/// with its own grants.
pub struct OfficialAccount {
    pub sender: Sender,
    pub channel: OfficialAccountChannel,
    pub subscribe: OfficialAccountSubscribeChannel,
    pub tokens: Arc<TokenManager>,
}

/// Everything one app's requests touch.
pub struct AppContext {
    pub name: String,
    pub ledger: Arc<dyn Ledger>,
    /// The grants of each channel paid for with them.
    pub grants: BTreeMap<ChannelKind, Arc<dyn GrantLedger>>,
    /// The mini-program's WeChat client.
    pub wechat: WechatClient,
    /// This app's report counters.
    pub usage: Arc<UsageRecorder>,
    /// This app's records in the shared store (idempotency, receipts, push
    /// de-duplication, template caches).
    pub shared: Arc<dyn SharedStore>,
    /// The mini-program's send pipeline.
    pub sender: Sender,
    /// The mini-program's access token control.
    pub tokens: Arc<TokenManager>,
    /// Template libraries and the cached account lists sends consult.
    pub templates: Arc<Templates>,
    /// The official account's send pipeline, when configured.
    pub official_account: Option<OfficialAccount>,
    /// Delivery status by msgid, from WeChat's receipt pushes.
    pub receipts: Receipts,
    /// The push endpoints' settings.
    pub push: PushEndpoints,
    /// The formId / prepay_id channel.
    pub template: TemplateChannel,
    /// The subscribe grant channel.
    pub subscribe: SubscribeChannel,
    /// Where subscribe grants come from.
    pub grant_source: GrantSource,
    pub idempotency: Idempotency,
    /// What this app's decisions by time read (report cut-offs, receipt
    /// times, the push timestamp window).
    pub clock: Arc<dyn Clock>,
}

/// What `GET /v1/apps` says of an app.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppSummary {
    #[schema(example = "default")]
    pub name: String,
    /// The channels it can send on.
    pub channels: Vec<ChannelKind>,
    /// The mini-program's appid.
    pub miniprogram_appid: String,
    /// The official account's appid, when configured.
    pub official_account_appid: Option<String>,
    /// `ready`, or why not: `wechat_credentials_refused`.
    #[schema(example = "ready")]
    pub status: &'static str,
}

impl AppContext {
    /// A message's delivery receipt, in the day's report and the metrics:
    /// once a message, for messages this app sent.
    pub fn count_delivery(&self, channel: ChannelKind, status: Status) {
        self.usage
            .count(self.clock.now(), Counter::Delivery(channel, status), 1);
        metrics::counter!(DELIVERIES, "app" => self.name.clone(), "channel" => channel.as_str(), "status" => status.as_str())
            .increment(1);
    }

    /// The channels this app can send on.
    pub fn channels(&self) -> Vec<ChannelKind> {
        let mut channels = vec![ChannelKind::Template, ChannelKind::Subscribe];
        if self.official_account.is_some() {
            channels.push(ChannelKind::OfficialAccount);
            channels.push(ChannelKind::OfficialAccountSubscribe);
        }
        channels
    }

    /// Every access token this app keeps fresh.
    pub fn token_managers(&self) -> impl Iterator<Item = &Arc<TokenManager>> {
        std::iter::once(&self.tokens).chain(self.official_account.as_ref().map(|oa| &oa.tokens))
    }

    /// Whether WeChat refuses one of this app's credentials.
    pub fn refused(&self) -> bool {
        self.token_managers().any(|t| t.refusal().is_some())
    }

    pub fn summary(&self) -> AppSummary {
        AppSummary {
            name: self.name.clone(),
            channels: self.channels(),
            miniprogram_appid: self.wechat.appid().to_owned(),
            official_account_appid: self
                .official_account
                .as_ref()
                .map(|oa| oa.channel.appid().to_owned()),
            status: if self.refused() {
                "wechat_credentials_refused"
            } else {
                "ready"
            },
        }
    }
}

/// The apps of a deployment, by name.
pub struct Apps {
    by_name: BTreeMap<String, Arc<AppContext>>,
}

impl Apps {
    /// At least one app, names unique.
    pub fn new(apps: Vec<AppContext>) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for app in apps {
            let name = app.name.clone();
            if by_name.insert(name.clone(), Arc::new(app)).is_some() {
                return Err(format!("two apps are named {name:?}"));
            }
        }
        if by_name.is_empty() {
            return Err("no app is configured".into());
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<AppContext>> {
        self.by_name.get(name)
    }

    /// The app the bare `/v1/...` routes act on: `default`, or the only app.
    pub fn default_app(&self) -> Option<&Arc<AppContext>> {
        self.by_name.get(DEFAULT_APP).or_else(|| {
            let mut apps = self.by_name.values();
            match (apps.next(), apps.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<AppContext>> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keeps_the_deployment_prefix_and_others_add_their_name() {
        assert_eq!(key_prefix("fl", DEFAULT_APP), "fl");
        assert_eq!(key_prefix("fl", "shop"), "fl:shop");
    }
}
