//! [`StoreMeta`]: an optional ability of a store — a small table of facts
//! about the database itself (`keygate_meta`), such as the pepper check
//! value the `keygate` binary keeps.

use async_trait::async_trait;

use super::{KeyStore, StoreError};

/// A store that keeps named values about the database beside its keys.
///
/// Implemented by [`SqliteStore`](crate::SqliteStore) and
/// `PostgresStore` (table `keygate_meta`, created by their migrations).
#[async_trait]
pub trait StoreMeta: KeyStore {
    /// Stores `value` under `name` unless a value is already there, and
    /// returns the value the store now holds (the existing one, if any).
    /// Atomic: of two concurrent callers, one value wins and both see it.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    ///
    /// ```
    /// use keygate::{SqliteStore, StoreMeta as _};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::open("sqlite::memory:").await?;
    /// assert_eq!(store.meta_get_or_insert("schema_owner", b"team-a").await?, b"team-a");
    /// assert_eq!(store.meta_get_or_insert("schema_owner", b"team-b").await?, b"team-a"); // the first wins
    /// # Ok(())
    /// # }
    /// ```
    async fn meta_get_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// The value stored under `name`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    ///
    /// ```
    /// use keygate::{SqliteStore, StoreMeta as _};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::open("sqlite::memory:").await?;
    /// assert_eq!(store.meta_get("absent").await?, None);
    /// store.meta_get_or_insert("present", b"1").await?;
    /// assert_eq!(store.meta_get("present").await?, Some(b"1".to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}
