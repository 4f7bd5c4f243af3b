//! Who is calling: a mini-program user holding a session token, or a backend
//! service holding an API key with scopes. Handlers ask for a [`Caller`] and
//! then for the scope they need; 401 means "not authenticated", 403 means
//! "authenticated, not allowed".

mod api_keys;
mod session;

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

pub use api_keys::{ApiKeys, InvalidApiKeys, Scope};
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
    /// A mini-program user, as proven by a session token.
    User(OpenId),
    /// A backend service, by the name of its API key.
    Backend { name: String, scopes: Vec<Scope> },
}

impl Caller {
    /// A backend caller holding `scope` (admin holds every scope).
    pub fn require(&self, scope: Scope) -> Result<&str, ApiError> {
        match self {
            Caller::Backend { name, scopes } if scopes.contains(&scope) || scopes.contains(&Scope::Admin) => {
                Ok(name)
            }
            Caller::Backend { .. } => Err(ApiError::forbidden(format!(
                "this API key lacks the '{}' scope",
                scope.as_str()
            ))),
            Caller::User(_) => Err(ApiError::forbidden(format!(
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
            (Caller::User(openid), None) => Ok(openid.clone()),
            (Caller::User(_), Some(_)) => Err(ApiError::forbidden(
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

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
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
        return Ok(Caller::User(token.openid));
    }
    let key = auth
        .api_keys
        .find(bearer)
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    Ok(Caller::Backend {
        name: key.name.clone(),
        scopes: key.scopes.clone(),
    })
}
