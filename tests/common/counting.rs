//! A store wrapper that counts calls, can be made unreachable, and can hold
//! reads at a gate — for tests of the cache and the request path.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use keygate::{InsertRules, ListQuery, Page, StoreError, Usage};
use keygate::{KeyId, KeyStore, MemoryStore, StoredKey};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

#[derive(Default)]
pub struct Counts {
    pub gets: AtomicUsize,
    pub writes: AtomicUsize,
    pub usage_batches: AtomicUsize,
    pub usage_rows: AtomicUsize,
}

impl Counts {
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn usage_batches(&self) -> usize {
        self.usage_batches.load(Ordering::SeqCst)
    }
}

/// Counts every call; `down` makes every call fail as unreachable; the next
/// `hold_reads` calls of `get` read the record, then wait for a permit of
/// `read_gate` before returning it (so a test can change the store while
/// the old record is in flight).
#[derive(Clone)]
pub struct CountingStore {
    pub inner: Arc<MemoryStore>,
    pub counts: Arc<Counts>,
    pub down: Arc<AtomicBool>,
    pub hold_reads: Arc<AtomicUsize>,
    pub read_gate: Arc<Semaphore>,
    pub reads_waiting: Arc<AtomicUsize>,
}

impl CountingStore {
    pub fn new() -> CountingStore {
        CountingStore {
            inner: Arc::new(MemoryStore::new()),
            counts: Arc::new(Counts::default()),
            down: Arc::new(AtomicBool::new(false)),
            hold_reads: Arc::new(AtomicUsize::new(0)),
            read_gate: Arc::new(Semaphore::new(0)),
            reads_waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("test store is down".into()))
        } else {
            Ok(())
        }
    }

    fn wrote(&self) {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl KeyStore for CountingStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        self.check()?;
        self.wrote();
        self.inner.insert(key, rules).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        self.counts.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let found = self.inner.get(id).await;
        let hold = self
            .hold_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hold {
            self.reads_waiting.fetch_add(1, Ordering::SeqCst);
            self.read_gate.acquire().await.unwrap().forget();
        }
        found
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.list(query).await
    }
    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        self.check()?;
        self.wrote();
        self.inner.replace(key, now).await
    }
    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.wrote();
        self.inner.rotate(old, new, now).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.check()?;
        self.wrote();
        self.inner.delete(id).await
    }
    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.count_current(owner, now).await
    }
    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        self.check()?;
        self.wrote();
        self.counts.usage_batches.fetch_add(1, Ordering::SeqCst);
        self.counts
            .usage_rows
            .fetch_add(batch.len(), Ordering::SeqCst);
        self.inner.record_usage(batch).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
    fn credits(&self) -> Option<&dyn keygate::CreditStore> {
        self.inner.credits()
    }
}
