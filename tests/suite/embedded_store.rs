//! The embedded store on disk, with the real binary: what it acknowledged
//! survives `kill -9` under load, a replayed Idempotency-Key answers what
//! it answered before without a second message, and a second process on
//! the same data directory is refused.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use formid_ledger::sim::{BUILTIN_SUBSCRIBE_TEMPLATES, BUILTIN_TEMPLATES, SimConfig};
use serde_json::{Value, json};
use support::app::{ADMIN_KEY, COLLECT_KEY, SEND_KEY, SimClient, start_sim};
use support::process::ServiceProcess;

const USERS: usize = 16;
/// formIds each user gives before the crash, and while it happens.
const FORMS_BEFORE: u32 = 3;
const FORMS_DURING: u32 = 2;
/// Keyed template sends asked for each user while the process dies: more
/// than the user has formIds, so some are refused.
const SENDS: usize = 6;

fn user(n: usize) -> String {
    format!("oDisk{n:02}")
}

fn template_message(openid: &str, key: &str) -> Value {
    json!({"touser": openid, "template_id": BUILTIN_TEMPLATES[0], "data": {"key": {"value": key}}})
}

fn subscribe_message(openid: &str, key: &str) -> Value {
    json!({
        "touser": openid, "template_id": BUILTIN_SUBSCRIBE_TEMPLATES[0].0,
        "data": {
            "thing1": {"value": "配送中"}, "character_string2": {"value": key},
            "time3": {"value": "2019年10月1日 15:01"}, "phrase4": {"value": "已发货"},
        },
    })
}

/// One call to the process (`bearer` empty: none); `Err` when the process
/// died under it.
async fn call(
    http: &reqwest::Client,
    base: &str,
    route: &str,
    bearer: &str,
    key: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), String> {
    let mut request = http.post(format!("{base}{route}")).json(body);
    if !bearer.is_empty() {
        request = request.bearer_auth(bearer);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn ingest(
    http: &reqwest::Client,
    base: &str,
    openid: &str,
    ids: &[String],
) -> Result<(u16, Value), String> {
    let credentials: Vec<Value> = ids.iter().map(|id| json!({"kind": "form", "id": id})).collect();
    let body = json!({"openid": openid, "credentials": credentials});
    call(http, base, "/v1/credentials", COLLECT_KEY, None, &body).await
}

async fn holdings(http: &reqwest::Client, base: &str, openid: &str) -> Value {
    let url = format!("{base}/v1/users/{openid}/credentials");
    let response = http.get(url).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The user's grant of the first built-in subscribe template, through the
/// popup, a session and `POST /v1/subscriptions`.
async fn grant(http: &reqwest::Client, base: &str, sim: &SimClient, openid: &str) {
    let code = sim.login_code(openid).await;
    let (status, session) = call(http, base, "/v1/sessions", "", None, &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{session}");
    let template = BUILTIN_SUBSCRIBE_TEMPLATES[0].0;
    let (status, answer) = sim
        .post(
            "/sandbox/subscriptions",
            json!({"openid": openid, "results": {template: "accept"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let token = session["token"].as_str().unwrap();
    let (status, body) = call(
        http,
        base,
        "/v1/subscriptions",
        token,
        None,
        &json!({"results": answer}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// A keyed send asked again until it is answered for good (not while the
/// dead process's claim on the key lasts).
async fn replay(http: &reqwest::Client, base: &str, route: &str, key: &str, body: &Value) -> (u16, Value) {
    for _ in 0..120 {
        let (status, answer) = call(http, base, route, SEND_KEY, Some(key), body).await.unwrap();
        if !(status == 409 && answer["code"] == "request_in_progress") {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{key} was never answered");
}

#[derive(Default)]
struct Acknowledged {
    /// Per user: formIds the service acknowledged, and all it was sent.
    forms: BTreeMap<String, (u32, u32)>,
    sends: Vec<KeyedSend>,
}

/// A keyed send and its answer, when the caller got one.
struct KeyedSend {
    route: &'static str,
    key: String,
    body: Value,
    answer: Option<(u16, Value)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_acknowledged_survives_kill_9_and_a_replayed_key_sends_nothing_more() {
    let sim = start_sim(SimConfig::default());
    let dir = tempfile::TempDir::new().unwrap();
    let env = [
        ("USAGE_FLUSH_SECS", "1"),
        ("SEND_LEASE_SECS", "3"),
        ("SEND_BUDGET_MS", "2000"),
    ];
    let mut service = ServiceProcess::start_embedded(dir.path(), &sim, &env).await;
    let http = reqwest::Client::new();
    let base = service.base.clone();
    let mut acknowledged = Acknowledged::default();

    // Before: formIds and a grant for every user, one send each; then a
    // report flush.
    for n in 0..USERS {
        let openid = user(n);
        let ids = sim.form_ids(&openid, FORMS_BEFORE, None).await;
        let (status, body) = ingest(&http, &base, &openid, &ids).await.unwrap();
        assert_eq!(status, 200, "{body}");
        acknowledged
            .forms
            .insert(openid.clone(), (FORMS_BEFORE, FORMS_BEFORE));
        grant(&http, &base, &sim, &openid).await;
    }
    let (status, body) = call(
        &http,
        &base,
        "/v1/messages",
        SEND_KEY,
        Some("first"),
        &template_message(&user(0), "first"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    acknowledged.sends.push(KeyedSend {
        route: "/v1/messages",
        key: "first".into(),
        body: template_message(&user(0), "first"),
        answer: Some((status, body)),
    });
    // The report counted them (flushed every second) before the crash.
    let flushed = u64::try_from(USERS).unwrap() * u64::from(FORMS_BEFORE);
    for _ in 0..50 {
        if collected(&http, &base).await >= flushed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(collected(&http, &base).await >= flushed);

    // During: every user's keyed sends (template and subscribe) and more
    // formIds at once; the process is killed while they run.
    let mut work = tokio::task::JoinSet::new();
    for n in 0..USERS {
        let openid = user(n);
        let ids = sim.form_ids(&openid, FORMS_DURING, None).await;
        let (client, at, who) = (http.clone(), base.clone(), openid.clone());
        work.spawn(async move { (who.clone(), None, ingest(&client, &at, &who, &ids).await) });
        for s in 0..SENDS + 1 {
            let (route, key, body) = match s {
                0 => (
                    "/v1/subscribe-messages",
                    format!("s{n}"),
                    subscribe_message(&openid, &format!("s{n}")),
                ),
                s => (
                    "/v1/messages",
                    format!("t{n}x{s}"),
                    template_message(&openid, &format!("t{n}x{s}")),
                ),
            };
            let (http, base, who) = (http.clone(), base.clone(), openid.clone());
            work.spawn(async move {
                let answer = call(&http, &base, route, SEND_KEY, Some(&key), &body).await;
                (who, Some((route, key, body)), answer)
            });
        }
    }
    // Killed once some of the work was answered, while the rest runs.
    let mut answered = 0;
    while let Some(done) = work.join_next().await {
        let (openid, send, answer) = done.unwrap();
        match send {
            None => {
                let forms = acknowledged.forms.get_mut(&openid).unwrap();
                forms.1 += FORMS_DURING;
                if matches!(answer, Ok((200, _))) {
                    forms.0 += FORMS_DURING;
                }
            }
            Some((route, key, body)) => acknowledged.sends.push(KeyedSend {
                route,
                key,
                body,
                answer: answer.ok(),
            }),
        }
        answered += 1;
        if answered == USERS * 3 {
            service.kill();
        }
    }
    let unanswered = acknowledged.sends.iter().filter(|s| s.answer.is_none()).count();
    assert!(unanswered > 0, "the kill came while sends were running");

    let service = ServiceProcess::start_embedded(dir.path(), &sim, &env).await;
    let base = service.base.clone();

    // Every acknowledged formId is there or was spent; none was made up.
    for (openid, (acked, sent_in)) in &acknowledged.forms {
        let held = holdings(&http, &base, openid).await;
        let available = held["available_sends"].as_u64().unwrap() as u32;
        let leased = held["leased"].as_u64().unwrap() as u32;
        let delivered = sim
            .inbox(openid)
            .await
            .iter()
            .filter(|m| m["kind"] == "template")
            .count() as u32;
        assert!(
            available + leased + delivered >= *acked,
            "{openid}: {held} after {delivered} sends"
        );
        assert!(
            available + delivered <= *sent_in,
            "{openid}: {held} after {delivered} sends"
        );
    }

    // Every keyed send asked again: an answered one gets its answer back,
    // and no key is ever two messages.
    for KeyedSend {
        route,
        key,
        body,
        answer,
    } in &acknowledged.sends
    {
        let (status, again) = replay(&http, &base, route, key, body).await;
        if let Some((200, before)) = answer {
            assert_eq!((status, &again), (200, before), "{key} replayed");
        }
    }
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    let mut form_ids = BTreeSet::new();
    for n in 0..USERS {
        for message in sim.inbox(&user(n)).await {
            let key = message["data"]["key"]["value"]
                .as_str()
                .or(message["data"]["character_string2"]["value"].as_str())
                .unwrap()
                .to_owned();
            *messages.entry(key).or_default() += 1;
            if let Some(form_id) = message["form_id"].as_str() {
                assert!(form_ids.insert(form_id.to_owned()), "{form_id} spent twice");
            }
        }
    }
    for KeyedSend { route, key, body, .. } in &acknowledged.sends {
        let (status, answer) = replay(&http, &base, route, key, body).await;
        let sent = messages.get(key).copied().unwrap_or(0);
        assert!(sent <= 1, "{key}: {sent} messages");
        // A grant cannot be presented again to learn whether WeChat took it:
        // such a send says its outcome is unknown (and sent nothing more).
        if answer["code"] != "wechat_outcome_unknown" {
            assert_eq!(
                sent == 1,
                status == 200,
                "{key}: answered {answer}, {sent} messages"
            );
        }
    }

    // The report still counts what was flushed before the kill.
    assert!(collected(&http, &base).await >= flushed);
}

/// formIds collected today, by the report.
async fn collected(http: &reqwest::Client, base: &str) -> u64 {
    let response = http
        .get(format!("{base}/v1/reports/usage"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let report: Value = response.json().await.unwrap();
    report["days"][0]["collected"]["form"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_second_process_on_one_data_directory_is_refused() {
    let sim = start_sim(SimConfig::default());
    let dir = tempfile::TempDir::new().unwrap();
    let _first = ServiceProcess::start_embedded(dir.path(), &sim, &[]).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("is in use by another formid-ledger process"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_the_ledger() {
    let sim = start_sim(SimConfig::default());
    let dir = tempfile::TempDir::new().unwrap();
    let service = ServiceProcess::start_embedded(dir.path(), &sim, &[]).await;
    let http = reqwest::Client::new();
    let ids = sim.form_ids("oSaved", 3, None).await;
    let (status, _) = ingest(&http, &service.base, "oSaved", &ids).await.unwrap();
    assert_eq!(status, 200);

    // The copy is taken while the service keeps writing.
    let writer = {
        let (http, base, sim) = (http.clone(), service.base.clone(), sim.clone());
        tokio::spawn(async move {
            for n in 0..50 {
                let openid = format!("oBusy{n}");
                let ids = sim.form_ids(&openid, 1, None).await;
                assert_eq!(ingest(&http, &base, &openid, &ids).await.unwrap().0, 200);
            }
        })
    };
    let restored = tempfile::TempDir::new().unwrap();
    let dest = restored.path().join(formid_ledger::store::DATABASE_FILE);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_formid-ledger"))
        .env_clear()
        .env("DATA_DIR", dir.path())
        .arg("backup")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    writer.await.unwrap();

    // Restored: the backup is the database of another data directory.
    let copy = ServiceProcess::start_embedded(restored.path(), &sim, &[]).await;
    let held = holdings(&http, &copy.base, "oSaved").await;
    assert_eq!(held["available_sends"], 3, "{held}");
}
