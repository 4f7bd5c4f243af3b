//! access_token central control across instances sharing one Redis: each
//! manager below has its own connection, as separate service instances
//! would, and the simulator counts every token WeChat hands out. Time is a
//! `ManualClock` the test moves: nothing waits for a token to come due.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use formid_ledger::clock::ManualClock;
use formid_ledger::config::{Secret, TokenMode};
use formid_ledger::sim::SimConfig;
use formid_ledger::store::{RedisConnection, RedisStore, RedisTarget};
use formid_ledger::wechat::{TokenManager, WechatClient};
use support::RedisServer;
use support::app::{SimClient, start_sim};

fn fleet(
    redis: &RedisServer,
    sim: &SimClient,
    prefix: &str,
    n: usize,
    clock: &Arc<ManualClock>,
) -> Vec<Arc<TokenManager>> {
    (0..n)
        .map(|_| {
            let client = WechatClient::new(
                &format!("{}/sandbox/wechat", sim.base),
                "wxsandbox",
                Secret::new("sandbox-secret"),
                Duration::from_secs(4),
            )
            .unwrap();
            let redis = RedisConnection::new(RedisTarget::Single(redis.url()), Duration::from_secs(2));
            Arc::new(TokenManager::with_clock(
                client,
                Arc::new(RedisStore::new(redis, prefix)),
                TokenMode::Token,
                clock.clone(),
            ))
        })
        .collect()
}

async fn fetches(sim: &SimClient) -> u64 {
    sim.stats().await["token_fetches"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_rejections_causes_one_fetch() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let clock = Arc::new(ManualClock::at_current_second());
    let managers = fleet(&redis, &sim, "burst", 3, &clock);
    let rejected = managers[0].token().await.unwrap();
    assert_eq!(fetches(&sim).await, 1);

    // 60 calls on three instances all saw `rejected` fail at once.
    let calls = (0..60).map(|n| {
        let manager = managers[n % 3].clone();
        let rejected = rejected.clone();
        tokio::spawn(async move {
            manager.invalidate(&rejected).await;
            manager.token().await.unwrap()
        })
    });
    let tokens: Vec<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|t| t.unwrap())
        .collect();
    assert_eq!(fetches(&sim).await, 2, "one fetch for the whole burst");
    assert!(
        tokens.iter().all(|t| *t == tokens[0] && *t != rejected),
        "everyone got the one new token"
    );
    // A slow call that used the old token reports it late: the new token
    // must stay (compare-and-delete). Past the local reuse, the store answers.
    managers[1].invalidate(&rejected).await;
    clock.advance(TimeDelta::milliseconds(600));
    assert_eq!(managers[2].token().await.unwrap(), tokens[0]);
    assert_eq!(fetches(&sim).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_due_token_is_refreshed_once_for_the_fleet_and_never_missing_meanwhile() {
    let redis = RedisServer::start();
    // 5 s tokens: due for refresh after 4 s.
    let sim = start_sim(SimConfig {
        token_ttl_secs: 5,
        token_overlap_secs: 2,
        ..SimConfig::default()
    });
    let clock = Arc::new(ManualClock::at_current_second());
    let managers = fleet(&redis, &sim, "due", 3, &clock);
    let first = managers[0].token().await.unwrap();
    for manager in &managers {
        assert_eq!(manager.token().await.unwrap(), first, "shared, not fetched again");
    }
    assert_eq!(fetches(&sim).await, 1);

    clock.advance(TimeDelta::milliseconds(4200));
    // Everyone asks at once: each gets a valid token, one of them fetched.
    let calls = (0..30).map(|n| {
        let manager = managers[n % 3].clone();
        tokio::spawn(async move { manager.token().await.unwrap() })
    });
    let tokens: Vec<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|t| t.unwrap())
        .collect();
    assert_eq!(fetches(&sim).await, 2, "one refresh for three instances");
    let fresh = managers[2].token().await.unwrap();
    assert_ne!(fresh, first);
    // Callers served during the refresh got the current token or the new one:
    // both are valid (the old one until the overlap ends).
    assert!(tokens.iter().all(|t| *t == first || *t == fresh));
}

/// A wrong WECHAT_SECRET: the service says so (readiness, 503 sends that
/// spend nothing) and asks WeChat again only after a growing backoff,
/// never once a second or once a request (WeChat rate-limits an account
/// that keeps trying).
#[tokio::test]
async fn refused_app_credentials_back_off_and_make_the_service_unready() {
    use support::app::{COLLECT_KEY, SEND_KEY, Store, TestApp};
    let sim = start_sim(SimConfig::default());
    let clock = Arc::new(ManualClock::at_current_second());
    let app = TestApp::spawn_on_clock(Store::Memory, clock.clone(), |config| {
        TestApp::on_simulator(&sim, config);
        config.wechat_secret = Some(Secret::new("not-the-secret"));
    })
    .await;
    let ids = sim.form_ids("oRefusedApp", 1, None).await;
    let body = serde_json::json!({"openid": "oRefusedApp", "form_ids": ids});
    assert_eq!(app.post("/v1/credentials", Some(COLLECT_KEY), body).await.0, 200);

    let send = async || {
        let message = serde_json::json!({
            "touser": "oRefusedApp",
            "template_id": formid_ledger::sim::BUILTIN_TEMPLATES[0],
            "data": {"keyword1": {"value": "never sent"}},
        });
        let (status, answer) = app.post("/v1/messages", Some(SEND_KEY), message).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (503, Some("wechat_unavailable")),
            "{answer}"
        );
    };
    for _ in 0..20 {
        send().await;
    }
    let refusals = async || sim.stats().await["token_refusals"].as_u64().unwrap();
    assert_eq!(
        refusals().await,
        1,
        "20 sends within the first backoff ask WeChat nothing"
    );
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["code"], "wechat_credentials_refused");
    assert_eq!(ready["wechat_errcode"], 40125);
    assert!(
        ready["message"].as_str().unwrap().contains("WECHAT_SECRET"),
        "{ready}"
    );

    // The start-up fetch at 0 s, then after 1 s, 2 s more, 4 s more: a
    // second of the clock at a time, with a send each second, asks WeChat
    // at 1 s and 3 s only (never once a second, never once a send).
    let mut asked = Vec::new();
    for second in 1..=6 {
        clock.advance(TimeDelta::seconds(1));
        send().await;
        asked.push((second, refusals().await));
    }
    assert_eq!(asked, [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3), (6, 3)]);
    assert_eq!(sim.stats().await["token_fetches"], 0);
    assert_eq!(app.available("oRefusedApp").await, 1, "nothing spent");
}
