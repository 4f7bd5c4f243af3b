//! What the service and its commands open from the configuration: the
//! store (Redis, Redis Cluster, or the embedded one on its disk or in
//! memory) with each app's ledgers and records in it, and the WeChat
//! clients of the default app. Nothing here serves requests; `app` (the
//! server) and the CLIs build on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use crate::apps::key_prefix;
use crate::config::apps::{AccountSettings, AppSettings};
use crate::config::{Config, Secret, StoreMode};
use crate::domain::ChannelKind;
use crate::ledger::grants::{GrantLedger, GrantSettings, MemoryGrants, RedisGrants};
use crate::ledger::{Ledger, LedgerClock, LedgerSettings, MemoryLedger, MeteredLedger, RedisLedger};
use crate::sim::SimConfig;
use crate::store::{
    Barrier, Disk, MemoryStore, RedisConnection, RedisStore, RedisTarget, SharedStore, UsageStore,
};
use crate::wechat::WechatClient;

/// Bound of every Redis command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// One app's state in the store.
pub struct Stores {
    pub ledger: Arc<dyn Ledger>,
    /// The grants of each channel paid for with them, in the same store as
    /// the credentials (under the channel's [`ChannelKind::grant_keys`]).
    pub grants: BTreeMap<ChannelKind, Arc<dyn GrantLedger>>,
    /// The app's records: idempotency, receipts, caches, push de-duplication.
    pub shared: Arc<dyn SharedStore>,
    /// The app's report counters.
    pub usage: Arc<dyn UsageStore>,
}

/// The store the configuration names, from which each app's [`Stores`]
/// are opened (one connection for all of them).
pub enum Backend {
    Redis(RedisBackend),
    Embedded {
        /// The deployment's own records (access tokens and their locks).
        deployment: Arc<MemoryStore>,
        /// Where everything is kept; `None` with `STORE=memory`.
        disk: Option<Arc<Disk>>,
    },
}

/// Redis or Redis Cluster, and how writes wait for replicas.
pub struct RedisBackend {
    redis: RedisConnection,
    prefix: String,
    replicas: u32,
    wait: Duration,
    name: &'static str,
}

impl RedisBackend {
    /// The shared store under `prefix`.
    fn store(&self, prefix: &str) -> Arc<RedisStore> {
        Arc::new(RedisStore::new(self.redis.clone(), prefix).with_replicas(self.replicas, self.wait))
    }
}

impl Backend {
    /// Redis (single or cluster) or the embedded store.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let target = match (&config.redis_url, &config.redis_cluster_nodes[..]) {
            (Some(_), [_, ..]) => bail!("set REDIS_URL or REDIS_CLUSTER_NODES, not both"),
            (Some(url), []) => Some((RedisTarget::Single(url.clone()), "redis")),
            (None, [_, ..]) => Some((
                RedisTarget::Cluster(config.redis_cluster_nodes.clone()),
                "redis-cluster",
            )),
            (None, []) => None,
        };
        Ok(match target {
            Some((target, name)) => Backend::Redis(RedisBackend {
                redis: RedisConnection::new(target, REDIS_TIMEOUT),
                prefix: config.redis_key_prefix.clone(),
                replicas: config.redis_wait_replicas,
                wait: Duration::from_millis(config.redis_wait_timeout_ms.max(1)),
                name,
            }),
            None if config.store == Some(StoreMode::Memory) => {
                tracing::warn!("STORE=memory: the embedded store keeps nothing across restarts");
                Backend::Embedded {
                    deployment: Arc::new(MemoryStore::default()),
                    disk: None,
                }
            }
            None => {
                let disk = Disk::open(&config.data_dir).map_err(anyhow::Error::msg)?;
                let path = disk.path().display();
                tracing::info!("the embedded store keeps its data in {path} (DATA_DIR)");
                let deployment = MemoryStore::default()
                    .kept_on(disk.space("deployment/records"), disk.space("deployment/usage"))?;
                Backend::Embedded {
                    deployment: Arc::new(deployment),
                    disk: Some(disk),
                }
            }
        })
    }

    /// The Redis connection, unless the store is the embedded one.
    pub fn redis(&self) -> Option<&RedisConnection> {
        match self {
            Backend::Redis(backend) => Some(&backend.redis),
            Backend::Embedded { .. } => None,
        }
    }

    /// `embedded`, `memory`, `redis` or `redis-cluster`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Redis(backend) => backend.name,
            Backend::Embedded { disk: Some(_), .. } => "embedded",
            Backend::Embedded { disk: None, .. } => "memory",
        }
    }

    /// What waits for the embedded store's disk before anything that
    /// cannot be taken back; nothing to wait for on Redis or in memory.
    pub fn barrier(&self) -> Barrier {
        match self {
            Backend::Embedded { disk: Some(disk), .. } => Barrier::on(disk.clone()),
            _ => Barrier::default(),
        }
    }

    /// Where the deployment keeps what its apps share: one access token per
    /// WeChat appid (two apps naming the same appid share it) and its lock.
    pub fn deployment(&self) -> Arc<dyn SharedStore> {
        match self {
            Backend::Redis(backend) => backend.store(&backend.prefix),
            Backend::Embedded { deployment, .. } => deployment.clone(),
        }
    }

    /// The stores of the app named `app`: on Redis under its key prefix
    /// (`default` keeps the deployment's), embedded its own (on disk in the
    /// spaces `app/<app>/...`, read back now).
    ///
    /// The ledgers read the store's own time (Redis's `TIME`, so every
    /// instance agrees), unless `clock` names one: only tests that move time
    /// by hand do.
    pub fn app(
        &self,
        app: &str,
        ledger: LedgerSettings,
        grants: GrantSettings,
        clock: &LedgerClock,
    ) -> anyhow::Result<Stores> {
        Ok(match self {
            Backend::Redis(backend) => {
                let prefix = key_prefix(&backend.prefix, app);
                let store = backend.store(&prefix);
                let (redis, replicas, wait) = (&backend.redis, backend.replicas, backend.wait);
                let mut credentials =
                    RedisLedger::on(redis.clone(), &prefix, ledger).with_replicas(replicas, wait);
                let grant_ledger = |prefix: &str| {
                    let ledger = RedisGrants::on(redis.clone(), prefix, grants).with_replicas(replicas, wait);
                    match clock {
                        Some(clock) => ledger.with_clock(clock.clone()),
                        None => ledger,
                    }
                };
                if let Some(clock) = clock {
                    credentials = credentials.with_clock(clock.clone());
                }
                Stores {
                    ledger: Arc::new(MeteredLedger::new(credentials)),
                    grants: grant_channels(|_, keys| {
                        let under = match keys {
                            "" => prefix.clone(),
                            keys => format!("{prefix}:{keys}"),
                        };
                        Ok(Arc::new(grant_ledger(&under)))
                    })?,
                    shared: store.clone(),
                    usage: store,
                }
            }
            Backend::Embedded { disk, .. } => {
                let mut store = MemoryStore::default();
                let mut credentials = match clock {
                    Some(clock) => MemoryLedger::with_clock(ledger, clock.clone()),
                    None => MemoryLedger::new(ledger),
                };
                let space = |what: &str| disk.as_ref().map(|disk| disk.space(&format!("app/{app}/{what}")));
                let grants = grant_channels(|channel, _| {
                    let ledger = match clock {
                        Some(clock) => MemoryGrants::with_clock(grants, clock.clone()),
                        None => MemoryGrants::new(grants),
                    };
                    let books = format!("grants/{channel}");
                    Ok(Arc::new(
                        match (space(&books), space(&format!("{books}/templates"))) {
                            (Some(books), Some(templates)) => ledger.kept_on(books, templates)?,
                            _ => ledger,
                        },
                    ))
                })?;
                if let (Some(books), Some(records), Some(usage)) =
                    (space("credentials"), space("records"), space("usage"))
                {
                    credentials = credentials.kept_on(books)?;
                    store = store.kept_on(records, usage)?;
                }
                let store = Arc::new(store);
                Stores {
                    ledger: Arc::new(MeteredLedger::new(credentials)),
                    grants,
                    shared: store.clone(),
                    usage: store,
                }
            }
        })
    }
}

/// A grant ledger for each channel paid for with grants, opened by `open`
/// with the channel and its key name.
fn grant_channels(
    open: impl Fn(ChannelKind, &'static str) -> anyhow::Result<Arc<dyn GrantLedger>>,
) -> anyhow::Result<BTreeMap<ChannelKind, Arc<dyn GrantLedger>>> {
    ChannelKind::ALL
        .into_iter()
        .filter_map(|channel| Some((channel, channel.grant_keys()?)))
        .map(|(channel, keys)| Ok((channel, open(channel, keys)?)))
        .collect()
}

/// The app named `app`: its settings from `APPS_FILE`, or `None` for the
/// `default` app today's variables define; an error if there is no such app.
pub fn find_app(config: &Config, app: &str) -> anyhow::Result<Option<AppSettings>> {
    match config.apps().map_err(anyhow::Error::msg)? {
        Some(apps) => {
            let names: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
            match apps.into_iter().find(|a| a.name == app) {
                Some(found) => Ok(Some(found)),
                None => bail!("APPS_FILE has no app named {app} (it has {})", names.join(", ")),
            }
        }
        None if app == crate::domain::DEFAULT_APP => Ok(None),
        None => bail!("only the app default is configured (no APPS_FILE)"),
    }
}

/// The WeChat accounts of the app named `app`: its mini-program, and its
/// official account when configured; from `APPS_FILE`, or else from the
/// `WECHAT_*` variables (the app `default`). Without either, sandbox mode:
/// both are the simulator's, served under `/sandbox/wechat` at `addr`.
pub fn wechat_clients(
    config: &Config,
    addr: SocketAddr,
    app: &str,
) -> anyhow::Result<(WechatClient, Option<WechatClient>)> {
    let timeout = Duration::from_millis(config.wechat_timeout_ms.max(100));
    let client =
        |base: &str, appid: &str, secret: &Secret| WechatClient::new(base, appid, secret.clone(), timeout);
    if let Some(found) = find_app(config, app)? {
        let base = &wechat_base(config, addr);
        let account = |a: &AccountSettings| client(base, &a.appid, &a.secret);
        let official_account = found.official_account.as_ref().map(account).transpose()?;
        return Ok((account(&found.miniprogram)?, official_account));
    }

    if config.sandbox_mode() {
        let sim = SimConfig::default();
        let base = wechat_base(config, addr);
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

/// Where WeChat is: the configured API base, or in sandbox mode the
/// built-in simulator's routes on this service at `addr`.
pub fn wechat_base(config: &Config, addr: SocketAddr) -> String {
    if config.sandbox_mode() {
        format!("http://{}/sandbox/wechat", loopback(addr))
    } else {
        config.wechat_api_base.clone()
    }
}

/// An address the service can call itself on: 0.0.0.0 becomes 127.0.0.1.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
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
