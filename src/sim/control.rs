//! The control routes under `/sandbox`: handing out login codes, formIds,
//! prepay_ids and templates, answering subscribe popups as a user would,
//! reading inboxes and stats, setting faults.
//! Input is parsed here, once (unknown fields rejected), and every refusal,
//! actix's own extractor errors included, becomes a `{"code","message"}` 4xx.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::errors::ControlError;
use super::fault::FaultRequest;
use super::handle::{Account, NamedAppid};
use super::subscribe::RESULTS;
use crate::domain::{OpenId, TemplateId};

const MAX_FORM_IDS: u32 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/login-codes").route(web::post().to(login_code)))
        .service(resource("/form-ids").route(web::post().to(form_ids)))
        .service(resource("/payments").route(web::post().to(payment)))
        .service(resource("/inbox/{openid}").route(web::get().to(inbox)))
        .service(
            resource("/faults")
                .route(web::get().to(active_fault))
                .route(web::post().to(set_fault)),
        )
        .service(resource("/stats").route(web::get().to(stats)))
        .service(
            resource("/templates")
                .route(web::get().to(templates))
                .route(web::post().to(register_template)),
        )
        .service(resource("/subscriptions").route(web::post().to(subscribe)))
        .service(resource("/subscriptions/change").route(web::post().to(change_subscription)))
        .service(resource("/subscribe-templates").route(web::post().to(register_subscribe_template)))
        .service(resource("/oa/followers").route(web::post().to(follow)))
        .service(resource("/oa/subscriptions").route(web::post().to(oa_subscribe)))
        .service(resource("/oa/subscriptions/change").route(web::post().to(oa_change_subscription)))
        .service(resource("/oa/blocks").route(web::post().to(block)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenIdRequest {
    openid: String,
}

/// The user follows the official account.
async fn follow(account: Account, body: web::Json<OpenIdRequest>) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    account.lock().follow(&openid);
    Ok(HttpResponse::Ok().json(json!({"openid": openid.as_str(), "following": true})))
}

/// The user (a follower) refuses the account's messages: they are accepted,
/// then fail with `failed:user block`.
async fn block(account: Account, body: web::Json<OpenIdRequest>) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    account.lock().block(&openid);
    Ok(HttpResponse::Ok().json(json!({"openid": openid.as_str(), "blocking": true})))
}

/// Most bytes a control request's body may have.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Middleware on the control routes: a JSON body's optional `"appid"` names
/// the simulated app the request is for. It is taken out of the body (the
/// routes' bodies refuse unknown fields) and kept for [`Account`].
pub async fn named_app(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() != actix_web::http::Method::POST || req.path().starts_with("/sandbox/wechat") {
        return next.call(req).await;
    }
    let Ok(body) = req.extract::<web::Bytes>().await else {
        return next.call(req).await;
    };
    let mut body = body;
    if let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(&body)
        && let Some(appid) = fields.remove("appid")
    {
        let Some(appid) = appid.as_str() else {
            let err = ControlError::invalid("appid must be a string");
            return Ok(req.into_response(err.error_response()));
        };
        req.extensions_mut().insert(NamedAppid(appid.to_owned()));
        body = serde_json::to_vec(&fields).unwrap_or_default().into();
    }
    if body.len() > MAX_CONTROL_BODY {
        let err = ControlError::invalid("the body is too large");
        return Ok(req.into_response(err.error_response()));
    }
    req.set_payload(actix_web::dev::Payload::from(body));
    next.call(req).await
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Bodies are JSON whatever their `Content-Type` (as for the service, so
/// plain `curl -d` works).
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .content_type(|_| true)
        .content_type_required(false)
        .error_handler(|err, _req| ControlError::invalid(err.to_string()).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| ControlError::invalid(err.to_string()).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| ControlError::invalid(err.to_string()).into())
}

pub async fn not_found() -> HttpResponse {
    ControlError::NotFound.error_response()
}

pub async fn method_not_allowed() -> HttpResponse {
    ControlError::MethodNotAllowed.error_response()
}

fn parse_openid(raw: &str) -> Result<OpenId, ControlError> {
    OpenId::parse(raw).map_err(|err| ControlError::invalid(err.to_string()))
}

/// Past or present only: WeChat never hands out a credential from the future.
fn parse_issued_at(raw: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ControlError> {
    let Some(raw) = raw else { return Ok(now) };
    let issued_at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| ControlError::invalid("issued_at must be an RFC 3339 timestamp"))?
        .to_utc();
    if issued_at > now {
        return Err(ControlError::invalid("issued_at must not be in the future"));
    }
    Ok(issued_at)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginCodeRequest {
    openid: String,
}

#[tracing::instrument(skip_all)]
async fn login_code(
    account: Account,
    body: web::Json<LoginCodeRequest>,
) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    let code = account.lock().issue_login_code(openid, account.now());
    Ok(HttpResponse::Ok().json(json!({ "code": code })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormIdsRequest {
    openid: String,
    count: u32,
    issued_at: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn form_ids(account: Account, body: web::Json<FormIdsRequest>) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    if !(1..=MAX_FORM_IDS).contains(&body.count) {
        return Err(ControlError::invalid(format!(
            "count must be 1 to {MAX_FORM_IDS}"
        )));
    }
    let now = account.now();
    let issued_at = parse_issued_at(body.issued_at.as_deref(), now)?;
    let ids = account.lock().issue_form_ids(&openid, body.count, issued_at, now);
    Ok(HttpResponse::Ok().json(json!({ "form_ids": ids })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentRequest {
    openid: String,
    issued_at: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn payment(account: Account, body: web::Json<PaymentRequest>) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    let now = account.now();
    let issued_at = parse_issued_at(body.issued_at.as_deref(), now)?;
    let prepay_id = account.lock().issue_prepay_id(&openid, issued_at, now);
    Ok(HttpResponse::Ok().json(json!({ "prepay_id": prepay_id })))
}

#[tracing::instrument(skip_all)]
async fn inbox(account: Account, path: web::Path<String>) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&path)?;
    let messages = account.lock().inbox(&openid);
    Ok(HttpResponse::Ok().json(json!({ "openid": openid.as_str(), "messages": messages })))
}

async fn active_fault(account: Account) -> HttpResponse {
    let fault = account.lock().fault();
    HttpResponse::Ok().json(json!({ "active": fault }))
}

#[tracing::instrument(skip_all)]
async fn set_fault(account: Account, body: web::Json<FaultRequest>) -> Result<HttpResponse, ControlError> {
    let fault = body.into_inner().into_fault()?;
    account.lock().set_fault(fault);
    Ok(HttpResponse::Ok().json(json!({ "active": fault })))
}

async fn stats(account: Account) -> HttpResponse {
    let mut stats = json!(account.lock().stats());
    if let Some(pusher) = account.pusher() {
        stats["pushes"] = pusher.stats();
    }
    HttpResponse::Ok().json(stats)
}

async fn templates(account: Account) -> HttpResponse {
    let templates = account.lock().templates();
    HttpResponse::Ok().json(json!({ "templates": templates }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateRequest {
    template_id: String,
}

#[tracing::instrument(skip_all)]
async fn register_template(
    account: Account,
    body: web::Json<TemplateRequest>,
) -> Result<HttpResponse, ControlError> {
    let id = body.into_inner().template_id;
    if TemplateId::parse(&id).is_err() {
        return Err(ControlError::invalid(
            crate::domain::InvalidTemplateId.to_string(),
        ));
    }
    account.lock().register_template(id.clone());
    Ok(HttpResponse::Ok().json(json!({ "template_id": id })))
}

fn parse_template(raw: &str) -> Result<TemplateId, ControlError> {
    TemplateId::parse(raw).map_err(|err| ControlError::invalid(err.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    openid: String,
    /// template id → what the user taps: accept, reject, ban or filter.
    results: std::collections::BTreeMap<String, String>,
}

/// The user answers a `wx.requestSubscribeMessage` popup; the answer is the
/// object the mini-program would get.
#[tracing::instrument(skip_all)]
async fn subscribe(
    account: Account,
    body: web::Json<SubscribeRequest>,
) -> Result<HttpResponse, ControlError> {
    let SubscribeRequest { openid, results } = body.into_inner();
    let openid = parse_openid(&openid)?;
    check_results(&results)?;
    let answer = account
        .lock()
        .request_subscription(&openid, &results)
        .map_err(ControlError::invalid)?;
    if let Some(pusher) = account.pusher() {
        let list: Vec<_> = answer
            .iter()
            .filter(|(template, _)| template.as_str() != "errMsg")
            .map(|(template, result)| json!({"TemplateId": template, "SubscribeStatusString": result, "PopupScene": "0"}))
            .collect();
        pusher.miniprogram_event(
            openid.as_str(),
            "subscribe_msg_popup_event",
            json!({"List": list}),
        );
    }
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OaSubscribeRequest {
    openid: String,
    /// template id → what the follower taps: accept, reject, ban or filter.
    results: std::collections::BTreeMap<String, String>,
    /// Where the popup was shown (WeChat's `PopupScene`; default 0).
    scene: Option<u32>,
}

/// A follower answers the official account's subscribe popup; WeChat pushes
/// the answers to the official account's endpoint (that push is the only
/// way the account learns them).
#[tracing::instrument(skip_all)]
async fn oa_subscribe(
    account: Account,
    body: web::Json<OaSubscribeRequest>,
) -> Result<HttpResponse, ControlError> {
    let OaSubscribeRequest {
        openid,
        results,
        scene,
    } = body.into_inner();
    let openid = parse_openid(&openid)?;
    check_results(&results)?;
    let answer = account
        .lock()
        .request_oa_subscription(&openid, &results)
        .map_err(ControlError::invalid)?;
    if let Some(pusher) = account.pusher() {
        let items: Vec<Vec<(&str, String)>> = answer
            .iter()
            .filter(|(template, _)| template.as_str() != "errMsg")
            .map(|(template, result)| {
                vec![
                    ("TemplateId", template.clone()),
                    (
                        "SubscribeStatusString",
                        result.as_str().unwrap_or_default().to_owned(),
                    ),
                    ("PopupScene", scene.unwrap_or(0).to_string()),
                ]
            })
            .collect();
        pusher.official_account_event(
            openid.as_str(),
            "subscribe_msg_popup_event",
            "SubscribeMsgPopupEvent",
            &items,
        );
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// A follower turns one of the official account's notifications off
/// ("reject") or on again ("accept"); WeChat pushes the change.
#[tracing::instrument(skip_all)]
async fn oa_change_subscription(
    account: Account,
    body: web::Json<ChangeRequest>,
) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    let template = parse_template(&body.template_id)?;
    let on = change_status(&body.status)?;
    account
        .lock()
        .change_oa_subscription(&openid, template.as_str(), on)
        .map_err(ControlError::invalid)?;
    if let Some(pusher) = account.pusher() {
        let item = vec![
            ("TemplateId", template.as_str().to_owned()),
            ("SubscribeStatusString", body.status.clone()),
        ];
        pusher.official_account_event(
            openid.as_str(),
            "subscribe_msg_change_event",
            "SubscribeMsgChangeEvent",
            &[item],
        );
    }
    Ok(HttpResponse::Ok().json(json!({
        "openid": openid.as_str(),
        "template_id": template.as_str(),
        "status": body.status,
    })))
}

/// "accept" (on) or "reject" (off).
fn change_status(status: &str) -> Result<bool, ControlError> {
    match status {
        "accept" => Ok(true),
        "reject" => Ok(false),
        _ => Err(ControlError::invalid("status must be accept or reject")),
    }
}

/// A popup's answers: 1 to 3 templates, each a valid id with a known answer.
fn check_results(results: &std::collections::BTreeMap<String, String>) -> Result<(), ControlError> {
    if results.is_empty() || results.len() > 3 {
        return Err(ControlError::invalid(
            "results names 1 to 3 templates, as one popup does",
        ));
    }
    for (template, result) in results {
        parse_template(template)?;
        if !RESULTS.contains(&result.as_str()) {
            return Err(ControlError::invalid(format!(
                "results.{template} must be one of {}",
                RESULTS.join(", ")
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    openid: String,
    template_id: String,
    status: String,
}

/// The user turns a template off ("reject": its grants go) or on again
/// ("accept") in the mini-program's settings.
#[tracing::instrument(skip_all)]
async fn change_subscription(
    account: Account,
    body: web::Json<ChangeRequest>,
) -> Result<HttpResponse, ControlError> {
    let openid = parse_openid(&body.openid)?;
    let template = parse_template(&body.template_id)?;
    let on = change_status(&body.status)?;
    account
        .lock()
        .change_subscription(&openid, template.as_str(), on)
        .map_err(ControlError::invalid)?;
    if let Some(pusher) = account.pusher() {
        let list = json!([{"TemplateId": template.as_str(), "SubscribeStatusString": body.status}]);
        pusher.miniprogram_event(
            openid.as_str(),
            "subscribe_msg_change_event",
            json!({"List": list}),
        );
    }
    Ok(HttpResponse::Ok().json(json!({
        "openid": openid.as_str(),
        "template_id": template.as_str(),
        "status": body.status,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeTemplateRequest {
    template_id: String,
    keywords: Vec<String>,
    /// WeChat's kind: 2 one-time (the default), 3 long-term.
    #[serde(rename = "type")]
    kind: Option<u8>,
}

#[tracing::instrument(skip_all)]
async fn register_subscribe_template(
    account: Account,
    body: web::Json<SubscribeTemplateRequest>,
) -> Result<HttpResponse, ControlError> {
    let SubscribeTemplateRequest {
        template_id,
        keywords,
        kind,
    } = body.into_inner();
    let long_term = match kind.unwrap_or(2) {
        2 => false,
        3 => true,
        _ => {
            return Err(ControlError::invalid(
                "type must be 2 (one-time) or 3 (long-term)",
            ));
        }
    };
    let template = parse_template(&template_id)?;
    let well_formed = |k: &String| {
        let kind = k.trim_end_matches(|c: char| c.is_ascii_digit());
        !kind.is_empty() && kind.len() < k.len() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    };
    if keywords.is_empty() || keywords.len() > 20 || !keywords.iter().all(well_formed) {
        return Err(ControlError::invalid(
            "keywords: 1 to 20 keys of the form <type><digits>, e.g. thing1",
        ));
    }
    account
        .lock()
        .add_subscribe_template(template.as_str().to_owned(), keywords.clone(), long_term);
    Ok(HttpResponse::Ok().json(json!({
        "template_id": template.as_str(),
        "keywords": keywords,
        "type": if long_term { 3 } else { 2 },
    })))
}
