//! What hostile testing from outside found, each held by a test against the
//! real service on a real port: requests an attacker or a careless operator
//! would make must get a clear answer and leave nothing behind.

mod support;

use reqwest::Method;
use support::app::{Store, TestApp};

/// Invented HTTP methods once grew `/metrics` without bound (one label
/// value each). They are answered 405 at once and counted as `other`.
#[tokio::test]
async fn invented_methods_never_become_metric_labels() {
    let app = TestApp::spawn(Store::Memory).await;
    for i in 0..20 {
        let method = Method::from_bytes(format!("M{i}XXXXXXXXXXXXXXXXXXXXXXXX").as_bytes()).unwrap();
        for path in ["/v1/messages", "/no/such/route"] {
            let res = app
                .http
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 405, "{method} {path}");
            let body: serde_json::Value = res.json().await.expect("a JSON error body");
            assert_eq!(body["code"], "method_not_allowed");
        }
    }
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("XXXXXXXX"), "an invented method reached /metrics");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    let other: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "formid_http_requests_total" && s.labels.get("method") == Some("other"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(n) => n,
            _ => 0.0,
        })
        .sum();
    assert_eq!(other, 40.0);
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "formid_http_requests_total")
    {
        let route = sample.labels.get("route").unwrap_or_default();
        assert!(
            route == "unmatched" || route.starts_with('/'),
            "route label {route:?} is not a pattern"
        );
    }
}
