//! A service instance dying between reserve and settle loses nothing: the
//! reserved use comes back at its lease deadline; and a use WeChat did
//! accept before the crash is burned on its 41029 and the next one used.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use formid_ledger::domain::OpenId;
use formid_ledger::ledger::{LeaseId, Ledger, LedgerSettings, RedisLedger, RedisTarget};
use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig};
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
    let observer = TestApp::spawn_with(Store::Redis(&redis), |c| {
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

    // Still held right after the crash, back once the 3 s lease runs out.
    assert_eq!(holdings(&observer, "oCrash").await, (1, 1));
    tokio::time::sleep(Duration::from_millis(3200).saturating_sub(reserved_at.elapsed())).await;
    let mut back = false;
    for _ in 0..40 {
        if holdings(&observer, "oCrash").await == (2, 0) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "the use came back: {:?}",
        holdings(&observer, "oCrash").await
    );
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
    let app = TestApp::spawn_with(Store::Redis(&redis), |c| {
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
    );
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

    tokio::time::sleep(Duration::from_millis(2100)).await;
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
