//! A Redis Cluster of 3 masters and 3 replicas loses a master (SIGKILL).
//!
//! Under load: the cluster fails over, the two service instances recover by
//! themselves, and once the books are drained the simulator's inboxes show
//! every acknowledged credential delivered exactly once: with
//! `REDIS_WAIT_REPLICAS=1` nothing acknowledged is lost, and no message is
//! ever delivered twice (docs/targets.md, "Scale").
//!
//! With a lagging replica: Redis replicates asynchronously, so a master
//! acknowledges writes its replica has not seen, and a failover to that
//! replica loses them. Without `REDIS_WAIT_REPLICAS` the service's
//! acknowledged ingests are lost exactly so; with it, such ingests are
//! refused (503) instead, and the client's retry lands them once.

use crate::support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use formid_ledger::clock::ShiftedClock;
use formid_ledger::sim::{BUILTIN_TEMPLATES, SimConfig};
use serde_json::json;
use support::RedisCluster;
use support::app::{COLLECT_KEY, REPORT_KEY, SEND_KEY, Store, TestApp, start_sim};

/// The tests each run a cluster whose failover timing depends on the
/// machine's two cores: one at a time.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const USERS: usize = 40;
const PER_USER: u32 = 10;

fn openid(n: usize) -> String {
    format!("oFailover{n:03}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_fails_over_and_nothing_is_lost_or_sent_twice() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("failover");
    let configure = |c: &mut formid_ledger::config::Config| {
        TestApp::on_simulator(&sim, c);
        c.redis_cluster_nodes = cluster.nodes();
        c.redis_key_prefix = prefix.clone();
        c.redis_wait_replicas = 1;
        c.redis_wait_timeout_ms = 1_000;
        c.send_lease_secs = 4;
        c.send_budget_ms = 3_000;
    };
    // Both instances' ledgers read one clock that runs with the wall clock,
    // so the test can skip ahead to when leases lapse.
    let clock = Arc::new(ShiftedClock::default());
    let instances = Arc::new([
        TestApp::spawn_with_ledgers_on(Store::Memory, clock.clone(), configure).await,
        TestApp::spawn_with_ledgers_on(Store::Memory, clock.clone(), configure).await,
    ]);

    // Every credential is acknowledged (200) before the failure.
    let mut collected = 0;
    for n in 0..USERS {
        let ids = sim.form_ids(&openid(n), PER_USER, None).await;
        let body = json!({"openid": openid(n), "form_ids": ids});
        let (status, answer) = instances[n % 2]
            .post("/v1/credentials", Some(COLLECT_KEY), body)
            .await;
        assert_eq!(status, 200, "{answer}");
        collected += answer["accepted"].as_u64().unwrap();
    }
    assert_eq!(collected, (USERS as u64) * u64::from(PER_USER));

    // Load on both instances; kill the master of a busy user's book.
    let stop = Arc::new(AtomicBool::new(false));
    // Answers that needed the ledger (sent, or 409 nothing left) and the rest.
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..8)
        .map(|task| {
            let (instances, stop, served, failed) =
                (instances.clone(), stop.clone(), served.clone(), failed.clone());
            tokio::spawn(async move {
                let mut n = task;
                while !stop.load(Ordering::Relaxed) {
                    let app = &instances[n % 2];
                    let message = json!({"touser": openid(n % USERS), "template_id": BUILTIN_TEMPLATES[0],
                        "data": {"keyword1": {"value": format!("m{n}")}}});
                    let (status, _) = app.post("/v1/messages", Some(SEND_KEY), message).await;
                    match status {
                        200 | 409 => served.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    n += 8;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.master_of(&format!("{prefix}:{{{}}}", openid(0)));
    cluster.kill(victim);
    let healed_in = tokio::task::block_in_place(|| cluster.wait_until_healed(victim));
    // The killed master's books are served again, without a restart: a
    // user whose book lived there gets an answer that needed the ledger.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = None;
    while answered.is_none() && Instant::now() < deadline {
        for app in instances.iter() {
            let message = json!({"touser": openid(0), "template_id": BUILTIN_TEMPLATES[0],
                "data": {"keyword1": {"value": "after the failover"}}});
            let (status, _) = app.post("/v1/messages", Some(SEND_KEY), message).await;
            if status == 200 || status == 409 {
                answered = Some(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(
        answered.is_some(),
        "the failed-over shard was not served within 20 s after the cluster healed in {healed_in:?} ({} failed, {} served)",
        failed.load(Ordering::Relaxed),
        served.load(Ordering::Relaxed)
    );

    // The dead node comes back as the new master's replica (as an operator
    // would bring it back); leases lapse; then every book is drained: each
    // user is sent to until 409.
    tokio::task::block_in_place(|| cluster.restart(victim));
    clock.skip(chrono::Duration::seconds(5));
    for n in 0..USERS {
        for attempt in 0..(PER_USER * 3) {
            let message = json!({"touser": openid(n), "template_id": BUILTIN_TEMPLATES[0],
                "data": {"keyword1": {"value": format!("drain{attempt}")}}});
            let (status, body) = instances[n % 2]
                .post("/v1/messages", Some(SEND_KEY), message)
                .await;
            match status {
                200 => continue,
                409 => break,
                _ => {
                    // Still settling somewhere: try again shortly.
                    assert!(status == 503, "{status} {body}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let (_, held) = instances[0]
            .get(&format!("/v1/users/{}/credentials", openid(n)), Some(REPORT_KEY))
            .await;
        assert_eq!(held["available_sends"], 0, "{} drained: {held}", openid(n));
    }

    // Every acknowledged credential was delivered, each exactly once.
    let mut delivered = 0;
    let mut forms = HashSet::new();
    for n in 0..USERS {
        for message in sim.inbox(&openid(n)).await {
            delivered += 1;
            assert!(
                forms.insert(message["form_id"].to_string()),
                "a use delivered twice: {message}"
            );
        }
    }
    assert_eq!(
        delivered, collected,
        "every acknowledged credential delivered once (failover took {healed_in:?})"
    );
}

/// What became of ingests made while a master's only replica lagged.
struct LaggingReplica {
    /// Acknowledged (200) while the replica was in sync.
    before: u64,
    /// Acknowledged (200) while the replica saw nothing.
    acknowledged_while_lagging: u64,
    /// Refused (503 `store_unavailable`) while the replica saw nothing.
    refused_while_lagging: u64,
    /// Sends the user's book holds once the replica took over.
    held_after_failover: u64,
    /// ... and once the client retried every refused ingest.
    held_after_retries: u64,
}

const LAGGING_BATCH: usize = 5;

/// Ingests into one user's book, freezes the replica of that book's master
/// and cuts its replication link (a replica that fell behind), ingests
/// `LAGGING_BATCH` more at once, kills the master, lets the frozen replica
/// take over, and reads what the book holds.
async fn fail_over_to_a_lagging_replica(wait_replicas: u32) -> LaggingReplica {
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    let sim = start_sim(SimConfig::default());
    let prefix = support::unique_prefix("lagging");
    let app = TestApp::spawn_with(Store::Memory, |c| {
        TestApp::on_simulator(&sim, c);
        c.redis_cluster_nodes = cluster.nodes();
        c.redis_key_prefix = prefix.clone();
        c.redis_wait_replicas = wait_replicas;
        c.redis_wait_timeout_ms = 500;
    })
    .await;
    let user = "oLagging";
    let ingest = |ids: Vec<String>| {
        let app = &app;
        async move {
            let body = json!({"openid": user, "form_ids": ids});
            app.post("/v1/credentials", Some(COLLECT_KEY), body).await
        }
    };
    let held = async || {
        let (status, body) = app
            .get(&format!("/v1/users/{user}/credentials"), Some(REPORT_KEY))
            .await;
        (status == 200).then(|| body["available_sends"].as_u64().unwrap())
    };

    let (status, answer) = ingest(sim.form_ids(user, 3, None).await).await;
    assert_eq!(status, 200, "{answer}");
    let before = answer["accepted"].as_u64().unwrap();
    let master = cluster.master_of(&format!("{prefix}:{{{user}}}"));
    let replica = cluster.replica_of(master);
    let mut master_client = cluster.servers()[master].client();
    let synced: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query(&mut master_client)
        .unwrap();
    assert_eq!(synced, 1, "the replica holds the first ingest");

    // The replica falls behind: frozen, and its link to the master cut, so
    // nothing written from now on reaches it (not even into its socket).
    cluster.servers()[replica].set_running(false);
    let cut: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut master_client)
        .unwrap();
    assert_eq!(cut, 1, "the replication link is cut");
    let lagging_ids = sim.form_ids(user, LAGGING_BATCH as u32, None).await;
    let answers = futures_util::future::join_all(lagging_ids.iter().map(|id| ingest(vec![id.clone()]))).await;
    let (mut acknowledged_while_lagging, mut refused) = (0, Vec::new());
    for ((status, answer), id) in answers.into_iter().zip(&lagging_ids) {
        match status {
            200 => acknowledged_while_lagging += answer["accepted"].as_u64().unwrap(),
            503 => {
                assert_eq!(answer["code"], "store_unavailable", "{answer}");
                refused.push(id.clone());
            }
            _ => panic!("{status} {answer}"),
        }
    }

    // The master dies before the replica ever hears of those writes; the
    // replica wakes up and is promoted.
    cluster.kill(master);
    cluster.servers()[replica].set_running(true);
    tokio::task::block_in_place(|| cluster.wait_until_healed(master));
    assert_eq!(cluster.master_of(&format!("{prefix}:{{{user}}}")), replica);
    let deadline = Instant::now() + Duration::from_secs(20);
    let held_after_failover = loop {
        if let Some(held) = held().await {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the book is not served after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // An operator brings the dead node back (as the new master's replica,
    // so WAIT can be met again); the client retries what was refused
    // (ingest is idempotent) until it is acknowledged, as told by the 503.
    tokio::task::block_in_place(|| cluster.restart(master));
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &refused {
        loop {
            let (status, answer) = ingest(vec![id.clone()]).await;
            if status == 200 {
                break;
            }
            assert_eq!(answer["code"], "store_unavailable", "{status} {answer}");
            assert!(Instant::now() < deadline, "never acknowledged again: {answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let held_after_retries = held().await.expect("the book is served");
    LaggingReplica {
        before,
        acknowledged_while_lagging,
        refused_while_lagging: refused.len() as u64,
        held_after_failover,
        held_after_retries,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_a_failover_loses_exactly_the_acknowledged_ingests_the_replica_never_saw() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let run = fail_over_to_a_lagging_replica(0).await;
    assert_eq!(run.before, 3);
    // Redis acknowledges before replicating: all were acknowledged ...
    assert_eq!(run.acknowledged_while_lagging, LAGGING_BATCH as u64);
    assert_eq!(run.refused_while_lagging, 0);
    // ... and all are lost, while everything the replica had survives.
    assert_eq!(
        run.held_after_failover, run.before,
        "the {LAGGING_BATCH} ingests acknowledged after the replica's last sync are lost, nothing before"
    );
    assert_eq!(run.held_after_retries, run.before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_an_ingest_the_replica_never_saw_is_refused_and_lands_once_when_retried() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let run = fail_over_to_a_lagging_replica(1).await;
    assert_eq!(run.before, 3);
    assert_eq!(
        run.acknowledged_while_lagging, 0,
        "nothing acknowledged without the replica"
    );
    assert_eq!(run.refused_while_lagging, LAGGING_BATCH as u64);
    // Nothing acknowledged was lost, and the retries land each ingest once.
    assert_eq!(run.held_after_failover, run.before);
    assert_eq!(run.held_after_retries, run.before + LAGGING_BATCH as u64);
}
