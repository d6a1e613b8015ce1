//! [`AuditLog`]: the optional ability of a store to keep the audit log in
//! the same transactions as the changes it records.
//!
//! Why an extension trait whose mutations *take* the record, rather than a
//! separate "append a record" method: a record written apart from its
//! change can be lost (a crash between the two, a failed second write) or
//! describe a change that never committed. Here the record is an argument
//! of the write itself, so a store cannot commit one without the other,
//! and [`Keys`](crate::Keys) writes through one private path whose every
//! mutation needs its record — there is no way to change a key there and
//! forget the record. The plain [`KeyStore`] mutations stay as they were,
//! so existing custom stores keep compiling: one that does not implement
//! this trait keeps working, unaudited (the keygate warns once when it is
//! built over such a store).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{InsertRules, KeyStore, StoreError};
use crate::audit::{AuditPage, AuditQuery, AuditRecord};
use crate::credits::CreditChange;
use crate::key::StoredKey;
use crate::token::KeyId;

/// A store that keeps the audit log: each mutation of a key and its
/// [`AuditRecord`] are written in one transaction — both or neither.
///
/// Implemented by [`MemoryStore`](crate::MemoryStore) (under its one
/// lock), [`SqliteStore`](crate::SqliteStore) and `PostgresStore` (table
/// `keygate_audit`, in the mutation's transaction). A store that
/// implements it answers [`KeyStore::audit_log`] with `Some(self)`.
///
/// Each `*_audited` method does what the [`KeyStore`] method of the same
/// name does, and writes `record` with it; an error in either writes
/// neither. Deleting a key keeps its records.
///
/// # Example
///
/// ```
/// use keygate::{AuditAction, AuditQuery, KeyStore, Keygate, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let key = keygate.keys().create(NewKey::new("alice", "ci")).await?.key;
/// keygate.keys().delete(&key.id).await?;
///
/// let log = keygate.store().audit_log().expect("kept in memory");
/// let query = AuditQuery { key_id: Some(key.id), ..AuditQuery::default() };
/// let actions: Vec<_> = log.audit_records(&query).await?.records.iter().map(|r| r.action).collect();
/// assert_eq!(actions, [AuditAction::Delete, AuditAction::Create], "the records outlive the key");
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait AuditLog: KeyStore {
    /// [`KeyStore::insert`] and `record`, together.
    ///
    /// # Errors
    ///
    /// As [`KeyStore::insert`], or the record's write failing.
    async fn insert_audited(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// [`KeyStore::replace`] and `record`, together.
    ///
    /// # Errors
    ///
    /// As [`KeyStore::replace`], or the record's write failing.
    async fn replace_audited(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// [`KeyStore::rotate`] and `record`, together.
    ///
    /// # Errors
    ///
    /// As [`KeyStore::rotate`], or the record's write failing.
    async fn rotate_audited(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// [`KeyStore::delete`] and `record`, together; when the key did not
    /// exist, nothing is written and the answer is `false`.
    ///
    /// # Errors
    ///
    /// As [`KeyStore::delete`], or the record's write failing.
    async fn delete_audited(&self, id: &KeyId, record: &AuditRecord) -> Result<bool, StoreError>;

    /// [`CreditStore::adjust`](crate::CreditStore::adjust) and `record`,
    /// together. The store adds the `credits` change (the balance before
    /// and after, as its transaction saw them) to the record's changes.
    ///
    /// # Errors
    ///
    /// As [`CreditStore::adjust`](crate::CreditStore::adjust), or the
    /// record's write failing; [`StoreError::Backend`] for a store that
    /// keeps no credits.
    async fn adjust_audited(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<StoredKey, StoreError>;

    /// A page of records matching `query`, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Backend`] for a record
    /// that cannot be decoded.
    async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Deletes the records made before `before`; returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

#[async_trait]
impl<T: AuditLog + ?Sized> AuditLog for std::sync::Arc<T> {
    async fn insert_audited(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        (**self).insert_audited(key, rules, record).await
    }
    async fn replace_audited(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        (**self).replace_audited(key, now, record).await
    }
    async fn rotate_audited(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        (**self).rotate_audited(old, new, now, record).await
    }
    async fn delete_audited(&self, id: &KeyId, record: &AuditRecord) -> Result<bool, StoreError> {
        (**self).delete_audited(id, record).await
    }
    async fn adjust_audited(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<StoredKey, StoreError> {
        (**self).adjust_audited(id, change, now, record).await
    }
    async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        (**self).audit_records(query).await
    }
    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        (**self).prune_audit(before).await
    }
}
