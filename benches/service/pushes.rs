//! A campaign's receipts as WeChat pushes them: 20,000 official-account
//! messages sent through the service, then their `TEMPLATESENDJOBFINISH`
//! pushes, encrypted and signed in safe mode, posted at once from 64
//! connections. Measured: pushes answered a second and the p99 answer time;
//! checked: every one answered `success` and counted once in the day's
//! deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use formid_ledger::push::crypto::{self, AesKey};
use formid_ledger::sim::BUILTIN_OA_TEMPLATES;
use futures_util::{StreamExt, stream};
use serde_json::json;

use super::channels::{simulator, spawn_service_with};
use super::support::RedisServer;
use super::support::app::{ADMIN_KEY, SEND_KEY, client};

const MESSAGES: usize = 20_000;
const FOLLOWERS: usize = 100;
const CONNECTIONS: usize = 64;
const TOKEN: &str = "bench-push-token-0123";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

pub struct Storm {
    pub rate: f64,
    pub p99_ms: f64,
}

pub async fn storm() -> Storm {
    let redis = RedisServer::start();
    let sim = simulator();
    let service = spawn_service_with(
        &redis,
        "storm",
        &sim.base,
        &[
            ("WECHAT_OA_PUSH_TOKEN", TOKEN),
            ("WECHAT_OA_PUSH_AES_KEY", AES_KEY),
            (
                "API_KEYS",
                &format!("admin:{ADMIN_KEY}:admin,sender:{SEND_KEY}:send"),
            ),
        ],
    )
    .await;
    let follower = |n: usize| format!("oStormFollower{:03}", n % FOLLOWERS);
    for n in 0..FOLLOWERS {
        sim.post("/sandbox/oa/followers", json!({"openid": follower(n)}))
            .await;
    }

    let http = client();
    let send_url = format!("{}/v1/official-account/messages", service.base);
    let sent: Vec<Option<(String, String)>> = stream::iter(0..MESSAGES)
        .map(|n| {
            let (http, url, touser) = (http.clone(), send_url.clone(), follower(n));
            async move {
                let body = json!({"touser": touser, "template_id": BUILTIN_OA_TEMPLATES[0].0,
                    "data": {"first": {"value": "Order shipped"}, "keyword1": {"value": "42"}}});
                let answer = http
                    .post(url)
                    .bearer_auth(SEND_KEY)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                let accepted: serde_json::Value = answer.json().await.ok()?;
                Some((touser, accepted["msgid"].as_str()?.to_owned()))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let sent: Vec<(String, String)> = sent.into_iter().flatten().collect();
    for _ in sent.len()..MESSAGES {
        super::count_failure(false);
    }

    // Built before the clock starts: WeChat does this work, not the service.
    let key = AesKey::parse(AES_KEY).unwrap();
    let timestamp = chrono::Utc::now().timestamp();
    let pushes: Vec<(String, String)> = sent
        .iter()
        .enumerate()
        .map(|(n, (openid, msgid))| {
            let event = json!({"ToUserName": "gh_bench", "FromUserName": openid,
                "CreateTime": timestamp, "MsgType": "event", "Event": "TEMPLATESENDJOBFINISH",
                "MsgID": msgid.parse::<u64>().unwrap_or(0), "Status": "success"});
            let encrypt = crypto::encrypt(&key, &event.to_string(), "wxsandboxoa");
            let (ts, nonce) = (timestamp.to_string(), format!("storm{n}"));
            let url = format!(
                "{}/wechat/push/official-account?signature={}&timestamp={ts}&nonce={nonce}\
                 &encrypt_type=aes&msg_signature={}",
                service.base,
                crypto::signature(TOKEN, &ts, &nonce),
                crypto::msg_signature(TOKEN, &ts, &nonce, &encrypt)
            );
            (
                url,
                json!({"ToUserName": "gh_bench", "Encrypt": encrypt}).to_string(),
            )
        })
        .collect();
    let pushes = Arc::new(pushes);

    let started = Instant::now();
    let answered: Vec<(bool, Duration)> = stream::iter(0..pushes.len())
        .map(|n| {
            let (http, pushes) = (http.clone(), pushes.clone());
            async move {
                let (url, body) = &pushes[n];
                let begun = Instant::now();
                let ok = match http.post(url).body(body.clone()).send().await {
                    Ok(answer) if answer.status() == 200 => {
                        answer.text().await.is_ok_and(|text| text == "success")
                    }
                    _ => false,
                };
                (ok, begun.elapsed())
            }
        })
        .buffer_unordered(CONNECTIONS)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut times: Vec<Duration> = answered
        .iter()
        .map(|(ok, time)| {
            super::count_failure(*ok);
            *time
        })
        .collect();
    times.sort();

    // Each receipt counted once: the day's deliveries are the messages sent.
    let usage: serde_json::Value = http
        .get(format!("{}/v1/reports/usage", service.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivered = usage["days"][0]["official_account"]["deliveries"]["delivered"]
        .as_u64()
        .unwrap_or(0);
    super::count_failure(delivered == sent.len() as u64);

    let ok = answered.iter().filter(|(ok, _)| *ok).count();
    Storm {
        rate: ok as f64 / elapsed,
        p99_ms: times
            .get((times.len() * 99 / 100).min(times.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1_000.0),
    }
}
