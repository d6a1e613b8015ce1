//! [`MemoryStore`]: keys in a process-local map.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Cursor, InsertRules, KeyStore, ListQuery, Page, StoreError, Usage};
use crate::key::StoredKey;
use crate::token::KeyId;

/// A store in process memory: for tests, examples and single-process
/// services that can afford to lose their keys on restart.
///
/// Every operation holds one lock, so the store's invariants hold under
/// concurrency. No other process can see it, so it has no
/// [`ChangeFeed`](crate::store::ChangeFeed): every change goes through the
/// [`Keygate`](crate::Keygate) using it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: Mutex<HashMap<KeyId, StoredKey>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, StoredKey>> {
        // A panic while holding the lock cannot leave a half-written record:
        // every mutation is a single insert/replace of a whole value.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The name/limit checks shared by insert, replace and rotate.
fn check_current(
    keys: &HashMap<KeyId, StoredKey>,
    candidate: &StoredKey,
    ignore: &[KeyId],
    max_keys_per_owner: Option<u32>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if !candidate.key.is_current(now) {
        return Ok(());
    }
    let mut current = 0u64;
    for other in keys.values() {
        if ignore.contains(&other.key.id)
            || other.key.owner != candidate.key.owner
            || !other.key.is_current(now)
        {
            continue;
        }
        if other.key.name == candidate.key.name {
            return Err(StoreError::NameConflict);
        }
        current += 1;
    }
    match max_keys_per_owner {
        Some(max) if max > 0 && current >= u64::from(max) => Err(StoreError::KeyLimitReached),
        _ => Ok(()),
    }
}

fn replaced(stored: &StoredKey, new: &StoredKey) -> StoredKey {
    let mut next = new.clone();
    next.mac = stored.mac;
    next.revision = stored.revision + 1;
    next.key.last_used_at = stored.key.last_used_at;
    next.key.last_used_ip = stored.key.last_used_ip;
    next
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        let mut keys = self.lock();
        if keys.contains_key(&key.key.id) {
            return Err(StoreError::Backend("duplicate key id".into()));
        }
        check_current(&keys, key, &[], Some(rules.max_keys_per_owner), rules.now)?;
        keys.insert(key.key.id, key.clone());
        Ok(())
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let keys = self.lock();
        let mut matching: Vec<&StoredKey> = keys
            .values()
            .filter(|k| query.matches(&k.key))
            .filter(|k| query.cursor.is_none_or(|c| Cursor::after(&k.key) > c))
            .collect();
        matching.sort_by_key(|k| Cursor::after(&k.key));
        let size = query.page_size() as usize;
        let next_cursor = (matching.len() > size).then(|| Cursor::after(&matching[size - 1].key));
        Ok(Page {
            keys: matching.into_iter().take(size).cloned().collect(),
            next_cursor,
        })
    }

    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut keys = self.lock();
        let stored = keys.get(&key.key.id).ok_or(StoreError::NotFound)?;
        if stored.revision != key.revision {
            return Err(StoreError::Stale);
        }
        check_current(&keys, key, &[key.key.id], None, now)?;
        let next = replaced(stored, key);
        keys.insert(key.key.id, next);
        Ok(())
    }

    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut keys = self.lock();
        let stored = keys.get(&old.key.id).ok_or(StoreError::NotFound)?;
        if stored.revision != old.revision || stored.key.superseded_by.is_some() {
            return Err(StoreError::Stale);
        }
        if keys.contains_key(&new.key.id) {
            return Err(StoreError::Backend("duplicate key id".into()));
        }
        check_current(&keys, new, &[old.key.id], None, now)?;
        let next = replaced(stored, old);
        keys.insert(old.key.id, next);
        keys.insert(new.key.id, new.clone());
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        Ok(self.lock().remove(id).is_some())
    }

    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        let keys = self.lock();
        Ok(keys
            .values()
            .filter(|k| k.key.owner == owner && k.key.is_current(now))
            .count() as u64)
    }

    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        let mut keys = self.lock();
        for usage in batch {
            if let Some(stored) = keys.get_mut(&usage.id)
                && stored.key.last_used_at.is_none_or(|at| at <= usage.at)
            {
                stored.key.last_used_at = Some(usage.at);
                stored.key.last_used_ip = usage.ip;
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
