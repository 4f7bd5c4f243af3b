//! Builds the service from its configuration: picks the store and WeChat
//! (real or the sandbox simulator on the same listener), sets up
//! authentication, mounts the API, and runs the HTTP server together with
//! its background tasks until a signal stops it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};

use crate::api::push::PushEndpoints;
use crate::api::{self, AppState, Mode};
use crate::auth::{ApiKeys, Authenticator, Scope, SessionSigner};
use crate::channels::{OfficialAccountChannel, SubscribeChannel, TemplateChannel};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Secret};
use crate::domain::ExpiryPolicy;
use crate::idempotency::Idempotency;
use crate::ledger::grants::{GrantLedger, GrantSettings, MemoryGrants, RedisGrants};
use crate::ledger::{Ledger, LedgerSettings, MemoryLedger, MeteredLedger, RedisLedger};
use crate::push::crypto::AesKey;
use crate::push::receipts::Receipts;
use crate::push::verify::PushSettings;
use crate::report::UsageRecorder;
use crate::send::{SendPolicy, Sender};
use crate::sim::{self, PushTargets, SANDBOX_PUSH_AES_KEY, SANDBOX_PUSH_TOKEN, SimConfig, Simulator};
use crate::store::{MemoryStore, RedisConnection, RedisStore, RedisTarget, SharedStore, UsageStore};
use crate::templates::{self, Templates};
use crate::wechat::{TokenError, TokenManager, WechatClient};

/// Bound of every Redis command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    usage: Arc<UsageRecorder>,
    /// The mini-program's access token, kept fresh in the background (the
    /// official account's is fetched and refreshed when it is used).
    tokens: Arc<TokenManager>,
    flush_every: Duration,
    generated_admin_key: Option<Secret>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Self::build`] on `clock` (tests move time instead of sleeping).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        // Metrics recorded before the recorder exists are lost: install it first.
        crate::metrics::handle();
        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let settings = LedgerSettings {
            max_credentials_per_user: config.max_credentials_per_user,
            expiry: ExpiryPolicy::new(
                chrono::Duration::seconds(config.credential_safety_margin_secs as i64),
                chrono::Duration::seconds(config.credential_expiry_granularity_secs as i64),
            ),
        };

        let grant_settings = GrantSettings {
            max_per_template: config.max_grants_per_template,
            retention: Duration::from_secs(config.subscribe_retention_days.saturating_mul(86_400)),
        };
        let Stores {
            ledger,
            grants,
            shared,
            usage: counters,
            name: store,
        } = open_stores(&config, settings, grant_settings)?;
        if let Err(err) = ledger.ping().await {
            tracing::error!(error = %err, "the ledger store is unreachable; serving 503 until it answers");
        }

        let sandbox = config.wechat_appid.is_none();
        let (wechat, official_account) = wechat_clients(&config, addr)?;

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
        let auth = Arc::new(Authenticator {
            sessions: SessionSigner::new(
                session_secret,
                chrono::Duration::seconds(config.session_ttl_secs as i64),
            ),
            api_keys,
            clock: clock.clone(),
        });

        let usage = Arc::new(UsageRecorder::new(counters, config.report_utc_offset));
        let tokens = Arc::new(TokenManager::new(
            wechat.clone(),
            shared.clone(),
            config.wechat_token_mode,
        ));
        let official_account = official_account.map(|client| templates::App {
            tokens: Arc::new(TokenManager::new(
                client.clone(),
                shared.clone(),
                config.wechat_token_mode,
            )),
            client,
        });
        let templates = Arc::new(Templates::new(
            templates::App {
                client: wechat.clone(),
                tokens: tokens.clone(),
            },
            official_account.clone(),
            shared.clone(),
            Duration::from_secs(config.template_cache_secs.max(1)),
        ));
        let policy = SendPolicy {
            call_timeout: Duration::from_millis(config.wechat_timeout_ms.max(100)),
            budget: Duration::from_millis(config.send_budget_ms.max(100)),
            lease: Duration::from_secs(config.send_lease_secs.max(1)),
            ..SendPolicy::default()
        };
        if policy.lease <= policy.budget {
            bail!("SEND_LEASE_SECS must exceed the send time bound SEND_BUDGET_MS");
        }
        let sender = Sender::new(tokens.clone(), usage.clone(), policy);
        let template = TemplateChannel::new(ledger.clone(), wechat.clone(), usage.clone());
        let subscribe = SubscribeChannel::new(grants.clone(), wechat.clone(), usage.clone());
        let oa_appid = official_account.as_ref().map(|oa| oa.client.appid().to_owned());
        let official_account = official_account.map(|oa| api::send::OfficialAccount {
            sender: Sender::new(oa.tokens, usage.clone(), policy),
            channel: OfficialAccountChannel::new(oa.client),
        });
        let push = push_endpoints(&config, wechat.appid(), oa_appid.as_deref())?;
        // A running send holds its key a little past its own time bound.
        let idempotency = Idempotency::new(shared.clone(), policy.budget + policy.lease);
        let state = web::Data::new(AppState {
            ledger,
            grants,
            wechat,
            usage: usage.clone(),
            shared: shared.clone(),
            sender,
            tokens: tokens.clone(),
            templates,
            official_account,
            receipts: Receipts::new(shared.clone()),
            push,
            template,
            subscribe,
            grant_source: config.subscribe_grants_from,
            idempotency,
            mode: Mode { store, sandbox },
        });
        let auth = web::Data::new(auth);
        // Sandbox: WeChat pushes to this service, in safe mode, as a
        // console with push URLs set would.
        let simulator = sandbox.then(|| {
            let base = format!("http://{}", loopback(addr));
            Simulator::new(SimConfig {
                push: Some(PushTargets {
                    miniprogram_url: Some(format!("{base}/wechat/push/miniprogram")),
                    official_account_url: Some(format!("{base}/wechat/push/official-account")),
                    token: SANDBOX_PUSH_TOKEN.to_owned(),
                    aes_key: Some(SANDBOX_PUSH_AES_KEY.to_owned()),
                }),
                ..SimConfig::default()
            })
        });

        let server = HttpServer::new(move || {
            let simulator = simulator.clone();
            App::new()
                .wrap(from_fn(api::middleware::request_context))
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
        // The simulator's dropped-connection fault needs a handle on each
        // socket; outside sandbox mode nothing should pay for that.
        let server = if sandbox {
            server.on_connect(sim::on_connect)
        } else {
            server
        };
        let server = server.listen(listener)?.run();

        Ok(Self {
            addr,
            server,
            usage,
            tokens,
            flush_every: Duration::from_secs(config.usage_flush_secs.max(1)),
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
    /// the report counter flush and the access token refresher.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let flusher = tokio::spawn(self.usage.clone().flush_periodically(self.flush_every));
        let refresher = tokio::spawn(refresh_tokens(self.tokens.clone()));
        let result = self.server.await;
        flusher.abort();
        refresher.abort();
        if let Err(err) = self.usage.flush().await {
            tracing::error!(error = %err, "report counters could not be written at shutdown");
        }
        result
    }
}

/// The WeChat apps the configuration names: the mini-program, and the
/// official account when configured. Without `WECHAT_APPID`, sandbox mode:
/// both are the simulator's, served under `/sandbox/wechat` at `addr`.
pub fn wechat_clients(
    config: &Config,
    addr: SocketAddr,
) -> anyhow::Result<(WechatClient, Option<WechatClient>)> {
    let timeout = Duration::from_millis(config.wechat_timeout_ms.max(100));
    let client =
        |base: &str, appid: &str, secret: &Secret| WechatClient::new(base, appid, secret.clone(), timeout);
    if config.wechat_appid.is_none() {
        let sim = SimConfig::default();
        let base = format!("http://{}/sandbox/wechat", loopback(addr));
        tracing::warn!(
            "SANDBOX MODE: WECHAT_APPID is not set; WeChat is the built-in simulator at {base}. No real message is sent."
        );
        let mini_program = client(&base, &sim.appid, &Secret::new(sim.secret.clone()))?;
        let official_account = client(&base, &sim.oa_appid, &Secret::new(sim.oa_secret.clone()))?;
        return Ok((mini_program, Some(official_account)));
    }
    let base = &config.wechat_api_base;
    let mini_program = match (&config.wechat_appid, &config.wechat_secret) {
        (Some(appid), Some(secret)) => client(base, appid, secret)?,
        _ => bail!("WECHAT_APPID is set but WECHAT_SECRET is not"),
    };
    let official_account = match (&config.wechat_oa_appid, &config.wechat_oa_secret) {
        (Some(appid), Some(secret)) => Some(client(base, appid, secret)?),
        (Some(_), None) => bail!("WECHAT_OA_APPID is set but WECHAT_OA_SECRET is not"),
        (None, _) => None,
    };
    Ok((mini_program, official_account))
}

/// The push endpoints' settings: the configured tokens and keys, or in
/// sandbox mode the fixed ones the built-in simulator pushes with.
fn push_endpoints(config: &Config, appid: &str, oa_appid: Option<&str>) -> anyhow::Result<PushEndpoints> {
    let key = |raw: &Option<Secret>, name: &str| -> anyhow::Result<Option<AesKey>> {
        raw.as_ref()
            .map(|k| AesKey::parse(k.expose()).map_err(|e| anyhow::anyhow!("{name}: {e}")))
            .transpose()
    };
    let settings = |token: &Option<Secret>, keys: Vec<AesKey>, appid: &str| {
        token.as_ref().map(|t| PushSettings {
            token: t.expose().to_owned(),
            keys,
            appid: appid.to_owned(),
        })
    };
    if config.wechat_appid.is_none() {
        let sandbox = |appid: &str| PushSettings {
            token: SANDBOX_PUSH_TOKEN.to_owned(),
            keys: vec![AesKey::parse(SANDBOX_PUSH_AES_KEY).expect("the sandbox key is valid")],
            appid: appid.to_owned(),
        };
        return Ok(PushEndpoints {
            miniprogram: Some(sandbox(appid)),
            official_account: oa_appid.map(sandbox),
        });
    }
    let mp_keys = [
        key(&config.wechat_push_aes_key, "WECHAT_PUSH_AES_KEY")?,
        key(
            &config.wechat_push_aes_key_previous,
            "WECHAT_PUSH_AES_KEY_PREVIOUS",
        )?,
    ];
    let oa_keys = key(&config.wechat_oa_push_aes_key, "WECHAT_OA_PUSH_AES_KEY")?;
    if config.wechat_oa_push_token.is_some() && oa_appid.is_none() {
        bail!("WECHAT_OA_PUSH_TOKEN is set but the official account is not (WECHAT_OA_APPID)");
    }
    Ok(PushEndpoints {
        miniprogram: settings(
            &config.wechat_push_token,
            mp_keys.into_iter().flatten().collect(),
            appid,
        ),
        official_account: oa_appid
            .and_then(|oa| settings(&config.wechat_oa_push_token, oa_keys.into_iter().collect(), oa)),
    })
}

/// Where the service keeps its state.
pub struct Stores {
    pub ledger: Arc<dyn Ledger>,
    /// Subscribe grants, in the same store as the credentials.
    pub grants: Arc<dyn GrantLedger>,
    pub shared: Arc<dyn SharedStore>,
    /// Report counters.
    pub usage: Arc<dyn UsageStore>,
    /// `memory`, `redis` or `redis-cluster`.
    pub name: &'static str,
}

/// The ledger and shared store the configuration names: Redis (single or
/// cluster, one connection for both) or the embedded ones.
pub fn open_stores(
    config: &Config,
    settings: LedgerSettings,
    grant_settings: GrantSettings,
) -> anyhow::Result<Stores> {
    let redis_target = match (&config.redis_url, &config.redis_cluster_nodes[..]) {
        (Some(_), [_, ..]) => bail!("set REDIS_URL or REDIS_CLUSTER_NODES, not both"),
        (Some(url), []) => Some((RedisTarget::Single(url.clone()), "redis")),
        (None, [_, ..]) => Some((
            RedisTarget::Cluster(config.redis_cluster_nodes.clone()),
            "redis-cluster",
        )),
        (None, []) => None,
    };
    let stores = match redis_target {
        Some((target, name)) => {
            let redis = RedisConnection::new(target, REDIS_TIMEOUT);
            let prefix = &config.redis_key_prefix;
            let (replicas, wait) = (
                config.redis_wait_replicas,
                Duration::from_millis(config.redis_wait_timeout_ms.max(1)),
            );
            let store = Arc::new(RedisStore::new(redis.clone(), prefix).with_replicas(replicas, wait));
            Stores {
                ledger: Arc::new(MeteredLedger::new(
                    RedisLedger::on(redis.clone(), prefix, settings).with_replicas(replicas, wait),
                )),
                grants: Arc::new(
                    RedisGrants::on(redis, prefix, grant_settings).with_replicas(replicas, wait),
                ),
                shared: store.clone(),
                usage: store,
                name,
            }
        }
        None => {
            tracing::warn!(
                "REDIS_URL is not set: using the embedded ledger; nothing persists across restarts"
            );
            let store = Arc::new(MemoryStore::default());
            Stores {
                ledger: Arc::new(MeteredLedger::new(MemoryLedger::new(settings))),
                grants: Arc::new(MemoryGrants::new(grant_settings)),
                shared: store.clone(),
                usage: store,
                name: "memory",
            }
        }
    };
    Ok(stores)
}

/// Keeps the shared access token fresh ahead of its expiry, so sends rarely
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

/// An address the service can call itself on: 0.0.0.0 becomes 127.0.0.1.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}
