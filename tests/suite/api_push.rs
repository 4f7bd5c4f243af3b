//! WeChat's pushes and the official account (docs/pushes.md): verified push
//! endpoints that apply each push once, never answer a 5xx to hostile input
//! and record nothing unverified; official-account messages from accepted
//! to delivered (or blocked) by the simulator's receipts; push-mode grants;
//! all of it across two instances on one Redis.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use formid_ledger::clock::ShiftedClock;

use formid_ledger::config::{GrantSource, Secret};
use formid_ledger::push::crypto::{self, AesKey};
use formid_ledger::sim::{BUILTIN_OA_TEMPLATES, BUILTIN_SUBSCRIBE_TEMPLATES, PushTargets, SimConfig};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{
    ADMIN_KEY, COLLECT_KEY, REPORT_KEY, SEND_KEY, SimClient, Store, TestApp, start_sim, start_sim_on_clock,
};

const TOKEN: &str = "test-push-token-0123";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const TEMPLATE: &str = BUILTIN_SUBSCRIBE_TEMPLATES[0].0;

/// A service taking pushes in safe mode, with the official account.
pub(crate) fn configure(sim: &SimClient, config: &mut formid_ledger::config::Config) {
    TestApp::on_simulator(sim, config);
    config.wechat_oa_appid = Some("wxsandboxoa".into());
    config.wechat_oa_secret = Some(Secret::new("sandbox-oa-secret"));
    config.wechat_push_token = Some(Secret::new(TOKEN));
    config.wechat_push_aes_key = Some(Secret::new(KEY));
    config.wechat_oa_push_token = Some(Secret::new(TOKEN));
    config.wechat_oa_push_aes_key = Some(Secret::new(KEY));
}

/// A simulator pushing to `base`'s endpoints in safe mode.
pub(crate) fn pushing_sim(base: &str) -> SimClient {
    start_sim(SimConfig {
        push: Some(PushTargets {
            miniprogram_url: Some(format!("{base}/wechat/push/miniprogram")),
            official_account_url: Some(format!("{base}/wechat/push/official-account")),
            token: TOKEN.into(),
            aes_key: Some(KEY.into()),
        }),
        ..SimConfig::default()
    })
}

/// A port the service will listen on, and its base URL, known before it
/// starts (the simulator needs it).
pub(crate) fn reserved_port() -> (u16, String) {
    let port = support::free_port();
    (port, format!("http://127.0.0.1:{port}"))
}

/// A push as WeChat signs it, safe mode with `appid` (or plain without a key).
fn signed(path: &str, message: &str, appid: &str, timestamp: i64) -> (String, String) {
    signed_with_nonce(path, message, appid, timestamp, "8675309")
}

fn signed_with_nonce(
    path: &str,
    message: &str,
    appid: &str,
    timestamp: i64,
    nonce: &str,
) -> (String, String) {
    let ts = timestamp.to_string();
    let encrypt = crypto::encrypt(&AesKey::parse(KEY).unwrap(), message, appid);
    let query = format!(
        "{path}?signature={}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={}",
        crypto::signature(TOKEN, &ts, nonce),
        crypto::msg_signature(TOKEN, &ts, nonce, &encrypt)
    );
    (
        query,
        json!({"ToUserName": "gh_test", "Encrypt": encrypt}).to_string(),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn post_raw(app: &TestApp, path_and_query: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = app
        .http
        .post(app.url(path_and_query))
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn grants(app: &TestApp, openid: &str) -> u64 {
    let (_, body) = app
        .get(&format!("/v1/users/{openid}/credentials"), Some(REPORT_KEY))
        .await;
    body["subscriptions"][TEMPLATE].as_u64().unwrap_or(0)
}

fn popup(openid: &str) -> String {
    json!({"ToUserName": "gh_test", "FromUserName": openid, "CreateTime": now(), "MsgType": "event",
        "Event": "subscribe_msg_popup_event",
        "List": [{"TemplateId": TEMPLATE, "SubscribeStatusString": "accept", "PopupScene": "0"}]})
    .to_string()
}

#[tokio::test]
async fn pushes_are_verified_applied_once_and_never_a_5xx() {
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Memory, |c| {
        configure(&sim, c);
        c.subscribe_grants_from = GrantSource::Push;
    })
    .await;
    let endpoint = "/wechat/push/miniprogram";
    // The console's URL check.
    let ts = now().to_string();
    let check = format!(
        "{endpoint}?signature={}&timestamp={ts}&nonce=1&echostr=hello",
        crypto::signature(TOKEN, &ts, "1")
    );
    let response = app.http.get(app.url(&check)).send().await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.text().await.unwrap()),
        (200, "hello".into())
    );
    let forged = format!(
        "{endpoint}?signature={}&timestamp={ts}&nonce=1&echostr=hello",
        "0".repeat(40)
    );
    assert_eq!(app.http.get(app.url(&forged)).send().await.unwrap().status(), 401);

    // A popup push grants (push mode); WeChat's retry of it does not again.
    let (query, body) = signed(endpoint, &popup("oPushed"), "wxsandbox", now());
    assert_eq!(
        post_raw(&app, &query, body.clone()).await,
        (200, "success".into())
    );
    assert_eq!(grants(&app, "oPushed").await, 1);
    assert_eq!(post_raw(&app, &query, body).await, (200, "success".into()));
    assert_eq!(grants(&app, "oPushed").await, 1, "a retried push is applied once");

    // Everything unverified or unreadable: 4xx, nothing recorded.
    let message = popup("oHostile");
    let hostile: Vec<(String, String, u16, &str)> = vec![
        {
            let (q, b) = signed(endpoint, &message, "wxsomeoneelse", now());
            (q, b, 401, "another appid")
        },
        {
            let (q, b) = signed(endpoint, &message, "wxsandbox", now() - 600);
            (q, b, 401, "a stale timestamp")
        },
        {
            let (q, b) = signed(endpoint, &message, "wxsandbox", now());
            (
                q.replace("nonce=8675309", "nonce=1"),
                b,
                401,
                "a forged signature",
            )
        },
        {
            let (q, _) = signed(endpoint, &message, "wxsandbox", now());
            let plain = q.split("&encrypt_type").next().unwrap().to_owned();
            (plain, message.clone(), 401, "plain where safe mode is set")
        },
        {
            let (q, b) = signed(endpoint, &message, "wxsandbox", now());
            let tampered = b.replacen("Encrypt\":\"", "Encrypt\":\"AAAA", 1);
            (q, tampered, 401, "a tampered ciphertext")
        },
        (endpoint.to_owned(), message.clone(), 401, "no signature at all"),
    ];
    for (query, body, status, why) in hostile {
        let (got, text) = post_raw(&app, &query, body).await;
        assert_eq!(got, status, "{why}: {text}");
    }
    // Verified but not a push WeChat would send.
    for (inner, why) in [
        (
            "<!DOCTYPE lolz [<!ENTITY lol \"lol\">]><xml><ToUserName>&lol;</ToUserName></xml>",
            "DOCTYPE",
        ),
        ("<xml><ToUserName>gh</ToUserName>", "truncated XML"),
        ("{\"ToUserName\": 1}", "JSON of the wrong shape"),
        ("not a push", "neither XML nor JSON"),
    ] {
        let (query, body) = signed(endpoint, inner, "wxsandbox", now());
        let (got, text) = post_raw(&app, &query, body).await;
        assert_eq!(got, 400, "{why}: {text}");
    }
    let (query, _) = signed(endpoint, &message, "wxsandbox", now());
    let (got, text) = post_raw(&app, &query, vec![b'x'; 1 << 20]).await;
    assert_eq!(got, 413, "a 1 MB body");
    let body: Value = serde_json::from_str(&text).expect("a JSON error body");
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(grants(&app, "oHostile").await, 0, "nothing recorded");

    // Client mode ignores popup pushes; push mode ignores the client.
    let body = json!({"openid": "oPushed", "results": {TEMPLATE: "accept"}});
    let (status, answer) = app.post("/v1/subscriptions", Some(COLLECT_KEY), body).await;
    assert_eq!(
        (status, answer["source"].as_str()),
        (200, Some("push")),
        "{answer}"
    );
    assert_eq!(grants(&app, "oPushed").await, 1);
}

/// In plain mode WeChat signs only the URL: one signed URL once carried
/// three different bodies. It is now taken with its first body only; that
/// body again is WeChat's retry, applied once.
#[tokio::test]
async fn a_plain_mode_signed_url_takes_one_body_only() {
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Memory, |c| {
        TestApp::on_simulator(&sim, c);
        c.wechat_push_token = Some(Secret::new(TOKEN));
        c.subscribe_grants_from = GrantSource::Push;
    })
    .await;
    let endpoint = "/wechat/push/miniprogram";
    let ts = now().to_string();
    let url = format!(
        "{endpoint}?signature={}&timestamp={ts}&nonce=4242",
        crypto::signature(TOKEN, &ts, "4242")
    );
    let first = popup("oPlainA");
    assert_eq!(post_raw(&app, &url, first.clone()).await, (200, "success".into()));
    assert_eq!(grants(&app, "oPlainA").await, 1);
    for forged in [popup("oPlainB"), popup("oPlainC")] {
        let (status, body) = post_raw(&app, &url, forged).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("invalid_signature"), "{body}");
    }
    assert_eq!(grants(&app, "oPlainB").await, 0, "a forged body changes nothing");
    assert_eq!(grants(&app, "oPlainC").await, 0);
    // The same URL with the same body is WeChat's retry: success, once.
    assert_eq!(post_raw(&app, &url, first).await, (200, "success".into()));
    assert_eq!(grants(&app, "oPlainA").await, 1);
}

#[tokio::test]
async fn an_endpoint_without_a_token_is_not_there() {
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Memory, |c| TestApp::on_simulator(&sim, c)).await;
    let (status, text) = post_raw(&app, "/wechat/push/official-account?signature=x", "<xml/>").await;
    assert_eq!(status, 404, "{text}");
    let (status, body) = app
        .post("/v1/official-account/messages", Some(SEND_KEY), json!({}))
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_configured")));
}

async fn oa_send(app: &TestApp, openid: &str) -> (u16, Value) {
    let body = json!({"touser": openid, "template_id": BUILTIN_OA_TEMPLATES[0].0,
        "data": {"first": {"value": "Order 42 shipped"}, "keyword1": {"value": "42"}, "remark": {"value": "thanks"}}});
    app.post("/v1/official-account/messages", Some(SEND_KEY), body)
        .await
}

async fn status_of(app: &TestApp, path: &str, wanted: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, receipt) = app.get(path, Some(REPORT_KEY)).await;
        if receipt["status"] == wanted || std::time::Instant::now() > deadline {
            return receipt;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn oa_send_keyed(app: &TestApp, openid: &str, key: &str) -> (u16, Value) {
    let body = json!({"touser": openid, "template_id": BUILTIN_OA_TEMPLATES[0].0,
        "data": {"first": {"value": "Order 42 shipped"}, "keyword1": {"value": "42"}, "remark": {"value": "thanks"}}});
    let response = app
        .http
        .post(app.url("/v1/official-account/messages"))
        .bearer_auth(SEND_KEY)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// WeChat sends one template message per (touser, client_msg_id) within 10
/// minutes, so a message whose answer was lost is sent again with its id:
/// 200 and one message, where it used to be 503 wechat_outcome_unknown.
#[tokio::test]
async fn an_official_account_message_whose_answer_was_lost_is_sent_once() {
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Memory, |c| configure(&sim, c)).await;
    sim.post("/sandbox/oa/followers", json!({"openid": "oLostAnswer"}))
        .await;
    sim.fault(json!({"lose_answer": true, "count": 1})).await;
    let (status, accepted) = oa_send(&app, "oLostAnswer").await;
    assert_eq!(
        (status, accepted["status"].as_str(), accepted["attempts"].as_u64()),
        (200, Some("accepted"), Some(2)),
        "{accepted}"
    );
    let inbox = sim.inbox("oLostAnswer").await;
    assert_eq!(inbox.len(), 1, "one message: {inbox:?}");
    assert_eq!(inbox[0]["msgid"].to_string(), accepted["msgid"].as_str().unwrap());

    // The id is the request's own: the same message in another request is
    // another message, and so is one under another Idempotency-Key.
    assert_eq!(oa_send(&app, "oLostAnswer").await.0, 200);
    assert_eq!(oa_send_keyed(&app, "oLostAnswer", "second").await.0, 200);
    assert_eq!(sim.inbox("oLostAnswer").await.len(), 3);
}

/// A message whose answers were all lost is 503 wechat_outcome_unknown; a
/// retry with its Idempotency-Key sends it again with the same id inside
/// WeChat's 10 minutes (one message, 200), and never after them.
#[tokio::test]
async fn a_lost_official_account_send_is_resolved_inside_wechats_window_only() {
    let clock = Arc::new(ShiftedClock::default());
    let sim = start_sim_on_clock(SimConfig::default(), clock.clone());
    let app = TestApp::spawn_on_clock(Store::Memory, clock.clone(), |c| configure(&sim, c)).await;
    sim.post("/sandbox/oa/followers", json!({"openid": "oWindow"}))
        .await;
    let unknown = (503, Some("wechat_outcome_unknown"));

    sim.fault(json!({"lose_answer": true, "count": 20})).await;
    let (status, body) = oa_send_keyed(&app, "oWindow", "inside").await;
    assert_eq!((status, body["code"].as_str()), unknown, "{body}");
    sim.fault(json!({"count": 0})).await;
    assert_eq!(sim.inbox("oWindow").await.len(), 1, "WeChat took it once");
    let (status, body) = oa_send_keyed(&app, "oWindow", "inside").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    assert_eq!(sim.inbox("oWindow").await.len(), 1, "and only once");

    sim.fault(json!({"lose_answer": true, "count": 20})).await;
    let (status, body) = oa_send_keyed(&app, "oWindow", "past").await;
    assert_eq!((status, body["code"].as_str()), unknown, "{body}");
    sim.fault(json!({"count": 0})).await;
    clock.skip(chrono::Duration::minutes(11));
    let (status, body) = oa_send_keyed(&app, "oWindow", "past").await;
    assert_eq!((status, body["code"].as_str()), unknown, "{body}");
    assert_eq!(sim.inbox("oWindow").await.len(), 2, "never sent again");
}

/// Two instances on one Redis; the simulator pushes to the second, sends go
/// through the first: a receipt is a receipt whichever instance takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_account_messages_go_from_accepted_to_delivered_across_instances() {
    let redis = RedisServer::start();
    let (port, receiver_base) = reserved_port();
    let sim = pushing_sim(&receiver_base);
    let prefix = support::unique_prefix("push");
    let sender = TestApp::spawn_with(Store::Redis(&redis), |c| {
        configure(&sim, c);
        c.redis_key_prefix = prefix.clone();
    })
    .await;
    let receiver = TestApp::spawn_with(Store::Redis(&redis), |c| {
        configure(&sim, c);
        c.redis_key_prefix = prefix.clone();
        c.listen = format!("127.0.0.1:{port}");
    })
    .await;

    sim.post("/sandbox/oa/followers", json!({"openid": "oFollower"}))
        .await;
    sim.post("/sandbox/oa/blocks", json!({"openid": "oBlocker"}))
        .await;
    let (status, accepted) = oa_send(&sender, "oFollower").await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (200, Some("accepted")),
        "{accepted}"
    );
    let msgid = accepted["msgid"].as_str().unwrap();
    let path = format!("/v1/official-account/messages/{msgid}");
    let receipt = status_of(&sender, &path, "delivered").await;
    assert_eq!(receipt["status"], "delivered", "{receipt}");
    assert!(receipt["accepted_at"].is_string() && receipt["finished_at"].is_string());
    assert_eq!(sim.inbox("oFollower").await.len(), 1);

    let (_, blocked) = oa_send(&sender, "oBlocker").await;
    let path = format!(
        "/v1/official-account/messages/{}",
        blocked["msgid"].as_str().unwrap()
    );
    let receipt = status_of(&receiver, &path, "user_blocked").await;
    assert_eq!(
        (receipt["status"].as_str(), receipt["detail"].as_str()),
        (Some("user_blocked"), Some("failed:user block"))
    );

    let (status, refused) = oa_send(&sender, "oStranger").await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("not_following")),
        "{refused}"
    );
    let (status, _) = sender
        .get("/v1/official-account/messages/999999", Some(REPORT_KEY))
        .await;
    assert_eq!(status, 404);

    // A subscribe message's receipt too.
    let answer = sim
        .post(
            "/sandbox/subscriptions",
            json!({"openid": "oSub", "results": {TEMPLATE: "accept"}}),
        )
        .await
        .1;
    let body = json!({"openid": "oSub", "results": answer});
    assert_eq!(
        sender.post("/v1/subscriptions", Some(COLLECT_KEY), body).await.0,
        200
    );
    let message = json!({"touser": "oSub", "template_id": TEMPLATE, "data": {"thing1": {"value": "x"}}});
    let (status, sent) = sender
        .post("/v1/subscribe-messages", Some(SEND_KEY), message)
        .await;
    assert_eq!(status, 200, "{sent}");
    let path = format!("/v1/subscribe-messages/{}", sent["msgid"].as_str().unwrap());
    assert_eq!(
        status_of(&sender, &path, "delivered").await["status"],
        "delivered"
    );

    // Counted once a message in the day's report, once the counters are
    // flushed (every second here).
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = sender.get("/v1/reports/usage", Some(ADMIN_KEY)).await.1;
        if usage["days"][0]["subscribe"]["deliveries"]["delivered"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let day = &usage["days"][0];
    assert_eq!(day["official_account"]["sent"], 2, "{day}");
    assert_eq!(day["official_account"]["not_following"], 1);
    assert_eq!(
        day["official_account"]["deliveries"],
        json!({"delivered": 1, "user_blocked": 1, "failed": 0})
    );
    assert_eq!(day["subscribe"]["deliveries"]["delivered"], 1);
}

/// Push mode: the simulator's popup push grants; a receiver that never
/// answers `success` gets WeChat's retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popups_pushed_by_wechat_grant_and_unanswered_pushes_are_retried() {
    let (port, base) = reserved_port();
    let sim = pushing_sim(&base);
    let app = TestApp::spawn_with(Store::Memory, |c| {
        configure(&sim, c);
        c.listen = format!("127.0.0.1:{port}");
        c.subscribe_grants_from = GrantSource::Push;
    })
    .await;
    sim.post(
        "/sandbox/subscriptions",
        json!({"openid": "oPopup", "results": {TEMPLATE: "accept"}}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while grants(&app, "oPopup").await == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(grants(&app, "oPopup").await, 1);

    // Pushes to where nothing answers are tried three times.
    let (_, nowhere) = reserved_port();
    let lost = pushing_sim(&nowhere);
    lost.post(
        "/sandbox/subscriptions",
        json!({"openid": "oLost", "results": {TEMPLATE: "accept"}}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let pushes = lost.stats().await["pushes"].clone();
        if pushes["sent"] == 3 || std::time::Instant::now() > deadline {
            assert_eq!(pushes, json!({"sent": 3, "retried": 2, "acknowledged": 0}));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A subscribe message's delivery result, as WeChat pushes it.
fn sent_event(openid: &str, msgid: &str) -> String {
    json!({"ToUserName": "gh_test", "FromUserName": openid, "CreateTime": now(), "MsgType": "event",
        "Event": "subscribe_msg_sent_event",
        "List": [{"TemplateId": TEMPLATE, "MsgID": msgid, "ErrorCode": "0", "ErrorStatus": "success"}]})
    .to_string()
}

/// Receipts count in reports only for messages this app sent: one for a
/// msgid it never sent is counted apart and leaves the day's deliveries
/// alone; one that arrives before its send has recorded the msgid is
/// counted once the send does.
#[tokio::test]
async fn receipts_count_only_for_messages_this_app_sent() {
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Memory, |c| configure(&sim, c)).await;
    let push = async |message: String| {
        let (query, body) = signed("/wechat/push/miniprogram", &message, "wxsandbox", now());
        assert_eq!(post_raw(&app, &query, body).await.0, 200);
    };
    push(sent_event("oStranger", "424242")).await;

    // The simulator's first subscribe message will be msgid 1000001: its
    // receipt comes first.
    let popup = json!({"openid": "oEarly", "results": {TEMPLATE: "accept"}});
    assert_eq!(sim.post("/sandbox/subscriptions", popup.clone()).await.0, 200);
    assert_eq!(
        app.post("/v1/subscriptions", Some(COLLECT_KEY), popup).await.0,
        200
    );
    push(sent_event("oEarly", "1000001")).await;
    let message = json!({"touser": "oEarly", "template_id": TEMPLATE, "data": {"thing1": {"value": "x"}}});
    let (status, sent) = app.post("/v1/subscribe-messages", Some(SEND_KEY), message).await;
    assert_eq!((status, sent["msgid"].as_str()), (200, Some("1000001")), "{sent}");
    let (_, receipt) = app.get("/v1/subscribe-messages/1000001", Some(REPORT_KEY)).await;
    assert_eq!(receipt["status"], "delivered", "{receipt}");
    assert!(receipt["accepted_at"].is_string(), "{receipt}");

    let (_, usage) = app.get("/v1/reports/usage", Some(ADMIN_KEY)).await;
    assert_eq!(
        usage["days"][0]["subscribe"]["deliveries"],
        json!({"delivered": 1, "user_blocked": 0, "failed": 0}),
        "the early receipt once, the stranger's not at all"
    );
    let unmatched = "formid_receipts_unmatched_total{app=\"default\",channel=\"subscribe\"} 2";
    assert!(app.metrics_text().await.contains(unmatched), "{unmatched}");
}

/// An official-account message's delivery result, as WeChat pushes it.
fn finish_event(openid: &str, msgid: &str, created: i64) -> String {
    json!({"ToUserName": "gh_test", "FromUserName": openid, "CreateTime": created, "MsgType": "event",
        "Event": "TEMPLATESENDJOBFINISH", "MsgID": msgid.parse::<u64>().unwrap(), "Status": "success"})
    .to_string()
}

/// A campaign's receipts arrive as a storm: 10,000 pushes from 64
/// connections at once, 1,000 of them again (half as WeChat's retry of the
/// same push, half as the same receipt in a push of its own), for 1,000
/// messages this app sent and 8,000 it never did. Each receipt is applied
/// exactly once: 1,000 deliveries, 8,000 unmatched, every message delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_receipts_applies_each_exactly_once() {
    use futures_util::{StreamExt, stream};
    use rand::seq::SliceRandom;

    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let app = TestApp::spawn_with(Store::Redis(&redis), |c| configure(&sim, c)).await;
    let follower = |i: usize| format!("oStorm{:03}", i % 100);
    for i in 0..100 {
        sim.post("/sandbox/oa/followers", json!({"openid": follower(i)}))
            .await;
    }
    let sent: Vec<(String, String)> = stream::iter(0..1_000)
        .map(|i| {
            let app = &app;
            async move {
                let (status, body) = oa_send(app, &follower(i)).await;
                assert_eq!(status, 200, "{body}");
                (follower(i), body["msgid"].as_str().unwrap().to_owned())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let strangers: Vec<(String, String)> = (0..8_000u64)
        .map(|i| ("oStranger".to_owned(), (9_000_000_000 + i).to_string()))
        .collect();
    assert!(sent.iter().all(|(_, msgid)| !msgid.starts_with("9000000")));

    let created = now();
    let receipts: Vec<&(String, String)> = sent.iter().chain(&strangers).collect();
    let mut pushes: Vec<String> = receipts
        .iter()
        .map(|(openid, msgid)| finish_event(openid, msgid, created))
        .collect();
    pushes.extend(
        receipts
            .iter()
            .step_by(9)
            .enumerate()
            .map(|(i, (openid, msgid))| finish_event(openid, msgid, created + (i % 2) as i64)),
    );
    assert_eq!(pushes.len(), 10_000);
    pushes.shuffle(&mut rand::rng());

    let answers: Vec<(u16, String)> = stream::iter(pushes.iter().enumerate())
        .map(|(n, message)| {
            let app = &app;
            async move {
                let nonce = format!("storm{n}");
                let (query, body) = signed_with_nonce(
                    "/wechat/push/official-account",
                    message,
                    "wxsandboxoa",
                    created,
                    &nonce,
                );
                post_raw(app, &query, body).await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, text)| *status != 200 || text != "success")
        .take(3)
        .collect();
    assert!(refused.is_empty(), "pushes not taken: {refused:?}");

    let (_, usage) = app.get("/v1/reports/usage", Some(ADMIN_KEY)).await;
    assert_eq!(
        usage["days"][0]["official_account"]["deliveries"],
        json!({"delivered": 1_000, "user_blocked": 0, "failed": 0}),
        "{usage}"
    );
    let unmatched = "formid_receipts_unmatched_total{app=\"default\",channel=\"official_account\"} 8000\n";
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(unmatched),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("unmatched"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let undelivered: Vec<&String> = stream::iter(&sent)
        .filter_map(|(_, msgid)| {
            let app = &app;
            async move {
                let path = format!("/v1/official-account/messages/{msgid}");
                let (_, receipt) = app.get(&path, Some(REPORT_KEY)).await;
                (receipt["status"] != "delivered").then_some(msgid)
            }
        })
        .collect()
        .await;
    assert!(undelivered.is_empty(), "not delivered: {undelivered:?}");
}
