//! What the SQL backends share: the flat row shape and its conversions, the
//! error mapping, and the write rules ([`Dialect`]'s provided methods),
//! written once over each backend's statements.

use std::future::Future;
use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};
use time::OffsetDateTime;

use super::audit_row::AuditRow;
use super::{
    Cursor, InsertRules, MAX_SUCCESSOR_HOPS, Page, StoreError, adjust_error, chain_too_long,
};
use crate::audit::AuditRecord;
use crate::credits::ledger::Ledger;
use crate::credits::{CreditChange, CreditGrant, Credits, Refill, RefillEvery, Reservation};
use crate::key::{ApiKey, StoredKey};
use crate::limit::RateLimits;
use crate::scope::ScopeSet;
use crate::token::{Environment, KeyId};

/// A key record as primitive column values, read by column name from either
/// backend (`sqlx::FromRow` derive: no compile-time query checking).
#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    pub id: String,
    pub mac: Vec<u8>,
    pub display_prefix: String,
    pub name: String,
    pub description: Option<String>,
    pub owner: String,
    pub organization: Option<String>,
    pub environment: String,
    pub scopes: String,
    pub ip_allow: String,
    pub ip_deny: String,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub superseded_by: Option<String>,
    pub revision: i64,
    pub rate_limits: String,
    #[sqlx(flatten)]
    pub credits: CreditColumns,
}

/// The credit columns of a key (see the `add_credits` migration).
#[derive(sqlx::FromRow, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CreditColumns {
    pub credits_remaining: Option<i64>,
    pub credits_refill_amount: Option<i64>,
    pub credits_refill_every: Option<String>,
    pub credits_refilled_at: Option<i64>,
    pub credits_generation: i64,
}

/// What a credit operation reads, locking the row where the backend can:
/// the successor and the credit columns.
#[derive(sqlx::FromRow)]
pub(crate) struct CreditRow {
    pub superseded_by: Option<String>,
    #[sqlx(flatten)]
    pub credits: CreditColumns,
}

fn credit_count(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what))
}

impl CreditColumns {
    fn from_ledger(ledger: &Ledger) -> CreditColumns {
        let credits = ledger.credits;
        let refill = credits.and_then(|c| c.refill());
        // Balances are at most 10^12, far inside an i64.
        CreditColumns {
            credits_remaining: credits.map(|c| c.remaining() as i64),
            credits_refill_amount: refill.map(|r| r.amount() as i64),
            credits_refill_every: refill.map(|r| r.every().as_str().to_owned()),
            credits_refilled_at: ledger.refilled_at.map(OffsetDateTime::unix_timestamp),
            // The generation is an opaque counter: stored as its bits.
            credits_generation: ledger.generation as i64,
        }
    }

    /// The ledger these columns hold; a corrupt value is a
    /// [`StoreError::Backend`] naming the column.
    pub(crate) fn ledger(&self) -> Result<Ledger, StoreError> {
        let refill = match (self.credits_refill_amount, &self.credits_refill_every) {
            (None, None) => None,
            (Some(amount), Some(every)) => {
                let amount = credit_count(amount, "credits_refill_amount")?;
                let every = every
                    .parse::<RefillEvery>()
                    .map_err(|_| corrupt("credits_refill_every"))?;
                Some(Refill::new(amount, every).map_err(|_| corrupt("credits_refill_amount"))?)
            }
            (Some(_), None) => return Err(corrupt("credits_refill_every")),
            (None, Some(_)) => return Err(corrupt("credits_refill_amount")),
        };
        let credits = match self.credits_remaining {
            None if refill.is_some() => return Err(corrupt("credits_remaining")),
            None => None,
            Some(remaining) => Some(
                Credits::new(credit_count(remaining, "credits_remaining")?)
                    .map_err(|_| corrupt("credits_remaining"))?
                    .with_refill(refill),
            ),
        };
        Ok(Ledger {
            credits,
            refilled_at: opt_time(self.credits_refilled_at, "credits_refilled_at")?,
            generation: self.credits_generation as u64,
        })
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("stored key has an invalid {what}").into())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing scope sets, CIDR lists, rate limits and JSON maps cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn time(secs: i64, what: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| corrupt(what))
}

fn opt_time(secs: Option<i64>, what: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    secs.map(|s| time(s, what)).transpose()
}

impl Row {
    fn from_stored(stored: &StoredKey) -> Row {
        let k = &stored.key;
        Row {
            id: k.id.to_string(),
            mac: stored.mac.to_vec(),
            display_prefix: k.display_prefix.clone(),
            name: k.name.clone(),
            description: k.description.clone(),
            owner: k.owner.clone(),
            organization: k.organization.clone(),
            environment: k.environment.as_str().to_owned(),
            scopes: json(&k.scopes),
            ip_allow: json(&k.ip_allow),
            ip_deny: json(&k.ip_deny),
            metadata: json(&k.metadata),
            created_at: k.created_at.unix_timestamp(),
            updated_at: k.updated_at.unix_timestamp(),
            expires_at: k.expires_at.map(OffsetDateTime::unix_timestamp),
            last_used_at: k.last_used_at.map(OffsetDateTime::unix_timestamp),
            last_used_ip: k.last_used_ip.map(|ip| ip.to_string()),
            revoked_at: k.revoked_at.map(OffsetDateTime::unix_timestamp),
            revoked_reason: k.revoked_reason.clone(),
            superseded_by: k.superseded_by.map(|id| id.to_string()),
            revision: stored.revision,
            rate_limits: json(&k.rate_limits),
            credits: CreditColumns::from_ledger(&Ledger {
                credits: k.credits,
                refilled_at: None,
                generation: 0,
            }),
        }
    }

    /// The same row with the credit columns of `ledger`.
    fn with_ledger(mut self, ledger: &Ledger) -> Row {
        self.credits = CreditColumns::from_ledger(ledger);
        self
    }

    pub(crate) fn into_stored(self) -> Result<StoredKey, StoreError> {
        let key = ApiKey {
            id: KeyId::parse(&self.id).map_err(|_| corrupt("id"))?,
            display_prefix: self.display_prefix,
            name: self.name,
            description: self.description,
            owner: self.owner,
            organization: self.organization,
            environment: self
                .environment
                .parse::<Environment>()
                .map_err(|_| corrupt("environment"))?,
            scopes: serde_json::from_str::<ScopeSet>(&self.scopes)
                .map_err(|_| corrupt("scope list"))?,
            ip_allow: serde_json::from_str::<Vec<IpNet>>(&self.ip_allow)
                .map_err(|_| corrupt("ip_allow list"))?,
            ip_deny: serde_json::from_str::<Vec<IpNet>>(&self.ip_deny)
                .map_err(|_| corrupt("ip_deny list"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            created_at: time(self.created_at, "created_at")?,
            updated_at: time(self.updated_at, "updated_at")?,
            expires_at: opt_time(self.expires_at, "expires_at")?,
            last_used_at: opt_time(self.last_used_at, "last_used_at")?,
            last_used_ip: self
                .last_used_ip
                .map(|ip| ip.parse::<IpAddr>().map_err(|_| corrupt("last_used_ip")))
                .transpose()?,
            revoked_at: opt_time(self.revoked_at, "revoked_at")?,
            revoked_reason: self.revoked_reason,
            superseded_by: self
                .superseded_by
                .map(|id| KeyId::parse(&id).map_err(|_| corrupt("superseded_by")))
                .transpose()?,
            rate_limits: serde_json::from_str::<RateLimits>(&self.rate_limits)
                .map_err(|_| corrupt("rate_limits list"))?,
            credits: self.credits.ledger()?.view(crate::key::now()),
        };
        let mac = self.mac.as_slice().try_into().map_err(|_| corrupt("mac"))?;
        Ok(StoredKey {
            key,
            mac,
            revision: self.revision,
        })
    }
}

impl Row {
    /// Binds every column, in table order (`id` … `revision`,
    /// `rate_limits`, then the five credit columns), to an `INSERT` with 27
    /// placeholders.
    fn bind_insert<'q, DB>(
        self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.id)
            .bind(self.mac)
            .bind(self.display_prefix)
            .bind(self.name)
            .bind(self.description)
            .bind(self.owner)
            .bind(self.organization)
            .bind(self.environment)
            .bind(self.scopes)
            .bind(self.ip_allow)
            .bind(self.ip_deny)
            .bind(self.metadata)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.expires_at)
            .bind(self.last_used_at)
            .bind(self.last_used_ip)
            .bind(self.revoked_at)
            .bind(self.revoked_reason)
            .bind(self.superseded_by)
            .bind(self.revision)
            .bind(self.rate_limits)
            .bind(self.credits.credits_remaining)
            .bind(self.credits.credits_refill_amount)
            .bind(self.credits.credits_refill_every)
            .bind(self.credits.credits_refilled_at)
            .bind(self.credits.credits_generation)
    }

    /// Binds the mutable columns, then `id` and `revision`, to a
    /// compare-and-set `UPDATE … SET name, description, organization,
    /// scopes, ip_allow, ip_deny, metadata, updated_at, expires_at,
    /// revoked_at, revoked_reason, superseded_by, rate_limits … WHERE id AND
    /// revision`.
    fn bind_update<'q, DB>(
        self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.name)
            .bind(self.description)
            .bind(self.organization)
            .bind(self.scopes)
            .bind(self.ip_allow)
            .bind(self.ip_deny)
            .bind(self.metadata)
            .bind(self.updated_at)
            .bind(self.expires_at)
            .bind(self.revoked_at)
            .bind(self.revoked_reason)
            .bind(self.superseded_by)
            .bind(self.rate_limits)
            .bind(self.id)
            .bind(self.revision)
    }
}

/// Maps a sqlx error: connection-level failures are [`StoreError::Unavailable`].
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        other => StoreError::Backend(Box::new(other)),
    }
}

/// One page of a listing from up to `size + 1` rows in `(created_at, id)`
/// order: the extra row, when there is one, says a next page exists.
pub(crate) fn page(rows: Vec<Row>, size: u32) -> Result<Page, StoreError> {
    let mut keys = rows
        .into_iter()
        .map(Row::into_stored)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if keys.len() > size as usize {
        keys.truncate(size as usize);
        keys.last().map(|k| Cursor::after(&k.key))
    } else {
        None
    };
    Ok(Page { keys, next_cursor })
}

/// What one SQL backend does its own way — its statements (placeholder
/// syntax, JSON casts, row locks), its error mapping, how a writing
/// transaction begins and how a change is announced — implemented by each
/// store. The provided methods are the rules every SQL backend follows,
/// written once over those: name uniqueness and the per-owner limit checked
/// in the writing transaction, compare-and-set updates on the revision,
/// rotation refusing an already superseded key, and a change announced for
/// every key written.
///
/// The `where` clauses are what the provided methods need of the driver;
/// they hold for both sqlx drivers used here.
pub(crate) trait Dialect: Sync
where
    for<'c> &'c mut <Self::Db as Database>::Connection: Executor<'c, Database = Self::Db>,
    <Self::Db as Database>::Arguments: IntoArguments<Self::Db>,
    for<'a> &'a str: Encode<'a, Self::Db> + Type<Self::Db>,
    for<'t> String: Encode<'t, Self::Db> + Type<Self::Db>,
    for<'t> Option<String>: Encode<'t, Self::Db> + Type<Self::Db>,
    for<'t> Vec<u8>: Encode<'t, Self::Db> + Type<Self::Db>,
    for<'t> i64: Encode<'t, Self::Db> + Type<Self::Db>,
    for<'t> Option<i64>: Encode<'t, Self::Db> + Type<Self::Db>,
    for<'r> Row: FromRow<'r, <Self::Db as Database>::Row>,
    for<'r> CreditRow: FromRow<'r, <Self::Db as Database>::Row>,
    for<'r> AuditRow: FromRow<'r, <Self::Db as Database>::Row>,
    for<'r> (i64, i64): FromRow<'r, <Self::Db as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <Self::Db as Database>::Row>,
    for<'r> (Option<String>,): FromRow<'r, <Self::Db as Database>::Row>,
    for<'r> (Vec<u8>,): FromRow<'r, <Self::Db as Database>::Row>,
{
    /// The sqlx driver.
    type Db: Database;

    /// Every column of the key whose `id` is the one placeholder, by the
    /// names of [`Row`].
    const GET: &'static str;
    /// `same_name` and `current` (in that order): among the current keys
    /// of owner `1` other than id `3` at Unix time `4`, how many are named
    /// `2`, and how many there are. Asked only when the per-owner limit is
    /// on (it reads every current key of the owner).
    const CHECK_CURRENT: &'static str;
    /// A row (two `BIGINT`s, `1` and `0`: the shape of [`CHECK_CURRENT`](Dialect::CHECK_CURRENT))
    /// when a current key of owner `1` other than id `3` at Unix time `4`
    /// is named `2`: found through the `(owner, name)` index,
    /// so an owner with many keys costs no more than one with a few.
    const NAME_TAKEN: &'static str;
    /// `INSERT` of every column, bound in table order (`id` … `revision`,
    /// then `rate_limits` and the five credit columns, added by later
    /// migrations).
    const INSERT: &'static str;
    /// Compare-and-set `UPDATE` of the mutable columns (`name`,
    /// `description`, `organization`, `scopes`, `ip_allow`, `ip_deny`,
    /// `metadata`, `updated_at`, `expires_at`, `revoked_at`,
    /// `revoked_reason`, `superseded_by`, `rate_limits`), bumping
    /// `revision`, `WHERE id` and `revision` match the last two
    /// placeholders.
    const UPDATE: &'static str;
    /// Any row when the key with the one placeholder's id exists.
    const EXISTS: &'static str;
    /// The `superseded_by` of the key with the one placeholder's id,
    /// locking its row until the transaction ends where the backend can.
    const SUPERSEDED_BY: &'static str;
    /// The [`CreditRow`] of the key with the one placeholder's id, locking
    /// its row until the transaction ends where the backend can.
    const CREDITS: &'static str;
    /// `UPDATE` of the five credit columns (in [`CreditColumns`] order) of
    /// the key whose id is the sixth placeholder.
    const SET_CREDITS: &'static str;
    /// Bumps the revision and sets `updated_at` to the first placeholder,
    /// of the key whose id is the second.
    const TOUCH: &'static str;
    /// How many current keys owner `1` holds at Unix time `2`.
    const COUNT_CURRENT: &'static str;
    /// The `value` of the meta entry named by the one placeholder.
    const META_GET: &'static str;
    /// `INSERT` of an audit record, its 9 columns bound in table order
    /// (see [`AuditRow::bind_insert`]).
    const AUDIT_INSERT: &'static str;
    /// `DELETE` of the key with the one placeholder's id.
    const DELETE: &'static str;
    /// `DELETE` of the audit records made before Unix time `1`.
    const AUDIT_PRUNE: &'static str;

    /// Maps a sqlx error to the store's ([`store_error`] and what the
    /// backend adds to it).
    fn error(e: sqlx::Error) -> StoreError;

    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;

    /// The store's pool.
    fn connections(&self) -> &Pool<Self::Db>;

    /// Begins a writing transaction that may check and change the keys of
    /// `owners` without a concurrent writer for them changing them too.
    fn begin_write(
        &self,
        owners: &[&str],
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, StoreError>> + Send;

    /// Announces, within the transaction on `conn`, that key `id` changed,
    /// so that other processes learn of it when the transaction commits.
    fn changed(
        conn: &mut <Self::Db as Database>::Connection,
        id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The key `id`, if there is one.
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query_as::<Self::Db, Row>(Self::GET)
            .bind(id.as_str())
            .fetch_optional(self.connections())
            .await
            .map_err(Self::error)?;
        row.map(Row::into_stored).transpose()
    }

    /// Writes `record`, when there is one, inside the caller's
    /// transaction: it commits with the change or not at all.
    async fn audit(
        conn: &mut <Self::Db as Database>::Connection,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let Some(record) = record else {
            return Ok(());
        };
        AuditRow::from_record(record)
            .bind_insert(sqlx::query(Self::AUDIT_INSERT))
            .execute(&mut *conn)
            .await
            .map_err(Self::error)?;
        Ok(())
    }

    /// Inserts `key` under `rules` (and `record`), in one writing
    /// transaction.
    async fn insert(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&[&key.key.owner]).await?;
        Self::check_current(&mut tx, key, "", rules.max_keys_per_owner, rules.now).await?;
        Self::insert_row_with(&mut tx, key, &Ledger::new(key.key.credits, rules.now)).await?;
        Self::audit(&mut tx, record).await?;
        tx.commit().await.map_err(Self::error)
    }

    /// Replaces the stored record of `key` if its revision still matches
    /// (and writes `record`), in one writing transaction.
    async fn replace(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&[&key.key.owner]).await?;
        Self::check_current(&mut tx, key, key.key.id.as_str(), 0, now).await?;
        Self::update_row(&mut tx, key).await?;
        Self::audit(&mut tx, record).await?;
        tx.commit().await.map_err(Self::error)
    }

    /// Deletes key `id` (and writes `record` when it existed), in one
    /// writing transaction; whether it existed.
    async fn delete(&self, id: &KeyId, record: Option<&AuditRecord>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(&[]).await?;
        let done = sqlx::query(Self::DELETE)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(Self::error)?;
        let existed = Self::rows_affected(&done) > 0;
        if existed {
            Self::changed(&mut tx, id.as_str()).await?;
            Self::audit(&mut tx, record).await?;
        }
        tx.commit().await.map_err(Self::error)?;
        Ok(existed)
    }

    /// Deletes the audit records made before `before`; how many.
    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(Self::AUDIT_PRUNE)
            .bind(before.unix_timestamp())
            .execute(self.connections())
            .await
            .map_err(Self::error)?;
        Ok(Self::rows_affected(&done))
    }

    /// Replaces `old` (now superseded) and inserts `new`, in one writing
    /// transaction; `NotFound` or `Stale` when `old` is gone or already
    /// superseded.
    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&[&old.key.owner, &new.key.owner]).await?;
        let superseded: Option<Option<String>> = sqlx::query_scalar(Self::SUPERSEDED_BY)
            .bind(old.key.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Self::error)?;
        match superseded {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::Stale),
            Some(None) => {}
        }
        Self::update_row(&mut tx, old).await?;
        Self::check_current(&mut tx, new, old.key.id.as_str(), 0, now).await?;
        // The new key continues the old key's credits; the old one keeps none.
        let mut ledger = Self::credit_row(&mut tx, old.key.id.as_str())
            .await?
            .ok_or(StoreError::NotFound)?
            .credits
            .ledger()?;
        let moved = ledger.hand_over(now);
        Self::write_ledger(&mut tx, old.key.id.as_str(), &ledger).await?;
        Self::insert_row_with(&mut tx, new, &moved).await?;
        Self::audit(&mut tx, record).await?;
        tx.commit().await.map_err(Self::error)
    }

    /// Reserves credits of `id` (or its successor), in one writing
    /// transaction; see [`CreditStore::reserve`](crate::CreditStore::reserve).
    async fn reserve(
        &self,
        id: &KeyId,
        need: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> Result<Reservation, StoreError> {
        let mut tx = self.begin_write(&[]).await?;
        let (at, mut ledger) = Self::credit_holder(&mut tx, id).await?;
        let before = ledger;
        let Some(granted) = ledger.reserve(need, want, now) else {
            return Ok(Reservation::Unlimited);
        };
        if ledger != before {
            Self::write_ledger(&mut tx, at.as_str(), &ledger).await?;
            Self::changed(&mut tx, at.as_str()).await?;
        }
        tx.commit().await.map_err(Self::error)?;
        Ok(Reservation::Counted(CreditGrant {
            key: at,
            granted,
            remaining: ledger.credits.map_or(0, |c| c.remaining()),
            generation: ledger.generation,
            next_refill: ledger.next_refill(now),
        }))
    }

    /// Returns credits to `id` (or its successor), in one writing
    /// transaction; see [`CreditStore::release`](crate::CreditStore::release).
    async fn release(
        &self,
        id: &KeyId,
        amount: u64,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(&[]).await?;
        let (at, mut ledger) = Self::credit_holder(&mut tx, id).await?;
        let before = ledger;
        let returned = ledger.release(amount, generation, now);
        if ledger != before {
            Self::write_ledger(&mut tx, at.as_str(), &ledger).await?;
            Self::changed(&mut tx, at.as_str()).await?;
        }
        tx.commit().await.map_err(Self::error)?;
        Ok(returned)
    }

    /// Changes the credits of `id` itself (and writes `record`, with the
    /// balance before and after), in one writing transaction; see
    /// [`CreditStore::adjust`](crate::CreditStore::adjust).
    async fn adjust(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: Option<&AuditRecord>,
    ) -> Result<StoredKey, StoreError> {
        let mut tx = self.begin_write(&[]).await?;
        let mut ledger = Self::credit_row(&mut tx, id.as_str())
            .await?
            .ok_or(StoreError::NotFound)?
            .credits
            .ledger()?;
        let before = ledger.view(now);
        ledger.adjust(change, now).map_err(adjust_error)?;
        Self::write_ledger(&mut tx, id.as_str(), &ledger).await?;
        let record = record.map(|r| {
            let json = |c| serde_json::to_value(c).unwrap_or_default();
            r.with_change("credits", json(before), json(ledger.view(now)))
        });
        Self::audit(&mut tx, record.as_ref()).await?;
        sqlx::query(Self::TOUCH)
            .bind(now.unix_timestamp())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(Self::error)?;
        Self::changed(&mut tx, id.as_str()).await?;
        let row = sqlx::query_as::<Self::Db, Row>(Self::GET)
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(Self::error)?;
        tx.commit().await.map_err(Self::error)?;
        let mut stored = row.into_stored()?;
        stored.key.credits = ledger.credits;
        Ok(stored)
    }

    /// The credit row of `id`, locked where the backend can.
    async fn credit_row(
        conn: &mut <Self::Db as Database>::Connection,
        id: &str,
    ) -> Result<Option<CreditRow>, StoreError> {
        sqlx::query_as::<Self::Db, CreditRow>(Self::CREDITS)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::error)
    }

    /// The key holding the balance of `id` (itself, or the end of its
    /// chain of successors, stopping at a successor that no longer exists)
    /// and its ledger, every row on the way locked where the backend can.
    async fn credit_holder(
        conn: &mut <Self::Db as Database>::Connection,
        id: &KeyId,
    ) -> Result<(KeyId, Ledger), StoreError> {
        let mut at = *id;
        let mut row = Self::credit_row(conn, id.as_str())
            .await?
            .ok_or(StoreError::NotFound)?;
        for _ in 0..=MAX_SUCCESSOR_HOPS {
            let Some(next) = row.superseded_by.take() else {
                return Ok((at, row.credits.ledger()?));
            };
            let next_id = KeyId::parse(&next).map_err(|_| corrupt("superseded_by"))?;
            match Self::credit_row(conn, &next).await? {
                Some(next_row) => {
                    at = next_id;
                    row = next_row;
                }
                None => return Ok((at, row.credits.ledger()?)),
            }
        }
        Err(chain_too_long())
    }

    /// Writes the credit columns of `id`.
    async fn write_ledger(
        conn: &mut <Self::Db as Database>::Connection,
        id: &str,
        ledger: &Ledger,
    ) -> Result<(), StoreError> {
        let columns = CreditColumns::from_ledger(ledger);
        sqlx::query(Self::SET_CREDITS)
            .bind(columns.credits_remaining)
            .bind(columns.credits_refill_amount)
            .bind(columns.credits_refill_every)
            .bind(columns.credits_refilled_at)
            .bind(columns.credits_generation)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(Self::error)?;
        Ok(())
    }

    /// How many current keys `owner` holds at `now`.
    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(Self::COUNT_CURRENT)
            .bind(owner)
            .bind(now.unix_timestamp())
            .fetch_one(self.connections())
            .await
            .map_err(Self::error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Whether the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query::<Self::Db>("SELECT 1")
            .execute(self.connections())
            .await
            .map_err(Self::error)?;
        Ok(())
    }

    /// The meta entry `name`, if there is one.
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar(Self::META_GET)
            .bind(name)
            .fetch_optional(self.connections())
            .await
            .map_err(Self::error)
    }

    /// Checks name uniqueness (and the limit, when not 0) for `key` among
    /// the owner's current keys other than `ignore`, inside the caller's
    /// writing transaction.
    async fn check_current(
        conn: &mut <Self::Db as Database>::Connection,
        key: &StoredKey,
        ignore: &str,
        max_keys_per_owner: u32,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !key.key.is_current(now) {
            return Ok(());
        }
        // Without a limit only the name is checked, through its index; no
        // row means neither a name taken nor a key counted.
        let query = if max_keys_per_owner == 0 {
            Self::NAME_TAKEN
        } else {
            Self::CHECK_CURRENT
        };
        let (same_name, current): (i64, i64) = sqlx::query_as(query)
            .bind(key.key.owner.as_str())
            .bind(key.key.name.as_str())
            .bind(ignore)
            .bind(now.unix_timestamp())
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::error)?
            .unwrap_or((0, 0));
        if same_name > 0 {
            return Err(StoreError::NameConflict);
        }
        if max_keys_per_owner > 0 && current >= i64::from(max_keys_per_owner) {
            return Err(StoreError::KeyLimitReached);
        }
        Ok(())
    }

    /// Inserts the row of `key`, its credits those of `ledger`, and
    /// announces it.
    async fn insert_row_with(
        conn: &mut <Self::Db as Database>::Connection,
        key: &StoredKey,
        ledger: &Ledger,
    ) -> Result<(), StoreError> {
        Row::from_stored(key)
            .with_ledger(ledger)
            .bind_insert(sqlx::query(Self::INSERT))
            .execute(&mut *conn)
            .await
            .map_err(Self::error)?;
        Self::changed(conn, key.key.id.as_str()).await
    }

    /// Compare-and-set update of the mutable columns, announced;
    /// `Stale`/`NotFound` when the revision moved on or the row is gone.
    async fn update_row(
        conn: &mut <Self::Db as Database>::Connection,
        key: &StoredKey,
    ) -> Result<(), StoreError> {
        let done = Row::from_stored(key)
            .bind_update(sqlx::query(Self::UPDATE))
            .execute(&mut *conn)
            .await
            .map_err(Self::error)?;
        if Self::rows_affected(&done) == 1 {
            return Self::changed(conn, key.key.id.as_str()).await;
        }
        let exists = sqlx::query(Self::EXISTS)
            .bind(key.key.id.as_str())
            .fetch_optional(conn)
            .await
            .map_err(Self::error)?;
        Err(if exists.is_some() {
            StoreError::Stale
        } else {
            StoreError::NotFound
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tests::sample;

    fn stored() -> StoredKey {
        let mut key = sample(crate::key::now());
        key.rate_limits = serde_json::from_str(
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 1000, "period": "1h", "shared": true}]"#,
        )
        .unwrap();
        StoredKey {
            key,
            mac: [3u8; 32],
            revision: 4,
        }
    }

    #[test]
    fn rate_limits_round_trip_through_a_row() {
        let stored = stored();
        let row = Row::from_stored(&stored);
        assert_eq!(
            row.rate_limits,
            r#"[{"name":"burst","limit":20,"period":"1s"},{"name":"hourly","limit":1000,"period":"1h","shared":true}]"#
        );
        assert_eq!(row.into_stored().unwrap(), stored);
    }

    #[test]
    fn an_unreadable_rate_limit_column_is_a_store_error() {
        for bad in [
            "",
            "{}",
            "not json",
            r#"[{"name": "Burst", "limit": 1, "period": "1s"}]"#,
            r#"[{"name": "a", "limit": 0, "period": "1s"}]"#,
            r#"[{"name": "a", "limit": 1, "period": "2d"}]"#,
        ] {
            let mut row = Row::from_stored(&stored());
            row.rate_limits = bad.to_owned();
            let error = row.into_stored().unwrap_err();
            assert!(
                matches!(&error, StoreError::Backend(e) if e.to_string().contains("rate_limits")),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn credits_round_trip_through_a_row_with_their_bookkeeping() {
        use crate::credits::{Credits, Refill, RefillEvery};
        let mut stored = stored();
        let credits = Credits::new(7)
            .unwrap()
            .with_refill(Refill::new(50, RefillEvery::Week).unwrap());
        stored.key.credits = Some(credits);
        let ledger = Ledger {
            credits: Some(credits),
            refilled_at: Some(RefillEvery::Week.latest_boundary_at_or_before(crate::key::now())),
            generation: 3,
        };
        let row = Row::from_stored(&stored).with_ledger(&ledger);
        assert_eq!(row.credits.credits_refill_every.as_deref(), Some("week"));
        assert_eq!(row.credits.ledger().unwrap(), ledger);
        assert_eq!(row.into_stored().unwrap(), stored);
    }

    #[test]
    fn an_unreadable_credit_column_is_a_store_error_naming_it() {
        let good = CreditColumns {
            credits_remaining: Some(5),
            credits_refill_amount: Some(10),
            credits_refill_every: Some("day".into()),
            credits_refilled_at: Some(0),
            credits_generation: 0,
        };
        assert!(good.ledger().is_ok());
        type Spoil = fn(&mut CreditColumns);
        let cases: [(Spoil, &str); 6] = [
            (|c| c.credits_remaining = Some(-1), "credits_remaining"),
            (
                |c| c.credits_remaining = Some(1_000_000_000_001),
                "credits_remaining",
            ),
            (|c| c.credits_remaining = None, "credits_remaining"),
            (
                |c| c.credits_refill_amount = Some(0),
                "credits_refill_amount",
            ),
            (
                |c| c.credits_refill_every = Some("hour".into()),
                "credits_refill_every",
            ),
            (|c| c.credits_refill_every = None, "credits_refill_every"),
        ];
        for (spoil, column) in cases {
            let mut bad = good.clone();
            spoil(&mut bad);
            let error = bad.ledger().unwrap_err();
            assert!(
                matches!(&error, StoreError::Backend(e) if e.to_string().contains(column)),
                "{column}: {error:?}"
            );
        }
    }
}
