//! Who is calling: a mini-program user holding a session token, or a backend
//! service holding an API key with scopes. Handlers ask for a [`Caller`] and
//! then for the scope they need; 401 means "not authenticated", 403 means
//! "authenticated, not allowed".

mod api_keys;
mod session;

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

pub use api_keys::{ApiKeys, AppScope, InvalidApiKeys, Scope};
pub use session::{SessionSigner, SessionToken};

use crate::clock::Clock;
use crate::domain::OpenId;
use crate::error::ApiError;

/// Both ways in, shared by all handlers.
pub struct Authenticator {
    pub sessions: SessionSigner,
    pub api_keys: ApiKeys,
    /// What session expiries are checked against.
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A mini-program user, as proven by a session token of `app`, whose
    /// mini-program was `appid` when the token was issued.
    User {
        openid: OpenId,
        app: String,
        appid: String,
    },
    /// A backend service, by the name of its API key.
    Backend {
        name: String,
        scopes: Vec<Scope>,
        apps: AppScope,
    },
}

impl Caller {
    /// A backend caller holding `scope` (admin holds every scope).
    pub fn require(&self, scope: Scope) -> Result<&str, ApiError> {
        match self {
            Caller::Backend { name, scopes, .. }
                if scopes.contains(&scope) || scopes.contains(&Scope::Admin) =>
            {
                Ok(name)
            }
            Caller::Backend { .. } => Err(ApiError::forbidden(format!(
                "this API key lacks the '{}' scope",
                scope.as_str()
            ))),
            Caller::User { .. } => Err(ApiError::forbidden(format!(
                "this route needs an API key with the '{}' scope",
                scope.as_str()
            ))),
        }
    }
}

impl Caller {
    /// The openid a collection route stores for: a user's own (a user may
    /// not name another), or the one a backend with `collect` names.
    pub fn collecting_for(&self, named: Option<&str>) -> Result<OpenId, ApiError> {
        match (self, named) {
            (Caller::User { openid, .. }, None) => Ok(openid.clone()),
            (Caller::User { .. }, Some(_)) => Err(ApiError::forbidden(
                "a user token collects for its own openid; leave 'openid' out",
            )),
            (Caller::Backend { .. }, named) => {
                self.require(Scope::Collect)?;
                let raw =
                    named.ok_or_else(|| ApiError::invalid_request("'openid' is required with an API key"))?;
                OpenId::parse(raw).map_err(|e| ApiError::invalid_request(format!("openid: {e}")))
            }
        }
    }
}

impl Caller {
    /// Whether this caller may act on the app named `app`, whose
    /// mini-program is `appid`: a key that does not name the app is 403; a
    /// session token of another app (or another WeChat account: a sandbox's
    /// token on a real instance) is 401.
    pub fn may_act_on(&self, app: &str, appid: &str) -> Result<(), ApiError> {
        match self {
            Caller::Backend { apps, .. } if apps.allows(app) => Ok(()),
            Caller::Backend { .. } => Err(ApiError::forbidden(format!("this API key is not for app {app}"))),
            Caller::User {
                app: issued_by,
                appid: issued_for,
                ..
            } if issued_by == app && issued_for == appid => Ok(()),
            Caller::User { .. } => Err(ApiError::unauthorized(
                "this session token was issued for another app; log in to this one",
            )),
        }
    }

    /// Whether a key may see the app (`GET /v1/apps`).
    pub fn may_see(&self, app: &str) -> bool {
        match self {
            Caller::Backend { apps, .. } => apps.allows(app),
            Caller::User { app: own, .. } => own == app,
        }
    }

    /// The caller of `req`, authenticated once per request (kept in its
    /// extensions for every extractor after the first).
    pub fn of(req: &HttpRequest) -> Result<Caller, ApiError> {
        if let Some(caller) = req.extensions().get::<Caller>() {
            return Ok(caller.clone());
        }
        let caller = authenticate(req)?;
        req.extensions_mut().insert(caller.clone());
        Ok(caller)
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Caller::of(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let auth = req
        .app_data::<web::Data<Arc<Authenticator>>>()
        .ok_or_else(|| ApiError::unauthorized("authentication is not configured"))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let bearer = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))?;
    if SessionToken::looks_like(bearer) {
        let token = auth
            .sessions
            .verify(bearer, auth.clock.now())
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        return Ok(Caller::User {
            openid: token.openid,
            app: token.app,
            appid: token.appid,
        });
    }
    let key = auth
        .api_keys
        .find(bearer)
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    Ok(Caller::Backend {
        name: key.name.clone(),
        scopes: key.scopes.clone(),
        apps: key.apps.clone(),
    })
}
