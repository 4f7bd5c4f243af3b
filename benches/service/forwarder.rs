//! The bare forwarder the send rows are measured against (docs/targets.md):
//! an HTTP server that, per request, parses the body, runs the reserve
//! script, calls the simulator's send route, runs the commit script and
//! answers — nothing else (no auth, idempotency, validation, metrics,
//! templates or reports). It is the least work a send can be, on the same
//! HTTP stack, Redis scripts and WeChat client library as the service.
//!
//! The bench runs it as a child process of its own binary (so its CPU can
//! be read from `/proc`): [`ROLE`] in the environment makes `main` call
//! [`run`] instead of benchmarking.

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use formid_ledger::domain::{OpenId, TemplateId};
use formid_ledger::ledger::grants::{GrantLedger, GrantSettings, RedisGrants};
use formid_ledger::ledger::{LeaseId, Ledger, LedgerSettings, RedisLedger, RedisTarget, Settle};
use formid_ledger::store::RedisConnection;
use serde::Deserialize;
use serde_json::{Value, json};

/// Set (to anything) in a child's environment: the process is a forwarder.
pub const ROLE: &str = "FORMID_BENCH_FORWARDER";
/// The Redis it spends from, its key prefix, and the simulator's WeChat base.
pub const REDIS_URL: &str = "FORWARDER_REDIS_URL";
pub const PREFIX: &str = "FORWARDER_PREFIX";
pub const WECHAT_BASE: &str = "FORWARDER_WECHAT_BASE";
pub const LISTEN: &str = "FORWARDER_LISTEN";

/// How long a reserved use is held, as the service's default lease.
const LEASE: Duration = Duration::from_secs(30);

struct Forwarder {
    ledger: RedisLedger,
    grants: RedisGrants,
    /// The official account's grants, where the service keeps them.
    oa_grants: RedisGrants,
    redis: RedisConnection,
    prefix: String,
    http: reqwest::Client,
    base: String,
    token: String,
    oa_token: String,
}

/// What a backend posts: who, which template, what data.
#[derive(Deserialize)]
struct Message {
    touser: String,
    template_id: String,
    data: Value,
}

impl Message {
    /// The body of WeChat's send routes, as far as all three share it.
    fn wechat_body(&self) -> Value {
        json!({"touser": self.touser, "template_id": self.template_id, "data": self.data})
    }
}

impl Forwarder {
    async fn wechat(&self, path: &str, token: &str, body: Value) -> Option<Value> {
        let url = format!("{}{path}?access_token={token}", self.base);
        let answer = self.http.post(url).json(&body).send().await.ok()?;
        answer.json().await.ok()
    }
}

fn settle_by(answer: &Option<Value>) -> Settle {
    match answer {
        Some(answer) if answer["errcode"] == 0 => Settle::Commit,
        _ => Settle::Refund,
    }
}

fn reply(answer: Option<Value>) -> HttpResponse {
    match answer {
        Some(answer) if answer["errcode"] == 0 => HttpResponse::Ok().json(answer),
        Some(answer) => HttpResponse::BadGateway().json(answer),
        None => HttpResponse::BadGateway().finish(),
    }
}

async fn template(forwarder: web::Data<Forwarder>, message: web::Json<Message>) -> HttpResponse {
    let Ok(user) = OpenId::parse(&message.touser) else {
        return HttpResponse::BadRequest().finish();
    };
    let lease = LeaseId::random();
    let reserved = forwarder.ledger.reserve(&user, lease, LEASE).await;
    let Ok(Some(reservation)) = reserved.map(|r| r.reservation) else {
        return HttpResponse::Conflict().finish();
    };
    let mut body = message.wechat_body();
    body["form_id"] = json!(reservation.id.as_str());
    let answer = forwarder
        .wechat("/cgi-bin/message/wxopen/template/send", &forwarder.token, body)
        .await;
    let settled = forwarder.ledger.settle(&user, lease, settle_by(&answer)).await;
    if settled.is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    reply(answer)
}

/// Where a grant is spent, and on which WeChat call.
struct GrantRoute {
    /// The official account's grants and token, else the mini-program's.
    official_account: bool,
    /// The template is long-term: the lease takes the subscription.
    long_term: bool,
    path: &'static str,
}

/// One grant of the message's template reserved, WeChat called, the lease
/// settled by its answer.
async fn spend_grant(forwarder: &Forwarder, route: GrantRoute, message: &Message) -> HttpResponse {
    let (Ok(user), Ok(template)) = (
        OpenId::parse(&message.touser),
        TemplateId::parse(&message.template_id),
    ) else {
        return HttpResponse::BadRequest().finish();
    };
    let (grants, token) = match route.official_account {
        true => (&forwarder.oa_grants, &forwarder.oa_token),
        false => (&forwarder.grants, &forwarder.token),
    };
    let lease = LeaseId::random();
    let reserved = grants
        .reserve_for(&user, &template, route.long_term, lease, LEASE)
        .await;
    let Ok(Some(_)) = reserved.map(|r| r.reservation) else {
        return HttpResponse::Conflict().finish();
    };
    let answer = forwarder.wechat(route.path, token, message.wechat_body()).await;
    if grants
        .settle_grant(&user, lease, settle_by(&answer))
        .await
        .is_err()
    {
        return HttpResponse::InternalServerError().finish();
    }
    reply(answer)
}

async fn subscribe(forwarder: web::Data<Forwarder>, message: web::Json<Message>) -> HttpResponse {
    let route = GrantRoute {
        official_account: false,
        long_term: false,
        path: "/cgi-bin/message/subscribe/send",
    };
    spend_grant(&forwarder, route, &message).await
}

/// A subscribe message on a long-term subscription: the lease is taken
/// (so a 43101 could end it) but nothing is spent.
async fn subscribe_long_term(forwarder: web::Data<Forwarder>, message: web::Json<Message>) -> HttpResponse {
    let route = GrantRoute {
        official_account: false,
        long_term: true,
        path: "/cgi-bin/message/subscribe/send",
    };
    spend_grant(&forwarder, route, &message).await
}

/// An official-account subscribe notification: one of the follower's
/// grants (the official account's ledger) spent on a bizsend.
async fn official_account_subscribe(
    forwarder: web::Data<Forwarder>,
    message: web::Json<Message>,
) -> HttpResponse {
    let route = GrantRoute {
        official_account: true,
        long_term: false,
        path: "/cgi-bin/message/subscribe/bizsend",
    };
    spend_grant(&forwarder, route, &message).await
}

/// An official-account template message spends nothing: the follow is
/// what pays for it, so the forwarder only forwards.
async fn official_account(forwarder: web::Data<Forwarder>, message: web::Json<Message>) -> HttpResponse {
    let body = message.wechat_body();
    reply(
        forwarder
            .wechat("/cgi-bin/message/template/send", &forwarder.oa_token, body)
            .await,
    )
}

/// [`official_account`] plus the one write the service makes for such a
/// message: the msgid remembered (`SET NX` with a week's expiry), so WeChat's
/// delivery push can be matched to it. Measures what receipts cost.
async fn official_account_with_receipt(
    forwarder: web::Data<Forwarder>,
    message: web::Json<Message>,
) -> HttpResponse {
    let body = message.wechat_body();
    let answer = forwarder
        .wechat("/cgi-bin/message/template/send", &forwarder.oa_token, body)
        .await;
    if let Some(msgid) = answer.as_ref().and_then(|a| a["msgid"].as_i64()) {
        let remember = redis::cmd("SET")
            .arg(format!("{}:receipt:{msgid}", forwarder.prefix))
            .arg(r#"{"status":"accepted"}"#)
            .arg("NX")
            .arg("EX")
            .arg(7 * 86_400)
            .to_owned();
        if forwarder.redis.query(&remember).await.is_err() {
            return HttpResponse::InternalServerError().finish();
        }
    }
    reply(answer)
}

/// The simulator's access token for `appid`.
async fn token(http: &reqwest::Client, base: &str, appid: &str, secret: &str) -> String {
    let url = format!("{base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}");
    let answer: Value = http
        .get(url)
        .send()
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("a token answer");
    answer["access_token"]
        .as_str()
        .expect("the simulator issues a token")
        .to_owned()
}

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the forwarder needs {name}"))
}

/// Serves until killed, on the address in [`LISTEN`].
pub fn run() {
    actix_web::rt::System::new().block_on(async {
        let (redis, prefix, base) = (setting(REDIS_URL), setting(PREFIX), setting(WECHAT_BASE));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let redis = RedisConnection::new(RedisTarget::Single(redis), Duration::from_secs(2));
        let grant_settings = GrantSettings {
            max_per_template: 1_000,
            ..GrantSettings::default()
        };
        let forwarder = web::Data::new(Forwarder {
            ledger: RedisLedger::on(redis.clone(), &prefix, LedgerSettings::default()),
            grants: RedisGrants::on(redis.clone(), &prefix, grant_settings),
            oa_grants: RedisGrants::on(redis.clone(), &format!("{prefix}:oa_subscribe"), grant_settings),
            redis,
            token: token(&http, &base, "wxsandbox", "sandbox-secret").await,
            oa_token: token(&http, &base, "wxsandboxoa", "sandbox-oa-secret").await,
            http,
            base,
            prefix,
        });
        HttpServer::new(move || {
            App::new()
                .app_data(forwarder.clone())
                .route("/template", web::post().to(template))
                .route("/subscribe", web::post().to(subscribe))
                .route("/subscribe-long-term", web::post().to(subscribe_long_term))
                .route(
                    "/official-account-subscribe",
                    web::post().to(official_account_subscribe),
                )
                .route("/official-account", web::post().to(official_account))
                .route(
                    "/official-account-with-receipt",
                    web::post().to(official_account_with_receipt),
                )
        })
        .bind(setting(LISTEN))
        .expect("the forwarder's address is free")
        .run()
        .await
        .expect("the forwarder serves");
    });
}
