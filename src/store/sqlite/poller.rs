//! The SQLite [`ChangeFeed`](crate::store::ChangeFeed): every mutation adds
//! a row per key it touches to `keygate_changes`, in its own transaction
//! ([`record_change`]); a subscription polls that table from a dedicated
//! connection.
//!
//! Each poll costs one `PRAGMA data_version` (which moves only when another
//! connection committed something); only then is the table read, for the
//! rows after the last sequence number seen. Rows older than [`RETENTION`]
//! are pruned by the writers; a poller that finds a gap in the sequence
//! (what it had not read yet was pruned), a table that went backwards (the
//! file was restored), a row it cannot read, or an error, sends
//! [`Change::Resync`].

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, SqliteConnection as Conn};

use crate::store::feed::{self, Change, ChangeSender, Changes};
use crate::token::KeyId;

/// How often a subscription looks for new changes: a change made by
/// another process reaches the subscriber within about this long.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long writers keep a change row, in seconds: a subscriber that has
/// not polled for longer resyncs.
pub(super) const RETENTION: i64 = 300;
/// Most old rows one write looks at for pruning (it adds one or two).
const PRUNE_BATCH: i64 = 16;
/// Rows read per query.
const READ_BATCH: i64 = 512;
/// A subscriber further behind than this many changes resyncs instead of
/// reading them one by one.
const MAX_BACKLOG: i64 = 10_000;
/// Longest wait between two attempts when polling fails.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Adds key `id` to the change feed in the caller's transaction, and prunes
/// rows older than [`RETENTION`] (never the newest, so the latest sequence
/// number stays visible).
pub(super) async fn record_change(conn: &mut SqliteConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO keygate_changes (key_id, at) VALUES (?1, unixepoch())")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM keygate_changes \
         WHERE seq IN (SELECT seq FROM keygate_changes ORDER BY seq LIMIT ?1) \
           AND at < unixepoch() - ?2 \
           AND seq < (SELECT MAX(seq) FROM keygate_changes)",
    )
    .bind(PRUNE_BATCH)
    .bind(RETENTION)
    .execute(conn)
    .await?;
    Ok(())
}

/// A new subscription: a task polling the database `options` name every
/// [`POLL_INTERVAL`] until the subscription is dropped.
pub(super) fn subscribe(options: SqliteConnectOptions) -> Changes {
    // A file deleted under a running process is not created anew.
    let options = options.create_if_missing(false);
    feed::spawn(move |sender| poll(options, POLL_INTERVAL, sender))
}

/// Polls until the subscription behind `sender` is dropped.
async fn poll(options: SqliteConnectOptions, interval: Duration, sender: ChangeSender) {
    let mut reader: Option<Reader> = None;
    let mut failures: u32 = 0;
    loop {
        let step = match reader.as_mut() {
            Some(reader) => reader.changes().await,
            None => match Reader::open(&options).await {
                Ok(opened) => {
                    reader = Some(opened);
                    // Positioned at the latest change: whatever came before
                    // (or during a failure) was not heard.
                    Ok(vec![Change::Resync])
                }
                Err(error) => Err(error),
            },
        };
        match step {
            Ok(changes) => {
                crate::telemetry::feed_connected(true);
                if failures > 0 {
                    tracing::info!("reading key changes again; cache distrusted");
                    failures = 0;
                }
                for change in changes {
                    if !sender.send(change).await {
                        return;
                    }
                }
            }
            Err(error) => {
                crate::telemetry::feed_connected(false);
                reader = None;
                // Fail closed: changes may go unheard until the next
                // attempt succeeds.
                if !sender.send(Change::Resync).await {
                    return;
                }
                if failures == 0 {
                    tracing::warn!(%error, "cannot read key changes; cache distrusted, retrying");
                } else {
                    tracing::debug!(%error, failures, "still cannot read key changes");
                }
                failures = failures.saturating_add(1);
            }
        }
        let wait = if failures == 0 {
            interval
        } else {
            (interval * 2u32.saturating_pow(failures.min(8))).min(RETRY_MAX)
        };
        tokio::select! {
            () = sender.closed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A dedicated connection and how far it has read.
struct Reader {
    conn: Conn,
    /// `PRAGMA data_version` at the last read; `None` before the first.
    data_version: Option<i64>,
    /// The last sequence number handled.
    last: i64,
}

impl Reader {
    /// Connects and positions after the latest change.
    async fn open(options: &SqliteConnectOptions) -> sqlx::Result<Reader> {
        let mut conn = Conn::connect_with(options).await?;
        let last = latest(&mut conn).await?;
        Ok(Reader {
            conn,
            data_version: None,
            last,
        })
    }

    /// The changes committed since the last call.
    async fn changes(&mut self) -> sqlx::Result<Vec<Change>> {
        // Moves whenever another connection commits; read first, so that a
        // commit racing the reads below moves it again for the next call.
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut self.conn)
            .await?;
        if self.data_version == Some(version) {
            return Ok(Vec::new());
        }
        self.data_version = Some(version);
        let latest = latest(&mut self.conn).await?;
        if latest < self.last {
            // Emptied, or an older copy of the file restored.
            tracing::warn!("the key change table went backwards; cache distrusted");
            return Ok(self.resync(latest));
        }
        if latest - self.last > MAX_BACKLOG {
            return Ok(self.resync(latest));
        }
        let mut changes = Vec::new();
        while self.last < latest {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT seq, key_id FROM keygate_changes WHERE seq > ?1 AND seq <= ?2 \
                 ORDER BY seq LIMIT ?3",
            )
            .bind(self.last)
            .bind(latest)
            .bind(READ_BATCH)
            .fetch_all(&mut self.conn)
            .await?;
            if rows.is_empty() {
                return Ok(self.resync(latest));
            }
            for (seq, key_id) in rows {
                if seq != self.last + 1 {
                    // Pruned before this reader got to it.
                    tracing::debug!("missed key changes (pruned); cache distrusted");
                    return Ok(self.resync(latest));
                }
                self.last = seq;
                match KeyId::parse(&key_id) {
                    Ok(id) => changes.push(Change::Key(id)),
                    Err(_) => {
                        tracing::warn!("a key change names no valid key id; cache distrusted");
                        changes.push(Change::Resync);
                    }
                }
            }
        }
        Ok(changes)
    }

    /// Skips to `latest`, distrusting everything instead.
    fn resync(&mut self, latest: i64) -> Vec<Change> {
        self.last = latest;
        vec![Change::Resync]
    }
}

/// The latest sequence number, 0 for an empty table.
async fn latest(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM keygate_changes")
        .fetch_one(conn)
        .await
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    async fn next(changes: &mut Changes) -> Option<Change> {
        tokio::time::timeout(Duration::from_secs(2), changes.next())
            .await
            .expect("a change in time")
    }

    #[tokio::test]
    async fn the_poller_stops_when_the_subscription_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let mut setup = Conn::connect_with(&options).await.unwrap();
        sqlx::raw_sql(include_str!(
            "../../../migrations/sqlite/20261202000002_create_changes.sql"
        ))
        .execute(&mut setup)
        .await
        .unwrap();
        let (sender, mut changes) = Changes::channel(8);
        let poller = tokio::spawn(poll(options, POLL_INTERVAL, sender));
        assert_eq!(next(&mut changes).await, Some(Change::Resync));
        drop(changes);
        tokio::time::timeout(Duration::from_secs(1), poller)
            .await
            .expect("the poller stopped")
            .unwrap();
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_read_is_a_resync_at_every_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(false);
        let (sender, mut changes) = Changes::channel(8);
        let poller = tokio::spawn(poll(options, Duration::from_millis(20), sender));
        for _ in 0..3 {
            assert_eq!(next(&mut changes).await, Some(Change::Resync));
        }
        assert!(!path.exists(), "the poller created no file");
        drop(changes);
        tokio::time::timeout(Duration::from_secs(2), poller)
            .await
            .expect("the poller stopped")
            .unwrap();
    }
}
