//! Report counters in the store, on the embedded store (in memory, and reopened from its disk around
//! every operation) and on Redis: they
//! add up, each flush counts once however often it is retried, and folding
//! keeps sums.

use crate::support;

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use formid_ledger::domain::{ChannelKind, Outcome};
use formid_ledger::report::UsageRecorder;
use formid_ledger::store::{
    DayCounters, MemoryStore, RedisConnection, RedisStore, RedisTarget, UsageBatch, UsageStore,
};

struct Subject {
    store: Arc<dyn UsageStore>,
    _redis: Option<support::RedisServer>,
}

fn memory() -> Subject {
    Subject {
        store: Arc::new(MemoryStore::default()),
        _redis: None,
    }
}

fn redis() -> Subject {
    let server = support::RedisServer::start();
    let connection = RedisConnection::new(
        RedisTarget::Single(server.url()),
        std::time::Duration::from_secs(2),
    );
    Subject {
        store: Arc::new(RedisStore::new(connection, &support::unique_prefix("usage"))),
        _redis: Some(server),
    }
}

fn on_disk() -> Subject {
    Subject {
        store: Arc::new(support::reopen::Restartable::store().around_every_operation()),
        _redis: None,
    }
}

contract!(
    counters_add_up,
    a_batch_counts_once_however_often_it_is_applied,
    folding_keeps_sums,
);

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn batch(source: &str, seq: u64, days: &[(NaiveDate, &str, i64)]) -> UsageBatch {
    let mut deltas = formid_ledger::store::UsageDeltas::new();
    for (day, field, delta) in days {
        deltas
            .entry(*day)
            .or_default()
            .insert((*field).to_owned(), *delta);
    }
    UsageBatch {
        source: source.to_owned(),
        seq,
        deltas,
    }
}

async fn counters_add_up(make: fn() -> Subject) {
    let s = make();
    let store = &s.store;
    store
        .add_usage(&batch(
            "a",
            1,
            &[(day(23), "collected.form", 3), (day(23), "x.form.100", -2)],
        ))
        .await
        .unwrap();
    store
        .add_usage(&batch(
            "a",
            2,
            &[(day(23), "collected.form", 3), (day(23), "x.form.100", -2)],
        ))
        .await
        .unwrap();
    store
        .add_usage(&batch("b", 1, &[(day(23), "collected.form", 1)]))
        .await
        .unwrap();
    let read = store.usage(&[day(23), day(24)]).await.unwrap();
    assert_eq!(read[0].get("collected.form"), Some(&7));
    assert_eq!(read[0].get("x.form.100"), Some(&-4));
    assert!(read[1].is_empty());
}

async fn a_batch_counts_once_however_often_it_is_applied(make: fn() -> Subject) {
    let s = make();
    let store = &s.store;
    let first = batch("a", 1, &[(day(22), "sends.sent", 1), (day(23), "sends.sent", 2)]);
    for _ in 0..3 {
        store.add_usage(&first).await.unwrap();
    }
    let read = store.usage(&[day(22), day(23)]).await.unwrap();
    assert_eq!(
        (read[0].get("sends.sent"), read[1].get("sends.sent")),
        (Some(&1), Some(&2))
    );
}

async fn folding_keeps_sums(make: fn() -> Subject) {
    let s = make();
    let store = &s.store;
    let d = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
    let fields = [
        ("x.form.10", 2),
        ("x.form.20", 3),
        ("x.form.all", 1),
        ("x.prepay.5", 6),
        ("r.10", 1),
        ("refunded.form", 4),
    ];
    let fields: Vec<_> = fields.iter().map(|(f, v)| (d, *f, *v)).collect();
    store.add_usage(&batch("a", 1, &fields)).await.unwrap();
    store
        .fold_usage(d, &["x.form", "x.prepay"], &["r"])
        .await
        .unwrap();
    let mut read = store.usage(&[d]).await.unwrap().remove(0);
    read.retain(|field, _| !field.starts_with("flush."));
    let expected: DayCounters = [
        ("x.form.all".into(), 6),
        ("x.prepay.all".into(), 6),
        ("refunded.form".into(), 4),
    ]
    .into();
    assert_eq!(read, expected);
}

/// A flush that fails after writing some of its days (here: Redis refuses
/// the second day's key to this user) is retried whole, and the day it
/// already reached does not count it twice.
#[tokio::test]
async fn a_flush_that_fails_part_way_is_completed_not_repeated() {
    let server = support::RedisServer::start();
    let prefix = support::unique_prefix("acl");
    let mut admin = server.client();
    let allow_first_day_only = format!("~{prefix}:usage:{{2026-11-22}}");
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("flusher")
        .arg("on")
        .arg(">flusher-secret")
        .arg("+@all")
        .arg(&allow_first_day_only)
        .query::<()>(&mut admin)
        .unwrap();
    let url = format!("redis://flusher:flusher-secret@127.0.0.1:{}/0", server.port());
    let connection = RedisConnection::new(RedisTarget::Single(url), std::time::Duration::from_secs(2));
    let store = Arc::new(RedisStore::new(connection, &prefix));
    let utc8 = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let recorder = UsageRecorder::new(store.clone(), utc8);
    let noon = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 4, 0, 0).unwrap();
    recorder.send(noon(22), ChannelKind::Template, Outcome::Sent);
    recorder.send(noon(23), ChannelKind::Template, Outcome::Sent);

    assert!(recorder.flush().await.is_err(), "the second day is refused");
    let read = store.usage(&[day(22)]).await.unwrap();
    assert_eq!(read[0].get("sends.sent"), Some(&1), "the first day was written");

    // More happens meanwhile; then Redis lets the flusher in everywhere.
    recorder.send(noon(22), ChannelKind::Template, Outcome::Sent);
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("flusher")
        .arg("allkeys")
        .query::<()>(&mut admin)
        .unwrap();
    recorder.flush().await.unwrap();
    let read = store.usage(&[day(22), day(23)]).await.unwrap();
    assert_eq!(
        (read[0].get("sends.sent"), read[1].get("sends.sent")),
        (Some(&2), Some(&1)),
        "each happening counted exactly once"
    );
}
