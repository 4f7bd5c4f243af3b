//! The HTTP API v1 (docs/api.md): one file per resource, all sharing
//! [`AppState`]. Handlers parse input into domain types once, call the
//! ledger or the send pipeline, and map outcomes to responses; the rules
//! themselves live elsewhere.
//!
//! [`routes`] is the one list of what is mounted; `openapi` documents
//! each entry and a test holds the two equal.

mod credentials;
mod dashboard;
mod health;
pub mod middleware;
mod once;
pub mod openapi;
pub mod push;
mod receipts;
mod reports;
pub mod send;
mod sessions;
mod subscriptions;
mod templates;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpResponse, Route, web};

use crate::channels::{SubscribeChannel, TemplateChannel};
use crate::config::GrantSource;
use crate::error::{self, ApiError};
use crate::idempotency::Idempotency;
use crate::ledger::Ledger;
use crate::ledger::grants::GrantLedger;
use crate::push::receipts::Receipts;
use crate::report::UsageRecorder;
use crate::send::Sender;
use crate::store::SharedStore;
use crate::templates::Templates;
use crate::wechat::{TokenManager, WechatClient};

pub use reports::report_days;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Which store and which WeChat this instance runs with (for `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    pub store: &'static str,
    pub sandbox: bool,
}

pub struct AppState {
    pub ledger: Arc<dyn Ledger>,
    pub grants: Arc<dyn GrantLedger>,
    pub wechat: WechatClient,
    pub usage: Arc<UsageRecorder>,
    pub shared: Arc<dyn SharedStore>,
    pub sender: Sender,
    /// The access token control (its state is part of readiness).
    pub tokens: Arc<TokenManager>,
    /// Template libraries and the cached account lists sends consult.
    pub templates: Arc<Templates>,
    /// The official account's send pipeline, when configured.
    pub official_account: Option<send::OfficialAccount>,
    /// Delivery status by msgid, from WeChat's receipt pushes.
    pub receipts: Receipts,
    /// The push endpoints' settings.
    pub push: push::PushEndpoints,
    /// The formId / prepay_id channel of the send pipeline.
    pub template: TemplateChannel,
    /// The subscribe grant channel.
    pub subscribe: SubscribeChannel,
    /// Where subscribe grants come from.
    pub grant_source: GrantSource,
    pub idempotency: Idempotency,
    pub mode: Mode,
}

/// Every route of the service: method, path, handler.
pub fn routes() -> Vec<(Method, &'static str, Route)> {
    vec![
        (Method::GET, "/healthz", web::get().to(health::healthz)),
        (Method::GET, "/readyz", web::get().to(health::readyz)),
        (Method::GET, "/metrics", web::get().to(health::metrics)),
        (Method::GET, "/openapi.json", web::get().to(openapi::document)),
        (Method::GET, "/docs", web::get().to(openapi::explorer)),
        (Method::GET, "/dashboard", web::get().to(dashboard::page)),
        (Method::POST, "/v1/sessions", web::post().to(sessions::create)),
        (
            Method::POST,
            "/v1/credentials",
            web::post().to(credentials::ingest),
        ),
        (
            Method::GET,
            "/v1/users/{openid}/credentials",
            web::get().to(users::credentials),
        ),
        (Method::POST, "/v1/messages", web::post().to(send::template)),
        (
            Method::POST,
            "/v1/subscriptions",
            web::post().to(subscriptions::record),
        ),
        (
            Method::POST,
            "/v1/subscribe-messages",
            web::post().to(send::subscribe),
        ),
        (
            Method::GET,
            "/v1/reports/summary",
            web::get().to(reports::summary),
        ),
        (Method::GET, "/v1/reports/usage", web::get().to(reports::usage)),
        (
            Method::POST,
            "/v1/official-account/messages",
            web::post().to(send::official_account),
        ),
        (
            Method::GET,
            "/v1/official-account/messages/{msgid}",
            web::get().to(receipts::official_account_status),
        ),
        (
            Method::GET,
            "/v1/subscribe-messages/{msgid}",
            web::get().to(receipts::subscribe_status),
        ),
        (Method::GET, "/v1/templates", web::get().to(templates::list)),
        (Method::POST, "/v1/templates", web::post().to(templates::add)),
        (
            Method::DELETE,
            "/v1/templates/{template_id}",
            web::delete().to(templates::delete),
        ),
        (
            Method::GET,
            "/v1/template-library",
            web::get().to(templates::library),
        ),
        (
            Method::GET,
            "/v1/template-library/{id}",
            web::get().to(templates::library_entry),
        ),
    ]
}

/// Mounts [`routes`] plus the JSON error handling they share. Other methods
/// on a known path answer 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LIMIT)
            // Any content type: the body must be JSON either way, and
            // `curl -d` sends form encoding by default.
            .content_type(|_| true)
            .content_type_required(false)
            .error_handler(error::json_error),
    )
    .app_data(web::PathConfig::default().error_handler(error::path_error))
    .app_data(web::QueryConfig::default().error_handler(error::query_error))
    .app_data(web::PayloadConfig::default().limit(BODY_LIMIT));
    let mut by_path: BTreeMap<&str, Vec<Route>> = BTreeMap::new();
    for (_, path, route) in routes() {
        by_path.entry(path).or_default().push(route);
    }
    for (path, routes) in by_path {
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |r, route| r.route(route));
        cfg.service(resource.default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::method_not_allowed())
        })));
    }
    cfg.service(openapi::explorer_assets());
    // WeChat's pushes: signed, not API-key protected, bodies of any type.
    cfg.service(
        web::resource("/wechat/push/miniprogram")
            .app_data(web::PayloadConfig::default().limit(BODY_LIMIT))
            .route(web::get().to(push::miniprogram_check))
            .route(web::post().to(push::miniprogram))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::method_not_allowed())
            })),
    );
    cfg.service(
        web::resource("/wechat/push/official-account")
            .app_data(web::PayloadConfig::default().limit(BODY_LIMIT))
            .route(web::get().to(push::official_account_check))
            .route(web::post().to(push::official_account))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::method_not_allowed())
            })),
    );
    cfg.service(dashboard::assets());
}

/// Unknown routes: a JSON 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
