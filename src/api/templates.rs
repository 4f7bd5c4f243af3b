//! Templates (docs/api.md): the account's templates and WeChat's libraries for
//! each channel (`report` to read, `admin` to add or delete), and the check
//! every send makes against the cached account list before anything is
//! spent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{App, IdParam, TemplateIdParam};
use crate::apps::AppContext;
use crate::auth::{Caller, Scope};
use crate::domain::TemplateId;
use crate::domain::{ChannelKind, TemplateDialect};
use crate::error::{ApiError, ErrorBody, code, respond};
use crate::templates::{AccountTemplate, Check, LibraryEntry, LibraryPage, TemplateError};

/// Most entries of one old-library page (WeChat's `count`).
const MAX_COUNT: u32 = 20;
/// Most titles of one subscribe-library page (WeChat's `limit`).
const MAX_LIMIT: u32 = 30;
/// Most keywords a template is made of.
const MAX_KEYWORDS: usize = 10;
/// Longest subscribe `scene` (WeChat's `sceneDesc`), in characters.
const MAX_SCENE: usize = 15;

impl From<TemplateError> for ApiError {
    fn from(err: TemplateError) -> Self {
        match err {
            TemplateError::NotConfigured(channel) => ApiError::new(
                StatusCode::NOT_FOUND,
                code::NOT_CONFIGURED,
                format!("the {channel} channel is not configured (WECHAT_OA_APPID / WECHAT_OA_SECRET)"),
            ),
            TemplateError::Rejected { errcode, errmsg } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::WECHAT_REJECTED,
                format!("WeChat refused (errcode {errcode})"),
            )
            .with("wechat_errcode", errcode)
            .with("wechat_errmsg", errmsg),
            TemplateError::Unavailable(why) => ApiError::wechat_unavailable(why),
            TemplateError::Store(why) => {
                tracing::error!(error = %why, "store error");
                ApiError::store_unavailable()
            }
        }
    }
}

/// Fails a send, before anything is spent, whose template the account's
/// list does not hold, or (subscribe) whose `data` names a key the template
/// lacks; otherwise says whether the list names it long-term. A list that
/// cannot be had checks nothing (and says one-time).
pub(super) async fn known_template<'k>(
    app: &AppContext,
    channel: ChannelKind,
    template_id: &str,
    data_keys: impl IntoIterator<Item = &'k str>,
) -> Result<bool, ApiError> {
    match app.templates.check(channel, template_id, data_keys).await {
        Check::Known { long_term } => Ok(long_term),
        Check::Unchecked => Ok(false),
        Check::UnknownTemplate => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code::UNKNOWN_TEMPLATE,
            format!(
                "{template_id} is not among the account's templates ({channel} channel); nothing was spent and WeChat was not called"
            ),
        )),
        Check::MissingKey(key) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code::INVALID_DATA,
            format!(
                "data.{key}: the template has no such keyword; nothing was spent and WeChat was not called"
            ),
        )
        .with("field", key)
        .with(
            "rule",
            "a keyword of the template (GET /v1/templates?channel=subscribe lists its keys)",
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChannelQuery {
    /// The channel, by its API name (`GET /v1/apps` lists an app's).
    channel: String,
}

fn channel(raw: &str) -> Result<ChannelKind, ApiError> {
    ChannelKind::parse(raw)
        .ok_or_else(|| ApiError::invalid_request(format!("channel must be one of {}", ChannelKind::names())))
}

#[derive(Serialize, ToSchema)]
pub struct TemplateList {
    channel: ChannelKind,
    templates: Vec<AccountTemplate>,
}

/// The account's templates of a channel (cached briefly, shared by every instance).
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(ChannelQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = TemplateList, description = "The account's templates, with their data keys"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 404, body = ErrorBody, description = "not_configured (the official account)"),
        (status = 422, body = ErrorBody, description = "wechat_rejected"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable"),
    ))]
pub async fn list(
    app: App,
    caller: Caller,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let channel = channel(&query.channel)?;
    let templates = app.templates.list(channel).await?;
    Ok(HttpResponse::Ok().json(TemplateList { channel, templates }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LibraryQuery {
    /// `template` or `subscribe` (the official account has no library to browse).
    channel: String,
    /// Old library: first entry (default 0).
    offset: Option<u32>,
    /// Old library: entries, 1 to 20 (default 20).
    count: Option<u32>,
    /// Subscribe library: first title (default 0).
    start: Option<u32>,
    /// Subscribe library: titles, 1 to 30 (default 30).
    limit: Option<u32>,
    /// Subscribe library: category ids, comma-separated (default: all).
    categories: Option<String>,
}

/// A page of WeChat's template library for a channel.
#[utoipa::path(get, path = "/v1/template-library", tag = "templates", params(LibraryQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = LibraryPage, description = "Library entries"),
        (status = 400, body = ErrorBody, description = "invalid_request (paging beyond WeChat's maxima, or parameters of the other library), before any call"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 422, body = ErrorBody, description = "wechat_rejected"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable"),
    ))]
pub async fn library(
    app: App,
    caller: Caller,
    query: web::Query<LibraryQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let q = query.into_inner();
    let channel = channel(&q.channel)?;
    let (start, count) = match channel.templates() {
        TemplateDialect::OldLibrary => {
            if q.start.is_some() || q.limit.is_some() || q.categories.is_some() {
                return Err(ApiError::invalid_request(
                    "the template library pages with offset and count",
                ));
            }
            (q.offset.unwrap_or(0), bounded("count", q.count, MAX_COUNT)?)
        }
        TemplateDialect::Subscribe => {
            if q.offset.is_some() || q.count.is_some() {
                return Err(ApiError::invalid_request(
                    "the subscribe library pages with start and limit",
                ));
            }
            if let Some(ids) = &q.categories
                && (ids.is_empty() || !ids.split(',').all(|id| id.parse::<u32>().is_ok()))
            {
                return Err(ApiError::invalid_request(
                    "categories must be category ids separated by commas",
                ));
            }
            (q.start.unwrap_or(0), bounded("limit", q.limit, MAX_LIMIT)?)
        }
        TemplateDialect::OfficialAccount => return Err(no_library()),
    };
    let page = app
        .templates
        .library(channel, start, count, q.categories.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

fn bounded(name: &str, value: Option<u32>, max: u32) -> Result<u32, ApiError> {
    match value.unwrap_or(max) {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_request(format!(
            "{name} must be 1 to {max} (WeChat's maximum)"
        ))),
    }
}

fn no_library() -> ApiError {
    ApiError::invalid_request(
        "WeChat has no library to browse for the official account: add a template by its short id (e.g. OPENTM207498902)",
    )
}

/// A library id: 1 to 64 of `[A-Za-z0-9_-]`.
fn library_id(raw: &str) -> Result<&str, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(raw)
        .ok_or_else(|| ApiError::invalid_request("library id must be 1 to 64 of [A-Za-z0-9_-]"))
}

/// One library entry with its keywords (their ids make a template).
#[utoipa::path(get, path = "/v1/template-library/{id}", tag = "templates",
    params(("id" = String, Path, description = "Library id (e.g. AT0002, or a subscribe tid)"), ChannelQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = LibraryEntry, description = "The entry and its keywords"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 422, body = ErrorBody, description = "wechat_rejected (e.g. an unknown id)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable"),
    ))]
pub async fn library_entry(
    app: App,
    caller: Caller,
    id: web::Path<IdParam>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let channel = channel(&query.channel)?;
    if channel.templates() == TemplateDialect::OfficialAccount {
        return Err(no_library());
    }
    let entry = app.templates.library_entry(channel, library_id(&id.id)?).await?;
    Ok(HttpResponse::Ok().json(entry))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    /// The channel, by its API name (`GET /v1/apps` lists an app's).
    channel: String,
    /// The library entry: an old-library id (`AT0002`), a subscribe tid, or
    /// an official-account short id (`OPENTM207498902`).
    library_id: String,
    /// The keywords, in order (not for the official account, which takes
    /// the entry's own).
    #[serde(default)]
    keyword_ids: Vec<u32>,
    /// Subscribe only: what the template is for, at most 15 characters.
    scene: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Added {
    channel: ChannelKind,
    template_id: String,
}

/// Adds a template from the library to the account.
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = NewTemplate,
    security(("api_key" = [])),
    responses(
        (status = 201, body = Added, description = "Added; the cached list is refreshed"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the admin scope"),
        (status = 404, body = ErrorBody, description = "not_configured (the official account)"),
        (status = 422, body = ErrorBody, description = "wechat_rejected (e.g. the account's limit of 25 / 50 templates)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable"),
    ))]
pub async fn add(app: App, caller: Caller, body: web::Json<NewTemplate>) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let body = body.into_inner();
    let channel = channel(&body.channel)?;
    let library_id = library_id(&body.library_id)?;
    let dialect = channel.templates();
    match dialect {
        TemplateDialect::OfficialAccount if !body.keyword_ids.is_empty() => {
            return Err(ApiError::invalid_request(
                "an official-account template takes its library entry's keywords: leave keyword_ids out",
            ));
        }
        TemplateDialect::OfficialAccount => {}
        _ if body.keyword_ids.is_empty() || body.keyword_ids.len() > MAX_KEYWORDS => {
            return Err(ApiError::invalid_request(format!(
                "keyword_ids must list 1 to {MAX_KEYWORDS} keyword ids"
            )));
        }
        _ => {}
    }
    let scene = body.scene.unwrap_or_default();
    if dialect != TemplateDialect::Subscribe && !scene.is_empty() {
        return Err(ApiError::invalid_request("scene is for subscribe templates"));
    }
    if scene.chars().count() > MAX_SCENE || scene.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(format!(
            "scene must be at most {MAX_SCENE} printable characters"
        )));
    }
    let template_id = app
        .templates
        .add(channel, library_id, &body.keyword_ids, &scene)
        .await?;
    tracing::info!(%channel, library_id, %template_id, "template added");
    Ok(respond(
        StatusCode::CREATED,
        json!(Added { channel, template_id }),
    ))
}

/// Deletes one of the account's templates.
#[utoipa::path(delete, path = "/v1/templates/{template_id}", tag = "templates",
    params(("template_id" = String, Path, description = "The account's template id"), ChannelQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted; the cached list is refreshed"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the admin scope"),
        (status = 404, body = ErrorBody, description = "not_configured (the official account)"),
        (status = 422, body = ErrorBody, description = "wechat_rejected (e.g. no such template)"),
        (status = 503, body = ErrorBody, description = "wechat_unavailable"),
    ))]
pub async fn delete(
    app: App,
    caller: Caller,
    template_id: web::Path<TemplateIdParam>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let channel = channel(&query.channel)?;
    let template_id = TemplateId::parse(&template_id.template_id)
        .map_err(|e| ApiError::invalid_request(format!("template_id: {e}")))?;
    app.templates.delete(channel, template_id.as_str()).await?;
    tracing::info!(%channel, template_id = template_id.as_str(), "template deleted");
    Ok(HttpResponse::Ok()
        .json(json!({"channel": channel, "template_id": template_id.as_str(), "deleted": true})))
}
