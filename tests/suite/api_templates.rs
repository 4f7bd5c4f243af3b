//! Templates for the three channels through the API (docs/api.md): browsing
//! the libraries, adding and deleting through the central token, and the
//! cached account lists that stop a bad send before anything is spent,
//! shared by instances and never blocking a send.

use crate::support;

use formid_ledger::sim::{BUILTIN_OA_TEMPLATES, BUILTIN_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::RedisServer;
use support::app::{ADMIN_KEY, COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp, start_sim};

async fn grant(app: &TestApp, openid: &str, template: &str) {
    let (status, answer) = app
        .sim
        .post(
            "/sandbox/subscriptions",
            json!({"openid": openid, "results": {template: "accept"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let body = json!({"openid": openid, "results": answer});
    assert_eq!(
        app.post("/v1/subscriptions", Some(COLLECT_KEY), body).await.0,
        200
    );
}

async fn grants_of(app: &TestApp, openid: &str, template: &str) -> u64 {
    let (_, body) = app
        .get(&format!("/v1/users/{openid}/credentials"), Some(REPORT_KEY))
        .await;
    body["subscriptions"][template].as_u64().unwrap_or(0)
}

async fn subscribe_send(app: &TestApp, openid: &str, template: &str, data: Value) -> (u16, Value) {
    let body = json!({"touser": openid, "template_id": template, "data": data});
    app.post("/v1/subscribe-messages", Some(SEND_KEY), body).await
}

async fn wechat_sends(app: &TestApp) -> u64 {
    let stats = app.sim.stats().await;
    stats["sends"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn from_the_library_to_a_first_send_and_back() {
    let app = TestApp::spawn(Store::Memory).await;
    // Browse the subscribe library and pick an entry's keywords.
    let (status, page) = app
        .get(
            "/v1/template-library?channel=subscribe&limit=10",
            Some(REPORT_KEY),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page["total"].as_u64().unwrap() >= 3, "{page}");
    let tid = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, entry) = app
        .get(
            &format!("/v1/template-library/{tid}?channel=subscribe"),
            Some(REPORT_KEY),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    // WeChat's keyword call names no title: the service finds it in the list.
    assert_eq!(entry["title"], page["items"][0]["title"], "{entry}");
    let keywords = entry["keywords"].as_array().unwrap();
    assert!(keywords.len() >= 3);
    let picked: Vec<u64> = keywords[..3].iter().map(|k| k["id"].as_u64().unwrap()).collect();
    let keys: Vec<String> = keywords[..3]
        .iter()
        .map(|k| format!("{}{}", k["rule"].as_str().unwrap(), k["id"]))
        .collect();

    // Add it: only an admin key may.
    let new = json!({"channel": "subscribe", "library_id": tid, "keyword_ids": picked, "scene": "发货通知"});
    assert_eq!(
        app.post("/v1/templates", Some(REPORT_KEY), new.clone()).await.0,
        403
    );
    let (status, added) = app.post("/v1/templates", Some(ADMIN_KEY), new).await;
    assert_eq!(status, 201, "{added}");
    let template = added["template_id"].as_str().unwrap().to_owned();
    let (_, list) = app.get("/v1/templates?channel=subscribe", Some(REPORT_KEY)).await;
    let listed = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["template_id"] == template.as_str());
    assert_eq!(listed.expect("listed")["keys"], json!(keys));

    // Send with its keys: sent.
    grant(&app, "oLibrary", &template).await;
    grant(&app, "oLibrary", &template).await;
    let examples: serde_json::Map<String, Value> = keywords[..3]
        .iter()
        .zip(&keys)
        .map(|(k, key)| (key.clone(), json!({"value": k["example"]})))
        .collect();
    let (status, sent) = subscribe_send(&app, "oLibrary", &template, Value::Object(examples.clone())).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(grants_of(&app, "oLibrary", &template).await, 1);

    // A key the template lacks: 422 before anything is spent or sent.
    let calls = wechat_sends(&app).await;
    let mut wrong = examples.clone();
    wrong.insert("thing99".into(), json!({"value": "no such keyword"}));
    let (status, refused) = subscribe_send(&app, "oLibrary", &template, Value::Object(wrong)).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("invalid_data")),
        "{refused}"
    );
    assert_eq!(refused["field"], "thing99");
    assert_eq!(grants_of(&app, "oLibrary", &template).await, 1);
    assert_eq!(wechat_sends(&app).await, calls, "WeChat was not called");

    // Delete it: the next send is 422 unknown_template, nothing spent.
    let (status, _) = app
        .call(
            "DELETE",
            &format!("/v1/templates/{template}?channel=subscribe"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, refused) = subscribe_send(&app, "oLibrary", &template, Value::Object(examples)).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("unknown_template")),
        "{refused}"
    );
    assert_eq!(grants_of(&app, "oLibrary", &template).await, 1);
    assert_eq!(wechat_sends(&app).await, calls);

    // The same for template messages: an id the account lacks.
    let message = json!({"touser": "oLibrary", "template_id": "NoSuchTemplate_0123456789", "data": {"keyword1": {"value": "x"}}});
    let (status, refused) = app.post("/v1/messages", Some(SEND_KEY), message).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("unknown_template")),
        "{refused}"
    );

    // The day's report counts each refusal with its channel's sends.
    let day = usage_today(&app).await;
    assert_eq!(day["sends"]["unknown_template"], 1, "{day}");
    assert_eq!(day["subscribe"]["sends"]["unknown_template"], 1, "{day}");
    assert_eq!(day["subscribe"]["sends"]["invalid_data"], 1, "{day}");
    assert_eq!(day["subscribe"]["sends"]["sent"], 1, "{day}");
}

/// Today's usage row (a report flushes its own instance's counters first).
async fn usage_today(app: &TestApp) -> Value {
    let (status, usage) = app.get("/v1/reports/usage", Some(REPORT_KEY)).await;
    assert_eq!(status, 200, "{usage}");
    usage["days"][0].clone()
}

#[tokio::test]
async fn paging_and_bodies_are_checked_before_wechat_is_called() {
    let app = TestApp::spawn(Store::Memory).await;
    for (query, why) in [
        ("channel=template&count=21", "over the old library's maximum"),
        ("channel=template&count=0", "an empty page"),
        (
            "channel=subscribe&limit=31",
            "over the subscribe library's maximum",
        ),
        ("channel=subscribe&count=5", "the other library's paging"),
        ("channel=subscribe&categories=a,b", "category ids are numbers"),
        ("channel=official_account", "no library to browse"),
        ("channel=wechat", "no such channel"),
        ("channel=template&surprise=1", "unknown parameters"),
    ] {
        let (status, body) = app
            .get(&format!("/v1/template-library?{query}"), Some(REPORT_KEY))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{why}: {body}"
        );
    }
    for (body, why) in [
        (
            json!({"channel": "subscribe", "library_id": "99", "keyword_ids": []}),
            "no keywords",
        ),
        (
            json!({"channel": "subscribe", "library_id": "9 9", "keyword_ids": [1, 2]}),
            "a bad library id",
        ),
        (
            json!({"channel": "subscribe", "library_id": "99", "keyword_ids": [1, 2], "scene": "s".repeat(16)}),
            "a long scene",
        ),
        (
            json!({"channel": "official_account", "library_id": "OPENTM207498902", "keyword_ids": [1]}),
            "oa keywords",
        ),
        (
            json!({"channel": "template", "library_id": "AT0002", "keyword_ids": [3], "extra": 1}),
            "unknown fields",
        ),
        (
            json!({"channel": "template", "library_id": "AT0002", "keyword_ids": ["3"]}),
            "ids are numbers",
        ),
    ] {
        let (status, answer) = app.post("/v1/templates", Some(ADMIN_KEY), body).await;
        assert_eq!(status, 400, "{why}: {answer}");
    }
    let (status, _) = app
        .call(
            "DELETE",
            "/v1/templates/bad%20id?channel=subscribe",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn wechat_refusals_come_back_with_their_errcode() {
    let app = TestApp::spawn(Store::Memory).await;
    let add =
        |tid: &str, kids: Value| json!({"channel": "subscribe", "library_id": tid, "keyword_ids": kids});
    for (body, errcode) in [
        (add("424242", json!([1, 2])), 200014),
        (add("99", json!([1])), 200020),
        (add("99", json!([1, 77])), 200020),
    ] {
        let (status, answer) = app.post("/v1/templates", Some(ADMIN_KEY), body).await;
        assert_eq!(
            (status, answer["wechat_errcode"].as_i64()),
            (422, Some(errcode)),
            "{answer}"
        );
    }
    // The account's limit: 50 subscribe templates (4 built in).
    for _ in 0..46 {
        assert_eq!(
            app.post("/v1/templates", Some(ADMIN_KEY), add("501", json!([1, 3])))
                .await
                .0,
            201
        );
    }
    let (status, answer) = app
        .post("/v1/templates", Some(ADMIN_KEY), add("501", json!([1, 3])))
        .await;
    assert_eq!(
        (status, answer["wechat_errcode"].as_i64()),
        (422, Some(200012)),
        "{answer}"
    );
    let (_, list) = app.get("/v1/templates?channel=subscribe", Some(REPORT_KEY)).await;
    assert_eq!(list["templates"].as_array().unwrap().len(), 50);
    // Deleting what is not there.
    let (status, answer) = app
        .call(
            "DELETE",
            "/v1/templates/NoSuchTemplate_0123456789?channel=template",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["wechat_errcode"].as_i64()),
        (422, Some(40037)),
        "{answer}"
    );
}

#[tokio::test]
async fn the_official_account_has_its_own_app_and_token() {
    let sim = start_sim(SimConfig::default());
    // Not configured: its routes say so.
    let plain = TestApp::spawn_with(Store::Memory, |c| TestApp::on_simulator(&sim, c)).await;
    let (status, body) = plain
        .get("/v1/templates?channel=official_account", Some(REPORT_KEY))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_configured")),
        "{body}"
    );

    let app = TestApp::spawn_with(Store::Memory, |c| {
        TestApp::on_simulator(&sim, c);
        c.wechat_oa_appid = Some("wxsandboxoa".into());
        c.wechat_oa_secret = Some(formid_ledger::config::Secret::new("sandbox-oa-secret"));
    })
    .await;
    let (status, list) = app
        .get("/v1/templates?channel=official_account", Some(REPORT_KEY))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["templates"][0]["template_id"], BUILTIN_OA_TEMPLATES[0].0);
    assert_eq!(
        list["templates"][0]["keys"],
        json!(["first", "keyword1", "keyword2", "remark"])
    );
    let body = json!({"channel": "official_account", "library_id": "OPENTM411999701"});
    let (status, added) = app.post("/v1/templates", Some(ADMIN_KEY), body).await;
    assert_eq!(status, 201, "{added}");
    let id = added["template_id"].as_str().unwrap();
    let path = format!("/v1/templates/{id}?channel=official_account");
    assert_eq!(app.call("DELETE", &path, Some(ADMIN_KEY), None).await.0, 200);

    // Its messages name only its own templates; a refusal is counted.
    let message = json!({"touser": "oFollower", "template_id": id, "data": {"first": {"value": "x"}}});
    let (status, refused) = app
        .post("/v1/official-account/messages", Some(SEND_KEY), message)
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("unknown_template")),
        "{refused}"
    );
    assert_eq!(usage_today(&app).await["official_account"]["unknown_template"], 1);
}

#[tokio::test]
async fn an_unavailable_list_never_blocks_a_send() {
    let app = TestApp::spawn(Store::Memory).await;
    let ids = app.sim.form_ids("oUnchecked", 1, None).await;
    let body = json!({"openid": "oUnchecked", "form_ids": ids});
    assert_eq!(app.post("/v1/credentials", Some(COLLECT_KEY), body).await.0, 200);
    // The first send fetches the account's list; WeChat fails that call.
    app.sim
        .fault(json!({"http_status": 502, "count": 1, "templates": true}))
        .await;
    let lists = app.sim.stats().await["template_lists"].as_u64().unwrap();
    let message = json!({"touser": "oUnchecked", "template_id": BUILTIN_TEMPLATES[0], "data": {"keyword1": {"value": "x"}}});
    let (status, sent) = app.post("/v1/messages", Some(SEND_KEY), message).await;
    assert_eq!(status, 200, "{sent}");
    let (_, faults) = app.sim.get("/sandbox/faults").await;
    assert_eq!(
        faults["active"],
        Value::Null,
        "the send asked for the list, and that call failed"
    );
    assert_eq!(
        app.sim.stats().await["template_lists"].as_u64().unwrap(),
        lists,
        "no list was served"
    );
    assert_eq!(app.sim.inbox("oUnchecked").await.len(), 1);
}

/// Two instances on one Redis, lists cached for a second: a burst of sends
/// on both after the cache expired costs WeChat one list call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_after_expiry_fetches_the_list_once_for_the_fleet() {
    let redis = RedisServer::start();
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("tpl");
    let configure = |c: &mut formid_ledger::config::Config| {
        TestApp::on_simulator(&sim, c);
        c.redis_key_prefix = prefix.clone();
        c.template_cache_secs = 2;
    };
    let a = TestApp::spawn_with(Store::Redis(&redis), configure).await;
    let b = TestApp::spawn_with(Store::Redis(&redis), configure).await;
    let ids = sim.form_ids("oBurst", 40, None).await;
    let body = json!({"openid": "oBurst", "form_ids": ids});
    assert_eq!(a.post("/v1/credentials", Some(COLLECT_KEY), body).await.0, 200);
    let message = json!({"touser": "oBurst", "template_id": BUILTIN_TEMPLATES[0], "data": {"keyword1": {"value": "x"}}});
    for app in [&a, &b] {
        assert_eq!(
            app.post("/v1/messages", Some(SEND_KEY), message.clone()).await.0,
            200
        );
    }
    // Past the store's TTL and each instance's own reuse of it.
    tokio::time::sleep(std::time::Duration::from_millis(5_000)).await;
    let before = sim.stats().await["template_lists"].as_u64().unwrap();
    let burst = std::time::Instant::now();
    let sends: Vec<_> = (0..20)
        .map(|n| {
            let app = if n % 2 == 0 { &a } else { &b };
            let req = app
                .http
                .post(app.url("/v1/messages"))
                .bearer_auth(SEND_KEY)
                .json(&message);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), 200);
    }
    let after = sim.stats().await["template_lists"].as_u64().unwrap();
    // One call per lifetime of the cached list: on a machine so loaded that
    // the burst outlived it, the list was fetched again, once.
    let lifetimes = 1 + burst.elapsed().as_secs() / 2;
    assert!(
        (1..=lifetimes).contains(&(after - before)),
        "{} list calls for 20 sends on two instances in {lifetimes} lifetimes of the list",
        after - before
    );
}

/// `formid-ledger templates ...` against the same configuration as `serve`
/// (the process blocks this thread; the simulator serves from the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_browses_adds_lists_and_deletes() {
    let sim = start_sim(SimConfig::default());
    let base = format!("{}/sandbox/wechat", sim.base);
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
            .env_clear()
            .env("WECHAT_APPID", "wxsandbox")
            .env("WECHAT_SECRET", "sandbox-secret")
            .env("WECHAT_API_BASE", &base)
            .env("RUST_LOG", "error")
            .arg("templates")
            .args(args)
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let library = run(&["library"]);
    assert!(
        library.contains("订单发货通知") && library.contains("in all"),
        "{library}"
    );
    let entry = run(&["library", "99"]);
    assert!(
        entry.contains("time3") && entry.contains("订单发货通知"),
        "{entry}"
    );
    let added: Value =
        serde_json::from_str(&run(&["add", "99", "1", "3", "4", "--scene", "发货", "--json"])).unwrap();
    let id = added["template_id"].as_str().unwrap();
    let listed: Value = serde_json::from_str(&run(&["list", "--json"])).unwrap();
    let template = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["template_id"] == id)
        .unwrap();
    assert_eq!(template["keys"], json!(["thing1", "time3", "phrase4"]));
    assert!(run(&["list"]).contains("thing1 time3 phrase4"));
    assert_eq!(run(&["delete", id]), format!("deleted {id}\n"));
    assert!(!run(&["list"]).contains(id));
    let old = run(&["--channel", "template", "library", "AT0002"]);
    assert!(old.contains("购买地点"), "{old}");
}

/// WeChat's template ids are base64url, so one may start with `-`: the CLI
/// takes it as the id, not as an option.
#[test]
fn a_template_id_starting_with_a_dash_is_an_id() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
        .env_clear()
        .env("LISTEN", format!("127.0.0.1:{}", support::free_port()))
        .args([
            "templates",
            "--channel",
            "subscribe",
            "delete",
            "-OjgJLakrtSoB09zUPHR68tGLIMPDzTeNzvO1GDg",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(
        stderr.contains("start it first"),
        "it got as far as calling WeChat: {stderr}"
    );
}
