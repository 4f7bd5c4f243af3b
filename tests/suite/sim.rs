//! The WeChat simulator over real HTTP: each test starts its own simulator
//! on a loopback port and drives it with reqwest, as the product will.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use formid_ledger::clock::ManualClock;
use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig, Simulator, serve};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEND: &str = "/wechat/cgi-bin/message/wxopen/template/send";

#[derive(Clone)]
struct Sim {
    base: String,
    http: reqwest::Client,
}

impl Sim {
    async fn start(config: SimConfig) -> Self {
        Self::on(Simulator::new(config)).await
    }

    /// A simulator whose time the test moves.
    async fn with_clock(config: SimConfig) -> (Self, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        (
            Self::on(Simulator::with_clock(config, clock.clone())).await,
            clock,
        )
    }

    async fn on(simulator: Simulator) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let server = serve(listener, simulator).expect("start simulator");
        tokio::spawn(server);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Sim {
            base: format!("http://{addr}/sandbox"),
            http,
        }
    }

    async fn new() -> Self {
        Self::start(SimConfig::default()).await
    }

    async fn reply(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::reply(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await;
        Self::reply(response.expect("POST")).await
    }

    /// A WeChat route: always HTTP 200, the answer is in the body.
    async fn wx_get(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn wx_post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.post(path, body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn token(&self) -> String {
        let body = self
            .wx_get(
                "/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandbox&secret=sandbox-secret",
            )
            .await;
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// The official account's access token.
    async fn oa_token(&self) -> String {
        let body = self
            .wx_get(
                "/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandboxoa&secret=sandbox-oa-secret",
            )
            .await;
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    async fn stable_token(&self, force_refresh: bool) -> Value {
        let body = json!({
            "grant_type": "client_credential",
            "appid": "wxsandbox",
            "secret": "sandbox-secret",
            "force_refresh": force_refresh,
        });
        self.wx_post("/wechat/cgi-bin/stable_token", body).await
    }

    async fn form_ids(&self, openid: &str, count: u32) -> Vec<String> {
        let (status, body) = self
            .post("/form-ids", json!({ "openid": openid, "count": count }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body["form_ids"].clone()).expect("form_ids")
    }

    async fn form_id(&self, openid: &str) -> String {
        self.form_ids(openid, 1).await.remove(0)
    }

    async fn send(&self, token: &str, body: Value) -> Value {
        self.wx_post(&format!("{SEND}?access_token={token}"), body).await
    }

    async fn inbox(&self, openid: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/inbox/{openid}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["openid"], openid);
        body["messages"].as_array().expect("messages").clone()
    }

    async fn fault(&self, fault: Value) {
        let (status, body) = self.post("/faults", fault).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn message(touser: &str, form_id: &str) -> Value {
    json!({
        "touser": touser,
        "template_id": BUILTIN_TEMPLATES[0],
        "page": "pages/order/detail?id=42",
        "form_id": form_id,
        "data": {"keyword1": {"value": "shipped"}, "keyword2": {"value": "SF123", "color": "#173177"}},
    })
}

fn wx_error(errcode: i64, errmsg: &str) -> Value {
    json!({ "errcode": errcode, "errmsg": errmsg })
}

fn ok() -> Value {
    wx_error(0, "ok")
}

#[tokio::test]
async fn token_fetch_checks_the_app_and_issues_a_fresh_token_each_time() {
    let sim = Sim::new().await;
    let body = sim
        .wx_get("/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandbox&secret=sandbox-secret")
        .await;
    assert_eq!(body["expires_in"], 7200);
    assert!(body.get("errcode").is_none(), "{body}");
    let first = body["access_token"].as_str().expect("token").to_owned();
    assert!(
        first.len() >= 32 && first.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{first}"
    );
    assert_ne!(sim.token().await, first);

    let cases = [
        (
            "grant_type=client_credential&appid=wxother&secret=sandbox-secret",
            wx_error(40013, "invalid appid"),
        ),
        (
            "grant_type=client_credential&appid=wxsandbox&secret=nope",
            wx_error(40125, "invalid appsecret"),
        ),
        (
            "grant_type=password&appid=wxsandbox&secret=sandbox-secret",
            wx_error(40002, "invalid grant_type"),
        ),
        (
            "appid=wxsandbox&secret=sandbox-secret",
            wx_error(40002, "invalid grant_type"),
        ),
        (
            "grant_type=client_credential&secret=sandbox-secret",
            wx_error(41002, "appid missing"),
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            sim.wx_get(&format!("/wechat/cgi-bin/token?{query}")).await,
            expected,
            "{query}"
        );
    }
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["token_fetches"], 2);
}

#[tokio::test]
async fn a_replaced_token_works_for_the_overlap_then_is_not_latest_and_tokens_expire_after_ttl() {
    let (sim, clock) = Sim::with_clock(SimConfig {
        token_ttl_secs: 2,
        token_overlap_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let ids = sim.form_ids("alice", 3).await;
    let old = sim.token().await;
    let new = sim.token().await;
    assert_eq!(sim.send(&old, message("alice", &ids[0])).await, ok());

    clock.advance(TimeDelta::milliseconds(1200));
    let not_latest = wx_error(40001, "invalid credential, access_token is invalid or not latest");
    assert_eq!(sim.send(&old, message("alice", &ids[1])).await, not_latest);
    assert_eq!(sim.send(&new, message("alice", &ids[1])).await, ok());

    clock.advance(TimeDelta::milliseconds(1000));
    let expired = wx_error(42001, "access_token expired");
    assert_eq!(sim.send(&new, message("alice", &ids[2])).await, expired);
    assert_eq!(sim.send(&old, message("alice", &ids[2])).await, not_latest);
    assert_eq!(sim.send("garbage", message("alice", &ids[2])).await, not_latest);
}

#[tokio::test]
async fn the_stable_token_stays_the_same_until_force_refreshed() {
    let sim = Sim::new().await;
    let first = sim.stable_token(false).await;
    let stable = first["access_token"].as_str().expect("token").to_owned();
    let expires_in = first["expires_in"].as_u64().expect("expires_in");
    assert!((7190..=7200).contains(&expires_in), "{first}");

    // /cgi-bin/token rotates its own token, not the stable one.
    let plain = sim.token().await;
    assert_ne!(plain, stable);
    assert_eq!(sim.stable_token(false).await["access_token"], stable.as_str());

    let forced = sim.stable_token(true).await;
    let rotated = forced["access_token"].as_str().expect("token").to_owned();
    assert_ne!(rotated, stable);
    assert_eq!(forced["expires_in"], 7200);
    assert_eq!(sim.stable_token(false).await["access_token"], rotated.as_str());
    assert_eq!(
        sim.stable_token(true).await,
        wx_error(45011, "api minute-quota reach limit mustslower retry next minute")
    );

    // The previous stable token is inside its overlap, the plain one untouched.
    let ids = sim.form_ids("alice", 3).await;
    for (token, id) in [(&stable, &ids[0]), (&rotated, &ids[1]), (&plain, &ids[2])] {
        assert_eq!(sim.send(token, message("alice", id)).await, ok());
    }

    let bad = |appid: &str, secret: &str| json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": false});
    let path = "/wechat/cgi-bin/stable_token";
    assert_eq!(
        sim.wx_post(path, bad("wxother", "sandbox-secret")).await,
        wx_error(40013, "invalid appid")
    );
    assert_eq!(
        sim.wx_post(path, bad("wxsandbox", "nope")).await,
        wx_error(40125, "invalid appsecret")
    );
    let garbage = sim
        .http
        .post(format!("{}{path}", sim.base))
        .body("not json")
        .send()
        .await;
    let (status, body) = Sim::reply(garbage.expect("POST")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, wx_error(47001, "data format error"))
    );

    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["token_fetches"], 5);
}

#[tokio::test]
async fn login_codes_turn_into_a_session_once() {
    let sim = Sim::new().await;
    let (status, body) = sim
        .post(
            "/login-codes",
            json!({ "openid": "oYx8J5Xo0K2mC4_d-9qLzWc1aBcD" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let code = body["code"].as_str().expect("code").to_owned();
    let login = |code: &str, secret: &str| {
        format!(
            "/wechat/sns/jscode2session?appid=wxsandbox&secret={secret}&js_code={code}&grant_type=authorization_code"
        )
    };

    assert_eq!(
        sim.wx_get(&login(&code, "nope")).await,
        wx_error(40125, "invalid appsecret")
    );
    let session = sim.wx_get(&login(&code, "sandbox-secret")).await;
    assert_eq!(session["openid"], "oYx8J5Xo0K2mC4_d-9qLzWc1aBcD");
    assert!(session.get("errcode").is_none(), "{session}");
    let key = session["session_key"].as_str().expect("session_key");
    assert!(key.len() == 24 && key.ends_with("=="), "{key}");

    assert_eq!(
        sim.wx_get(&login(&code, "sandbox-secret")).await,
        wx_error(40163, "code been used")
    );
    assert_eq!(
        sim.wx_get(&login("unknown", "sandbox-secret")).await,
        wx_error(40029, "invalid code")
    );
    let wrong_app = login(&code, "sandbox-secret").replace("wxsandbox", "wxother");
    assert_eq!(sim.wx_get(&wrong_app).await, wx_error(40013, "invalid appid"));
}

#[tokio::test]
async fn a_form_id_pays_for_one_message_which_lands_in_the_inbox() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let ids = sim.form_ids("alice", 5).await;
    assert_eq!(ids.len(), 5);
    for id in &ids {
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
    }

    assert_eq!(sim.send(&token, message("alice", &ids[0])).await, ok());
    assert_eq!(
        sim.send(&token, message("alice", &ids[0])).await,
        wx_error(41029, "form id used count reach limit")
    );

    let inbox = sim.inbox("alice").await;
    assert_eq!(inbox.len(), 1);
    let delivered = &inbox[0];
    assert_eq!(delivered["template_id"], BUILTIN_TEMPLATES[0]);
    assert_eq!(delivered["page"], "pages/order/detail?id=42");
    assert_eq!(delivered["form_id"], ids[0].as_str());
    assert_eq!(delivered["data"], message("alice", "")["data"]);
    assert_eq!(delivered["emphasis_keyword"], Value::Null);
    assert!(
        delivered["sent_at"].as_str().is_some_and(|t| t.starts_with("20")),
        "{delivered}"
    );
    assert!(sim.inbox("bob").await.is_empty());
}

#[tokio::test]
async fn a_prepay_id_pays_for_exactly_three_messages() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let (status, body) = sim.post("/payments", json!({ "openid": "alice" })).await;
    assert_eq!(status, StatusCode::OK);
    let prepay = body["prepay_id"].as_str().expect("prepay_id").to_owned();
    let (stamp, suffix) = prepay.strip_prefix("wx").expect("wx prefix").split_at(14);
    assert!(stamp.bytes().all(|b| b.is_ascii_digit()), "{prepay}");
    assert!(
        suffix.len() == 20
            && suffix
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    for _ in 0..3 {
        assert_eq!(sim.send(&token, message("alice", &prepay)).await, ok());
    }
    assert_eq!(
        sim.send(&token, message("alice", &prepay)).await,
        wx_error(41029, "form id used count reach limit")
    );
    assert_eq!(sim.inbox("alice").await.len(), 3);
}

#[tokio::test]
async fn form_ids_belong_to_their_openid_and_expire_after_seven_days() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let invalid = wx_error(41028, "invalid form id");
    let alices = sim.form_id("alice").await;
    assert_eq!(sim.send(&token, message("bob", &alices)).await, invalid);
    assert_eq!(
        sim.send(&token, message("alice", "0123456789abcdef0123456789abcdef"))
            .await,
        invalid
    );
    assert_eq!(
        sim.send(&token, message("alice", "the formId is a mock one"))
            .await,
        invalid
    );

    let issued = |days: i64| (Utc::now() - TimeDelta::days(days)).to_rfc3339();
    for (days, expected) in [(8, invalid.clone()), (7, invalid.clone()), (6, ok())] {
        let body = json!({ "openid": "alice", "count": 1, "issued_at": issued(days) });
        let (status, body) = sim.post("/form-ids", body).await;
        assert_eq!(status, StatusCode::OK);
        let id = body["form_ids"][0].as_str().expect("form id");
        assert_eq!(
            sim.send(&token, message("alice", id)).await,
            expected,
            "{days} days old"
        );
    }
    let (_, body) = sim
        .post("/payments", json!({ "openid": "alice", "issued_at": issued(8) }))
        .await;
    let prepay = body["prepay_id"].as_str().expect("prepay_id");
    assert_eq!(sim.send(&token, message("alice", prepay)).await, invalid);

    // The failed attempts spent nothing.
    assert_eq!(sim.send(&token, message("alice", &alices)).await, ok());
}

#[tokio::test]
async fn templates_must_be_registered() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;
    let custom = "my-template_01";
    let mut body = message("alice", &id);
    body["template_id"] = json!(custom);
    assert_eq!(
        sim.send(&token, body.clone()).await,
        wx_error(40037, "invalid template_id")
    );

    let (status, reply) = sim.post("/templates", json!({ "template_id": custom })).await;
    assert_eq!(
        (status, reply),
        (StatusCode::OK, json!({ "template_id": custom }))
    );
    assert_eq!(sim.send(&token, body).await, ok());

    let (_, listed) = sim.get("/templates").await;
    let mut expected: Vec<&str> = BUILTIN_TEMPLATES.to_vec();
    expected.push(custom);
    expected.sort_unstable();
    assert_eq!(listed, json!({ "templates": expected }));
    assert!(BUILTIN_TEMPLATES.iter().all(|t| t.len() == 43));
}

#[tokio::test]
async fn pages_data_body_and_token_are_checked_before_anything_is_spent() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;
    let with = |field: &str, value: Value| {
        let mut body = message("alice", &id);
        body[field] = value;
        body
    };

    let bad_page = wx_error(41030, "invalid page");
    for page in [
        "/pages/index",
        "",
        "pages/index?a=<b>",
        "pages/x?y?z",
        "https://evil.example/x",
        "pages/ a",
    ] {
        assert_eq!(
            sim.send(&token, with("page", json!(page))).await,
            bad_page,
            "{page:?}"
        );
    }
    let bad_data = wx_error(47003, "argument invalid! data invalid");
    for data in [
        json!("text"),
        json!({"k": "v"}),
        json!({"k": {"value": 3}}),
        json!({"k": {"color": "#fff"}}),
    ] {
        assert_eq!(
            sim.send(&token, with("data", data.clone())).await,
            bad_data,
            "{data}"
        );
    }
    let mut no_data = message("alice", &id);
    no_data.as_object_mut().expect("object").remove("data");
    assert_eq!(sim.send(&token, no_data).await, bad_data);

    let format = wx_error(47001, "data format error");
    assert_eq!(sim.send(&token, with("touser", json!(42))).await, format);
    assert_eq!(sim.send(&token, json!([1, 2])).await, format);
    let raw = sim
        .http
        .post(format!("{}{SEND}?access_token={token}", sim.base))
        .body("{oops")
        .send()
        .await;
    assert_eq!(Sim::reply(raw.expect("POST")).await.1, format);

    let missing = sim.wx_post(SEND, message("alice", &id)).await;
    assert_eq!(missing, wx_error(41001, "access_token missing"));

    let mut full = with("page", json!("pages/order/detail?id=42&from=msg%20x"));
    full["emphasis_keyword"] = json!("keyword1.DATA");
    assert_eq!(sim.send(&token, full).await, ok());
    assert_eq!(sim.inbox("alice").await[0]["emphasis_keyword"], "keyword1.DATA");
}

#[tokio::test]
async fn the_daily_limit_counts_successful_sends() {
    let sim = Sim::start(SimConfig {
        daily_limit: 2,
        ..SimConfig::default()
    })
    .await;
    let token = sim.token().await;
    let ids = sim.form_ids("alice", 4).await;
    assert_eq!(sim.send(&token, message("alice", &ids[0])).await, ok());
    assert_eq!(
        sim.send(&token, message("bob", &ids[1])).await,
        wx_error(41028, "invalid form id")
    );
    assert_eq!(sim.send(&token, message("alice", &ids[1])).await, ok());
    let quota = wx_error(45009, "reach max api daily quota limit");
    assert_eq!(sim.send(&token, message("alice", &ids[2])).await, quota);
    assert_eq!(sim.send(&token, message("alice", &ids[3])).await, quota);
    assert_eq!(sim.inbox("alice").await.len(), 2);
}

#[tokio::test]
async fn an_errcode_fault_answers_the_next_calls_then_clears() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;
    sim.fault(json!({ "errcode": -1, "count": 2 })).await;
    let (_, active) = sim.get("/faults").await;
    assert_eq!(
        active,
        json!({"active": {"errcode": -1, "http_status": null, "delay_ms": null, "delay_answer_ms": null, "drop": false, "lose_answer": false, "templates": false, "count": 2}})
    );

    let injected = wx_error(-1, "injected fault");
    // Before any check: a bogus token would otherwise be 40001.
    assert_eq!(sim.send("bogus", message("alice", &id)).await, injected);
    let (_, active) = sim.get("/faults").await;
    assert_eq!(active["active"]["count"], 1);
    assert_eq!(
        sim.wx_get(
            "/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandbox&secret=sandbox-secret"
        )
        .await,
        injected
    );
    assert_eq!(sim.get("/faults").await.1, json!({ "active": null }));
    assert_eq!(sim.send(&token, message("alice", &id)).await, ok());
}

#[tokio::test]
async fn an_http_status_fault_fails_at_the_http_level() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;
    sim.fault(json!({ "http_status": 503, "count": 1 })).await;
    let url = format!("{}{SEND}?access_token={token}", sim.base);
    let response = sim
        .http
        .post(&url)
        .json(&message("alice", &id))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.expect("body"), "injected fault");
    assert_eq!(sim.send(&token, message("alice", &id)).await, ok());
}

#[tokio::test]
async fn a_delay_fault_slows_the_answer_alone_or_with_an_errcode() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;

    sim.fault(json!({ "delay_ms": 300, "count": 1 })).await;
    let started = Instant::now();
    assert_eq!(sim.send(&token, message("alice", &id)).await, ok());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    sim.fault(json!({ "delay_ms": 200, "errcode": 45009, "count": 1 }))
        .await;
    let started = Instant::now();
    assert_eq!(
        sim.send(&token, message("alice", &id)).await,
        wx_error(45009, "injected fault")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_delayed_answer_fault_delivers_at_once_and_answers_late() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;
    sim.fault(json!({ "delay_answer_ms": 3000, "count": 1 })).await;
    let started = Instant::now();
    let (sim2, token2, id2) = (sim.clone(), token.clone(), id.clone());
    let send = tokio::spawn(async move { sim2.send(&token2, message("alice", &id2)).await });
    while sim.inbox("alice").await.is_empty() {
        assert!(started.elapsed() < Duration::from_millis(2500), "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !send.is_finished(),
        "delivered, and the answer is still held back"
    );
    assert_eq!(send.await.unwrap(), ok());
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_drop_fault_closes_the_connection_without_an_answer() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let id = sim.form_id("alice").await;
    sim.fault(json!({ "drop": true, "count": 2 })).await;
    let url = format!("{}{SEND}?access_token={token}", sim.base);
    for _ in 0..2 {
        let result = sim.http.post(&url).json(&message("alice", &id)).send().await;
        let err = result.expect_err("a dropped connection gives no response");
        assert!(err.is_request() && !err.is_timeout() && !err.is_body(), "{err:?}");
    }
    assert_eq!(sim.send(&token, message("alice", &id)).await, ok());
    assert!(sim.inbox("alice").await.len() == 1);
}

#[tokio::test]
async fn a_new_fault_replaces_the_old_and_count_zero_clears() {
    let sim = Sim::new().await;
    let token_url =
        "/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandbox&secret=sandbox-secret";
    sim.fault(json!({ "errcode": -1, "count": 5 })).await;
    sim.fault(json!({ "errcode": 40001, "count": 1 })).await;
    assert_eq!(sim.wx_get(token_url).await["errcode"], 40001);
    assert!(sim.wx_get(token_url).await["access_token"].is_string());

    sim.fault(json!({ "errcode": -1, "count": 5 })).await;
    let (status, body) = sim.post("/faults", json!({ "count": 0 })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "active": null })));
    assert!(sim.wx_get(token_url).await["access_token"].is_string());

    for bad in [
        json!({ "errcode": -1, "drop": true, "count": 1 }),
        json!({ "errcode": -1, "http_status": 500, "count": 1 }),
        json!({ "errcode": 0, "count": 1 }),
        json!({ "http_status": 200, "count": 1 }),
        json!({ "delay_ms": 60_001, "count": 1 }),
        json!({ "delay_answer_ms": 60_001, "count": 1 }),
        json!({ "delay_answer_ms": 10, "errcode": -1, "count": 1 }),
        json!({ "delay_answer_ms": 10, "drop": true, "count": 1 }),
        json!({ "count": 1 }),
        json!({ "errcode": -1 }),
        json!({ "errcode": -1, "count": -1 }),
        json!({ "errcode": -1, "count": 1, "sticky": true }),
    ] {
        let (status, body) = sim.post("/faults", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["code"], "invalid_request", "{bad}");
    }
}

#[tokio::test]
async fn stats_count_token_fetches_refusals_and_send_answers_by_errcode() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    sim.stable_token(false).await;
    let ids = sim.form_ids("alice", 2).await;
    sim.send(&token, message("alice", &ids[0])).await;
    sim.send(&token, message("alice", &ids[0])).await;
    sim.send(&token, message("alice", &ids[1])).await;
    sim.send("bogus", message("alice", &ids[1])).await;
    sim.fault(json!({ "errcode": -1, "count": 1 })).await;
    sim.send(&token, message("alice", &ids[1])).await;
    sim.fault(json!({ "http_status": 502, "count": 1 })).await;
    let url = format!("{}{SEND}?access_token={token}", sim.base);
    let response = sim
        .http
        .post(&url)
        .json(&message("alice", &ids[1]))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // A refused token request is not a fetch: it is counted apart.
    sim.wx_get("/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandbox&secret=x")
        .await;

    let (status, stats) = sim.get("/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats,
        json!({
            "token_fetches": 2,
            "token_refusals": 1,
            "template_lists": 0,
            "sends": { "0": 2, "41029": 1, "40001": 1, "-1": 1 },
        })
    );
}

#[tokio::test]
async fn the_inbox_lists_messages_oldest_first() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let ids = sim.form_ids("alice", 3).await;
    for (n, id) in ids.iter().enumerate() {
        let mut body = message("alice", id);
        body["data"] = json!({ "keyword1": { "value": format!("message {n}") } });
        assert_eq!(sim.send(&token, body).await, ok());
    }
    let inbox = sim.inbox("alice").await;
    let order: Vec<&Value> = inbox.iter().map(|m| &m["data"]["keyword1"]["value"]).collect();
    assert_eq!(
        order,
        [&json!("message 0"), &json!("message 1"), &json!("message 2")]
    );
    let form_ids: Vec<&str> = inbox.iter().filter_map(|m| m["form_id"].as_str()).collect();
    assert_eq!(form_ids, ids);
}

#[tokio::test]
async fn control_routes_reject_bad_input_with_a_json_400() {
    let sim = Sim::new().await;
    let future = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let cases = [
        ("/login-codes", json!({})),
        ("/login-codes", json!({ "openid": "a b" })),
        ("/login-codes", json!({ "openid": "x".repeat(65) })),
        ("/login-codes", json!({ "openid": "alice", "extra": 1 })),
        ("/form-ids", json!({ "openid": "alice", "count": 0 })),
        ("/form-ids", json!({ "openid": "alice", "count": 1001 })),
        ("/form-ids", json!({ "openid": "alice", "count": "3" })),
        (
            "/form-ids",
            json!({ "openid": "alice", "count": 1, "issued_at": "yesterday" }),
        ),
        (
            "/form-ids",
            json!({ "openid": "alice", "count": 1, "issued_at": future }),
        ),
        ("/form-ids", json!({ "openid": "al{ice}", "count": 1 })),
        ("/payments", json!({ "openid": "" })),
        ("/payments", json!([])),
        ("/templates", json!({ "template_id": "" })),
        ("/templates", json!({ "template_id": "has space" })),
        ("/templates", json!({ "template_id": "x".repeat(129) })),
        ("/templates", json!({ "template": "x" })),
    ];
    for (path, body) in cases {
        let (status, reply) = sim.post(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(reply["code"], "invalid_request", "{path} {body}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }

    let not_json = sim
        .http
        .post(format!("{}/form-ids", sim.base))
        .body("{\"openid\":")
        .send()
        .await;
    let (status, reply) = Sim::reply(not_json.expect("POST")).await;
    assert_eq!(
        (status, &reply["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    let (status, reply) = sim.get("/inbox/a%20b").await;
    assert_eq!(
        (status, &reply["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );

    let not_found = json!({ "code": "not_found", "message": "no such route" });
    assert_eq!(sim.get("/nope").await, (StatusCode::NOT_FOUND, not_found.clone()));
    assert_eq!(
        sim.get("/wechat/cgi-bin/nope").await,
        (StatusCode::NOT_FOUND, not_found)
    );
    let not_allowed = json!({ "code": "method_not_allowed", "message": "method not allowed on this route" });
    assert_eq!(
        sim.get("/login-codes").await,
        (StatusCode::METHOD_NOT_ALLOWED, not_allowed.clone())
    );
    assert_eq!(sim.get(SEND).await, (StatusCode::METHOD_NOT_ALLOWED, not_allowed));
}

#[tokio::test]
async fn a_lost_answer_is_a_delivered_message_whose_reply_never_comes() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let ids = sim.form_ids("alice", 1).await;
    sim.fault(json!({"lose_answer": true, "count": 1})).await;
    let lost = sim
        .http
        .post(format!("{}{SEND}?access_token={token}", sim.base))
        .json(&message("alice", &ids[0]))
        .send()
        .await;
    assert!(lost.is_err(), "the connection closes without an answer: {lost:?}");
    // WeChat did the work: delivered, and the formId is used.
    assert_eq!(sim.inbox("alice").await.len(), 1);
    let used = wx_error(41029, "form id used count reach limit");
    assert_eq!(sim.send(&token, message("alice", &ids[0])).await, used);
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["sends"], json!({"0": 1, "41029": 1}));
}

const SUBSCRIBE: &str = "/wechat/cgi-bin/message/subscribe/send";

fn subscribe_message(touser: &str, template: &str, data: Value) -> Value {
    json!({"touser": touser, "template_id": template, "page": "pages/index", "data": data})
}

#[tokio::test]
async fn subscribe_sends_spend_the_grants_users_gave_and_follow_the_data_rules() {
    use formid_ledger::sim::BUILTIN_SUBSCRIBE_TEMPLATES;
    let sim = Sim::new().await;
    let token = sim.token().await;
    let (a, b) = (BUILTIN_SUBSCRIBE_TEMPLATES[0].0, BUILTIN_SUBSCRIBE_TEMPLATES[1].0);
    let (status, answer) = sim
        .post(
            "/subscriptions",
            json!({"openid": "alice", "results": {a: "accept", b: "reject"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"errMsg": "requestSubscribeMessage:ok", a: "accept", b: "reject"})
    );
    sim.post(
        "/subscriptions",
        json!({"openid": "alice", "results": {a: "accept"}}),
    )
    .await;

    let good = json!({
        "thing1": {"value": "配送中"}, "character_string2": {"value": "SF1234"},
        "time3": {"value": "2019年10月1日 15:01"}, "phrase4": {"value": "已发货"}
    });
    let path = format!("{SUBSCRIBE}?access_token={token}");
    for _ in 0..2 {
        let sent = sim
            .wx_post(&path, subscribe_message("alice", a, good.clone()))
            .await;
        assert_eq!(
            (sent["errcode"].as_i64(), sent["msgid"].is_u64()),
            (Some(0), true),
            "{sent}"
        );
    }
    let none = sim
        .wx_post(&path, subscribe_message("alice", a, good.clone()))
        .await;
    assert_eq!(none, wx_error(43101, "user refuse to accept the msg"));
    let refused = sim
        .wx_post(
            &path,
            subscribe_message("alice", b, json!({"amount1": {"value": "¥1"}})),
        )
        .await;
    assert_eq!(refused["errcode"], 43101);

    // Data WeChat refuses names the field; a key the template lacks too.
    sim.post(
        "/subscriptions",
        json!({"openid": "alice", "results": {a: "accept"}}),
    )
    .await;
    let mut long = good.clone();
    long["thing1"] = json!({"value": "这是一个超过二十个字符的很长很长很长的物品名称"});
    let bad = sim.wx_post(&path, subscribe_message("alice", a, long)).await;
    assert_eq!(
        bad,
        wx_error(47003, "argument invalid! data.thing1.value invalid")
    );
    let mut extra = good.clone();
    extra["amount9"] = json!({"value": "1"});
    assert_eq!(
        sim.wx_post(&path, subscribe_message("alice", a, extra)).await["errcode"],
        47003
    );
    // The grant survived the refusals.
    assert_eq!(
        sim.wx_post(&path, subscribe_message("alice", a, good.clone()))
            .await["errcode"],
        0
    );

    let unknown = sim
        .wx_post(&path, subscribe_message("alice", "NoSuchTemplate", good.clone()))
        .await;
    assert_eq!(unknown["errcode"], 40037);
    let stranger = sim
        .wx_post(&path, subscribe_message("nobody", a, good.clone()))
        .await;
    assert_eq!(stranger, wx_error(40003, "invalid openid"));

    let inbox = sim.inbox("alice").await;
    assert_eq!(inbox.len(), 3);
    assert_eq!(
        (inbox[0]["kind"].as_str(), inbox[0]["form_id"].is_null()),
        (Some("subscribe"), true)
    );
}

#[tokio::test]
async fn a_template_turned_off_loses_its_grants_and_is_rejected_without_asking() {
    use formid_ledger::sim::BUILTIN_SUBSCRIBE_TEMPLATES;
    let sim = Sim::new().await;
    let token = sim.token().await;
    let c = BUILTIN_SUBSCRIBE_TEMPLATES[2].0;
    sim.post(
        "/subscriptions",
        json!({"openid": "bob", "results": {c: "accept"}}),
    )
    .await;
    let (status, _) = sim
        .post(
            "/subscriptions/change",
            json!({"openid": "bob", "template_id": c, "status": "reject"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let data = json!({"name1": {"value": "张三"}, "phone_number2": {"value": "+86-0766-66888866"},
        "car_number3": {"value": "粤A8Z888挂"}, "number4": {"value": "339208499"}});
    let path = format!("{SUBSCRIBE}?access_token={token}");
    assert_eq!(
        sim.wx_post(&path, subscribe_message("bob", c, data.clone()))
            .await["errcode"],
        43101
    );
    let (_, answer) = sim
        .post(
            "/subscriptions",
            json!({"openid": "bob", "results": {c: "accept"}}),
        )
        .await;
    assert_eq!(answer[c], "reject");
    sim.post(
        "/subscriptions/change",
        json!({"openid": "bob", "template_id": c, "status": "accept"}),
    )
    .await;
    sim.post(
        "/subscriptions",
        json!({"openid": "bob", "results": {c: "accept"}}),
    )
    .await;
    assert_eq!(
        sim.wx_post(&path, subscribe_message("bob", c, data)).await["errcode"],
        0
    );

    // Registered templates carry their own keywords; bad control input is a 400.
    let (status, _) = sim
        .post(
            "/subscribe-templates",
            json!({"template_id": "MyTpl", "keywords": ["thing1", "amount2"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        json!({"openid": "bob", "results": {}}),
        json!({"openid": "bob", "results": {"MyTpl": "maybe"}}),
        json!({"openid": "bob", "results": {"Unknown": "accept"}}),
        json!({"openid": "bob", "results": {"MyTpl": 1}}),
    ] {
        let (status, body) = sim.post("/subscriptions", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = sim
        .post(
            "/subscribe-templates",
            json!({"template_id": "Bad", "keywords": ["Thing"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_long_term_template_is_sent_on_until_turned_off_and_says_type_3() {
    use formid_ledger::sim::BUILTIN_LONG_TERM_TEMPLATE;
    let sim = Sim::new().await;
    let token = sim.token().await;
    let long = BUILTIN_LONG_TERM_TEMPLATE.0;
    let list = sim
        .wx_get(&format!(
            "/wechat/wxaapi/newtmpl/gettemplate?access_token={token}"
        ))
        .await;
    let kind = |id: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["priTmplId"] == id)
            .map(|t| t["type"].clone())
    };
    assert_eq!(kind(long), Some(json!(3)));
    assert_eq!(
        kind(formid_ledger::sim::BUILTIN_SUBSCRIBE_TEMPLATES[0].0),
        Some(json!(2))
    );

    sim.post(
        "/subscriptions",
        json!({"openid": "cal", "results": {long: "accept"}}),
    )
    .await;
    let data = json!({"thing1": {"value": "办理进度"}, "phrase2": {"value": "已受理"}});
    let path = format!("{SUBSCRIBE}?access_token={token}");
    for _ in 0..4 {
        let answer = sim
            .wx_post(&path, subscribe_message("cal", long, data.clone()))
            .await;
        assert_eq!(answer["errcode"], 0, "{answer}");
    }
    sim.post(
        "/subscriptions/change",
        json!({"openid": "cal", "template_id": long, "status": "reject"}),
    )
    .await;
    assert_eq!(
        sim.wx_post(&path, subscribe_message("cal", long, data.clone()))
            .await["errcode"],
        43101
    );
    // Turned on again in settings: sendable again without a popup.
    sim.post(
        "/subscriptions/change",
        json!({"openid": "cal", "template_id": long, "status": "accept"}),
    )
    .await;
    assert_eq!(
        sim.wx_post(&path, subscribe_message("cal", long, data)).await["errcode"],
        0
    );

    // Registered templates are one-time unless they say type 3.
    let (status, body) = sim
        .post(
            "/subscribe-templates",
            json!({"template_id": "MyLongTpl", "keywords": ["thing1"], "type": 3}),
        )
        .await;
    assert_eq!((status, body["type"].clone()), (StatusCode::OK, json!(3)));
    let (status, _) = sim
        .post(
            "/subscribe-templates",
            json!({"template_id": "MyOddTpl", "keywords": ["thing1"], "type": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn template_management_follows_wechat_rules_and_limits() {
    let sim = Sim::new().await;
    let token = sim.token().await;
    let call = |method: &'static str, path: &str, body: Option<Value>| {
        let url = format!(
            "{}/wechat{path}{}access_token={token}",
            sim.base,
            if path.contains('?') { "&" } else { "?" }
        );
        let req = sim.http.request(method.parse().unwrap(), url);
        let req = match body {
            Some(body) => req.json(&body),
            None => req,
        };
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // The old library: paging bounded, entries with keyword ids.
    let page = call(
        "POST",
        "/cgi-bin/wxopen/template/library/list",
        Some(json!({"offset": 0, "count": 21})),
    )
    .await;
    assert_eq!(page["errcode"], 47003);
    let entry = call(
        "POST",
        "/cgi-bin/wxopen/template/library/get",
        Some(json!({"id": "AT0002"})),
    )
    .await;
    assert_eq!(entry["keyword_list"][0]["keyword_id"], 3);
    // The subscribe library: keywords by tid; an added template takes type + id keys.
    let titles = call(
        "GET",
        "/wxaapi/newtmpl/getpubtemplatetitles?ids=307,616&start=0&limit=31",
        None,
    )
    .await;
    assert_eq!(titles["errcode"], 47003);
    let added = call(
        "POST",
        "/wxaapi/newtmpl/addtemplate",
        Some(json!({"tid": "99", "kidList": [1, 3], "sceneDesc": "x"})),
    )
    .await;
    assert_eq!(added["errcode"], 0, "{added}");
    let listed = call("GET", "/wxaapi/newtmpl/gettemplate", None).await;
    let template = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["priTmplId"] == added["priTmplId"])
        .unwrap();
    assert_eq!(
        template["content"],
        "物品名称:{{thing1.DATA}}\n发货时间:{{time3.DATA}}\n"
    );
    for (body, errcode) in [
        (json!({"tid": "1", "kidList": [1, 2]}), 200014),
        (json!({"tid": 99, "kidList": [1]}), 200020),
        (json!({"tid": 99, "kidList": [1, 1]}), 200020),
        (
            json!({"tid": 99, "kidList": [1, 2], "sceneDesc": "一二三四五六七八九十一二三四五六"}),
            200021,
        ),
    ] {
        assert_eq!(
            call("POST", "/wxaapi/newtmpl/addtemplate", Some(body.clone())).await["errcode"],
            errcode,
            "{body}"
        );
    }
    // The old library holds 25 templates (3 built in), then 45026.
    for _ in 0..22 {
        let added = call(
            "POST",
            "/cgi-bin/wxopen/template/add",
            Some(json!({"id": "AT0010", "keyword_id_list": [1, 2]})),
        )
        .await;
        assert_eq!(added["errcode"], 0, "{added}");
    }
    let over = call(
        "POST",
        "/cgi-bin/wxopen/template/add",
        Some(json!({"id": "AT0010", "keyword_id_list": [1]})),
    )
    .await;
    assert_eq!(over["errcode"], 45026);
    // Deleted templates are gone for sends too.
    let gone = added["priTmplId"].as_str().unwrap();
    assert_eq!(
        call(
            "POST",
            "/wxaapi/newtmpl/deltemplate",
            Some(json!({"priTmplId": gone}))
        )
        .await["errcode"],
        0
    );
    assert_eq!(
        call(
            "POST",
            "/wxaapi/newtmpl/deltemplate",
            Some(json!({"priTmplId": gone}))
        )
        .await["errcode"],
        40037
    );
    // The official account's routes want its own token.
    let refused = call("GET", "/cgi-bin/template/get_all_private_template", None).await;
    assert_eq!(refused["errcode"], 40001);
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["template_lists"], 1);
}

/// Several simulated mini-programs: each keeps its own tokens, credentials,
/// inboxes, stats and faults; control routes name one by `appid` (in the
/// body, or the query of a GET) and act on the first without it.
#[tokio::test]
async fn each_simulated_app_keeps_its_own_tokens_inboxes_stats_and_faults() {
    let sim = Sim::start(SimConfig {
        more_miniprograms: vec![("wxother".into(), "other-secret".into())],
        ..SimConfig::default()
    })
    .await;
    let other_token = sim
        .wx_get("/wechat/cgi-bin/token?grant_type=client_credential&appid=wxother&secret=other-secret")
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let stable = sim
        .wx_post(
            "/wechat/cgi-bin/stable_token",
            json!({"grant_type": "client_credential", "appid": "wxother", "secret": "other-secret"}),
        )
        .await;
    assert!(stable["access_token"].is_string(), "{stable}");
    let wrong = sim
        .wx_get("/wechat/cgi-bin/token?grant_type=client_credential&appid=wxother&secret=sandbox-secret")
        .await;
    assert_eq!(wrong["errcode"], 40125, "another app's secret: {wrong}");
    let own_token = sim.token().await;

    // A formId of one app is not the other's.
    let (_, issued) = sim
        .post(
            "/form-ids",
            json!({"openid": "oBoth", "count": 1, "appid": "wxother"}),
        )
        .await;
    let other_form = issued["form_ids"][0].as_str().unwrap().to_owned();
    let message = |form_id: &str| json!({"touser": "oBoth", "template_id": BUILTIN_TEMPLATES[0], "form_id": form_id, "data": {}});
    assert_eq!(sim.send(&own_token, message(&other_form)).await["errcode"], 41028);
    assert_eq!(sim.send(&other_token, message(&other_form)).await["errcode"], 0);
    let (_, inbox) = sim.get("/inbox/oBoth?appid=wxother").await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "{inbox}");
    let (_, inbox) = sim.get("/inbox/oBoth").await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 0, "{inbox}");

    // A fault for one app leaves the other's calls alone.
    let (status, _) = sim
        .post("/faults", json!({"errcode": -1, "count": 5, "appid": "wxother"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let own_form = sim.form_id("oBoth").await;
    assert_eq!(sim.send(&own_token, message(&own_form)).await["errcode"], 0);
    let (_, issued) = sim
        .post(
            "/form-ids",
            json!({"openid": "oBoth", "count": 1, "appid": "wxother"}),
        )
        .await;
    let other_form = issued["form_ids"][0].as_str().unwrap().to_owned();
    assert_eq!(sim.send(&other_token, message(&other_form)).await["errcode"], -1);

    let (_, stats) = sim.get("/stats?appid=wxother").await;
    assert_eq!(stats["token_fetches"], 2, "{stats}");
    let (status, unknown) = sim
        .post(
            "/form-ids",
            json!({"openid": "o", "count": 1, "appid": "wxnobody"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{unknown}");
}

/// The official account's template/send with a `client_msg_id`: the same id
/// to the same follower within 10 minutes is answered as the first was
/// (errcode 0, the first msgid) and sends nothing; another follower, another
/// id, or the same id after 10 minutes is a message of its own.
#[tokio::test]
async fn official_account_sends_are_one_message_per_client_msg_id_for_ten_minutes() {
    let (sim, clock) = Sim::with_clock(SimConfig::default()).await;
    for openid in ["oDedupA", "oDedupB"] {
        let (status, _) = sim.post("/oa/followers", json!({ "openid": openid })).await;
        assert_eq!(status, StatusCode::OK);
    }
    let token = sim.oa_token().await;
    let send = async |touser: &str, id: &str| {
        let body = json!({"touser": touser, "template_id": formid_ledger::sim::BUILTIN_OA_TEMPLATES[0].0,
            "data": {"first": {"value": "x"}}, "client_msg_id": id});
        let answer = sim
            .wx_post(
                &format!("/wechat/cgi-bin/message/template/send?access_token={token}"),
                body,
            )
            .await;
        assert_eq!(answer["errcode"], 0, "{answer}");
        answer["msgid"].as_u64().expect("msgid")
    };
    let first = send("oDedupA", "order-1").await;
    assert_eq!(send("oDedupA", "order-1").await, first, "the same message");
    assert_eq!(sim.inbox("oDedupA").await.len(), 1);
    assert_ne!(send("oDedupB", "order-1").await, first);
    assert_ne!(send("oDedupA", "order-2").await, first);
    assert_eq!(sim.inbox("oDedupA").await.len(), 2);
    clock.advance(chrono::Duration::minutes(10));
    assert_ne!(
        send("oDedupA", "order-1").await,
        first,
        "forgotten after 10 minutes"
    );
    assert_eq!(sim.inbox("oDedupA").await.len(), 3);
}

/// The official account's subscribe notifications as WeChat checks them:
/// its own token and templates, a grant from its own popup per message
/// (43101 without one), WeChat's data rules (47003), an answer without a
/// msgid, and its templates listed under its token with their type.
#[tokio::test]
async fn bizsend_spends_the_official_accounts_own_grants() {
    use formid_ledger::sim::BUILTIN_OA_SUBSCRIBE_TEMPLATES;
    let sim = Sim::new().await;
    let oa_token = sim.oa_token().await;
    let mp_token = sim.token().await;
    let (one_time, long_term) = (
        BUILTIN_OA_SUBSCRIBE_TEMPLATES[0].0,
        BUILTIN_OA_SUBSCRIBE_TEMPLATES[1].0,
    );
    let listed = sim
        .wx_get(&format!(
            "/wechat/wxaapi/newtmpl/gettemplate?access_token={oa_token}"
        ))
        .await;
    let types: Vec<(String, i64)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["priTmplId"].as_str().unwrap().to_owned(),
                t["type"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(types.len(), 2, "{listed}");
    assert!(types.contains(&(one_time.to_owned(), 2)) && types.contains(&(long_term.to_owned(), 3)));

    let (status, answer) = sim
        .post(
            "/oa/subscriptions",
            json!({"openid": "oFan", "results": {one_time: "accept"}, "scene": 2}),
        )
        .await;
    assert_eq!(
        (status, answer[one_time].clone()),
        (StatusCode::OK, json!("accept"))
    );
    let bizsend = |token: &str| format!("/wechat/cgi-bin/message/subscribe/bizsend?access_token={token}");
    let body = |data: Value| json!({"touser": "oFan", "template_id": one_time, "data": data});
    let good = json!({"thing1": {"value": "到账提醒"}, "time2": {"value": "2026-12-08 10:00"}});
    // The mini-program's token is not the official account's.
    assert_eq!(
        sim.wx_post(&bizsend(&mp_token), body(good.clone())).await["errcode"],
        40001
    );
    let refused = sim
        .wx_post(
            &bizsend(&oa_token),
            body(json!({"thing1": {"value": "x"}, "time2": {"value": "25:99"}})),
        )
        .await;
    assert_eq!(refused["errcode"], 47003, "{refused}");
    let sent = sim.wx_post(&bizsend(&oa_token), body(good.clone())).await;
    assert_eq!(
        sent,
        json!({"errcode": 0, "errmsg": "ok"}),
        "no msgid in the answer"
    );
    assert_eq!(
        sim.wx_post(&bizsend(&oa_token), body(good)).await["errcode"],
        43101
    );
    let inbox = sim.get("/inbox/oFan").await.1;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "{inbox}");
}
