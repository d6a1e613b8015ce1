//! The validation cache: moka, bounded, with per-entry expiry and
//! invalidation by key id that no in-flight load can undo.
//!
//! Entries are keyed by key id (the built-in store validator) or by the
//! token's MAC (custom validators, which see opaque tokens). A positive
//! entry lives at most the positive TTL and never past the key's
//! `expires_at`; a negative entry (unknown id) lives the negative TTL, in a
//! separate, smaller cache, so that a flood of forged well-formed tokens
//! (the checksum is public) cannot evict valid keys.
//! Concurrent misses for one entry share one load (`try_get_with`).
//!
//! Invalidation must win against a load that started before it: such a load
//! may have read the old record and insert it after the invalidation. Every
//! entry therefore records the invalidation epoch at which its load began,
//! and a hit is discarded when its key id was invalidated at a later epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::key::ApiKey;
use crate::secret::TokenMac;
use crate::token::KeyId;

/// Cache sizes and lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheConfig {
    pub capacity: u64,
    pub negative_capacity: u64,
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 100_000,
            negative_capacity: 10_000,
            positive_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

/// What a cache entry is found under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    /// The store validator: the key id.
    Id(KeyId),
    /// A custom validator: the token's MAC under the pepper.
    Digest(TokenMac),
}

/// How far a cache hit can be trusted.
enum Freshness {
    /// As loaded.
    Fresh,
    /// Its key changed after the load began: never serve it.
    Invalidated,
    /// Loaded before a wholesale clear: reload, serve only if the store is
    /// unreachable.
    Cleared,
}

/// A validated record: the key and, for store entries, the MAC to compare.
#[derive(Debug)]
pub(crate) struct Record {
    pub key: Arc<ApiKey>,
    /// `Some` for store entries (compared on every request); `None` for
    /// custom-validator entries, whose key already matched the token digest.
    pub mac: Option<TokenMac>,
}

/// A cache entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// `None`: no key for this id or token (a negative entry).
    pub record: Option<Arc<Record>>,
    /// The invalidation epoch when the load that produced it began.
    epoch: u64,
}

/// Per-entry lifetimes for moka.
struct Expiry {
    config: CacheConfig,
}

impl moka::Expiry<CacheKey, Entry> for Expiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _at: Instant,
    ) -> Option<Duration> {
        let Some(record) = &value.record else {
            return Some(self.config.negative_ttl);
        };
        let ttl = self.config.positive_ttl;
        let Some(expires_at) = record.key.expires_at else {
            return Some(ttl);
        };
        let left = expires_at - OffsetDateTime::now_utc();
        Some(
            Duration::try_from(left)
                .map(|left| left.min(ttl))
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// The shared validation cache.
pub(crate) struct KeyCache {
    /// Valid keys.
    entries: moka::future::Cache<CacheKey, Entry>,
    /// Unknown ids/tokens → the epoch of their load. Kept apart so that a
    /// flood of forged, well-formed tokens cannot evict valid keys.
    negatives: moka::sync::Cache<CacheKey, u64>,
    /// Bumped by every invalidation.
    epoch: AtomicU64,
    /// Entries loaded before this epoch were cleared wholesale.
    cleared: AtomicU64,
    /// Key id → epoch of its latest invalidation, remembered long enough to
    /// outlive any entry loaded before it.
    invalidated: moka::sync::Cache<KeyId, u64>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.entries.entry_count())
            .field("negatives", &self.negatives.entry_count())
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a load produced no entry for the positive cache.
#[derive(Debug)]
pub(crate) enum Miss<E> {
    /// The store has no such key (cached in the negative cache).
    Missing,
    /// The store failed.
    Failed(E),
}

impl<E: std::fmt::Display> std::fmt::Display for Miss<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Missing => f.write_str("no such key"),
            Miss::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error> std::error::Error for Miss<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Miss::Missing => None,
            Miss::Failed(e) => e.source(),
        }
    }
}

/// A load failed; the error is shared by every waiter of that load.
pub(crate) type LoadError<E> = Arc<Miss<E>>;

impl KeyCache {
    pub(crate) fn new(config: CacheConfig) -> KeyCache {
        // An entry loaded before an invalidation lives at most the positive
        // TTL after its insertion; keep the invalidation well past that.
        let remember = config.positive_ttl.max(config.negative_ttl) * 2 + Duration::from_secs(60);
        KeyCache {
            entries: moka::future::Cache::builder()
                .max_capacity(config.capacity)
                .expire_after(Expiry { config })
                .build(),
            negatives: moka::sync::Cache::builder()
                .max_capacity(config.negative_capacity)
                .time_to_live(config.negative_ttl)
                .build(),
            epoch: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            invalidated: moka::sync::Cache::builder()
                .max_capacity(config.capacity.max(1024))
                .time_to_live(remember)
                .build(),
        }
    }

    /// How far a hit can be trusted.
    fn freshness(&self, entry: &Entry) -> Freshness {
        if entry.epoch == self.epoch.load(Ordering::Acquire) {
            return Freshness::Fresh;
        }
        if let Some(record) = &entry.record
            && self
                .invalidated
                .get(&record.key.id)
                .is_some_and(|at| at > entry.epoch)
        {
            return Freshness::Invalidated;
        }
        if entry.epoch < self.cleared.load(Ordering::Acquire) {
            return Freshness::Cleared;
        }
        Freshness::Fresh
    }

    /// The entry for `key`, loading it with `load` on a miss. Concurrent
    /// misses share one load. Errors are not cached.
    ///
    /// An entry whose key was invalidated after its load began — found in
    /// the cache, or produced by a shared load that started before the
    /// invalidation — is dropped and loaded again. An entry loaded before a
    /// [`clear`](KeyCache::clear) is loaded again too, but when that load
    /// fails (the store is unreachable) it is still served until its TTL
    /// runs out: a key that was valid a moment ago keeps working through an
    /// outage for at most the TTL, while anything the store can answer is
    /// answered fresh.
    pub(crate) async fn get_or_load<F, Fut, E>(
        &self,
        key: CacheKey,
        load: F,
    ) -> Result<Entry, LoadError<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Arc<Record>>, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(epoch) = self.negatives.get(&key) {
            if epoch >= self.cleared.load(Ordering::Acquire) {
                return Ok(Entry {
                    record: None,
                    epoch,
                });
            }
            self.negatives.invalidate(&key);
        }
        for _ in 0..3 {
            if let Some(entry) = self.entries.get(&key).await {
                match self.freshness(&entry) {
                    Freshness::Fresh => return Ok(entry),
                    Freshness::Cleared => return Ok(self.reload_or_keep(key, entry, &load).await),
                    Freshness::Invalidated => self.entries.invalidate(&key).await,
                }
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            let loaded = self
                .entries
                .try_get_with(key, async {
                    match load().await {
                        Ok(Some(record)) => Ok(Entry {
                            record: Some(record),
                            epoch,
                        }),
                        Ok(None) => Err(Miss::Missing),
                        Err(e) => Err(Miss::Failed(e)),
                    }
                })
                .await;
            let entry = match loaded {
                Ok(entry) => entry,
                Err(miss) if matches!(*miss, Miss::Missing) => {
                    self.negatives.insert(key, epoch);
                    return Ok(Entry {
                        record: None,
                        epoch,
                    });
                }
                Err(failed) => return Err(failed),
            };
            if matches!(self.freshness(&entry), Freshness::Fresh) {
                return Ok(entry);
            }
            self.entries.invalidate(&key).await;
        }
        // Invalidations keep racing this key: answer from the store directly.
        let epoch = self.epoch.load(Ordering::Acquire);
        let record = load().await.map_err(|e| Arc::new(Miss::Failed(e)))?;
        Ok(Entry { record, epoch })
    }

    /// Reloads an entry that predates a [`clear`](KeyCache::clear); keeps
    /// serving it when the store cannot answer.
    async fn reload_or_keep<F, Fut, E>(&self, key: CacheKey, stale: Entry, load: &F) -> Entry
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Arc<Record>>, E>>,
    {
        let epoch = self.epoch.load(Ordering::Acquire);
        match load().await {
            Ok(Some(record)) => {
                let entry = Entry {
                    record: Some(record),
                    epoch,
                };
                self.entries.insert(key, entry.clone()).await;
                entry
            }
            Ok(None) => {
                self.entries.invalidate(&key).await;
                self.negatives.insert(key, epoch);
                Entry {
                    record: None,
                    epoch,
                }
            }
            Err(_) => {
                tracing::debug!("store unreachable: serving a cached entry until its TTL");
                stale
            }
        }
    }

    /// Drops every entry of key `id`, now and against any load in flight.
    pub(crate) async fn invalidate(&self, id: KeyId) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.invalidated.insert(id, epoch);
        self.entries.invalidate(&CacheKey::Id(id)).await;
        self.negatives.invalidate(&CacheKey::Id(id));
    }

    /// Distrusts every entry: each is read from the store again on its next
    /// use (served as is only while the store cannot answer, within its
    /// TTL). For when changes may have been missed, e.g. a lost `LISTEN`
    /// connection.
    pub(crate) fn clear(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.cleared.fetch_max(epoch, Ordering::AcqRel);
        // Unknown ids may exist now; valid entries are kept for outages.
        self.negatives.invalidate_all();
    }

    /// Number of entries, valid and unknown (approximate until pending
    /// maintenance runs).
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count() + self.negatives.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expirations).
    pub(crate) async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
        self.negatives.run_pending_tasks();
    }
}
