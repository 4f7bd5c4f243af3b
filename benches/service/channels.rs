//! The send routes measured against the irreducible work (docs/targets.md):
//! the service and the bare forwarder ([`super::forwarder`]) run as child
//! processes on one redis-server and one simulator, so each one's CPU is
//! read from `/proc/<pid>/stat`; the latency the service adds over a
//! simulator that answers in 50 ms, at 1,000 sends a second; and Redis
//! memory per credential and per grant entry, stored through the HTTP API.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};
use formid_ledger::domain::{OpenId, TemplateId};
use formid_ledger::ledger::grants::{Accept, GrantLedger, GrantSettings, RedisGrants};
use formid_ledger::ledger::{Ledger, LedgerSettings, RedisLedger, RedisTarget};
use formid_ledger::sim::{
    BUILTIN_LONG_TERM_TEMPLATE, BUILTIN_OA_SUBSCRIBE_TEMPLATES, BUILTIN_OA_TEMPLATES,
    BUILTIN_SUBSCRIBE_TEMPLATES, BUILTIN_TEMPLATES, SimConfig, Simulator,
};
use formid_ledger::store::RedisConnection;
use serde_json::{Value, json};

use super::forwarder;
use super::support::RedisServer;
use super::support::app::{COLLECT_KEY, SEND_KEY, SimClient, client};
use super::support::ledger::collected_now;

/// Users on each side of a channel's phase, and the uses each holds: more
/// than a phase spends, so no phase runs dry.
const SPENDERS: usize = 2_000;
const USES: usize = 25;
/// The latency phase: sends a second, for how long, and how long the
/// simulator takes to answer each one.
const LATENCY_RATE: u64 = 1_000;
const LATENCY_PHASE: Duration = Duration::from_secs(6);
/// Sends of the first second warm connections up and are not counted.
const LATENCY_WARMUP: usize = LATENCY_RATE as usize;
const WECHAT_ANSWERS_IN: Duration = Duration::from_millis(50);

/// A child process, killed when dropped.
pub struct Process {
    child: Child,
    pub base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// User + system CPU the process used so far, in clock ticks
    /// (`/proc/<pid>/stat` fields 14 and 15).
    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("the process runs");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Field 3 is fields[0]: utime (14) and stime (15) are fields[11..13].
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Waits until `url` answers 200, for at most 30 seconds.
async fn wait_ready(process: &mut Process, url: &str) {
    let http = client();
    let started = Instant::now();
    loop {
        if let Ok(answer) = http.get(url).send().await
            && answer.status() == 200
        {
            return;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("{url}: the process exited with {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{url} is not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `formid-ledger` binary on `redis`, keys under `prefix`, calling
/// the simulator at `sim` for the default app.
async fn spawn_service(redis: &RedisServer, prefix: &str, sim: &str) -> Process {
    spawn_service_with(redis, prefix, sim, &[]).await
}

/// [`spawn_service`] with more settings.
pub async fn spawn_service_with(
    redis: &RedisServer,
    prefix: &str,
    sim: &str,
    settings: &[(&str, &str)],
) -> Process {
    let address = free_address();
    let child = Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "error")
        .env("LISTEN", &address)
        .env("REDIS_URL", redis.url())
        .env("REDIS_KEY_PREFIX", prefix)
        .env("WECHAT_APPID", "wxsandbox")
        .env("WECHAT_SECRET", "sandbox-secret")
        .env("WECHAT_OA_APPID", "wxsandboxoa")
        .env("WECHAT_OA_SECRET", "sandbox-oa-secret")
        .env("WECHAT_API_BASE", format!("{sim}/sandbox/wechat"))
        .env("SESSION_SECRET", "bench-session-secret-0123456789")
        .env(
            "API_KEYS",
            format!("collector:{COLLECT_KEY}:collect,sender:{SEND_KEY}:send"),
        )
        .env("MAX_GRANTS_PER_TEMPLATE", USES.to_string())
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .expect("the service binary starts");
    let mut process = Process {
        child,
        base: format!("http://{address}"),
    };
    let ready = format!("{}/readyz", process.base);
    wait_ready(&mut process, &ready).await;
    process
}

/// This bench's own binary as the bare forwarder on `redis`, keys under `prefix`.
async fn spawn_forwarder(redis: &RedisServer, prefix: &str, sim: &str) -> Process {
    let address = free_address();
    let child = Command::new(std::env::current_exe().unwrap())
        .env(forwarder::ROLE, "1")
        .env(forwarder::REDIS_URL, redis.url())
        .env(forwarder::PREFIX, prefix)
        .env(forwarder::WECHAT_BASE, format!("{sim}/sandbox/wechat"))
        .env(forwarder::LISTEN, &address)
        .stdout(Stdio::null())
        .spawn()
        .expect("the bench binary starts as a forwarder");
    let mut process = Process {
        child,
        base: format!("http://{address}"),
    };
    // Any answer means it serves; GET on a send path is a 404.
    let started = Instant::now();
    while client()
        .get(format!("{}/template", process.base))
        .send()
        .await
        .is_err()
    {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("the forwarder exited with {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the forwarder is not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process
}

/// How long the simulator took over each send, by recipient, while
/// [`SIM_DELAY_MS`] holds its answers back.
static SIM_TIMES: LazyLock<Mutex<HashMap<String, Duration>>> = LazyLock::new(Default::default);
static SIM_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Middleware on the simulator: a send waits [`SIM_DELAY_MS`] (WeChat's
/// answer time), and the time from its first byte handled to its answer is
/// kept under its `touser`.
async fn timed(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let delay = SIM_DELAY_MS.load(Ordering::Relaxed);
    if delay == 0 || !req.path().ends_with("/send") {
        return next.call(req).await;
    }
    let started = Instant::now();
    let bytes = req.extract::<web::Bytes>().await?;
    let touser = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|body| body["touser"].as_str().map(str::to_owned));
    req.set_payload(actix_web::dev::Payload::from(bytes));
    actix_web::rt::time::sleep(Duration::from_millis(delay)).await;
    let answer = next.call(req).await?;
    if let Some(touser) = touser {
        SIM_TIMES.lock().unwrap().insert(touser, started.elapsed());
    }
    Ok(answer)
}

/// The simulator on its own server threads, timing sends.
pub fn simulator() -> SimClient {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sim = Simulator::new(SimConfig::default());
    let server = HttpServer::new(move || App::new().wrap(from_fn(timed)).service(sim.scope()))
        .on_connect(formid_ledger::sim::on_connect)
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    SimClient { base, http: client() }
}

/// One side of a phase: sends a second, and CPU ticks per 1,000 sends of
/// the process that answered them.
#[derive(Clone, Copy)]
pub struct Side {
    pub rate: f64,
    pub ticks_per_1000: f64,
}

/// One channel's phase on both sides.
#[derive(Clone, Copy)]
pub struct Channel {
    pub forwarder: Side,
    pub service: Side,
}

impl Channel {
    pub fn rate_ratio(&self) -> f64 {
        self.service.rate / self.forwarder.rate
    }

    pub fn cpu_ratio(&self) -> f64 {
        self.service.ticks_per_1000 / self.forwarder.ticks_per_1000
    }
}

/// Sends to `path` on `process` from the bench's clients for one phase.
async fn measure(
    process: &Process,
    path: &str,
    bearer: Option<&'static str>,
    bodies: Arc<Vec<Value>>,
) -> Side {
    let url = Arc::new(format!("{}{path}", process.base));
    let http = client();
    let ticks = process.cpu_ticks();
    let started = Instant::now();
    let rate = super::rate(move |n| {
        let (http, url, body) = (http.clone(), url.clone(), bodies[n % bodies.len()].clone());
        async move {
            let mut request = http.post(url.as_str()).json(&body);
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            matches!(request.send().await, Ok(answer) if answer.status() == 200)
        }
    })
    .await;
    let sends = rate * started.elapsed().as_secs_f64();
    Side {
        rate,
        ticks_per_1000: (process.cpu_ticks() - ticks) as f64 * 1_000.0 / sends.max(1.0),
    }
}

fn users(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}{n:05}")).collect()
}

/// Runs `setup` for each of `users` from 32 tasks.
async fn for_each_user<F, Fut>(users: &[String], setup: F)
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    const TASKS: usize = 32;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (users, setup) = (users.to_vec(), setup.clone());
            tokio::spawn(async move {
                for user in users.into_iter().skip(task).step_by(TASKS) {
                    setup(user).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// `uses` formIds the simulator issued to each of `users`, stored under
/// `prefix` as the add script stores them.
async fn form_ids(sim: &SimClient, redis: &RedisServer, prefix: &str, users: &[String], uses: usize) {
    let ledger = Arc::new(RedisLedger::new(
        RedisTarget::Single(redis.url()),
        prefix,
        LedgerSettings::default(),
    ));
    let sim = sim.clone();
    for_each_user(users, move |user| {
        let (sim, ledger) = (sim.clone(), ledger.clone());
        async move {
            let ids = sim.form_ids(&user, uses as u32, None).await;
            let batch = collected_now(&ids);
            ledger.add(&OpenId::parse(&user).unwrap(), &batch).await.unwrap();
        }
    })
    .await;
}

/// `uses` accepts of `template` by each of `users`, in the simulator's
/// popup (`popup`: the mini-program's or the official account's) and in the
/// grant ledger under `prefix`; one accept, kept as a subscription, for a
/// long-term template.
async fn grants(
    sim: &SimClient,
    redis: &RedisServer,
    (prefix, popup): (&str, &'static str),
    users: &[String],
    (template, long_term): (&str, bool),
    uses: usize,
) {
    let connection = RedisConnection::new(RedisTarget::Single(redis.url()), Duration::from_secs(2));
    let settings = GrantSettings {
        max_per_template: uses as u32,
        ..GrantSettings::default()
    };
    let ledger = Arc::new(RedisGrants::on(connection, prefix, settings));
    let template = Arc::new(template.to_owned());
    let sim = sim.clone();
    for_each_user(users, move |user| {
        let (sim, ledger, template) = (sim.clone(), ledger.clone(), template.clone());
        async move {
            let accepts = if long_term { 1 } else { uses };
            for _ in 0..accepts {
                let answer = json!({"openid": user, "results": {template.as_str(): "accept"}});
                assert_eq!(sim.post(popup, answer).await.0, 200);
            }
            let accept = match long_term {
                true => Accept::LongTerm,
                false => Accept::OneTime(uses as u32),
            };
            let granted = [(TemplateId::parse(&template).unwrap(), accept)];
            ledger
                .add_accepts(&OpenId::parse(&user).unwrap(), &granted)
                .await
                .unwrap();
        }
    })
    .await;
}

fn bodies(users: &[String], template: &str, data: &Value) -> Arc<Vec<Value>> {
    Arc::new(
        users
            .iter()
            .map(|user| json!({"touser": user, "template_id": template, "data": data}))
            .collect(),
    )
}

/// One phase on both sides: `template` with `data` to each of the side's
/// users, through the forwarder's route, then the service's (API key).
async fn both(
    (forwarder, forwarder_route, forwarder_users): (&Process, &str, &[String]),
    (service, service_route, service_users): (&Process, &str, &[String]),
    template: &str,
    data: &Value,
) -> Channel {
    Channel {
        forwarder: measure(
            forwarder,
            forwarder_route,
            None,
            bodies(forwarder_users, template, data),
        )
        .await,
        service: measure(
            service,
            service_route,
            Some(SEND_KEY),
            bodies(service_users, template, data),
        )
        .await,
    }
}

/// Template, subscribe and official-account sends, long-term subscribe
/// sends and official-account subscribe notifications: the forwarder's
/// route, then the service's, for each; and the forwarder's
/// official-account route with the receipt write the service makes.
pub async fn channels() -> ([Channel; 5], Side) {
    let redis = RedisServer::start();
    let sim = simulator();
    let service = spawn_service(&redis, "svc", &sim.base).await;
    let forwarder = spawn_forwarder(&redis, "fwd", &sim.base).await;

    let data = json!({"keyword1": {"value": "bench"}});
    let (svc_users, fwd_users) = (users("oSvcTemplate", SPENDERS), users("oFwdTemplate", SPENDERS));
    form_ids(&sim, &redis, "svc", &svc_users, USES).await;
    form_ids(&sim, &redis, "fwd", &fwd_users, USES).await;
    let template = both(
        (&forwarder, "/template", &fwd_users),
        (&service, "/v1/messages", &svc_users),
        BUILTIN_TEMPLATES[0],
        &data,
    )
    .await;

    let id = BUILTIN_SUBSCRIBE_TEMPLATES[0].0;
    let data = json!({"thing1": {"value": "bench"}, "phrase4": {"value": "已发货"}});
    let (svc_users, fwd_users) = (users("oSvcSubscribe", SPENDERS), users("oFwdSubscribe", SPENDERS));
    let popup = "/sandbox/subscriptions";
    grants(&sim, &redis, ("svc", popup), &svc_users, (id, false), USES).await;
    grants(&sim, &redis, ("fwd", popup), &fwd_users, (id, false), USES).await;
    let subscribe = both(
        (&forwarder, "/subscribe", &fwd_users),
        (&service, "/v1/subscribe-messages", &svc_users),
        id,
        &data,
    )
    .await;

    let id = BUILTIN_OA_TEMPLATES[0].0;
    let data = json!({"first": {"value": "bench"}});
    let followers = users("oFollower", SPENDERS);
    for follower in &followers {
        let follow = json!({"openid": follower});
        assert_eq!(sim.post("/sandbox/oa/followers", follow).await.0, 200);
    }
    let official_account = Channel {
        forwarder: measure(
            &forwarder,
            "/official-account",
            None,
            bodies(&followers, id, &data),
        )
        .await,
        service: measure(
            &service,
            "/v1/official-account/messages",
            Some(SEND_KEY),
            bodies(&followers, id, &data),
        )
        .await,
    };
    let with_receipt = measure(
        &forwarder,
        "/official-account-with-receipt",
        None,
        bodies(&followers, id, &data),
    )
    .await;

    // A long-term template: one accept, then every send leases it.
    let (id, _) = BUILTIN_LONG_TERM_TEMPLATE;
    let data = json!({"thing1": {"value": "bench"}, "phrase2": {"value": "已受理"}});
    let (svc_users, fwd_users) = (users("oSvcLongTerm", SPENDERS), users("oFwdLongTerm", SPENDERS));
    let popup = "/sandbox/subscriptions";
    grants(&sim, &redis, ("svc", popup), &svc_users, (id, true), USES).await;
    grants(&sim, &redis, ("fwd", popup), &fwd_users, (id, true), USES).await;
    let long_term = both(
        (&forwarder, "/subscribe-long-term", &fwd_users),
        (&service, "/v1/subscribe-messages", &svc_users),
        id,
        &data,
    )
    .await;

    // The official account's subscribe notifications: grants from its
    // followers' popups, in its own ledger (`<prefix>:oa_subscribe`).
    let (id, _, _) = BUILTIN_OA_SUBSCRIBE_TEMPLATES[0];
    let data = json!({"thing1": {"value": "bench"}, "time2": {"value": "2026-12-08 10:00"}});
    let (svc_users, fwd_users) = (users("oSvcOaSub", SPENDERS), users("oFwdOaSub", SPENDERS));
    let popup = "/sandbox/oa/subscriptions";
    grants(
        &sim,
        &redis,
        ("svc:oa_subscribe", popup),
        &svc_users,
        (id, false),
        USES,
    )
    .await;
    grants(
        &sim,
        &redis,
        ("fwd:oa_subscribe", popup),
        &fwd_users,
        (id, false),
        USES,
    )
    .await;
    let notifications = both(
        (&forwarder, "/official-account-subscribe", &fwd_users),
        (&service, "/v1/official-account/subscribe-messages", &svc_users),
        id,
        &data,
    )
    .await;
    (
        [template, subscribe, official_account, long_term, notifications],
        with_receipt,
    )
}

/// The p99 of (answer time − simulator time) of template sends made at
/// [`LATENCY_RATE`] a second, each to a user of its own, while the
/// simulator answers in [`WECHAT_ANSWERS_IN`]: through the forwarder,
/// then through the service, in milliseconds. The simulator's time is what
/// its server spent on the send, from the request read to the answer.
pub async fn latency() -> (f64, f64) {
    let redis = RedisServer::start();
    let sim = simulator();
    let service = spawn_service(&redis, "svc", &sim.base).await;
    let forwarder = spawn_forwarder(&redis, "fwd", &sim.base).await;
    let sends = (LATENCY_RATE * LATENCY_PHASE.as_secs()) as usize;
    let mut p99 = Vec::new();
    for (process, prefix, path, bearer) in [
        (&forwarder, "fwd", "/template", None),
        (&service, "svc", "/v1/messages", Some(SEND_KEY)),
    ] {
        let recipients = users(&format!("oLatency{prefix}"), sends);
        form_ids(&sim, &redis, prefix, &recipients, 1).await;
        let data = json!({"keyword1": {"value": "bench"}});
        p99.push(
            added_latency(
                process,
                path,
                bearer,
                bodies(&recipients, BUILTIN_TEMPLATES[0], &data),
            )
            .await,
        );
    }
    (p99[0], p99[1])
}

async fn added_latency(
    process: &Process,
    path: &str,
    bearer: Option<&'static str>,
    bodies: Arc<Vec<Value>>,
) -> f64 {
    SIM_TIMES.lock().unwrap().clear();
    SIM_DELAY_MS.store(WECHAT_ANSWERS_IN.as_millis() as u64, Ordering::Relaxed);
    let (http, url) = (client(), Arc::new(format!("{}{path}", process.base)));
    let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / LATENCY_RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(bodies.len());
    for body in bodies.iter() {
        ticks.tick().await;
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        sends.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut request = http.post(url.as_str()).json(&body);
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            let ok = matches!(request.send().await, Ok(answer) if answer.status() == 200);
            (body["touser"].as_str().unwrap().to_owned(), ok, started.elapsed())
        }));
    }
    let mut answered = Vec::with_capacity(sends.len());
    for send in sends {
        answered.push(send.await.unwrap());
    }
    SIM_DELAY_MS.store(0, Ordering::Relaxed);
    let sim_times = SIM_TIMES.lock().unwrap();
    let mut added: Vec<Duration> = answered
        .into_iter()
        .skip(LATENCY_WARMUP)
        .filter_map(|(touser, ok, elapsed)| {
            super::count_failure(ok);
            let sim = sim_times.get(&touser).filter(|_| ok)?;
            Some(elapsed.saturating_sub(*sim))
        })
        .collect();
    added.sort();
    let at = (added.len() * 99 / 100).min(added.len().saturating_sub(1));
    added.get(at).map_or(f64::NAN, |d| d.as_secs_f64() * 1_000.0)
}

/// Memory per credential and per grant entry, each on a redis-server of its
/// own, stored through the HTTP API: 5,000 openids of 28 characters, ten
/// formIds (32 hex) each, and an accept of three 43-character templates each.
pub async fn memory_through_http() -> (f64, f64) {
    // Redis memory once the service has flushed its report counters
    // (`USAGE_FLUSH_SECS`, 2 s by default) and Redis has stopped moving.
    let settled = async |redis: &RedisServer| {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        redis.settled_memory().await
    };
    const USERS: usize = 5_000;
    let openids: Vec<String> = (0..USERS)
        .map(|n| format!("oYx8J5Xo0K2mC4_d9qLzW{n:07}"))
        .collect();
    let sim = simulator();
    let http = client();
    let collect = async |service: &Process, path: &str, body: Value| {
        let answer = http
            .post(format!("{}{path}", service.base))
            .bearer_auth(COLLECT_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    };

    let redis = RedisServer::start();
    let service = spawn_service(&redis, "fl", &sim.base).await;
    let before = settled(&redis).await;
    for openid in &openids {
        let ids: Vec<String> = (0..10)
            .map(|_| format!("{:032x}", rand::random::<u128>()))
            .collect();
        let body = json!({"openid": openid, "form_ids": ids});
        collect(&service, "/v1/credentials", body).await;
    }
    let per_credential = (settled(&redis).await - before) as f64 / (USERS * 10) as f64;
    drop(service);

    let redis = RedisServer::start();
    let service = spawn_service(&redis, "fl", &sim.base).await;
    let templates: HashMap<&str, &str> = BUILTIN_SUBSCRIBE_TEMPLATES
        .iter()
        .map(|(id, _)| (*id, "accept"))
        .collect();
    // The first accept numbers the templates: the dictionary is per app, not per user.
    let accept = async |openid: &str| {
        let body = json!({"openid": openid, "results": templates});
        collect(&service, "/v1/subscriptions", body).await;
    };
    accept("oWarm").await;
    let before = settled(&redis).await;
    for openid in &openids {
        accept(openid).await;
    }
    let per_grant =
        (settled(&redis).await - before) as f64 / (USERS * BUILTIN_SUBSCRIBE_TEMPLATES.len()) as f64;
    (per_credential, per_grant)
}
