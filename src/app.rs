//! Builds the service from its configuration: opens the store, builds each
//! app's context (WeChat clients, token control, channels, push settings,
//! records), sets up authentication, mounts the API (and, in sandbox mode,
//! the simulator on the same listener), and runs the HTTP server together
//! with its background tasks until a signal stops it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};

use crate::api::connections::{BodyTimeout, OpenConnection};
use crate::api::{self, AppState, Mode};
use crate::apps::{AppContext, Apps, DEFAULT_APP, OfficialAccount};
use crate::auth::{ApiKeys, Authenticator, Scope, SessionSigner};
use crate::bootstrap::{Backend, loopback, wechat_base, wechat_clients};
use crate::channels::{
    OfficialAccountChannel, OfficialAccountSubscribeChannel, SubscribeChannel, TemplateChannel,
};
use crate::clock::{Clock, SystemClock};
use crate::config::apps::AccountSettings;
use crate::config::{Config, Secret, TokenMode};
use crate::domain::ChannelKind;
use crate::domain::ExpiryPolicy;
use crate::idempotency::Idempotency;
use crate::ledger::grants::GrantSettings;
use crate::ledger::{LedgerClock, LedgerSettings};
use crate::push::crypto::AesKey;
use crate::push::receipts::Receipts;
use crate::push::verify::{PushEndpoints, PushSettings};
use crate::report::UsageRecorder;
use crate::send::{SendPolicy, Sender};
use crate::sim::{self, PushTargets, SANDBOX_PUSH_AES_KEY, SANDBOX_PUSH_TOKEN, SimConfig, Simulator};
use crate::store::{Barrier, EvictionWatch, RedisConnection, SharedStore};
use crate::templates::{self, Templates};
use crate::wechat::{TokenError, TokenManager, WechatClient};

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    /// Every app, for the background tasks: report counter flushes and
    /// access token refreshes.
    apps: Vec<Arc<AppContext>>,
    /// The Redis to watch for an eviction policy, and what was seen.
    store_watch: Option<(RedisConnection, Arc<EvictionWatch>)>,
    flush_every: Duration,
    /// The embedded store's disk, waited for once the last counters are
    /// written at shutdown.
    barrier: Barrier,
    generated_admin_key: Option<Secret>,
}

/// One app as the configuration names it: its WeChat accounts (each with
/// its token endpoint) and push settings.
struct AppSpec {
    name: String,
    miniprogram: (WechatClient, TokenMode),
    official_account: Option<(WechatClient, TokenMode)>,
    push: PushEndpoints,
}

/// What every app is built with.
struct Shared<'a> {
    config: &'a Config,
    backend: &'a Backend,
    /// One access token per WeChat appid, whichever app names it.
    tokens: Arc<dyn SharedStore>,
    ledger: LedgerSettings,
    grants: GrantSettings,
    policy: SendPolicy,
    /// What decisions by time read.
    clock: Arc<dyn Clock>,
    /// What the ledgers read instead of the store's time, if anything.
    ledger_clock: LedgerClock,
}

/// The clocks a service reads: `service` for every decision by time the
/// service makes, and `ledgers`, which stays `None` outside tests: the
/// ledgers then read the store's own time (Redis's `TIME`), so instances
/// with skewed clocks still agree on every expiry and lease.
#[derive(Clone)]
pub struct Clocks {
    pub service: Arc<dyn Clock>,
    pub ledgers: LedgerClock,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Self::build`] on `clock` (tests move time instead of sleeping).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_with_clocks(
            config,
            Clocks {
                service: clock,
                ledgers: None,
            },
        )
        .await
    }

    /// [`Self::build`] on `clocks`; tests that move the ledgers' time too
    /// (an expiry, a lease running out) set [`Clocks::ledgers`].
    pub async fn build_with_clocks(config: Config, clocks: Clocks) -> anyhow::Result<Self> {
        let Clocks {
            service: clock,
            ledgers: ledger_clock,
        } = clocks;
        config.validate().map_err(anyhow::Error::msg)?;
        // Metrics recorded before the recorder exists are lost: install it first.
        crate::metrics::handle();
        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let sandbox = config.sandbox_mode();
        let backend = Backend::open(&config)?;
        let policy = SendPolicy {
            call_timeout: Duration::from_millis(config.wechat_timeout_ms.max(100)),
            budget: Duration::from_millis(config.send_budget_ms.max(100)),
            lease: Duration::from_secs(config.send_lease_secs.max(1)),
            ..SendPolicy::default()
        };
        if policy.lease <= policy.budget {
            bail!("SEND_LEASE_SECS must exceed the send time bound SEND_BUDGET_MS");
        }
        let shared = Shared {
            config: &config,
            backend: &backend,
            tokens: backend.deployment(),
            ledger: LedgerSettings {
                max_credentials_per_user: config.max_credentials_per_user,
                expiry: ExpiryPolicy::new(
                    chrono::Duration::seconds(config.credential_safety_margin_secs as i64),
                    chrono::Duration::seconds(config.credential_expiry_granularity_secs as i64),
                ),
            },
            grants: GrantSettings {
                max_per_template: config.max_grants_per_template,
                retention: Duration::from_secs(config.subscribe_retention_days.saturating_mul(86_400)),
            },
            policy,
            clock: clock.clone(),
            ledger_clock,
        };
        let apps: Vec<AppContext> = app_specs(&config, addr)?
            .into_iter()
            .map(|spec| build_app(spec, &shared))
            .collect::<anyhow::Result<_>>()?;
        let apps = Apps::new(apps).map_err(anyhow::Error::msg)?;
        if let Some(app) = apps.iter().next()
            && let Err(err) = app.ledger.ping().await
        {
            tracing::error!(error = %err, "the ledger store is unreachable; serving 503 until it answers");
        }

        let session_secret = match (&config.session_secret, sandbox) {
            (Some(secret), _) => secret.clone(),
            (None, true) => Secret::new(hex::encode(rand::random::<[u8; 32]>())),
            (None, false) => {
                bail!("SESSION_SECRET is required when WECHAT_APPID is set (every instance must share it)")
            }
        };
        let mut api_keys = match &config.api_keys {
            Some(raw) => ApiKeys::parse(raw)?,
            None => ApiKeys::default(),
        };
        if let Some((key, app)) = api_keys.apps_named().find(|(_, app)| apps.get(app).is_none()) {
            bail!("API_KEYS: key {key} names app {app}, which is not configured");
        }
        let mut generated_admin_key = None;
        if api_keys.is_empty() {
            if sandbox {
                let key = Secret::new(format!("fl_sandbox_{}", hex::encode(rand::random::<[u8; 16]>())));
                api_keys = api_keys.with_key("sandbox-admin", &key, vec![Scope::Admin]);
                generated_admin_key = Some(key);
            } else {
                tracing::warn!("API_KEYS is not set: backend routes will answer 401");
            }
        }
        let auth = web::Data::new(Arc::new(Authenticator {
            sessions: SessionSigner::new(
                session_secret,
                chrono::Duration::seconds(config.session_ttl_secs as i64),
            ),
            api_keys,
            clock: clock.clone(),
        }));
        let every_app: Vec<Arc<AppContext>> = apps.iter().cloned().collect();
        // An evicting Redis is named at start, and watched from then on.
        let eviction = Arc::new(EvictionWatch::default());
        let redis = backend.redis().cloned();
        if let Some(redis) = &redis {
            eviction.check(redis).await;
        }
        let state = web::Data::new(AppState {
            apps,
            mode: Mode {
                store: backend.name(),
                sandbox,
            },
            eviction: eviction.clone(),
            replicas: redis
                .clone()
                .filter(|_| config.redis_wait_replicas > 0)
                .map(|redis| (redis, config.redis_wait_replicas)),
        });
        // Sandbox: WeChat pushes to this service, in safe mode, as a
        // console with push URLs set would.
        let simulator = if sandbox {
            Some(Simulator::new(sandbox_simulator(&config, addr)?))
        } else {
            None
        };

        let body_timeout = BodyTimeout(Duration::from_secs(config.request_body_timeout_secs));
        let barrier = web::Data::new(backend.barrier());
        if let Some(limit) = api::connections::raise_open_files_limit() {
            tracing::info!(limit, "open files limit");
        }
        let server = HttpServer::new(move || {
            let simulator = simulator.clone();
            App::new()
                .wrap(from_fn(api::middleware::answer_when_durable))
                .wrap(from_fn(api::connections::body_deadline))
                .wrap(from_fn(api::middleware::request_context))
                .app_data(barrier.clone())
                .app_data(body_timeout)
                .app_data(state.clone())
                .app_data(auth.clone())
                .configure(api::configure)
                .configure(|cfg| {
                    if let Some(sim) = simulator {
                        cfg.service(sim.scope());
                    }
                })
                .default_service(web::to(api::not_found))
        })
        .shutdown_timeout(10);
        // Every connection is counted while it lives; in sandbox mode the
        // simulator's dropped-connection fault also needs a handle on each
        // socket (outside it nothing should pay for that).
        let server = server.on_connect(move |conn, ext| {
            ext.insert(OpenConnection::new());
            if sandbox {
                sim::on_connect(conn, ext);
            }
        });
        let server = server.listen(listener)?.run();

        Ok(Self {
            addr,
            server,
            apps: every_app,
            store_watch: redis.map(|redis| (redis, eviction)),
            flush_every: Duration::from_secs(config.usage_flush_secs.max(1)),
            barrier: backend.barrier(),
            generated_admin_key,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The admin key made up at start-up in sandbox mode without `API_KEYS`.
    pub fn generated_admin_key(&self) -> Option<&Secret> {
        self.generated_admin_key.as_ref()
    }

    /// Serves until SIGINT/SIGTERM (actix stops accepting, lets requests in
    /// flight finish), then writes the last report counters. Background:
    /// every app's report counter flush and access token refreshers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let mut background = Vec::new();
        if let Some((redis, eviction)) = self.store_watch.clone() {
            background.push(tokio::spawn(watch_eviction(redis, eviction)));
        }
        for app in &self.apps {
            background.push(tokio::spawn(
                app.usage.clone().flush_periodically(self.flush_every),
            ));
            for tokens in app.token_managers() {
                background.push(tokio::spawn(refresh_tokens(tokens.clone())));
            }
        }
        let result = self.server.await;
        for task in background {
            task.abort();
        }
        for app in &self.apps {
            if let Err(err) = app.usage.flush().await {
                tracing::error!(app = %app.name, error = %err, "report counters could not be written at shutdown");
            }
        }
        if let Err(err) = self.barrier.wait().await {
            tracing::error!(error = %err, "the last changes could not be committed at shutdown");
        }
        result
    }
}

/// The apps the configuration names: those of `APPS_FILE`, or the one
/// today's variables define, `default`.
fn app_specs(config: &Config, addr: SocketAddr) -> anyhow::Result<Vec<AppSpec>> {
    if let Some(apps) = config.apps().map_err(anyhow::Error::msg)? {
        let timeout = Duration::from_millis(config.wechat_timeout_ms.max(100));
        let base = wechat_base(config, addr);
        let account = |account: &AccountSettings| -> anyhow::Result<(WechatClient, TokenMode)> {
            let client = WechatClient::new(&base, &account.appid, account.secret.clone(), timeout)?;
            Ok((client, account.token_mode))
        };
        return apps
            .iter()
            .map(|app| {
                let push = |account: &AccountSettings| -> anyhow::Result<Option<PushSettings>> {
                    if config.sandbox_mode() {
                        return sandbox_push(&account.appid);
                    }
                    push_settings(&account.push_token, &account.push_aes_keys, &account.appid)
                        .map_err(|e| anyhow::anyhow!("APPS_FILE: app {}: {e}", app.name))
                };
                Ok(AppSpec {
                    name: app.name.clone(),
                    miniprogram: account(&app.miniprogram)?,
                    official_account: app.official_account.as_ref().map(account).transpose()?,
                    push: PushEndpoints {
                        miniprogram: push(&app.miniprogram)?,
                        official_account: match &app.official_account {
                            Some(oa) => push(oa)?,
                            None => None,
                        },
                    },
                })
            })
            .collect();
    }
    let (miniprogram, official_account) = wechat_clients(config, addr, DEFAULT_APP)?;
    let push = push_endpoints(
        config,
        miniprogram.appid(),
        official_account.as_ref().map(WechatClient::appid),
    )?;
    let mode = config.wechat_token_mode;
    Ok(vec![AppSpec {
        name: DEFAULT_APP.to_owned(),
        miniprogram: (miniprogram, mode),
        official_account: official_account.map(|client| (client, mode)),
        push,
    }])
}

/// One app's context: its stores under its key prefix, its token control
/// (tokens shared per appid across the deployment), channels and records.
fn build_app(spec: AppSpec, shared: &Shared<'_>) -> anyhow::Result<AppContext> {
    let config = shared.config;
    let stores = shared
        .backend
        .app(&spec.name, shared.ledger, shared.grants, &shared.ledger_clock)?;
    let usage = Arc::new(UsageRecorder::with_clock(
        stores.usage,
        config.report_utc_offset,
        shared.clock.clone(),
    ));
    let token_manager = |client: &WechatClient, mode: TokenMode| {
        Arc::new(TokenManager::with_clock(
            client.clone(),
            shared.tokens.clone(),
            mode,
            shared.clock.clone(),
        ))
    };
    let (wechat, mode) = spec.miniprogram;
    let tokens = token_manager(&wechat, mode);
    let official_account = spec.official_account.map(|(client, mode)| templates::App {
        tokens: token_manager(&client, mode),
        client,
    });
    let templates = Arc::new(Templates::new(
        templates::App {
            client: wechat.clone(),
            tokens: tokens.clone(),
        },
        official_account.clone(),
        stores.shared.clone(),
        Duration::from_secs(config.template_cache_secs.max(1)),
        shared.clock.clone(),
    ));
    let policy = shared.policy;
    let grants = |channel: ChannelKind| {
        let ledger = stores.grants.get(&channel);
        ledger
            .cloned()
            .expect("bootstrap opens a grant ledger for every grant channel")
    };
    Ok(AppContext {
        sender: Sender::new(tokens.clone(), usage.clone(), policy, shared.backend.barrier()),
        template: TemplateChannel::new(stores.ledger.clone(), wechat.clone(), usage.clone()),
        subscribe: SubscribeChannel::new(grants(ChannelKind::Subscribe), wechat.clone(), usage.clone()),
        official_account: official_account.map(|oa| OfficialAccount {
            sender: Sender::new(oa.tokens.clone(), usage.clone(), policy, shared.backend.barrier()),
            subscribe: OfficialAccountSubscribeChannel::new(
                grants(ChannelKind::OfficialAccountSubscribe),
                oa.client.clone(),
                usage.clone(),
            ),
            channel: OfficialAccountChannel::new(oa.client, shared.clock.clone()),
            tokens: oa.tokens,
        }),
        // A running send holds its key a little past its own time bound.
        idempotency: Idempotency::new(stores.shared.clone(), policy.budget + policy.lease),
        receipts: Receipts::new(stores.shared.clone()),
        clock: shared.clock.clone(),
        name: spec.name,
        ledger: stores.ledger,
        grants: stores.grants,
        wechat,
        usage,
        shared: stores.shared,
        tokens,
        templates,
        push: spec.push,
        grant_source: config.subscribe_grants_from,
    })
}

/// The built-in simulator of sandbox mode: its own pair of accounts for
/// the app `default` of today's variables, and with an apps file one pair
/// per app (`wxsandbox-<name>`, `wxsandboxoa-<name>`); each pushes to its
/// app's endpoints in safe mode, as a console with push URLs set would.
fn sandbox_simulator(config: &Config, addr: SocketAddr) -> anyhow::Result<SimConfig> {
    let base = format!("http://{}", loopback(addr));
    let push = |app: Option<&str>| {
        let at = app.map_or(String::new(), |name| format!("{name}/"));
        Some(PushTargets {
            miniprogram_url: Some(format!("{base}/wechat/push/{at}miniprogram")),
            official_account_url: Some(format!("{base}/wechat/push/{at}official-account")),
            token: SANDBOX_PUSH_TOKEN.to_owned(),
            aes_key: Some(SANDBOX_PUSH_AES_KEY.to_owned()),
        })
    };
    let apps = config.apps().map_err(anyhow::Error::msg)?.unwrap_or_default();
    let more_apps = apps
        .iter()
        .map(|app| {
            let official_account = app.official_account.as_ref();
            SimConfig {
                appid: app.miniprogram.appid.clone(),
                secret: app.miniprogram.secret.expose().to_owned(),
                oa_appid: official_account.map(|a| a.appid.clone()).unwrap_or_default(),
                oa_secret: official_account
                    .map(|a| a.secret.expose().to_owned())
                    .unwrap_or_default(),
                push: push(Some(&app.name)),
                ..SimConfig::default()
            }
        })
        .collect();
    Ok(SimConfig {
        push: push(None),
        more_apps,
        ..SimConfig::default()
    })
}

/// An account's push endpoint in sandbox mode: the fixed token and key the
/// built-in simulator pushes with.
fn sandbox_push(appid: &str) -> anyhow::Result<Option<PushSettings>> {
    push_settings(
        &Some(Secret::new(SANDBOX_PUSH_TOKEN)),
        &[Secret::new(SANDBOX_PUSH_AES_KEY)],
        appid,
    )
    .map_err(anyhow::Error::msg)
}

/// The default app's push endpoints: the configured tokens and keys, or in
/// sandbox mode the fixed ones the built-in simulator pushes with.
fn push_endpoints(config: &Config, appid: &str, oa_appid: Option<&str>) -> anyhow::Result<PushEndpoints> {
    if config.sandbox_mode() {
        return Ok(PushEndpoints {
            miniprogram: sandbox_push(appid)?,
            official_account: oa_appid.map(sandbox_push).transpose()?.flatten(),
        });
    }
    if config.wechat_oa_push_token.is_some() && oa_appid.is_none() {
        bail!("WECHAT_OA_PUSH_TOKEN is set but the official account is not (WECHAT_OA_APPID)");
    }
    let mp_keys: Vec<Secret> = [&config.wechat_push_aes_key, &config.wechat_push_aes_key_previous]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let oa_keys: Vec<Secret> = config.wechat_oa_push_aes_key.iter().cloned().collect();
    Ok(PushEndpoints {
        miniprogram: push_settings(&config.wechat_push_token, &mp_keys, appid)
            .map_err(|e| anyhow::anyhow!("WECHAT_PUSH_AES_KEY: {e}"))?,
        official_account: match oa_appid {
            Some(oa) => push_settings(&config.wechat_oa_push_token, &oa_keys, oa)
                .map_err(|e| anyhow::anyhow!("WECHAT_OA_PUSH_AES_KEY: {e}"))?,
            None => None,
        },
    })
}

/// An account's push endpoint: its token and EncodingAESKeys (newest
/// first), or `None` without a token.
fn push_settings(
    token: &Option<Secret>,
    keys: &[Secret],
    appid: &str,
) -> Result<Option<PushSettings>, String> {
    let Some(token) = token else { return Ok(None) };
    let keys = keys
        .iter()
        .map(|k| AesKey::parse(k.expose()).map_err(|e| format!("EncodingAESKey: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(PushSettings {
        token: token.expose().to_owned(),
        keys,
        appid: appid.to_owned(),
    }))
}

/// Looks at Redis's eviction policy again every so often (an operator may
/// change it while the service runs).
async fn watch_eviction(redis: RedisConnection, eviction: Arc<EvictionWatch>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        eviction.check(&redis).await;
    }
}

/// Keeps one shared access token fresh ahead of its expiry, so sends rarely
/// wait for a fetch (the lock in the token manager keeps it to one
/// instance at a time).
async fn refresh_tokens(tokens: Arc<TokenManager>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match tokens.refresh_if_due().await {
            // Logged as an error where it happens, with its backoff.
            Ok(()) | Err(TokenError::Refused(_)) => {}
            Err(err) => tracing::warn!(error = %err, "access token refresh failed; will retry"),
        }
    }
}
