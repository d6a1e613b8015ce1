//! [`MemoryStore`]: keys in a process-local map.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    CreditStore, Cursor, InsertRules, KeyStore, ListQuery, MAX_SUCCESSOR_HOPS, Page, StoreError,
    Usage, adjust_error, chain_too_long,
};
use crate::credits::ledger::Ledger;
use crate::credits::{CreditChange, CreditGrant, Reservation};
use crate::key::StoredKey;
use crate::token::KeyId;

/// A store in process memory: for tests, examples and single-process
/// services that can afford to lose their keys on restart.
///
/// Every operation holds one lock, so the store's invariants hold under
/// concurrency. No other process can see it, so it has no
/// [`ChangeFeed`](crate::store::ChangeFeed): every change goes through the
/// [`Keygate`](crate::Keygate) using it. It is a
/// [`CreditStore`]: credits are reserved under the same lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: Mutex<HashMap<KeyId, Entry>>,
}

/// A record and the bookkeeping of its credits (the record's own
/// `credits` field is filled from the ledger when it is read).
#[derive(Debug, Clone)]
struct Entry {
    stored: StoredKey,
    ledger: Ledger,
}

impl Entry {
    fn read(&self) -> StoredKey {
        let mut stored = self.stored.clone();
        stored.key.credits = self.ledger.view(crate::key::now());
        stored
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Entry>> {
        // A panic while holding the lock cannot leave a half-written record:
        // every mutation is a single insert/replace of a whole value.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The name/limit checks shared by insert, replace and rotate.
fn check_current(
    keys: &HashMap<KeyId, Entry>,
    candidate: &StoredKey,
    ignore: &[KeyId],
    max_keys_per_owner: Option<u32>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if !candidate.key.is_current(now) {
        return Ok(());
    }
    let mut current = 0u64;
    for other in keys.values().map(|e| &e.stored) {
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
    next.key.credits = stored.key.credits;
    next
}

/// The id of the key holding the balance of `id`: `id`, or the end of its
/// chain of successors (stopping at a successor that no longer exists).
fn holder(keys: &HashMap<KeyId, Entry>, id: &KeyId) -> Result<KeyId, StoreError> {
    let mut at = *id;
    if !keys.contains_key(&at) {
        return Err(StoreError::NotFound);
    }
    for _ in 0..=MAX_SUCCESSOR_HOPS {
        match keys[&at].stored.key.superseded_by {
            Some(next) if keys.contains_key(&next) => at = next,
            _ => return Ok(at),
        }
    }
    Err(chain_too_long())
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        let mut keys = self.lock();
        if keys.contains_key(&key.key.id) {
            return Err(StoreError::Backend("duplicate key id".into()));
        }
        check_current(&keys, key, &[], Some(rules.max_keys_per_owner), rules.now)?;
        let ledger = Ledger::new(key.key.credits, rules.now);
        keys.insert(
            key.key.id,
            Entry {
                stored: key.clone(),
                ledger,
            },
        );
        Ok(())
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.lock().get(id).map(Entry::read))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let keys = self.lock();
        let mut matching: Vec<&StoredKey> = keys
            .values()
            .map(|e| &e.stored)
            .filter(|k| query.matches(&k.key))
            .filter(|k| query.cursor.is_none_or(|c| Cursor::after(&k.key) > c))
            .collect();
        matching.sort_by_key(|k| Cursor::after(&k.key));
        let size = query.page_size() as usize;
        let next_cursor = (matching.len() > size).then(|| Cursor::after(&matching[size - 1].key));
        Ok(Page {
            keys: matching
                .into_iter()
                .take(size)
                .map(|k| keys[&k.key.id].read())
                .collect(),
            next_cursor,
        })
    }

    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut keys = self.lock();
        let entry = keys.get(&key.key.id).ok_or(StoreError::NotFound)?;
        if entry.stored.revision != key.revision {
            return Err(StoreError::Stale);
        }
        check_current(&keys, key, &[key.key.id], None, now)?;
        let next = replaced(&entry.stored, key);
        if let Some(entry) = keys.get_mut(&key.key.id) {
            entry.stored = next;
        }
        Ok(())
    }

    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut keys = self.lock();
        let entry = keys.get(&old.key.id).ok_or(StoreError::NotFound)?;
        if entry.stored.revision != old.revision || entry.stored.key.superseded_by.is_some() {
            return Err(StoreError::Stale);
        }
        if keys.contains_key(&new.key.id) {
            return Err(StoreError::Backend("duplicate key id".into()));
        }
        check_current(&keys, new, &[old.key.id], None, now)?;
        let mut old_entry = Entry {
            stored: replaced(&entry.stored, old),
            ledger: entry.ledger,
        };
        let moved = old_entry.ledger.hand_over(now);
        old_entry.stored.key.credits = old_entry.ledger.credits;
        let mut new_stored = new.clone();
        new_stored.key.credits = moved.credits;
        keys.insert(old.key.id, old_entry);
        keys.insert(
            new.key.id,
            Entry {
                stored: new_stored,
                ledger: moved,
            },
        );
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        Ok(self.lock().remove(id).is_some())
    }

    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        let keys = self.lock();
        Ok(keys
            .values()
            .map(|e| &e.stored)
            .filter(|k| k.key.owner == owner && k.key.is_current(now))
            .count() as u64)
    }

    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        let mut keys = self.lock();
        for usage in batch {
            if let Some(stored) = keys.get_mut(&usage.id).map(|e| &mut e.stored)
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

    fn credits(&self) -> Option<&dyn CreditStore> {
        Some(self)
    }
}

#[async_trait]
impl CreditStore for MemoryStore {
    async fn reserve(
        &self,
        id: &KeyId,
        need: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> Result<Reservation, StoreError> {
        let mut keys = self.lock();
        let at = holder(&keys, id)?;
        let Some(entry) = keys.get_mut(&at) else {
            return Err(StoreError::NotFound);
        };
        let Some(granted) = entry.ledger.reserve(need, want, now) else {
            return Ok(Reservation::Unlimited);
        };
        entry.stored.key.credits = entry.ledger.credits;
        Ok(Reservation::Counted(CreditGrant {
            key: at,
            granted,
            remaining: entry.ledger.credits.map_or(0, |c| c.remaining()),
            generation: entry.ledger.generation,
            next_refill: entry.ledger.next_refill(now),
        }))
    }

    async fn release(
        &self,
        id: &KeyId,
        amount: u64,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut keys = self.lock();
        let at = holder(&keys, id)?;
        let Some(entry) = keys.get_mut(&at) else {
            return Err(StoreError::NotFound);
        };
        let returned = entry.ledger.release(amount, generation, now);
        entry.stored.key.credits = entry.ledger.credits;
        Ok(returned)
    }

    async fn adjust(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
    ) -> Result<StoredKey, StoreError> {
        let mut keys = self.lock();
        let entry = keys.get_mut(id).ok_or(StoreError::NotFound)?;
        let mut ledger = entry.ledger;
        ledger.adjust(change, now).map_err(adjust_error)?;
        entry.ledger = ledger;
        entry.stored.key.credits = ledger.credits;
        entry.stored.key.updated_at = now;
        entry.stored.revision += 1;
        Ok(entry.stored.clone())
    }
}
