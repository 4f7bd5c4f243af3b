//! The app a request acts on, resolved once per request from its route:
//! `/v1/apps/{app}/...` names it; the bare `/v1/...` routes and today's
//! push paths act on `default` (or on the only app). Handlers take [`App`]
//! and never look an app up themselves; a request's credentials are
//! checked against the app here, once (an API key must name it, a session
//! token must have been issued by it).

use std::future::{Ready, ready};
use std::ops::Deref;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::AppState;
use crate::apps::{AppContext, OfficialAccount};
use crate::auth::Caller;
use crate::error::{ApiError, code};

/// Path parameters by name: a route under `/v1/apps/{app}` has the app's
/// name besides its own, so handlers read theirs by name, never by position.
#[derive(serde::Deserialize)]
pub struct OpenidParam {
    pub openid: String,
}

#[derive(serde::Deserialize)]
pub struct MsgidParam {
    pub msgid: String,
}

#[derive(serde::Deserialize)]
pub struct IdParam {
    pub id: String,
}

#[derive(serde::Deserialize)]
pub struct TemplateIdParam {
    pub template_id: String,
}

/// The app named by the route (or the default one).
pub struct App(pub Arc<AppContext>);

impl Deref for App {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

impl App {
    /// The app's official account, or 404 `not_configured`.
    pub fn official_account(&self) -> Result<&OfficialAccount, ApiError> {
        self.0.official_account.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                code::NOT_CONFIGURED,
                "the official account is not configured (WECHAT_OA_APPID / WECHAT_OA_SECRET)",
            )
        })
    }
}

fn unknown_app(name: Option<&str>) -> ApiError {
    let message = match name {
        Some(name) => format!("no app named {name:?} is configured (GET /v1/apps lists them)"),
        None => {
            "several apps are configured and none is named default: name one, /v1/apps/{app}/...".to_owned()
        }
    };
    ApiError::new(StatusCode::NOT_FOUND, code::UNKNOWN_APP, message)
}

/// The app `req`'s route names, or the default app.
pub fn resolve(req: &HttpRequest) -> Result<Arc<AppContext>, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(ApiError::store_unavailable)?;
    match req.match_info().get("app") {
        Some(name) => state
            .apps
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_app(Some(name))),
        None => state.apps.default_app().cloned().ok_or_else(|| unknown_app(None)),
    }
}

/// The app of `req`, and, when the request carries credentials, that they
/// are for this app.
fn authorized(req: &HttpRequest) -> Result<Arc<AppContext>, ApiError> {
    let app = resolve(req)?;
    if req.headers().contains_key(AUTHORIZATION) {
        Caller::of(req)?.may_act_on(&app.name, app.wechat.appid())?;
    }
    Ok(app)
}

impl FromRequest for App {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorized(req).map(App))
    }
}
