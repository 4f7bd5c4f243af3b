//! WeChat's pushes to the service, as WeChat sends them once push URLs are
//! set in its console: signed with the token, encrypted in safe mode (the
//! service's own `push::crypto`, the published scheme), JSON for the
//! mini-program and XML for the official account, about 200 ms after what
//! they report, and sent again (3 tries in all) when the receiver does not
//! answer `success` within 5 seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::config::PushTargets;
use crate::push::crypto::{self, AesKey};

/// WeChat's wait for `success` before it tries again.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Tries of one push in all.
const TRIES: u32 = 3;
/// How long after the fact a push leaves.
const AFTER: Duration = Duration::from_millis(200);
/// The accounts' original ids, as pushes name them.
const MINIPROGRAM_ID: &str = "gh_sandboxmp0001";
const OFFICIAL_ACCOUNT_ID: &str = "gh_sandboxoa0001";

/// Where a push goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    MiniProgram,
    OfficialAccount,
}

pub struct Pusher {
    targets: PushTargets,
    key: Option<AesKey>,
    appid: String,
    oa_appid: String,
    http: reqwest::Client,
    /// Pushes sent, tries included, and tries after a first.
    sent: AtomicU64,
    retried: AtomicU64,
    /// Pushes the endpoint answered with success.
    acknowledged: AtomicU64,
}

impl Pusher {
    /// A pusher for `targets`; an invalid key is refused here, at start-up.
    pub fn new(targets: PushTargets, appid: &str, oa_appid: &str) -> Result<Arc<Self>, String> {
        let key = match &targets.aes_key {
            Some(raw) => Some(AesKey::parse(raw).map_err(|e| format!("push AES key: {e}"))?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(ANSWER_WITHIN)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            targets,
            key,
            appid: appid.to_owned(),
            oa_appid: oa_appid.to_owned(),
            http,
            sent: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
        }))
    }

    /// `{"sent", "retried", "acknowledged"}` for the stats.
    pub fn stats(&self) -> Value {
        json!({
            "sent": self.sent.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "acknowledged": self.acknowledged.load(Ordering::Relaxed),
        })
    }

    /// A mini-program event about `openid`: `event` and its fields.
    pub fn miniprogram_event(self: &Arc<Self>, openid: &str, event: &str, fields: Value) {
        let mut message = json!({
            "ToUserName": MINIPROGRAM_ID,
            "FromUserName": openid,
            "CreateTime": Utc::now().timestamp(),
            "MsgType": "event",
            "Event": event,
        });
        if let (Some(message), Value::Object(fields)) = (message.as_object_mut(), fields) {
            message.extend(fields);
        }
        self.send(Target::MiniProgram, message.to_string());
    }

    /// The official account's `TEMPLATESENDJOBFINISH` for `msgid`.
    pub fn job_finished(self: &Arc<Self>, openid: &str, msgid: u64, status: &str) {
        let message = format!(
            "<xml><ToUserName><![CDATA[{OFFICIAL_ACCOUNT_ID}]]></ToUserName>\
             <FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msgid}</MsgID>\
             <Status><![CDATA[{status}]]></Status></xml>",
            Utc::now().timestamp()
        );
        self.send(Target::OfficialAccount, message);
    }

    /// An official-account subscribe event about `openid` (XML, as the
    /// official account's pushes are): `event`, with one `<List>` per item
    /// inside `wrapper`; item fields are text.
    pub fn official_account_event(
        self: &Arc<Self>,
        openid: &str,
        event: &str,
        wrapper: &str,
        items: &[Vec<(&str, String)>],
    ) {
        let lists: String = items
            .iter()
            .map(|fields| {
                let inner: String = fields
                    .iter()
                    .map(|(name, value)| format!("<{name}><![CDATA[{value}]]></{name}>"))
                    .collect();
                format!("<List>{inner}</List>")
            })
            .collect();
        let message = format!(
            "<xml><ToUserName><![CDATA[{OFFICIAL_ACCOUNT_ID}]]></ToUserName>\
             <FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[{event}]]></Event><{wrapper}>{lists}</{wrapper}></xml>",
            Utc::now().timestamp()
        );
        self.send(Target::OfficialAccount, message);
    }

    fn send(self: &Arc<Self>, target: Target, message: String) {
        let url = match target {
            Target::MiniProgram => self.targets.miniprogram_url.clone(),
            Target::OfficialAccount => self.targets.official_account_url.clone(),
        };
        let Some(url) = url else { return };
        let pusher = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(AFTER).await;
            for attempt in 1..=TRIES {
                pusher.sent.fetch_add(1, Ordering::Relaxed);
                if attempt > 1 {
                    pusher.retried.fetch_add(1, Ordering::Relaxed);
                }
                if pusher.try_once(&url, target, &message).await {
                    pusher.acknowledged.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tracing::debug!(%url, attempt, "push not acknowledged with success");
            }
        });
    }

    /// One signed (and in safe mode encrypted) POST; true on `success`.
    async fn try_once(&self, url: &str, target: Target, message: &str) -> bool {
        let timestamp = Utc::now().timestamp().to_string();
        let nonce = rand::random::<u32>().to_string();
        let token = &self.targets.token;
        let mut query = vec![
            ("signature", crypto::signature(token, &timestamp, &nonce)),
            ("timestamp", timestamp.clone()),
            ("nonce", nonce.clone()),
        ];
        let body = match &self.key {
            None => message.to_owned(),
            Some(key) => {
                let appid = match target {
                    Target::MiniProgram => &self.appid,
                    Target::OfficialAccount => &self.oa_appid,
                };
                let encrypt = crypto::encrypt(key, message, appid);
                query.push(("encrypt_type", "aes".into()));
                query.push((
                    "msg_signature",
                    crypto::msg_signature(token, &timestamp, &nonce, &encrypt),
                ));
                match target {
                    Target::MiniProgram => {
                        json!({"ToUserName": MINIPROGRAM_ID, "Encrypt": encrypt}).to_string()
                    }
                    Target::OfficialAccount => format!(
                        "<xml><ToUserName><![CDATA[{OFFICIAL_ACCOUNT_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
                    ),
                }
            }
        };
        let content_type = match target {
            Target::MiniProgram => "application/json",
            Target::OfficialAccount => "text/xml",
        };
        let answer = self
            .http
            .post(url)
            .query(&query)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                response.text().await.is_ok_and(|text| text.trim() == "success")
            }
            _ => false,
        }
    }
}
