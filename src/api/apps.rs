//! `GET /v1/apps`: the apps of this deployment a key may see, with each
//! one's channels and whether WeChat takes its credentials.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::apps::AppSummary;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct AppList {
    apps: Vec<AppSummary>,
}

/// The apps this key may act on.
#[utoipa::path(get, path = "/v1/apps", tag = "reports", operation_id = "list_apps",
    security(("api_key" = [])),
    responses(
        (status = 200, body = AppList, description = "The apps, by name"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
    ))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let apps = state
        .apps
        .iter()
        .filter(|app| caller.may_see(&app.name))
        .map(|app| app.summary())
        .collect();
    Ok(HttpResponse::Ok().json(AppList { apps }))
}
