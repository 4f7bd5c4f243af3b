//! The OpenAPI 3.1 document of the service, generated from the handlers'
//! annotations, served at `/openapi.json`, and the API explorer (Swagger
//! UI, bundled in the binary) at `/docs`.

use actix_web::HttpResponse;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{
    APP_SCOPE, apps, credentials, dashboard, health, push, quota, receipts, reports, send, sessions,
    subscriptions, templates, users,
};
use crate::domain::{ChannelKind, OpenId, TemplateDialect, TemplateId};
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "formid-ledger",
        description = "Keeps WeChat mini-program users reachable: collects formIds, prepay_ids and subscribe grants per user and spends exactly one, once, for each template or subscribe message.",
    ),
    paths(
        health::healthz, health::readyz, health::metrics, document, explorer, dashboard::page,
        sessions::create, credentials::ingest, users::credentials, users::official_account_subscriptions,
        subscriptions::record,
        reports::summary, reports::usage,
        templates::list, templates::library, templates::library_entry, templates::add, templates::delete,
        receipts::official_account_status, receipts::subscribe_status,
        apps::list, quota::get, quota::clear,
        push::miniprogram_check, push::miniprogram,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Mini-program users: login and credential collection"),
        (name = "backends", description = "Backend services, by API key"),
        (name = "reports", description = "Usage reports"),
        (name = "templates", description = "Template libraries and the account's templates, per channel"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "wechat", description = "WeChat's pushes (signed by WeChat, not by an API key)"),
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
/// `/v1/apps/{app}`, and each push endpoint under `/wechat/push/{app}`,
/// with its `app` parameter.
pub fn document_json() -> String {
    let mut api = ApiDoc::openapi();
    api.merge(send::SendRoutes::openapi());
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        // Both push endpoints take the same requests and answers.
        if let Some(item) = paths.get("/wechat/push/miniprogram") {
            let text = item.to_string().replace("miniprogram_", "official_account_");
            if let Ok(item) = serde_json::from_str(&text) {
                paths.insert("/wechat/push/official-account".to_owned(), item);
            }
        }
        let scoped: Vec<(String, Value)> = paths
            .iter()
            .filter(|(path, _)| path.as_str() != "/v1/apps")
            .filter_map(|(path, item)| {
                if let Some(endpoint) = path.strip_prefix("/wechat/push/") {
                    return Some((format!("/wechat/push/{{app}}/{endpoint}"), in_app(item.clone())));
                }
                let rest = path.strip_prefix("/v1/")?;
                Some((format!("{APP_SCOPE}/{rest}"), in_app(item.clone())))
            })
            .collect();
        paths.extend(scoped);
    }
    sharpen(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// An identifier as the domain checks it: 1 to `max` of `[A-Za-z0-9_-]`.
fn identifier(max: usize) -> Value {
    json!({"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{max}}}$")})
}

/// Text the handlers take: 1 to `max` bytes without control characters,
/// documented as printable ASCII (which every such value may be).
fn printable(max: usize) -> Value {
    json!({"type": "string", "pattern": format!("^[ -~]{{1,{max}}}$")})
}

/// What a valid value of a parameter or body field of this name is, as the
/// handlers check it: one table, so the document says exactly what a
/// request must be (a generator then builds requests that are accepted).
/// `in_library`: the template library's operations, which take only the
/// channels that have a library.
fn rule(name: &str, in_library: bool) -> Option<Value> {
    let channels: Vec<&str> = ChannelKind::ALL
        .iter()
        .filter(|c| !in_library || c.templates() != TemplateDialect::OfficialAccount)
        .map(|c| c.as_str())
        .collect();
    Some(match name {
        "openid" | "touser" => identifier(OpenId::MAX_LEN),
        "template_id" => identifier(TemplateId::MAX_LEN),
        "library_id" | "id" => identifier(64),
        "msgid" => json!({"type": "string", "pattern": "^[0-9]{1,32}$"}),
        "channel" => json!({"type": "string", "enum": channels}),
        "from" | "to" => json!({"type": "string", "format": "date"}),
        "Idempotency-Key" => printable(128),
        "client_msg_id" => printable(32),
        "emphasis_keyword" => printable(128),
        "page" | "pagepath" => printable(1024),
        "appid" => printable(64),
        "url" => json!({"type": "string", "pattern": "^https?://[ -~]{1,1016}$"}),
        "data" => json!({"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "required": ["value"],
            "properties": {"value": {"type": "string"}, "color": {"type": "string"}},
        }}),
        "results" => {
            json!({"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}})
        }
        _ => return None,
    })
}

/// Puts [`rule`] into a schema of the rule's type (nullable or not) that
/// says nothing more than its type and description; a schema that already
/// says more is left alone.
fn sharpen_schema(schema: &mut Value, name: &str, in_library: bool) {
    let (Some(Value::Object(mut rule)), Some(schema)) = (rule(name, in_library), schema.as_object_mut())
    else {
        return;
    };
    let Some(kind) = rule.remove("type") else {
        return;
    };
    let same_type = match schema.get("type") {
        Some(Value::Array(types)) => types.contains(&kind),
        Some(one) => *one == kind,
        None => false,
    };
    if same_type && schema.keys().all(|k| k == "type" || k == "description") {
        schema.extend(rule);
    }
}

/// The document made precise: every parameter and body field named in
/// [`rule`] carries its rule, and every operation that takes a bearer
/// token documents the 401 and 403 it can answer.
fn sharpen(doc: &mut Value) {
    let error =
        json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let in_library = path.contains("/template-library");
            for operation in item.as_object_mut().into_iter().flat_map(|ops| ops.values_mut()) {
                let Some(operation) = operation.as_object_mut() else {
                    continue;
                };
                for parameter in operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                    if let Some(schema) = parameter.get_mut("schema") {
                        sharpen_schema(schema, &name, in_library);
                    }
                }
                let secured = operation
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                if let (true, Some(responses)) = (
                    secured,
                    operation.get_mut("responses").and_then(Value::as_object_mut),
                ) {
                    for (status, what) in [
                        ("401", "unauthorized: no valid bearer token"),
                        ("403", "forbidden: the token lacks the scope or the app"),
                    ] {
                        let mut response = error.clone();
                        response["description"] = json!(what);
                        responses.entry(status).or_insert(response);
                    }
                }
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            for (name, property) in schema
                .get_mut("properties")
                .and_then(Value::as_object_mut)
                .into_iter()
                .flatten()
            {
                sharpen_schema(property, name, false);
            }
        }
    }
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
