//! How a keygate follows a change feed (SPEC §6, §8a): `Change::Key(id)`
//! drops that key from the cache, `Change::Resync` distrusts the whole
//! cache, an ended feed too; the feed is followed by default when the
//! store has one, and dropping the keygate drops the subscription.

use std::time::Duration;

use keygate::{Change, Changes};
use keygate::{KeyStore, Keygate, MemoryStore, NewKey, Pepper};

/// A keygate over a memory store following `changes`, with a cache that
/// outlives every test.
fn gate(changes: Option<Changes>) -> Keygate {
    Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .cache_ttl(Duration::from_secs(600))
        .usage_flush_interval(None)
        .change_feed(changes)
        .build()
        .unwrap()
}

/// Polls until `gate` refuses `token`, for at most a second.
async fn refused(gate: &Keygate, token: &str) -> bool {
    for _ in 0..100 {
        if gate.verify(token).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A new key, verified (so cached), then deleted behind the keygate's
/// back: the cache still answers for it. Its token.
async fn cached_but_deleted(gate: &Keygate, name: &str) -> (keygate::KeyId, String) {
    let created = gate
        .keys()
        .create(NewKey::new("alice", name))
        .await
        .unwrap();
    let token = created.token.expose().to_owned();
    gate.verify(&token).await.unwrap();
    assert!(gate.store().delete(&created.key.id).await.unwrap());
    gate.verify(&token).await.expect("served from the cache");
    (created.key.id, token)
}

#[tokio::test]
async fn a_key_change_drops_that_key_and_a_resync_distrusts_the_cache() {
    let (sender, changes) = Changes::channel(8);
    let gate = gate(Some(changes));

    let (id, token) = cached_but_deleted(&gate, "ci").await;
    let (_, other) = cached_but_deleted(&gate, "other").await;
    assert!(sender.send(Change::Key(id)).await);
    assert!(refused(&gate, &token).await, "Key(id) dropped the entry");
    assert!(gate.verify(&other).await.is_ok(), "only that key");

    assert!(sender.send(Change::Resync).await);
    assert!(refused(&gate, &other).await, "Resync distrusted it");
}

#[tokio::test]
async fn an_ended_feed_distrusts_the_cache() {
    let (sender, changes) = Changes::channel(8);
    let gate = gate(Some(changes));
    let (_, token) = cached_but_deleted(&gate, "ci").await;
    drop(sender);
    assert!(refused(&gate, &token).await);
}

#[tokio::test]
async fn dropping_the_keygate_stops_following_and_drops_the_subscription() {
    let (sender, changes) = Changes::channel(8);
    let gate = gate(Some(changes));
    let clone = gate.clone();
    drop(gate);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sender.is_closed(), "a clone still follows");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(1), sender.closed())
        .await
        .expect("the subscription was dropped with the keygate");
}

#[tokio::test]
async fn change_feed_none_follows_nothing() {
    let (sender, changes) = Changes::channel(8);
    let gate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .change_feed(Some(changes))
        .change_feed(None)
        .build()
        .unwrap();
    assert!(format!("{gate:?}").contains("follows_changes: false"));
    assert!(sender.is_closed(), "the replaced subscription was dropped");
}

#[test]
fn a_memory_store_has_no_feed_and_building_needs_no_runtime() {
    let gate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    assert!(gate.store().change_feed().is_none());
    assert!(format!("{gate:?}").contains("follows_changes: false"));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_sqlite_file_is_followed_by_default_also_behind_an_arc_dyn_key_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store: std::sync::Arc<dyn KeyStore> =
        std::sync::Arc::new(keygate::SqliteStore::open(&url).await.unwrap());
    let gate = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    assert!(format!("{gate:?}").contains("follows_changes: true"));

    let memory = keygate::SqliteStore::open("sqlite::memory:").await.unwrap();
    let gate = Keygate::builder(memory)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    assert!(format!("{gate:?}").contains("follows_changes: false"));
}
