//! Templates for the three channels (docs/api.md): browsing WeChat's template
//! libraries, adding and deleting the account's templates through the
//! central token control, and the account's template lists, cached in the
//! shared store for every instance, which sends consult before anything is
//! spent. The cache never blocks a send: when a list cannot be had, the
//! send goes ahead and WeChat judges.

mod shapes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use shapes::{AccountTemplate, LibraryEntry, LibraryPage, keys_of};

use crate::clock::Clock;
use crate::domain::{ChannelKind, TemplateDialect, WechatAccount};

use crate::store::SharedStore;
use crate::wechat::templates::{ManageCall, ManageError};
use crate::wechat::{TokenError, TokenManager, WechatClient, errcode};

/// A list read from the shared store is reused this long in process.
const LOCAL_REUSE: Duration = Duration::from_secs(2);
/// A template id the cached list lacks makes the list be fetched again,
/// at most this often (a template added in WeChat's console is found
/// without waiting for the cache to expire; bogus ids cost nothing).
const MISS_REFRESH: Duration = Duration::from_secs(5);
/// How long one instance waits for another's fetch of the same list.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(3);
/// How long the fetch lock is held at most.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// Page size of the old library's account list (WeChat's maximum).
const LIST_PAGE: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The channel's app is not configured (the official account).
    #[error("the {0} channel is not configured")]
    NotConfigured(ChannelKind),
    #[error("WeChat refused (errcode {errcode}): {errmsg}")]
    Rejected { errcode: i64, errmsg: String },
    #[error("WeChat cannot be reached: {0}")]
    Unavailable(String),
    /// The store (the access token's, the cached lists') cannot be reached.
    #[error("the store cannot be reached: {0}")]
    Store(String),
}

/// An app (appid) WeChat is called as, with its token control.
#[derive(Clone)]
pub struct App {
    pub client: WechatClient,
    pub tokens: Arc<TokenManager>,
}

/// What the cached list says of a template a send names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Among the account's templates; `long_term` for a long-term
    /// subscribe template.
    Known {
        long_term: bool,
    },
    UnknownTemplate,
    /// A `data` key the subscribe template does not have.
    MissingKey(String),
    /// The list could not be had: let WeChat judge.
    Unchecked,
}

/// A list as cached: when it was fetched, and the templates.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    fetched_at_ms: i64,
    templates: Vec<AccountTemplate>,
}

/// A list read from the store, and when (by the clock).
type ReadAt = (DateTime<Utc>, Arc<Cached>);

/// Pages of subscribe titles read to name one library entry, and their
/// size (WeChat's most).
const TITLE_PAGES: u32 = 10;
const TITLE_PAGE: u32 = 30;

pub struct Templates {
    mini_program: App,
    official_account: Option<App>,
    store: Arc<dyn SharedStore>,
    ttl: Duration,
    /// This instance's name on the fetch locks.
    holder: String,
    local: Mutex<HashMap<ChannelKind, ReadAt>>,
    /// One fetch of a channel's list at a time in this process.
    flights: HashMap<ChannelKind, tokio::sync::Mutex<()>>,
    /// What a list's age is judged by.
    clock: Arc<dyn Clock>,
}

impl Templates {
    pub fn new(
        mini_program: App,
        official_account: Option<App>,
        store: Arc<dyn SharedStore>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            clock,
            mini_program,
            official_account,
            store,
            ttl,
            holder: hex::encode(rand::random::<[u8; 8]>()),
            local: Mutex::new(HashMap::new()),
            flights: ChannelKind::ALL
                .into_iter()
                .map(|c| (c, tokio::sync::Mutex::new(())))
                .collect(),
        }
    }

    fn app(&self, channel: ChannelKind) -> Result<&App, TemplateError> {
        match channel.account() {
            WechatAccount::OfficialAccount => self
                .official_account
                .as_ref()
                .ok_or(TemplateError::NotConfigured(channel)),
            WechatAccount::Miniprogram => Ok(&self.mini_program),
        }
    }

    /// Makes `call` as the channel's app under its central token; a token
    /// WeChat rejects is replaced and the call made once more. Also what
    /// the quota calls (`crate::quota`) go through.
    pub async fn call(&self, channel: ChannelKind, call: &ManageCall) -> Result<Value, TemplateError> {
        let app = self.app(channel)?;
        let mut retried = false;
        loop {
            let token = app.tokens.token().await.map_err(|e| match e {
                TokenError::Refused(code) => {
                    TemplateError::Unavailable(format!("WeChat refuses the app credentials (errcode {code})"))
                }
                TokenError::Unavailable(why) => TemplateError::Unavailable(why),
                TokenError::Store(why) => TemplateError::Store(why),
            })?;
            match app.client.manage(&token, call).await {
                Ok(answer) => return Ok(answer),
                Err(ManageError::Refused { errcode, .. }) if errcode::is_token_error(errcode) && !retried => {
                    app.tokens.invalidate(&token).await;
                    retried = true;
                }
                Err(ManageError::Refused { errcode, errmsg }) => {
                    return Err(TemplateError::Rejected { errcode, errmsg });
                }
                Err(ManageError::Call(err)) => return Err(TemplateError::Unavailable(err.to_string())),
            }
        }
    }

    /// A page of the channel's library. The old library pages by
    /// offset/count (≤ 20); the subscribe library by start/limit (≤ 30)
    /// over `categories` (all of them when `None`); the official account
    /// has no library WeChat lets anyone browse.
    pub async fn library(
        &self,
        channel: ChannelKind,
        start: u32,
        count: u32,
        categories: Option<&str>,
    ) -> Result<LibraryPage, TemplateError> {
        match channel.templates() {
            TemplateDialect::OldLibrary => {
                let answer = self
                    .call(channel, &ManageCall::template_library(start, count))
                    .await?;
                Ok(LibraryPage::from_template_library(&answer))
            }
            TemplateDialect::Subscribe => {
                let categories = match categories {
                    Some(ids) => ids.to_owned(),
                    None => {
                        let answer = self.call(channel, &ManageCall::subscribe_categories()).await?;
                        shapes::category_ids(&answer)
                    }
                };
                let call = ManageCall::subscribe_titles(&categories, start, count);
                Ok(LibraryPage::from_subscribe_titles(
                    &self.call(channel, &call).await?,
                ))
            }
            TemplateDialect::OfficialAccount => Err(TemplateError::NotConfigured(channel)),
        }
    }

    /// One library entry with its keywords.
    pub async fn library_entry(&self, channel: ChannelKind, id: &str) -> Result<LibraryEntry, TemplateError> {
        match channel.templates() {
            TemplateDialect::OldLibrary => {
                let answer = self
                    .call(channel, &ManageCall::template_library_entry(id))
                    .await?;
                Ok(LibraryEntry::from_template_library(&answer))
            }
            TemplateDialect::Subscribe => {
                let answer = self.call(channel, &ManageCall::subscribe_keywords(id)).await?;
                let mut entry = LibraryEntry::from_subscribe_keywords(id, &answer);
                entry.title = self.subscribe_title(channel, id).await?;
                Ok(entry)
            }
            TemplateDialect::OfficialAccount => Err(TemplateError::NotConfigured(channel)),
        }
    }

    /// A subscribe library entry's title: WeChat's keyword call does not
    /// say it, so the titles of the account's categories are read, a page
    /// at a time, for at most [`TITLE_PAGES`] pages.
    async fn subscribe_title(&self, channel: ChannelKind, id: &str) -> Result<Option<String>, TemplateError> {
        let answer = self.call(channel, &ManageCall::subscribe_categories()).await?;
        let categories = shapes::category_ids(&answer);
        for page in 0..TITLE_PAGES {
            let call = ManageCall::subscribe_titles(&categories, page * TITLE_PAGE, TITLE_PAGE);
            let titles = LibraryPage::from_subscribe_titles(&self.call(channel, &call).await?);
            if let Some(item) = titles.items.iter().find(|item| item.id == id) {
                return Ok(Some(item.title.clone()));
            }
            if u64::from((page + 1) * TITLE_PAGE) >= titles.total {
                break;
            }
        }
        Ok(None)
    }

    /// Adds a template from the library to the account; its id.
    pub async fn add(
        &self,
        channel: ChannelKind,
        library_id: &str,
        keyword_ids: &[u32],
        scene: &str,
    ) -> Result<String, TemplateError> {
        let (call, field) = match channel.templates() {
            TemplateDialect::OldLibrary => (ManageCall::template_add(library_id, keyword_ids), "template_id"),
            TemplateDialect::Subscribe => (
                ManageCall::subscribe_add(library_id, keyword_ids, scene),
                "priTmplId",
            ),
            TemplateDialect::OfficialAccount => (ManageCall::official_account_add(library_id), "template_id"),
        };
        let answer = self.call(channel, &call).await?;
        self.forget(channel).await;
        answer[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TemplateError::Unavailable(format!("WeChat's answer has no {field}")))
    }

    /// Deletes one of the account's templates.
    pub async fn delete(&self, channel: ChannelKind, template_id: &str) -> Result<(), TemplateError> {
        let call = match channel.templates() {
            TemplateDialect::OldLibrary => ManageCall::template_del(template_id),
            TemplateDialect::Subscribe => ManageCall::subscribe_del(template_id),
            TemplateDialect::OfficialAccount => ManageCall::official_account_del(template_id),
        };
        self.call(channel, &call).await?;
        self.forget(channel).await;
        Ok(())
    }

    /// The account's templates of `channel`, from the cache when it holds
    /// them.
    pub async fn list(&self, channel: ChannelKind) -> Result<Vec<AccountTemplate>, TemplateError> {
        Ok(self.cached(channel, None).await?.templates.clone())
    }

    /// What the account's list says of `template_id` and, for subscribe
    /// templates, of the `data` keys a send uses.
    pub async fn check<'k>(
        &self,
        channel: ChannelKind,
        template_id: &str,
        data_keys: impl IntoIterator<Item = &'k str>,
    ) -> Check {
        let list = match self.naming(channel, [template_id]).await {
            Ok(list) => list,
            Err(err) => {
                tracing::warn!(%channel, error = %err, "template list unavailable; the send goes ahead unchecked");
                return Check::Unchecked;
            }
        };
        let Some(template) = list.templates.iter().find(|t| t.template_id == template_id) else {
            return Check::UnknownTemplate;
        };
        if channel.templates() == TemplateDialect::Subscribe
            && let Some(missing) = data_keys
                .into_iter()
                .find(|k| !template.keys.iter().any(|t| t == k))
        {
            return Check::MissingKey(missing.to_owned());
        }
        Check::Known {
            long_term: template.long_term,
        }
    }

    /// Which of `template_ids` the account's list of `channel` names
    /// long-term; none when the list cannot be had (their accepts are then
    /// kept as one-time grants, which the first send after the list is back
    /// turns into the subscription).
    pub async fn long_term<'t>(
        &self,
        channel: ChannelKind,
        template_ids: impl IntoIterator<Item = &'t str> + Clone,
    ) -> std::collections::BTreeSet<String> {
        let list = match self.naming(channel, template_ids.clone()).await {
            Ok(list) => list,
            Err(err) => {
                tracing::warn!(%channel, error = %err, "template list unavailable; accepts kept as one-time grants");
                return Default::default();
            }
        };
        template_ids
            .into_iter()
            .filter(|id| list.templates.iter().any(|t| t.long_term && t.template_id == *id))
            .map(str::to_owned)
            .collect()
    }

    /// The cached list, fetched again when it lacks one of `template_ids`
    /// and is older than [`MISS_REFRESH`] (a template added in WeChat's
    /// console since is found; bogus ids cost little).
    async fn naming<'t>(
        &self,
        channel: ChannelKind,
        template_ids: impl IntoIterator<Item = &'t str>,
    ) -> Result<Arc<Cached>, TemplateError> {
        let list = self.cached(channel, None).await?;
        let mut ids = template_ids.into_iter();
        if ids.all(|id| list.templates.iter().any(|t| t.template_id == id)) {
            return Ok(list);
        }
        let age = self.clock.now().timestamp_millis() - list.fetched_at_ms;
        if age < MISS_REFRESH.as_millis() as i64 {
            return Ok(list);
        }
        self.cached(channel, Some(list.fetched_at_ms)).await
    }

    fn cache_name(&self, channel: ChannelKind) -> String {
        let appid = self.app(channel).map_or("", |a| a.client.appid());
        format!("templates:{}:{appid}", channel.as_str())
    }

    /// Drops the cached list after a change (every instance reads the
    /// store within [`LOCAL_REUSE`]).
    async fn forget(&self, channel: ChannelKind) {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&channel);
        if let Err(err) = self.store.drop_cached(&self.cache_name(channel)).await {
            tracing::warn!(error = %err, "could not drop the cached template list");
        }
    }

    /// The cached list, fetched when missing or when it is the one fetched
    /// at `stale` (a refresh): one fetch for this process's burst of
    /// misses, and one for the fleet's (a lock in the shared store).
    async fn cached(&self, channel: ChannelKind, stale: Option<i64>) -> Result<Arc<Cached>, TemplateError> {
        let usable = |c: &Cached| Some(c.fetched_at_ms) != stale;
        if let Some((read_at, list)) = self.local.lock().unwrap_or_else(|p| p.into_inner()).get(&channel)
            && (self.clock.now() - *read_at)
                .to_std()
                .is_ok_and(|age| age < LOCAL_REUSE)
            && usable(list)
        {
            return Ok(list.clone());
        }
        let name = self.cache_name(channel);
        let _flight = self.flights[&channel].lock().await;
        let started = Instant::now();
        loop {
            if let Some(list) = self.stored(&name).await
                && usable(&list)
            {
                return Ok(self.remember(channel, list));
            }
            let waited_enough = started.elapsed() >= WAIT_FOR_OTHERS;
            let locked = waited_enough
                || self
                    .store
                    .try_lock(&name, &self.holder, LOCK_TTL)
                    .await
                    .unwrap_or(true);
            if locked {
                let fetched = self.fetch_list(channel).await;
                if !waited_enough {
                    let _ = self.store.unlock(&name, &self.holder).await;
                }
                let list = Cached {
                    fetched_at_ms: self.clock.now().timestamp_millis(),
                    templates: fetched?,
                };
                match serde_json::to_string(&list) {
                    Ok(raw) => {
                        if let Err(err) = self.store.put_cached(&name, &raw, self.ttl).await {
                            tracing::warn!(error = %err, "could not cache the template list");
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "could not encode the template list"),
                }
                return Ok(self.remember(channel, list));
            }
            // Another instance is fetching: its list will appear shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stored(&self, name: &str) -> Option<Cached> {
        let raw = self.store.get_cached(name).await.ok()??;
        serde_json::from_str(&raw).ok()
    }

    fn remember(&self, channel: ChannelKind, list: Cached) -> Arc<Cached> {
        let list = Arc::new(list);
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel, (self.clock.now(), list.clone()));
        list
    }

    /// The account's whole list from WeChat.
    #[tracing::instrument(skip(self))]
    async fn fetch_list(&self, channel: ChannelKind) -> Result<Vec<AccountTemplate>, TemplateError> {
        match channel.templates() {
            TemplateDialect::OldLibrary => {
                let mut all = Vec::new();
                for page in 0.. {
                    let call = ManageCall::template_list(page * LIST_PAGE, LIST_PAGE);
                    let answer = self.call(channel, &call).await?;
                    let items = shapes::account_list(channel, &answer);
                    let last = items.len() < LIST_PAGE as usize;
                    all.extend(items);
                    if last {
                        break;
                    }
                }
                Ok(all)
            }
            TemplateDialect::Subscribe => {
                let answer = self.call(channel, &ManageCall::subscribe_list()).await?;
                Ok(shapes::account_list(channel, &answer))
            }
            TemplateDialect::OfficialAccount => {
                let answer = self.call(channel, &ManageCall::official_account_list()).await?;
                Ok(shapes::account_list(channel, &answer))
            }
        }
    }
}
