//! The Redis connection the service shares (a multiplexed
//! `ConnectionManager`, or a cluster connection) — one per thread that uses
//! it, so a call never wakes another thread to reach Redis — made on first
//! use so the service starts while Redis is down, with every call
//! time-bounded. A write and the `WAIT` that makes it durable always go
//! over one connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ScriptInvocation, Value};
use tokio::sync::OnceCell;

use super::info::{field, node_texts};

/// Where Redis lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://host:port/db`
    Single(String),
    /// Seed nodes `host:port` of a Redis Cluster.
    Cluster(Vec<String>),
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A Redis error as callers need it: could not reach, or answered nonsense.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisFailure {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis script error: {0}")]
    Script(String),
}

/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RedisConnection {
    target: RedisTarget,
    timeout: Duration,
    /// Each thread's connection, its commands' I/O driven on that thread
    /// (each HTTP worker runs its own event loop). A failed connect leaves
    /// the cell empty, so the next call tries again.
    connections: Arc<Mutex<HashMap<ThreadId, Arc<OnceCell<Connection>>>>>,
    /// Each master's connected replicas as last read (`INFO replication`),
    /// and when: a write that needs more than are there fails at once
    /// instead of waiting out `WAIT`'s timeout.
    replicas_seen: Arc<Mutex<HashMap<Route, (Instant, u32)>>>,
}

/// How long a master's count of connected replicas is trusted.
const REPLICAS_FRESH: Duration = Duration::from_secs(1);

impl RedisConnection {
    /// `timeout` bounds connecting and every command.
    pub fn new(target: RedisTarget, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            connections: Arc::default(),
            replicas_seen: Arc::default(),
        }
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    async fn connection(&self) -> Result<Connection, RedisFailure> {
        let cell = {
            let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            connections
                .entry(std::thread::current().id())
                .or_default()
                .clone()
        };
        cell.get_or_try_init(|| self.connect()).await.cloned()
    }

    async fn connect(&self) -> Result<Connection, RedisFailure> {
        let connect = async {
            match &self.target {
                RedisTarget::Single(url) => {
                    let client = redis::Client::open(url.as_str())?;
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_number_of_retries(1);
                    Ok(Connection::Single(
                        ConnectionManager::new_with_config(client, config).await?,
                    ))
                }
                RedisTarget::Cluster(nodes) => {
                    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
                    let client = redis::cluster::ClusterClientBuilder::new(urls)
                        .connection_timeout(self.timeout)
                        .response_timeout(self.timeout)
                        .retries(2)
                        .build()?;
                    Ok(Connection::Cluster(client.get_async_connection().await?))
                }
            }
        };
        match tokio::time::timeout(self.timeout * 2, connect).await {
            Ok(result) => result.map_err(failure),
            Err(_) => Err(RedisFailure::Unavailable("timed out connecting".into())),
        }
    }

    pub async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> Result<Value, RedisFailure> {
        self.script(invocation, None, |_| false).await
    }

    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, RedisFailure> {
        self.command(cmd, None).await
    }

    /// Runs a script that writes `key`, then waits for `durability`'s
    /// replicas, if any ([`Self::wait_for_replicas`]), on the same connection.
    pub async fn invoke_durable(
        &self,
        invocation: &ScriptInvocation<'_>,
        key: &str,
        durability: Option<Durability>,
    ) -> Result<Value, RedisFailure> {
        self.script(invocation, durability.map(|d| (key, d)), |_| true)
            .await
    }

    /// As [`Self::invoke_durable`], waiting only when the reply says the
    /// script wrote.
    pub async fn invoke_durable_if(
        &self,
        invocation: &ScriptInvocation<'_>,
        key: &str,
        durability: Option<Durability>,
        wrote: impl FnOnce(&Value) -> bool,
    ) -> Result<Value, RedisFailure> {
        self.script(invocation, durability.map(|d| (key, d)), wrote).await
    }

    /// Runs a command that writes `key`, then waits for `durability`'s
    /// replicas, if any, on the same connection.
    pub async fn query_durable(
        &self,
        cmd: &redis::Cmd,
        key: &str,
        durability: Option<Durability>,
    ) -> Result<Value, RedisFailure> {
        self.command(cmd, durability.map(|d| (key, d))).await
    }

    async fn script(
        &self,
        invocation: &ScriptInvocation<'_>,
        wait: Option<(&str, Durability)>,
        wrote: impl FnOnce(&Value) -> bool,
    ) -> Result<Value, RedisFailure> {
        self.durable(wait, wrote, |connection| async move {
            match connection {
                Connection::Single(mut c) => invocation.invoke_async(&mut c).await.map_err(failure),
                Connection::Cluster(mut c) => invocation.invoke_async(&mut c).await.map_err(failure),
            }
        })
        .await
    }

    async fn command(
        &self,
        cmd: &redis::Cmd,
        wait: Option<(&str, Durability)>,
    ) -> Result<Value, RedisFailure> {
        self.durable(
            wait,
            |_| true,
            |connection| async move {
                match connection {
                    Connection::Single(mut c) => cmd.query_async(&mut c).await.map_err(failure),
                    Connection::Cluster(mut c) => cmd.query_async(&mut c).await.map_err(failure),
                }
            },
        )
        .await
    }

    /// `call` on this thread's connection; then, with `wait` = (the key
    /// written, how durable) and if `wrote` says so of the reply, `WAIT` for
    /// the replicas on that same connection.
    async fn durable<Call>(
        &self,
        wait: Option<(&str, Durability)>,
        wrote: impl FnOnce(&Value) -> bool,
        call: impl FnOnce(Connection) -> Call,
    ) -> Result<Value, RedisFailure>
    where
        Call: Future<Output = Result<Value, RedisFailure>>,
    {
        let connection = self.bounded(self.connection()).await?;
        let reply = self.bounded(call(connection.clone())).await?;
        if let Some((key, Durability { replicas, timeout })) = wait
            && wrote(&reply)
        {
            let connected = self.connected_replicas(&connection, key).await?;
            if connected < replicas {
                return Err(RedisFailure::Unavailable(format!(
                    "the write is on the master, but it has {connected} connected replicas of the \
                     {replicas} REDIS_WAIT_REPLICAS asks for: not acknowledged"
                )));
            }
            self.wait_for_replicas(connection, key, replicas, timeout).await?;
        }
        Ok(reply)
    }

    /// The replicas connected to the master that owns `key`, read at most
    /// once per [`REPLICAS_FRESH`] per master.
    async fn connected_replicas(&self, connection: &Connection, key: &str) -> Result<u32, RedisFailure> {
        let master = match connection {
            Connection::Single(_) => Route::new(0, SlotAddr::Master),
            Connection::Cluster(_) => Route::with_key(key, SlotAddr::Master),
        };
        let seen = |map: &Mutex<HashMap<Route, (Instant, u32)>>| {
            map.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&master)
                .filter(|(at, _)| at.elapsed() < REPLICAS_FRESH)
                .map(|(_, n)| *n)
        };
        if let Some(n) = seen(&self.replicas_seen) {
            return Ok(n);
        }
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let text: Value = self
            .bounded(async {
                match connection.clone() {
                    Connection::Single(mut c) => info.query_async::<Value>(&mut c).await.map_err(failure),
                    Connection::Cluster(mut c) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master));
                        c.route_command(info, routing).await.map_err(failure)
                    }
                }
            })
            .await?;
        let connected = node_texts(&text)
            .first()
            .and_then(|(_, text)| field(text, "connected_slaves")?.trim().parse().ok())
            .unwrap_or(0);
        self.replicas_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(master, (Instant::now(), connected));
        Ok(connected)
    }

    /// Where Redis is, without credentials: `host:port` (the seed nodes of
    /// a cluster, comma-separated), for metric labels and logs.
    pub fn address(&self) -> String {
        match &self.target {
            RedisTarget::Single(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
                rest.split('/').next().unwrap_or(rest).to_owned()
            }
            RedisTarget::Cluster(nodes) => nodes.join(","),
        }
    }

    /// The masters with fewer than `wanted` replicas connected, each as
    /// "`node` has n": writes they own cannot be made durable. Read live
    /// from every node (`INFO replication`), for readiness.
    pub async fn masters_short_of(&self, wanted: u32) -> Result<Vec<String>, RedisFailure> {
        let answer = self.query(redis::cmd("INFO").arg("replication")).await?;
        Ok(node_texts(&answer)
            .into_iter()
            .filter(|(_, text)| field(text, "role") == Some("master"))
            .filter_map(|(node, text)| {
                let connected: u32 = field(&text, "connected_slaves")?.trim().parse().ok()?;
                (connected < wanted).then(|| match node.as_str() {
                    "" => format!("the master has {connected}"),
                    node => format!("master {node} has {connected}"),
                })
            })
            .collect())
    }

    /// `WAIT replicas timeout` on the node that owns `key` (the master its
    /// writes went to): Ok once that many replicas acknowledged every write
    /// made before it on `connection`, else `Unavailable`.
    async fn wait_for_replicas(
        &self,
        connection: Connection,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> Result<(), RedisFailure> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout.as_millis() as u64);
        let acknowledged = self
            .bounded(async {
                match connection {
                    Connection::Single(mut c) => wait.query_async::<Value>(&mut c).await.map_err(failure),
                    Connection::Cluster(mut c) => {
                        let master = Route::with_key(key, SlotAddr::Master);
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master));
                        c.route_command(wait, routing).await.map_err(failure)
                    }
                }
            })
            .await?;
        match acknowledged {
            Value::Int(n) if n >= i64::from(replicas) => Ok(()),
            Value::Int(n) => Err(RedisFailure::Unavailable(format!(
                "{n} of {replicas} replicas acknowledged the write within {} ms",
                timeout.as_millis()
            ))),
            other => Err(RedisFailure::Unavailable(format!(
                "unexpected WAIT reply {other:?}"
            ))),
        }
    }

    /// A last bound over connect + command, whatever the client's own
    /// timeouts do (a cluster reconnecting can otherwise wait long).
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisFailure>>,
    ) -> Result<T, RedisFailure> {
        tokio::time::timeout(self.timeout * 3, call)
            .await
            .unwrap_or_else(|_| Err(RedisFailure::Unavailable("timed out".into())))
    }
}

/// Replicas a write waits for before it is acknowledged (`WAIT`), and for
/// how long: `REDIS_WAIT_REPLICAS`, `REDIS_WAIT_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Durability {
    /// `None` for 0 replicas: the master's acknowledgement is enough.
    pub fn of(replicas: u32, timeout: Duration) -> Option<Self> {
        (replicas > 0).then_some(Self { replicas, timeout })
    }
}

impl From<RedisFailure> for super::StoreError {
    fn from(failure: RedisFailure) -> Self {
        match failure {
            RedisFailure::Unavailable(why) => Self::Unavailable(why),
            RedisFailure::Script(why) => Self::Corrupt(why),
        }
    }
}

fn failure(err: redis::RedisError) -> RedisFailure {
    // Scripts raise their own errors with an "fl: " prefix.
    if err.to_string().contains("fl: ") {
        RedisFailure::Script(err.to_string())
    } else {
        RedisFailure::Unavailable(err.to_string())
    }
}
