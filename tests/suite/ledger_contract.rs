//! The ledger contract, run against the embedded ledger (in memory, and
//! reopened from its disk around every operation) and against Redis (a real
//! redis-server per test): every test here must pass for all three.
//! Time is the test's: both ledgers read it from a clock the test moves.

use crate::support;

use chrono::{DateTime, Duration};
use formid_ledger::domain::{CredentialKind, OpenId};
use formid_ledger::ledger::{AddStatus, LeaseId, LedgerEvent, LedgerSettings, Settle, Settled};
use support::ledger::{TimedLedger, cred, exact};

use CredentialKind::{Form, Prepay};

/// A ledger under test plus whatever keeps it alive.
struct Subject {
    ledger: TimedLedger,
    _redis: Option<support::RedisServer>,
}

/// Makes the backend under test with the given settings.
type Make = fn(LedgerSettings) -> Subject;

fn memory(settings: LedgerSettings) -> Subject {
    Subject {
        ledger: TimedLedger::memory(settings),
        _redis: None,
    }
}

fn redis(settings: LedgerSettings) -> Subject {
    let server = support::RedisServer::start();
    Subject {
        ledger: TimedLedger::redis(&server, &support::unique_prefix("contract"), settings),
        _redis: Some(server),
    }
}

fn on_disk(settings: LedgerSettings) -> Subject {
    Subject {
        ledger: TimedLedger::on_disk(settings),
        _redis: None,
    }
}

fn user(name: &str) -> OpenId {
    OpenId::parse(name).unwrap()
}

fn hex_id(n: u32) -> String {
    format!("{n:032x}")
}

async fn reserve(
    ledger: &TimedLedger,
    openid: &OpenId,
    at: DateTime<chrono::Utc>,
) -> Option<(LeaseId, String)> {
    let out = ledger
        .reserve(openid, LeaseId::random(), at + Duration::seconds(30), at)
        .await
        .unwrap();
    out.reservation.map(|r| (r.lease, r.id.as_str().to_owned()))
}

/// Reserves and commits until nothing is left; returns the ids in spend order.
async fn drain(ledger: &TimedLedger, openid: &OpenId, at: DateTime<chrono::Utc>) -> Vec<String> {
    let mut spent = Vec::new();
    while let Some((lease, id)) = reserve(ledger, openid, at).await {
        let out = ledger.settle(openid, lease, Settle::Commit, at).await.unwrap();
        assert_eq!(out.settled, Settled::Spent);
        spent.push(id);
        assert!(spent.len() <= 1000, "ledger never ran dry");
    }
    spent
}

contract!(
    counts_accepted_duplicates_and_expired,
    spends_the_oldest_expiry_first,
    ties_are_spent_in_a_fixed_order,
    prepay_pays_for_three_sends,
    spent_ids_stay_duplicates_until_they_expire,
    refund_puts_the_use_back_first_in_line,
    burn_drops_every_use_left,
    settling_twice_changes_nothing,
    reserve_retried_with_its_lease_takes_one_use,
    stale_leases_are_refunded_by_the_next_operation,
    refund_after_expiry_lapses,
    a_held_lease_keeps_its_use_until_the_credential_expires,
    a_lease_never_feeds_an_id_reposted_after_expiry,
    expired_credentials_disappear,
    eviction_drops_the_soonest_expiring_over_the_cap,
    leased_credentials_are_not_evicted,
    inspect_changes_nothing,
    openids_are_independent,
);

async fn counts_accepted_duplicates_and_expired(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("alice"), s.ledger.now());
    let week = t + Duration::days(6);
    let out = l
        .add(
            &u,
            &[
                cred(Form, &hex_id(1), week),
                cred(Form, &hex_id(1), week), // duplicate within the batch
                cred(Prepay, "wx2026112300001", week),
                cred(Form, &hex_id(2), t), // expires now: expired
                cred(Form, &hex_id(3), t - Duration::seconds(1)),
            ],
            t,
        )
        .await
        .unwrap();
    use AddStatus::*;
    assert_eq!(out.items, vec![Accepted, Duplicate, Accepted, Expired, Expired]);
    assert_eq!(out.available_sends, 4);
    assert_eq!(out.evicted, 0);
    let collected: Vec<_> = out
        .events
        .iter()
        .filter(|e| matches!(e, LedgerEvent::Collected { .. }))
        .collect();
    assert_eq!(collected.len(), 2);
    assert!(out.events.contains(&LedgerEvent::Reach {
        from: None,
        to: Some(week)
    }));

    let again = l
        .add(&u, &[cred(Prepay, "wx2026112300001", week)], t)
        .await
        .unwrap();
    assert_eq!(again.items, vec![Duplicate]);
    assert_eq!(again.available_sends, 4);
    assert!(
        again.events.is_empty(),
        "a duplicate changes nothing: {:?}",
        again.events
    );
}

async fn spends_the_oldest_expiry_first(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("bob"), s.ledger.now());
    let expiry = |days_ago: i64| t - Duration::days(days_ago) + Duration::days(7) - Duration::hours(1);
    l.add(
        &u,
        &[
            cred(Form, "today1", expiry(0)),
            cred(Form, "today2", expiry(0) + Duration::seconds(1)),
        ],
        t,
    )
    .await
    .unwrap();
    l.add(&u, &[cred(Prepay, "prepay2daysago", expiry(2))], t)
        .await
        .unwrap();
    l.add(&u, &[cred(Form, "form3daysago", expiry(3))], t)
        .await
        .unwrap();
    assert_eq!(
        drain(l, &u, t).await,
        [
            "form3daysago",
            "prepay2daysago",
            "prepay2daysago",
            "prepay2daysago",
            "today1",
            "today2"
        ]
    );
}

async fn ties_are_spent_in_a_fixed_order(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("carol"), s.ledger.now());
    let e = t + Duration::days(3);
    // Same expiry (expiries round to the granularity): in collection order,
    // within a batch and across batches, whatever the ids' bytes.
    let first = [cred(Form, "zz", e), cred(Form, &hex_id(9), e)];
    l.add(&u, &first, t).await.unwrap();
    let second = [cred(Form, "AA", e), cred(Form, &hex_id(3), e)];
    l.add(&u, &second, t).await.unwrap();
    assert_eq!(
        drain(l, &u, t).await,
        ["zz".into(), hex_id(9), "AA".into(), hex_id(3)]
    );
}

async fn prepay_pays_for_three_sends(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("dave"), s.ledger.now());
    l.add(&u, &[cred(Prepay, "wxprepay", t + Duration::days(2))], t)
        .await
        .unwrap();
    assert_eq!(drain(l, &u, t).await.len(), 3);
    assert_eq!(l.inspect(&u, t).await.unwrap().available_sends(), 0);
}

async fn spent_ids_stay_duplicates_until_they_expire(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("erin"), s.ledger.now());
    let e = t + Duration::days(1);
    l.add(&u, &[cred(Form, &hex_id(7), e)], t).await.unwrap();
    assert_eq!(drain(l, &u, t).await.len(), 1);
    let again = l.add(&u, &[cred(Form, &hex_id(7), e)], t).await.unwrap();
    assert_eq!(again.items, vec![AddStatus::Duplicate]);
    assert_eq!(again.available_sends, 0);
    // Once its expiry passes the id is forgotten.
    let later = e + Duration::seconds(1);
    let fresh = l
        .add(&u, &[cred(Form, &hex_id(7), later + Duration::days(1))], later)
        .await
        .unwrap();
    assert_eq!(fresh.items, vec![AddStatus::Accepted]);
}

async fn refund_puts_the_use_back_first_in_line(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("frank"), s.ledger.now());
    l.add(
        &u,
        &[
            cred(Form, "old", t + Duration::days(1)),
            cred(Form, "new", t + Duration::days(2)),
        ],
        t,
    )
    .await
    .unwrap();
    let (lease, id) = reserve(l, &u, t).await.unwrap();
    assert_eq!(id, "old");
    assert_eq!(l.inspect(&u, t).await.unwrap().available_sends(), 1);
    let out = l.settle(&u, lease, Settle::Refund, t).await.unwrap();
    assert_eq!(out.settled, Settled::Refunded);
    assert!(matches!(out.events[0], LedgerEvent::Refunded { kind: Form, .. }));
    assert_eq!(drain(l, &u, t).await, ["old", "new"]);
}

async fn burn_drops_every_use_left(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("grace"), s.ledger.now());
    l.add(
        &u,
        &[
            cred(Prepay, "wxbad", t + Duration::days(1)),
            cred(Form, "good", t + Duration::days(2)),
        ],
        t,
    )
    .await
    .unwrap();
    let (lease, id) = reserve(l, &u, t).await.unwrap();
    assert_eq!(id, "wxbad");
    let out = l.settle(&u, lease, Settle::Burn, t).await.unwrap();
    assert_eq!(out.settled, Settled::Burned { uses: 3 });
    assert!(out.events.contains(&LedgerEvent::Burned {
        kind: Prepay,
        uses: 3,
        expires_at: t + Duration::days(1)
    }));
    assert_eq!(drain(l, &u, t).await, ["good"]);
    // A burned id re-posted is still a duplicate: it must not come back.
    let again = l
        .add(&u, &[cred(Prepay, "wxbad", t + Duration::days(1))], t)
        .await
        .unwrap();
    assert_eq!(again.items, vec![AddStatus::Duplicate]);
}

async fn settling_twice_changes_nothing(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("heidi"), s.ledger.now());
    l.add(&u, &[cred(Prepay, "wxp", t + Duration::days(1))], t)
        .await
        .unwrap();
    let (lease, _) = reserve(l, &u, t).await.unwrap();
    let first = l.settle(&u, lease, Settle::Commit, t).await.unwrap();
    assert_eq!(first.settled, Settled::Spent);
    // Whatever comes after, the lease is gone: nothing is spent, burned or
    // refunded a second time.
    for how in [Settle::Commit, Settle::Refund, Settle::Burn] {
        let again = l.settle(&u, lease, how, t).await.unwrap();
        assert_eq!(again.settled, Settled::UnknownLease, "{how:?}");
        assert!(again.events.is_empty(), "{how:?}: {:?}", again.events);
    }
    let held = l.inspect(&u, t).await.unwrap();
    assert_eq!((held.available_sends(), held.leased), (2, 0));
}

async fn reserve_retried_with_its_lease_takes_one_use(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("ivan"), s.ledger.now());
    l.add(&u, &[cred(Prepay, "wxp", t + Duration::days(1))], t)
        .await
        .unwrap();
    let lease = LeaseId::random();
    let deadline = t + Duration::seconds(30);
    let first = l
        .reserve(&u, lease, deadline, t)
        .await
        .unwrap()
        .reservation
        .unwrap();
    let retry = l
        .reserve(&u, lease, deadline, t)
        .await
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(first, retry);
    let held = l.inspect(&u, t).await.unwrap();
    assert_eq!((held.available_sends(), held.leased), (2, 1));
}

async fn stale_leases_are_refunded_by_the_next_operation(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("judy"), s.ledger.now());
    l.add(&u, &[cred(Form, "only", t + Duration::days(1))], t)
        .await
        .unwrap();
    let lease = LeaseId::random();
    l.reserve(&u, lease, t + Duration::seconds(30), t)
        .await
        .unwrap()
        .reservation
        .unwrap();
    assert!(
        reserve(l, &u, t + Duration::seconds(29)).await.is_none(),
        "held until the deadline"
    );
    // Past the deadline, the next operation hands the use out again.
    let later = t + Duration::seconds(30);
    let out = l
        .reserve(&u, LeaseId::random(), later + Duration::seconds(30), later)
        .await
        .unwrap();
    assert_eq!(out.reservation.unwrap().id.as_str(), "only");
    assert!(out.events.contains(&LedgerEvent::Refunded {
        kind: Form,
        expires_at: t + Duration::days(1)
    }));
    // The old lease is gone: its late commit changes nothing.
    let late = l.settle(&u, lease, Settle::Commit, later).await.unwrap();
    assert_eq!(late.settled, Settled::UnknownLease);
}

async fn refund_after_expiry_lapses(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("ken"), s.ledger.now());
    let e = t + Duration::seconds(20);
    l.add(&u, &[cred(Form, "short", e)], t).await.unwrap();
    let lease = LeaseId::random();
    l.reserve(&u, lease, t + Duration::seconds(60), t).await.unwrap();
    let out = l.settle(&u, lease, Settle::Refund, e).await.unwrap();
    assert_eq!(out.settled, Settled::Lapsed);
    assert_eq!(l.inspect(&u, e).await.unwrap().available_sends(), 0);
}

async fn a_held_lease_keeps_its_use_until_the_credential_expires(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("hal"), s.ledger.now());
    let expiry = t + Duration::minutes(10);
    l.add(
        &u,
        &[
            cred(Form, "first", expiry),
            cred(Form, "second", t + Duration::days(1)),
        ],
        t,
    )
    .await
    .unwrap();
    let lease = LeaseId::random();
    let taken = l.reserve(&u, lease, t + Duration::seconds(30), t).await.unwrap();
    assert_eq!(taken.reservation.unwrap().id.as_str(), "first");
    let held = l.settle(&u, lease, Settle::Hold, t).await.unwrap();
    assert_eq!(held.settled, Settled::Held);
    assert!(held.events.is_empty(), "{:?}", held.events);
    // Past the lease's own deadline the use is still not handed out again.
    let later = t + Duration::seconds(31);
    assert_eq!(drain(l, &u, later).await, ["second"]);
    // Whoever holds the lease can still settle it.
    let done = l.settle(&u, lease, Settle::Commit, later).await.unwrap();
    assert_eq!(done.settled, Settled::Spent);

    // A held lease nobody settles ends with its credential, unspent.
    l.add(&u, &[cred(Form, "third", expiry)], later).await.unwrap();
    let lease = LeaseId::random();
    l.reserve(&u, lease, later + Duration::seconds(30), later)
        .await
        .unwrap();
    l.settle(&u, lease, Settle::Hold, later).await.unwrap();
    assert!(reserve(l, &u, expiry - Duration::seconds(1)).await.is_none());
    let out = l.settle(&u, lease, Settle::Refund, expiry).await.unwrap();
    assert_eq!(out.settled, Settled::UnknownLease);
    assert!(out.events.is_empty(), "{:?}", out.events);
}

async fn a_lease_never_feeds_an_id_reposted_after_expiry(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("kim"), s.ledger.now());
    l.add(&u, &[cred(Form, "abc", t + Duration::seconds(30))], t)
        .await
        .unwrap();
    let lease = LeaseId::random();
    l.reserve(&u, lease, t + Duration::seconds(90), t).await.unwrap();
    // The form expires; the same id comes back as a new prepay.
    let later = t + Duration::seconds(30);
    let out = l
        .add(&u, &[cred(Prepay, "abc", later + Duration::days(1))], later)
        .await
        .unwrap();
    assert_eq!(out.items, vec![AddStatus::Accepted]);
    let refund = l.settle(&u, lease, Settle::Refund, later).await.unwrap();
    assert_eq!(refund.settled, Settled::Lapsed);
    let held = l.inspect(&u, later).await.unwrap();
    assert_eq!(
        held.credentials.iter().map(|c| c.uses_left).collect::<Vec<_>>(),
        [3]
    );
}

async fn expired_credentials_disappear(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("lena"), s.ledger.now());
    l.add(
        &u,
        &[
            cred(Form, "a", t + Duration::seconds(10)),
            cred(Prepay, "wxb", t + Duration::days(1)),
        ],
        t,
    )
    .await
    .unwrap();
    assert_eq!(l.inspect(&u, t).await.unwrap().available_sends(), 4);
    let later = t + Duration::seconds(10);
    let held = l.inspect(&u, later).await.unwrap();
    assert_eq!(held.available_sends(), 3);
    assert_eq!(held.credentials.len(), 1);
    assert_eq!(drain(l, &u, later).await, ["wxb", "wxb", "wxb"]);
}

async fn eviction_drops_the_soonest_expiring_over_the_cap(make: Make) {
    {
        let s = make(exact(3));
        let (l, u, t) = (&s.ledger, user("mike"), s.ledger.now());
        let day = |d| t + Duration::days(d);
        l.add(
            &u,
            &[
                cred(Form, "d3", day(3)),
                cred(Form, "d5", day(5)),
                cred(Prepay, "wxd2", day(2)),
            ],
            t,
        )
        .await
        .unwrap();
        let out = l
            .add(&u, &[cred(Form, "d6", day(6)), cred(Form, "d1", day(1))], t)
            .await
            .unwrap();
        assert_eq!(out.items, vec![AddStatus::Accepted, AddStatus::Accepted]);
        assert_eq!(out.evicted, 2);
        let evicted: Vec<_> = out
            .events
            .iter()
            .filter_map(|e| match e {
                LedgerEvent::Evicted {
                    kind,
                    uses,
                    expires_at,
                } => Some((*kind, *uses, *expires_at)),
                _ => None,
            })
            .collect();
        assert_eq!(evicted, [(Form, 1, day(1)), (Prepay, 3, day(2))]);
        assert_eq!(out.available_sends, 3);
        assert_eq!(drain(l, &u, t).await, ["d3", "d5", "d6"]);
    }
}

async fn leased_credentials_are_not_evicted(make: Make) {
    {
        let s = make(exact(1));
        let (l, u, t) = (&s.ledger, user("nina"), s.ledger.now());
        l.add(&u, &[cred(Prepay, "wxheld", t + Duration::days(1))], t)
            .await
            .unwrap();
        let (lease, _) = reserve(l, &u, t).await.unwrap();
        // The prepay expires first but is leased: the next-soonest goes.
        let out = l
            .add(&u, &[cred(Form, "later", t + Duration::days(2))], t)
            .await
            .unwrap();
        assert_eq!(out.evicted, 1);
        assert!(matches!(
            out.events[..],
            [
                LedgerEvent::Collected { .. },
                LedgerEvent::Evicted { kind: Form, .. }
            ]
        ));
        let done = l.settle(&u, lease, Settle::Commit, t).await.unwrap();
        assert_eq!(done.settled, Settled::Spent);
        // Settled, the prepay is evictable again.
        let out = l
            .add(&u, &[cred(Form, "latest", t + Duration::days(3))], t)
            .await
            .unwrap();
        assert_eq!(out.evicted, 1);
        assert!(out.events.contains(&LedgerEvent::Evicted {
            kind: Prepay,
            uses: 2,
            expires_at: t + Duration::days(1)
        }));
        assert_eq!(drain(l, &u, t).await, ["latest"]);
    }
}

async fn inspect_changes_nothing(make: Make) {
    let s = make(exact(200));
    let (l, u, t) = (&s.ledger, user("olga"), s.ledger.now());
    l.add(
        &u,
        &[
            cred(Form, "b", t + Duration::days(2)),
            cred(Prepay, "wxa", t + Duration::days(1)),
        ],
        t,
    )
    .await
    .unwrap();
    let (lease, _) = reserve(l, &u, t).await.unwrap();
    let view = l.inspect(&u, t).await.unwrap();
    assert_eq!(view.leased, 1);
    let shown: Vec<_> = view.credentials.iter().map(|c| (c.kind, c.uses_left)).collect();
    assert_eq!(shown, [(Prepay, 2), (Form, 1)]);
    // Past the lease deadline the view counts the use as back, but nothing
    // is written: the lease still settles.
    let later = t + Duration::seconds(31);
    assert_eq!(l.inspect(&u, later).await.unwrap().available_sends(), 4);
    assert_eq!(l.inspect(&user("nobody"), t).await.unwrap().available_sends(), 0);
    assert_eq!(
        l.settle(&u, lease, Settle::Commit, t).await.unwrap().settled,
        Settled::Spent
    );
}

async fn openids_are_independent(make: Make) {
    let s = make(exact(200));
    let (l, t) = (&s.ledger, s.ledger.now());
    let (a, b) = (user("pat"), user("quinn"));
    l.add(&a, &[cred(Form, "shared-id", t + Duration::days(1))], t)
        .await
        .unwrap();
    let out = l
        .add(&b, &[cred(Form, "shared-id", t + Duration::days(1))], t)
        .await
        .unwrap();
    assert_eq!(out.items, vec![AddStatus::Accepted]);
    assert_eq!(drain(l, &a, t).await.len(), 1);
    assert_eq!(l.inspect(&b, t).await.unwrap().available_sends(), 1);
}
