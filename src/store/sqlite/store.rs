//! The [`SqliteStore`] itself: queries, transactions, migrations.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use super::poller::{self, record_change};
use crate::audit::{AuditPage, AuditQuery, AuditRecord};
use crate::credits::{CreditChange, Reservation};
use crate::key::StoredKey;
use crate::store::audit_row::AuditRow;
use crate::store::sql::{Dialect, Row, page, store_error};
use crate::store::{
    AuditLog, ChangeFeed, Changes, CreditStore, InsertRules, KeyStore, ListQuery, Page, StoreError,
    StoreMeta, Usage,
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
/// `keygate` CLI): every insert, update, rotation (both ids), delete and
/// change of a key's credits adds a row naming the key to the
/// `keygate_changes` table in its own transaction, and the store is a [`ChangeFeed`] — each subscription
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
    ///
    /// ```
    /// use keygate::{KeyStore as _, SqliteStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    /// let store = SqliteStore::open(&url).await?; // created, with its schema
    /// store.ping().await?;
    /// assert!(dir.path().join("keygate.db").exists());
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// ```
    /// use keygate::SqliteStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    /// assert!(SqliteStore::open_existing(&url).await.is_err()); // nothing created
    /// assert!(!dir.path().join("keygate.db").exists());
    /// SqliteStore::open(&url).await?;
    /// assert!(SqliteStore::open_existing(&url).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// ```
    /// use keygate::{KeyStore as _, SqliteStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let store = SqliteStore::from_pool(pool).await?; // migrated
    /// store.ping().await?;
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// ```
    /// use keygate::SqliteStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::open("sqlite::memory:").await?;
    /// let (tables,): (i64,) = sqlx::query_as("SELECT count(*) FROM sqlite_master WHERE name = 'keygate_keys'")
    ///     .fetch_one(store.pool())
    ///     .await?;
    /// assert_eq!(tables, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl Dialect for SqliteStore {
    type Db = Sqlite;

    const GET: &'static str = "SELECT * FROM keygate_keys WHERE id = ?";
    const CHECK_CURRENT: &'static str = "SELECT COALESCE(SUM(name = ?2), 0) AS same_name, COUNT(*) AS current \
         FROM keygate_keys \
         WHERE owner = ?1 AND id <> ?3 AND revoked_at IS NULL AND superseded_by IS NULL \
           AND (expires_at IS NULL OR expires_at > ?4)";
    const NAME_TAKEN: &'static str = "SELECT CAST(1 AS BIGINT), CAST(0 AS BIGINT) FROM keygate_keys \
         WHERE owner = ?1 AND name = ?2 AND id <> ?3 AND revoked_at IS NULL AND superseded_by IS NULL \
           AND (expires_at IS NULL OR expires_at > ?4) LIMIT 1";
    const INSERT: &'static str = "INSERT INTO keygate_keys (id, mac, display_prefix, name, \
         description, owner, organization, environment, scopes, ip_allow, ip_deny, metadata, \
         created_at, updated_at, expires_at, last_used_at, last_used_ip, revoked_at, \
         revoked_reason, superseded_by, revision, rate_limits, credits_remaining, \
         credits_refill_amount, credits_refill_every, credits_refilled_at, credits_generation) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    const UPDATE: &'static str = "UPDATE keygate_keys SET name = ?, description = ?, organization = ?, scopes = ?, \
         ip_allow = ?, ip_deny = ?, metadata = ?, updated_at = ?, expires_at = ?, \
         revoked_at = ?, revoked_reason = ?, superseded_by = ?, rate_limits = ?, \
         revision = revision + 1 \
         WHERE id = ? AND revision = ?";
    const EXISTS: &'static str = "SELECT 1 FROM keygate_keys WHERE id = ?";
    // No row locks in SQLite: the `BEGIN IMMEDIATE` transaction is the only writer.
    const SUPERSEDED_BY: &'static str = "SELECT superseded_by FROM keygate_keys WHERE id = ?";
    // The `BEGIN IMMEDIATE` transaction is the lock here too.
    const CREDITS: &'static str = "SELECT superseded_by, credits_remaining, credits_refill_amount, \
         credits_refill_every, credits_refilled_at, credits_generation \
         FROM keygate_keys WHERE id = ?";
    const SET_CREDITS: &'static str = "UPDATE keygate_keys SET credits_remaining = ?, \
         credits_refill_amount = ?, credits_refill_every = ?, credits_refilled_at = ?, \
         credits_generation = ? WHERE id = ?";
    const TOUCH: &'static str =
        "UPDATE keygate_keys SET revision = revision + 1, updated_at = ? WHERE id = ?";
    const COUNT_CURRENT: &'static str = "SELECT COUNT(*) FROM keygate_keys WHERE owner = ? AND revoked_at IS NULL \
         AND superseded_by IS NULL AND (expires_at IS NULL OR expires_at > ?)";
    const META_GET: &'static str = "SELECT value FROM keygate_meta WHERE name = ?";
    const AUDIT_INSERT: &'static str = "INSERT INTO keygate_audit (id, at, actor, action, \
         target_key_id, target_owner, changes, client_ip, request_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    const DELETE: &'static str = "DELETE FROM keygate_keys WHERE id = ?";
    const AUDIT_PRUNE: &'static str = "DELETE FROM keygate_audit WHERE at < ?";

    fn error(e: sqlx::Error) -> StoreError {
        store_error(e)
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn connections(&self) -> &SqlitePool {
        &self.pool
    }

    /// `BEGIN IMMEDIATE`: SQLite runs such transactions one at a time, so
    /// holding one serializes the writers of every owner.
    async fn begin_write(
        &self,
        _owners: &[&str],
    ) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)
    }

    /// A row in `keygate_changes`, which the pollers read.
    async fn changed(conn: &mut SqliteConnection, id: &str) -> Result<(), StoreError> {
        record_change(conn, id).await.map_err(store_error)
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        Dialect::insert(self, key, rules, None).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Dialect::get(self, id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let size = query.page_size();
        let rows = sqlx::query_as::<_, Row>(
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
        page(rows, size)
    }

    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        Dialect::replace(self, key, now, None).await
    }

    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Dialect::rotate(self, old, new, now, None).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        Dialect::delete(self, id, None).await
    }

    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        Dialect::count_current(self, owner, now).await
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
        Dialect::ping(self).await
    }

    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        self.shared.then_some(self as &dyn ChangeFeed)
    }

    fn credits(&self) -> Option<&dyn CreditStore> {
        Some(self)
    }

    fn audit_log(&self) -> Option<&dyn AuditLog> {
        Some(self)
    }
}

/// Each change and its record in one `BEGIN IMMEDIATE` transaction, in
/// table `keygate_audit`.
#[async_trait]
impl AuditLog for SqliteStore {
    async fn insert_audited(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        Dialect::insert(self, key, rules, Some(record)).await
    }

    async fn replace_audited(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        Dialect::replace(self, key, now, Some(record)).await
    }

    async fn rotate_audited(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        Dialect::rotate(self, old, new, now, Some(record)).await
    }

    async fn delete_audited(&self, id: &KeyId, record: &AuditRecord) -> Result<bool, StoreError> {
        Dialect::delete(self, id, Some(record)).await
    }

    async fn adjust_audited(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<StoredKey, StoreError> {
        Dialect::adjust(self, id, change, now, Some(record)).await
    }

    async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let size = query.page_size();
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM keygate_audit \
             WHERE (?1 IS NULL OR target_owner = ?1) AND (?2 IS NULL OR target_key_id = ?2) \
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR at >= ?4) \
               AND (?5 IS NULL OR at < ?5) \
               AND (?6 IS NULL OR at < ?6 OR (at = ?6 AND id < ?7)) \
             ORDER BY at DESC, id DESC LIMIT ?8",
        )
        .bind(query.owner.as_deref())
        .bind(query.key_id.map(|id| id.to_string()))
        .bind(query.action.map(|a| a.as_str()))
        .bind(query.since.map(OffsetDateTime::unix_timestamp))
        .bind(query.until.map(OffsetDateTime::unix_timestamp))
        .bind(query.cursor.as_ref().map(|c| c.at))
        .bind(query.cursor.as_ref().map(|c| c.id.clone()))
        .bind(i64::from(size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let records = rows
            .into_iter()
            .map(AuditRow::into_record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuditPage::from_rows(records, size))
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        Dialect::prune_audit(self, before).await
    }
}

/// Credits reserved, returned and adjusted in `BEGIN IMMEDIATE`
/// transactions (one writer at a time, across processes), each change of
/// a balance announced in `keygate_changes`.
#[async_trait]
impl CreditStore for SqliteStore {
    async fn reserve(
        &self,
        id: &KeyId,
        need: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> Result<Reservation, StoreError> {
        Dialect::reserve(self, id, need, want, now).await
    }

    async fn release(
        &self,
        id: &KeyId,
        amount: u64,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Dialect::release(self, id, amount, generation, now).await
    }

    async fn adjust(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
    ) -> Result<StoredKey, StoreError> {
        Dialect::adjust(self, id, change, now, None).await
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
        let mut tx = self.begin_write(&[]).await?;
        sqlx::query(
            "INSERT INTO keygate_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let stored: Vec<u8> = sqlx::query_scalar(SqliteStore::META_GET)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(stored)
    }

    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Dialect::meta_get(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name uniqueness is checked on every insert: through the `(owner,
    /// name)` index, so one owner's thousands of keys are not all read.
    #[tokio::test]
    async fn the_name_check_uses_the_owner_and_name_index() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            SqliteStore::NAME_TAKEN
        )))
        .bind("alice")
        .bind("ci")
        .bind("0123456789abcdef")
        .bind(0i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
        let detail: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            detail
                .iter()
                .any(|d| d.contains("USING INDEX keygate_keys_owner_name")),
            "{detail:?}"
        );
    }
}
