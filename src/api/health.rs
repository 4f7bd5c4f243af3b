//! Operations: `GET /healthz` (the process answers), `GET /readyz` (the
//! store answers; WeChat is configured, or the sandbox simulator stands in
//! for it) and `GET /metrics`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `memory`, `redis` or `redis-cluster`.
    store: &'static str,
    /// `configured` (real WeChat) or `sandbox` (the built-in simulator).
    wechat: &'static str,
    /// `store_unavailable` when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The store answers and WeChat is configured (or the sandbox stands in).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Readiness, description = "Ready"),
    (status = 503, body = Readiness, description = "The store cannot be reached"),
))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let wechat = if state.mode.sandbox {
        "sandbox"
    } else {
        "configured"
    };
    let store = state.mode.store;
    match state.ledger.ping().await {
        Ok(()) => HttpResponse::Ok().json(Readiness {
            status: "ready",
            store,
            wechat,
            code: None,
        }),
        Err(err) => {
            tracing::warn!(error = %err, "not ready: store unreachable");
            HttpResponse::ServiceUnavailable().json(Readiness {
                status: "unavailable",
                store,
                wechat,
                code: Some("store_unavailable"),
            })
        }
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
