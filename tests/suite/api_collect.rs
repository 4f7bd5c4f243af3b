//! The collection API over real HTTP: login, ingest by users and backends,
//! inspection, authentication, and every class of bad input. Each test runs
//! against the embedded ledger and against a real redis-server.

use crate::support;

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{ADMIN_KEY, COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp};

struct Fixture {
    app: TestApp,
    _redis: Option<RedisServer>,
}

async fn memory() -> Fixture {
    Fixture {
        app: TestApp::spawn(Store::Memory).await,
        _redis: None,
    }
}

async fn redis() -> Fixture {
    let server = RedisServer::start();
    let app = TestApp::spawn(Store::Redis(&server)).await;
    Fixture {
        app,
        _redis: Some(server),
    }
}

macro_rules! both_ledgers {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(super::memory().await).await })*
        }
        mod redis_server {
            $(#[tokio::test] async fn $name() { super::$name(super::redis().await).await })*
        }
    };
}

both_ledgers!(
    login_issues_a_token_for_the_user,
    login_maps_wechat_errors,
    users_collect_for_themselves,
    backends_collect_for_any_openid,
    each_item_is_judged_and_counted,
    future_collection_times_are_clamped,
    a_hundred_items_at_most,
    inspection_orders_by_expiry_and_hides_ids,
    authentication_matrix,
    malformed_bodies_store_nothing,
    hostile_openids_are_refused,
    unknown_routes_and_methods_are_json,
    health_and_readiness,
);

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn login_issues_a_token_for_the_user(f: Fixture) {
    let app = &f.app;
    let code = app.sim.login_code("oLogin1").await;
    let (status, body) = app.post("/v1/sessions", None, json!({"code": code})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["openid"], "oLogin1");
    assert_eq!(body["expires_in"], 7 * 86_400);
    assert!(
        body.get("session_key").is_none(),
        "the session_key never leaves the service"
    );
    assert!(!body.to_string().contains("session_key"));
    // The same code again: WeChat says 40163.
    let (status, body) = app.post("/v1/sessions", None, json!({"code": code})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_code")));
    // An unknown code: 40029.
    let (status, body) = app
        .post("/v1/sessions", None, json!({"code": "0a1b2c3d4e5f"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_code")));
}

async fn login_maps_wechat_errors(f: Fixture) {
    let app = &f.app;
    for (fault, status, code) in [
        (json!({"errcode": -1, "count": 1}), 503, "wechat_unavailable"),
        (json!({"errcode": 45011, "count": 1}), 429, "rate_limited"),
        (json!({"errcode": 40226, "count": 1}), 403, "user_blocked"),
        (json!({"http_status": 502, "count": 1}), 503, "wechat_unavailable"),
        (json!({"drop": true, "count": 1}), 503, "wechat_unavailable"),
    ] {
        let login = app.sim.login_code("oBusy").await;
        app.sim.fault(fault.clone()).await;
        let (got, body) = app.post("/v1/sessions", None, json!({"code": login})).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{fault}: {body}"
        );
    }
    // Faults spent, the next login works.
    app.login("oBusy").await;
}

async fn users_collect_for_themselves(f: Fixture) {
    let app = &f.app;
    let token = app.login("oUser1").await;
    let ids = app.sim.form_ids("oUser1", 3, None).await;
    let (status, body) = app
        .post("/v1/credentials", Some(&token), json!({"form_ids": ids}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 3, "duplicates": 0, "evicted": 0, "rejected": [], "available_sends": 3})
    );
    let prepay = app.sim.prepay_id("oUser1", None).await;
    let (_, body) = app
        .post(
            "/v1/credentials",
            Some(&token),
            json!({"credentials": [{"kind": "prepay", "id": prepay}]}),
        )
        .await;
    assert_eq!(body["available_sends"], 6);
    // A user cannot collect for someone else.
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(&token),
            json!({"openid": "oOther", "form_ids": ["abc"]}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(app.available("oOther").await, 0);
}

async fn backends_collect_for_any_openid(f: Fixture) {
    let app = &f.app;
    let prepay = app.sim.prepay_id("oPayer", None).await;
    let body = json!({"openid": "oPayer", "credentials": [{"kind": "prepay", "id": prepay}]});
    for key in [COLLECT_KEY, ADMIN_KEY] {
        let (status, answer) = app.post("/v1/credentials", Some(key), body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(app.available("oPayer").await, 3);
    let (status, answer) = app
        .post("/v1/credentials", Some(COLLECT_KEY), json!({"form_ids": ["abc"]}))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_request")),
        "openid is required"
    );
}

async fn each_item_is_judged_and_counted(f: Fixture) {
    let app = &f.app;
    let ids = app.sim.form_ids("oMixed", 2, None).await;
    let long_ago = rfc3339(Utc::now() - Duration::days(7));
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oMixed", "credentials": [
                {"kind": "form", "id": ids[0]},
                {"kind": "form", "id": ids[0]},
                {"kind": "form", "id": "the formId is a mock one"},
                {"kind": "form", "id": "requestFormId:fail deny"},
                {"kind": "form", "id": "has space"},
                {"kind": "form", "id": "x".repeat(129)},
                {"kind": "form", "id": ""},
                {"kind": "form", "id": ids[1], "collected_at": long_ago},
                {"kind": "coupon", "id": "abc"},
                {"kind": "form", "id": "undefined"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "duplicates": 1, "evicted": 0, "available_sends": 1, "rejected": [
            {"index": 2, "reason": "mock_form_id"},
            {"index": 3, "reason": "mock_form_id"},
            {"index": 4, "reason": "invalid_id"},
            {"index": 5, "reason": "invalid_id"},
            {"index": 6, "reason": "invalid_id"},
            {"index": 7, "reason": "expired"},
            {"index": 8, "reason": "invalid_kind"},
            {"index": 9, "reason": "mock_form_id"},
        ]})
    );
    // Posting it again is a duplicate and changes nothing.
    let (_, again) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oMixed", "form_ids": [ids[0]]}),
        )
        .await;
    assert_eq!(again["duplicates"], 1);
    assert_eq!(again["available_sends"], 1);
}

async fn future_collection_times_are_clamped(f: Fixture) {
    let app = &f.app;
    let before = Utc::now();
    let future = rfc3339(before + Duration::days(30));
    let (status, _) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oFuture", "credentials": [{"kind": "form", "id": "f1", "collected_at": future}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, held) = app.get("/v1/users/oFuture/credentials", Some(REPORT_KEY)).await;
    let expires =
        chrono::DateTime::parse_from_rfc3339(held["credentials"][0]["expires_at"].as_str().unwrap()).unwrap();
    // now + 7 days − 1 h margin, rounded down to the minute; not 30 days out.
    let expected = before + Duration::days(7) - Duration::hours(1);
    let early = (expected - expires.with_timezone(&Utc)).num_seconds();
    assert!((-5..=65).contains(&early), "{expires} vs {expected}");
    assert_eq!(expires.timestamp() % 60, 0, "expiries fall on the minute");
}

async fn a_hundred_items_at_most(f: Fixture) {
    let app = &f.app;
    let ids: Vec<String> = (0..101).map(|n| format!("id{n}")).collect();
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oMany", "form_ids": ids}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("too_many_items")));
    assert_eq!(app.available("oMany").await, 0, "nothing stored");
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oMany", "form_ids": ids[..100]}),
        )
        .await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(100)));
}

async fn inspection_orders_by_expiry_and_hides_ids(f: Fixture) {
    let app = &f.app;
    let two_days_ago = rfc3339(Utc::now() - Duration::days(2));
    let three_days_ago = rfc3339(Utc::now() - Duration::days(3));
    app.post(
        "/v1/credentials",
        Some(COLLECT_KEY),
        json!({"openid": "oInspect", "credentials": [
            {"kind": "form", "id": "today"},
            {"kind": "prepay", "id": "wxTwoDaysAgo", "collected_at": two_days_ago},
            {"kind": "form", "id": "threeDaysAgo", "collected_at": three_days_ago},
        ]}),
    )
    .await;
    let (status, body) = app.get("/v1/users/oInspect/credentials", Some(REPORT_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "oInspect");
    assert_eq!(body["available_sends"], 5);
    let kinds: Vec<_> = body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].clone(), c["uses_left"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("form"), json!(1)),
            (json!("prepay"), json!(3)),
            (json!("form"), json!(1))
        ]
    );
    for hidden in ["today", "wxTwoDaysAgo", "threeDaysAgo"] {
        assert!(!body.to_string().contains(hidden), "ids are never shown");
    }
    let (status, body) = app.get("/v1/users/oNobody/credentials", Some(REPORT_KEY)).await;
    assert_eq!((status, body["available_sends"].as_u64()), (200, Some(0)));
}

async fn authentication_matrix(f: Fixture) {
    let app = &f.app;
    let user = app.login("oAuth").await;
    let ingest = json!({"openid": "oAuth", "form_ids": ["abc"]});
    let forged = {
        let (body, _) = user.rsplit_once('.').unwrap();
        format!("{body}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    let tampered = user.replacen("oAuth", "oEvil", 1);
    for (bearer, status) in [
        (None, 401),
        (Some("not-a-key"), 401),
        (Some("st1.garbage"), 401),
        (Some(forged.as_str()), 401),
        (Some(tampered.as_str()), 401),
        (Some(SEND_KEY), 403),
        (Some(REPORT_KEY), 403),
        (Some(COLLECT_KEY), 200),
    ] {
        let (got, body) = app.post("/v1/credentials", bearer, ingest.clone()).await;
        assert_eq!(got, status, "{bearer:?}: {body}");
        let code = match status {
            401 => "unauthorized",
            403 => "forbidden",
            _ => continue,
        };
        assert_eq!(body["code"], code);
    }
    // A header that is not Bearer.
    let res = app
        .http
        .post(app.url("/v1/credentials"))
        .header("authorization", "Basic YTpi")
        .json(&ingest)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Users may not read reports; a report key may.
    assert_eq!(app.get("/v1/users/oAuth/credentials", Some(&user)).await.0, 403);
    assert_eq!(
        app.get("/v1/users/oAuth/credentials", Some(COLLECT_KEY)).await.0,
        403
    );
    assert_eq!(
        app.get("/v1/users/oAuth/credentials", Some(REPORT_KEY)).await.0,
        200
    );
    assert_eq!(app.get("/v1/users/oAuth/credentials", None).await.0, 401);
}

async fn malformed_bodies_store_nothing(f: Fixture) {
    let app = &f.app;
    let token = app.login("oBad").await;
    let key = Some(COLLECT_KEY);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{".to_vec(), 400, "invalid_request"),
        (b"".to_vec(), 400, "invalid_request"),
        (b"[]".to_vec(), 400, "invalid_request"),
        (b"null".to_vec(), 400, "invalid_request"),
        (br#"{"openid": "oBad", "form_ids": "abc"}"#.to_vec(), 400, "invalid_request"),
        (br#"{"openid": "oBad", "form_ids": [1, 2]}"#.to_vec(), 400, "invalid_request"),
        (br#"{"openid": 5, "form_ids": ["abc"]}"#.to_vec(), 400, "invalid_request"),
        (br#"{"openid": "oBad", "form_ids": ["abc"], "extra": true}"#.to_vec(), 400, "invalid_request"),
        (br#"{"openid": "oBad", "credentials": [{"kind": "form"}]}"#.to_vec(), 400, "invalid_request"),
        (br#"{"openid": "oBad", "credentials": [{"kind": "form", "id": "a", "colour": 1}]}"#.to_vec(), 400, "invalid_request"),
        (
            br#"{"openid": "oBad", "credentials": [{"kind": "form", "id": "ok1"}, {"kind": "form", "id": "ok2", "collected_at": "last tuesday"}]}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (br#"{"openid": "oBad", "credentials": [{"kind": 1, "id": "ok"}]}"#.to_vec(), 400, "invalid_request"),
        (b"{\"openid\": \"oBad\", \"form_ids\": [\"ab\xff\xfe\"]}".to_vec(), 400, "invalid_request"),
        (b"\xff\xfe\x00garbage".to_vec(), 400, "invalid_request"),
        (format!(r#"{{"openid": "oBad", "form_ids": ["{}"]}}"#, "a".repeat(70_000)).into_bytes(), 413, "payload_too_large"),
    ];
    for (body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (got, answer) = app.post_raw("/v1/credentials", key, body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{shown}: {answer}"
        );
        assert!(answer["message"].is_string());
    }
    // The same through a user token, and a session body gone wrong.
    let (got, _) = app
        .post_raw(
            "/v1/credentials",
            Some(&token),
            b"{\"form_ids\": [true]}".to_vec(),
        )
        .await;
    assert_eq!(got, 400);
    for body in [
        json!({}),
        json!({"code": 5}),
        json!({"code": "abc", "x": 1}),
        json!({"code": "a\r\nb"}),
        json!({"code": ""}),
    ] {
        let (got, answer) = app.post("/v1/sessions", None, body.clone()).await;
        assert!(matches!(got, 400 | 401), "{body}: {got} {answer}");
        assert!(answer["code"].is_string());
    }
    assert_eq!(app.available("oBad").await, 0, "nothing was stored");
}

async fn hostile_openids_are_refused(f: Fixture) {
    let app = &f.app;
    let long = "o".repeat(5000);
    for openid in [
        "a{b}",
        "{oTag}",
        "o\r\nX-Injected: 1",
        "o b",
        "ö",
        long.as_str(),
        "",
    ] {
        let (status, body) = app
            .post(
                "/v1/credentials",
                Some(COLLECT_KEY),
                json!({"openid": openid, "form_ids": ["abc"]}),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{openid:?}"
        );
        let (status, body) = app
            .post("/sandbox/login-codes", None, json!({"openid": openid}))
            .await;
        assert_eq!(status, 400, "simulator too: {openid:?} {body}");
    }
    for path in ["a%7Bb%7D", "o%0D%0AX", "o%20b", &"o".repeat(5000), "%FF%FE"] {
        let (status, body) = app
            .get(&format!("/v1/users/{path}/credentials"), Some(REPORT_KEY))
            .await;
        assert!(matches!(status, 400 | 404 | 414), "{path}: {status} {body}");
        assert!(status != 500);
    }
}

async fn unknown_routes_and_methods_are_json(f: Fixture) {
    let app = &f.app;
    let (status, body) = app.get("/v1/nothing-here", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.call("DELETE", "/v1/credentials", Some(ADMIN_KEY), None).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, body) = app.get("/v1/sessions", None).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("method_not_allowed")));
}

async fn health_and_readiness(f: Fixture) {
    let app = &f.app;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["wechat"], "sandbox");
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
}

/// The store going away and coming back: readiness and requests follow it,
/// and the process keeps running.
#[tokio::test]
async fn redis_going_away_and_coming_back() {
    let mut server = RedisServer::start();
    let app = TestApp::spawn(Store::Redis(&server)).await;
    let ingest = json!({"openid": "oOutage", "form_ids": ["before"]});
    assert_eq!(
        app.post("/v1/credentials", Some(COLLECT_KEY), ingest).await.0,
        200
    );

    server.kill();
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("store_unavailable")));
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oOutage", "form_ids": ["during"]}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (503, Some("store_unavailable")));
    assert_eq!(
        app.get("/v1/users/oOutage/credentials", Some(REPORT_KEY)).await.0,
        503
    );
    assert_eq!(app.get("/healthz", None).await.0, 200, "the process stays up");

    server.restart();
    assert!(app.eventually_ready().await, "ready again once Redis is back");
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oOutage", "form_ids": ["after"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The server kept no data across the restart (no persistence in this test).
    assert_eq!(body["available_sends"], 1);
}

#[tokio::test]
async fn a_store_down_at_start_up_is_reported_until_it_answers() {
    let port = support::free_port();
    let app = TestApp::spawn_with(Store::Memory, |c| {
        c.redis_url = Some(format!("redis://127.0.0.1:{port}/0"))
    })
    .await;
    assert_eq!(app.get("/readyz", None).await.0, 503);
    let _server = RedisServer::start_on(port);
    assert!(app.eventually_ready().await);
}

#[tokio::test]
async fn eviction_over_the_cap() {
    let app = TestApp::spawn_with(Store::Memory, |c| c.max_credentials_per_user = 3).await;
    let days_ago = |d| rfc3339(Utc::now() - Duration::days(d));
    let (_, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oCap", "credentials": [
                {"kind": "form", "id": "d3", "collected_at": days_ago(3)},
                {"kind": "form", "id": "d2", "collected_at": days_ago(2)},
                {"kind": "form", "id": "d1", "collected_at": days_ago(1)},
                {"kind": "form", "id": "d0"},
                {"kind": "form", "id": "d4", "collected_at": days_ago(4)},
            ]}),
        )
        .await;
    assert_eq!(body["accepted"], 5);
    assert_eq!(body["evicted"], 2);
    assert_eq!(body["available_sends"], 3);
}

#[tokio::test]
async fn expired_session_tokens_are_refused() {
    let clock = std::sync::Arc::new(formid_ledger::clock::ManualClock::at_current_second());
    let app = TestApp::spawn_on_clock(Store::Memory, clock.clone(), |c| c.session_ttl_secs = 60).await;
    let token = app.login("oShort").await;
    let (status, _) = app
        .post("/v1/credentials", Some(&token), json!({"form_ids": ["abc"]}))
        .await;
    assert_eq!(status, 200);
    clock.advance(chrono::Duration::seconds(59));
    let (status, _) = app
        .post("/v1/credentials", Some(&token), json!({"form_ids": ["abe"]}))
        .await;
    assert_eq!(status, 200, "a token is good until its expiry");
    clock.advance(chrono::Duration::seconds(1));
    let (status, body) = app
        .post("/v1/credentials", Some(&token), json!({"form_ids": ["abd"]}))
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let _: Value = body;
}
