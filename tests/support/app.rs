//! Starts the real service on a free port, in sandbox mode (the built-in
//! simulator stands in for WeChat), against the embedded ledger or a real
//! redis-server, and talks to it over HTTP.

use formid_ledger::app::{Application, Clocks};
use formid_ledger::clock::{Clock, SystemClock};
use formid_ledger::config::{Config, Secret, StoreMode};
use serde_json::{Value, json};

use super::RedisServer;

pub const ADMIN_KEY: &str = "admin-key-0123456789";
pub const COLLECT_KEY: &str = "collect-key-0123456789";
pub const SEND_KEY: &str = "send-key-0123456789ab";
pub const REPORT_KEY: &str = "report-key-0123456789";

/// Which ledger the service runs on.
pub enum Store<'a> {
    /// The embedded store in memory (`STORE=memory`).
    Memory,
    /// The embedded store kept in this `DATA_DIR`.
    Disk(&'a std::path::Path),
    Redis(&'a RedisServer),
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The WeChat this instance talks to: its own sandbox, or a standalone
    /// simulator.
    pub sim: SimClient,
}

/// Control routes of a simulator (`/sandbox/...`).
#[derive(Clone)]
pub struct SimClient {
    pub base: String,
    pub http: reqwest::Client,
}

/// A standalone simulator on a free port, as `formid-ledger sim` runs it.
pub fn start_sim(config: formid_ledger::sim::SimConfig) -> SimClient {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = formid_ledger::sim::serve(listener, formid_ledger::sim::Simulator::new(config)).unwrap();
    tokio::spawn(server);
    SimClient { base, http: client() }
}

/// [`start_sim`] with WeChat keeping `clock`'s time.
pub fn start_sim_on_clock(
    config: formid_ledger::sim::SimConfig,
    clock: std::sync::Arc<dyn Clock>,
) -> SimClient {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let sim = formid_ledger::sim::Simulator::with_clock(config, clock);
    tokio::spawn(formid_ledger::sim::serve(listener, sim).unwrap());
    SimClient { base, http: client() }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

pub async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request reaches the server");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

impl SimClient {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        call(
            &self.http,
            "POST",
            format!("{}{path}", self.base),
            None,
            Some(body),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        call(&self.http, "GET", format!("{}{path}", self.base), None, None).await
    }

    pub async fn login_code(&self, openid: &str) -> String {
        let (status, code) = self.post("/sandbox/login-codes", json!({"openid": openid})).await;
        assert_eq!(status, 200, "{code}");
        code["code"].as_str().unwrap().to_owned()
    }

    /// formIds issued to `openid` (at `issued_at`, RFC 3339, or now).
    pub async fn form_ids(&self, openid: &str, count: u32, issued_at: Option<&str>) -> Vec<String> {
        let mut body = json!({"openid": openid, "count": count});
        if let Some(at) = issued_at {
            body["issued_at"] = json!(at);
        }
        let (status, ids) = self.post("/sandbox/form-ids", body).await;
        assert_eq!(status, 200, "{ids}");
        ids["form_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn prepay_id(&self, openid: &str, issued_at: Option<&str>) -> String {
        let mut body = json!({"openid": openid});
        if let Some(at) = issued_at {
            body["issued_at"] = json!(at);
        }
        let (status, paid) = self.post("/sandbox/payments", body).await;
        assert_eq!(status, 200, "{paid}");
        paid["prepay_id"].as_str().unwrap().to_owned()
    }

    /// POST /sandbox/faults.
    pub async fn fault(&self, fault: Value) {
        let (status, body) = self.post("/sandbox/faults", fault).await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn stats(&self) -> Value {
        self.get("/sandbox/stats").await.1
    }

    /// The messages `openid` received, oldest first.
    pub async fn inbox(&self, openid: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/sandbox/inbox/{openid}")).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

impl TestApp {
    pub async fn spawn(store: Store<'_>) -> Self {
        Self::spawn_with(store, |_| {}).await
    }

    pub async fn spawn_with(store: Store<'_>, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on_clock(store, std::sync::Arc::new(SystemClock), adjust).await
    }

    /// A service whose decisions by time (session expiry, ...) read `clock`.
    pub async fn spawn_on_clock(
        store: Store<'_>,
        clock: std::sync::Arc<dyn Clock>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let clocks = Clocks {
            service: clock,
            ledgers: None,
        };
        Self::spawn_on_clocks(store, clocks, adjust).await
    }

    /// A service whose ledgers read `clock` too instead of the store's time,
    /// so a test moves expiries and leases by hand.
    pub async fn spawn_with_ledgers_on(
        store: Store<'_>,
        clock: std::sync::Arc<dyn Clock>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let clocks = Clocks {
            service: clock.clone(),
            ledgers: Some(clock),
        };
        Self::spawn_on_clocks(store, clocks, adjust).await
    }

    async fn spawn_on_clocks(store: Store<'_>, clocks: Clocks, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            api_keys: Some(Secret::new(format!(
                "admin:{ADMIN_KEY}:admin,collector:{COLLECT_KEY}:collect,sender:{SEND_KEY}:send,reader:{REPORT_KEY}:report"
            ))),
            usage_flush_secs: 1,
            ..Config::default()
        };
        match store {
            Store::Memory => config.store = Some(StoreMode::Memory),
            Store::Disk(dir) => config.data_dir = dir.to_owned(),
            Store::Redis(server) => {
                config.redis_url = Some(server.url());
                config.redis_key_prefix = super::unique_prefix("app");
            }
        }
        adjust(&mut config);
        if config.redis_url.is_some() || !config.redis_cluster_nodes.is_empty() {
            // The test named a Redis of its own.
            config.store = None;
        }
        let sandbox = config.sandbox_mode();
        // A test's sandbox on its own Redis is meant.
        config.sandbox = sandbox;
        let wechat_base = config.wechat_api_base.clone();
        let app = Application::build_with_clocks(config, clocks)
            .await
            .expect("service builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let sim_base = if sandbox {
            base.clone()
        } else {
            wechat_base.trim_end_matches("/sandbox/wechat").to_owned()
        };
        let app = Self {
            base,
            http: client(),
            sim: SimClient {
                base: sim_base,
                http: client(),
            },
        };
        app.wait_for_first_token().await;
        app
    }

    /// Polls `/readyz` for up to 5 s.
    pub async fn eventually_ready(&self) -> bool {
        for _ in 0..50 {
            if self.get("/readyz", None).await.0 == 200 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }

    /// The service asks for its access tokens at start-up (the
    /// mini-program's, and the official account's when it has one); faults
    /// a test injects must not hit those requests (granted or refused).
    async fn wait_for_first_token(&self) {
        if self.get("/readyz", None).await.0 != 200 {
            return; // No store, no shared token: nothing is fetched.
        }
        let (status, apps) = self.get("/v1/apps", Some(ADMIN_KEY)).await;
        let with_official_account = status == 200
            && apps["apps"][0]["channels"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "official_account"));
        let tokens = 1 + u64::from(with_official_account);
        // The first app's simulated account counts its fetches.
        let appid = apps["apps"][0]["miniprogram_appid"]
            .as_str()
            .unwrap_or("wxsandbox");
        for _ in 0..100 {
            let stats = self.sim.get(&format!("/sandbox/stats?appid={appid}")).await.1;
            let asked = ["token_fetches", "token_refusals"].map(|n| stats[n].as_u64().unwrap_or(0));
            if asked.iter().sum::<u64>() >= tokens {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the service never fetched an access token");
    }

    /// Another instance on the same Redis and WeChat as `configure` sets up.
    pub fn on_simulator(sim: &SimClient, config: &mut Config) {
        config.wechat_appid = Some("wxsandbox".into());
        config.wechat_secret = Some(Secret::new("sandbox-secret"));
        config.wechat_api_base = format!("{}/sandbox/wechat", sim.base);
        config.session_secret = Some(Secret::new("test-session-secret-0123456789"));
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request; returns status and JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(&self.http, method, self.url(path), bearer, body).await
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, bearer, Some(body)).await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        self.call("GET", path, bearer, None).await
    }

    /// A raw body with an explicit content type.
    pub async fn post_raw(&self, path: &str, bearer: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.expect("request reaches the service");
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Logs `openid` in through the simulator: returns a session token.
    pub async fn login(&self, openid: &str) -> String {
        let code = self.sim.login_code(openid).await;
        let (status, session) = self.post("/v1/sessions", None, json!({"code": code})).await;
        assert_eq!(status, 201, "{session}");
        session["token"].as_str().unwrap().to_owned()
    }

    pub async fn available(&self, openid: &str) -> u64 {
        let (status, body) = self
            .get(&format!("/v1/users/{openid}/credentials"), Some(REPORT_KEY))
            .await;
        assert_eq!(status, 200, "{body}");
        body["available_sends"].as_u64().unwrap()
    }
}
