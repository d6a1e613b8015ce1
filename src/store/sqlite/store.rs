//! The [`SqliteStore`] itself: queries, transactions, migrations.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, SqlitePool};
use time::OffsetDateTime;

use super::poller::{self, record_change};
use crate::key::StoredKey;
use crate::store::sql::{Row, store_error};
use crate::store::{
    ChangeFeed, Changes, Cursor, InsertRules, KeyStore, ListQuery, Page, StoreError, StoreMeta,
    Usage,
};
use crate::token::KeyId;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Keys in an SQLite database, through sqlx.
///
/// [`SqliteStore::open`] creates the database file if it is missing
/// ([`SqliteStore::open_existing`] refuses to), applies
/// the embedded migrations and turns on WAL journaling. Name uniqueness and
/// the per-owner limit are checked inside `BEGIN IMMEDIATE` transactions,
/// which SQLite runs one at a time.
///
/// Several processes may share one file (`keygate serve` instances, the
/// `keygate` CLI): every insert, update, rotation (both ids) and delete
/// adds a row naming the key to the `keygate_changes` table in its own
/// transaction, and the store is a [`ChangeFeed`] — each subscription
/// polls that table every 200 ms from a dedicated connection (one
/// `PRAGMA data_version` per poll while nothing changes) and yields
/// [`Change::Key`](crate::store::Change::Key) for every row after the last
/// one it saw. A [`Keygate`](crate::Keygate) built over the store
/// subscribes, so a key revoked by another process is refused here within
/// about 200 ms instead of when its cache entry expires. Rows are pruned
/// after 5 minutes; a subscription that missed rows (it fell behind the
/// pruning, or the table went backwards), cannot read one, or loses its
/// connection yields [`Change::Resync`](crate::store::Change::Resync) and
/// the keygate distrusts its whole cache. Usage tracking (`last_used_at`)
/// adds no rows. An in-memory database has no feed: no other process can
/// open it.
///
/// # Example
///
/// ```
/// use keygate::{Change, ChangeFeed};
/// use keygate::{Keygate, NewKey, Pepper, SqliteStore};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
/// let here = Keygate::builder(SqliteStore::open(&url).await?)
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
///
/// // Another process on the same file, hearing about changes made here.
/// let mut changes = SqliteStore::open(&url).await?.subscribe();
/// assert_eq!(changes.next().await, Some(Change::Resync), "in place");
/// let created = here.keys().create(NewKey::new("alice", "ci")).await?;
/// assert_eq!(changes.next().await, Some(Change::Key(created.key.id)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Whether the database is a file other processes can open.
    shared: bool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g.
    /// `sqlite://keygate.db` or `sqlite::memory:`, and migrates it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the file cannot be opened or created,
    /// [`StoreError::Backend`] for a bad URL or a failed migration.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(url, true).await
    }

    /// Opens the existing database at `url` and migrates it; unlike
    /// [`open`](SqliteStore::open), never creates the file.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the file does not exist or cannot
    /// be opened, [`StoreError::Backend`] for a bad URL or a failed migration.
    pub async fn open_existing(url: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(url, false).await
    }

    async fn open_with(url: &str, create: bool) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(Box::new(e)))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            // Every connection to `:memory:` is a separate database: keep one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
        }
        .map_err(store_error)?;
        SqliteStore::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when a migration fails.
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteStore, StoreError> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        // An empty file name is an in-memory (or temporary) database.
        let file: Option<String> =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_optional(&pool)
                .await
                .map_err(store_error)?;
        let shared = file.is_some_and(|file| !file.is_empty());
        Ok(SqliteStore { pool, shared })
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn immediate(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)
    }
}

fn decode(row: &SqliteRow) -> Result<StoredKey, StoreError> {
    let raw: Row = sqlx::FromRow::from_row(row).map_err(store_error)?;
    raw.into_stored()
}

/// Checks name uniqueness (and the limit, when given) for `key` among the
/// owner's current keys other than `ignore`, inside the caller's transaction.
async fn check_current(
    conn: &mut sqlx::SqliteConnection,
    key: &StoredKey,
    ignore: &str,
    max_keys_per_owner: u32,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if !key.key.is_current(now) {
        return Ok(());
    }
    let row = sqlx::query(
        "SELECT COALESCE(SUM(name = ?2), 0) AS same_name, COUNT(*) AS current \
         FROM keygate_keys \
         WHERE owner = ?1 AND id <> ?3 AND revoked_at IS NULL AND superseded_by IS NULL \
           AND (expires_at IS NULL OR expires_at > ?4)",
    )
    .bind(&key.key.owner)
    .bind(&key.key.name)
    .bind(ignore)
    .bind(now.unix_timestamp())
    .fetch_one(&mut *conn)
    .await
    .map_err(store_error)?;
    let same_name: i64 = row.try_get("same_name").map_err(store_error)?;
    let current: i64 = row.try_get("current").map_err(store_error)?;
    if same_name > 0 {
        return Err(StoreError::NameConflict);
    }
    if max_keys_per_owner > 0 && current >= i64::from(max_keys_per_owner) {
        return Err(StoreError::KeyLimitReached);
    }
    Ok(())
}

async fn insert_row(conn: &mut sqlx::SqliteConnection, key: &StoredKey) -> Result<(), StoreError> {
    let r = Row::from_stored(key);
    let query = sqlx::query(
        "INSERT INTO keygate_keys (id, mac, display_prefix, name, description, owner, \
         organization, environment, scopes, ip_allow, ip_deny, metadata, created_at, updated_at, \
         expires_at, last_used_at, last_used_ip, revoked_at, revoked_reason, superseded_by, revision) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    r.bind_insert(query)
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    record_change(conn, key.key.id.as_str())
        .await
        .map_err(store_error)
}

/// Compare-and-set update of the mutable columns; `Stale`/`NotFound` when
/// the revision moved on or the row is gone.
async fn update_row(conn: &mut sqlx::SqliteConnection, key: &StoredKey) -> Result<(), StoreError> {
    let done = Row::from_stored(key)
        .bind_update(sqlx::query(
            "UPDATE keygate_keys SET name = ?, description = ?, organization = ?, scopes = ?, \
         ip_allow = ?, ip_deny = ?, metadata = ?, updated_at = ?, expires_at = ?, \
         revoked_at = ?, revoked_reason = ?, superseded_by = ?, revision = revision + 1 \
         WHERE id = ? AND revision = ?",
        ))
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    if done.rows_affected() == 1 {
        return record_change(conn, key.key.id.as_str())
            .await
            .map_err(store_error);
    }
    let exists = sqlx::query("SELECT 1 FROM keygate_keys WHERE id = ?")
        .bind(key.key.id.as_str())
        .fetch_optional(conn)
        .await
        .map_err(store_error)?;
    Err(if exists.is_some() {
        StoreError::Stale
    } else {
        StoreError::NotFound
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        let mut tx = self.immediate().await?;
        check_current(&mut tx, key, "", rules.max_keys_per_owner, rules.now).await?;
        insert_row(&mut tx, key).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query("SELECT * FROM keygate_keys WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(decode).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let size = query.page_size();
        let rows = sqlx::query(
            "SELECT * FROM keygate_keys \
             WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR organization = ?2) \
               AND (?3 OR revoked_at IS NULL) \
               AND (?4 IS NULL OR created_at > ?4 OR (created_at = ?4 AND id > ?5)) \
             ORDER BY created_at, id LIMIT ?6",
        )
        .bind(query.owner.as_deref())
        .bind(query.organization.as_deref())
        .bind(query.include_revoked)
        .bind(query.cursor.map(|c| c.created_at))
        .bind(query.cursor.map(|c| c.id.to_string()))
        .bind(i64::from(size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut keys = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if keys.len() > size as usize {
            keys.truncate(size as usize);
            keys.last().map(|k| Cursor::after(&k.key))
        } else {
            None
        };
        Ok(Page { keys, next_cursor })
    }

    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut tx = self.immediate().await?;
        check_current(&mut tx, key, key.key.id.as_str(), 0, now).await?;
        update_row(&mut tx, key).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.immediate().await?;
        let superseded: Option<Option<String>> =
            sqlx::query_scalar("SELECT superseded_by FROM keygate_keys WHERE id = ?")
                .bind(old.key.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
        match superseded {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::Stale),
            Some(None) => {}
        }
        update_row(&mut tx, old).await?;
        check_current(&mut tx, new, old.key.id.as_str(), 0, now).await?;
        insert_row(&mut tx, new).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let mut tx = self.immediate().await?;
        let done = sqlx::query("DELETE FROM keygate_keys WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let existed = done.rows_affected() > 0;
        if existed {
            record_change(&mut tx, id.as_str())
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(existed)
    }

    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM keygate_keys WHERE owner = ? AND revoked_at IS NULL \
             AND superseded_by IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(owner)
        .bind(now.unix_timestamp())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        for usage in batch {
            sqlx::query(
                "UPDATE keygate_keys SET last_used_at = ?1, last_used_ip = ?2 \
                 WHERE id = ?3 AND (last_used_at IS NULL OR last_used_at <= ?1)",
            )
            .bind(usage.at.unix_timestamp())
            .bind(usage.ip.map(|ip| ip.to_string()))
            .bind(usage.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        self.shared.then_some(self as &dyn ChangeFeed)
    }
}

/// Polls `keygate_changes`, as described on [`SqliteStore`]. An in-memory
/// database, or no tokio runtime: the subscription has already ended.
impl ChangeFeed for SqliteStore {
    fn subscribe(&self) -> Changes {
        if !self.shared {
            return Changes::ended();
        }
        poller::subscribe((*self.pool.connect_options()).clone())
    }
}

#[async_trait]
impl StoreMeta for SqliteStore {
    async fn meta_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut tx = self.immediate().await?;
        sqlx::query(
            "INSERT INTO keygate_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM keygate_meta WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(stored)
    }

    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM keygate_meta WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)
    }
}
