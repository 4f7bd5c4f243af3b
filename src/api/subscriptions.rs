//! `POST /v1/subscriptions`: what a user answered in
//! `wx.requestSubscribeMessage`, posted as the mini-program got it. Each
//! accept is one grant; the other answers are counted and change nothing.
//! With `SUBSCRIBE_GRANTS_FROM=push` grants come from WeChat's pushes
//! instead, and this route changes nothing (so one frontend fits both).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::App;
use crate::apps::{Answer, Answered};
use crate::auth::Caller;
use crate::config::GrantSource;
use crate::domain::{ChannelKind, TemplateId};
use crate::error::{ApiError, ErrorBody};

/// Templates one posted result may name. One popup asks for at most three;
/// a few more leaves room for WeChat to grow, not for abuse.
pub const MAX_TEMPLATES: usize = 20;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsBody {
    /// Only with an API key; a user token posts for its own openid.
    openid: Option<String>,
    /// The object `wx.requestSubscribeMessage` resolved with, as is:
    /// `{"errMsg": "...", "<template_id>": "accept" | "reject" | "ban" | "filter"}`.
    #[schema(value_type = Object)]
    results: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Ignored {
    template_id: String,
    result: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionsResponse {
    /// Grants now held, per accepted one-time template.
    granted: BTreeMap<String, u32>,
    /// Accepted long-term templates (WeChat's type 3): the user is
    /// subscribed, and sends spend nothing until they turn it off.
    long_term: Vec<String>,
    /// Answers other than accept: nothing changed for those templates.
    ignored: Vec<Ignored>,
    /// `client`, or `push` when grants come from WeChat's pushes (then
    /// nothing here changed anything).
    #[schema(example = "client")]
    source: &'static str,
}

/// The results object → (template, answer, raw answer) per template; a
/// malformed object rejects the whole request.
fn parse_results(results: &Value) -> Result<Vec<Answered>, ApiError> {
    let object = results.as_object().ok_or_else(|| {
        ApiError::invalid_request("results must be the object wx.requestSubscribeMessage returned")
    })?;
    let entries: Vec<_> = object.iter().filter(|(k, _)| k.as_str() != "errMsg").collect();
    if entries.is_empty() {
        return Err(ApiError::invalid_request("results names no template"));
    }
    if entries.len() > MAX_TEMPLATES {
        return Err(ApiError::invalid_request(format!(
            "results names {} templates; at most {MAX_TEMPLATES}",
            entries.len()
        )));
    }
    entries
        .into_iter()
        .map(|(template, answer)| {
            let template = TemplateId::parse(template)
                .map_err(|e| ApiError::invalid_request(format!("results: {e}")))?;
            let raw = answer.as_str().ok_or_else(|| {
                ApiError::invalid_request(format!("results.{}: a string", template.as_str()))
            })?;
            if raw.len() > 64 {
                return Err(ApiError::invalid_request(format!(
                    "results.{}: at most 64 characters",
                    template.as_str()
                )));
            }
            Ok((template, Answer::parse(raw), raw.to_owned()))
        })
        .collect()
}

/// Record what a user answered a subscribe popup.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "users", request_body = SubscriptionsBody,
    security(("session" = []), ("api_key" = [])),
    responses(
        (status = 200, body = SubscriptionsResponse, description = "Grants now held per accepted template"),
        (status = 400, body = ErrorBody, description = "invalid_request (nothing stored)"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: API key without collect, or a user token naming an openid"),
        (status = 413, body = ErrorBody, description = "payload_too_large"),
        (status = 503, body = ErrorBody, description = "store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn record(
    app: App,
    caller: Caller,
    body: web::Json<SubscriptionsBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let openid = caller.collecting_for(body.openid.as_deref())?;
    let results = parse_results(&body.results)?;
    if app.grant_source == GrantSource::Push {
        return Ok(HttpResponse::Ok().json(SubscriptionsResponse {
            granted: BTreeMap::new(),
            long_term: Vec::new(),
            ignored: Vec::new(),
            source: "push",
        }));
    }
    let applied = app
        .apply_answers(ChannelKind::Subscribe, &openid, &results)
        .await?;
    let ignored: Vec<Ignored> = applied
        .ignored
        .into_iter()
        .map(|(template_id, result)| Ignored { template_id, result })
        .collect();
    let granted = applied.granted;
    // Openids are personal data: at debug only.
    tracing::debug!(openid = %openid.as_str(), "subscriptions recorded for");
    tracing::info!(
        granted = granted.len(),
        ignored = ignored.len(),
        "subscriptions recorded"
    );
    Ok(HttpResponse::Ok().json(SubscriptionsResponse {
        granted,
        long_term: applied.long_term,
        ignored,
        source: "client",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn malformed_results_reject_the_request() {
        for bad in [
            json!("accept"),
            json!({"errMsg": "requestSubscribeMessage:ok"}),
            json!({"bad id!": "accept"}),
            json!({"T1": 1}),
            json!({"T1": "x".repeat(65)}),
        ] {
            assert!(parse_results(&bad).is_err(), "{bad}");
        }
        let many: serde_json::Map<String, Value> =
            (0..1000).map(|n| (format!("T{n}"), json!("accept"))).collect();
        assert!(parse_results(&Value::Object(many)).is_err());
        let ok =
            parse_results(&json!({"errMsg": "requestSubscribeMessage:ok", "T1": "accept", "T2": "reject"}));
        assert_eq!(ok.unwrap().len(), 2);
    }
}
