//! A service instance dying between reserve and settle loses nothing: the
//! reserved use comes back at its lease deadline; and a use WeChat did
//! accept before the crash is burned on its 41029 and the next one used.
//! Under an Idempotency-Key, an instance dying after WeChat delivered the
//! message never makes the request's retry deliver it again.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use formid_ledger::clock::ManualClock;
use formid_ledger::domain::OpenId;
use formid_ledger::ledger::{LeaseId, Ledger, LedgerSettings, RedisLedger, RedisTarget};
use formid_ledger::sim::{BUILTIN_SUBSCRIBE_TEMPLATES, BUILTIN_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp, start_sim};
use support::process::ServiceProcess;

fn message(touser: &str) -> Value {
    json!({"touser": touser, "template_id": BUILTIN_TEMPLATES[0], "data": {"k": {"value": "v"}}})
}

async fn holdings(app: &TestApp, openid: &str) -> (u64, u64) {
    let (status, body) = app
        .get(&format!("/v1/users/{openid}/credentials"), Some(REPORT_KEY))
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["available_sends"].as_u64().unwrap(),
        body["leased"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_reserved_by_a_killed_instance_comes_back_at_its_deadline() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("crash");
    // The observer reads the books at the instants the test names; the
    // victim works on Redis's own time.
    let clock = Arc::new(ManualClock::at_current_second());
    let observer = TestApp::spawn_with_ledgers_on(Store::Redis(&redis), clock.clone(), |c| {
        TestApp::on_simulator(&sim, c);
        c.redis_key_prefix = prefix.clone();
    })
    .await;
    let ids = sim.form_ids("oCrash", 2, None).await;
    let items: Vec<Value> = ids.iter().map(|id| json!({"kind": "form", "id": id})).collect();
    let (status, _) = observer
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oCrash", "credentials": items}),
        )
        .await;
    assert_eq!(status, 200);

    let mut victim = ServiceProcess::start(
        &redis,
        &prefix,
        &sim,
        &[("SEND_LEASE_SECS", "3"), ("SEND_BUDGET_MS", "2000")],
    )
    .await;
    // The send will hang in WeChat; the process dies while it waits.
    sim.fault(json!({"delay_ms": 30000, "count": 1})).await;
    let url = format!("{}/v1/messages", victim.base);
    let requested = Utc::now();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(SEND_KEY)
            .json(&message("oCrash"))
            .send()
            .await
    });
    let reserved_at = Instant::now();
    let mut leased = false;
    while reserved_at.elapsed() < Duration::from_secs(5) {
        if holdings(&observer, "oCrash").await == (1, 1) {
            leased = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(leased, "the victim reserved a use");
    victim.kill(); // SIGKILL: no shutdown, no settle.
    assert!(
        in_flight.await.unwrap().is_err(),
        "the caller saw the process die"
    );

    // Still held right after the crash and until the 3 s lease runs out
    // (the victim reserved after `requested`), back once it has.
    clock.set(Utc::now());
    assert_eq!(holdings(&observer, "oCrash").await, (1, 1));
    // Ledgers count whole seconds: two after the request is still before
    // the reserve's second + 3.
    clock.set(requested + chrono::Duration::seconds(2));
    assert_eq!(
        holdings(&observer, "oCrash").await,
        (1, 1),
        "held until the deadline"
    );
    clock.set(Utc::now() + chrono::Duration::seconds(4));
    assert_eq!(holdings(&observer, "oCrash").await, (2, 0), "the use came back");
    sim.fault(json!({"count": 0})).await;
    let (status, body) = observer
        .post("/v1/messages", Some(SEND_KEY), message("oCrash"))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_use_wechat_accepted_before_a_crash_is_burned_and_the_next_used() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("accepted");
    let clock = Arc::new(ManualClock::at_current_second());
    let app = TestApp::spawn_with_ledgers_on(Store::Redis(&redis), clock.clone(), |c| {
        TestApp::on_simulator(&sim, c);
        c.redis_key_prefix = prefix.clone();
    })
    .await;
    let older = sim
        .form_ids(
            "oGhost",
            1,
            Some(&(Utc::now() - chrono::Duration::days(1)).to_rfc3339()),
        )
        .await
        .remove(0);
    let newer = sim.form_ids("oGhost", 1, None).await.remove(0);
    let (status, _) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oGhost", "credentials": [
                {"kind": "form", "id": older, "collected_at": (Utc::now() - chrono::Duration::days(1)).to_rfc3339()},
                {"kind": "form", "id": newer},
            ]}),
        )
        .await;
    assert_eq!(status, 200);

    // Another instance reserved the older one, WeChat accepted its message,
    // and the instance died before settling.
    let ledger = RedisLedger::new(
        RedisTarget::Single(redis.url()),
        &prefix,
        LedgerSettings::default(),
    )
    .with_clock(clock.clone());
    let user = OpenId::parse("oGhost").unwrap();
    let reservation = ledger
        .reserve(&user, LeaseId::random(), Duration::from_secs(2))
        .await
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(reservation.id.as_str(), older);
    let (_, token) = sim.get("/sandbox/wechat/cgi-bin/token?grant_type=client_credential&appid=wxsandbox&secret=sandbox-secret").await;
    let (_, answer) = sim
        .post(
            &format!("/sandbox/wechat/cgi-bin/message/wxopen/template/send?access_token={}", token["access_token"].as_str().unwrap()),
            json!({"touser": "oGhost", "template_id": BUILTIN_TEMPLATES[0], "form_id": older, "data": {"k": {"value": "v"}}}),
        )
        .await;
    assert_eq!(answer["errcode"], 0);

    clock.advance(chrono::Duration::milliseconds(2_100)); // its 2 s lease runs out
    let (status, body) = app.post("/v1/messages", Some(SEND_KEY), message("oGhost")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["attempts"], 2,
        "41029 on the ghost use, then the next credential"
    );
    assert_eq!(sim.stats().await["sends"]["41029"], 1);
    assert_eq!(sim.inbox("oGhost").await.len(), 2);
    assert_eq!(holdings(&app, "oGhost").await, (0, 0));
}

/// A send with an Idempotency-Key to `base` (an instance's address).
async fn keyed_send(base: &str, route: &str, key: &str, body: &Value) -> reqwest::Result<(u16, Value)> {
    let res = reqwest::Client::new()
        .post(format!("{base}{route}"))
        .bearer_auth(SEND_KEY)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// Starts an instance that will die mid-send, asks it to send `body` under
/// `key` while WeChat delivers at once but answers late, and kills it once
/// the message is in `openid`'s inbox.
async fn die_after_delivery(
    redis: &RedisServer,
    prefix: &str,
    sim: &support::app::SimClient,
    route: &'static str,
    key: &'static str,
    body: Value,
    openid: &str,
) {
    let mut victim = ServiceProcess::start(
        redis,
        prefix,
        sim,
        &[("SEND_LEASE_SECS", "3"), ("SEND_BUDGET_MS", "2000")],
    )
    .await;
    sim.fault(json!({"delay_answer_ms": 30000, "count": 1})).await;
    let base = victim.base.clone();
    let in_flight = tokio::spawn(async move { keyed_send(&base, route, key, &body).await });
    let started = Instant::now();
    while sim.inbox(openid).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "WeChat never got the send"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill(); // SIGKILL: no answer, no settle, no idempotency record.
    assert!(
        in_flight.await.unwrap().is_err(),
        "the caller saw the process die"
    );
}

/// Retries `body` under `key` on `app` until the dead request's claim (its
/// lease + budget, 5 s) runs out and the retry is answered.
async fn retry_until_answered(app: &TestApp, route: &str, key: &str, body: &Value) -> (u16, Value) {
    let (status, answer) = keyed_send(&app.base, route, key, body).await.unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("request_in_progress")),
        "while the dead request's claim lasts: {answer}"
    );
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, answer) = keyed_send(&app.base, route, key, body).await.unwrap();
        if status != 409 {
            return (status, answer);
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_send_whose_instance_died_after_delivery_is_confirmed_on_retry_not_sent_again() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("keyed-crash");
    let observer = TestApp::spawn_with(Store::Redis(&redis), |c| {
        TestApp::on_simulator(&sim, c);
        c.redis_key_prefix = prefix.clone();
    })
    .await;
    let ids = sim.form_ids("oKeyedCrash", 2, None).await;
    let body = json!({"openid": "oKeyedCrash", "form_ids": ids});
    assert_eq!(
        observer.post("/v1/credentials", Some(COLLECT_KEY), body).await.0,
        200
    );

    let body = message("oKeyedCrash");
    die_after_delivery(
        &redis,
        &prefix,
        &sim,
        "/v1/messages",
        "order-1",
        body.clone(),
        "oKeyedCrash",
    )
    .await;
    assert_eq!(
        holdings(&observer, "oKeyedCrash").await,
        (1, 1),
        "the use is still held"
    );

    // The retry re-presents the same formId: 41029 says the dead
    // instance's attempt was delivered.
    let (status, answer) = retry_until_answered(&observer, "/v1/messages", "order-1", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["confirmed_by"], "41029", "{answer}");
    assert_eq!(sim.inbox("oKeyedCrash").await.len(), 1, "delivered once");
    assert_eq!(
        holdings(&observer, "oKeyedCrash").await,
        (1, 0),
        "one use spent, one left"
    );
    let (status, again) = keyed_send(&observer.base, "/v1/messages", "order-1", &body)
        .await
        .unwrap();
    assert_eq!((status, &again), (200, &answer), "replayed");
    assert_eq!(sim.inbox("oKeyedCrash").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_subscribe_send_whose_instance_died_is_never_sent_again() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("keyed-crash-sub");
    let observer = TestApp::spawn_with(Store::Redis(&redis), |c| {
        TestApp::on_simulator(&sim, c);
        c.redis_key_prefix = prefix.clone();
    })
    .await;
    let template = BUILTIN_SUBSCRIBE_TEMPLATES[0].0;
    let token = observer.login("oKeyedSub").await;
    for _ in 0..2 {
        let (_, answer) = sim
            .post(
                "/sandbox/subscriptions",
                json!({"openid": "oKeyedSub", "results": {template: "accept"}}),
            )
            .await;
        let (status, _) = observer
            .post("/v1/subscriptions", Some(&token), json!({"results": answer}))
            .await;
        assert_eq!(status, 200);
    }
    let body = json!({
        "touser": "oKeyedSub", "template_id": template,
        "data": {
            "thing1": {"value": "配送中"}, "character_string2": {"value": "SF1234567890"},
            "time3": {"value": "2019年10月1日 15:01"}, "phrase4": {"value": "已发货"},
        },
    });
    die_after_delivery(
        &redis,
        &prefix,
        &sim,
        "/v1/subscribe-messages",
        "notify-1",
        body.clone(),
        "oKeyedSub",
    )
    .await;

    // A grant cannot be re-presented to learn what happened: the retry
    // counts it spent and says the outcome is unknown, without a second
    // message, though the user holds another grant.
    let (status, answer) = retry_until_answered(&observer, "/v1/subscribe-messages", "notify-1", &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("wechat_outcome_unknown")),
        "{answer}"
    );
    assert_eq!(sim.inbox("oKeyedSub").await.len(), 1, "delivered once");
    let (_, held) = observer
        .get("/v1/users/oKeyedSub/credentials", Some(REPORT_KEY))
        .await;
    assert_eq!(
        held["subscriptions"],
        json!({template: 1}),
        "one grant spent, one left"
    );
    let (status, again) = keyed_send(&observer.base, "/v1/subscribe-messages", "notify-1", &body)
        .await
        .unwrap();
    assert_eq!((status, &again), (503, &answer), "replayed");
    assert_eq!(sim.inbox("oKeyedSub").await.len(), 1);
}
