//! Every store backend against the one conformance suite.

mod common;

conformance_suite!(memory, async { (keygate::MemoryStore::new(), ()) });

#[cfg(feature = "sqlite")]
conformance_suite!(sqlite, async {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    (keygate::SqliteStore::open(&url).await.unwrap(), dir)
});

#[cfg(feature = "sqlite")]
conformance_suite!(sqlite_in_memory, async {
    (
        keygate::SqliteStore::open("sqlite::memory:").await.unwrap(),
        (),
    )
});

/// The SQLite change feed between processes sharing one file (SPEC §8a),
/// with two stores opened on the file as two processes would.
#[cfg(feature = "sqlite")]
mod sqlite_change_feed {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use keygate::{Change, ChangeFeed, Changes, InsertRules, Usage};
    use keygate::{KeyStore, SqliteStore};
    use tempfile::TempDir;

    use super::common::conformance::{key, now};

    /// SPEC §8a's bound.
    const WITHIN: Duration = Duration::from_secs(1);

    fn rules() -> InsertRules {
        InsertRules {
            max_keys_per_owner: 0,
            now: now(),
        }
    }

    /// Two stores on one new file.
    async fn two_stores() -> (SqliteStore, SqliteStore, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        let a = SqliteStore::open(&url).await.unwrap();
        let b = SqliteStore::open_existing(&url).await.unwrap();
        (a, b, dir)
    }

    /// The next change, which must come within `WITHIN`.
    async fn next(changes: &mut Changes) -> Change {
        tokio::time::timeout(WITHIN, changes.next())
            .await
            .expect("a change within a second")
            .expect("the feed is running")
    }

    /// A subscription of `store` that is in place (its first change, the
    /// resync, was received).
    async fn subscribed(store: &SqliteStore) -> Changes {
        let mut changes = store.subscribe();
        assert_eq!(next(&mut changes).await, Change::Resync, "in place");
        changes
    }

    /// Nothing more arrives for a few polls.
    async fn quiet(changes: &mut Changes) {
        let more = tokio::time::timeout(Duration::from_millis(600), changes.next()).await;
        assert!(more.is_err(), "unexpected change: {more:?}");
    }

    #[tokio::test]
    async fn every_mutation_through_another_store_on_the_file_is_heard_within_a_second() {
        let (a, b, _dir) = two_stores().await;
        let mut changes = subscribed(&b).await;

        let mut k = key("alice", "ci");
        a.insert(&k, rules()).await.unwrap();
        let started = Instant::now();
        assert_eq!(next(&mut changes).await, Change::Key(k.key.id), "insert");
        eprintln!("insert heard after {:?}", started.elapsed());

        k.key.revoked_at = Some(now());
        a.replace(&k, now()).await.unwrap();
        let started = Instant::now();
        assert_eq!(next(&mut changes).await, Change::Key(k.key.id), "revoke");
        eprintln!("revocation heard after {:?}", started.elapsed());

        let mut old = key("alice", "rotated");
        a.insert(&old, rules()).await.unwrap();
        assert_eq!(next(&mut changes).await, Change::Key(old.key.id));
        let new = key("alice", "rotated");
        old.key.superseded_by = Some(new.key.id);
        a.rotate(&old, &new, now()).await.unwrap();
        assert_eq!(next(&mut changes).await, Change::Key(old.key.id), "rotate");
        assert_eq!(next(&mut changes).await, Change::Key(new.key.id), "rotate");

        assert!(a.delete(&k.key.id).await.unwrap());
        assert_eq!(next(&mut changes).await, Change::Key(k.key.id), "delete");

        // Usage, a failed write and a delete of nothing are not changes.
        a.record_usage(&[Usage {
            id: new.key.id,
            at: now(),
            ip: None,
        }])
        .await
        .unwrap();
        assert!(a.insert(&key("alice", "rotated"), rules()).await.is_err());
        assert!(!a.delete(&k.key.id).await.unwrap());
        quiet(&mut changes).await;
    }

    #[tokio::test]
    async fn changes_pruned_before_they_were_read_are_a_resync() {
        let (a, b, _dir) = two_stores().await;
        let mut changes = subscribed(&b).await;
        // Three changes and the pruning of all but the newest, committed at
        // once: the poller never sees the first two.
        let mut tx = a.pool().begin().await.unwrap();
        for k in [key("a", "1"), key("a", "2"), key("a", "3")] {
            sqlx::query("INSERT INTO keygate_changes (key_id, at) VALUES (?, 0)")
                .bind(k.key.id.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query(
            "DELETE FROM keygate_changes WHERE seq < (SELECT MAX(seq) FROM keygate_changes)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(next(&mut changes).await, Change::Resync);
        quiet(&mut changes).await;

        // Heard one by one again afterwards.
        let k = key("alice", "after");
        a.insert(&k, rules()).await.unwrap();
        assert_eq!(next(&mut changes).await, Change::Key(k.key.id));
    }

    #[tokio::test]
    async fn a_table_that_went_backwards_or_an_unreadable_row_is_a_resync() {
        let (a, b, _dir) = two_stores().await;
        let k = key("alice", "ci");
        a.insert(&k, rules()).await.unwrap();
        let mut changes = subscribed(&b).await;

        // Emptied (as by restoring an older copy of the file).
        let mut tx = a.pool().begin().await.unwrap();
        sqlx::query("DELETE FROM keygate_changes")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("DELETE FROM sqlite_sequence WHERE name = 'keygate_changes'")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(next(&mut changes).await, Change::Resync, "went backwards");

        // A row naming no valid key: something changed, but not known what.
        sqlx::query("INSERT INTO keygate_changes (key_id, at) VALUES ('not a key id', 0)")
            .execute(a.pool())
            .await
            .unwrap();
        assert_eq!(next(&mut changes).await, Change::Resync, "unreadable row");
        let k = key("alice", "next");
        a.insert(&k, rules()).await.unwrap();
        assert_eq!(next(&mut changes).await, Change::Key(k.key.id));
    }

    #[tokio::test]
    async fn writers_prune_old_changes_but_keep_the_newest() {
        let (a, _b, _dir) = two_stores().await;
        for n in 0..5 {
            sqlx::query("INSERT INTO keygate_changes (key_id, at) VALUES (?, 0)")
                .bind(format!("old{n}"))
                .execute(a.pool())
                .await
                .unwrap();
        }
        let k = key("alice", "ci");
        a.insert(&k, rules()).await.unwrap();
        let left: Vec<String> = sqlx::query_scalar("SELECT key_id FROM keygate_changes")
            .fetch_all(a.pool())
            .await
            .unwrap();
        assert_eq!(left, vec![k.key.id.to_string()], "the old rows are gone");
    }

    #[tokio::test]
    async fn a_file_has_a_feed_also_behind_an_arc_dyn_key_store_and_memory_has_none() {
        let (a, _b, _dir) = two_stores().await;
        let shared: Arc<dyn KeyStore> = Arc::new(a);
        let feed = shared.change_feed().expect("an SQLite file has a feed");
        let mut changes = feed.subscribe();
        assert_eq!(next(&mut changes).await, Change::Resync);

        let memory = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert!(
            memory.change_feed().is_none(),
            "no other process can open it"
        );
        assert_eq!(memory.subscribe().next().await, None);
        assert!(keygate::MemoryStore::new().change_feed().is_none());
    }
}

/// Credits on one SQLite file shared by two stores, as two processes
/// would share it: never overspent, and every change of a balance heard.
#[cfg(feature = "sqlite")]
mod sqlite_shared_credits {
    use std::time::Duration;

    use keygate::{
        Change, ChangeFeed, CreditChange, Credits, InsertRules, KeyStore, Reservation, SqliteStore,
    };

    use super::common::conformance::{key, now};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_on_one_file_never_overspend_and_hear_credit_changes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        let a = SqliteStore::open(&url).await.unwrap();
        let b = SqliteStore::open_existing(&url).await.unwrap();
        let mut k = key("alice", "metered");
        k.key.credits = Some(Credits::new(7).unwrap());
        let rules = InsertRules {
            max_keys_per_owner: 0,
            now: now(),
        };
        a.insert(&k, rules).await.unwrap();
        let id = k.key.id;
        let mut changes = b.subscribe();
        assert_eq!(changes.next().await, Some(Change::Resync));

        let tasks: Vec<_> = (0..40u64)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let credits = store.credits().unwrap();
                    credits.reserve(&id, 1, 1 + i % 3, now()).await
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Reservation::Counted(grant) => granted += grant.granted,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(granted, 7);
        let stored = b.get(&id).await.unwrap().unwrap();
        assert_eq!(stored.key.credits, Some(Credits::new(0).unwrap()));

        let next = tokio::time::timeout(Duration::from_secs(1), changes.next())
            .await
            .expect("a change within a second");
        assert_eq!(next, Some(Change::Key(id)), "a reservation is heard");
        // Drain what the reservations announced, then an adjustment.
        while tokio::time::timeout(Duration::from_millis(600), changes.next())
            .await
            .is_ok()
        {}
        a.credits()
            .unwrap()
            .adjust(&id, CreditChange::Set(3), now())
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(1), changes.next())
            .await
            .expect("a change within a second");
        assert_eq!(next, Some(Change::Key(id)), "an adjustment is heard");
    }
}
