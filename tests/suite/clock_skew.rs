//! Instances whose clocks disagree by minutes (broken NTP, simulated with
//! libfaketime) share one Redis: the ledger's clock is the server's, so no
//! instance ends another's lease early, and no use goes to two sends.

use crate::support;

use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{COLLECT_KEY, SEND_KEY, start_sim};
use support::process::ServiceProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_minutes_apart_never_hand_one_use_to_two_sends() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("skew");
    // Leases of 30 s, clocks 2 minutes apart either way: on its own clock
    // the instance ahead would find every lease of the others long stale.
    let env = [("SEND_LEASE_SECS", "30"), ("SEND_BUDGET_MS", "12000")];
    let mut instances = Vec::new();
    for skew in [None, Some("+120s"), Some("-120s")] {
        instances.push(ServiceProcess::start_with_clock(&redis, &prefix, &sim, &env, skew).await);
    }
    let http = reqwest::Client::new();
    // The skews are real: each instance's own clock (its HTTP Date) is off.
    for (instance, expected) in instances.iter().zip([0, 120, -120]) {
        let response = http
            .get(format!("{}/healthz", instance.base))
            .send()
            .await
            .unwrap();
        let date = response.headers()["date"].to_str().unwrap();
        let date = chrono::DateTime::parse_from_rfc2822(date).unwrap();
        let off = (date.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        assert!(
            (off - expected).abs() <= 10,
            "clock {off} s off, {expected} s wanted"
        );
    }

    let user = "oSkewed";
    let ids = sim.form_ids(user, 3, None).await;
    let (status, body) = post(
        &http,
        &instances[1].base,
        "/v1/credentials",
        COLLECT_KEY,
        json!({"openid": user, "form_ids": ids}),
    )
    .await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(3)), "{body}");

    // WeChat answers slowly, so every send holds its lease while the other
    // instances reserve.
    sim.fault(json!({"delay_ms": 1500, "count": 100})).await;
    let sends = (0..9).map(|n| {
        let (http, base) = (http.clone(), instances[n % 3].base.clone());
        tokio::spawn(async move {
            let message = json!({"touser": user, "template_id": BUILTIN_TEMPLATES[0], "data": {"k": {"value": format!("m{n}")}}});
            post(&http, &base, "/v1/messages", SEND_KEY, message).await
        })
    });
    let mut statuses = Vec::new();
    for send in sends.collect::<Vec<_>>() {
        let (status, body) = send.await.unwrap();
        assert!(status == 200 || status == 409, "{status} {body}");
        statuses.push(status);
    }
    sim.fault(json!({"count": 0})).await;

    let stats = sim.stats().await;
    assert_eq!(
        stats["sends"].get("41029"),
        None,
        "a use was handed to a second send: {stats}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(sim.inbox(user).await.len(), 3);
}

async fn post(http: &reqwest::Client, base: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let res = http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("the service answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}
