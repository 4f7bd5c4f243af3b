//! Sending over real HTTP: the service (one or several instances, on a real
//! redis-server) against the WeChat simulator, with WeChat's faults
//! injected. What is asserted is what users see: HTTP answers, what the
//! simulator delivered, what the ledger holds afterwards.

use crate::support;

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{COLLECT_KEY, SEND_KEY, SimClient, Store, TestApp, start_sim};

fn message(touser: &str) -> Value {
    json!({
        "touser": touser,
        "template_id": BUILTIN_TEMPLATES[0],
        "page": "pages/order/detail?id=42",
        "data": {"keyword1": {"value": "Order 42"}, "keyword2": {"value": "shipped"}},
    })
}

fn days_ago(days: i64) -> String {
    (Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Collects credentials for `openid` through the service with a backend key.
async fn collect(app: &TestApp, openid: &str, items: Value) {
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": openid, "credentials": items}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rejected"].as_array().unwrap().is_empty(), "{body}");
}

async fn send(app: &TestApp, openid: &str) -> (u16, Value) {
    app.post("/v1/messages", Some(SEND_KEY), message(openid)).await
}

/// An instance in sandbox mode, with one successful send behind it so the
/// access token is fetched before any fault is injected.
async fn warmed_sandbox() -> TestApp {
    let app = TestApp::spawn(Store::Memory).await;
    let ids = app.sim.form_ids("oWarm", 1, None).await;
    collect(&app, "oWarm", json!([{"kind": "form", "id": ids[0]}])).await;
    assert_eq!(send(&app, "oWarm").await.0, 200);
    app
}

async fn instances_on(redis: &RedisServer, sim: &SimClient, n: usize) -> Vec<TestApp> {
    let prefix = support::unique_prefix("fleet");
    let mut apps = Vec::new();
    for _ in 0..n {
        let prefix = prefix.clone();
        apps.push(
            TestApp::spawn_with(Store::Redis(redis), |c| {
                TestApp::on_simulator(sim, c);
                c.redis_key_prefix = prefix;
            })
            .await,
        );
    }
    apps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_from_two_instances_spend_each_use_once() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let apps = instances_on(&redis, &sim, 2).await;
    let user = "oRace";
    let mut items: Vec<Value> = sim
        .form_ids(user, 10, None)
        .await
        .into_iter()
        .map(|id| json!({"kind": "form", "id": id}))
        .collect();
    for _ in 0..10 {
        items.push(json!({"kind": "prepay", "id": sim.prepay_id(user, None).await}));
    }
    collect(&apps[0], user, json!(items)).await;
    assert_eq!(apps[1].available(user).await, 40);

    let sends = (0..120).map(|n| {
        let app = &apps[n % 2];
        async move { send(app, user).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let sent = answers.iter().filter(|(s, _)| *s == 200).count();
    let none = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == "no_valid_credential")
        .count();
    assert_eq!(
        (sent, none),
        (40, 80),
        "{:?}",
        answers
            .iter()
            .filter(|(s, _)| !matches!(s, 200 | 409))
            .collect::<Vec<_>>()
    );

    let stats = sim.stats().await;
    assert_eq!(stats["sends"]["0"], 40, "{stats}");
    assert!(
        stats["sends"].get("41029").is_none(),
        "no credential was used twice: {stats}"
    );
    assert_eq!(sim.inbox(user).await.len(), 40);
    assert_eq!(apps[0].available(user).await, 0);
}

#[tokio::test]
async fn the_oldest_credential_is_spent_first() {
    let app = TestApp::spawn(Store::Memory).await;
    let user = "oOrder";
    let old_form = app.sim.form_ids(user, 1, Some(&days_ago(3))).await.remove(0);
    let prepay = app.sim.prepay_id(user, Some(&days_ago(2))).await;
    let today = app.sim.form_ids(user, 2, None).await;
    // Posted newest first: the order of arrival must not matter.
    collect(
        &app,
        user,
        json!([
            {"kind": "form", "id": today[0]},
            {"kind": "form", "id": today[1]},
            {"kind": "prepay", "id": prepay, "collected_at": days_ago(2)},
            {"kind": "form", "id": old_form, "collected_at": days_ago(3)},
        ]),
    )
    .await;
    for expected_kind in ["form", "prepay", "prepay", "prepay", "form", "form"] {
        let (status, body) = send(&app, user).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["credential"]["kind"], expected_kind);
    }
    assert_eq!(send(&app, user).await.0, 409);
    let used: Vec<String> = app
        .sim
        .inbox(user)
        .await
        .iter()
        .map(|m| m["form_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(used[..4], [old_form, prepay.clone(), prepay.clone(), prepay]);
    // Today's two may share an expiry minute (then their ids decide the
    // order); either way both come last.
    let mut rest = used[4..].to_vec();
    rest.sort();
    let mut today_sorted = today.clone();
    today_sorted.sort();
    assert_eq!(rest, today_sorted);
}

#[tokio::test]
async fn a_busy_wechat_is_retried_and_one_credential_spent() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oBusy", 2, None).await;
    collect(
        &app,
        "oBusy",
        json!([{"kind": "form", "id": ids[0]}, {"kind": "form", "id": ids[1]}]),
    )
    .await;
    app.sim.fault(json!({"errcode": -1, "count": 2})).await;
    let (status, body) = send(&app, "oBusy").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 3);
    assert_eq!(app.available("oBusy").await, 1);
    assert_eq!(app.sim.inbox("oBusy").await.len(), 1);
}

#[tokio::test]
async fn a_wechat_that_was_never_reached_spends_nothing() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oDown", 1, None).await;
    collect(&app, "oDown", json!([{"kind": "form", "id": ids[0]}])).await;
    app.sim.fault(json!({"errcode": -1, "count": 3})).await;
    let (status, body) = send(&app, "oDown").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("wechat_unavailable")),
        "{body}"
    );
    assert_eq!(app.available("oDown").await, 1, "nothing spent");
    assert!(app.sim.inbox("oDown").await.is_empty());
    // WeChat is back: the same credential sends.
    assert_eq!(send(&app, "oDown").await.0, 200);
}

/// With an Idempotency-Key.
async fn send_with_key(app: &TestApp, openid: &str, key: &str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(SEND_KEY)
        .header("Idempotency-Key", key)
        .json(&message(openid))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_lost_answer_for_a_form_id_is_confirmed_not_sent_again() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oLost", 2, None).await;
    collect(
        &app,
        "oLost",
        json!([{"kind": "form", "id": ids[0]}, {"kind": "form", "id": ids[1]}]),
    )
    .await;
    // WeChat delivers, but its answer never arrives.
    app.sim.fault(json!({"lose_answer": true, "count": 1})).await;
    let (status, body) = send(&app, "oLost").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["confirmed_by"], "41029", "{body}");
    assert_eq!(body["attempts"], 2);
    assert_eq!(app.sim.inbox("oLost").await.len(), 1, "delivered once");
    assert_eq!(app.available("oLost").await, 1, "the other formId untouched");
}

#[tokio::test]
async fn a_lost_answer_for_a_prepay_id_is_not_retried() {
    let app = warmed_sandbox().await;
    let prepay = app.sim.prepay_id("oLostPay", None).await;
    collect(&app, "oLostPay", json!([{"kind": "prepay", "id": prepay}])).await;
    let faults = [
        ("pay-1", json!({"lose_answer": true, "count": 1})),
        ("pay-2", json!({"http_status": 502, "count": 1})),
    ];
    for (key, fault) in faults {
        app.sim.fault(fault.clone()).await;
        let (status, body) = send_with_key(&app, "oLostPay", key).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("wechat_outcome_unknown")),
            "{fault}: {body}"
        );
    }
    // The lost answer was a delivery, the 502 was not; neither was retried,
    // and both uses count as spent.
    assert_eq!(app.sim.inbox("oLostPay").await.len(), 1);
    assert_eq!(app.available("oLostPay").await, 1);
    // The same key replays the answer; nothing is sent again.
    let (status, body) = send_with_key(&app, "oLostPay", "pay-1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("wechat_outcome_unknown"))
    );
    assert_eq!(app.sim.inbox("oLostPay").await.len(), 1);
    assert_eq!(app.available("oLostPay").await, 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_resolved_by_a_retry_with_the_same_key() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oPending", 2, None).await;
    collect(
        &app,
        "oPending",
        json!([{"kind": "form", "id": ids[0]}, {"kind": "form", "id": ids[1]}]),
    )
    .await;
    // Every answer is lost, the re-checks' too: the outcome stays unknown.
    app.sim.fault(json!({"lose_answer": true, "count": 3})).await;
    let (status, body) = send_with_key(&app, "oPending", "order-7").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("wechat_outcome_unknown")),
        "{body}"
    );
    assert_eq!(app.sim.inbox("oPending").await.len(), 1);
    assert_eq!(
        app.available("oPending").await,
        1,
        "the formId is held, not refunded"
    );

    // The backend retries with the same key: the held formId is presented
    // again, found used, and the send is confirmed, not repeated.
    let (status, body) = send_with_key(&app, "oPending", "order-7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["confirmed_by"], "41029");
    let (status, again) = send_with_key(&app, "oPending", "order-7").await;
    assert_eq!((status, &again), (200, &body));
    assert_eq!(app.sim.inbox("oPending").await.len(), 1, "delivered once");
    assert_eq!(app.available("oPending").await, 1);
}

#[tokio::test]
async fn a_dropped_call_is_checked_with_the_same_form_id() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oDropped", 1, None).await;
    collect(&app, "oDropped", json!([{"kind": "form", "id": ids[0]}])).await;
    // The connection closes before WeChat processes anything.
    app.sim.fault(json!({"drop": true, "count": 1})).await;
    let (status, body) = send(&app, "oDropped").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.get("confirmed_by"), None, "{body}");
    assert_eq!(body["attempts"], 2);
    assert_eq!(app.sim.inbox("oDropped").await.len(), 1);
}

#[tokio::test]
async fn answers_to_retry_later_say_when() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oLater", 1, None).await;
    collect(&app, "oLater", json!([{"kind": "form", "id": ids[0]}])).await;
    let post = |key: &'static str| {
        app.http
            .post(app.url("/v1/messages"))
            .bearer_auth(SEND_KEY)
            .header("idempotency-key", key)
            .json(&message("oLater"))
            .send()
    };
    let retry_after = |res: &reqwest::Response| -> Option<u64> {
        res.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().expect("delta-seconds"))
    };
    // The daily quota: until midnight in Beijing, on the answer and on its replay.
    app.sim.fault(json!({"errcode": 45009, "count": 1})).await;
    let first = post("quota").await.unwrap();
    assert_eq!(first.status(), 429);
    let wait = retry_after(&first).expect("a 429 says when");
    assert!((1..=86_400).contains(&wait), "{wait}");
    let replay = post("quota").await.unwrap();
    assert_eq!(replay.headers().get("idempotency-replayed").unwrap(), "true");
    assert_eq!(replay.status(), 429);
    assert!(retry_after(&replay).is_some_and(|w| w <= wait));
    // WeChat busy on every attempt: 503 wechat_unavailable, worth a retry in seconds.
    app.sim.fault(json!({"errcode": -1, "count": 10})).await;
    let busy = post("busy").await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(retry_after(&busy), Some(5));
    // Neither spent the formId.
    assert_eq!(app.available("oLater").await, 1);
}

#[tokio::test]
async fn refusals_are_mapped_and_refunded() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oRefused", 1, None).await;
    collect(&app, "oRefused", json!([{"kind": "form", "id": ids[0]}])).await;
    for (fault, status, code) in [
        (
            json!({"errcode": 45009, "count": 1}),
            429,
            "wechat_quota_exceeded",
        ),
        (json!({"errcode": 40037, "count": 1}), 422, "wechat_rejected"),
        (json!({"errcode": 47003, "count": 1}), 422, "wechat_rejected"),
    ] {
        app.sim.fault(fault.clone()).await;
        let (got, body) = send(&app, "oRefused").await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{fault}: {body}"
        );
        if status == 422 {
            assert_eq!(body["wechat_errcode"], fault["errcode"]);
        }
        assert_eq!(app.available("oRefused").await, 1, "{fault}: refunded");
    }
    // A template the account does not have: refused before WeChat is
    // called (its list is cached; docs/api.md).
    let mut unknown = message("oRefused");
    unknown["template_id"] = json!("NoSuchTemplate_0123456789");
    let (status, body) = app.post("/v1/messages", Some(SEND_KEY), unknown).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("unknown_template")),
        "{body}"
    );
    assert_eq!(app.available("oRefused").await, 1);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_and_the_send_goes_through() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oToken", 1, None).await;
    collect(&app, "oToken", json!([{"kind": "form", "id": ids[0]}])).await;
    let fetches_before = app.sim.stats().await["token_fetches"].as_u64().unwrap();
    app.sim.fault(json!({"errcode": 40001, "count": 1})).await;
    let (status, body) = send(&app, "oToken").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 2);
    assert_eq!(
        app.sim.stats().await["token_fetches"].as_u64().unwrap(),
        fetches_before + 1
    );
}

#[tokio::test]
async fn an_unknown_credential_is_burned_and_the_next_one_used() {
    let app = warmed_sandbox().await;
    let good = app.sim.form_ids("oBurn", 1, None).await.remove(0);
    // Never issued by WeChat, and older: it is tried first.
    collect(
        &app,
        "oBurn",
        json!([
            {"kind": "form", "id": "0123456789abcdef0123456789abcdef", "collected_at": days_ago(1)},
            {"kind": "form", "id": good},
        ]),
    )
    .await;
    let (status, body) = send(&app, "oBurn").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 2);
    assert_eq!(app.available("oBurn").await, 0);
    assert_eq!(app.sim.stats().await["sends"]["41028"], 1);
}

#[tokio::test]
async fn idempotent_requests_replay_and_spend_nothing_again() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oIdem", 3, None).await;
    let items: Vec<Value> = ids.iter().map(|id| json!({"kind": "form", "id": id})).collect();
    collect(&app, "oIdem", json!(items)).await;
    let post = |key: &'static str, body: Value| {
        let req = app
            .http
            .post(app.url("/v1/messages"))
            .bearer_auth(SEND_KEY)
            .header("idempotency-key", key)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let replayed = res.headers().contains_key("idempotency-replayed");
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap(),
                replayed,
            )
        }
    };
    let (status, first, replayed) = post("order-42-shipped", message("oIdem")).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    let (status, again, replayed) = post("order-42-shipped", message("oIdem")).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, first);
    assert_eq!(app.available("oIdem").await, 2, "the replay spent nothing");
    assert_eq!(app.sim.inbox("oIdem").await.len(), 1);

    let mut other = message("oIdem");
    other["data"]["keyword2"] = json!({"value": "delivered"});
    let (status, body, _) = post("order-42-shipped", other).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );

    // A second request while the first still runs.
    app.sim.fault(json!({"delay_ms": 1500, "count": 1})).await;
    let slow = tokio::spawn(post("order-43", message("oIdem")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body, _) = post("order-43", message("oIdem")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("request_in_progress"))
    );
    assert_eq!(slow.await.unwrap().0, 200);
    assert_eq!(app.available("oIdem").await, 1);

    // Bad keys are refused before anything happens.
    let res = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(SEND_KEY)
        .header("idempotency-key", "")
        .json(&message("oIdem"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_hanging_wechat_is_given_up_on_in_time() {
    let app = warmed_sandbox().await;
    let ids = app.sim.form_ids("oHang", 1, None).await;
    collect(&app, "oHang", json!([{"kind": "form", "id": ids[0]}])).await;
    app.sim.fault(json!({"delay_ms": 60000, "count": 10})).await;
    let started = Instant::now();
    let (status, body) = send(&app, "oHang").await;
    // A call that timed out may have been delivered: the formId is held.
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("wechat_outcome_unknown")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
    app.sim.fault(json!({"count": 0})).await;
    assert_eq!(app.available("oHang").await, 0);
    assert!(app.sim.inbox("oHang").await.is_empty());
}

#[tokio::test]
async fn send_input_is_checked_before_anything_is_spent() {
    let app = TestApp::spawn(Store::Memory).await;
    collect(&app, "oInput", json!([{"kind": "form", "id": "abc"}])).await;
    let mut cases = Vec::new();
    for (field, value) in [
        ("touser", json!("o{bad}")),
        ("touser", json!(5)),
        ("template_id", json!("has space")),
        ("data", json!("text")),
        ("page", json!("")),
        ("page", json!("a\nb")),
        ("emphasis_keyword", json!("k".repeat(200))),
    ] {
        let mut body = message("oInput");
        body[field] = value;
        cases.push(body);
    }
    let mut extra = message("oInput");
    extra["colour"] = json!("red");
    cases.push(extra);
    cases.push(json!({"touser": "oInput"}));
    for body in cases {
        let (status, answer) = app.post("/v1/messages", Some(SEND_KEY), body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    assert_eq!(
        app.post("/v1/messages", Some(COLLECT_KEY), message("oInput"))
            .await
            .0,
        403
    );
    assert_eq!(app.post("/v1/messages", None, message("oInput")).await.0, 401);
    assert_eq!(app.available("oInput").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_tokens_are_shared_by_the_fleet() {
    let redis = RedisServer::start();
    let ttl = 3;
    let sim = start_sim(SimConfig {
        token_ttl_secs: ttl,
        token_overlap_secs: 1,
        ..SimConfig::default()
    });
    let apps = instances_on(&redis, &sim, 3).await;
    let user = "oRotate";
    let ids = sim.form_ids(user, 200, None).await;
    for chunk in ids.chunks(100) {
        let items: Vec<Value> = chunk.iter().map(|id| json!({"kind": "form", "id": id})).collect();
        collect(&apps[0], user, json!(items)).await;
    }
    let started = Instant::now();
    let fetches_at_start = sim.stats().await["token_fetches"].as_u64().unwrap();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let round = futures_util::future::join_all(apps.iter().map(|app| send(app, user))).await;
        for (status, body) in round {
            assert_eq!(status, 200, "every send succeeds: {body}");
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fetches = sim.stats().await["token_fetches"].as_u64().unwrap() - fetches_at_start;
    // One fetch per refresh cycle (80 % of the ttl) for the whole fleet; three
    // uncoordinated instances would need at least three per cycle.
    let cycles = elapsed / (ttl as f64 * 0.8);
    assert!(sent > 30);
    assert!(
        (fetches as f64) <= cycles + 2.0,
        "{fetches} fetches in {cycles:.1} cycles"
    );
    assert!(
        (fetches as f64) >= cycles - 2.0,
        "{fetches} fetches in {cycles:.1} cycles"
    );
}

/// `WECHAT_TOKEN_MODE=stable`: tokens come from /cgi-bin/stable_token, and a
/// rejected one is replaced with force_refresh.
#[tokio::test]
async fn stable_tokens_are_used_and_force_refreshed_after_a_rejection() {
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Memory, |c| {
        TestApp::on_simulator(&sim, c);
        c.wechat_token_mode = formid_ledger::config::TokenMode::Stable;
    })
    .await;
    let ids = sim.form_ids("oStable", 2, None).await;
    collect(
        &app,
        "oStable",
        json!([{"kind": "form", "id": ids[0]}, {"kind": "form", "id": ids[1]}]),
    )
    .await;
    assert_eq!(send(&app, "oStable").await.0, 200);
    let fetches = sim.stats().await["token_fetches"].as_u64().unwrap();
    // A plain stable_token call would return the same token; after 40001 the
    // service forces a new one and the retry goes through.
    sim.fault(json!({"errcode": 40001, "count": 1})).await;
    let (status, body) = send(&app, "oStable").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 2);
    assert_eq!(sim.stats().await["token_fetches"].as_u64().unwrap(), fetches + 1);
}

/// The whole service on a 3-node Redis Cluster: ledger books, the shared
/// token, idempotency records and report counters all live in their own
/// slots, one key per command.
#[tokio::test]
async fn the_service_runs_on_a_redis_cluster() {
    let cluster = support::RedisCluster::start(3);
    let nodes = cluster.nodes();
    let app = TestApp::spawn_with(Store::Memory, |c| c.redis_cluster_nodes = nodes).await;
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!((status, ready["store"].as_str()), (200, Some("redis-cluster")));
    for n in 0..12 {
        let user = format!("oCluster{n}");
        let ids = app.sim.form_ids(&user, 2, None).await;
        collect(
            &app,
            &user,
            json!([{"kind": "form", "id": ids[0]}, {"kind": "form", "id": ids[1]}]),
        )
        .await;
        let req = app
            .http
            .post(app.url("/v1/messages"))
            .bearer_auth(SEND_KEY)
            .header("idempotency-key", format!("cluster-{n}"))
            .json(&message(&user));
        let first = req.try_clone().unwrap().send().await.unwrap();
        assert_eq!(first.status(), 200);
        let replay = req.send().await.unwrap();
        assert_eq!(
            (
                replay.status().as_u16(),
                replay.headers().contains_key("idempotency-replayed")
            ),
            (200, true)
        );
        assert_eq!(app.available(&user).await, 1);
    }
    let (status, report) = app.get("/v1/reports/usage", Some(support::app::REPORT_KEY)).await;
    assert_eq!(status, 200, "{report}");
    let (status, summary) = app
        .get("/v1/reports/summary", Some(support::app::REPORT_KEY))
        .await;
    assert_eq!(status, 200);
    assert_eq!(summary["available_sends"]["form"], 12);
    assert_eq!(summary["users_with_credentials"], 12);
    let keys: u64 = cluster
        .servers()
        .iter()
        .map(|s| redis::cmd("DBSIZE").query::<u64>(&mut s.client()).unwrap())
        .sum();
    assert!(keys >= 12, "books, token, idempotency and counter keys: {keys}");
}
