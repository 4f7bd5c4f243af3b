//! The simulator's memory and WeChat's rules over it: app credentials, login
//! codes, issued formIds and prepay_ids, templates, the template-send checks
//! in WeChat's order, inboxes, the daily quota, the injected fault and the
//! counters. Time is always a parameter, so every rule is testable without
//! sleeping. Token lifetimes live in `tokens`; HTTP lives elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::clock::wechat_local;
use super::config::{BUILTIN_OA_TEMPLATES, BUILTIN_TEMPLATES, SEND_PATH, SUBSCRIBE_SEND_PATH, SimConfig};
use super::errors::WxError;
use super::fault::Fault;
use super::followers::Followers;
use super::library::{self, AccountTemplate, AccountTemplates, Channel};
use super::quota::{ClearQuota, Quota, QuotaGet, Quotas, Side};
use super::subscribe::{
    self, BUILTIN_LONG_TERM_TEMPLATE, BUILTIN_OA_SUBSCRIBE_TEMPLATES, BUILTIN_SUBSCRIBE_TEMPLATES,
    Subscriptions,
};
use super::tokens::{Issued, Tokens};
use crate::domain::{CREDENTIAL_VALIDITY, CredentialKind, OpenId};

/// Messages kept per recipient; older ones are dropped so a long benchmark
/// cannot grow memory without bound.
pub const INBOX_CAPACITY: usize = 10_000;
/// wx.login codes live five minutes.
const CODE_VALIDITY: TimeDelta = TimeDelta::minutes(5);
/// Expired entries answer exactly like unknown ones, so forgetting them is
/// invisible; doing it at most this often keeps issuing O(1) amortised.
const PRUNE_EVERY: TimeDelta = TimeDelta::minutes(1);

/// What a caller presents to prove it is the app.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppAuth<'a> {
    pub grant_type: Option<&'a str>,
    pub appid: Option<&'a str>,
    pub secret: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub openid: String,
    pub session_key: String,
}

/// One delivered template message, as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// `template` (templateMessage.send), `subscribe` (subscribeMessage.send)
    /// or `official_account` (its template message; `page` holds its url).
    pub kind: &'static str,
    pub template_id: String,
    pub page: Option<String>,
    pub data: Value,
    pub emphasis_keyword: Option<String>,
    /// The formId or prepay_id a template message spent.
    pub form_id: Option<String>,
    /// A subscribe message's id.
    pub msgid: Option<u64>,
    pub sent_at: DateTime<Utc>,
}

/// Counts one successful send against a daily limit (days in UTC+8), or
/// refuses with 45009 once the day's limit is reached.
/// Why `subscribeMessage.send` refused: a WeChat error, or 47003 naming the
/// `data` key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeRefusal {
    Wx(WxError),
    Data(String),
}

impl SubscribeRefusal {
    pub fn errcode(&self) -> i64 {
        match self {
            SubscribeRefusal::Wx(err) => err.errcode(),
            SubscribeRefusal::Data(_) => WxError::InvalidData.errcode(),
        }
    }

    pub fn errmsg(&self) -> String {
        match self {
            SubscribeRefusal::Wx(err) => err.to_string(),
            SubscribeRefusal::Data(key) => format!("argument invalid! data.{key}.value invalid"),
        }
    }
}

impl From<WxError> for SubscribeRefusal {
    fn from(err: WxError) -> Self {
        SubscribeRefusal::Wx(err)
    }
}

/// The subscribe-send body. Unknown fields are ignored, as WeChat does.
#[derive(Deserialize)]
struct SubscribeBody {
    touser: String,
    template_id: String,
    page: Option<String>,
    data: Option<Map<String, Value>>,
    miniprogram_state: Option<String>,
    lang: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub token_fetches: u64,
    /// Token requests refused for a wrong appid or secret.
    pub token_refusals: u64,
    /// Account template lists fetched, all channels.
    pub template_lists: u64,
    /// Keyed by errcode; serialised as strings, as JSON object keys must be.
    pub sends: BTreeMap<i64, u64>,
}

/// The template-send body. Unknown fields are ignored, as WeChat does.
#[derive(Deserialize)]
struct SendBody {
    touser: String,
    template_id: String,
    page: Option<String>,
    form_id: String,
    data: Option<Value>,
    emphasis_keyword: Option<String>,
}

struct LoginCode {
    openid: OpenId,
    issued_at: DateTime<Utc>,
    used: bool,
}

struct Credential {
    openid: OpenId,
    expires_at: DateTime<Utc>,
    uses_left: u8,
}

pub struct State {
    pub(super) config: SimConfig,
    pub(super) tokens: Tokens,
    /// The official account's tokens (its own appid and secret).
    pub(super) oa_tokens: Tokens,
    /// Template ids a template send may use (mirrors `account`).
    pub(super) templates: BTreeSet<String>,
    /// Every channel's account templates, as the management routes list them.
    pub(super) account: AccountTemplates,
    /// Account template list requests answered (all channels).
    pub(super) template_lists: u64,
    /// The official account's followers and blockers.
    pub(super) followers: Followers,
    codes: HashMap<String, LoginCode>,
    credentials: HashMap<String, Credential>,
    inboxes: HashMap<String, VecDeque<Message>>,
    /// The send APIs' daily use and the month's quota clears.
    pub(super) quotas: Quotas,
    fault: Option<Fault>,
    token_fetches: u64,
    token_refusals: u64,
    sends: BTreeMap<i64, u64>,
    pruned_at: DateTime<Utc>,
    pub(super) subscriptions: Subscriptions,
    /// The official account's subscribe templates and its followers'
    /// grants and long-term subscriptions.
    pub(super) oa_subscriptions: Subscriptions,
    /// Openids that logged in, were issued credentials or answered a
    /// subscribe popup: the users WeChat knows.
    seen: HashSet<String>,
}

impl State {
    pub fn new(config: SimConfig, now: DateTime<Utc>) -> Self {
        let mut account = AccountTemplates::default();
        for (n, id) in BUILTIN_TEMPLATES.iter().enumerate() {
            let keys: Vec<String> = (1..=3).map(|k| format!("keyword{k}")).collect();
            let template = AccountTemplate::plain(&format!("Sandbox template {}", n + 1), &keys);
            account.insert(Channel::Template, (*id).to_owned(), template);
        }
        for (id, keys) in BUILTIN_SUBSCRIBE_TEMPLATES {
            let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
            let template = AccountTemplate::plain("Sandbox subscribe template", &keys);
            account.insert(Channel::Subscribe, id.to_owned(), template);
        }
        for (id, keys, long_term) in BUILTIN_OA_SUBSCRIBE_TEMPLATES {
            let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
            let mut template = AccountTemplate::plain("Sandbox official-account subscribe template", &keys);
            template.long_term = long_term;
            account.insert(Channel::OfficialAccountSubscribe, id.to_owned(), template);
        }
        let (id, keys) = BUILTIN_LONG_TERM_TEMPLATE;
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let mut template = AccountTemplate::plain("Sandbox long-term subscribe template", &keys);
        template.long_term = true;
        account.insert(Channel::Subscribe, id.to_owned(), template);
        for (id, short) in BUILTIN_OA_TEMPLATES {
            let entry = library::entry(Channel::OfficialAccount, short).expect("a library entry");
            let template = AccountTemplate::from_entry(
                Channel::OfficialAccount,
                entry,
                &entry.keywords.iter().collect::<Vec<_>>(),
            );
            account.insert(Channel::OfficialAccount, id.to_owned(), template);
        }
        Self {
            tokens: Tokens::new(config.token_ttl_secs, config.token_overlap_secs),
            oa_tokens: Tokens::new(config.token_ttl_secs, config.token_overlap_secs),
            config,
            templates: BUILTIN_TEMPLATES.iter().map(|t| (*t).to_owned()).collect(),
            account,
            template_lists: 0,
            followers: Followers::default(),
            codes: HashMap::new(),
            credentials: HashMap::new(),
            inboxes: HashMap::new(),
            quotas: Quotas::default(),
            fault: None,
            token_fetches: 0,
            token_refusals: 0,
            sends: BTreeMap::new(),
            pruned_at: now,
            subscriptions: Subscriptions::new(),
            oa_subscriptions: Subscriptions::official_account(),
            seen: HashSet::new(),
        }
    }

    /// Which app's tokens a token request is for (true: the official
    /// account's), counting refusals.
    fn check_token_request(&mut self, auth: AppAuth<'_>) -> Result<bool, WxError> {
        let checked = self.check_app(auth, "client_credential");
        if checked.is_err() {
            self.token_refusals += 1;
        }
        checked
    }

    /// Whether this account issued `token` (to its mini-program or its
    /// official account).
    pub(super) fn owns_token(&self, token: &str) -> bool {
        self.tokens.issued(token) || self.oa_tokens.issued(token)
    }

    /// Which side issued a current `access_token`.
    fn side_of(&self, access_token: Option<&str>, now: DateTime<Utc>) -> Result<Side, WxError> {
        match self.check_token(access_token, now) {
            Ok(()) => Ok(Side::MiniProgram),
            Err(err) => match self.check_oa_token(access_token, now) {
                Ok(()) => Ok(Side::OfficialAccount),
                Err(_) => Err(err),
            },
        }
    }

    /// `openapi/quota/get`: a send API's daily limit, use and remainder,
    /// for the side whose token asks.
    pub fn quota_get(
        &mut self,
        access_token: Option<&str>,
        body: QuotaGet,
        now: DateTime<Utc>,
    ) -> Result<Quota, WxError> {
        let side = self.side_of(access_token, now)?;
        self.quotas
            .get(side, &body.cgi_path, self.config.daily_limit, now)
    }

    /// `clear_quota`: the side's send APIs start the day again (its own
    /// appid only; 48006 after 10 clears in a month).
    pub fn clear_quota(
        &mut self,
        access_token: Option<&str>,
        body: ClearQuota,
        now: DateTime<Utc>,
    ) -> Result<(), WxError> {
        let side = self.side_of(access_token, now)?;
        let appid = match side {
            Side::MiniProgram => &self.config.appid,
            Side::OfficialAccount => &self.config.oa_appid,
        };
        if body.appid != *appid {
            return Err(WxError::InvalidAppId);
        }
        self.quotas.clear(side, now)
    }

    /// A mini-program call's `access_token`: present and current.
    pub(super) fn check_token(&self, access_token: Option<&str>, now: DateTime<Utc>) -> Result<(), WxError> {
        present(access_token).and_then(|t| self.tokens.check(t, now))
    }

    /// The same for the official account's own tokens.
    pub(super) fn check_oa_token(
        &self,
        access_token: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), WxError> {
        present(access_token).and_then(|t| self.oa_tokens.check(t, now))
    }

    pub fn fetch_token(&mut self, auth: AppAuth<'_>, now: DateTime<Utc>) -> Result<Issued, WxError> {
        let official_account = self.check_token_request(auth)?;
        self.prune(now);
        self.token_fetches += 1;
        Ok(match official_account {
            true => self.oa_tokens.fetch(now),
            false => self.tokens.fetch(now),
        })
    }

    pub fn fetch_stable_token(
        &mut self,
        auth: AppAuth<'_>,
        force_refresh: bool,
        now: DateTime<Utc>,
    ) -> Result<Issued, WxError> {
        let official_account = self.check_token_request(auth)?;
        self.prune(now);
        let tokens = match official_account {
            true => &mut self.oa_tokens,
            false => &mut self.tokens,
        };
        let issued = tokens.fetch_stable(force_refresh, now)?;
        self.token_fetches += 1;
        Ok(issued)
    }

    pub fn code_to_session(
        &mut self,
        auth: AppAuth<'_>,
        js_code: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Session, WxError> {
        // jscode2session is the mini-program's alone.
        if self.check_app(auth, "authorization_code")? {
            return Err(WxError::InvalidAppId);
        }
        let js_code = js_code.filter(|c| !c.is_empty()).ok_or(WxError::CodeMissing)?;
        let code = self.codes.get_mut(js_code).ok_or(WxError::InvalidCode)?;
        // Expiry before reuse: pruning forgets expired codes, and a code
        // must answer the same before and after it is forgotten.
        if now - code.issued_at >= CODE_VALIDITY {
            return Err(WxError::InvalidCode);
        }
        if code.used {
            return Err(WxError::CodeUsed);
        }
        code.used = true;
        Ok(Session {
            openid: code.openid.as_str().to_owned(),
            // Standard padded base64 of 16 bytes, the shape of WeChat's.
            session_key: base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>()),
        })
    }

    /// One template send, start to finish, counted in the stats whatever
    /// the answer. `body` is `None` when it could not be read.
    pub fn send(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<(), WxError> {
        let result = self.try_send(access_token, body, now);
        let errcode = result.map_or_else(WxError::errcode, |()| 0);
        *self.sends.entry(errcode).or_default() += 1;
        result
    }

    fn try_send(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<(), WxError> {
        self.check_token(access_token, now)?;
        let body = parse_send_body(body).ok_or(WxError::DataFormat)?;
        if !self.templates.contains(&body.template_id) {
            return Err(WxError::InvalidTemplateId);
        }
        if body.page.as_deref().is_some_and(|page| !is_valid_page(page)) {
            return Err(WxError::InvalidPage);
        }
        let data = body.data.filter(is_valid_data).ok_or(WxError::InvalidData)?;
        let credential = self
            .credentials
            .get_mut(&body.form_id)
            .filter(|c| c.openid.as_str() == body.touser && now < c.expires_at)
            .ok_or(WxError::InvalidFormId)?;
        if credential.uses_left == 0 {
            return Err(WxError::FormIdUsedUp);
        }
        self.quotas
            .take(Side::MiniProgram, SEND_PATH, self.config.daily_limit, now)?;
        credential.uses_left -= 1;
        self.deliver(
            body.touser,
            Message {
                kind: "template",
                template_id: body.template_id,
                page: body.page,
                data,
                emphasis_keyword: body.emphasis_keyword,
                form_id: Some(body.form_id),
                msgid: None,
                sent_at: now,
            },
        );
        Ok(())
    }

    /// `subscribeMessage.send`: checked in WeChat's order, one grant used.
    pub fn send_subscribe(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<u64, SubscribeRefusal> {
        let result = self.try_send_subscribe(access_token, body, now);
        let errcode = result.as_ref().map_or_else(SubscribeRefusal::errcode, |_| 0);
        *self.sends.entry(errcode).or_default() += 1;
        result
    }

    fn try_send_subscribe(
        &mut self,
        access_token: Option<&str>,
        body: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<u64, SubscribeRefusal> {
        self.check_token(access_token, now)?;
        let body: SubscribeBody = body
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or(WxError::DataFormat)?;
        if OpenId::parse(&body.touser).is_err() || !self.seen.contains(&body.touser) {
            return Err(WxError::InvalidOpenId.into());
        }
        let keywords = self
            .subscriptions
            .keywords(&body.template_id)
            .ok_or(WxError::InvalidTemplateId)?;
        if body.page.as_deref().is_some_and(|page| !is_valid_page(page)) {
            return Err(WxError::InvalidPage.into());
        }
        let states = ["developer", "trial", "formal"];
        let langs = ["zh_CN", "en_US", "zh_HK", "zh_TW"];
        if body
            .miniprogram_state
            .as_deref()
            .is_some_and(|s| !states.contains(&s))
            || body.lang.as_deref().is_some_and(|l| !langs.contains(&l))
        {
            return Err(WxError::InvalidData.into());
        }
        let data = body.data.ok_or(WxError::InvalidData)?;
        if let Some(key) = subscribe::refused_key(keywords, &data) {
            return Err(SubscribeRefusal::Data(key));
        }
        if !self.subscriptions.may_send(&body.touser, &body.template_id) {
            return Err(WxError::NotSubscribed.into());
        }
        self.quotas.take(
            Side::MiniProgram,
            SUBSCRIBE_SEND_PATH,
            self.config.daily_limit,
            now,
        )?;
        let msgid = self.subscriptions.spend(&body.touser, &body.template_id);
        self.deliver(
            body.touser,
            Message {
                kind: "subscribe",
                template_id: body.template_id,
                page: body.page,
                data: Value::Object(data),
                emphasis_keyword: None,
                form_id: None,
                msgid: Some(msgid),
                sent_at: now,
            },
        );
        Ok(msgid)
    }

    pub(super) fn count_send(&mut self, errcode: i64) {
        *self.sends.entry(errcode).or_default() += 1;
    }

    pub fn follow(&mut self, openid: &OpenId) {
        self.seen.insert(openid.as_str().to_owned());
        self.followers.follow(openid.as_str());
    }

    pub fn block(&mut self, openid: &OpenId) {
        self.seen.insert(openid.as_str().to_owned());
        self.followers.block(openid.as_str());
    }

    pub(super) fn deliver(&mut self, openid: String, message: Message) {
        let inbox = self.inboxes.entry(openid).or_default();
        if inbox.len() >= INBOX_CAPACITY {
            inbox.pop_front();
        }
        inbox.push_back(message);
    }

    /// The user answers a subscribe popup (see [`Subscriptions::request`]).
    pub fn request_subscription(
        &mut self,
        openid: &OpenId,
        asked: &BTreeMap<String, String>,
    ) -> Result<Map<String, Value>, String> {
        if let Some(unknown) = asked.keys().find(|t| self.subscriptions.keywords(t).is_none()) {
            return Err(format!("no subscribe template {unknown}"));
        }
        self.seen.insert(openid.as_str().to_owned());
        Ok(self.subscriptions.request(openid.as_str(), asked))
    }

    /// A follower answers the official account's subscribe popup.
    pub fn request_oa_subscription(
        &mut self,
        openid: &OpenId,
        asked: &BTreeMap<String, String>,
    ) -> Result<Map<String, Value>, String> {
        if let Some(unknown) = asked.keys().find(|t| self.oa_subscriptions.keywords(t).is_none()) {
            return Err(format!("no official-account subscribe template {unknown}"));
        }
        self.seen.insert(openid.as_str().to_owned());
        Ok(self.oa_subscriptions.request(openid.as_str(), asked))
    }

    /// A follower turns one of the official account's notifications off or on.
    pub fn change_oa_subscription(
        &mut self,
        openid: &OpenId,
        template: &str,
        on: bool,
    ) -> Result<(), String> {
        if self.oa_subscriptions.keywords(template).is_none() {
            return Err(format!("no official-account subscribe template {template}"));
        }
        self.oa_subscriptions.change(openid.as_str(), template, on);
        Ok(())
    }

    /// Whether WeChat knows `openid` (a bizsend to anyone else is 40003).
    pub(super) fn knows_follower(&self, openid: &str) -> bool {
        OpenId::parse(openid).is_ok() && self.seen.contains(openid)
    }

    pub fn change_subscription(&mut self, openid: &OpenId, template: &str, on: bool) -> Result<(), String> {
        if self.subscriptions.keywords(template).is_none() {
            return Err(format!("no subscribe template {template}"));
        }
        self.subscriptions.change(openid.as_str(), template, on);
        Ok(())
    }

    /// Adds a subscribe template: one-time, or `long_term` (type 3).
    pub fn add_subscribe_template(&mut self, template_id: String, keywords: Vec<String>, long_term: bool) {
        let mut template = AccountTemplate::plain("Sandbox subscribe template", &keywords);
        template.long_term = long_term;
        self.account
            .insert(Channel::Subscribe, template_id.clone(), template);
        self.subscriptions.add_template(template_id, keywords, long_term);
    }

    pub fn issue_login_code(&mut self, openid: OpenId, now: DateTime<Utc>) -> String {
        self.prune(now);
        self.seen.insert(openid.as_str().to_owned());
        let code = loop {
            let candidate = Alphanumeric.sample_string(&mut rand::rng(), 32);
            if !self.codes.contains_key(&candidate) {
                break candidate;
            }
        };
        let entry = LoginCode {
            openid,
            issued_at: now,
            used: false,
        };
        self.codes.insert(code.clone(), entry);
        code
    }

    pub fn issue_form_ids(
        &mut self,
        openid: &OpenId,
        count: u32,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        self.prune(now);
        (0..count)
            .map(|_| {
                self.issue(openid, CredentialKind::Form, issued_at, || {
                    hex::encode(rand::random::<[u8; 16]>())
                })
            })
            .collect()
    }

    pub fn issue_prepay_id(
        &mut self,
        openid: &OpenId,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> String {
        self.prune(now);
        let stamp = wechat_local(issued_at).format("%Y%m%d%H%M%S").to_string();
        self.issue(openid, CredentialKind::Prepay, issued_at, || {
            format!("wx{stamp}{}", hex::encode(rand::random::<[u8; 10]>()))
        })
    }

    fn issue(
        &mut self,
        openid: &OpenId,
        kind: CredentialKind,
        issued_at: DateTime<Utc>,
        make_id: impl Fn() -> String,
    ) -> String {
        self.seen.insert(openid.as_str().to_owned());
        let id = loop {
            let candidate = make_id();
            if !self.credentials.contains_key(&candidate) {
                break candidate;
            }
        };
        let credential = Credential {
            openid: openid.clone(),
            expires_at: issued_at
                .checked_add_signed(CREDENTIAL_VALIDITY)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            uses_left: kind.uses(),
        };
        self.credentials.insert(id.clone(), credential);
        id
    }

    pub fn register_template(&mut self, template_id: String) {
        let keys: Vec<String> = (1..=3).map(|k| format!("keyword{k}")).collect();
        let template = AccountTemplate::plain("Sandbox template", &keys);
        self.account
            .insert(Channel::Template, template_id.clone(), template);
        self.templates.insert(template_id);
    }

    pub fn templates(&self) -> Vec<String> {
        self.templates.iter().cloned().collect()
    }

    pub fn inbox(&self, openid: &OpenId) -> Vec<Message> {
        self.inboxes
            .get(openid.as_str())
            .map(|inbox| inbox.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    pub fn set_fault(&mut self, fault: Option<Fault>) {
        self.fault = fault;
    }

    /// Spends one request of the active fault. An injected errcode on the
    /// send route is an answer like any other, so it is counted here.
    /// The fault for a call, if one is aimed at it: template management
    /// calls get only faults aimed at them, every other call the rest.
    pub fn take_fault(&mut self, is_send: bool, is_template_admin: bool) -> Option<Fault> {
        let active = self.fault.as_mut().filter(|f| f.templates == is_template_admin)?;
        let taken = *active;
        active.count = active.count.saturating_sub(1);
        if active.count == 0 {
            self.fault = None;
        }
        if is_send && let Some(errcode) = taken.errcode {
            *self.sends.entry(errcode).or_default() += 1;
        }
        Some(taken)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            token_fetches: self.token_fetches,
            token_refusals: self.token_refusals,
            template_lists: self.template_lists,
            sends: self.sends.clone(),
        }
    }

    /// The app `auth` names and proves, in WeChat's order of checks; true
    /// for the official account, false for the mini-program.
    fn check_app(&self, auth: AppAuth<'_>, grant_type: &str) -> Result<bool, WxError> {
        if auth.grant_type != Some(grant_type) {
            return Err(WxError::InvalidGrantType);
        }
        let (official_account, secret) = match auth.appid {
            None | Some("") => return Err(WxError::AppIdMissing),
            Some(appid) if appid == self.config.appid => (false, &self.config.secret),
            Some(appid) if appid == self.config.oa_appid => (true, &self.config.oa_secret),
            Some(_) => return Err(WxError::InvalidAppId),
        };
        match auth.secret {
            None | Some("") => Err(WxError::SecretMissing),
            Some(given) if given != secret => Err(WxError::InvalidSecret),
            Some(_) => Ok(official_account),
        }
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        if now - self.pruned_at < PRUNE_EVERY {
            return;
        }
        self.pruned_at = now;
        self.tokens.prune(now);
        self.oa_tokens.prune(now);
        self.codes.retain(|_, code| now - code.issued_at < CODE_VALIDITY);
        self.credentials
            .retain(|_, credential| now < credential.expires_at);
    }
}

fn parse_send_body(body: Option<&[u8]>) -> Option<SendBody> {
    let value: Value = serde_json::from_slice(body?).ok()?;
    // serde would also build a struct from a JSON array; WeChat would not.
    if !value.is_object() {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// A mini-program page: relative path, optional query.
fn is_valid_page(page: &str) -> bool {
    let (path, query) = match page.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (page, None),
    };
    let path_ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/.-".contains(&b));
    let query_ok = query.is_none_or(|q| {
        q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=&.%-".contains(&b))
    });
    path_ok && query_ok
}

/// `{"keyword1": {"value": "..."}, ...}`; other keys (e.g. `color`) allowed.
fn is_valid_data(data: &Value) -> bool {
    data.as_object().is_some_and(|fields| {
        fields
            .values()
            .all(|field| field.get("value").is_some_and(Value::is_string))
    })
}

/// An `access_token` parameter that is there and not empty.
fn present(access_token: Option<&str>) -> Result<&str, WxError> {
    access_token
        .filter(|t| !t.is_empty())
        .ok_or(WxError::TokenMissing)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    fn openid(raw: &str) -> OpenId {
        OpenId::parse(raw).unwrap_or_else(|_| panic!("bad test openid {raw}"))
    }

    const APP: AppAuth<'static> = AppAuth {
        grant_type: Some("client_credential"),
        appid: Some("wxsandbox"),
        secret: Some("sandbox-secret"),
    };

    fn state(daily_limit: u64) -> (State, String) {
        let mut state = State::new(
            SimConfig {
                daily_limit,
                ..SimConfig::default()
            },
            at(0),
        );
        let token = state
            .fetch_token(APP, at(0))
            .map(|t| t.access_token)
            .unwrap_or_default();
        (state, token)
    }

    fn body(touser: &str, form_id: &str) -> Vec<u8> {
        json!({
            "touser": touser,
            "template_id": BUILTIN_TEMPLATES[0],
            "page": "pages/order/detail?id=42",
            "form_id": form_id,
            "data": {"keyword1": {"value": "shipped", "color": "#173177"}},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn app_credentials_are_checked_in_order() {
        let (mut state, _) = state(10);
        let wrong = |grant_type, appid, secret| AppAuth {
            grant_type,
            appid,
            secret,
        };
        let cases = [
            (
                wrong(None, Some("wxsandbox"), Some("sandbox-secret")),
                WxError::InvalidGrantType,
            ),
            (
                wrong(Some("client_credential"), None, Some("x")),
                WxError::AppIdMissing,
            ),
            (
                wrong(Some("client_credential"), Some("wxother"), Some("x")),
                WxError::InvalidAppId,
            ),
            (
                wrong(Some("client_credential"), Some("wxsandbox"), Some("")),
                WxError::SecretMissing,
            ),
            (
                wrong(Some("client_credential"), Some("wxsandbox"), Some("x")),
                WxError::InvalidSecret,
            ),
        ];
        for (auth, expected) in cases {
            assert_eq!(state.fetch_token(auth, at(1)), Err(expected));
        }
        assert_eq!(state.stats().token_fetches, 1);
    }

    #[test]
    fn send_checks_come_in_wechat_order() {
        let (mut state, token) = state(10);
        let alice = openid("alice");
        let form_id = state.issue_form_ids(&alice, 1, at(0), at(0)).remove(0);
        let good = body("alice", &form_id);
        assert_eq!(state.send(None, Some(&good), at(1)), Err(WxError::TokenMissing));
        assert_eq!(
            state.send(Some("nope"), Some(&good), at(1)),
            Err(WxError::InvalidToken)
        );
        assert_eq!(
            state.send(Some(&token), Some(b"[1]"), at(1)),
            Err(WxError::DataFormat)
        );
        assert_eq!(state.send(Some(&token), None, at(1)), Err(WxError::DataFormat));
        let mut bad_template: Value = serde_json::from_slice(&good).unwrap_or_default();
        bad_template["template_id"] = json!("nope");
        bad_template["page"] = json!("/abs");
        let bad_template = bad_template.to_string().into_bytes();
        assert_eq!(
            state.send(Some(&token), Some(&bad_template), at(1)),
            Err(WxError::InvalidTemplateId)
        );
        assert_eq!(
            state.send(Some(&token), Some(&body("bob", &form_id)), at(1)),
            Err(WxError::InvalidFormId)
        );
        assert_eq!(state.send(Some(&token), Some(&good), at(1)), Ok(()));
        assert_eq!(
            state.send(Some(&token), Some(&good), at(2)),
            Err(WxError::FormIdUsedUp)
        );
        assert_eq!(state.inbox(&alice).len(), 1);
        let sends = state.stats().sends;
        assert_eq!(sends.get(&0), Some(&1));
        assert_eq!(sends.get(&47001), Some(&2));
        assert_eq!(sends.get(&41029), Some(&1));
    }

    #[test]
    fn credentials_expire_seven_days_after_issue() {
        let (mut state, _) = state(10);
        let prepay = state.issue_prepay_id(&openid("alice"), at(0), at(0));
        let mut send_at = |now| {
            let token = state
                .fetch_token(APP, now)
                .map(|t| t.access_token)
                .unwrap_or_default();
            state.send(Some(&token), Some(&body("alice", &prepay)), now)
        };
        assert_eq!(send_at(at(7 * 86_400 - 1)), Ok(()));
        assert_eq!(send_at(at(7 * 86_400)), Err(WxError::InvalidFormId));
    }

    #[test]
    fn prepay_ids_look_like_wechats_and_allow_three_sends() {
        let (mut state, token) = state(10);
        let prepay = state.issue_prepay_id(&openid("bob"), at(0), at(0));
        // at(0) is 2023-11-15 06:13:20 in UTC+8.
        assert!(prepay.starts_with("wx20231115061320"), "{prepay}");
        assert_eq!(prepay.len(), 36);
        for _ in 0..3 {
            assert_eq!(
                state.send(Some(&token), Some(&body("bob", &prepay)), at(1)),
                Ok(())
            );
        }
        assert_eq!(
            state.send(Some(&token), Some(&body("bob", &prepay)), at(1)),
            Err(WxError::FormIdUsedUp)
        );
    }

    #[test]
    fn daily_quota_resets_at_midnight_in_utc_plus_8() {
        let (mut state, _) = state(1);
        let alice = openid("alice");
        let ids = state.issue_form_ids(&alice, 3, at(0), at(0));
        // 15:59:59 UTC is 23:59:59 in Beijing; one second later is a new day.
        let before_midnight = DateTime::parse_from_rfc3339("2023-11-15T15:59:59Z").map(|t| t.to_utc());
        let Ok(before_midnight) = before_midnight else {
            panic!("bad test time")
        };
        let midnight = before_midnight + TimeDelta::seconds(1);
        let token = state
            .fetch_token(APP, before_midnight)
            .map(|t| t.access_token)
            .unwrap_or_default();
        let send =
            |state: &mut State, id: &String, now| state.send(Some(&token), Some(&body("alice", id)), now);
        assert_eq!(send(&mut state, &ids[0], before_midnight), Ok(()));
        assert_eq!(
            send(&mut state, &ids[1], before_midnight),
            Err(WxError::DailyQuota)
        );
        assert_eq!(send(&mut state, &ids[1], midnight), Ok(()));
    }

    #[test]
    fn login_codes_are_single_use_and_short_lived() {
        let (mut state, _) = state(10);
        let login = AppAuth {
            grant_type: Some("authorization_code"),
            ..APP
        };
        let code = state.issue_login_code(openid("carol"), at(0));
        let old = state.issue_login_code(openid("carol"), at(0));
        let session = state.code_to_session(login, Some(&code), at(1));
        assert_eq!(session.as_ref().map(|s| s.openid.as_str()), Ok("carol"));
        assert_eq!(session.map(|s| s.session_key.len()), Ok(24));
        assert_eq!(
            state.code_to_session(login, Some(&code), at(2)),
            Err(WxError::CodeUsed)
        );
        assert_eq!(
            state.code_to_session(login, Some(&old), at(300)),
            Err(WxError::InvalidCode)
        );
        assert_eq!(
            state.code_to_session(login, Some("nope"), at(2)),
            Err(WxError::InvalidCode)
        );
        assert_eq!(
            state.code_to_session(login, None, at(2)),
            Err(WxError::CodeMissing)
        );
    }

    #[test]
    fn pages_and_data_follow_wechats_shape() {
        for good in ["pages/index/index", "pages/a.b-c_d/x?id=1&q=%E4%BD%A0", "p?"] {
            assert!(is_valid_page(good), "{good}");
        }
        for bad in [
            "",
            "/pages/index",
            "pages/index?a=b?c",
            "pages/ index",
            "http://x.y/z",
            "p?a=<b>",
        ] {
            assert!(!is_valid_page(bad), "{bad}");
        }
        assert!(is_valid_data(&json!({"k": {"value": "v", "color": "#fff"}})));
        assert!(is_valid_data(&json!({})));
        for bad in [
            json!([]),
            json!({"k": "v"}),
            json!({"k": {"value": 1}}),
            json!({"k": {}}),
        ] {
            assert!(!is_valid_data(&bad), "{bad}");
        }
    }

    #[test]
    fn faults_count_down_and_injected_send_errcodes_are_counted() {
        let (mut state, _) = state(10);
        state.set_fault(Some(Fault {
            errcode: Some(-1),
            http_status: None,
            delay_ms: None,
            delay_answer_ms: None,
            drop: false,
            lose_answer: false,
            templates: false,
            count: 2,
        }));
        assert!(state.take_fault(true, false).is_some());
        assert_eq!(
            state.take_fault(false, true),
            None,
            "not aimed at template management"
        );
        assert!(state.take_fault(false, false).is_some());
        assert_eq!(state.take_fault(true, false), None);
        assert_eq!(state.stats().sends.get(&-1), Some(&1));
    }
}
