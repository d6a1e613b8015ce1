//! The one path by which key management writes to the store: every
//! mutation takes its [`AuditRecord`], and goes to the store's
//! [`AuditLog`](crate::AuditLog) (change and record in one transaction)
//! when it has one, or to the plain [`KeyStore`] method when it has none.
//! [`Keys`](super::Keys) never calls a store mutation any other way, so
//! no change it makes can forget its record.

use std::time::Instant;

use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::credits::CreditChange;
use crate::key::StoredKey;
use crate::store::{InsertRules, KeyStore, StoreError};
use crate::telemetry::{self, StoreOp};
use crate::token::KeyId;

/// The store, written to with a record per change.
#[derive(Clone, Copy)]
pub(super) struct Writer<'a> {
    pub(super) store: &'a dyn KeyStore,
}

impl Writer<'_> {
    pub(super) async fn insert(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: AuditRecord,
    ) -> Result<(), StoreError> {
        timed(StoreOp::Insert, async {
            match self.store.audit_log() {
                Some(log) => log.insert_audited(key, rules, &record).await,
                None => self.store.insert(key, rules).await,
            }
        })
        .await
    }

    pub(super) async fn replace(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: AuditRecord,
    ) -> Result<(), StoreError> {
        timed(StoreOp::Replace, async {
            match self.store.audit_log() {
                Some(log) => log.replace_audited(key, now, &record).await,
                None => self.store.replace(key, now).await,
            }
        })
        .await
    }

    pub(super) async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: AuditRecord,
    ) -> Result<(), StoreError> {
        timed(StoreOp::Rotate, async {
            match self.store.audit_log() {
                Some(log) => log.rotate_audited(old, new, now, &record).await,
                None => self.store.rotate(old, new, now).await,
            }
        })
        .await
    }

    pub(super) async fn delete(&self, id: &KeyId, record: AuditRecord) -> Result<bool, StoreError> {
        timed(StoreOp::Delete, async {
            match self.store.audit_log() {
                Some(log) => log.delete_audited(id, &record).await,
                None => self.store.delete(id).await,
            }
        })
        .await
    }

    /// A change of credits; the store adds the balance's `credits` change
    /// to the record.
    pub(super) async fn adjust(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: AuditRecord,
    ) -> Result<StoredKey, StoreError> {
        timed(StoreOp::AdjustCredits, async {
            match (self.store.audit_log(), self.store.credits()) {
                (Some(log), _) => log.adjust_audited(id, change, now, &record).await,
                (None, Some(credits)) => credits.adjust(id, change, now).await,
                (None, None) => Err(StoreError::Backend(
                    "this key store does not keep credits".into(),
                )),
            }
        })
        .await
    }
}

/// Runs a write, recording its latency in `keygate_store_operation_seconds`.
async fn timed<T>(
    op: StoreOp,
    write: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let written = write.await;
    telemetry::store_op(op, started, written.is_err());
    written
}
