//! WeChat's send quotas through the service: each send API's count today
//! read through the central tokens, the day's first 45009 noted, and a clear
//! of the mini-program's or the official account's counts (10 a month, then
//! 429 `quota_clears_exhausted`).

use crate::support;

use formid_ledger::config::Secret;
use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::app::{ADMIN_KEY, COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp, start_sim};

fn api<'a>(quota: &'a Value, channel: &str) -> &'a Value {
    quota["apis"]
        .as_array()
        .and_then(|apis| apis.iter().find(|a| a["channel"] == channel))
        .unwrap_or_else(|| panic!("no {channel} in {quota}"))
}

#[tokio::test]
async fn quotas_are_read_noted_at_45009_and_cleared_ten_times_a_month() {
    let sim = start_sim(SimConfig {
        daily_limit: 2,
        ..SimConfig::default()
    });
    let app = TestApp::spawn_with(Store::Memory, |c| {
        TestApp::on_simulator(&sim, c);
        c.wechat_oa_appid = Some("wxsandboxoa".into());
        c.wechat_oa_secret = Some(Secret::new("sandbox-oa-secret"));
    })
    .await;
    let ids = sim.form_ids("oQuota", 4, None).await;
    let (status, body) = app
        .post(
            "/v1/credentials",
            Some(COLLECT_KEY),
            json!({"openid": "oQuota", "form_ids": ids}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let message = json!({"touser": "oQuota", "template_id": BUILTIN_TEMPLATES[0],
        "data": {"keyword1": {"value": "x"}}});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.post("/v1/messages", Some(SEND_KEY), message.clone()).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);

    let (status, quota) = app.get("/v1/quota", Some(REPORT_KEY)).await;
    assert_eq!(status, 200, "{quota}");
    assert_eq!(quota["app"], "default");
    let template = api(&quota, "template");
    assert_eq!(template["cgi_path"], "/cgi-bin/message/wxopen/template/send");
    assert_eq!(
        (&template["daily_limit"], &template["used"], &template["remain"]),
        (&json!(2), &json!(2), &json!(0))
    );
    assert!(template["exhausted_at"].is_string(), "{quota}");
    assert_eq!(api(&quota, "subscribe")["used"], 0);
    assert!(api(&quota, "subscribe").get("exhausted_at").is_none());
    assert_eq!(api(&quota, "official_account")["remain"], 2);
    // Under /v1/apps/{app} too.
    assert_eq!(app.get("/v1/apps/default/quota", Some(REPORT_KEY)).await.1, quota);

    let clear = |account: &str| json!({ "account": account });
    assert_eq!(
        app.post("/v1/quota/clear", Some(REPORT_KEY), clear("miniprogram"))
            .await
            .0,
        403
    );
    assert_eq!(
        app.post("/v1/quota/clear", Some(ADMIN_KEY), clear("nobody"))
            .await
            .0,
        400
    );
    let (status, cleared) = app
        .post("/v1/quota/clear", Some(ADMIN_KEY), clear("miniprogram"))
        .await;
    assert_eq!(
        (status, &cleared),
        (200, &json!({"account": "miniprogram", "appid": "wxsandbox"}))
    );
    let (_, quota) = app.get("/v1/quota", Some(REPORT_KEY)).await;
    assert_eq!(api(&quota, "template")["used"], 0);
    assert!(api(&quota, "template").get("exhausted_at").is_none(), "{quota}");
    assert_eq!(app.post("/v1/messages", Some(SEND_KEY), message).await.0, 200);

    for _ in 1..10 {
        let (status, body) = app
            .post("/v1/quota/clear", Some(ADMIN_KEY), clear("miniprogram"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, refused) = app
        .post("/v1/quota/clear", Some(ADMIN_KEY), clear("miniprogram"))
        .await;
    assert_eq!(
        (
            status,
            refused["code"].as_str(),
            refused["wechat_errcode"].as_i64()
        ),
        (429, Some("quota_clears_exhausted"), Some(48006)),
        "{refused}"
    );
    let (status, cleared) = app
        .post("/v1/quota/clear", Some(ADMIN_KEY), clear("official_account"))
        .await;
    assert_eq!(
        (status, cleared["appid"].as_str()),
        (200, Some("wxsandboxoa")),
        "{cleared}"
    );
}
