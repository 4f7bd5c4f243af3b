//! Random sequences of ledger operations, applied to the embedded ledger (in
//! memory, and kept on disk and restarted at random points) and to Redis
//! side by side: every answer must be identical, and no use may be created
//! or destroyed without an event saying so.

use crate::support;

use chrono::{DateTime, Duration, Utc};
use formid_ledger::domain::{CredentialKind, OpenId};
use formid_ledger::ledger::{LeaseId, LedgerEvent, NewCredential, Settle, Settled};
use proptest::prelude::*;
use support::ledger::{TimedLedger, cred, exact};

const USERS: [&str; 2] = ["u1", "u2"];
const IDS: [&str; 8] = [
    "00000000000000000000000000000001",
    "00000000000000000000000000000002",
    "ffffffffffffffffffffffffffffffff",
    "wx20261123a",
    "wx20261123b",
    "AA",
    "abc",
    "0a",
];
const LEASES: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Add {
        user: usize,
        items: Vec<(bool, usize, i64)>,
    },
    Reserve {
        user: usize,
        lease: usize,
        hold_secs: i64,
    },
    Settle {
        user: usize,
        lease: usize,
        how: u8,
    },
    Inspect {
        user: usize,
    },
    Advance {
        secs: i64,
    },
    /// The disk-kept ledger restarts: read back from its disk.
    Restart,
}

/// Seconds from now to a credential's expiry: mostly a few fixed values, so
/// that equal expiries (and so the tie-break) come up often.
fn expiry_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(vec![-60i64, 0, 30, 120, 3600, 86_400, 3 * 86_400]),
        1 => -600i64..7 * 86_400,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS.len();
    prop_oneof![
        3 => (user.clone(), prop::collection::vec((any::<bool>(), 0..IDS.len(), expiry_offset()), 1..5))
            .prop_map(|(user, items)| Op::Add { user, items }),
        4 => (user.clone(), 0..LEASES, 1i64..7200).prop_map(|(user, lease, hold_secs)| Op::Reserve { user, lease, hold_secs }),
        4 => (user.clone(), 0..LEASES, 0u8..4).prop_map(|(user, lease, how)| Op::Settle { user, lease, how }),
        1 => user.prop_map(|user| Op::Inspect { user }),
        2 => prop_oneof![0i64..120, 0i64..3 * 86_400].prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Restart),
    ]
}

/// Uses an openid can be sent, per the embedded ledger's own view.
async fn available(ledger: &TimedLedger, user: &OpenId, now: DateTime<Utc>) -> i64 {
    i64::from(ledger.inspect(user, now).await.unwrap().available_sends())
}

async fn run(server: &support::RedisServer, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let memory = TimedLedger::memory(exact(4));
    let redis = TimedLedger::redis(server, &support::unique_prefix("props"), exact(4));
    let (disk, restartable) = TimedLedger::restartable(exact(4));
    let leases: Vec<LeaseId> = (0..LEASES).map(|_| LeaseId::random()).collect();
    let users: Vec<OpenId> = USERS.iter().map(|u| OpenId::parse(u).unwrap()).collect();
    let mut now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Add { user, items } => {
                let batch: Vec<NewCredential> = items
                    .iter()
                    .map(|&(prepay, id, offset)| {
                        let kind = if prepay {
                            CredentialKind::Prepay
                        } else {
                            CredentialKind::Form
                        };
                        cred(kind, IDS[id], now + Duration::seconds(offset))
                    })
                    .collect();
                let before = available(&memory, &users[user], now).await;
                let a = memory.add(&users[user], &batch, now).await.unwrap();
                let b = redis.add(&users[user], &batch, now).await.unwrap();
                prop_assert_eq!(&a, &b, "step {}: add", step);
                let c = disk.add(&users[user], &batch, now).await.unwrap();
                prop_assert_eq!(&a, &c, "step {}: add on disk", step);
                // Conservation: every use gained or lost is an event.
                let collected: i64 = a
                    .events
                    .iter()
                    .map(|e| match *e {
                        LedgerEvent::Collected { uses, .. } => i64::from(uses),
                        LedgerEvent::Evicted { uses, .. } => -i64::from(uses),
                        _ => 0,
                    })
                    .sum();
                prop_assert_eq!(
                    i64::from(a.available_sends),
                    before + collected,
                    "step {}: uses not conserved",
                    step
                );
            }
            Op::Reserve {
                user,
                lease,
                hold_secs,
            } => {
                let deadline = now + Duration::seconds(hold_secs);
                let before = available(&memory, &users[user], now).await;
                let held = memory.inspect(&users[user], now).await.unwrap().leased;
                let a = memory
                    .reserve(&users[user], leases[lease], deadline, now)
                    .await
                    .unwrap();
                let b = redis
                    .reserve(&users[user], leases[lease], deadline, now)
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &b, "step {}: reserve", step);
                let c = disk
                    .reserve(&users[user], leases[lease], deadline, now)
                    .await
                    .unwrap();
                prop_assert_eq!(&a, &c, "step {}: reserve on disk", step);
                let after = memory.inspect(&users[user], now).await.unwrap();
                let taken = i64::from(after.leased) - i64::from(held);
                prop_assert_eq!(
                    i64::from(after.available_sends()),
                    before - taken,
                    "step {}: reserve took {}",
                    step,
                    taken
                );
                prop_assert!(taken == 0 || a.reservation.is_some());
            }
            Op::Settle { user, lease, how } => {
                let how = [Settle::Commit, Settle::Burn, Settle::Refund, Settle::Hold][usize::from(how)];
                let before = available(&memory, &users[user], now).await;
                let a = memory
                    .settle(&users[user], leases[lease], how, now)
                    .await
                    .unwrap();
                let b = redis.settle(&users[user], leases[lease], how, now).await.unwrap();
                prop_assert_eq!(&a, &b, "step {}: settle", step);
                let c = disk.settle(&users[user], leases[lease], how, now).await.unwrap();
                prop_assert_eq!(&a, &c, "step {}: settle on disk", step);
                let expected = match a.settled {
                    Settled::Refunded => before + 1,
                    // The leased use was not available; the rest were.
                    Settled::Burned { uses } => before - (i64::from(uses) - 1),
                    _ => before,
                };
                prop_assert_eq!(
                    available(&memory, &users[user], now).await,
                    expected,
                    "step {}: settle {:?}",
                    step,
                    a.settled
                );
            }
            Op::Inspect { user } => {
                let a = memory.inspect(&users[user], now).await.unwrap();
                let b = redis.inspect(&users[user], now).await.unwrap();
                prop_assert_eq!(&a, &b, "step {}: inspect", step);
                let c = disk.inspect(&users[user], now).await.unwrap();
                prop_assert_eq!(&a, &c, "step {}: inspect on disk", step);
            }
            Op::Advance { secs } => now += Duration::seconds(secs),
            Op::Restart => restartable.restart(),
        }
    }
    restartable.restart();
    for user in &users {
        let a = memory.inspect(user, now).await.unwrap();
        let b = redis.inspect(user, now).await.unwrap();
        prop_assert_eq!(&a, &b, "final state");
        let c = disk.inspect(user, now).await.unwrap();
        prop_assert_eq!(&a, &c, "final state on disk, restarted");
    }
    Ok(())
}

#[test]
fn embedded_and_redis_ledgers_answer_alike() {
    support::check_property(192, prop::collection::vec(op(), 1..60), run);
}
