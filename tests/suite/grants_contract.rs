//! The subscribe grant ledger's contract, run against the embedded ledger
//! and against Redis (a real redis-server per test), both on a clock the
//! test moves; plus what only Redis shows: instances racing, memory.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use formid_ledger::clock::ManualClock;
use formid_ledger::domain::{OpenId, TemplateId};
use formid_ledger::ledger::grants::{
    Accept, GrantEvent, GrantLedger, GrantSettings, Holding, MemoryGrants, RedisGrants,
};
use formid_ledger::ledger::{LeaseId, RedisTarget, Settle, Settled};
use formid_ledger::store::RedisConnection;

struct Subject {
    grants: Box<dyn GrantLedger>,
    clock: Arc<ManualClock>,
    _redis: Option<support::RedisServer>,
}

type Make = fn(GrantSettings) -> Subject;

fn memory(settings: GrantSettings) -> Subject {
    let clock = Arc::new(ManualClock::at_current_second());
    Subject {
        grants: Box::new(MemoryGrants::with_clock(settings, clock.clone())),
        clock,
        _redis: None,
    }
}

fn connection(server: &support::RedisServer) -> RedisConnection {
    RedisConnection::new(RedisTarget::Single(server.url()), Duration::from_secs(2))
}

fn redis(settings: GrantSettings) -> Subject {
    let server = support::RedisServer::start();
    let clock = Arc::new(ManualClock::at_current_second());
    let grants = RedisGrants::on(connection(&server), &support::unique_prefix("grants"), settings)
        .with_clock(clock.clone());
    Subject {
        grants: Box::new(grants),
        clock,
        _redis: Some(server),
    }
}

fn on_disk(settings: GrantSettings) -> Subject {
    let clock = Arc::new(ManualClock::at_current_second());
    Subject {
        grants: Box::new(
            support::reopen::Restartable::grants(settings, clock.clone()).around_every_operation(),
        ),
        clock,
        _redis: None,
    }
}

fn settings(cap: u32) -> GrantSettings {
    GrantSettings {
        max_per_template: cap,
        retention: Duration::from_secs(30 * 86_400),
    }
}

fn user(name: &str) -> OpenId {
    OpenId::parse(name).unwrap()
}

fn tpl(name: &str) -> TemplateId {
    TemplateId::parse(name).unwrap()
}

const HOLD: Duration = Duration::from_secs(30);

contract!(
    accepts_accumulate_up_to_the_cap,
    each_grant_is_spent_once,
    refund_gives_the_grant_back,
    burn_drops_every_grant_of_the_template_and_its_leases,
    a_stale_lease_gives_its_grant_back,
    reserve_retried_with_its_lease_takes_one_grant,
    settling_twice_changes_nothing,
    grants_are_forgotten_after_the_retention,
    templates_and_openids_are_independent,
    a_long_term_subscription_is_sent_on_without_spending,
    a_long_term_subscription_ends_by_43101_or_by_the_user_and_restarts,
    one_time_grants_of_a_long_term_template_become_its_subscription,
);

async fn accepts_accumulate_up_to_the_cap(make: Make) {
    let s = make(settings(5));
    let (g, u) = (&s.grants, user("alice"));
    let out = g.add_grants(&u, &[(tpl("A"), 3), (tpl("B"), 1)]).await.unwrap();
    assert_eq!(out.held, [Holding::Grants(3), Holding::Grants(1)]);
    assert_eq!(
        out.events,
        [
            GrantEvent::Accepted {
                template: tpl("A"),
                grants: 3
            },
            GrantEvent::Accepted {
                template: tpl("B"),
                grants: 1
            }
        ]
    );
    let out = g.add_grants(&u, &[(tpl("A"), 4)]).await.unwrap();
    assert_eq!(out.held, [Holding::Grants(5)]);
    assert_eq!(
        out.events,
        [
            GrantEvent::Accepted {
                template: tpl("A"),
                grants: 2
            },
            GrantEvent::Capped {
                template: tpl("A"),
                grants: 2
            }
        ]
    );
    let held = g.grants(&u).await.unwrap();
    assert_eq!(held.templates, [(tpl("A"), 5), (tpl("B"), 1)].into());
    assert_eq!(held.leased, 0);
}

async fn each_grant_is_spent_once(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("bob"));
    g.add_grants(&u, &[(tpl("A"), 2)]).await.unwrap();
    for left in [1, 0] {
        let lease = LeaseId::random();
        let out = g.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
        assert_eq!(out.reservation.unwrap().template, tpl("A"));
        assert_eq!(out.left, Holding::Grants(left));
        let done = g.settle_grant(&u, lease, Settle::Commit).await.unwrap();
        assert_eq!(done.settled, Settled::Spent);
        assert_eq!(done.events, [GrantEvent::Spent { template: tpl("A") }]);
    }
    let none = g
        .reserve_grant(&u, &tpl("A"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert_eq!((none.reservation, none.left), (None, Holding::Grants(0)));
    assert!(g.grants(&u).await.unwrap().templates.is_empty());
}

async fn refund_gives_the_grant_back(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("carol"));
    g.add_grants(&u, &[(tpl("A"), 1)]).await.unwrap();
    let lease = LeaseId::random();
    g.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
    assert!(g.grants(&u).await.unwrap().templates.is_empty());
    let back = g.settle_grant(&u, lease, Settle::Refund).await.unwrap();
    assert_eq!(back.settled, Settled::Refunded);
    assert_eq!(back.events, [GrantEvent::Refunded { template: tpl("A") }]);
    assert_eq!(g.grants(&u).await.unwrap().templates, [(tpl("A"), 1)].into());
}

async fn burn_drops_every_grant_of_the_template_and_its_leases(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("dave"));
    g.add_grants(&u, &[(tpl("A"), 3), (tpl("B"), 1)]).await.unwrap();
    let (first, second) = (LeaseId::random(), LeaseId::random());
    g.reserve_grant(&u, &tpl("A"), first, HOLD).await.unwrap();
    g.reserve_grant(&u, &tpl("A"), second, HOLD).await.unwrap();
    // WeChat says 43101 to the first: the user cancelled the template.
    let burned = g.settle_grant(&u, first, Settle::Burn).await.unwrap();
    assert_eq!(burned.settled, Settled::Burned { uses: 3 });
    assert_eq!(
        burned.events,
        [GrantEvent::Burned {
            template: tpl("A"),
            grants: 3
        }]
    );
    // The other lease of A went with it; B is untouched.
    let late = g.settle_grant(&u, second, Settle::Refund).await.unwrap();
    assert_eq!(late.settled, Settled::UnknownLease);
    assert_eq!(g.grants(&u).await.unwrap().templates, [(tpl("B"), 1)].into());
    // Turning B off burns it without a lease.
    let off = g.burn_grants(&u, &tpl("B")).await.unwrap();
    assert_eq!(
        off,
        [GrantEvent::Burned {
            template: tpl("B"),
            grants: 1
        }]
    );
    assert!(g.burn_grants(&u, &tpl("B")).await.unwrap().is_empty());
    assert_eq!(g.grants(&u).await.unwrap(), Default::default());
}

async fn a_stale_lease_gives_its_grant_back(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("erin"));
    g.add_grants(&u, &[(tpl("A"), 1)]).await.unwrap();
    let lease = LeaseId::random();
    g.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
    s.clock.advance(chrono::Duration::seconds(29));
    let early = g
        .reserve_grant(&u, &tpl("A"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert!(early.reservation.is_none(), "held until the deadline");
    s.clock.advance(chrono::Duration::seconds(1));
    let again = g
        .reserve_grant(&u, &tpl("A"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert!(again.reservation.is_some());
    assert_eq!(again.events, [GrantEvent::Refunded { template: tpl("A") }]);
    let late = g.settle_grant(&u, lease, Settle::Commit).await.unwrap();
    assert_eq!(late.settled, Settled::UnknownLease);
}

async fn reserve_retried_with_its_lease_takes_one_grant(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("fay"));
    g.add_grants(&u, &[(tpl("A"), 2)]).await.unwrap();
    let lease = LeaseId::random();
    let first = g.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
    let retry = g.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
    assert_eq!(first.reservation, retry.reservation);
    let held = g.grants(&u).await.unwrap();
    assert_eq!((held.templates[&tpl("A")], held.leased), (1, 1));
}

async fn settling_twice_changes_nothing(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("gus"));
    g.add_grants(&u, &[(tpl("A"), 2)]).await.unwrap();
    let lease = LeaseId::random();
    g.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
    g.settle_grant(&u, lease, Settle::Commit).await.unwrap();
    for how in [Settle::Commit, Settle::Refund, Settle::Burn, Settle::Hold] {
        let again = g.settle_grant(&u, lease, how).await.unwrap();
        assert_eq!(again.settled, Settled::UnknownLease, "{how:?}");
        assert!(again.events.is_empty());
    }
    assert_eq!(g.grants(&u).await.unwrap().templates, [(tpl("A"), 1)].into());
}

async fn grants_are_forgotten_after_the_retention(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("hal"));
    g.add_grants(&u, &[(tpl("A"), 1)]).await.unwrap();
    s.clock.advance(chrono::Duration::days(29));
    // A change renews the retention; a read does not.
    g.add_grants(&u, &[(tpl("B"), 1)]).await.unwrap();
    s.clock.advance(chrono::Duration::days(29));
    assert_eq!(g.grants(&u).await.unwrap().templates.len(), 2);
    s.clock.advance(chrono::Duration::days(1));
    assert_eq!(g.grants(&u).await.unwrap(), Default::default());
}

async fn templates_and_openids_are_independent(make: Make) {
    let s = make(settings(50));
    let g = &s.grants;
    g.add_grants(&user("ivy"), &[(tpl("A"), 1)]).await.unwrap();
    let other = g
        .reserve_grant(&user("jay"), &tpl("A"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert!(other.reservation.is_none());
    let wrong = g
        .reserve_grant(&user("ivy"), &tpl("B"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert!(wrong.reservation.is_none());
    assert_eq!(
        g.grants(&user("ivy")).await.unwrap().templates,
        [(tpl("A"), 1)].into()
    );
}

const LONG: Accept = Accept::LongTerm;

async fn a_long_term_subscription_is_sent_on_without_spending(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("kim"));
    let out = g
        .add_accepts(&u, &[(tpl("L"), LONG), (tpl("A"), Accept::OneTime(1))])
        .await
        .unwrap();
    assert_eq!(out.held, [Holding::LongTerm, Holding::Grants(1)]);
    assert_eq!(
        out.events,
        [
            GrantEvent::Subscribed {
                template: tpl("L"),
                absorbed: 0
            },
            GrantEvent::Accepted {
                template: tpl("A"),
                grants: 1
            }
        ]
    );
    // Accepted again (or accepted as one-time): still one subscription.
    let again = g.add_accepts(&u, &[(tpl("L"), LONG)]).await.unwrap();
    assert!(again.events.is_empty());
    assert!(
        g.add_grants(&u, &[(tpl("L"), 1)])
            .await
            .unwrap()
            .events
            .is_empty()
    );
    for how in [Settle::Commit, Settle::Refund, Settle::Commit, Settle::Commit] {
        let lease = LeaseId::random();
        let got = g.reserve_for(&u, &tpl("L"), true, lease, HOLD).await.unwrap();
        assert_eq!(got.reservation.unwrap().template, tpl("L"));
        assert_eq!(got.left, Holding::LongTerm);
        let done = g.settle_grant(&u, lease, how).await.unwrap();
        let expected: Vec<GrantEvent> = match how {
            Settle::Commit => vec![GrantEvent::SentLongTerm { template: tpl("L") }],
            _ => vec![],
        };
        assert_eq!(done.events, expected, "{how:?}");
    }
    // A lapsed lease gives nothing back either; nor is the template's
    // kind needed to send on it.
    g.reserve_grant(&u, &tpl("L"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    s.clock.advance(chrono::Duration::seconds(31));
    let later = g
        .reserve_grant(&u, &tpl("L"), LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert!(later.reservation.is_some());
    assert!(later.events.is_empty());
    let held = g.grants(&u).await.unwrap();
    assert_eq!(held.long_term, [tpl("L")].into());
    assert_eq!(held.templates, [(tpl("A"), 1)].into());
}

async fn a_long_term_subscription_ends_by_43101_or_by_the_user_and_restarts(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("lou"));
    g.add_accepts(&u, &[(tpl("L"), LONG)]).await.unwrap();
    let (first, second) = (LeaseId::random(), LeaseId::random());
    g.reserve_for(&u, &tpl("L"), true, first, HOLD).await.unwrap();
    g.reserve_for(&u, &tpl("L"), true, second, HOLD).await.unwrap();
    let burned = g.settle_grant(&u, first, Settle::Burn).await.unwrap();
    assert_eq!(burned.settled, Settled::Burned { uses: 0 });
    assert_eq!(burned.events, [GrantEvent::Ended { template: tpl("L") }]);
    let late = g.settle_grant(&u, second, Settle::Commit).await.unwrap();
    assert_eq!(late.settled, Settled::UnknownLease);
    let none = g
        .reserve_for(&u, &tpl("L"), true, LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert_eq!((none.reservation, none.left), (None, Holding::Grants(0)));
    // A new accept restarts it; the user turning it off ends it again.
    let back = g.add_accepts(&u, &[(tpl("L"), LONG)]).await.unwrap();
    assert_eq!(
        back.events,
        [GrantEvent::Subscribed {
            template: tpl("L"),
            absorbed: 0
        }]
    );
    let off = g.burn_grants(&u, &tpl("L")).await.unwrap();
    assert_eq!(off, [GrantEvent::Ended { template: tpl("L") }]);
    assert_eq!(g.grants(&u).await.unwrap(), Default::default());
}

async fn one_time_grants_of_a_long_term_template_become_its_subscription(make: Make) {
    let s = make(settings(50));
    let (g, u) = (&s.grants, user("max"));
    // Kept as one-time before the ledger knew the template's kind.
    g.add_grants(&u, &[(tpl("L"), 2)]).await.unwrap();
    let lease = LeaseId::random();
    let got = g.reserve_for(&u, &tpl("L"), true, lease, HOLD).await.unwrap();
    assert_eq!(got.left, Holding::LongTerm);
    assert_eq!(
        got.events,
        [GrantEvent::Subscribed {
            template: tpl("L"),
            absorbed: 2
        }]
    );
    let done = g.settle_grant(&u, lease, Settle::Commit).await.unwrap();
    assert_eq!(done.events, [GrantEvent::SentLongTerm { template: tpl("L") }]);
    // Nothing held of a long-term template: nothing to turn into one.
    let none = g
        .reserve_for(&u, &tpl("M"), true, LeaseId::random(), HOLD)
        .await
        .unwrap();
    assert!(none.reservation.is_none() && none.events.is_empty());
    assert_eq!(g.grants(&u).await.unwrap().long_term, [tpl("L")].into());
}

/// 60 concurrent sends over two instances (separate connections) against
/// one openid holding 20 grants: exactly 20 are handed out, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_across_instances_hand_out_each_grant_once() {
    let server = support::RedisServer::start();
    let prefix = support::unique_prefix("race");
    let instances: Vec<Arc<RedisGrants>> = (0..2)
        .map(|_| {
            Arc::new(RedisGrants::on(
                connection(&server),
                &prefix,
                GrantSettings::default(),
            ))
        })
        .collect();
    let u = user("racer");
    instances[0].add_grants(&u, &[(tpl("A"), 20)]).await.unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let (grants, u) = (instances[n % 2].clone(), u.clone());
            tokio::spawn(async move {
                let lease = LeaseId::random();
                let got = grants.reserve_grant(&u, &tpl("A"), lease, HOLD).await.unwrap();
                if got.reservation.is_some() {
                    let done = grants.settle_grant(&u, lease, Settle::Commit).await.unwrap();
                    assert_eq!(done.settled, Settled::Spent);
                }
                got.reservation.is_some()
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += usize::from(task.await.unwrap());
    }
    assert_eq!(sent, 20);
    assert_eq!(instances[1].grants(&u).await.unwrap(), Default::default());
}

/// Redis memory per (openid, template) entry at 3 templates per openid
/// (printed; `scripts/bench` reports it too). The target (docs/targets.md): at most 64 bytes.
#[tokio::test]
async fn three_templates_per_openid_cost_at_most_64_bytes_an_entry() {
    let server = support::RedisServer::start();
    let per_entry = support::memory_per_grant_entry(&server).await;
    println!("redis memory per (openid, template) entry at 3 templates/openid: {per_entry:.1} bytes");
    assert!(per_entry <= 64.0, "{per_entry:.1} bytes per entry");
}
