//! Test harness: real `redis-server` processes on free ports in temp dirs,
//! stopped when dropped, safe to use from many tests at once.

#![allow(dead_code)]

pub mod app;
pub mod ledger;
pub mod process;
pub mod reopen;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Persistence of a test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    None,
    /// AOF with fsync on every write: survives SIGKILL.
    AppendOnly,
    /// A cluster node (no persistence).
    Cluster,
}

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    persistence: Persistence,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(Persistence::None)
    }

    pub fn start_with(persistence: Persistence) -> Self {
        let mut dir = tempfile::Builder::new()
            .prefix("fl-redis-")
            .tempdir()
            .expect("temp dir");
        // A free port can be taken by a parallel test between probing and
        // binding; try a few.
        for _ in 0..10 {
            let port = free_port();
            let mut server = Self {
                child: None,
                port,
                dir,
                persistence,
            };
            if server.spawn() {
                return server;
            }
            dir = server.take_dir();
        }
        panic!("could not start redis-server on a free port");
    }

    fn take_dir(mut self) -> TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    fn spawn(&mut self) -> bool {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut cmd = Command::new(binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        match self.persistence {
            Persistence::None => cmd.args(["--appendonly", "no"]),
            Persistence::AppendOnly => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
            Persistence::Cluster => cmd
                // A dead master is failed over within a few seconds.
                .args([
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                ])
                .arg("--cluster-config-file")
                .arg(self.dir.path().join("nodes.conf")),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it) or named by REDIS_SERVER");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if ping(self.addr()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }

    /// A new redis-server replicating `master`, returned once the master
    /// sees it online (at most 10 s).
    pub async fn start_replica_of(master: &RedisServer) -> RedisServer {
        let replica = RedisServer::start();
        let connect = |server: &RedisServer| redis::Client::open(server.url()).unwrap();
        let mut to_replica = connect(&replica)
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(master.port())
            .query_async(&mut to_replica)
            .await
            .unwrap();
        let mut to_master = connect(master).get_multiplexed_async_connection().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut to_master)
                .await
                .unwrap();
            if info.contains("connected_slaves:1") && info.contains("state=online") {
                return replica;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the replica never synced: {info}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `used_memory` from INFO, in bytes.
    pub fn used_memory(&self) -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut self.client())
            .expect("INFO memory");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO")
    }

    /// `used_memory` once it has stopped moving: Redis grows its hash
    /// tables incrementally, and a measurement taken while an old table is
    /// still allocated counts it twice.
    pub async fn settled_memory(&self) -> i64 {
        let mut last = self.used_memory();
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let now = self.used_memory();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// SIGKILL: no shutdown save, no goodbye to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`false`) or SIGCONT (`true`): a frozen server answers nobody
    /// and reads nothing, while the kernel keeps its sockets open.
    pub fn set_running(&self, running: bool) {
        let child = self.child.as_ref().expect("the server runs");
        let signal = if running { "-CONT" } else { "-STOP" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts the server again on the same port and directory (its AOF, if
    /// any, is replayed).
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server did not restart on port {}", self.port);
    }

    /// A synchronous client for assertions about what the server holds.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// True when something at `addr` answers PING like Redis.
fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Redis memory per stored credential when 5,000 openids (28 characters,
/// like WeChat's) hold 10 formIds (32 hex) each, on a server of its own.
pub async fn memory_per_credential(server: &RedisServer) -> f64 {
    use formid_ledger::domain::{CredentialKind, OpenId};
    use formid_ledger::ledger::{Ledger, LedgerSettings, NewCredential, RedisLedger, RedisTarget};
    const USERS: u32 = 5_000;
    let ledger = RedisLedger::new(RedisTarget::Single(server.url()), "fl", LedgerSettings::default());
    let now = chrono::Utc::now();
    let before = server.settled_memory().await;
    for n in 0..USERS {
        let user = OpenId::parse(&format!("oYx8J5Xo0K2mC4_d9qLzW{n:07}")).unwrap();
        let batch: Vec<NewCredential> = (0..10u32)
            .map(|i| {
                ledger::cred(
                    CredentialKind::Form,
                    &format!("{:032x}", rand::random::<u128>()),
                    now + chrono::Duration::days(6) + chrono::Duration::minutes(i.into()),
                )
            })
            .collect();
        ledger.add(&user, &batch).await.unwrap();
    }
    (server.settled_memory().await - before) as f64 / f64::from(USERS * 10)
}

/// A key prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{}",
        std::process::id(),
        name,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis Cluster of `masters` nodes, each with `replicas` replicas, on
/// free ports.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0)
    }

    pub fn start_with_replicas(masters: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_with(Persistence::Cluster))
            .collect();
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let status = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster.wait_for_replicas(masters, replicas);
        cluster
    }

    /// Every master has its replicas online (synced).
    fn wait_for_replicas(&self, masters: usize, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let online: usize = self
                .nodes
                .iter()
                .map(|n| {
                    let info: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut n.client())
                        .unwrap_or_default();
                    info.matches("state=online").count()
                })
                .sum();
            if online >= masters * replicas {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replicas did not come online");
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let all_ok = self.nodes.iter().all(|n| {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut n.client())
                    .map(|info| info.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if all_ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster did not reach cluster_state:ok");
    }

    /// `host:port` of every node, as REDIS_CLUSTER_NODES takes them.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    pub fn servers(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node serving as master for `key`'s slot right now.
    pub fn master_of(&self, key: &str) -> usize {
        let mut any = self
            .nodes
            .iter()
            .find_map(|n| redis::Client::open(n.url()).and_then(|c| c.get_connection()).ok())
            .expect("a node is up");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut any)
            .unwrap();
        let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut any).unwrap();
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        };
        let port = ranges
            .iter()
            .find(|r| int(r.first()) <= slot && slot <= int(r.get(1)))
            .and_then(|r| match r.get(2) {
                Some(redis::Value::Array(master)) => Some(int(master.get(1))),
                _ => None,
            })
            .expect("a master serves the slot");
        self.nodes
            .iter()
            .position(|n| i64::from(n.port()) == port)
            .expect("the master is one of ours")
    }

    /// The replica of master node `index`.
    pub fn replica_of(&self, index: usize) -> usize {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut self.nodes[index].client())
            .unwrap();
        let port = info
            .lines()
            .find(|l| l.starts_with("slave0:"))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("port=")))
            .and_then(|p| p.parse::<u16>().ok())
            .expect("the master has a replica");
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .expect("the replica is one of ours")
    }

    /// SIGKILLs node `index` (no shutdown, no last writes).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again (its cluster config kept): it rejoins as a
    /// replica of whoever took its slots, and is waited for until synced.
    pub fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].spawn(), "the node restarts");
        let masters = self.nodes.len() / 2;
        self.wait_for_replicas(masters, 1);
    }

    /// Waits until every live node has seen node `dead` fail and hand its
    /// slots to its replica, and says `cluster_state:ok` again.
    pub fn wait_until_healed(&self, dead: usize) -> Duration {
        let started = Instant::now();
        let dead_addr = format!("127.0.0.1:{}@", self.nodes[dead].port());
        while started.elapsed() < Duration::from_secs(30) {
            let healed = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != dead)
                .all(|(_, n)| {
                    let mut client = n.client();
                    let ok = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut client)
                        .is_ok_and(|info| info.contains("cluster_state:ok"));
                    let nodes: String = redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query(&mut client)
                        .unwrap_or_default();
                    // `<id> <addr> <flags> <master> <ping> <pong> <epoch> <link> <slots>...`
                    let dead_failed_without_slots = nodes.lines().any(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        fields.get(1).is_some_and(|a| a.starts_with(&dead_addr))
                            && fields.get(2).is_some_and(|f| f.split(',').any(|f| f == "fail"))
                            && fields.len() <= 8
                    });
                    ok && dead_failed_without_slots
                });
            if healed {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not heal after a master died");
    }
}

impl RedisServer {
    /// Starts a server on a given (free) port, e.g. one a client was already
    /// pointed at while nothing listened there.
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fl-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = Self {
            child: None,
            port,
            dir,
            persistence: Persistence::None,
        };
        assert!(server.spawn(), "redis-server did not start on port {port}");
        server
    }
}

/// Redis memory per (openid, template) grant entry when 5,000 openids (28
/// characters) hold grants of 3 templates (43-character ids, as WeChat's),
/// on a server of its own.
pub async fn memory_per_grant_entry(server: &RedisServer) -> f64 {
    use formid_ledger::domain::{OpenId, TemplateId};
    use formid_ledger::ledger::RedisTarget;
    use formid_ledger::ledger::grants::{GrantLedger, GrantSettings, RedisGrants};
    use formid_ledger::store::RedisConnection;
    const USERS: u32 = 5_000;
    let connection = RedisConnection::new(RedisTarget::Single(server.url()), Duration::from_secs(2));
    let grants = RedisGrants::on(connection, "fl", GrantSettings::default());
    let templates: Vec<TemplateId> = (0..3)
        .map(|n| TemplateId::parse(&format!("FDco73hhn-F5hDB5NItfkd8fCbZfeKxwXUCS2clB8{n:03}")).unwrap())
        .collect();
    // Number the templates first: the dictionary is per deployment, not per user.
    let warm = OpenId::parse("oWarm").unwrap();
    let batch: Vec<_> = templates.iter().map(|t| (t.clone(), 1)).collect();
    grants.add_grants(&warm, &batch).await.unwrap();
    let before = server.settled_memory().await;
    for n in 0..USERS {
        let user = OpenId::parse(&format!("oYx8J5Xo0K2mC4_d9qLzW{n:07}")).unwrap();
        let batch: Vec<_> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32 + 1))
            .collect();
        grants.add_grants(&user, &batch).await.unwrap();
    }
    (server.settled_memory().await - before) as f64 / f64::from(USERS * 3)
}

/// Runs `case` on `cases` random inputs from `strategy`, one after another
/// against one redis-server, and panics with the smallest failing input.
pub fn check_property<S: proptest::strategy::Strategy>(
    cases: u32,
    strategy: S,
    case: impl AsyncFn(&RedisServer, S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(failure) = runner.run(&strategy, |input| runtime.block_on(case(&server, input))) {
        panic!("{failure}");
    }
}

/// Declares each named contract test three times, `embedded::<name>`,
/// `redis_server::<name>` and `on_disk::<name>`, calling `<name>(<make>)`
/// with the test file's constructor for each backend (`memory`, `redis`,
/// and `on_disk`: the embedded store reopened from its disk around every
/// operation).
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(super::memory).await })*
        }
        mod redis_server {
            $(#[tokio::test] async fn $name() { super::$name(super::redis).await })*
        }
        mod on_disk {
            $(#[tokio::test] async fn $name() { super::$name(super::on_disk).await })*
        }
    };
}
