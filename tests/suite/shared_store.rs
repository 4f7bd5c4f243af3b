//! The shared store's records, on the embedded store and on Redis: a
//! compare-and-set writes only over what the writer read, so two writers of
//! one record take turns instead of one losing the other's change.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use formid_ledger::store::{MemoryStore, RedisConnection, RedisStore, RedisTarget, SharedStore};

struct Subject {
    store: Arc<dyn SharedStore>,
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
    let connection = RedisConnection::new(RedisTarget::Single(server.url()), Duration::from_secs(2));
    Subject {
        store: Arc::new(RedisStore::new(connection, &support::unique_prefix("shared"))),
        _redis: Some(server),
    }
}

contract!(
    a_record_is_replaced_only_over_what_was_read,
    concurrent_read_change_writes_lose_nothing,
);

const HOUR: Duration = Duration::from_secs(3600);

async fn a_record_is_replaced_only_over_what_was_read(subject: fn() -> Subject) {
    let Subject { store, _redis } = subject();
    assert!(store.replace_cached("r", None, "one", HOUR).await.unwrap());
    assert!(
        !store.replace_cached("r", None, "two", HOUR).await.unwrap(),
        "it holds one"
    );
    assert!(
        !store
            .replace_cached("r", Some("two"), "three", HOUR)
            .await
            .unwrap()
    );
    assert_eq!(store.get_cached("r").await.unwrap().as_deref(), Some("one"));
    assert!(store.replace_cached("r", Some("one"), "two", HOUR).await.unwrap());
    assert_eq!(store.get_cached("r").await.unwrap().as_deref(), Some("two"));
    assert!(
        !store
            .replace_cached("absent", Some("one"), "x", HOUR)
            .await
            .unwrap()
    );
    assert_eq!(store.get_cached("absent").await.unwrap(), None);
}

/// 8 writers each add 25 marks to one record by read, change, compare-and-
/// set, reading again when beaten: all 200 marks are there.
async fn concurrent_read_change_writes_lose_nothing(subject: fn() -> Subject) {
    let Subject { store, _redis } = subject();
    let writers = (0..8).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..25 {
                loop {
                    let before = store.get_cached("marks").await.unwrap();
                    // Another writer gets to run between the read and the
                    // write (the embedded store never yields by itself).
                    tokio::task::yield_now().await;
                    let after = format!("{}{w}.{n},", before.as_deref().unwrap_or(""));
                    if store
                        .replace_cached("marks", before.as_deref(), &after, HOUR)
                        .await
                        .unwrap()
                    {
                        break;
                    }
                }
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let marks = store.get_cached("marks").await.unwrap().unwrap_or_default();
    assert_eq!(marks.split(',').filter(|m| !m.is_empty()).count(), 200);
}
