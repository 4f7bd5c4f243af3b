//! The HTTP API v1 (docs/api.md): one file per resource, all sharing
//! [`AppState`]. Handlers parse input into domain types once, call the
//! ledger or the send pipeline, and map outcomes to responses; the rules
//! themselves live elsewhere.
//!
//! [`routes`] is the one list of what is mounted; `openapi` documents
//! each entry and a test holds the two equal.

mod apps;
pub mod connections;
mod credentials;
mod dashboard;
pub mod extract;
mod health;
pub mod middleware;
mod once;
pub mod openapi;
pub mod push;
mod quota;
mod receipts;
mod reports;
pub mod send;
mod sessions;
mod subscriptions;
mod templates;
mod users;

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::{HttpResponse, Route, web};

use std::sync::Arc;

use crate::apps::Apps;
use crate::error::{self, ApiError};
use crate::store::{EvictionWatch, RedisConnection};

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
    /// The deployment's apps; handlers get theirs through [`extract::App`].
    pub apps: Apps,
    pub mode: Mode,
    /// Whether the Redis under the ledger would evict keys (for `/readyz`).
    pub eviction: Arc<EvictionWatch>,
    /// With `REDIS_WAIT_REPLICAS` > 0: the Redis and that number, so
    /// `/readyz` can name a master with too few replicas for any write.
    pub replicas: Option<(RedisConnection, u32)>,
}

/// Where a named app's routes live: `/v1/apps/{app}` + the bare route's
/// path after `/v1`.
pub const APP_SCOPE: &str = "/v1/apps/{app}";

/// Every route of the service: method, path, handler. Each `/v1` route of
/// an app is there twice: bare (acting on the default app) and under
/// [`APP_SCOPE`].
pub fn routes() -> Vec<(Method, String, Route)> {
    let mut routes: Vec<(Method, String, Route)> = bare_routes()
        .into_iter()
        .map(|(method, path, route)| (method, path.to_owned(), route))
        .collect();
    routes.extend(bare_routes().into_iter().filter_map(|(method, path, route)| {
        let rest = path.strip_prefix("/v1/").filter(|_| path != "/v1/apps")?;
        Some((method, format!("{APP_SCOPE}/{rest}"), route))
    }));
    routes.push((Method::GET, "/v1/apps".to_owned(), web::get().to(apps::list)));
    routes
}

fn bare_routes() -> Vec<(Method, &'static str, Route)> {
    let mut routes = vec![
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
        (Method::GET, "/v1/quota", web::get().to(quota::get)),
        (Method::POST, "/v1/quota/clear", web::post().to(quota::clear)),
        (
            Method::POST,
            "/v1/subscriptions",
            web::post().to(subscriptions::record),
        ),
        (
            Method::GET,
            "/v1/reports/summary",
            web::get().to(reports::summary),
        ),
        (Method::GET, "/v1/reports/usage", web::get().to(reports::usage)),
        (
            Method::GET,
            "/v1/official-account/subscriptions/{openid}",
            web::get().to(users::official_account_subscriptions),
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
    ];
    routes.extend(send::routes());
    routes
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
    let mut by_path: BTreeMap<String, Vec<(Method, Route)>> = BTreeMap::new();
    for (method, path, route) in routes() {
        by_path.entry(path).or_default().push((method, route));
    }
    let mut allowed = AllowedMethods::default();
    for (path, routes) in by_path {
        let allow: Vec<&str> = routes.iter().map(|(m, _)| m.as_str()).collect();
        let allow = allow.join(", ");
        allowed.0.insert(path.clone(), allow.clone());
        let resource = routes
            .into_iter()
            .fold(web::resource(path.as_str()), |r, (_, route)| r.route(route));
        cfg.service(resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(&allow) }
        })));
    }
    cfg.service(openapi::explorer_assets());
    // WeChat's pushes: signed, not API-key protected, bodies of any type.
    // Today's paths act on the default app.
    for path in PUSH_PATHS {
        allowed.0.insert(path.to_owned(), PUSH_METHODS.to_owned());
        cfg.service(if path.ends_with("/miniprogram") {
            push_resource(path, push::miniprogram_check, push::miniprogram)
        } else {
            push_resource(path, push::official_account_check, push::official_account)
        });
    }
    cfg.service(dashboard::assets());
    cfg.app_data(web::Data::new(allowed));
}

/// The methods each route pattern takes, for the `Allow` of a 405 that
/// the middleware answers before routing (a method no route takes).
/// Patterns not listed (the explorer's and the dashboard's pages and
/// assets) take `GET`.
#[derive(Debug, Default)]
pub struct AllowedMethods(std::collections::HashMap<String, String>);

impl AllowedMethods {
    pub fn of(&self, pattern: &str) -> &str {
        self.0.get(pattern).map_or("GET", String::as_str)
    }
}

/// WeChat's push endpoints (GET for the console's URL check, POST for
/// pushes); the paths without an app act on the default app.
pub const PUSH_PATHS: [&str; 4] = [
    "/wechat/push/miniprogram",
    "/wechat/push/{app}/miniprogram",
    "/wechat/push/official-account",
    "/wechat/push/{app}/official-account",
];

const PUSH_METHODS: &str = "GET, POST";

/// 405 with the methods the path takes (`Allow`, as HTTP requires).
pub(crate) fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::method_not_allowed());
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// A push endpoint: the console's URL check (GET) and the pushes (POST).
fn push_resource<C, P, CArgs, PArgs>(path: &str, check: C, push: P) -> actix_web::Resource
where
    C: actix_web::Handler<CArgs>,
    CArgs: actix_web::FromRequest + 'static,
    C::Output: actix_web::Responder + 'static,
    P: actix_web::Handler<PArgs>,
    PArgs: actix_web::FromRequest + 'static,
    P::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(check))
        .route(web::post().to(push))
        .default_service(web::to(|| async { method_not_allowed(PUSH_METHODS) }))
}

/// Unknown routes: a JSON 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
