//! The shared store's records, on the embedded store (in memory, and reopened from its disk around
//! every operation) and on Redis: a
//! compare-and-set writes only over what the writer read, so two writers of
//! one record take turns instead of one losing the other's change.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use formid_ledger::store::{
    KeyState, MemoryStore, RedisConnection, RedisStore, RedisTarget, SharedStore, StoredToken,
};

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

fn on_disk() -> Subject {
    Subject {
        store: Arc::new(support::reopen::Restartable::store().around_every_operation()),
        _redis: None,
    }
}

contract!(
    a_record_is_replaced_only_over_what_was_read,
    concurrent_read_change_writes_lose_nothing,
    every_kind_of_record_reads_back,
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

/// Tokens, locks, cached values and an idempotency key through its life:
/// claimed, noted, taken over as pending, finished.
async fn every_kind_of_record_reads_back(subject: fn() -> Subject) {
    let Subject { store, _redis } = subject();
    // Tokens are kept to the second.
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
    let token = StoredToken {
        token: "t-1".into(),
        refresh_at: now + chrono::Duration::hours(1),
        expires_at: now + chrono::Duration::hours(2),
    };
    store.put_token("wxapp", &token).await.unwrap();
    assert_eq!(store.get_token("wxapp").await.unwrap(), Some(token.clone()));
    assert!(!store.invalidate_token("wxapp", "t-0").await.unwrap());
    assert!(store.invalidate_token("wxapp", "t-1").await.unwrap());
    assert_eq!(store.get_token("wxapp").await.unwrap(), None);

    assert!(store.try_lock("refresh", "me", HOUR).await.unwrap());
    assert!(!store.try_lock("refresh", "you", HOUR).await.unwrap());
    store.unlock("refresh", "you").await.unwrap();
    assert!(
        !store.try_lock("refresh", "you", HOUR).await.unwrap(),
        "only its holder unlocks it"
    );
    store.unlock("refresh", "me").await.unwrap();
    assert!(store.try_lock("refresh", "you", HOUR).await.unwrap());

    assert!(store.put_cached_if_absent("seen", "1", HOUR).await.unwrap());
    assert!(!store.put_cached_if_absent("seen", "2", HOUR).await.unwrap());
    store.drop_cached("seen").await.unwrap();
    assert_eq!(store.get_cached("seen").await.unwrap(), None);

    assert_eq!(
        store.begin_idempotent("k", "body", HOUR).await.unwrap(),
        KeyState::New
    );
    assert_eq!(
        store.begin_idempotent("k", "bodx", HOUR).await.unwrap(),
        KeyState::Mismatch
    );
    assert!(
        store
            .note_idempotent("k", "body", "lease-1", Duration::from_millis(100), HOUR)
            .await
            .unwrap()
    );
    // Its claim over, the next request with the key takes it over, pending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.begin_idempotent("k", "body", HOUR).await.unwrap(),
        KeyState::Pending("lease-1".into())
    );
    assert_eq!(
        store.begin_idempotent("k", "body", HOUR).await.unwrap(),
        KeyState::InProgress,
        "taken over once"
    );
    store
        .finish_idempotent("k", "body", "{\"ok\":1}", HOUR)
        .await
        .unwrap();
    assert_eq!(
        store.begin_idempotent("k", "body", HOUR).await.unwrap(),
        KeyState::Done("{\"ok\":1}".into())
    );
    store.park_idempotent("p", "body", "lease-2", HOUR).await.unwrap();
    assert_eq!(
        store.begin_idempotent("p", "body", HOUR).await.unwrap(),
        KeyState::Pending("lease-2".into())
    );
    store.abandon_idempotent("p", "body").await.unwrap();
    assert_eq!(
        store.begin_idempotent("p", "body", HOUR).await.unwrap(),
        KeyState::New
    );
}
