//! The OpenAPI 3.1 document of the service, generated from the handlers'
//! annotations, served at `/openapi.json`, and the API explorer (Swagger
//! UI, bundled in the binary) at `/docs`.

use actix_web::HttpResponse;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{
    APP_SCOPE, apps, credentials, dashboard, health, receipts, reports, send, sessions, subscriptions,
    templates, users,
};
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "formid-ledger",
        description = "Keeps WeChat mini-program users reachable: collects formIds, prepay_ids and subscribe grants per user and spends exactly one, once, for each template or subscribe message.",
    ),
    paths(
        health::healthz, health::readyz, health::metrics, document, explorer, dashboard::page,
        sessions::create, credentials::ingest, users::credentials, send::template,
        subscriptions::record, send::subscribe,
        reports::summary, reports::usage,
        templates::list, templates::library, templates::library_entry, templates::add, templates::delete,
        send::official_account, receipts::official_account_status, receipts::subscribe_status,
        apps::list,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Mini-program users: login and credential collection"),
        (name = "backends", description = "Backend services, by API key"),
        (name = "reports", description = "Usage reports"),
        (name = "templates", description = "Template libraries and the account's templates, per channel"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Both bearer schemes: user session tokens and API keys.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme("session", bearer("User session token from POST /v1/sessions"));
        components.add_security_scheme(
            "api_key",
            bearer("Backend API key from API_KEYS (scopes: collect, send, report, admin)"),
        );
    }
}

/// The document as served: every `/v1` path of an app also under
/// `/v1/apps/{app}`, with its `app` parameter.
pub fn document_json() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        let scoped: Vec<(String, Value)> = paths
            .iter()
            .filter(|(path, _)| path.as_str() != "/v1/apps")
            .filter_map(|(path, item)| {
                let rest = path.strip_prefix("/v1/")?;
                Some((format!("{APP_SCOPE}/{rest}"), in_app(item.clone())))
            })
            .collect();
        paths.extend(scoped);
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// A path item's operations as they are under `/v1/apps/{app}`.
fn in_app(mut item: Value) -> Value {
    let app = json!({
        "name": "app", "in": "path", "required": true,
        "description": "The app to act on (GET /v1/apps lists them)",
        "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"},
    });
    for operation in item.as_object_mut().into_iter().flat_map(|ops| ops.values_mut()) {
        let Some(operation) = operation.as_object_mut() else {
            continue;
        };
        if let Some(Value::String(id)) = operation.get_mut("operationId") {
            id.push_str("_in_app");
        }
        let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
        if let Some(parameters) = parameters.as_array_mut() {
            parameters.insert(0, app.clone());
        }
        if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
            responses.entry("404").or_insert_with(|| {
                json!({"description": "unknown_app", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
            });
        }
    }
    item
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// The API explorer (Swagger UI).
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 308, description = "Redirect to the explorer page at /docs/")))]
pub async fn explorer() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("location", "/docs/"))
        .finish()
}

/// The explorer's page and assets under `/docs/`.
pub fn explorer_assets() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").config(Config::new(["/openapi.json"]))
}
