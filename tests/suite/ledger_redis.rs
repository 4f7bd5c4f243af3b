//! What only a real Redis can show: many instances racing on one openid,
//! a server killed and restarted from its AOF, the memory a credential
//! costs, and the scripts running unchanged on a Redis Cluster.

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use formid_ledger::clock::{Clock, ManualClock};
use formid_ledger::domain::{CredentialKind, OpenId};
use formid_ledger::ledger::{
    AddStatus, LeaseId, Ledger, LedgerError, MemoryLedger, NewCredential, RedisLedger, RedisTarget, Settle,
    Settled,
};
use support::ledger::{cred, exact};
use support::{Persistence, RedisCluster, RedisServer};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

/// A production ledger: its clock is the server's.
fn single(server: &RedisServer, prefix: &str) -> RedisLedger {
    RedisLedger::new(RedisTarget::Single(server.url()), prefix, exact(200))
}

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

fn forms_and_prepays(t: DateTime<Utc>, forms: u32, prepays: u32) -> Vec<NewCredential> {
    let form = (0..forms).map(|n| {
        cred(
            CredentialKind::Form,
            &format!("{n:032x}"),
            t + Duration::hours(1) + Duration::seconds(n.into()),
        )
    });
    let prepay = (0..prepays).map(|n| {
        cred(
            CredentialKind::Prepay,
            &format!("wx2026112316{n:06}"),
            t + Duration::hours(2) + Duration::seconds(n.into()),
        )
    });
    form.chain(prepay).collect()
}

/// 120 tasks, spread over `ledgers` (separate connections, as separate
/// service instances would be), each reserve and commit once against one
/// openid holding 10 forms and 10 prepays (40 uses).
async fn race(ledgers: Vec<Arc<dyn Ledger>>) {
    let (u, t) = (OpenId::parse("racer").unwrap(), now());
    let added = ledgers[0].add(&u, &forms_and_prepays(t, 10, 10)).await.unwrap();
    assert_eq!(added.available_sends, 40);

    let tasks: Vec<_> = (0..120)
        .map(|n| {
            let ledger = ledgers[n % ledgers.len()].clone();
            let u = u.clone();
            tokio::spawn(async move {
                let lease = LeaseId::random();
                let got = ledger.reserve(&u, lease, secs(60)).await.unwrap().reservation;
                if got.is_some() {
                    let done = ledger.settle(&u, lease, Settle::Commit).await.unwrap();
                    assert_eq!(done.settled, Settled::Spent);
                }
                got.map(|r| (r.kind, r.id.as_str().to_owned()))
            })
        })
        .collect();
    let mut handed_out: HashMap<String, (CredentialKind, u32)> = HashMap::new();
    let mut none = 0;
    for task in tasks {
        match task.await.unwrap() {
            Some((kind, id)) => handed_out.entry(id).or_insert((kind, 0)).1 += 1,
            None => none += 1,
        }
    }
    let sent: u32 = handed_out.values().map(|(_, n)| n).sum();
    assert_eq!((sent, none), (40, 80));
    for (id, (kind, times)) in &handed_out {
        assert_eq!(*times, u32::from(kind.uses()), "{id} handed out {times} times");
    }
    assert_eq!(ledgers[0].inspect(&u).await.unwrap().available_sends(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_never_hand_out_a_use_twice_in_memory() {
    race(vec![Arc::new(MemoryLedger::new(exact(200)))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_never_hand_out_a_use_twice_across_instances() {
    let server = RedisServer::start();
    let a: Arc<dyn Ledger> = Arc::new(single(&server, "race"));
    let b: Arc<dyn Ledger> = Arc::new(single(&server, "race"));
    race(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let a: Arc<dyn Ledger> = Arc::new(RedisLedger::new(
        RedisTarget::Cluster(cluster.nodes()),
        "race",
        exact(200),
    ));
    let b: Arc<dyn Ledger> = Arc::new(RedisLedger::new(
        RedisTarget::Cluster(cluster.nodes()),
        "race",
        exact(200),
    ));
    race(vec![a, b]).await;
}

#[tokio::test]
async fn every_operation_runs_on_a_cluster_across_slots() {
    let cluster = RedisCluster::start(3);
    let ledger = RedisLedger::new(RedisTarget::Cluster(cluster.nodes()), "fl", exact(200));
    let t = now();
    for n in 0..60 {
        let u = OpenId::parse(&format!("user{n}")).unwrap();
        let out = ledger.add(&u, &forms_and_prepays(t, 2, 1)).await.unwrap();
        assert_eq!(out.available_sends, 5);
        let lease = LeaseId::random();
        let r = ledger.reserve(&u, lease, secs(30)).await.unwrap();
        assert!(r.reservation.is_some());
        let burned = ledger.settle(&u, lease, Settle::Burn).await.unwrap();
        assert_eq!(burned.settled, Settled::Burned { uses: 1 });
        assert_eq!(ledger.inspect(&u).await.unwrap().available_sends(), 4);
    }
    // The openids landed on every node: the scripts ran on all of them.
    for server in cluster.servers() {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut server.client()).unwrap();
        assert!(keys > 0, "node {} holds no books", server.port());
    }
}

#[tokio::test]
async fn the_ledger_survives_a_killed_server_through_its_aof() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly);
    let clock = Arc::new(ManualClock::at_current_second());
    let ledger = single(&server, "fl").with_clock(clock.clone());
    let (u, t) = (OpenId::parse("durable").unwrap(), clock.now());
    ledger.add(&u, &forms_and_prepays(t, 3, 1)).await.unwrap();
    let spent = LeaseId::random();
    ledger.reserve(&u, spent, secs(30)).await.unwrap();
    ledger.settle(&u, spent, Settle::Commit).await.unwrap();
    let held = LeaseId::random();
    ledger.reserve(&u, held, secs(30)).await.unwrap();
    let before = ledger.inspect(&u).await.unwrap();
    assert_eq!((before.available_sends(), before.leased), (4, 1));

    server.kill();
    assert!(matches!(
        ledger.inspect(&u).await,
        Err(LedgerError::Unavailable(_))
    ));
    server.restart();

    // Same answers from the restarted server, through the same client.
    let mut after = Err(LedgerError::Unavailable("not tried".into()));
    for _ in 0..50 {
        after = ledger.inspect(&u).await;
        if after.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(after.unwrap(), before);
    // The lease outlived the restart: past its deadline its use comes back.
    clock.set(t + Duration::seconds(30));
    assert_eq!(ledger.inspect(&u).await.unwrap().available_sends(), 5);
    let again = ledger.add(&u, &forms_and_prepays(t, 3, 1)).await.unwrap();
    assert!(again.items.iter().all(|s| *s == AddStatus::Duplicate));
    assert_eq!(again.available_sends, 5);
}

#[tokio::test]
async fn an_unreachable_server_is_reported_and_recovered_from() {
    let mut server = RedisServer::start();
    let ledger = single(&server, "fl").with_timeout(std::time::Duration::from_millis(300));
    ledger.ping().await.unwrap();
    server.kill();
    assert!(matches!(ledger.ping().await, Err(LedgerError::Unavailable(_))));
    let u = OpenId::parse("offline").unwrap();
    assert!(matches!(
        ledger.add(&u, &forms_and_prepays(now(), 1, 0)).await,
        Err(LedgerError::Unavailable(_))
    ));
    server.restart();
    let mut ok = false;
    for _ in 0..50 {
        if ledger.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the ledger reconnects once Redis is back");
    assert_eq!(
        ledger
            .add(&u, &forms_and_prepays(now(), 1, 0))
            .await
            .unwrap()
            .available_sends,
        1
    );
}

#[tokio::test]
async fn a_server_down_at_start_up_is_connected_later() {
    let port = support::free_port();
    let ledger = RedisLedger::new(
        RedisTarget::Single(format!("redis://127.0.0.1:{port}/0")),
        "fl",
        exact(200),
    )
    .with_timeout(std::time::Duration::from_millis(300));
    assert!(matches!(ledger.ping().await, Err(LedgerError::Unavailable(_))));
    let _server = RedisServer::start_on(port);
    ledger.ping().await.unwrap();
}

/// The stored form costs at most 48 bytes of Redis memory per credential at
/// 10 formIds per openid (the figure is printed; `scripts/bench` reports it
/// alongside the rates).
#[tokio::test]
async fn ten_form_ids_per_openid_cost_at_most_44_bytes_each() {
    let server = RedisServer::start();
    let per_credential = support::memory_per_credential(&server).await;
    println!("redis memory per credential at 10 formIds/openid: {per_credential:.1} bytes");
    assert!(per_credential <= 44.0, "{per_credential:.1} bytes per credential");
}

/// `REDIS_WAIT_REPLICAS`: an ingest returns only once a replica holds it;
/// with the replica gone it fails as unavailable (and is safe to retry),
/// while without the setting it goes on as before.
#[tokio::test]
async fn ingest_waits_for_replicas_when_asked_to() {
    use formid_ledger::ledger::{LedgerError, LedgerSettings, RedisTarget};
    let master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master).await;
    let mut to_replica = redis::Client::open(replica.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let wait = std::time::Duration::from_secs(2);
    let durable = RedisLedger::new(RedisTarget::Single(master.url()), "fl", LedgerSettings::default())
        .with_replicas(1, wait);
    let plain = RedisLedger::new(RedisTarget::Single(master.url()), "fl", LedgerSettings::default());
    let user = OpenId::parse("oDurable").unwrap();
    let soon = Utc::now() + Duration::days(6);
    let added = durable
        .add(&user, &[cred(CredentialKind::Form, "f1", soon)])
        .await
        .unwrap();
    assert_eq!(added.available_sends, 1);
    // Acknowledged means the replica has it.
    let held: bool = redis::cmd("EXISTS")
        .arg("fl:{oDurable}")
        .query_async(&mut to_replica)
        .await
        .unwrap();
    assert!(held);

    drop(to_replica);
    drop(replica); // killed: no replica acknowledges any more
    let started = std::time::Instant::now();
    let refused = durable
        .add(&user, &[cred(CredentialKind::Form, "f2", soon)])
        .await;
    assert!(matches!(refused, Err(LedgerError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() >= wait, "it waited for the replica");
    // The retry of an ingest is safe: the credential is there once.
    let retried = plain
        .add(&user, &[cred(CredentialKind::Form, "f2", soon)])
        .await
        .unwrap();
    assert_eq!(retried.available_sends, 2);
}

/// Books written before ids of 16 packed bytes lost their length byte
/// (version 1) are read as they are, and the next write stores version 2.
#[tokio::test]
async fn a_version_1_book_is_read_and_rewritten_as_version_2() {
    let server = RedisServer::start();
    let ledger = single(&server, "v1");
    let user = OpenId::parse("oVersionOne").unwrap();
    let t = now();
    let form_expires = (t + Duration::hours(1)).timestamp() as u32;
    let prepay_expires = (t + Duration::hours(2)).timestamp() as u32;
    // u8 version | u16 leases | (u32 expires | u8 meta | u8 len | id)*:
    // a formId (1 use, packed hex) and a prepay_id (3 uses, verbatim).
    let mut v1 = vec![1u8, 0, 0];
    v1.extend_from_slice(&form_expires.to_be_bytes());
    v1.extend_from_slice(&[1 | 8, 16]);
    v1.extend_from_slice(&[0xab; 16]);
    let prepay = b"wx20261123160000000001";
    v1.extend_from_slice(&prepay_expires.to_be_bytes());
    v1.extend_from_slice(&[3 | 4, prepay.len() as u8]);
    v1.extend_from_slice(prepay);
    let mut redis = server.client();
    let _: () = redis::cmd("SET")
        .arg("v1:{oVersionOne}")
        .arg(&v1)
        .arg("EX")
        .arg(86_400)
        .query(&mut redis)
        .unwrap();

    let held = ledger.inspect(&user).await.unwrap();
    assert_eq!(held.available_sends(), 4, "{held:?}");
    let lease = LeaseId::random();
    let reserved = ledger.reserve(&user, lease, secs(30)).await.unwrap();
    let reservation = reserved.reservation.expect("the formId");
    assert_eq!(reservation.id.as_str(), "ab".repeat(16));
    assert_eq!(reservation.kind, CredentialKind::Form);

    let v2: Vec<u8> = redis::cmd("GET")
        .arg("v1:{oVersionOne}")
        .query(&mut redis)
        .unwrap();
    assert_eq!(v2[0], 2, "rewritten as version 2");
    // One lease and two credentials; the formId's two copies (lease and
    // credential) no longer carry a length byte.
    assert_eq!(v2.len(), v1.len() + (4 + 4 + 8 + 1 + 16) - 1);
    let settled = ledger.settle(&user, lease, Settle::Commit).await.unwrap();
    assert_eq!(settled.settled, Settled::Spent);
    assert_eq!(ledger.inspect(&user).await.unwrap().available_sends(), 3);
}
