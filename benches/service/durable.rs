//! What durability costs (`BENCH_ONLY=durable`): ingest and keyed sends
//! through HTTP on the embedded store in memory (`STORE=memory`), on disk
//! in a `DATA_DIR` (every change committed before it is answered, group
//! commit), and on Redis with `appendfsync always`, one after another in
//! one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use formid_ledger::sim::SimConfig;
use serde_json::json;

use super::support::app::{COLLECT_KEY, Store, TestApp, start_sim};
use super::support::{Persistence, RedisServer};
use super::{give_form_ids, keyed_template_send, random_form_id, rate};

/// Users the ingest phase spreads over: each is given 10 formIds a few
/// times, so books stay as small as real users' (10 to 30 credentials).
const INGEST_USERS: usize = 50_000;
/// Users whose formIds (sim-issued, so WeChat takes them) the send phase
/// spends, 20 each: 80,000 uses, more than a phase spends on any store.
const USERS: usize = 4_000;
const HELD: u32 = 20;

/// Rates (per second) on the three stores: `[memory, disk, redis]`.
pub struct Durability {
    pub ingest: [f64; 3],
    pub send: [f64; 3],
}

pub async fn durability() -> Durability {
    let dir = tempfile::TempDir::new().unwrap();
    let redis = RedisServer::start_with(Persistence::AppendOnly);
    let mut ingest = [0.0; 3];
    let mut send = [0.0; 3];
    let stores = [Store::Memory, Store::Disk(dir.path()), Store::Redis(&redis)];
    for (at, store) in stores.into_iter().enumerate() {
        let sim = start_sim(SimConfig::default());
        let app = Arc::new(TestApp::spawn_with(store, |c| TestApp::on_simulator(&sim, c)).await);
        ingest[at] = ingest_rate(&app).await;
        send[at] = keyed_send_rate(&app).await;
    }
    Durability { ingest, send }
}

/// `POST /v1/credentials` of 10 formIds for one of [`INGEST_USERS`] users.
async fn ingest_rate(app: &Arc<TestApp>) -> f64 {
    let app = app.clone();
    rate(move |n| {
        let app = app.clone();
        async move {
            let ids: Vec<String> = (0..10).map(|_| random_form_id()).collect();
            let body = json!({"openid": format!("oIngest{:05}", n % INGEST_USERS), "form_ids": ids});
            app.post("/v1/credentials", Some(COLLECT_KEY), body).await.0 == 200
        }
    })
    .await
}

/// `POST /v1/messages` with an Idempotency-Key, spending formIds the
/// simulator issued to [`USERS`] users beforehand.
async fn keyed_send_rate(app: &Arc<TestApp>) -> f64 {
    give_form_ids(app, "oDurable", USERS, HELD).await;
    let sent = Arc::new(AtomicU64::new(0));
    let app = app.clone();
    rate(move |_| {
        let (app, sent) = (app.clone(), sent.clone());
        async move {
            let n = sent.fetch_add(1, Ordering::Relaxed);
            let user = format!("oDurable{:04}", n as usize % USERS);
            keyed_template_send(&app, &user, &format!("durable-{n}")).await
        }
    })
    .await
}
