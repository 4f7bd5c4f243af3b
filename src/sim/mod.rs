//! The WeChat simulator (docs/simulator.md): a strict, in-memory fake of the four
//! WeChat endpoints the product calls, plus control routes that let tests,
//! sandbox mode and benchmarks hand out credentials, inject faults and see
//! what was delivered. It owns no I/O beyond its own HTTP routes; restarting
//! it forgets everything.
//!
//! # Credentials
//! appid `wxsandbox`, secret `sandbox-secret` (see [`SimConfig::default`]).
//!
//! # Built-in templates
//! Registered from the start (more with `POST /sandbox/templates`); the
//! simulator does not check which keywords `data` carries:
//! - `FDco73hhn-F5hDB5NItfkd8fCbZfeKxwXUCS2clB83A` (order shipped)
//! - `E3C9ZDcKJxUur44jTBqQX_CTRdPZ6kxZv2QzB_3kUX0` (payment succeeded)
//! - `fZgcptn8NAKeun01XW_FAF1w5zJp7WeaFOT8cHpEPAI` (appointment reminder)
//!
//! # WeChat routes (`/sandbox/wechat/...`)
//! They answer like WeChat: HTTP 200, `{"errcode", "errmsg"}` on errors.
//! - `GET /cgi-bin/token?grant_type=client_credential&appid&secret` →
//!   `{"access_token", "expires_in"}`. Every fetch issues a new token; the
//!   previous one stays valid for `token_overlap_secs` (or until its own
//!   expiry if sooner). Checks: grant_type (40002), appid missing/wrong
//!   (41002/40013), secret missing/wrong (41004/40125).
//! - `POST /cgi-bin/stable_token` `{grant_type, appid, secret, force_refresh?}`:
//!   same checks; the same token while it is valid, `expires_in` is what is
//!   left of it. `force_refresh: true` rotates it (previous valid for the
//!   overlap); forced refreshes under 30 s apart → 45011, the 21st of a day →
//!   45009. Its current token is separate from `/cgi-bin/token`'s. Non-JSON or
//!   mistyped body → 47001.
//! - `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code`
//!   → `{"openid", "session_key"}`: same appid/secret checks, grant_type
//!   40002, no js_code 41008, unknown or older than 5 minutes 40029, already
//!   used 40163.
//! - `POST /cgi-bin/message/wxopen/template/send?access_token=T`
//!   `{touser, template_id, page?, form_id, data, emphasis_keyword?}`, checked
//!   in this order: no token 41001; unknown token 40001; token past its ttl
//!   42001, or superseded and past the overlap 40001 (whichever happened
//!   first); body not JSON or fields of the wrong type 47001 (unknown fields
//!   are ignored, as WeChat does); template not registered 40037; `page`
//!   present but not `[A-Za-z0-9_/.-]+` (not starting with `/`) optionally
//!   followed by `?[A-Za-z0-9_=&.%-]*` 41030; `data` missing or not an object
//!   of objects with a string `"value"` 47003; form_id not issued here, issued
//!   to another openid, or 7 days old 41028; no uses left 41029; daily limit
//!   of successful sends (calendar day in UTC+8) reached 45009. Success:
//!   `{"errcode":0,"errmsg":"ok"}`, one use spent, message in the inbox.
//!
//! - `POST /cgi-bin/message/subscribe/send?access_token=T` `{touser,
//!   template_id, page?, data, miniprogram_state?, lang?}`: token checks as
//!   above; body not JSON 47001; touser unknown to this WeChat (never logged
//!   in, issued a credential or shown a popup) 40003; template not a
//!   subscribe template 40037; bad page 41030; a `miniprogram_state` or
//!   `lang` WeChat does not know, or `data` missing 47003; a `data` key the
//!   template lacks, or a value breaking WeChat's rules for its type 47003
//!   `argument invalid! data.<key>.value invalid` (rules written apart from
//!   the service's own validator, see `subscribe`); no grant left 43101;
//!   daily limit 45009. Success: `{"errcode":0,"errmsg":"ok","msgid"}`, one
//!   grant used, the message in the inbox (`kind: "subscribe"`).
//!
//! - Template management (docs/simulator.md), over a small library of its own
//!   (`library`), each checked in WeChat's order (`template_admin`):
//!   `POST /cgi-bin/wxopen/template/{library/list, library/get, add, list,
//!   del}` (the old library; `count` 1..=20, 25 templates at most: 45026),
//!   `GET /wxaapi/newtmpl/{getcategory, getpubtemplatetitles,
//!   getpubtemplatekeywords, gettemplate}` and `POST
//!   /wxaapi/newtmpl/{addtemplate, deltemplate}` (`limit` 1..=30; 2 to 5
//!   keywords, else 200020; unknown tid 200014; `sceneDesc` over 15
//!   characters 200021; 50 templates at most: 200012), and the official
//!   account's `GET /cgi-bin/template/get_all_private_template`, `POST
//!   /cgi-bin/template/{api_add_template, del_private_template}` under its
//!   own token (appid `wxsandboxoa`, secret `sandbox-oa-secret`; 25 at
//!   most). Unknown ids 40037; bad paging 47003. Added templates can be
//!   sent at once; deleted ones answer 40037.
//!
//! # Built-in subscribe templates
//! [`BUILTIN_SUBSCRIBE_TEMPLATES`] (one-time) and
//! [`BUILTIN_LONG_TERM_TEMPLATE`], with their keywords; more with
//! `POST /sandbox/subscribe-templates`.
//!
//! # Control routes (`/sandbox/...`)
//! JSON in and out; unknown fields are rejected; errors are 4xx
//! `{"code", "message"}` (`invalid_request`, `not_found`,
//! `method_not_allowed`), never 5xx.
//! - `POST /login-codes` `{"openid"}` → `{"code"}`: single use, 5 minutes.
//! - `POST /form-ids` `{"openid", "count", "issued_at"?}` → `{"form_ids"}`:
//!   count 1..=1000, ids are 32 lowercase hex, 1 send each. `issued_at`
//!   (RFC 3339, default now, not in the future) lets tests make old ids.
//! - `POST /payments` `{"openid", "issued_at"?}` → `{"prepay_id"}`: `wx` +
//!   14-digit UTC+8 timestamp + 20 lowercase hex, 3 sends.
//! - `GET /inbox/{openid}` → `{"openid", "messages": [{template_id, page,
//!   data, emphasis_keyword, form_id, sent_at}]}`, oldest first; the newest
//!   [`INBOX_CAPACITY`] per user are kept.
//! - `POST /faults` `{"errcode"?, "http_status"?, "delay_ms"?,
//!   "delay_answer_ms"?, "drop"?, "lose_answer"?, "count"}` →
//!   `{"active": fault or null}`; `GET /faults`
//!   shows it. The next `count` requests to any `/sandbox/wechat` route fail
//!   that way before any other check. At most one of `errcode` (nonzero;
//!   HTTP 200 `{"errcode": n, "errmsg": "injected fault"}`), `http_status`
//!   (400..=599, short text body), `drop` (connection closed, no response,
//!   the call not processed) and `lose_answer` (the call processed as usual,
//!   a send delivered and its credential used, then the connection closed
//!   with no response); `delay_ms` (≤ 60000) waits first and combines with
//!   any of them, or alone delays a normal answer; `delay_answer_ms`
//!   (≤ 60000) processes the call at once (a send is delivered) and holds
//!   back its answer, or the lost answer's close, that long. A new fault
//!   replaces the old; `count: 0` clears.
//! - `GET /stats` → `{"token_fetches", "token_refusals", "sends": {"<errcode>": n}}`:
//!   successful fetches from both token endpoints, requests they refused
//!   (wrong appid or secret); every template-send answer carrying an
//!   errcode, injected ones included (http_status and drop faults are not).
//! - `POST /templates` `{"template_id"}` (1–128 of `[A-Za-z0-9_-]`) registers a
//!   template; `GET /templates` lists them.
//! - `POST /subscriptions` `{"openid", "results": {"<template_id>": "accept" |
//!   "reject" | "ban" | "filter"}}` (1 to 3 subscribe templates, as one popup)
//!   → the object `wx.requestSubscribeMessage` returns
//!   (`{"errMsg": "requestSubscribeMessage:ok", "<template_id>": result}`);
//!   each accept is one grant; a template the user turned off answers
//!   `reject` without asking.
//! - `POST /subscriptions/change` `{"openid", "template_id", "status": "reject"
//!   | "accept"}`: the user turns a template off (its grants go) or on.
//! - `POST /subscribe-templates` `{"template_id", "keywords": ["thing1", ...], "type"?: 2 | 3}`
//!   registers a subscribe template.

//! # Layout
//! A ladder, each module using only those before it: `config`, `clock`,
//! `errors`, `fault`, `quota`, `subscribe` → `tokens` → `state` → `handle` → `fault_gate`,
//! `control`, `wechat` (HTTP) → this module (the route table).

mod clock;
mod config;
mod control;
mod errors;
mod fault;
mod fault_gate;
mod followers;
mod handle;
mod library;
mod official_account;
mod pusher;
mod quota;
mod state;
mod subscribe;
mod template_admin;
mod tokens;
mod wechat;

use std::net::TcpListener;

use actix_web::{App, HttpServer, web};

pub use config::{
    BUILTIN_OA_TEMPLATES, BUILTIN_TEMPLATES, PushTargets, SANDBOX_PUSH_AES_KEY, SANDBOX_PUSH_TOKEN,
    SEND_PATH, SimConfig,
};
pub use fault_gate::on_connect;
pub use handle::Simulator;
pub use state::INBOX_CAPACITY;
pub use subscribe::{
    BUILTIN_LONG_TERM_TEMPLATE, BUILTIN_OA_SUBSCRIBE_TEMPLATES, BUILTIN_SUBSCRIBE_TEMPLATES,
};

impl Simulator {
    /// All routes, under `/sandbox`. The `drop` fault only closes the
    /// connection cleanly if the server also registers [`on_connect`].
    pub fn scope(&self) -> impl actix_web::dev::HttpServiceFactory + 'static {
        web::scope("/sandbox")
            .wrap(actix_web::middleware::from_fn(control::named_app))
            .app_data(web::Data::new(self.clone()))
            .app_data(control::json_config())
            .app_data(control::query_config())
            .app_data(control::path_config())
            .service(wechat::scope())
            .configure(control::routes)
            .default_service(web::to(control::not_found))
    }
}

/// Runs the simulator alone on an already-bound listener.
pub fn serve(listener: TcpListener, sim: Simulator) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || App::new().service(sim.scope()))
        .on_connect(on_connect)
        .listen(listener)?
        .run();
    Ok(server)
}
