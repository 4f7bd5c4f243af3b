//! The official account's subscribe notifications over real HTTP: a
//! follower answers the account's popup in the simulator, WeChat pushes the
//! answer (signed, encrypted) to the account's endpoint, and that push is
//! the only thing that grants; each one-time grant pays for exactly one
//! bizsend, a long-term template for as many as the account sends until the
//! follower turns it off; the report counts them on their own channel.

use crate::support;

use std::time::Duration;

use crate::api_push::{configure, pushing_sim, reserved_port};
use formid_ledger::sim::BUILTIN_OA_SUBSCRIBE_TEMPLATES;
use serde_json::{Value, json};
use support::app::{ADMIN_KEY, REPORT_KEY, SEND_KEY, SimClient, Store, TestApp};

const ONE_TIME: &str = BUILTIN_OA_SUBSCRIBE_TEMPLATES[0].0;
const LONG_TERM: &str = BUILTIN_OA_SUBSCRIBE_TEMPLATES[1].0;

/// A service with the official account and its push endpoints (safe mode),
/// listening where the simulator pushes.
async fn service_and_sim() -> (TestApp, SimClient) {
    let (port, base) = reserved_port();
    let sim = pushing_sim(&base);
    let app = TestApp::spawn_with(Store::Memory, |c| {
        configure(&sim, c);
        c.listen = format!("127.0.0.1:{port}");
    })
    .await;
    (app, sim)
}

fn notification(touser: &str, template: &str, n: u32) -> Value {
    let mut data = json!({"thing1": {"value": format!("进度 {n}")}});
    match template {
        LONG_TERM => data["phrase2"] = json!({"value": "已受理"}),
        _ => data["time2"] = json!({"value": "2026年12月8日 10:00"}),
    }
    json!({"touser": touser, "template_id": template, "page": "https://example.com/orders/42", "data": data})
}

async fn send(app: &TestApp, body: Value) -> (u16, Value) {
    app.post("/v1/official-account/subscribe-messages", Some(SEND_KEY), body)
        .await
}

/// The follower answers the account's popup shown in `scene`; waits until
/// the service holds what the pushed answer grants. (The endpoint takes a
/// push identical to one it applied as WeChat's retry of it; two popups
/// answered within one second differ here by their scene.)
async fn popup(
    app: &TestApp,
    sim: &SimClient,
    openid: &str,
    (results, scene): (Value, u32),
    until: impl Fn(&Value) -> bool,
) {
    let (status, body) = sim
        .post(
            "/sandbox/oa/subscriptions",
            json!({"openid": openid, "results": results, "scene": scene}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(app, openid, until).await;
}

async fn held(app: &TestApp, openid: &str) -> Value {
    let path = format!("/v1/apps/default/official-account/subscriptions/{openid}");
    let (status, body) = app.get(&path, Some(REPORT_KEY)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_for(app: &TestApp, openid: &str, until: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = held(app, openid).await;
        if until(&now) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never reached: {now}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_one_time_grant_from_the_popup_pays_for_exactly_one_notification() {
    let (app, sim) = service_and_sim().await;
    let fan = "oFollowerSub";
    // Nothing granted yet: nothing sent, WeChat not asked.
    let (status, body) = send(&app, notification(fan, ONE_TIME, 0)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_subscribed")),
        "{body}"
    );

    // Two popups accepted: two grants, pushed by WeChat to the account.
    popup(&app, &sim, fan, (json!({ONE_TIME: "accept"}), 1), |h| {
        h["subscriptions"][ONE_TIME] == 1
    })
    .await;
    popup(&app, &sim, fan, (json!({ONE_TIME: "accept"}), 2), |h| {
        h["subscriptions"][ONE_TIME] == 2
    })
    .await;
    for (n, left) in [(1, 1), (2, 0)] {
        let (status, body) = send(&app, notification(fan, ONE_TIME, n)).await;
        assert_eq!(
            (status, body["grants_left"].as_u64()),
            (200, Some(left)),
            "{body}"
        );
    }
    let (status, body) = send(&app, notification(fan, ONE_TIME, 3)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_subscribed")),
        "{body}"
    );
    let inbox = sim.inbox(fan).await;
    assert_eq!(inbox.len(), 2, "one bizsend per grant: {inbox:?}");
    assert!(
        inbox.iter().all(|m| m["kind"] == "official_account_subscribe"),
        "{inbox:?}"
    );

    // Data WeChat would refuse is a 422 before anything is spent; a
    // template the account lacks, too.
    popup(&app, &sim, fan, (json!({ONE_TIME: "accept"}), 3), |h| {
        h["subscriptions"][ONE_TIME] == 1
    })
    .await;
    let mut bad = notification(fan, ONE_TIME, 4);
    bad["data"]["time2"] = json!({"value": "25:99"});
    let (status, body) = send(&app, bad).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("time2")), "{body}");
    let unknown = notification(fan, "Xq5qC3Z8lWJtKsN0yS3a8fGmN3n4Y1fT5nQbH7sWq9E", 5);
    let (status, body) = send(&app, unknown).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("unknown_template")),
        "{body}"
    );
    assert_eq!(
        held(&app, fan).await["subscriptions"][ONE_TIME],
        1,
        "nothing spent"
    );

    // The follower turns it off: the pushed change burns the grant.
    sim.post(
        "/sandbox/oa/subscriptions/change",
        json!({"openid": fan, "template_id": ONE_TIME, "status": "reject"}),
    )
    .await;
    wait_for(&app, fan, |h| h["subscriptions"] == json!({})).await;

    // The mini-program's grants are another ledger: none of these are there.
    let (_, user) = app
        .get(&format!("/v1/users/{fan}/credentials"), Some(REPORT_KEY))
        .await;
    assert_eq!(user["subscriptions"], json!({}));

    // The report counts the channel apart; its receipts came by push.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let row = loop {
        let (_, report) = app.get("/v1/reports/usage", Some(REPORT_KEY)).await;
        let row = report["days"][0]["official_account_subscribe"].clone();
        if row["deliveries"]["delivered"] == 2 || std::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (
            row["accepted"].clone(),
            row["spent"].clone(),
            row["burned"].clone()
        ),
        (json!(3), json!(2), json!(1)),
        "{row}"
    );
    assert_eq!(row["sends"]["sent"], 2, "{row}");
    assert_eq!(row["sends"]["not_subscribed"], 2, "{row}");
    assert_eq!(row["deliveries"]["delivered"], 2, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_term_notification_is_sent_on_until_the_follower_turns_it_off() {
    let (app, sim) = service_and_sim().await;
    let fan = "oLongFollower";
    popup(&app, &sim, fan, (json!({LONG_TERM: "accept"}), 1), |h| {
        h["long_term_subscriptions"] == json!([LONG_TERM])
    })
    .await;
    for n in 0..3 {
        let (status, body) = send(&app, notification(fan, LONG_TERM, n)).await;
        assert_eq!((status, body["long_term"].clone()), (200, json!(true)), "{body}");
    }
    assert_eq!(sim.inbox(fan).await.len(), 3);
    sim.post(
        "/sandbox/oa/subscriptions/change",
        json!({"openid": fan, "template_id": LONG_TERM, "status": "reject"}),
    )
    .await;
    wait_for(&app, fan, |h| h["long_term_subscriptions"] == json!([])).await;
    let (status, body) = send(&app, notification(fan, LONG_TERM, 9)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_subscribed")),
        "{body}"
    );
    assert_eq!(sim.inbox(fan).await.len(), 3);
}

/// The official account's subscribe templates are its own: added from the
/// subscribe library through its token, listed apart from the
/// mini-program's, sendable once a follower accepts one, gone once deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_accounts_subscribe_templates_are_managed_under_its_token() {
    let (app, sim) = service_and_sim().await;
    let add = json!({"channel": "official_account_subscribe", "library_id": "99", "keyword_ids": [1, 3]});
    let (status, added) = app.post("/v1/templates", Some(ADMIN_KEY), add).await;
    assert_eq!(status, 201, "{added}");
    let id = added["template_id"].as_str().unwrap().to_owned();
    let listed = |channel: &'static str| {
        let app = &app;
        async move {
            let path = format!("/v1/templates?channel={channel}");
            let (_, list) = app.get(&path, Some(REPORT_KEY)).await;
            list["templates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["template_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert!(listed("official_account_subscribe").await.contains(&id));
    assert!(!listed("subscribe").await.contains(&id));

    let fan = "oNewTemplateFan";
    popup(&app, &sim, fan, (json!({id.as_str(): "accept"}), 1), |h| {
        h["subscriptions"][id.as_str()] == 1
    })
    .await;
    let message = json!({"touser": fan, "template_id": id,
        "data": {"thing1": {"value": "新模板"}, "time3": {"value": "2026-12-08 10:00"}}});
    let (status, body) = send(&app, message.clone()).await;
    assert_eq!(status, 200, "{body}");

    let path = format!("/v1/templates/{id}?channel=official_account_subscribe");
    let (status, _) = app.call("DELETE", &path, Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200);
    let (status, body) = send(&app, message).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("unknown_template")),
        "{body}"
    );
}
