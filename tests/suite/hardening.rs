//! What hostile testing from outside found, each held by a test against the
//! real service on a real port: requests an attacker or a careless operator
//! would make must get a clear answer and leave nothing behind.

use crate::support;

use reqwest::Method;
use support::RedisServer;
use support::app::{Store, TestApp};

/// Invented HTTP methods once grew `/metrics` without bound (one label
/// value each). They are answered at once (405 naming the path's methods,
/// 404 for no route) and counted as `other`.
#[tokio::test]
async fn invented_methods_never_become_metric_labels() {
    let app = TestApp::spawn(Store::Memory).await;
    for i in 0..20 {
        let method = Method::from_bytes(format!("M{i}XXXXXXXXXXXXXXXXXXXXXXXX").as_bytes()).unwrap();
        let headers = not_allowed(&app, &method, "/v1/messages").await;
        assert_eq!(headers["allow"], "POST");
        let res = app
            .http
            .request(method, app.url("/no/such/route"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = res.json().await.expect("a JSON error body");
        assert_eq!(body["code"], "not_found");
    }
    let text = app.metrics_text().await;
    assert!(!text.contains("XXXXXXXX"), "an invented method reached /metrics");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    let other: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "formid_http_requests_total" && s.labels.get("method") == Some("other"))
        // Tests running in the same process share the registry; these two
        // routes take invented methods from this test only.
        .filter(|s| matches!(s.labels.get("route"), Some("/v1/messages" | "unmatched")))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(n) => n,
            _ => 0.0,
        })
        .sum();
    assert_eq!(other, 40.0);
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "formid_http_requests_total")
    {
        let route = sample.labels.get("route").unwrap_or_default();
        assert!(
            route == "unmatched" || route.starts_with('/'),
            "route label {route:?} is not a pattern"
        );
    }
}

/// The gauge `name` with these labels.
fn gauge(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => Some(v),
            _ => None,
        })
}

/// A Redis that would evict keys when full drops users' credentials
/// silently: readiness names it and the gauge says so; with `noeviction`
/// neither does.
#[tokio::test]
async fn a_redis_that_would_evict_keys_is_named_in_readiness_and_metrics() {
    let redis = RedisServer::start();
    let mut admin = redis.client();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query::<()>(&mut admin)
        .unwrap();
    let app = TestApp::spawn(Store::Redis(&redis)).await;
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "an evicting Redis still serves: {ready}");
    assert_eq!(ready["warnings"][0]["code"], "store_evicting", "{ready}");
    assert!(
        ready["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("allkeys-lru")
    );
    let text = app.metrics_text().await;
    // Per node: tests in one process share the registry, each on a
    // redis-server of its own.
    let node = redis.addr().to_string();
    assert_eq!(
        gauge(&text, "formid_store_evicting", &[("node", &node)]),
        Some(1.0)
    );

    let safe = RedisServer::start();
    let app = TestApp::spawn(Store::Redis(&safe)).await;
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200);
    assert!(ready.get("warnings").is_none(), "{ready}");
    let text = app.metrics_text().await;
    let node = safe.addr().to_string();
    assert_eq!(
        gauge(&text, "formid_store_evicting", &[("node", &node)]),
        Some(0.0)
    );
}

/// During a Redis outage an official-account send (which spends nothing of
/// the user's, so the first thing to need the store is its access token)
/// used to answer `wechat_unavailable`: it is the store that failed.
#[tokio::test]
async fn a_send_during_a_store_outage_says_the_store_failed() {
    let mut redis = RedisServer::start();
    let clock = std::sync::Arc::new(formid_ledger::clock::ManualClock::at_current_second());
    let app = TestApp::spawn_on_clock(Store::Redis(&redis), clock.clone(), |_| {}).await;
    app.sim
        .post(
            "/sandbox/oa/followers",
            serde_json::json!({"openid": "oOutageFan"}),
        )
        .await;
    let message = serde_json::json!({
        "touser": "oOutageFan",
        "template_id": formid_ledger::sim::BUILTIN_OA_TEMPLATES[0].0,
        "data": {"first": {"value": "hello"}},
    });
    let (status, body) = app
        .post(
            "/v1/official-account/messages",
            Some(support::app::SEND_KEY),
            message.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    redis.kill();
    // Past the moment the token may still be reused from memory.
    clock.advance(chrono::TimeDelta::seconds(2));
    let (status, body) = app
        .post(
            "/v1/official-account/messages",
            Some(support::app::SEND_KEY),
            message,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    assert_eq!(
        app.sim.inbox("oOutageFan").await.len(),
        1,
        "nothing more was sent"
    );
}

/// A body that stalls once held its connection forever (enough of them
/// took the service down): it is cut off after REQUEST_BODY_TIMEOUT_SECS
/// with a JSON 408 and the connection closes; open connections are a gauge.
#[tokio::test]
async fn a_stalled_request_body_is_cut_off_and_its_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Store::Memory, |c| c.request_body_timeout_secs = 1).await;
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 60000\r\n\r\n{\"code\": \"",
        )
        .await
        .unwrap();
    let text = app.metrics_text().await;
    assert!(
        gauge(&text, "formid_http_open_connections", &[]).is_some_and(|n| n >= 2.0),
        "the stalled connection and this one"
    );

    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stalled.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection was closed, not held");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A 405 says which methods the path takes (`Allow`, as HTTP requires).
#[tokio::test]
async fn a_405_names_the_methods_the_path_takes() {
    let app = TestApp::spawn(Store::Memory).await;
    for (method, path, allow) in [
        (Method::DELETE, "/v1/messages", "POST"),
        (Method::PUT, "/v1/templates", "GET, POST"),
        (Method::PATCH, "/v1/apps/default/messages", "POST"),
        (Method::PUT, "/wechat/push/miniprogram", "GET, POST"),
        (Method::from_bytes(b"QUERY").unwrap(), "/readyz", "GET"),
        (Method::from_bytes(b"QUERY").unwrap(), "/dashboard", "GET"),
        (
            Method::from_bytes(b"QUERY").unwrap(),
            "/v1/apps/default/templates",
            "GET, POST",
        ),
        (
            Method::from_bytes(b"QUERY").unwrap(),
            "/wechat/push/news/official-account",
            "GET, POST",
        ),
    ] {
        let headers = not_allowed(&app, &method, path).await;
        assert_eq!(headers["allow"], allow, "{method} {path}");
    }
}

/// `method` on `path` is a 405 with the JSON error body; its headers.
async fn not_allowed(app: &TestApp, method: &Method, path: &str) -> reqwest::header::HeaderMap {
    let res = app
        .http
        .request(method.clone(), app.url(path))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405, "{method} {path}");
    let headers = res.headers().clone();
    let body: serde_json::Value = res.json().await.expect("a JSON error body");
    assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
    headers
}

/// With `REDIS_WAIT_REPLICAS=1` on a master that has no replica connected
/// (say, after a failover left the new master alone), a write fails at once
/// as `store_unavailable`: no `WAIT` is sent to sit out its timeout.
#[tokio::test]
async fn a_write_needing_replicas_the_master_lacks_fails_without_waiting() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(Store::Redis(&redis), |c| {
        c.redis_wait_replicas = 1;
        c.redis_wait_timeout_ms = 500;
    })
    .await;
    let ids = app.sim.form_ids("oAlone", 1, None).await;
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(support::app::COLLECT_KEY),
            serde_json::json!({"openid": "oAlone", "form_ids": ids}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.client())
        .unwrap();
    assert!(!stats.contains("cmdstat_wait:"), "a WAIT was sent:\n{stats}");
    // Readiness says why: the master has none of the one replica asked for.
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(
        (status, ready["code"].as_str()),
        (503, Some("store_unavailable")),
        "{ready}"
    );
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("REDIS_WAIT_REPLICAS is 1") && message.contains("has 0"),
        "{ready}"
    );
}
