//! What a [`ChangeFeed`](super::ChangeFeed) yields — [`Change`]s, through a
//! [`Changes`] subscription fed by a [`ChangeSender`] — telling whoever
//! caches a store's keys about changes made by *other* processes sharing
//! the database (another `keygate serve`, the `keygate` CLI).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::token::KeyId;

/// One event of a [`ChangeFeed`](super::ChangeFeed).
///
/// ```
/// use keygate::{Change, KeyId};
///
/// let id = KeyId::parse("0000000000000001")?;
/// assert_ne!(Change::Key(id), Change::Resync);
/// # Ok::<(), keygate::TokenError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Key `id` was created, updated, revoked, rotated or deleted: drop
    /// whatever is cached about it.
    Key(KeyId),
    /// Changes may have been missed — the feed just started, lost its
    /// connection, fell behind, or heard something it cannot read:
    /// distrust everything cached.
    Resync,
}

/// A subscription to a [`ChangeFeed`](super::ChangeFeed): the changes in the order they were
/// heard, as [`next`](Changes::next) or as a `futures` `Stream`.
///
/// Dropping it ends the subscription: the store's listener or poller
/// notices and stops.
///
/// Each change says "key X changed", or "resync: changes may have been
/// missed, distrust everything". It knows nothing of who listens:
/// [`Keygate`](crate::Keygate) subscribes when it is built and drains the
/// subscription into its cache (`Key(id)` drops that key's entries,
/// `Resync` distrusts the whole cache). Dropping a [`Changes`] ends the
/// subscription: the store stops its listener or poller.
///
/// # Example
///
/// ```
/// use keygate::KeyId;
/// use keygate::{Change, Changes};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // What a store's listener does: send what it heard, stop once nobody listens.
/// let (sender, mut changes) = Changes::channel(16);
/// let id = KeyId::parse("0123456789abcdef").unwrap();
/// tokio::spawn(async move {
///     sender.send(Change::Key(id)).await;
///     sender.send(Change::Resync).await;
/// });
/// assert_eq!(changes.next().await, Some(Change::Key(id)));
/// assert_eq!(changes.next().await, Some(Change::Resync));
/// assert_eq!(changes.next().await, None, "the sender is gone: the feed ended");
/// # }
/// ```
pub struct Changes {
    receiver: mpsc::Receiver<Change>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("pending", &self.receiver.len())
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// A new subscription and the sender that feeds it, buffering at most
    /// `buffer` changes (at least 1) before [`ChangeSender::send`] waits.
    /// For implementing [`ChangeFeed`](super::ChangeFeed).
    ///
    /// ```
    /// use keygate::{Change, Changes, KeyId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (sender, mut changes) = Changes::channel(16);
    /// let id = KeyId::parse("0000000000000001")?;
    /// assert!(sender.send(Change::Key(id)).await);
    /// assert_eq!(changes.next().await, Some(Change::Key(id)));
    /// drop(sender);
    /// assert_eq!(changes.next().await, None); // the feed ended
    /// # Ok(())
    /// # }
    /// ```
    pub fn channel(buffer: usize) -> (ChangeSender, Changes) {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        (ChangeSender { sender }, Changes { receiver })
    }

    /// A subscription that has already ended: [`next`](Changes::next)
    /// answers `None` at once.
    ///
    /// ```
    /// use keygate::Changes;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert_eq!(Changes::ended().next().await, None);
    /// # }
    /// ```
    pub fn ended() -> Changes {
        Changes::channel(1).1
    }

    /// The next change, waiting for it; `None` once the feed has ended (its
    /// sender is gone), after which nothing more will be heard.
    ///
    /// ```
    /// use keygate::{Change, Changes};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (sender, mut changes) = Changes::channel(1);
    /// sender.send(Change::Resync).await;
    /// assert_eq!(changes.next().await, Some(Change::Resync));
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<Change> {
        self.receiver.recv().await
    }
}

impl futures_core::Stream for Changes {
    type Item = Change;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        self.receiver.poll_recv(cx)
    }
}

/// The sending side of a [`Changes`] subscription.
#[derive(Clone, Debug)]
pub struct ChangeSender {
    sender: mpsc::Sender<Change>,
}

impl ChangeSender {
    /// Delivers `change`, waiting while the subscription's buffer is full.
    /// Returns `false` once the subscription was dropped: stop then.
    ///
    /// ```
    /// use keygate::{Change, Changes};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (sender, changes) = Changes::channel(1);
    /// drop(changes);
    /// assert!(!sender.send(Change::Resync).await); // nobody listens any more
    /// # }
    /// ```
    pub async fn send(&self, change: Change) -> bool {
        self.sender.send(change).await.is_ok()
    }

    /// Completes once the subscription was dropped.
    ///
    /// ```
    /// use keygate::Changes;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (sender, changes) = Changes::channel(1);
    /// drop(changes);
    /// sender.closed().await; // returns once the subscriber is gone
    /// assert!(sender.is_closed());
    /// # }
    /// ```
    pub async fn closed(&self) {
        self.sender.closed().await;
    }

    /// Whether the subscription was dropped.
    ///
    /// ```
    /// use keygate::Changes;
    ///
    /// let (sender, changes) = Changes::channel(1);
    /// assert!(!sender.is_closed());
    /// drop(changes);
    /// assert!(sender.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Spawns `feed` (a store's listener or poller, given the sender of a new
/// subscription) on the current tokio runtime; the subscription. Without a
/// runtime, warns and returns an ended subscription.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn spawn<F, Fut>(feed: F) -> Changes
where
    F: FnOnce(ChangeSender) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    /// Changes buffered between the store's listener and the subscriber.
    const BUFFER: usize = 1024;
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let (sender, changes) = Changes::channel(BUFFER);
            runtime.spawn(feed(sender));
            changes
        }
        Err(_) => {
            tracing::warn!(
                "no tokio runtime: changes made by other processes reach the cache only \
                 when its entries expire"
            );
            Changes::ended()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_subscription_closes_the_sender() {
        let (sender, changes) = Changes::channel(4);
        assert!(!sender.is_closed());
        drop(changes);
        tokio::time::timeout(std::time::Duration::from_secs(1), sender.closed())
            .await
            .unwrap();
        assert!(sender.is_closed());
        assert!(!sender.send(Change::Resync).await, "nobody listens");
    }

    #[tokio::test]
    async fn an_ended_subscription_answers_none() {
        assert_eq!(Changes::ended().next().await, None);
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn spawn_without_a_runtime_ends_at_once() {
        let mut changes = spawn(|sender| async move {
            sender.send(Change::Resync).await;
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(changes.next()), None);
    }
}
