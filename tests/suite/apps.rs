//! Several WeChat apps in one deployment, tried as a user would: a real
//! service process with an apps file, on a real Redis, over the simulator.
//! Each app keeps its own ledger, keys and sessions; the bare routes act on
//! `default`, whose data keeps the key layout every earlier version wrote.

use crate::support;

use formid_ledger::domain::OpenId;
use formid_ledger::ledger::{Ledger, LedgerSettings, RedisLedger};
use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig};
use formid_ledger::store::RedisTarget;
use serde_json::{Value, json};
use support::app::{ADMIN_KEY, call, client, start_sim};
use support::process::ServiceProcess;
use support::{RedisServer, unique_prefix};

const SHOP_KEY: &str = "shop-key-0123456789abcdef";

const APPS: &str = r#"
[[apps]]
name = "default"
[apps.miniprogram]
appid = "wxsandbox"
secret_env = "DEFAULT_SECRET"
[apps.official_account]
appid = "wxsandboxoa"
secret_env = "DEFAULT_OA_SECRET"

[[apps]]
name = "shop"
[apps.miniprogram]
appid = "wxshop"
secret_env = "SHOP_SECRET"
"#;

/// The shop's mini-program in the simulator, beside the built-in one.
const SHOP_APPID: &str = "wxshop";

fn message(touser: &str) -> Value {
    json!({"touser": touser, "template_id": BUILTIN_TEMPLATES[0], "data": {"keyword1": {"value": "v"}}})
}

#[tokio::test]
async fn apps_of_one_deployment_keep_their_ledgers_keys_and_sessions_apart() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("apps");
    let sim = start_sim(SimConfig {
        more_miniprograms: vec![(SHOP_APPID.into(), "shop-secret".into())],
        ..SimConfig::default()
    });

    // Written before the upgrade, in the layout every earlier version used.
    let before = RedisLedger::new(
        RedisTarget::Single(redis.url()),
        &prefix,
        LedgerSettings::default(),
    );
    let old_ids = sim.form_ids("oTwin", 2, None).await;
    let batch = support::ledger::collected_now(&old_ids);
    let openid = OpenId::parse("oTwin").unwrap();
    before.add(&openid, &batch).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apps.toml");
    std::fs::write(&file, APPS).unwrap();
    let keys = format!("admin:{ADMIN_KEY}:admin,shop:{SHOP_KEY}:collect+send+report:shop");
    let service = ServiceProcess::start(
        &redis,
        &prefix,
        &sim,
        &[
            ("APPS_FILE", file.to_str().unwrap()),
            ("DEFAULT_SECRET", "sandbox-secret"),
            ("DEFAULT_OA_SECRET", "sandbox-oa-secret"),
            ("SHOP_SECRET", "shop-secret"),
            ("API_KEYS", &keys),
        ],
    )
    .await;
    let http = client();
    let at = |path: &str| format!("{}{path}", service.base);
    let available =
        async |path: &str, key: &str| -> (u16, Value) { call(&http, "GET", at(path), Some(key), None).await };

    // The apps, as each key may see them.
    let (status, listed) = available("/v1/apps", ADMIN_KEY).await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "shop"]);
    assert_eq!(
        listed["apps"][0]["channels"],
        json!([
            "template",
            "subscribe",
            "official_account",
            "official_account_subscribe"
        ])
    );
    assert_eq!(listed["apps"][1]["channels"], json!(["template", "subscribe"]));
    let (_, seen) = available("/v1/apps", SHOP_KEY).await;
    assert_eq!(seen["apps"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["apps"][0]["name"], "shop");

    // The data written before the upgrade is default's, on the bare routes
    // and under its name.
    let (_, held) = available("/v1/users/oTwin/credentials", ADMIN_KEY).await;
    assert_eq!(held["available_sends"], 2, "{held}");
    let (_, held) = available("/v1/apps/default/users/oTwin/credentials", ADMIN_KEY).await;
    assert_eq!(held["available_sends"], 2, "{held}");

    // The same openid in the shop app (its formIds are the shop
    // mini-program's): a ledger of its own.
    let shop_form_ids = async |count: u32| -> Value {
        let (status, issued) = sim
            .post(
                "/sandbox/form-ids",
                json!({"openid": "oTwin", "count": count, "appid": SHOP_APPID}),
            )
            .await;
        assert_eq!(status, 200, "{issued}");
        issued["form_ids"].clone()
    };
    let shop_ids = shop_form_ids(1).await;
    let body = json!({"openid": "oTwin", "form_ids": shop_ids});
    let (status, stored) = call(
        &http,
        "POST",
        at("/v1/apps/shop/credentials"),
        Some(SHOP_KEY),
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, &stored["accepted"]), (200, &json!(1)), "{stored}");
    let (_, held) = available("/v1/apps/shop/users/oTwin/credentials", SHOP_KEY).await;
    assert_eq!(held["available_sends"], 1, "{held}");
    let (_, held) = available("/v1/users/oTwin/credentials", ADMIN_KEY).await;
    assert_eq!(
        held["available_sends"], 2,
        "the default app's ledger is untouched"
    );

    // A key scoped to shop is refused on default, bare or named.
    for path in ["/v1/credentials", "/v1/apps/default/credentials"] {
        let (status, refused) = call(&http, "POST", at(path), Some(SHOP_KEY), Some(body.clone())).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let (status, unknown) = available("/v1/apps/nope/users/oTwin/credentials", ADMIN_KEY).await;
    assert_eq!((status, unknown["code"].as_str()), (404, Some("unknown_app")));

    // A session of the shop app is good there only.
    let (_, code) = sim
        .post(
            "/sandbox/login-codes",
            json!({"openid": "oTwin", "appid": SHOP_APPID}),
        )
        .await;
    let code = code["code"].as_str().unwrap().to_owned();
    let (status, session) = call(
        &http,
        "POST",
        at("/v1/apps/shop/sessions"),
        None,
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    let more = json!({"form_ids": shop_form_ids(1).await});
    let (status, _) = call(
        &http,
        "POST",
        at("/v1/credentials"),
        Some(&token),
        Some(more.clone()),
    )
    .await;
    assert_eq!(status, 401, "a shop session on the default app");
    let (status, stored) = call(
        &http,
        "POST",
        at("/v1/apps/shop/credentials"),
        Some(&token),
        Some(more),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["available_sends"], 2);

    // Sends spend from the app they name.
    let (status, sent) = call(
        &http,
        "POST",
        at("/v1/apps/shop/messages"),
        Some(SHOP_KEY),
        Some(message("oTwin")),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let (status, sent) = call(
        &http,
        "POST",
        at("/v1/messages"),
        Some(ADMIN_KEY),
        Some(message("oTwin")),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let (_, held) = available("/v1/apps/shop/users/oTwin/credentials", SHOP_KEY).await;
    assert_eq!(held["available_sends"], 1);
    let (_, held) = available("/v1/users/oTwin/credentials", ADMIN_KEY).await;
    assert_eq!(held["available_sends"], 1);
    // Each app's message is in its own mini-program's inbox, and each
    // mini-program's token was fetched once (the default app's official
    // account's too, by the same account of the simulator).
    assert_eq!(sim.inbox("oTwin").await.len(), 1);
    let (_, shop_inbox) = sim.get(&format!("/sandbox/inbox/oTwin?appid={SHOP_APPID}")).await;
    assert_eq!(
        shop_inbox["messages"].as_array().unwrap().len(),
        1,
        "{shop_inbox}"
    );
    let (_, stats) = sim.get(&format!("/sandbox/stats?appid={SHOP_APPID}")).await;
    assert_eq!(stats["token_fetches"], 1, "{stats}");
    let stats = sim.stats().await;
    assert_eq!(stats["token_fetches"], 2, "{stats}");

    // Metrics say which app each count is of.
    let text = http
        .get(at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for app in ["default", "shop"] {
        let sent = format!("formid_sends_total{{app=\"{app}\",channel=\"template\",outcome=\"sent\"}} 1");
        assert!(text.contains(&sent), "{sent} missing:\n{text}");
    }

    // Default's book is where it always was; shop's carries the app's name.
    let mut redis_client = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*oTwin*"))
        .query(&mut redis_client)
        .unwrap();
    assert!(keys.contains(&format!("{prefix}:{{oTwin}}")), "{keys:?}");
    assert!(keys.contains(&format!("{prefix}:shop:{{oTwin}}")), "{keys:?}");
}

/// Each app's pushes come to its own endpoints, verified with its own push
/// token; the bare paths are the default app's.
#[tokio::test]
async fn each_app_takes_its_pushes_at_its_own_endpoints_with_its_own_token() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig {
        more_miniprograms: vec![(SHOP_APPID.into(), "shop-secret".into())],
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apps.toml");
    let apps = APPS.replace(
        "secret_env = \"SHOP_SECRET\"",
        "secret_env = \"SHOP_SECRET\"\npush_token_env = \"SHOP_PUSH_TOKEN\"",
    );
    std::fs::write(&file, apps).unwrap();
    let shop_token = "shop-push-token-0123";
    let service = ServiceProcess::start(
        &redis,
        &unique_prefix("pushes"),
        &sim,
        &[
            ("APPS_FILE", file.to_str().unwrap()),
            ("DEFAULT_SECRET", "sandbox-secret"),
            ("DEFAULT_OA_SECRET", "sandbox-oa-secret"),
            ("SHOP_SECRET", "shop-secret"),
            ("SHOP_PUSH_TOKEN", shop_token),
        ],
    )
    .await;
    let http = client();
    let check = async |path: &str, token: &str| -> (u16, String) {
        let ts = chrono::Utc::now().timestamp().to_string();
        let signature = formid_ledger::push::crypto::signature(token, &ts, "7");
        let url = format!(
            "{}{path}?signature={signature}&timestamp={ts}&nonce=7&echostr=hello",
            service.base
        );
        let response = http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(
        check("/wechat/push/shop/miniprogram", shop_token).await,
        (200, "hello".into())
    );
    let (status, _) = check("/wechat/push/shop/miniprogram", "another-token-0123").await;
    assert_eq!(status, 401, "another app's token");
    let (status, body) = check("/wechat/push/miniprogram", shop_token).await;
    assert_eq!(status, 404, "the default app has no push token: {body}");
    assert!(body.contains("not_configured"), "{body}");
    let (status, body) = check("/wechat/push/nope/miniprogram", shop_token).await;
    assert_eq!(status, 404);
    assert!(body.contains("unknown_app"), "{body}");
}

/// `SANDBOX=1` with an apps file: every app runs on simulated accounts of
/// its own (`wxsandbox-<name>`, `wxsandboxoa-<name>`) in the built-in
/// simulator, which pushes to that app's endpoints. A production file
/// runs unchanged, without its secrets.
#[tokio::test]
async fn in_sandbox_mode_each_app_of_the_file_gets_simulated_accounts_and_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let apps_file = dir.path().join("apps.toml");
    std::fs::write(&apps_file, APPS).unwrap();
    let app = support::app::TestApp::spawn_with(support::app::Store::Memory, |c| {
        c.apps_file = Some(apps_file.clone());
        c.sandbox = true;
    })
    .await;
    let (status, listed) = app.get("/v1/apps", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200, "{listed}");
    let accounts: Vec<(&str, &str, &str, &str)> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["miniprogram_appid"].as_str().unwrap(),
                a["official_account_appid"].as_str().unwrap(),
                a["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        accounts,
        [
            ("default", "wxsandbox-default", "wxsandboxoa-default", "ready"),
            ("shop", "wxsandbox-shop", "wxsandboxoa-shop", "ready"),
        ]
    );

    // A template message of the shop lands in the shop's inbox only.
    let form_ids = app
        .sim
        .post(
            "/sandbox/form-ids",
            json!({"appid": "wxsandbox-shop", "openid": "oFan", "count": 1}),
        )
        .await
        .1["form_ids"]
        .clone();
    let collect = json!({"openid": "oFan", "form_ids": form_ids});
    let (status, _) = app
        .post(
            "/v1/apps/shop/credentials",
            Some(support::app::COLLECT_KEY),
            collect,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(
            "/v1/apps/shop/messages",
            Some(support::app::SEND_KEY),
            message("oFan"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let inbox = |appid: &'static str| {
        let sim = app.sim.clone();
        async move {
            sim.get(&format!("/sandbox/inbox/oFan?appid={appid}")).await.1["messages"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    assert_eq!(
        (inbox("wxsandbox-shop").await, inbox("wxsandbox-default").await),
        (1, 0)
    );

    // The shop's official account pushes its delivery receipt to the shop.
    let follow = json!({"appid": "wxsandboxoa-shop", "openid": "oFan"});
    assert_eq!(app.sim.post("/sandbox/oa/followers", follow).await.0, 200);
    let body = json!({"touser": "oFan", "template_id": formid_ledger::sim::BUILTIN_OA_TEMPLATES[0].0,
        "data": {"first": {"value": "Order 42 shipped"}}});
    let (status, sent) = app
        .post(
            "/v1/apps/shop/official-account/messages",
            Some(support::app::SEND_KEY),
            body,
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let path = format!(
        "/v1/apps/shop/official-account/messages/{}",
        sent["msgid"].as_str().unwrap()
    );
    let mut receipt = Value::Null;
    for _ in 0..100 {
        receipt = app.get(&path, Some(support::app::REPORT_KEY)).await.1;
        if receipt["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(receipt["status"], "delivered", "{receipt}");
}

/// The binary reads `SANDBOX=1` as documented (the variable, not the flag).
#[tokio::test]
async fn the_binary_takes_sandbox_1_with_an_apps_file() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let apps_file = dir.path().join("apps.toml");
    std::fs::write(&apps_file, APPS).unwrap();
    let service = ServiceProcess::start(
        &redis,
        &unique_prefix("sandboxed"),
        &sim,
        &[("APPS_FILE", apps_file.to_str().unwrap()), ("SANDBOX", "1")],
    )
    .await;
    let (status, listed) = call(
        &client(),
        "GET",
        format!("{}/v1/apps", service.base),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["apps"][1]["miniprogram_appid"], "wxsandbox-shop");
}
