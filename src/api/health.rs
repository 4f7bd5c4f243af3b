//! Operations: `GET /healthz` (the process answers), `GET /readyz` (the
//! store answers and WeChat does not refuse the app credentials; the
//! sandbox simulator may stand in for WeChat) and `GET /metrics`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::code;
use crate::wechat::refusal_cause;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `embedded` (on disk in `DATA_DIR`), `memory`, `redis` or `redis-cluster`.
    store: &'static str,
    /// `configured` (real WeChat) or `sandbox` (the built-in simulator).
    wechat: &'static str,
    /// Why not ready: `store_unavailable` or `wechat_credentials_refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// With `wechat_credentials_refused`: WeChat's errcode...
    #[serde(skip_serializing_if = "Option::is_none")]
    wechat_errcode: Option<i64>,
    /// ...and what it means; with `store_unavailable` for too few Redis
    /// replicas, which masters lack them.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// With `wechat_credentials_refused`: the app whose credentials WeChat
    /// refuses.
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<String>,
    /// What is wrong without making the instance unready:
    /// `store_evicting` (Redis would drop credentials when full).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<Warning>,
}

/// Something an operator must fix, though the instance still serves.
#[derive(Serialize, ToSchema)]
pub struct Warning {
    #[schema(example = "store_evicting")]
    code: &'static str,
    message: String,
}

impl Readiness {
    fn unavailable(store: &'static str, wechat: &'static str, code: &'static str) -> Self {
        Self {
            status: "unavailable",
            store,
            wechat,
            code: Some(code),
            wechat_errcode: None,
            message: None,
            app: None,
            warnings: Vec::new(),
        }
    }
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The store answers and WeChat does not refuse the app credentials (or
/// the sandbox stands in for WeChat).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Readiness, description = "Ready"),
    (status = 503, body = Readiness, description = "The store cannot be reached (or a master has fewer replicas than REDIS_WAIT_REPLICAS), or WeChat refuses the app credentials"),
))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let wechat = if state.mode.sandbox {
        "sandbox"
    } else {
        "configured"
    };
    let store = state.mode.store;
    let warnings: Vec<Warning> = state
        .eviction
        .evicting()
        .map(|policy| Warning {
            code: code::STORE_EVICTING,
            message: format!(
                "Redis's maxmemory-policy is {policy}: when full it drops credentials and grants; set noeviction"
            ),
        })
        .into_iter()
        .collect();
    // Every app's data is in the one store: any app's ledger answers for it.
    let ping = match state.apps.iter().next() {
        Some(app) => app.ledger.ping().await,
        None => Ok(()),
    };
    if let Err(err) = ping {
        tracing::warn!(error = %err, "not ready: store unreachable");
        return HttpResponse::ServiceUnavailable().json(Readiness::unavailable(
            store,
            wechat,
            code::STORE_UNAVAILABLE,
        ));
    }
    if let Some((redis, wanted)) = &state.replicas {
        let short = match redis.masters_short_of(*wanted).await {
            Ok(short) => short,
            Err(err) => vec![err.to_string()],
        };
        if !short.is_empty() {
            let mut readiness = Readiness::unavailable(store, wechat, code::STORE_UNAVAILABLE);
            readiness.message = Some(format!(
                "REDIS_WAIT_REPLICAS is {wanted}, but {}: writes there cannot be made durable and fail",
                short.join(", ")
            ));
            tracing::warn!(
                message = readiness.message.as_deref(),
                "not ready: too few Redis replicas"
            );
            return HttpResponse::ServiceUnavailable().json(readiness);
        }
    }
    let refused = state.apps.iter().find_map(|app| {
        app.token_managers()
            .find_map(|tokens| tokens.refusal().map(|r| (r, r.retry_in(tokens.now()))))
            .map(|refusal| (app.name.clone(), refusal))
    });
    if let Some((app, (refusal, retry_in))) = refused {
        let mut readiness = Readiness::unavailable(store, wechat, code::WECHAT_CREDENTIALS_REFUSED);
        readiness.wechat_errcode = Some(refusal.errcode);
        readiness.message = Some(format!(
            "WeChat refuses the credentials of app {app} (errcode {}: {}); asked again in {} s",
            refusal.errcode,
            refusal_cause(refusal.errcode),
            retry_in
        ));
        readiness.app = Some(app);
        return HttpResponse::ServiceUnavailable().json(readiness);
    }
    HttpResponse::Ok().json(Readiness {
        status: "ready",
        store,
        wechat,
        code: None,
        wechat_errcode: None,
        message: None,
        app: None,
        warnings,
    })
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
