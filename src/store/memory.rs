//! [`MemoryStore`]: keys in a process-local map.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    AuditLog, CreditStore, Cursor, InsertRules, KeyStore, ListQuery, MAX_SUCCESSOR_HOPS, Page,
    StoreError, Usage, adjust_error, chain_too_long,
};
use crate::audit::{AuditCursor, AuditPage, AuditQuery, AuditRecord};
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
/// [`CreditStore`]: credits are reserved under the same lock. It is an
/// [`AuditLog`]: each change and its record are written under the same
/// lock too (the records live as long as the store).
///
/// ```
/// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// assert!(keygate.verify(created.token.expose()).await.is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// Everything behind the lock.
#[derive(Debug, Default)]
struct State {
    keys: HashMap<KeyId, Entry>,
    audit: Vec<AuditRecord>,
}

impl State {
    fn audit(&mut self, record: Option<&AuditRecord>) {
        if let Some(record) = record {
            self.audit.push(record.clone());
        }
    }
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
    ///
    /// ```
    /// use keygate::{KeyStore as _, ListQuery, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// assert!(store.list(&ListQuery::default()).await?.keys.is_empty());
    /// assert!(store.audit_log().is_some()); // it keeps an audit log, in memory
    /// # Ok(())
    /// # }
    /// ```
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written record:
        // every mutation is a single insert/replace of a whole value.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert_with(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let keys = &mut state.keys;
        if keys.contains_key(&key.key.id) {
            return Err(StoreError::Backend("duplicate key id".into()));
        }
        check_current(keys, key, &[], Some(rules.max_keys_per_owner), rules.now)?;
        let ledger = Ledger::new(key.key.credits, rules.now);
        keys.insert(
            key.key.id,
            Entry {
                stored: key.clone(),
                ledger,
            },
        );
        state.audit(record);
        Ok(())
    }

    fn replace_with(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let keys = &mut state.keys;
        let entry = keys.get(&key.key.id).ok_or(StoreError::NotFound)?;
        if entry.stored.revision != key.revision {
            return Err(StoreError::Stale);
        }
        check_current(keys, key, &[key.key.id], None, now)?;
        let next = replaced(&entry.stored, key);
        if let Some(entry) = keys.get_mut(&key.key.id) {
            entry.stored = next;
        }
        state.audit(record);
        Ok(())
    }

    fn rotate_with(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let keys = &mut state.keys;
        let entry = keys.get(&old.key.id).ok_or(StoreError::NotFound)?;
        if entry.stored.revision != old.revision || entry.stored.key.superseded_by.is_some() {
            return Err(StoreError::Stale);
        }
        if keys.contains_key(&new.key.id) {
            return Err(StoreError::Backend("duplicate key id".into()));
        }
        check_current(keys, new, &[old.key.id], None, now)?;
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
        state.audit(record);
        Ok(())
    }

    fn delete_with(&self, id: &KeyId, record: Option<&AuditRecord>) -> bool {
        let mut state = self.lock();
        let existed = state.keys.remove(id).is_some();
        if existed {
            state.audit(record);
        }
        existed
    }

    fn adjust_with(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: Option<&AuditRecord>,
    ) -> Result<StoredKey, StoreError> {
        let mut state = self.lock();
        let entry = state.keys.get_mut(id).ok_or(StoreError::NotFound)?;
        let mut ledger = entry.ledger;
        let before = ledger.view(now);
        ledger.adjust(change, now).map_err(adjust_error)?;
        entry.ledger = ledger;
        entry.stored.key.credits = ledger.credits;
        entry.stored.key.updated_at = now;
        entry.stored.revision += 1;
        let stored = entry.stored.clone();
        let record =
            record.map(|r| r.with_change("credits", json(&before), json(&ledger.view(now))));
        state.audit(record.as_ref());
        Ok(stored)
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
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
        self.insert_with(key, rules, None)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.lock().keys.get(id).map(Entry::read))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let state = self.lock();
        let keys = &state.keys;
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
        self.replace_with(key, now, None)
    }

    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.rotate_with(old, new, now, None)
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        Ok(self.delete_with(id, None))
    }

    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        let state = self.lock();
        Ok(state
            .keys
            .values()
            .map(|e| &e.stored)
            .filter(|k| k.key.owner == owner && k.key.is_current(now))
            .count() as u64)
    }

    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for usage in batch {
            if let Some(stored) = state.keys.get_mut(&usage.id).map(|e| &mut e.stored)
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

    fn audit_log(&self) -> Option<&dyn AuditLog> {
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
        let mut state = self.lock();
        let keys = &mut state.keys;
        let at = holder(keys, id)?;
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
        let mut state = self.lock();
        let keys = &mut state.keys;
        let at = holder(keys, id)?;
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
        self.adjust_with(id, change, now, None)
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn insert_audited(
        &self,
        key: &StoredKey,
        rules: InsertRules,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.insert_with(key, rules, Some(record))
    }

    async fn replace_audited(
        &self,
        key: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.replace_with(key, now, Some(record))
    }

    async fn rotate_audited(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.rotate_with(old, new, now, Some(record))
    }

    async fn delete_audited(&self, id: &KeyId, record: &AuditRecord) -> Result<bool, StoreError> {
        Ok(self.delete_with(id, Some(record)))
    }

    async fn adjust_audited(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
        record: &AuditRecord,
    ) -> Result<StoredKey, StoreError> {
        self.adjust_with(id, change, now, Some(record))
    }

    async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let state = self.lock();
        let mut matching: Vec<&AuditRecord> =
            state.audit.iter().filter(|r| query.matches(r)).collect();
        matching.sort_by_key(|r| std::cmp::Reverse(AuditCursor::after(r)));
        let size = query.page_size();
        let rows = matching
            .into_iter()
            .take(size as usize + 1)
            .cloned()
            .collect();
        Ok(AuditPage::from_rows(rows, size))
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let cutoff = before.unix_timestamp();
        let was = state.audit.len();
        state.audit.retain(|r| r.at.unix_timestamp() >= cutoff);
        Ok((was - state.audit.len()) as u64)
    }
}
