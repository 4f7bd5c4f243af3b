//! `GET /v1/users/{openid}/credentials`: what one user can be sent: credentials
//! oldest expiry first, without ids, and subscribe grants per template.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::SecondsFormat;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{App, OpenidParam};
use crate::auth::{Caller, Scope};
use crate::domain::{ChannelKind, CredentialKind, OpenId, TemplateId};
use crate::error::{ApiError, ErrorBody};
use crate::ledger::grants::GrantHoldings;

#[derive(Serialize, ToSchema)]
pub struct HeldCredential {
    kind: CredentialKind,
    uses_left: u8,
    /// RFC 3339.
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserCredentials {
    openid: String,
    available_sends: u32,
    /// Uses reserved by sends in progress.
    leased: u32,
    /// Oldest expiry first.
    credentials: Vec<HeldCredential>,
    /// Subscribe grants held per one-time template.
    subscriptions: BTreeMap<String, u32>,
    /// Long-term templates the user is subscribed to.
    long_term_subscriptions: Vec<String>,
}

/// What one user can be sent.
#[utoipa::path(get, path = "/v1/users/{openid}/credentials", tag = "backends",
    params(("openid" = String, Path, description = "WeChat openid")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = UserCredentials, description = "An unknown openid has none"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 503, body = ErrorBody, description = "store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn credentials(
    app: App,
    caller: Caller,
    path: web::Path<OpenidParam>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let openid =
        OpenId::parse(&path.openid).map_err(|e| ApiError::invalid_request(format!("openid: {e}")))?;
    let holdings = app.ledger.inspect(&openid).await?;
    let (subscriptions, long_term_subscriptions) =
        named(app.grants_of(ChannelKind::Subscribe)?.grants(&openid).await?);
    Ok(HttpResponse::Ok().json(UserCredentials {
        openid: openid.as_str().to_owned(),
        available_sends: holdings.available_sends(),
        leased: holdings.leased,
        credentials: holdings
            .credentials
            .iter()
            .map(|c| HeldCredential {
                kind: c.kind,
                uses_left: c.uses_left,
                expires_at: c.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            })
            .collect(),
        subscriptions,
        long_term_subscriptions,
    }))
}

/// What one follower of the official account holds for its subscribe
/// notifications.
#[derive(Serialize, ToSchema)]
pub struct FollowerSubscriptions {
    openid: String,
    /// Grants held per one-time template.
    subscriptions: BTreeMap<String, u32>,
    /// Long-term templates the follower is subscribed to.
    long_term_subscriptions: Vec<String>,
}

/// What one follower can be sent as official-account subscribe notifications.
#[utoipa::path(get, path = "/v1/official-account/subscriptions/{openid}", tag = "backends",
    operation_id = "official_account_subscriptions",
    params(("openid" = String, Path, description = "The follower's openid (of the official account)")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = FollowerSubscriptions, description = "An unknown openid holds nothing"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 404, body = ErrorBody, description = "not_configured: no official account"),
        (status = 503, body = ErrorBody, description = "store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn official_account_subscriptions(
    app: App,
    caller: Caller,
    path: web::Path<OpenidParam>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let openid =
        OpenId::parse(&path.openid).map_err(|e| ApiError::invalid_request(format!("openid: {e}")))?;
    app.official_account()?;
    let (subscriptions, long_term_subscriptions) = named(
        app.grants_of(ChannelKind::OfficialAccountSubscribe)?
            .grants(&openid)
            .await?,
    );
    Ok(HttpResponse::Ok().json(FollowerSubscriptions {
        openid: openid.as_str().to_owned(),
        subscriptions,
        long_term_subscriptions,
    }))
}

/// Grants held per one-time template and the long-term subscriptions, by
/// template id.
fn named(holdings: GrantHoldings) -> (BTreeMap<String, u32>, Vec<String>) {
    let name = |template: TemplateId| template.as_str().to_owned();
    (
        holdings
            .templates
            .into_iter()
            .map(|(template, n)| (name(template), n))
            .collect(),
        holdings.long_term.into_iter().map(name).collect(),
    )
}
