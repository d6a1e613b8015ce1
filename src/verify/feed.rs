//! Following a store's change feed: the task that hands the [`Change`]s
//! made by other processes to one keygate (which applies them to its
//! cache).

use crate::store::{Change, Changes, KeyStore};

/// Where a keygate's changes come from (see
/// [`KeygateBuilder::change_feed`](crate::KeygateBuilder::change_feed)).
pub(crate) enum Source {
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
pub(crate) struct Follower {
    task: tokio::task::AbortHandle,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes as `source` says (to `store`'s feed by default) and hands
/// every change to `apply` on the current tokio runtime, until `apply`
/// returns `false`. Should the feed end, `apply` gets a last
/// [`Change::Resync`]. `None` when there is nothing to follow, or no
/// runtime to follow it on (then changes made elsewhere are seen only when
/// cache entries expire, as a warning says).
pub(crate) fn follow<F>(source: Source, store: &dyn KeyStore, apply: F) -> Option<Follower>
where
    F: FnMut(Change) -> bool + Send + 'static,
{
    let given = match source {
        Source::Off => return None,
        Source::Given(changes) => Some(changes),
        Source::Store => {
            store.change_feed()?;
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
        None => store.change_feed()?.subscribe(),
    };
    let task = runtime.spawn(run(changes, apply));
    Some(Follower {
        task: task.abort_handle(),
    })
}

/// Hands every change to `apply` while it wants them.
async fn run<F: FnMut(Change) -> bool>(mut changes: Changes, mut apply: F) {
    while let Some(change) = changes.next().await {
        if !apply(change) {
            return;
        }
    }
    // Nothing more will be heard: distrust what may already be stale.
    if apply(Change::Resync) {
        tracing::warn!(
            "the store's change feed ended: changes made by other processes reach the \
             cache only when its entries expire"
        );
    }
}
