//! `GET /dashboard`: the operators' page (docs/api.md) and its assets under
//! `/dashboard/assets/`, all embedded in the binary from `src/dashboard/`
//! (uPlot vendored from the npm registry; see `src/dashboard/vendor/`). The
//! page reads `/v1/reports/*` with an API key the operator types in; it
//! needs no network beyond this service.

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::{HttpResponse, HttpResponseBuilder, web};

use crate::error::ApiError;

/// Scripts, styles and API calls from this service only; no inline code.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const PAGE: &str = include_str!("../dashboard/index.html");

/// `(file name, content type, body)` of every asset.
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/dashboard.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/vendor/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../dashboard/vendor/uPlot.LICENSE"),
    ),
];

fn embedded(content_type: &str) -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        // Assets change only with the binary: revalidate on each load.
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)));
    response
}

/// The operators' dashboard: charts of the last 30 days of usage, the live
/// summary and grants per template, read with a `report` API key.
#[utoipa::path(get, path = "/dashboard", tag = "operations",
    responses((status = 200, description = "The dashboard page", content_type = "text/html")))]
pub async fn page() -> HttpResponse {
    embedded("text/html; charset=utf-8").body(PAGE)
}

/// The page's scripts, styles and the vendored library's licence.
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(file, ..)| *file == name.as_str())
        .ok_or_else(ApiError::not_found)?;
    Ok(embedded(content_type).body(*body))
}

/// Mounts the assets (the page itself is in [`super::routes`]).
pub fn assets() -> actix_web::Resource {
    web::resource("/dashboard/assets/{name}").route(web::get().to(asset))
}
