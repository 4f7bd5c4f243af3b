//! Random sequences of grant operations on the embedded ledger (in memory,
//! and kept on disk and restarted at random points) and on Redis side by
//! side: every answer must be identical, and no grant may appear or
//! vanish without an event saying so. Accepts and reserves may be of the
//! long-term kind: subscriptions hold no grant, and one-time grants they
//! absorb are said by their event.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use formid_ledger::clock::ManualClock;
use formid_ledger::domain::{OpenId, TemplateId};
use formid_ledger::ledger::grants::{
    Accept, GrantEvent, GrantLedger, GrantSettings, MemoryGrants, RedisGrants,
};
use formid_ledger::ledger::{LeaseId, RedisTarget, Settle};
use formid_ledger::store::RedisConnection;
use proptest::prelude::*;

const USERS: [&str; 2] = ["u1", "u2"];
const TEMPLATES: [&str; 3] = ["A", "B", "FDco73hhn-F5hDB5NItfkd8fCbZfeKxwXUCS2clB83A"];
const LEASES: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Add {
        user: usize,
        items: Vec<(usize, u32)>,
    },
    Reserve {
        user: usize,
        template: usize,
        lease: usize,
        hold: u64,
        long_term: bool,
    },
    Settle {
        user: usize,
        lease: usize,
        how: usize,
    },
    Burn {
        user: usize,
        template: usize,
    },
    Read {
        user: usize,
    },
    Advance {
        secs: i64,
    },
    /// The disk-kept ledger restarts: read back from its disk.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS.len();
    let template = 0..TEMPLATES.len();
    prop_oneof![
        // An item of LONG_TERM accepts is a long-term accept.
        3 => (user.clone(), prop::collection::vec((template.clone(), 0u32..=LONG_TERM), 1..3))
            .prop_map(|(user, items)| Op::Add { user, items }),
        4 => (user.clone(), template.clone(), 0..LEASES, 1u64..120, prop::bool::weighted(0.2))
            .prop_map(|(user, template, lease, hold, long_term)| Op::Reserve { user, template, lease, hold, long_term }),
        4 => (user.clone(), 0..LEASES, 0usize..4).prop_map(|(user, lease, how)| Op::Settle { user, lease, how }),
        1 => (user.clone(), template).prop_map(|(user, template)| Op::Burn { user, template }),
        1 => user.prop_map(|user| Op::Read { user }),
        2 => prop_oneof![0i64..90, 0i64..40 * 86_400].prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Restart),
    ]
}

/// The accepts count of an item that stands for a long-term accept.
const LONG_TERM: u32 = 5;

/// Grants held plus leased, per the embedded ledger.
async fn total(grants: &MemoryGrants, user: &OpenId) -> i64 {
    let held = grants.grants(user).await.unwrap();
    i64::from(held.templates.values().sum::<u32>() + held.leased)
}

/// What the events say happened to that total.
fn delta(events: &[GrantEvent]) -> i64 {
    events
        .iter()
        .map(|e| match e {
            GrantEvent::Accepted { grants, .. } => i64::from(*grants),
            GrantEvent::Spent { .. } => -1,
            GrantEvent::Burned { grants, .. } => -i64::from(*grants),
            GrantEvent::Subscribed { absorbed, .. } => -i64::from(*absorbed),
            GrantEvent::Capped { .. }
            | GrantEvent::Refunded { .. }
            | GrantEvent::SentLongTerm { .. }
            | GrantEvent::Ended { .. } => 0,
        })
        .sum()
}

async fn run(server: &support::RedisServer, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let settings = GrantSettings {
        max_per_template: 4,
        retention: Duration::from_secs(30 * 86_400),
    };
    let clock = Arc::new(ManualClock::at_current_second());
    let memory = MemoryGrants::with_clock(settings, clock.clone());
    let disk = support::reopen::Restartable::grants(settings, clock.clone());
    let connection = RedisConnection::new(RedisTarget::Single(server.url()), Duration::from_secs(2));
    let redis =
        RedisGrants::on(connection, &support::unique_prefix("gprops"), settings).with_clock(clock.clone());
    let users: Vec<OpenId> = USERS.iter().map(|u| OpenId::parse(u).unwrap()).collect();
    let templates: Vec<TemplateId> = TEMPLATES.iter().map(|t| TemplateId::parse(t).unwrap()).collect();
    let leases: Vec<LeaseId> = (0..LEASES).map(|_| LeaseId::random()).collect();

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Add { user, mut items } => {
                items.sort_by_key(|(t, _)| *t);
                items.dedup_by_key(|(t, _)| *t);
                let batch: Vec<_> = items
                    .iter()
                    .map(|(t, n)| {
                        let accept = match *n {
                            LONG_TERM => Accept::LongTerm,
                            n => Accept::OneTime(n),
                        };
                        (templates[*t].clone(), accept)
                    })
                    .collect();
                let before = total(&memory, &users[user]).await;
                let a = memory.add_accepts(&users[user], &batch).await.unwrap();
                let b = redis.add_accepts(&users[user], &batch).await.unwrap();
                prop_assert_eq!(&a, &b, "step {}: add", step);
                let c = disk.add_accepts(&users[user], &batch).await.unwrap();
                prop_assert_eq!(&a, &c, "step {}: add on disk", step);
                let after = total(&memory, &users[user]).await;
                prop_assert_eq!(
                    after,
                    before + delta(&a.events),
                    "step {}: add not conserved",
                    step
                );
            }
            Op::Reserve {
                user,
                template,
                lease,
                hold,
                long_term,
            } => {
                let hold = Duration::from_secs(hold);
                let (user, template) = (&users[user], &templates[template]);
                let before = total(&memory, user).await;
                let a = memory
                    .reserve_for(user, template, long_term, leases[lease], hold)
                    .await
                    .unwrap();
                let b = redis
                    .reserve_for(user, template, long_term, leases[lease], hold)
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &b, "step {}: reserve", step);
                let c = disk
                    .reserve_for(user, template, long_term, leases[lease], hold)
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &c, "step {}: reserve on disk", step);
                prop_assert_eq!(
                    total(&memory, user).await,
                    before + delta(&a.events),
                    "step {}: reserve",
                    step
                );
            }
            Op::Settle { user, lease, how } => {
                let how = [Settle::Commit, Settle::Burn, Settle::Refund, Settle::Hold][how];
                let before = total(&memory, &users[user]).await;
                let a = memory
                    .settle_grant(&users[user], leases[lease], how)
                    .await
                    .unwrap();
                let b = redis
                    .settle_grant(&users[user], leases[lease], how)
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &b, "step {}: settle", step);
                let c = disk.settle_grant(&users[user], leases[lease], how).await.unwrap();
                prop_assert_eq!(&a, &c, "step {}: settle on disk", step);
                let after = total(&memory, &users[user]).await;
                prop_assert_eq!(
                    after,
                    before + delta(&a.events),
                    "step {}: settle {:?}",
                    step,
                    how
                );
            }
            Op::Burn { user, template } => {
                let a = memory
                    .burn_grants(&users[user], &templates[template])
                    .await
                    .unwrap();
                let b = redis
                    .burn_grants(&users[user], &templates[template])
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &b, "step {}: burn", step);
                let c = disk
                    .burn_grants(&users[user], &templates[template])
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &c, "step {}: burn on disk", step);
            }
            Op::Read { user } => {
                let a = memory.grants(&users[user]).await.unwrap();
                let b = redis.grants(&users[user]).await.unwrap();
                prop_assert_eq!(&a, &b, "step {}: read", step);
                let c = disk.grants(&users[user]).await.unwrap();
                prop_assert_eq!(&a, &c, "step {}: read on disk", step);
            }
            Op::Advance { secs } => clock.advance(chrono::Duration::seconds(secs)),
            Op::Restart => disk.restart(),
        }
    }
    disk.restart();
    for user in &users {
        let a = memory.grants(user).await.unwrap();
        prop_assert_eq!(&a, &redis.grants(user).await.unwrap());
        prop_assert_eq!(&a, &disk.grants(user).await.unwrap(), "restarted from disk");
    }
    Ok(())
}

#[test]
fn embedded_and_redis_grant_ledgers_answer_alike() {
    support::check_property(128, prop::collection::vec(op(), 1..50), run);
}
