//! The PostgreSQL [`ChangeFeed`](crate::store::ChangeFeed): a dedicated
//! connection that `LISTEN`s on [`CHANNEL`], checks itself with a heartbeat
//! when quiet, and reconnects with backoff — sending [`Change::Resync`]
//! whenever notifications may have been missed.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::store::feed::{self, Change, ChangeSender, Changes};
use crate::token::KeyId;

/// The channel every mutation notifies, with the key id as payload.
pub(super) const CHANNEL: &str = "keygate_keys";
/// The `application_name` of listener connections.
pub(super) const APPLICATION_NAME: &str = "keygate-listener";

/// How long the listener waits for a notification before checking that its
/// connection is still alive, unless configured.
pub(super) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// The shortest heartbeat interval accepted.
pub(super) const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest time the heartbeat query may take before the connection is
/// considered lost (shorter when the interval is).
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening the listener connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait before reconnecting after a failed attempt.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Longest wait between two reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A listener connection that dies sooner than this after subscribing
/// counts as a failed attempt (so a flapping server is not hammered).
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// A new subscription: a task listening on [`CHANNEL`] through a connection
/// made with `options` until the subscription is dropped.
pub(super) fn subscribe(options: PgConnectOptions, heartbeat: Duration) -> Changes {
    let options = options.application_name(APPLICATION_NAME);
    feed::spawn(move |sender| listen(options, heartbeat, sender))
}

/// Why [`pump`] returned.
enum Pumped {
    /// The subscription was dropped: stop listening.
    Done,
    /// The connection was lost (or stopped answering).
    Lost(String),
}

/// Listens on [`CHANNEL`] for as long as the subscription behind `sender`
/// lives, forwarding each key id, and sending [`Change::Resync`] whenever
/// notifications may have been missed.
async fn listen(options: PgConnectOptions, heartbeat: Duration, sender: ChangeSender) {
    let mut backoff = RECONNECT_INITIAL;
    let mut reconnecting = false;
    loop {
        let connected = tokio::select! {
            () = sender.closed() => return,
            connected = connect(&options) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                // Still deaf: whatever was cached since the last attempt may
                // have been changed unheard. A resync at every attempt keeps
                // entries from outliving the backoff (at most 5 s) while the
                // listener is down.
                crate::telemetry::feed_connected(false);
                if !sender.send(Change::Resync).await {
                    return;
                }
                tracing::warn!(
                    error = %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for key changes; cache distrusted, retrying"
                );
                if !pause(&sender, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        // Changes committed before LISTEN took effect were not heard: the
        // first subscription races the subscriber's first loads, a later
        // one follows a gap.
        if !sender.send(Change::Resync).await {
            return;
        }
        crate::telemetry::feed_connected(true);
        if reconnecting {
            tracing::info!(
                channel = CHANNEL,
                "listening for key changes again; cache distrusted"
            );
        } else {
            tracing::debug!(channel = CHANNEL, "listening for key changes");
        }
        let subscribed = Instant::now();
        match pump(&mut listener, heartbeat, &sender).await {
            Pumped::Done => return,
            Pumped::Lost(error) => {
                crate::telemetry::feed_connected(false);
                // Resync first: anything revoked from now until the listener
                // is back must not be served from a cache.
                if !sender.send(Change::Resync).await {
                    return;
                }
                tracing::warn!(
                    error = %error,
                    "lost the key-change listener connection; cache distrusted, reconnecting"
                );
            }
        }
        drop(listener);
        reconnecting = true;
        if subscribed.elapsed() < HEALTHY_AFTER {
            if !pause(&sender, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(RECONNECT_MAX);
        } else {
            backoff = RECONNECT_INITIAL;
        }
    }
}

/// Sleeps for `wait`; `false` when the subscription was dropped meanwhile.
async fn pause(sender: &ChangeSender, wait: Duration) -> bool {
    tokio::select! {
        () = sender.closed() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// A new listener connection, subscribed to [`CHANNEL`].
async fn connect(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A pool of one, only for this subscription: the listener reconnects
    // through `listen`, never by itself, so a loss is always seen.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications until the connection is lost or the subscription
/// is dropped.
async fn pump(listener: &mut PgListener, heartbeat: Duration, sender: &ChangeSender) -> Pumped {
    loop {
        // `try_recv` is cancel safe: a message is consumed only once it has
        // been read whole.
        let received = tokio::select! {
            () = sender.closed() => return Pumped::Done,
            received = tokio::time::timeout(heartbeat, listener.try_recv()) => received,
        };
        match received {
            Ok(Ok(Some(notification))) => {
                let change = match KeyId::parse(notification.payload()) {
                    Ok(id) => Change::Key(id),
                    Err(_) => {
                        // Fail closed: something changed, and which key is
                        // not known. (The payload is not logged.)
                        tracing::warn!(
                            channel = CHANNEL,
                            "a notification's payload is not a key id; cache distrusted"
                        );
                        Change::Resync
                    }
                };
                if !sender.send(change).await {
                    return Pumped::Done;
                }
            }
            // `eager_reconnect(false)`: the connection is gone and has not
            // been replaced.
            Ok(Ok(None)) => return Pumped::Lost("connection closed".to_owned()),
            Ok(Err(error)) => return Pumped::Lost(error.to_string()),
            Err(_quiet) => {
                // A quiet connection may be half-open (a NAT or failover
                // dropped it silently): make sure it still answers.
                let ping = sqlx::query("SELECT 1").execute(&mut *listener);
                match tokio::time::timeout(heartbeat.min(HEARTBEAT_TIMEOUT), ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Pumped::Lost(error.to_string()),
                    Err(_) => return Pumped::Lost("heartbeat timed out".to_owned()),
                }
            }
        }
    }
}
