//! Subscribe messages over real HTTP, as users and backends see them: grants
//! posted from `wx.requestSubscribeMessage` results, sends that spend them,
//! WeChat's data rules checked before anything is spent, a template the user
//! turns off, the report; and a fleet racing over one user's grants.

use crate::support;

use formid_ledger::sim::{BUILTIN_LONG_TERM_TEMPLATE, BUILTIN_SUBSCRIBE_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp, start_sim};

const A: &str = BUILTIN_SUBSCRIBE_TEMPLATES[0].0;
const B: &str = BUILTIN_SUBSCRIBE_TEMPLATES[1].0;

fn message_a(touser: &str) -> Value {
    json!({
        "touser": touser, "template_id": A, "page": "pages/order/detail?id=42",
        "data": {
            "thing1": {"value": "配送中"}, "character_string2": {"value": "SF1234567890"},
            "time3": {"value": "2019年10月1日 15:01"}, "phrase4": {"value": "已发货"},
        },
    })
}

fn message_b(touser: &str) -> Value {
    json!({
        "touser": touser, "template_id": B,
        "data": {"amount1": {"value": "¥100"}, "date2": {"value": "2015年01月05日"}, "thing3": {"value": "Order 42"}},
    })
}

/// The user answers a popup in the simulator; the mini-program posts the
/// answer as is.
async fn popup(app: &TestApp, token: &str, openid: &str, results: Value) -> Value {
    let (status, answer) = app
        .sim
        .post(
            "/sandbox/subscriptions",
            json!({"openid": openid, "results": results}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, body) = app
        .post("/v1/subscriptions", Some(token), json!({"results": answer}))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn send(app: &TestApp, body: Value) -> (u16, Value) {
    app.post("/v1/subscribe-messages", Some(SEND_KEY), body).await
}

async fn subscriptions(app: &TestApp, openid: &str) -> Value {
    let (status, body) = app
        .get(&format!("/v1/users/{openid}/credentials"), Some(REPORT_KEY))
        .await;
    assert_eq!(status, 200, "{body}");
    body["subscriptions"].clone()
}

#[tokio::test]
async fn a_new_user_grants_sends_and_cancels_and_the_report_counts_it_all() {
    let app = TestApp::spawn(Store::Memory).await;
    let user = "oSubscriber";
    let token = app.login(user).await;

    let first = popup(&app, &token, user, json!({A: "accept", B: "accept"})).await;
    assert_eq!(first["granted"], json!({A: 1, B: 1}));
    popup(&app, &token, user, json!({A: "accept"})).await;
    let third = popup(&app, &token, user, json!({A: "accept", B: "reject"})).await;
    assert_eq!(third["granted"], json!({A: 3}));
    assert_eq!(third["ignored"], json!([{"template_id": B, "result": "reject"}]));
    assert_eq!(subscriptions(&app, user).await, json!({A: 3, B: 1}));

    // Four messages of A: three grants, three sent, then nothing to spend.
    for left in [2, 1, 0] {
        let (status, body) = send(&app, message_a(user)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["grants_left"].as_u64()),
            (Some("sent"), Some(left))
        );
        assert!(
            body["msgid"].as_str().is_some_and(|m| m.parse::<u64>().is_ok()),
            "{body}"
        );
    }
    let (status, body) = send(&app, message_a(user)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_subscribed")),
        "{body}"
    );

    // Data WeChat would refuse: 422 naming field and rule, WeChat not called.
    let calls = app.sim.stats().await["sends"].clone();
    let mut bad = message_b(user);
    bad["data"]["date2"] = json!({"value": "2015-13-45"});
    let (status, body) = send(&app, bad).await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (422, Some("invalid_data"), Some("date2")),
        "{body}"
    );
    assert!(body["rule"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(app.sim.stats().await["sends"], calls, "WeChat was not called");
    assert_eq!(subscriptions(&app, user).await, json!({B: 1}), "nothing spent");

    // The user turns B off in settings: WeChat answers 43101, the grant is
    // burned, and the send is a 409.
    let (status, _) = app
        .sim
        .post(
            "/sandbox/subscriptions/change",
            json!({"openid": user, "template_id": B, "status": "reject"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = send(&app, message_b(user)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_subscribed")),
        "{body}"
    );
    assert_eq!(subscriptions(&app, user).await, json!({}));
    assert_eq!(app.sim.inbox(user).await.len(), 3);

    let (_, report) = app.get("/v1/reports/usage", Some(REPORT_KEY)).await;
    // Receipts arrive by push, later: tests/api_push.rs counts them.
    let mut row = report["days"][0]["subscribe"].clone();
    row.as_object_mut().unwrap().remove("deliveries");
    assert_eq!(
        row,
        json!({"accepted": 4, "rejected": 1, "banned": 0, "filtered": 0, "spent": 3, "burned": 1,
            "long_term": {"accepted": 0, "sent": 0, "ended": 0},
            "sends": {"sent": 3, "not_subscribed": 2, "invalid_data": 1, "unknown_template": 0, "wechat_rejected": 0,
                "wechat_quota_exceeded": 0, "wechat_unavailable": 0, "wechat_outcome_unknown": 0}})
    );
    // The sandbox's change push may burn the grants before the send does
    // (then WeChat is not asked, and no 43101 is counted).
    assert!(
        report["days"][0]["wechat_errcodes"]["43101"]
            .as_u64()
            .unwrap_or(0)
            <= 1
    );
    let (_, summary) = app.get("/v1/reports/summary", Some(REPORT_KEY)).await;
    assert_eq!(summary["subscribe_grants"], json!({}));
}

#[tokio::test]
async fn grants_left_show_in_the_summary_and_a_lost_answer_is_not_sent_again() {
    let app = TestApp::spawn(Store::Memory).await;
    let token = app.login("oLostSub").await;
    popup(&app, &token, "oLostSub", json!({A: "accept"})).await;
    popup(&app, &token, "oLostSub", json!({A: "accept"})).await;
    let (_, summary) = app.get("/v1/reports/summary", Some(REPORT_KEY)).await;
    assert_eq!(summary["subscribe_grants"], json!({A: 2}));

    app.sim.fault(json!({"lose_answer": true, "count": 1})).await;
    let (status, body) = send(&app, message_a("oLostSub")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("wechat_outcome_unknown")),
        "{body}"
    );
    assert_eq!(
        app.sim.inbox("oLostSub").await.len(),
        1,
        "delivered once, not retried"
    );
    assert_eq!(
        subscriptions(&app, "oLostSub").await,
        json!({A: 1}),
        "counted spent"
    );
    let (_, summary) = app.get("/v1/reports/summary", Some(REPORT_KEY)).await;
    assert_eq!(summary["subscribe_grants"], json!({A: 1}));
}

#[tokio::test]
async fn idempotent_subscribe_sends_replay_and_wechat_refusals_keep_the_grant() {
    let app = TestApp::spawn(Store::Memory).await;
    let token = app.login("oKeyed").await;
    popup(&app, &token, "oKeyed", json!({A: "accept"})).await;
    let keyed = |body: Value| {
        app.http
            .post(app.url("/v1/subscribe-messages"))
            .bearer_auth(SEND_KEY)
            .header("Idempotency-Key", "notify-1")
            .json(&body)
            .send()
    };
    app.sim.fault(json!({"errcode": 40037, "count": 1})).await;
    let refused = keyed(message_a("oKeyed")).await.unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        (
            refused["wechat_errcode"].as_i64(),
            refused["wechat_errmsg"].as_str()
        ),
        (Some(40037), Some("injected fault"))
    );
    assert_eq!(subscriptions(&app, "oKeyed").await, json!({A: 1}), "refunded");

    let mut other = message_a("oKeyed");
    other["page"] = json!("pages/index");
    let first = keyed(other.clone()).await.unwrap();
    assert_eq!(first.status(), 422, "the key is taken by the first body");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["code"], "idempotency_key_reused");
    let (status, _) = app.post("/v1/subscribe-messages", Some(SEND_KEY), other).await;
    assert_eq!(status, 200);
    let again = keyed(message_a("oKeyed")).await.unwrap();
    assert_eq!(
        again
            .headers()
            .get("idempotency-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(app.sim.inbox("oKeyed").await.len(), 1);
}

#[tokio::test]
async fn bad_input_is_a_400_and_stores_nothing() {
    let app = TestApp::spawn(Store::Memory).await;
    let token = app.login("oHostile").await;
    let many: serde_json::Map<String, Value> =
        (0..1000).map(|n| (format!("T{n}"), json!("accept"))).collect();
    for body in [
        json!({"results": "accept"}),
        json!({"results": [A]}),
        json!({"results": {"bad template!": "accept"}}),
        json!({"results": {A: 1}}),
        json!({"results": {A: null}}),
        json!({"results": {"errMsg": "requestSubscribeMessage:ok"}}),
        json!({"results": Value::Object(many)}),
        json!({"results": {A: "accept"}, "extra": 1}),
        json!({"openid": "oHostile", "results": {A: "accept"}}),
        json!({}),
    ] {
        let (status, answer) = app.post("/v1/subscriptions", Some(&token), body.clone()).await;
        assert!(status == 400 || status == 403, "{body}: {status} {answer}");
        assert!(answer["code"].is_string(), "{answer}");
    }
    assert_eq!(subscriptions(&app, "oHostile").await, json!({}));
    let (status, _) = app
        .post(
            "/v1/subscriptions",
            Some(COLLECT_KEY),
            json!({"results": {A: "accept"}}),
        )
        .await;
    assert_eq!(status, 400, "an API key must name the openid");
    let (status, body) = app
        .post(
            "/v1/subscriptions",
            Some(COLLECT_KEY),
            json!({"openid": "oHostile", "results": {A: "acceptWithAudio", B: "ban"}}),
        )
        .await;
    assert_eq!((status, &body["granted"]), (200, &json!({A: 1})), "{body}");

    for body in [
        json!({"touser": "oHostile", "template_id": A}),
        json!({"touser": "oHostile", "template_id": "no such!", "data": {}}),
        json!({"touser": "bad openid", "template_id": A, "data": {"thing1": {"value": "x"}}}),
        json!({"touser": "oHostile", "template_id": A, "data": {"thing1": {"value": "x"}}, "lang": "fr"}),
        json!({"touser": "oHostile", "template_id": A, "data": {"thing1": {"value": "x"}}, "miniprogram_state": "beta"}),
        json!({"touser": "oHostile", "template_id": A, "data": {"thing1": {"value": "x"}}, "emphasis_keyword": "x"}),
    ] {
        let (status, answer) = send(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    for data in [
        json!({}),
        json!({"thing1": {"value": ""}}),
        json!({"thing1": {"value": "a\nb"}}),
        json!({"thing1": "x"}),
    ] {
        let (status, answer) = send(
            &app,
            json!({"touser": "oHostile", "template_id": A, "data": data}),
        )
        .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (422, Some("invalid_data")),
            "{data}: {answer}"
        );
    }
    assert_eq!(
        subscriptions(&app, "oHostile").await,
        json!({A: 1}),
        "nothing spent"
    );
}

#[tokio::test]
async fn in_push_mode_posted_results_change_nothing() {
    let app = TestApp::spawn_with(Store::Memory, |c| {
        c.subscribe_grants_from = formid_ledger::config::GrantSource::Push;
    })
    .await;
    let token = app.login("oPushed").await;
    let body = popup(&app, &token, "oPushed", json!({A: "accept"})).await;
    assert_eq!(
        body,
        json!({"granted": {}, "long_term": [], "ignored": [], "source": "push"})
    );
    assert_eq!(subscriptions(&app, "oPushed").await, json!({}));
    let (_, report) = app.get("/v1/reports/usage", Some(REPORT_KEY)).await;
    assert_eq!(report["days"][0]["subscribe"]["accepted"], 0);
}

/// Two instances on one Redis: 60 concurrent sends over 20 grants give
/// exactly 20 messages, and WeChat never says 43101 for a grant we held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_spends_each_grant_once() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("subfleet");
    let mut apps = Vec::new();
    for _ in 0..2 {
        let prefix = prefix.clone();
        apps.push(
            TestApp::spawn_with(Store::Redis(&redis), |c| {
                TestApp::on_simulator(&sim, c);
                c.redis_key_prefix = prefix;
            })
            .await,
        );
    }
    let user = "oPopular";
    for _ in 0..20 {
        let (_, answer) = sim
            .post(
                "/sandbox/subscriptions",
                json!({"openid": user, "results": {A: "accept"}}),
            )
            .await;
        let (status, body) = apps[0]
            .post(
                "/v1/subscriptions",
                Some(COLLECT_KEY),
                json!({"openid": user, "results": answer}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let apps = std::sync::Arc::new(apps);
    let sends: Vec<_> = (0..60)
        .map(|n| {
            let apps = apps.clone();
            tokio::spawn(async move { send(&apps[n % 2], message_a(user)).await })
        })
        .collect();
    let mut sent = 0;
    for task in sends {
        let (status, body) = task.await.unwrap();
        match status {
            200 => sent += 1,
            409 => assert_eq!(body["code"], "not_subscribed"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(sent, 20);
    assert_eq!(sim.inbox(user).await.len(), 20);
    let stats = sim.stats().await;
    assert_eq!(stats["sends"].get("43101"), None, "{stats}");
    assert_eq!(stats["sends"]["0"], 20);
}

/// A long-term subscribe template (WeChat's type 3): the sandbox's own.
const LONG: &str = BUILTIN_LONG_TERM_TEMPLATE.0;

fn message_long(touser: &str) -> Value {
    json!({"touser": touser, "template_id": LONG,
        "data": {"thing1": {"value": "办理进度"}, "phrase2": {"value": "已受理"}}})
}

async fn long_term_subscriptions(app: &TestApp, openid: &str) -> Value {
    let (status, body) = app
        .get(&format!("/v1/users/{openid}/credentials"), Some(REPORT_KEY))
        .await;
    assert_eq!(status, 200, "{body}");
    body["long_term_subscriptions"].clone()
}

#[tokio::test]
async fn a_long_term_template_accepted_once_is_sent_on_until_the_user_turns_it_off() {
    let app = TestApp::spawn(Store::Memory).await;
    let (_, listed) = app.get("/v1/templates?channel=subscribe", Some(REPORT_KEY)).await;
    let listed: Vec<&Value> = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["long_term"] == json!(true))
        .collect();
    assert_eq!(listed.len(), 1, "gettemplate's type 3 is read: {listed:?}");

    let user = "oCitizen";
    let token = app.login(user).await;
    let accepted = popup(&app, &token, user, json!({LONG: "accept", A: "accept"})).await;
    assert_eq!(accepted["granted"], json!({A: 1}));
    assert_eq!(accepted["long_term"], json!([LONG]));

    // One accept, four messages, nothing spent.
    for _ in 0..4 {
        let (status, body) = send(&app, message_long(user)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["long_term"], json!(true), "{body}");
        assert!(body.get("grants_left").is_none(), "{body}");
    }
    assert_eq!(app.sim.inbox(user).await.len(), 4);
    assert_eq!(long_term_subscriptions(&app, user).await, json!([LONG]));
    assert_eq!(subscriptions(&app, user).await, json!({A: 1}));

    // The user turns it off in settings: the next send is a 409.
    let change = |status: &str| json!({"openid": user, "template_id": LONG, "status": status});
    let acknowledged = || async { app.sim.stats().await["pushes"]["acknowledged"].as_u64().unwrap() };
    let pushed_before = acknowledged().await;
    let (status, _) = app
        .sim
        .post("/sandbox/subscriptions/change", change("reject"))
        .await;
    assert_eq!(status, 200);
    let (status, body) = send(&app, message_long(user)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_subscribed")),
        "{body}"
    );
    assert_eq!(long_term_subscriptions(&app, user).await, json!([]));
    // WeChat's pushes may arrive in any order: this one is taken first.
    for _ in 0..100 {
        if acknowledged().await > pushed_before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Turned on again in settings: the change push subscribes it again.
    let (status, _) = app
        .sim
        .post("/sandbox/subscriptions/change", change("accept"))
        .await;
    assert_eq!(status, 200);
    let mut resumed = 0;
    for _ in 0..50 {
        if long_term_subscriptions(&app, user).await == json!([LONG]) {
            resumed += 1;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(resumed, 1, "the change push resubscribed the user");
    let (status, body) = send(&app, message_long(user)).await;
    assert_eq!((status, body["long_term"].clone()), (200, json!(true)), "{body}");

    let (_, report) = app.get("/v1/reports/usage", Some(REPORT_KEY)).await;
    let row = &report["days"][0]["subscribe"];
    assert_eq!(
        row["long_term"],
        json!({"accepted": 2, "sent": 5, "ended": 1}),
        "{row}"
    );
    assert_eq!(
        (row["accepted"].clone(), row["spent"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(row["sends"]["sent"], json!(5));
    let (_, summary) = app.get("/v1/reports/summary", Some(REPORT_KEY)).await;
    assert_eq!(summary["long_term_subscribers"], json!({LONG: 1}));
    assert_eq!(summary["subscribe_grants"], json!({A: 1}));
}
