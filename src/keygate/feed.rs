//! Following a store's change feed: the task that applies the
//! [`Change`]s made by other processes to one keygate's cache.

use std::sync::{Arc, Weak};

use super::Inner;
use crate::store::{Change, Changes};

/// Where a keygate's changes come from (see
/// [`KeygateBuilder::change_feed`](super::KeygateBuilder::change_feed)).
pub(super) enum Source {
    /// A subscription to the store's own feed, when it has one.
    Store,
    /// This subscription.
    Given(Changes),
    /// None.
    Off,
}

/// The task following a feed for one keygate. Dropping it (with the
/// keygate's last clone) aborts the task, which drops the subscription,
/// which stops the store's listener or poller.
#[derive(Debug)]
pub(super) struct Follower {
    task: tokio::task::AbortHandle,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes as `source` says and follows the subscription on the current
/// tokio runtime. `None` when there is nothing to follow, or no runtime to
/// follow it on (then changes made elsewhere are seen only when cache
/// entries expire, as a warning says).
pub(super) fn follow(source: Source, gate: &Arc<Inner>) -> Option<Follower> {
    let given = match source {
        Source::Off => return None,
        Source::Given(changes) => Some(changes),
        Source::Store => {
            gate.store.change_feed()?;
            None
        }
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            "no tokio runtime: changes made by other processes reach the cache only \
             when its entries expire"
        );
        return None;
    };
    let changes = match given {
        Some(changes) => changes,
        None => gate.store.change_feed()?.subscribe(),
    };
    let task = runtime.spawn(apply(changes, Arc::downgrade(gate)));
    Some(Follower {
        task: task.abort_handle(),
    })
}

/// Applies every change to the cache of `gate` while it lives.
async fn apply(mut changes: Changes, gate: Weak<Inner>) {
    while let Some(change) = changes.next().await {
        let Some(inner) = gate.upgrade() else {
            return;
        };
        match change {
            Change::Key(id) => inner.cache.invalidate(id),
            Change::Resync => inner.cache.clear(),
        }
    }
    // Nothing more will be heard: distrust what may already be stale.
    if let Some(inner) = gate.upgrade() {
        inner.cache.clear();
        tracing::warn!(
            "the store's change feed ended: changes made by other processes reach the \
             cache only when its entries expire"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::{Change, Changes};
    use crate::{Keygate, MemoryStore, NewKey, Pepper};

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

    #[tokio::test]
    async fn a_key_change_drops_that_key_and_a_resync_distrusts_the_cache() {
        let (sender, changes) = Changes::channel(8);
        let gate = gate(Some(changes));
        let created = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        let token = created.token.expose();
        gate.verify(token).await.unwrap();

        // Deleted behind the keygate's back: the cache still answers…
        assert!(gate.store().delete(&created.key.id).await.unwrap());
        gate.verify(token).await.unwrap();
        // …until the feed says the key changed.
        assert!(sender.send(Change::Key(created.key.id)).await);
        assert!(refused(&gate, token).await, "Key(id) dropped the entry");

        let other = gate
            .keys()
            .create(NewKey::new("alice", "other"))
            .await
            .unwrap();
        let other_token = other.token.expose();
        gate.verify(other_token).await.unwrap();
        assert!(gate.store().delete(&other.key.id).await.unwrap());
        gate.verify(other_token).await.unwrap();
        assert!(sender.send(Change::Resync).await);
        assert!(refused(&gate, other_token).await, "Resync distrusted it");
    }

    #[tokio::test]
    async fn dropping_the_keygate_stops_following_and_drops_the_subscription() {
        let (sender, changes) = Changes::channel(8);
        let gate = gate(Some(changes));
        let clone = gate.clone();
        drop(gate);
        assert!(!sender.is_closed(), "a clone still follows");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(1), sender.closed())
            .await
            .expect("the subscription was dropped with the keygate");
    }

    #[tokio::test]
    async fn an_ended_feed_distrusts_the_cache() {
        let (sender, changes) = Changes::channel(8);
        let gate = gate(Some(changes));
        let created = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        let token = created.token.expose();
        gate.verify(token).await.unwrap();
        assert!(gate.store().delete(&created.key.id).await.unwrap());
        drop(sender);
        assert!(refused(&gate, token).await);
    }

    #[test]
    fn a_memory_store_has_no_feed_and_building_needs_no_runtime() {
        let gate = Keygate::builder(MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap();
        assert!(gate.inner.follower.get().is_none());
    }
}
