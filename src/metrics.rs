//! Prometheus metrics: the stable metric names (they are API for dashboards
//! and alerts; README lists them), the process-wide recorder, and the text
//! rendered at `GET /metrics`. Labels never carry openids, ids or secrets.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HTTP requests by `route` (pattern), `method` and `status`.
pub const HTTP_REQUESTS: &str = "formid_http_requests_total";
/// HTTP latency by `route` and `method`, seconds.
pub const HTTP_DURATION: &str = "formid_http_request_duration_seconds";
/// Ledger operations by `op` (add, reserve, settle, inspect, usage...) and
/// `result` (ok, error).
pub const LEDGER_OPS: &str = "formid_ledger_operations_total";
/// Ledger operation latency by `op`, seconds.
pub const LEDGER_DURATION: &str = "formid_ledger_operation_duration_seconds";
/// 1 while the Redis under the ledger has a `maxmemory-policy` other than
/// `noeviction` (it would drop credentials when full), else 0.
pub const STORE_EVICTING: &str = "formid_store_evicting";
/// Store failures by `kind` (unavailable, corrupt).
pub const STORE_ERRORS: &str = "formid_store_errors_total";
/// How sends ended, by `channel` (template, subscribe, official_account)
/// and `outcome` (sent, no_valid_credential, not_subscribed, ...).
pub const SENDS: &str = "formid_sends_total";
/// Answers users gave subscribe popups, by result.
pub const SUBSCRIBE_RESULTS: &str = "formid_subscribe_results_total";
/// WeChat's answers to template sends by `errcode`.
pub const WECHAT_ERRCODES: &str = "formid_wechat_send_errcodes_total";
/// WeChat calls that got no answer, by `kind` (transport, http, malformed).
pub const WECHAT_CALL_FAILURES: &str = "formid_wechat_call_failures_total";
/// Uses settled, by `result` (spent, burned, refunded, lapsed) and `kind`.
pub const USES_SETTLED: &str = "formid_uses_settled_total";
/// Credentials collected by `kind`, and items rejected by `reason`.
pub const CREDENTIALS_COLLECTED: &str = "formid_credentials_collected_total";
pub const CREDENTIALS_REJECTED: &str = "formid_credentials_rejected_total";
/// Access tokens fetched from WeChat by this instance, and failed fetches.
pub const TOKEN_FETCHES: &str = "formid_token_fetches_total";
pub const TOKEN_FETCH_FAILURES: &str = "formid_token_fetch_failures_total";
/// Pushes WeChat sent, by `endpoint`, `event` and `result` (applied,
/// ignored, repeated, unverified).
pub const PUSH_EVENTS: &str = "formid_push_events_total";
/// Delivery receipts by `channel` (subscribe, official_account) and
/// `status` (delivered, user_blocked, failed).
pub const DELIVERIES: &str = "formid_deliveries_total";
/// Receipts by `channel` for msgids with no recorded acceptance: early
/// (the acceptance counts them when it comes) or of messages this app
/// never sent.
pub const RECEIPTS_UNMATCHED: &str = "formid_receipts_unmatched_total";
/// Access tokens invalidated after WeChat rejected them.
pub const TOKEN_INVALIDATIONS: &str = "formid_token_invalidations_total";
/// HTTP connections open now.
pub const OPEN_CONNECTIONS: &str = "formid_http_open_connections";
/// Always 1, labelled with `version`.
pub const BUILD_INFO: &str = "formid_build_info";

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Every histogram here is a latency in seconds.
        let builder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): keep
            // a private one so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}
