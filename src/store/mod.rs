//! Storage of key records: the [`KeyStore`] trait and its backends.

mod audit;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod audit_row;
mod credits;
mod feed;
mod memory;
mod meta;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use audit::AuditLog;
pub use credits::{CreditStore, MAX_SUCCESSOR_HOPS};
pub(crate) use credits::{adjust_error, chain_too_long};
pub use feed::{Change, ChangeSender, Changes};
pub use memory::MemoryStore;
pub use meta::StoreMeta;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use std::net::IpAddr;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::key::StoredKey;
use crate::token::KeyId;

/// Why a store refused or failed an operation.
///
/// ```
/// use keygate::{KeyError, Keygate, MemoryStore, NewKey, Pepper, StoreError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// // The store's NameConflict reaches the caller as a KeyError naming the field.
/// let again = keygate.keys().create(NewKey::new("alice", "ci")).await.unwrap_err();
/// assert!(matches!(again, KeyError::Conflict { field: "name", .. }));
/// assert_eq!(StoreError::NameConflict.to_string(), "the owner already has an active key with this name");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another current key of the same owner has this name.
    #[error("the owner already has an active key with this name")]
    NameConflict,
    /// The owner already holds the maximum number of current keys.
    #[error("the owner has reached the maximum number of active keys")]
    KeyLimitReached,
    /// No key with this id.
    #[error("no such key")]
    NotFound,
    /// The record changed since it was read (its revision moved on), or a
    /// rotation found the key already superseded.
    #[error("the key was changed concurrently")]
    Stale,
    /// [`CreditChange::Add`](crate::CreditChange::Add) on a key without
    /// credits (an unlimited key has no balance to add to).
    #[error("the key has no credits (it is unlimited)")]
    NoCredits,
    /// A credit change would leave more than
    /// [`MAX_CREDITS`](crate::MAX_CREDITS) credits.
    #[error("a key holds at most 1000000000000 credits")]
    TooManyCredits,
    /// The backend cannot be reached.
    #[error("the key store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend failed or returned data that cannot be decoded.
    #[error("the key store failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// The error and each of its causes, `: `-separated, for logs: "the key
    /// store failed" alone does not say that the disk is full.
    pub(crate) fn with_causes(&self) -> Causes<'_> {
        Causes(self)
    }
}

/// An error followed by its chain of sources (see [`StoreError::with_causes`]).
pub(crate) struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// What to list: one owner's keys, or an organization's, or every key.
///
/// ```
/// use keygate::ListQuery;
///
/// let query = ListQuery { owner: Some("alice".into()), limit: 50, ..ListQuery::default() };
/// assert_eq!(query.page_size(), 50);
/// assert!(!query.include_revoked);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys of this owner.
    pub owner: Option<String>,
    /// Only keys of this organization.
    pub organization: Option<String>,
    /// Include revoked keys (excluded by default).
    pub include_revoked: bool,
    /// Page size; 0 means [`DEFAULT_PAGE_SIZE`], capped at [`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Continue after this position (from a previous [`Page::next_cursor`]).
    pub cursor: Option<Cursor>,
}

/// Largest page a store returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size used when [`ListQuery::limit`] is 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

impl ListQuery {
    /// The effective page size: `limit`, or [`DEFAULT_PAGE_SIZE`] for 0,
    /// capped at [`MAX_PAGE_SIZE`].
    ///
    /// ```
    /// use keygate::{DEFAULT_PAGE_SIZE, ListQuery, MAX_PAGE_SIZE};
    ///
    /// assert_eq!(ListQuery::default().page_size(), DEFAULT_PAGE_SIZE);
    /// assert_eq!(ListQuery { limit: 1_000_000, ..ListQuery::default() }.page_size(), MAX_PAGE_SIZE);
    /// ```
    pub fn page_size(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        }
    }

    /// Whether `key` belongs in this listing (ignoring the cursor).
    ///
    /// ```
    /// use keygate::{ApiKey, KeyId, ListQuery};
    ///
    /// let key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// assert!(ListQuery { owner: Some("alice".into()), ..ListQuery::default() }.matches(&key));
    /// assert!(!ListQuery { owner: Some("bob".into()), ..ListQuery::default() }.matches(&key));
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn matches(&self, key: &crate::ApiKey) -> bool {
        self.owner.as_ref().is_none_or(|o| *o == key.owner)
            && self
                .organization
                .as_ref()
                .is_none_or(|o| key.organization.as_ref() == Some(o))
            && (self.include_revoked || key.revoked_at.is_none())
    }
}

/// A position in the listing order (creation time, then id). Opaque text in
/// APIs: `<unix seconds>.<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Creation time of the last key returned, in Unix seconds.
    pub created_at: i64,
    /// Id of the last key returned.
    pub id: KeyId,
}

impl Cursor {
    /// The cursor just after `key`.
    ///
    /// ```
    /// use keygate::{ApiKey, Cursor, KeyId};
    ///
    /// let key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// let cursor = Cursor::after(&key);
    /// assert_eq!(cursor.to_string(), format!("{}.0000000000000001", key.created_at.unix_timestamp()));
    /// assert_eq!(cursor.to_string().parse::<Cursor>().ok().map(|c| c.to_string()), Some(cursor.to_string()));
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn after(key: &crate::ApiKey) -> Cursor {
        Cursor {
            created_at: key.created_at.unix_timestamp(),
            id: key.id,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (secs, id) = s.split_once('.').ok_or(InvalidCursor)?;
        Ok(Cursor {
            created_at: secs.parse().map_err(|_| InvalidCursor)?,
            id: KeyId::parse(id).map_err(|_| InvalidCursor)?,
        })
    }
}

/// A cursor string that was not produced by keygate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

/// One page of a listing.
///
/// ```
/// use keygate::{KeyStore as _, Keygate, ListQuery, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// let page = keygate.store().list(&ListQuery::default()).await?;
/// assert_eq!(page.keys[0].key.owner, "alice"); // stored records: the MAC too
/// assert!(page.next_cursor.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Keys in creation order (then id).
    pub keys: Vec<StoredKey>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// One use of a key, for [`KeyStore::record_usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The key used.
    pub id: KeyId,
    /// When.
    pub at: OffsetDateTime,
    /// From where, when known.
    pub ip: Option<IpAddr>,
}

/// Limits a store enforces atomically when inserting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsertRules {
    /// Maximum current keys per owner; 0 is unlimited.
    pub max_keys_per_owner: u32,
    /// The time that decides which keys are current (not expired).
    pub now: OffsetDateTime,
}

/// Persistent storage of key records.
///
/// Object safe: [`Keygate`](crate::Keygate) holds an `Arc<dyn KeyStore>`.
/// Implementations must make [`insert`](KeyStore::insert),
/// [`replace`](KeyStore::replace) and [`rotate`](KeyStore::rotate) atomic with
/// their checks. "Current" keys are those neither revoked, expired at
/// `rules.now`, nor superseded (see [`ApiKey::is_current`](crate::ApiKey::is_current)).
///
/// A store is a plain repository: it keeps [`StoredKey`]s and enforces the
/// two invariants that must hold under concurrency — a name is unique per
/// owner among current keys, and an owner holds at most a configured number
/// of current keys — inside its own transactions, never by a read followed
/// by a separate write. Caching is layered on top by [`Keygate`](crate::Keygate),
/// not built into stores.
///
/// Backends: [`MemoryStore`] (tests, single process), [`SqliteStore`]
/// (feature `sqlite`, the default) and `PostgresStore` (feature `postgres`,
/// shared by many instances).
///
/// Optional abilities are extension traits, implemented by the SQLite and
/// PostgreSQL stores:
///
/// - [`StoreMeta`]: a small table of facts about the database, such as the
///   `keygate` binary's pepper check value.
/// - [`ChangeFeed`]: changes made by other processes sharing the database,
///   as a stream of [`Change`]s (PostgreSQL `LISTEN`/`NOTIFY`; on SQLite a
///   `keygate_changes` table written in each mutation's transaction and
///   polled every 200 ms). [`KeyStore::change_feed`] tells whether a store
///   has one; [`Keygate`](crate::Keygate) subscribes when it is built and
///   applies what it hears to its cache. The store never sees the cache.
/// - [`CreditStore`]: key credits reserved, returned and adjusted
///   atomically (also implemented by [`MemoryStore`]);
///   [`KeyStore::credits`] tells whether a store has it.
/// - [`AuditLog`]: the audit log, each record written in the transaction
///   of the change it records (also implemented by [`MemoryStore`]);
///   [`KeyStore::audit_log`] tells whether a store has it.
///
/// # Example
///
/// ```
/// use keygate::{KeyStore, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// assert!(store.ping().await.is_ok());
/// # }
/// ```
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Inserts a new key.
    ///
    /// # Errors
    ///
    /// [`StoreError::NameConflict`] when a current key of the same owner has
    /// the same name; [`StoreError::KeyLimitReached`] when the owner already
    /// has `max_keys_per_owner` current keys. Nothing is written then.
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError>;

    /// The key with this id, if any.
    ///
    /// ```
    /// use keygate::{KeyId, KeyStore as _, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// assert!(store.get(&KeyId::parse("0000000000000001")?).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError>;

    /// A page of keys in creation order.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Replaces the record with `key.key.id`, if its stored revision is still
    /// `key.revision`; the stored revision becomes `key.revision + 1`. The
    /// MAC, the usage fields and the credits are left as they are (credits
    /// change only through [`CreditStore`], so a record read before a
    /// reservation cannot undo it).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::Stale`] when the revision
    /// moved on, [`StoreError::NameConflict`] when a new name collides with
    /// another current key of the owner.
    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError>;

    /// Rotation in one transaction: replaces `old` as [`replace`](KeyStore::replace)
    /// does (it carries `superseded_by` and its shortened expiry) and inserts
    /// `new`, which may share the old key's name.
    ///
    /// A store that keeps credits moves them in the same transaction: `new`
    /// continues `old`'s balance (whatever `new.key.credits` says), refill
    /// and generation, and `old` keeps a balance of 0 without a refill (see
    /// [`CreditStore`]).
    ///
    /// # Errors
    ///
    /// As [`replace`](KeyStore::replace); nothing is written on error.
    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Removes a key. Returns whether it existed.
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError>;

    /// Number of current keys of `owner` at `now`.
    ///
    /// ```
    /// use keygate::{KeyStore as _, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// assert_eq!(keygate.store().count_current("alice", time::OffsetDateTime::now_utc()).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// Writes `last_used_at` / `last_used_ip` for a batch of uses, keeping
    /// the latest per key. Unknown ids are ignored. Does not bump revisions.
    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError>;

    /// Whether the backend answers.
    ///
    /// ```
    /// use keygate::{KeyStore as _, SqliteStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::open("sqlite::memory:").await?;
    /// assert!(store.ping().await.is_ok()); // what /readyz asks
    /// # Ok(())
    /// # }
    /// ```
    async fn ping(&self) -> Result<(), StoreError>;

    /// This store's [`ChangeFeed`], when it has one: how
    /// [`Keygate::builder`](crate::Keygate::builder) finds out, behind an
    /// `Arc<dyn KeyStore>`, that it can hear about changes made by other
    /// processes. A capability query only: the store is handed nothing.
    /// The default is `None` (a store no other process writes to, like
    /// [`MemoryStore`]); a store implementing [`ChangeFeed`] answers
    /// `Some(self)`, and a wrapper around one should forward the call.
    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        None
    }

    /// This store as a [`CreditStore`], when it keeps key credits: how code
    /// holding an `Arc<dyn KeyStore>` finds out that it can reserve them. A
    /// capability query only. The default is `None`: such a store cannot
    /// hold keys with credits (creating one is refused). A store
    /// implementing [`CreditStore`] answers `Some(self)`, and a wrapper
    /// around one should forward the call.
    fn credits(&self) -> Option<&dyn CreditStore> {
        None
    }

    /// This store as an [`AuditLog`], when it keeps one: how
    /// [`Keys`](crate::Keys) finds out, behind an `Arc<dyn KeyStore>`,
    /// that it can write each change with its audit record. A capability
    /// query only. The default is `None`: changes are written without a
    /// record. A store implementing [`AuditLog`] answers `Some(self)`, and
    /// a wrapper around one should forward the call.
    fn audit_log(&self) -> Option<&dyn AuditLog> {
        None
    }
}

/// A store that can tell about changes made by other processes sharing its
/// database.
///
/// Implemented by [`SqliteStore`] on a file (it polls
/// a `keygate_changes` table) and `PostgresStore` (it listens on
/// `keygate_keys`). A store that implements it also answers
/// [`KeyStore::change_feed`] with `Some(self)`, which is how
/// [`Keygate::builder`](crate::Keygate::builder) finds the feed behind an
/// `Arc<dyn KeyStore>`.
pub trait ChangeFeed: KeyStore {
    /// Starts a new subscription: a listener or poller of its own, running
    /// until the [`Changes`] is dropped. Its first change is a
    /// [`Change::Resync`] once it is in place (whatever happened before
    /// was not heard).
    ///
    /// Call it inside a tokio runtime: without one there is nothing to run
    /// the listener on, and the subscription has already ended.
    fn subscribe(&self) -> Changes;
}

impl<T: ChangeFeed + ?Sized> ChangeFeed for std::sync::Arc<T> {
    fn subscribe(&self) -> Changes {
        (**self).subscribe()
    }
}

#[async_trait]
impl<T: KeyStore + ?Sized> KeyStore for std::sync::Arc<T> {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        (**self).insert(key, rules).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        (**self).get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        (**self).list(query).await
    }
    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        (**self).replace(key, now).await
    }
    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        (**self).rotate(old, new, now).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        (**self).count_current(owner, now).await
    }
    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        (**self).record_usage(batch).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        (**self).change_feed()
    }
    fn credits(&self) -> Option<&dyn CreditStore> {
        (**self).credits()
    }
    fn audit_log(&self) -> Option<&dyn AuditLog> {
        (**self).audit_log()
    }
}
