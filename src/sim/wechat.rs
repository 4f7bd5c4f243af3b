//! The simulated WeChat endpoints under `/sandbox/wechat`: turning HTTP
//! into calls on `state` and answers into WeChat's JSON. The rules
//! themselves live in `state` and `tokens`; faults are applied before any
//! of this runs (`faults::gate`).

use std::collections::HashMap;

use actix_web::dev::HttpServiceFactory;
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{BIZSEND_PATH, OA_SEND_PATH, SEND_PATH, SUBSCRIBE_SEND_PATH};
use super::control::{method_not_allowed, not_found};
use super::errors::{WxError, wx_answer};
use super::fault_gate;
use super::handle::{Account, Simulator};
use super::state::AppAuth;
use super::template_admin::{
    LibraryId, OfficialAccountAdd, Paging, SubscribeAdd, SubscribeDel, TemplateAdd,
    TemplateId as TemplateIdBody,
};

/// Real template sends are a few kilobytes; this bounds what one request
/// can make the simulator buffer.
const MAX_BODY: usize = 64 * 1024;

pub fn scope() -> impl HttpServiceFactory {
    web::scope("/wechat")
        .wrap(from_fn(fault_gate::gate))
        .service(resource("/cgi-bin/token").route(web::get().to(token)))
        .service(resource("/cgi-bin/stable_token").route(web::post().to(stable_token)))
        .service(resource("/sns/jscode2session").route(web::get().to(code_to_session)))
        .service(resource(SEND_PATH).route(web::post().to(send)))
        .service(resource(SUBSCRIBE_SEND_PATH).route(web::post().to(send_subscribe)))
        .service(resource(BIZSEND_PATH).route(web::post().to(send_bizsend)))
        .service(resource(OA_SEND_PATH).route(web::post().to(send_official_account)))
        .service(resource("/cgi-bin/openapi/quota/get").route(web::post().to(quota_get)))
        .service(resource("/cgi-bin/clear_quota").route(web::post().to(clear_quota)))
        .configure(template_routes)
        .default_service(web::to(not_found))
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

fn answer<T: Serialize>(result: Result<T, WxError>) -> HttpResponse {
    match result {
        Ok(payload) => HttpResponse::Ok().json(payload),
        Err(err) => err.into(),
    }
}

/// WeChat treats a malformed query like a missing parameter.
fn query(req: &HttpRequest) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

fn auth(params: &HashMap<String, String>) -> AppAuth<'_> {
    AppAuth {
        grant_type: params.get("grant_type").map(String::as_str),
        appid: params.get("appid").map(String::as_str),
        secret: params.get("secret").map(String::as_str),
    }
}

async fn read_body(payload: web::Payload) -> Option<web::Bytes> {
    payload.to_bytes_limited(MAX_BODY).await.ok()?.ok()
}

#[tracing::instrument(skip_all)]
async fn token(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    answer(account.lock().fetch_token(auth(&params), account.now()))
}

#[derive(Deserialize)]
struct StableTokenBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

#[tracing::instrument(skip_all)]
async fn stable_token(sim: web::Data<Simulator>, payload: web::Payload) -> HttpResponse {
    let body = read_body(payload).await;
    let Some(body) = body.and_then(|b| serde_json::from_slice::<StableTokenBody>(&b).ok()) else {
        return WxError::DataFormat.into();
    };
    let auth = AppAuth {
        grant_type: body.grant_type.as_deref(),
        appid: body.appid.as_deref(),
        secret: body.secret.as_deref(),
    };
    // The appid is in the body here: the account it names, or the first
    // (which refuses a foreign appid).
    let account = body
        .appid
        .as_deref()
        .and_then(|appid| sim.by_appid(appid))
        .unwrap_or_else(|| sim.first());
    let issued = account
        .lock()
        .fetch_stable_token(auth, body.force_refresh, account.now());
    answer(issued)
}

#[tracing::instrument(skip_all)]
async fn code_to_session(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    let js_code = params.get("js_code").map(String::as_str);
    answer(
        account
            .lock()
            .code_to_session(auth(&params), js_code, account.now()),
    )
}

#[tracing::instrument(skip_all)]
async fn send(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let params = query(&req);
    let body = read_body(payload).await;
    let result = account.lock().send(
        params.get("access_token").map(String::as_str),
        body.as_deref(),
        account.now(),
    );
    match result {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok" })),
        Err(err) => err.into(),
    }
}

#[tracing::instrument(skip_all)]
async fn send_subscribe(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let params = query(&req);
    let body = read_body(payload).await;
    let result = account.lock().send_subscribe(
        params.get("access_token").map(String::as_str),
        body.as_deref(),
        account.now(),
    );
    match result {
        Ok(msgid) => {
            // Its delivery receipt follows, as WeChat pushes it.
            let sent: Value = body
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            if let (Some(pusher), Some(touser)) = (account.pusher(), sent["touser"].as_str()) {
                let receipt = serde_json::json!({"List": {
                    "TemplateId": sent["template_id"], "MsgID": msgid.to_string(),
                    "ErrorCode": 0, "ErrorStatus": "success",
                }});
                pusher.miniprogram_event(touser, "subscribe_msg_sent_event", receipt);
            }
            HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }))
        }
        Err(refusal) => wx_answer(refusal.errcode(), &refusal.errmsg()),
    }
}

/// The official account's template message; its `TEMPLATESENDJOBFINISH`
/// follows in a push.
#[tracing::instrument(skip_all)]
async fn send_official_account(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let params = query(&req);
    let body = read_body(payload).await;
    let result = account
        .lock()
        .send_official_account(access_token(&params), body.as_deref(), account.now());
    match result {
        Ok(taken) => {
            if let (Some(pusher), false) = (account.pusher(), taken.repeated) {
                pusher.job_finished(&taken.touser, taken.msgid, taken.status);
            }
            HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok", "msgid": taken.msgid }))
        }
        Err(err) => err.into(),
    }
}

/// The official account's subscribe notification: WeChat's answer has no
/// msgid; its `subscribe_msg_sent_event` push does.
#[tracing::instrument(skip_all)]
async fn send_bizsend(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let params = query(&req);
    let body = read_body(payload).await;
    let result = account
        .lock()
        .send_bizsend(access_token(&params), body.as_deref(), account.now());
    match result {
        Ok(notified) => {
            if let Some(pusher) = account.pusher() {
                let item = vec![
                    ("TemplateId", notified.template_id),
                    ("MsgID", notified.msgid.to_string()),
                    ("ErrorCode", "0".to_owned()),
                    ("ErrorStatus", "success".to_owned()),
                ];
                pusher.official_account_event(
                    &notified.touser,
                    "subscribe_msg_sent_event",
                    "SubscribeMsgSentEvent",
                    &[item],
                );
            }
            HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok" }))
        }
        Err(refusal) => wx_answer(refusal.errcode(), &refusal.errmsg()),
    }
}

/// `openapi/quota/get`: `{"quota": {"daily_limit", "used", "remain"}}`.
async fn quota_get(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let params = query(&req);
    let body = json_body(payload).await;
    let result = body.and_then(|body| {
        account
            .lock()
            .quota_get(access_token(&params), body, account.now())
    });
    match result {
        Ok(quota) => {
            HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok", "quota": quota }))
        }
        Err(err) => err.into(),
    }
}

/// `clear_quota` `{"appid"}`.
async fn clear_quota(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let params = query(&req);
    let body = json_body(payload).await;
    let result = body.and_then(|body| {
        account
            .lock()
            .clear_quota(access_token(&params), body, account.now())
    });
    match result {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok" })),
        Err(err) => err.into(),
    }
}

/// Template management (docs/simulator.md), the three channels' routes.
fn template_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/cgi-bin/wxopen/template/library/list").route(web::post().to(template_library)))
        .service(
            resource("/cgi-bin/wxopen/template/library/get").route(web::post().to(template_library_entry)),
        )
        .service(resource("/cgi-bin/wxopen/template/add").route(web::post().to(template_add)))
        .service(resource("/cgi-bin/wxopen/template/list").route(web::post().to(template_list)))
        .service(resource("/cgi-bin/wxopen/template/del").route(web::post().to(template_del)))
        .service(resource("/wxaapi/newtmpl/getcategory").route(web::get().to(subscribe_categories)))
        .service(resource("/wxaapi/newtmpl/getpubtemplatetitles").route(web::get().to(subscribe_titles)))
        .service(resource("/wxaapi/newtmpl/getpubtemplatekeywords").route(web::get().to(subscribe_keywords)))
        .service(resource("/wxaapi/newtmpl/addtemplate").route(web::post().to(subscribe_add)))
        .service(resource("/wxaapi/newtmpl/gettemplate").route(web::get().to(subscribe_list)))
        .service(resource("/wxaapi/newtmpl/deltemplate").route(web::post().to(subscribe_del)))
        .service(resource("/cgi-bin/template/get_all_private_template").route(web::get().to(oa_templates)))
        .service(resource("/cgi-bin/template/api_add_template").route(web::post().to(oa_add)))
        .service(resource("/cgi-bin/template/del_private_template").route(web::post().to(oa_del)));
}

/// A management answer: WeChat's body with `errcode` 0 merged in.
fn managed(result: Result<Value, WxError>) -> HttpResponse {
    match result {
        Ok(Value::Object(mut body)) => {
            body.insert("errcode".into(), 0.into());
            body.insert("errmsg".into(), "ok".into());
            HttpResponse::Ok().json(body)
        }
        Ok(other) => HttpResponse::Ok().json(other),
        Err(err) => err.into(),
    }
}

/// The JSON body as `T`; unreadable → 47001, as WeChat answers.
async fn json_body<T: serde::de::DeserializeOwned>(payload: web::Payload) -> Result<T, WxError> {
    read_body(payload)
        .await
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(WxError::DataFormat)
}

fn access_token(params: &HashMap<String, String>) -> Option<&str> {
    params.get("access_token").map(String::as_str)
}

fn number(params: &HashMap<String, String>, name: &str) -> Option<u64> {
    params.get(name).and_then(|v| v.parse().ok())
}

macro_rules! body_route {
    ($name:ident, $body:ty, $method:ident) => {
        async fn $name(account: Account, req: HttpRequest, payload: web::Payload) -> HttpResponse {
            let params = query(&req);
            let body: Result<$body, WxError> = json_body(payload).await;
            managed(body.and_then(|body| {
                account
                    .lock()
                    .$method(access_token(&params), body, account.now())
            }))
        }
    };
}

body_route!(template_library, Paging, template_library);
body_route!(template_library_entry, LibraryId, template_library_entry);
body_route!(template_add, TemplateAdd, template_add);
body_route!(template_list, Paging, template_list);
body_route!(template_del, TemplateIdBody, template_del);
body_route!(subscribe_add, SubscribeAdd, subscribe_add);
body_route!(subscribe_del, SubscribeDel, subscribe_del);
body_route!(oa_add, OfficialAccountAdd, oa_add);
body_route!(oa_del, TemplateIdBody, oa_del);

async fn subscribe_categories(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    managed(
        account
            .lock()
            .subscribe_categories(access_token(&params), account.now()),
    )
}

async fn subscribe_titles(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    let (start, limit) = (number(&params, "start"), number(&params, "limit"));
    let ids = params.get("ids").map(String::as_str);
    managed(
        account
            .lock()
            .subscribe_titles(access_token(&params), ids, start, limit, account.now()),
    )
}

async fn subscribe_keywords(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    let tid = params.get("tid").map(String::as_str);
    managed(
        account
            .lock()
            .subscribe_keywords(access_token(&params), tid, account.now()),
    )
}

async fn subscribe_list(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    managed(
        account
            .lock()
            .subscribe_list(access_token(&params), account.now()),
    )
}

async fn oa_templates(account: Account, req: HttpRequest) -> HttpResponse {
    let params = query(&req);
    managed(account.lock().oa_templates(access_token(&params), account.now()))
}
