//! Reports, metrics and the API document over real HTTP: a scripted
//! workload must come back as exactly its own counts, on both ledgers.

use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use formid_ledger::clock::ManualClock;
use formid_ledger::sim::BUILTIN_TEMPLATES;
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp};

fn at(offset: chrono::Duration) -> String {
    (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn message(touser: &str) -> Value {
    json!({"touser": touser, "template_id": BUILTIN_TEMPLATES[1], "data": {"k": {"value": "v"}}})
}

/// Sums every numeric leaf of the rows into one row-shaped object, so a
/// workload that straddles midnight (UTC+8) still adds up.
fn total(days: &[Value]) -> Value {
    fn add(into: &mut Value, from: &Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(k) {
                        Some(existing) => add(existing, v),
                        None => {
                            a.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (a @ Value::Number(_), Value::Number(b)) => *a = json!(a.as_i64().unwrap() + b.as_i64().unwrap()),
            _ => {}
        }
    }
    let mut sum = json!({});
    for day in days {
        let mut day = day.clone();
        day.as_object_mut().unwrap().remove("date");
        add(&mut sum, &day);
    }
    sum
}

async fn workload_counts_exactly(app: TestApp, clock: &ManualClock) {
    let sim = &app.sim;
    // User A: three forms, a duplicate, a mock id, an expired one, a bad id
    // and an unknown kind; a prepay from yesterday through a backend.
    let token = app.login("oWorkA").await;
    let forms = sim.form_ids("oWorkA", 3, None).await;
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(&token),
            json!({"credentials": [
                {"kind": "form", "id": forms[0]}, {"kind": "form", "id": forms[1]}, {"kind": "form", "id": forms[2]},
                {"kind": "form", "id": forms[0]},
                {"kind": "form", "id": "the formId is a mock one"},
                {"kind": "form", "id": "expiredOne", "collected_at": at(-chrono::Duration::days(8))},
                {"kind": "form", "id": "bad id"},
                {"kind": "coupon", "id": "c1"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let yesterday = at(-chrono::Duration::days(1));
    let prepay = sim.prepay_id("oWorkA", Some(&yesterday)).await;
    let (status, _) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oWorkA", "credentials": [{"kind": "prepay", "id": prepay, "collected_at": yesterday}]}),
        )
        .await;
    assert_eq!(status, 200);
    // User B: a form that expires three seconds from now (7 days − 1 h margin).
    let short = at(-chrono::Duration::days(7) + chrono::Duration::hours(1) + chrono::Duration::seconds(3));
    let (status, _) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oWorkB", "credentials": [{"kind": "form", "id": "shortLived", "collected_at": short}]}),
        )
        .await;
    assert_eq!(status, 200);
    // User D: an unknown (never issued) credential, older, then a real one.
    let real = sim.form_ids("oWorkD", 1, None).await.remove(0);
    let (status, _) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oWorkD", "credentials": [
                {"kind": "form", "id": "0123456789abcdef0123456789abcdef", "collected_at": yesterday},
                {"kind": "form", "id": real},
            ]}),
        )
        .await;
    assert_eq!(status, 200);

    // Sends: A's prepay is oldest: a 40037 (refunded), then two sent from it.
    sim.fault(json!({"errcode": 40037, "count": 1})).await;
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oWorkA"))
            .await
            .0,
        422
    );
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oWorkA"))
            .await
            .0,
        200
    );
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oWorkA"))
            .await
            .0,
        200
    );
    // D: 41028 on the unknown one (burned), then sent with the real one.
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oWorkD"))
            .await
            .0,
        200
    );
    // C has nothing.
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oWorkC"))
            .await
            .0,
        409
    );

    clock.advance(chrono::Duration::milliseconds(4_500)); // B's form expires unspent.

    let (status, report) = app
        .get(
            &format!("/v1/reports/usage?from={}&to={}", day(-1), day(1)),
            Some(REPORT_KEY),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let days = report["days"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    assert_eq!(
        total(days),
        json!({
            "collected": {"form": 6, "prepay": 1},
            "duplicates": 1,
            "rejected": {"mock_form_id": 1, "invalid_id": 1, "expired": 1, "invalid_kind": 1},
            "evicted": 0,
            "sends": {"sent": 3, "no_valid_credential": 1, "unknown_template": 0, "wechat_rejected": 1, "wechat_quota_exceeded": 0, "wechat_unavailable": 0, "wechat_outcome_unknown": 0},
            "wechat_errcodes": {"0": 3, "40037": 1, "41028": 1},
            "spent": {"form": 1, "prepay": 2},
            "burned": {"form": 1, "prepay": 0},
            "refunded": {"form": 0, "prepay": 1},
            "expired_unspent": {"form": 1, "prepay": 0},
            "subscribe": {"accepted": 0, "rejected": 0, "banned": 0, "filtered": 0, "spent": 0, "burned": 0,
                "long_term": {"accepted": 0, "sent": 0, "ended": 0},
                "sends": {"sent": 0, "not_subscribed": 0, "invalid_data": 0, "unknown_template": 0, "wechat_rejected": 0,
                    "wechat_quota_exceeded": 0, "wechat_unavailable": 0, "wechat_outcome_unknown": 0},
                "deliveries": {"delivered": 0, "user_blocked": 0, "failed": 0}},
            "official_account": {"sent": 0, "not_following": 0, "unknown_template": 0, "wechat_rejected": 0, "wechat_quota_exceeded": 0,
                "wechat_unavailable": 0, "wechat_outcome_unknown": 0,
                "deliveries": {"delivered": 0, "user_blocked": 0, "failed": 0}},
            "official_account_subscribe": {"accepted": 0, "rejected": 0, "banned": 0, "filtered": 0, "spent": 0, "burned": 0,
                "long_term": {"accepted": 0, "sent": 0, "ended": 0},
                "sends": {"sent": 0, "not_subscribed": 0, "invalid_data": 0, "unknown_template": 0, "wechat_rejected": 0,
                    "wechat_quota_exceeded": 0, "wechat_unavailable": 0, "wechat_outcome_unknown": 0},
                "deliveries": {"delivered": 0, "user_blocked": 0, "failed": 0}},
        })
    );

    let (status, summary) = app.get("/v1/reports/summary", Some(REPORT_KEY)).await;
    assert_eq!(status, 200);
    // A still has 3 forms and 1 prepay use; B expired; D spent out.
    assert_eq!(
        summary,
        json!({"users_with_credentials": 1, "available_sends": {"form": 3, "prepay": 1}, "expiring_within_24h": 0, "subscribe_grants": {}, "long_term_subscribers": {}})
    );
}

/// `YYYY-MM-DD` of today (UTC+8) plus `offset` days.
fn day(offset: i64) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (Utc::now().with_timezone(&tz).date_naive() + chrono::Duration::days(offset))
        .format("%Y-%m-%d")
        .to_string()
}

/// Expiries at the second, so a credential can expire within the test.
fn to_the_second(config: &mut formid_ledger::config::Config) {
    config.credential_expiry_granularity_secs = 1;
}

#[tokio::test]
async fn workload_counts_exactly_embedded() {
    let clock = Arc::new(ManualClock::at_current_second());
    let app = TestApp::spawn_with_ledgers_on(Store::Memory, clock.clone(), to_the_second).await;
    workload_counts_exactly(app, &clock).await;
}

#[tokio::test]
async fn workload_counts_exactly_on_redis() {
    let redis = RedisServer::start();
    let clock = Arc::new(ManualClock::at_current_second());
    let app = TestApp::spawn_with_ledgers_on(Store::Redis(&redis), clock.clone(), to_the_second).await;
    workload_counts_exactly(app, &clock).await;
}

#[tokio::test]
async fn report_queries_are_checked() {
    let app = TestApp::spawn(Store::Memory).await;
    for query in [
        "from=yesterday",
        "from=2026-13-01",
        "from=2026-11-24&to=2026-11-23",
        "from=2024-01-01&to=2026-01-01",
        "colour=red",
    ] {
        let (status, body) = app
            .get(&format!("/v1/reports/usage?{query}"), Some(REPORT_KEY))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{query}"
        );
    }
    let (status, body) = app.get("/v1/reports/usage", Some(REPORT_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(body["days"].as_array().unwrap().len(), 1, "both default to today");
    assert_eq!(body["days"][0]["wechat_errcodes"], json!({"0": 0}));
    assert_eq!(app.get("/v1/reports/summary", Some(SEND_KEY)).await.0, 403);
    assert_eq!(app.get("/v1/reports/usage", None).await.0, 401);
}

#[tokio::test]
async fn the_api_document_covers_every_route() {
    let documented: BTreeSet<(String, String)> = formid_ledger::api::openapi::document_json()
        .parse::<Value>()
        .map(|doc| {
            doc["paths"]
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(path, ops)| {
                    ops.as_object()
                        .unwrap()
                        .keys()
                        .map(move |m| (m.to_uppercase(), path.clone()))
                })
                .collect()
        })
        .unwrap();
    let mounted: BTreeSet<(String, String)> = formid_ledger::api::routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_owned()))
        .collect();
    let pushes = formid_ledger::api::PUSH_PATHS
        .iter()
        .flat_map(|path| ["GET", "POST"].map(|m| (m.to_owned(), (*path).to_owned())));
    assert_eq!(documented, mounted.iter().cloned().chain(pushes).collect());

    // Served as it is generated, and every documented route answers.
    let app = TestApp::spawn(Store::Memory).await;
    let (status, served) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(served["openapi"], "3.1.0");
    for (method, path) in &mounted {
        let path = path.replace("{openid}", "oDoc").replace("{app}", "default");
        let (status, body) = app.call(method, &path, Some(REPORT_KEY), None).await;
        assert!(status != 404 && status != 405, "{method} {path}: {status} {body}");
    }
    let page = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text().await.unwrap().contains("swagger-ui"),
        "the explorer page is served from the binary"
    );
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let app = TestApp::spawn(Store::Memory).await;
    let forms = app.sim.form_ids("oMetrics", 1, None).await;
    app.post(
        "/v1/credentials",
        Some(COLLECT_KEY),
        json!({"openid": "oMetrics", "form_ids": forms}),
    )
    .await;
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oMetrics"))
            .await
            .0,
        200
    );
    assert_eq!(
        app.post("/v1/messages", Some(SEND_KEY), message("oMetrics"))
            .await
            .0,
        409
    );
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    let names: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for expected in [
        "formid_build_info",
        "formid_http_requests_total",
        "formid_http_request_duration_seconds",
        "formid_ledger_operations_total",
        "formid_ledger_operation_duration_seconds",
        "formid_sends_total",
        "formid_wechat_send_errcodes_total",
        "formid_uses_settled_total",
        "formid_credentials_collected_total",
        "formid_token_fetches_total",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from /metrics: {names:?}"
        );
    }
    // Latencies are histograms with buckets (the parser folds `_bucket`
    // lines into the base name).
    let latency = scrape
        .samples
        .iter()
        .find(|s| s.metric == "formid_http_request_duration_seconds")
        .unwrap();
    assert!(
        matches!(latency.value, prometheus_parse::Value::Histogram(_)),
        "{:?}",
        latency.value
    );
    // (Other tests of the process may count other channels beside it.)
    assert!(
        scrape.samples.iter().any(|s| s.metric == "formid_sends_total"
            && s.labels.get("outcome") == Some("sent")
            && s.labels.get("channel") == Some("template")),
        "the template send is counted under its channel"
    );
    assert!(!text.contains("oMetrics"), "labels never carry openids");
}

#[tokio::test]
async fn the_report_command_prints_the_table_from_redis() {
    let redis = RedisServer::start();
    let prefix = support::unique_prefix("cli");
    let app = TestApp::spawn_with(Store::Redis(&redis), |c| c.redis_key_prefix = prefix.clone()).await;
    let forms = app.sim.form_ids("oCli", 2, None).await;
    app.post(
        "/v1/credentials",
        Some(COLLECT_KEY),
        json!({"openid": "oCli", "form_ids": forms}),
    )
    .await;
    // Reading the report flushes this instance's counters to Redis.
    assert_eq!(app.get("/v1/reports/usage", Some(REPORT_KEY)).await.0, 200);
    let run = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"));
        cmd.arg("report")
            .env("REDIS_URL", redis.url())
            .env("REDIS_KEY_PREFIX", &prefix);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let table = run(false);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().next().unwrap().contains("collected f/p"));
    assert!(text.contains(&day(0)) && text.contains("2/0"), "{text}");
    let json_out = run(true);
    let parsed: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(parsed["days"][0]["collected"]["form"], 2);
    let no_store = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
        .arg("report")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert!(
        !no_store.status.success(),
        "the embedded ledger cannot be read from outside"
    );
}

/// Counters not yet flushed are written when the service is stopped with
/// SIGTERM: nothing counted is lost on a clean shutdown.
#[tokio::test]
async fn sigterm_flushes_the_counters() {
    let redis = RedisServer::start();
    let sim = support::app::start_sim(formid_ledger::sim::SimConfig::default());
    let prefix = support::unique_prefix("sigterm");
    // An hour between flushes: only the shutdown flush can write them.
    let mut service =
        support::process::ServiceProcess::start(&redis, &prefix, &sim, &[("USAGE_FLUSH_SECS", "3600")]).await;
    let forms = sim.form_ids("oTerm", 3, None).await;
    let res = reqwest::Client::new()
        .post(format!("{}/v1/credentials", service.base))
        .bearer_auth(COLLECT_KEY)
        .json(&json!({"openid": "oTerm", "form_ids": forms}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(service.terminate(), "the service exits cleanly on SIGTERM");

    let report = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
        .args(["report", "--json", "--from", &day(-1), "--to", &day(1)])
        .env("REDIS_URL", redis.url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let parsed: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(total(parsed["days"].as_array().unwrap())["collected"]["form"], 3);
}

/// The send pipeline's own counts (uses spent, WeChat's answers) fall on
/// the day of the service's clock, the same day as the send they belong
/// to, not on the machine's.
#[tokio::test]
async fn a_sends_counts_fall_on_the_services_day() {
    let sim = support::app::start_sim(formid_ledger::sim::SimConfig::default());
    let clock = Arc::new(formid_ledger::clock::ShiftedClock::default());
    clock.skip(chrono::Duration::days(2));
    let app = TestApp::spawn_on_clock(Store::Memory, clock, |c| TestApp::on_simulator(&sim, c)).await;
    let form = sim.form_ids("oLaterDay", 1, None).await.remove(0);
    let (status, _) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oLaterDay", "credentials": [{"kind": "form", "id": form}]}),
        )
        .await;
    assert_eq!(status, 200);
    let message = json!({"touser": "oLaterDay", "template_id": BUILTIN_TEMPLATES[0],
        "data": {"keyword1": {"value": "later"}}});
    let (status, body) = app.post("/v1/messages", Some(SEND_KEY), message).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/v1/reports/usage?from={}&to={}", day(0), day(2));
    let (status, report) = app.get(&path, Some(REPORT_KEY)).await;
    assert_eq!(status, 200, "{report}");
    let row = report["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == day(2))
        .cloned()
        .unwrap();
    assert_eq!(
        (
            row["sends"]["sent"].clone(),
            row["spent"]["form"].clone(),
            row["wechat_errcodes"]["0"].clone()
        ),
        (json!(1), json!(1), json!(1)),
        "{row}"
    );
}
