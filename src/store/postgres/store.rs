//! The [`PostgresStore`] itself: queries, transactions, migrations.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::listener;
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Every column of `keygate_keys`, the JSON ones as text (the shape of [`Row`]).
macro_rules! columns {
    () => {
        "id, mac, display_prefix, name, description, owner, organization, environment, \
         scopes::text AS scopes, ip_allow::text AS ip_allow, ip_deny::text AS ip_deny, \
         metadata::text AS metadata, created_at, updated_at, expires_at, last_used_at, \
         last_used_ip, revoked_at, revoked_reason, superseded_by, revision, \
         rate_limits::text AS rate_limits, credits_remaining, credits_refill_amount, \
         credits_refill_every, credits_refilled_at, credits_generation"
    };
}

/// Most connections [`PostgresStore::connect`] opens.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// How long a query waits for a connection (including opening one) before
/// the store reports [`StoreError::Unavailable`].
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
use listener::{DEFAULT_HEARTBEAT, MIN_HEARTBEAT};

/// Keys in a PostgreSQL database, through sqlx; changes made by any
/// instance reach the caches of every other instance through
/// `LISTEN`/`NOTIFY` on the channel `keygate_keys` (see below).
///
/// [`PostgresStore::connect`] applies the embedded migrations (table
/// `keygate_keys`). Name uniqueness and the per-owner limit are checked
/// inside the writing transaction while it holds a transaction-scoped
/// advisory lock on the owner (`pg_advisory_xact_lock`), so concurrent
/// writers for one owner — in one process or many — take turns; updates
/// are compare-and-set on the record's revision.
///
/// Every insert, update, rotation (both ids), delete and change of a
/// key's credits sends
/// `NOTIFY keygate_keys, '<key id>'` in its transaction, so the
/// notification goes out exactly when the change commits. The store is a
/// [`ChangeFeed`]: each subscription listens on that channel from a
/// dedicated connection (`application_name`
/// [`PostgresStore::LISTENER_APPLICATION_NAME`]) and yields
/// [`Change::Key`](crate::store::Change::Key) for every id it hears about.
/// Each [`Keygate`](crate::Keygate) built over this store subscribes and
/// drops the cache entries of those ids. When the connection is lost —
/// closed, or silent past the [heartbeat](PostgresStore::listener_heartbeat)
/// — the subscription yields [`Change::Resync`](crate::store::Change::Resync)
/// at once (notifications may be missed while it is down) and the keygate
/// distrusts its whole cache; the listener reconnects with exponential
/// backoff (100 ms doubling to 5 s) yielding `Resync` again at every failed
/// attempt, and once more when it listens again. A notification whose
/// payload is not a key id is a `Resync` too. While the database is
/// entirely unreachable, every request therefore answers 503: keygate
/// fails closed rather than serve keys it can no longer hear about. The
/// cache TTL (30 s by default) stays the backstop for everything else.
/// Dropping the subscription (the keygate) closes its connection.
///
/// Usage tracking (`last_used_at`) does not notify.
///
/// # Example
///
/// ```no_run
/// use keygate::{Keygate, NewKey, Pepper, PostgresStore};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://keygate@db.internal/keygate").await?;
/// let keygate = Keygate::builder(store).pepper(Pepper::from_env()?).build()?;
///
/// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// let key = keygate.verify(created.token.expose()).await?;
/// assert_eq!(key.owner(), "alice");
///
/// // Revoked here, refused by every instance sharing the database.
/// keygate.keys().revoke(&key.id(), Some("leaked")).await?;
/// assert!(keygate.verify(created.token.expose()).await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    heartbeat: Duration,
}

impl PostgresStore {
    /// The channel every mutation notifies, with the key id as payload.
    /// Send `NOTIFY keygate_keys, '<id>'` yourself when you change
    /// `keygate_keys` outside keygate.
    pub const CHANNEL: &'static str = listener::CHANNEL;

    /// The `application_name` of the listener connections, to find them in
    /// `pg_stat_activity`.
    pub const LISTENER_APPLICATION_NAME: &'static str = listener::APPLICATION_NAME;

    /// The pool settings [`connect`](PostgresStore::connect) uses: at most
    /// 10 connections, and a 5 s acquire timeout (covering the time to open
    /// a connection), so that when the database cannot be reached a request
    /// whose key is not cached fails with 503 within seconds instead of
    /// hanging. Adjust and pass to [`connect_with`](PostgresStore::connect_with).
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
    }

    /// Connects to the database at `url` (`postgres://user:password@host/db`)
    /// with [`pool_options`](PostgresStore::pool_options) and applies the
    /// migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached,
    /// [`StoreError::Backend`] for a bad URL, refused credentials or a
    /// failed migration.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(PostgresStore::pool_options(), url).await
    }

    /// Connects with the given pool settings and applies the migrations.
    ///
    /// # Errors
    ///
    /// As [`connect`](PostgresStore::connect).
    pub async fn connect_with(
        options: PgPoolOptions,
        url: &str,
    ) -> Result<PostgresStore, StoreError> {
        let connect: PgConnectOptions =
            url.parse().map_err(|e| StoreError::Backend(Box::new(e)))?;
        let pool = options.connect_with(connect).await.map_err(pg_error)?;
        PostgresStore::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations. Give the pool a
    /// short acquire timeout (see [`pool_options`](PostgresStore::pool_options)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached,
    /// [`StoreError::Backend`] when a migration fails.
    pub async fn from_pool(pool: PgPool) -> Result<PostgresStore, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => pg_error(e),
            other => StoreError::Backend(Box::new(other)),
        })?;
        Ok(PostgresStore {
            pool,
            heartbeat: DEFAULT_HEARTBEAT,
        })
    }

    /// How long a listener connection may stay quiet before it is checked
    /// with a query (which must answer within this interval, at most 5 s).
    /// A connection dropped silently along the way (a NAT or firewall
    /// timeout, a failover) is thus noticed — and the cache cleared —
    /// within about two intervals. Default: 15 s, well inside the 30 s
    /// cache TTL; values below 100 ms are raised to 100 ms. Set it before
    /// [subscribing](ChangeFeed::subscribe), i.e. before building a
    /// [`Keygate`](crate::Keygate) over the store.
    #[must_use]
    pub fn listener_heartbeat(mut self, interval: Duration) -> PostgresStore {
        self.heartbeat = interval.max(MIN_HEARTBEAT);
        self
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Maps a sqlx error: besides the connection-level failures of
/// [`store_error`], server errors saying the connection is gone or cannot
/// be made (SQLSTATE class 08, `57P01`–`57P03` shutdowns, `53300` too many
/// connections, `55000` a database not accepting connections) are
/// [`StoreError::Unavailable`].
fn pg_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default();
        if code.starts_with("08")
            || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "55000")
        {
            return StoreError::Unavailable(Box::new(e));
        }
    }
    store_error(e)
}

impl Dialect for PostgresStore {
    type Db = Postgres;

    const GET: &'static str = concat!("SELECT ", columns!(), " FROM keygate_keys WHERE id = $1");
    const CHECK_CURRENT: &'static str = "SELECT COUNT(*) FILTER (WHERE name = $2) AS same_name, COUNT(*) AS current \
         FROM keygate_keys \
         WHERE owner = $1 AND id <> $3 AND revoked_at IS NULL AND superseded_by IS NULL \
           AND (expires_at IS NULL OR expires_at > $4)";
    const NAME_TAKEN: &'static str = "SELECT CAST(1 AS BIGINT), CAST(0 AS BIGINT) FROM keygate_keys \
         WHERE owner = $1 AND name = $2 AND id <> $3 AND revoked_at IS NULL AND superseded_by IS NULL \
           AND (expires_at IS NULL OR expires_at > $4) LIMIT 1";
    const INSERT: &'static str = "INSERT INTO keygate_keys (id, mac, display_prefix, name, \
         description, owner, organization, environment, scopes, ip_allow, ip_deny, metadata, \
         created_at, updated_at, expires_at, last_used_at, last_used_ip, revoked_at, \
         revoked_reason, superseded_by, revision, rate_limits, credits_remaining, \
         credits_refill_amount, credits_refill_every, credits_refilled_at, credits_generation) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11::jsonb, $12::jsonb, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22::jsonb, $23, $24, $25, $26, $27)";
    const UPDATE: &'static str = "UPDATE keygate_keys SET name = $1, description = $2, organization = $3, \
         scopes = $4::jsonb, ip_allow = $5::jsonb, ip_deny = $6::jsonb, metadata = $7::jsonb, \
         updated_at = $8, expires_at = $9, revoked_at = $10, revoked_reason = $11, \
         superseded_by = $12, rate_limits = $13::jsonb, revision = revision + 1 \
         WHERE id = $14 AND revision = $15";
    const EXISTS: &'static str = "SELECT 1 FROM keygate_keys WHERE id = $1";
    const SUPERSEDED_BY: &'static str =
        "SELECT superseded_by FROM keygate_keys WHERE id = $1 FOR UPDATE";
    const CREDITS: &'static str = "SELECT superseded_by, credits_remaining, credits_refill_amount, \
         credits_refill_every, credits_refilled_at, credits_generation \
         FROM keygate_keys WHERE id = $1 FOR UPDATE";
    const SET_CREDITS: &'static str = "UPDATE keygate_keys SET credits_remaining = $1, \
         credits_refill_amount = $2, credits_refill_every = $3, credits_refilled_at = $4, \
         credits_generation = $5 WHERE id = $6";
    const TOUCH: &'static str =
        "UPDATE keygate_keys SET revision = revision + 1, updated_at = $1 WHERE id = $2";
    const COUNT_CURRENT: &'static str = "SELECT COUNT(*) FROM keygate_keys WHERE owner = $1 AND revoked_at IS NULL \
         AND superseded_by IS NULL AND (expires_at IS NULL OR expires_at > $2)";
    const META_GET: &'static str = "SELECT value FROM keygate_meta WHERE name = $1";
    const AUDIT_INSERT: &'static str = "INSERT INTO keygate_audit (id, at, actor, action, \
         target_key_id, target_owner, changes, client_ip, request_id) \
         VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7::jsonb, $8, $9)";
    const DELETE: &'static str = "DELETE FROM keygate_keys WHERE id = $1";
    const AUDIT_PRUNE: &'static str = "DELETE FROM keygate_audit WHERE at < $1";

    fn error(e: sqlx::Error) -> StoreError {
        pg_error(e)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn connections(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction holding the advisory lock of every owner in `owners`
    /// until it ends, taken in sorted order so two writers never deadlock:
    /// every check-then-write for an owner runs while holding its lock.
    async fn begin_write(
        &self,
        owners: &[&str],
    ) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        let mut owners = owners.to_vec();
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('keygate:' || $1))")
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
        }
        Ok(tx)
    }

    /// `NOTIFY` on [`PostgresStore::CHANNEL`], sent to every listening
    /// instance when the transaction commits.
    async fn changed(conn: &mut PgConnection, id: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PostgresStore::CHANNEL)
            .bind(id)
            .execute(conn)
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        Dialect::insert(self, key, rules, None).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Dialect::get(self, id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let size = query.page_size();
        // Only the filters in use appear in the SQL, so each shape can use
        // its index on (owner | organization, created_at, id).
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            columns!(),
            " FROM keygate_keys WHERE TRUE"
        ));
        if let Some(owner) = &query.owner {
            sql.push(" AND owner = ").push_bind(owner);
        }
        if let Some(organization) = &query.organization {
            sql.push(" AND organization = ").push_bind(organization);
        }
        if !query.include_revoked {
            sql.push(" AND revoked_at IS NULL");
        }
        if let Some(cursor) = query.cursor {
            sql.push(" AND (created_at, id) > (")
                .push_bind(cursor.created_at)
                .push(", ")
                .push_bind(cursor.id.to_string())
                .push(")");
        }
        sql.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(size) + 1);
        let rows = sql
            .build_query_as::<Row>()
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
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
        // One statement, so the notification is sent when the delete commits.
        let deleted = sqlx::query(
            "WITH gone AS (DELETE FROM keygate_keys WHERE id = $1 RETURNING id) \
             SELECT pg_notify($2, gone.id)::text AS notified FROM gone",
        )
        .bind(id.as_str())
        .bind(PostgresStore::CHANNEL)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok(deleted.is_some())
    }

    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        Dialect::count_current(self, owner, now).await
    }

    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // The latest use per key, in id order: rows are locked in that
        // order, so concurrent batches from several instances cannot deadlock.
        let mut latest: Vec<&Usage> = batch.iter().collect();
        latest.sort_by(|a, b| a.id.cmp(&b.id).then(b.at.cmp(&a.at)));
        latest.dedup_by_key(|u| u.id);
        let ids: Vec<String> = latest.iter().map(|u| u.id.to_string()).collect();
        let ats: Vec<i64> = latest.iter().map(|u| u.at.unix_timestamp()).collect();
        let ips: Vec<Option<String>> = latest
            .iter()
            .map(|u| u.ip.map(|ip| ip.to_string()))
            .collect();
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        sqlx::query("SELECT 1 FROM keygate_keys WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        sqlx::query(
            "UPDATE keygate_keys AS k SET last_used_at = u.at, last_used_ip = u.ip \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS u(id, at, ip) \
             WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at <= u.at)",
        )
        .bind(&ids)
        .bind(&ats)
        .bind(&ips)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Dialect::ping(self).await
    }

    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        Some(self)
    }

    fn credits(&self) -> Option<&dyn CreditStore> {
        Some(self)
    }

    fn audit_log(&self) -> Option<&dyn AuditLog> {
        Some(self)
    }
}

/// Each change and its record in one transaction, in table
/// `keygate_audit`.
#[async_trait]
impl AuditLog for PostgresStore {
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
        // Only the filters in use appear in the SQL, so each shape can use
        // its index on (target_owner | target_key_id, at, id).
        let mut sql = QueryBuilder::<Postgres>::new(
            "SELECT id, at, actor::text AS actor, action, target_key_id, target_owner, \
             changes::text AS changes, client_ip, request_id FROM keygate_audit WHERE TRUE",
        );
        if let Some(owner) = &query.owner {
            sql.push(" AND target_owner = ").push_bind(owner);
        }
        if let Some(id) = &query.key_id {
            sql.push(" AND target_key_id = ").push_bind(id.to_string());
        }
        if let Some(action) = query.action {
            sql.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(since) = query.since {
            sql.push(" AND at >= ").push_bind(since.unix_timestamp());
        }
        if let Some(until) = query.until {
            sql.push(" AND at < ").push_bind(until.unix_timestamp());
        }
        if let Some(cursor) = &query.cursor {
            sql.push(" AND (at, id) < (")
                .push_bind(cursor.at)
                .push(", ")
                .push_bind(cursor.id.clone())
                .push(")");
        }
        sql.push(" ORDER BY at DESC, id DESC LIMIT ")
            .push_bind(i64::from(size) + 1);
        let rows = sql
            .build_query_as::<AuditRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
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

/// Credits reserved, returned and adjusted in a transaction holding the
/// key's row lock (`SELECT … FOR UPDATE`, on every key of a successor
/// chain in order), so that instances sharing the database never overspend;
/// each change of a balance is notified on [`PostgresStore::CHANNEL`].
#[async_trait]
impl CreditStore for PostgresStore {
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

/// Listens on [`PostgresStore::CHANNEL`] from a dedicated connection, as
/// described on [`PostgresStore`]. Without a tokio runtime it warns and the
/// subscription has already ended.
impl ChangeFeed for PostgresStore {
    fn subscribe(&self) -> Changes {
        listener::subscribe((*self.pool.connect_options()).clone(), self.heartbeat)
    }
}

#[async_trait]
impl StoreMeta for PostgresStore {
    async fn meta_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        // Insert-or-read in one statement. Should a concurrent caller's
        // insert commit after this statement's snapshot, the read below
        // sees it.
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "WITH inserted AS (INSERT INTO keygate_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING value) \
             SELECT value FROM inserted UNION ALL \
             SELECT value FROM keygate_meta WHERE name = $1 LIMIT 1",
        )
        .bind(name)
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?;
        match stored {
            Some(stored) => Ok(stored),
            None => sqlx::query_scalar(PostgresStore::META_GET)
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(pg_error),
        }
    }

    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Dialect::meta_get(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_does_not_show_the_password() {
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://keygate:hunter2-secret@db.invalid/keys")
            .unwrap();
        let store = PostgresStore {
            pool,
            heartbeat: DEFAULT_HEARTBEAT,
        };
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[tokio::test]
    async fn listener_heartbeat_has_a_floor() {
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://keygate@db.invalid/keys")
            .unwrap();
        let store = PostgresStore {
            pool,
            heartbeat: DEFAULT_HEARTBEAT,
        };
        assert_eq!(store.heartbeat, Duration::from_secs(15));
        let store = store.listener_heartbeat(Duration::ZERO);
        assert_eq!(store.heartbeat, MIN_HEARTBEAT);
    }
}
