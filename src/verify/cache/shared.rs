//! The shared cache: moka's, with keygate's coalesced loads, invalidation
//! epochs and clears (see the [module docs](super)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use moka::ops::compute::Op;
use time::OffsetDateTime;

use crate::key::ApiKey;
use crate::secret::TokenMac;
use crate::token::KeyId;
use crate::verify::UsageMark;

use super::front::Front;

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
pub(crate) struct Record {
    pub key: ApiKey,
    /// `Some` for store entries (compared on every request); `None` for
    /// custom-validator entries, whose key already matched the token digest.
    pub mac: Option<TokenMac>,
    /// The last use noted for usage tracking.
    pub noted: UsageMark,
    /// `key.expires_at` on the system clock (taken when the record is made).
    pub expiry: Option<SystemTime>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("mac", &self.mac.map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Record {
    pub(crate) fn new(key: ApiKey, mac: Option<TokenMac>) -> Record {
        Record {
            expiry: key.expires_at.map(system_time),
            key,
            mac,
            noted: UsageMark::default(),
        }
    }
}

/// `at` on the system clock. An instant the platform's clock cannot hold
/// (none on 64-bit Unix) becomes the epoch: such a key counts as expired.
fn system_time(at: OffsetDateTime) -> SystemTime {
    let since = at - OffsetDateTime::UNIX_EPOCH;
    let converted = if since.is_negative() {
        SystemTime::UNIX_EPOCH.checked_sub(since.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH.checked_add(since.unsigned_abs())
    };
    converted.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A cache entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// `None`: no key for this id or token (a negative entry).
    pub record: Option<Arc<Record>>,
    /// The invalidation epoch when the load that produced it began.
    epoch: u64,
    /// When it stops being served from the cache: the TTL of its kind after
    /// the load, and never past the key's `expires_at`.
    pub(super) deadline: Instant,
}

impl Entry {
    /// The outcome of a load that began at `epoch`, to be cached as of now.
    fn loaded(record: Option<Arc<Record>>, epoch: u64, config: &CacheConfig) -> Entry {
        let ttl = match &record {
            None => config.negative_ttl,
            Some(record) => match record.key.expires_at {
                None => config.positive_ttl,
                Some(expires_at) => {
                    let left = expires_at - OffsetDateTime::now_utc();
                    Duration::try_from(left)
                        .map(|left| left.min(config.positive_ttl))
                        .unwrap_or(Duration::ZERO)
                }
            },
        };
        let now = Instant::now();
        Entry {
            record,
            epoch,
            deadline: now.checked_add(ttl).unwrap_or(now),
        }
    }
}

/// Per-entry lifetimes for moka: each entry's own deadline, whether it
/// was inserted for a new key or replaced an older entry; a read changes
/// nothing.
struct Expiry;

impl moka::Expiry<CacheKey, Entry> for Expiry {
    fn expire_after_create(&self, _key: &CacheKey, value: &Entry, at: Instant) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(at))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Entry,
        at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(at))
    }

    fn expire_after_read(
        &self,
        _key: &CacheKey,
        _value: &Entry,
        _at: Instant,
        current: Option<Duration>,
        _modified: Instant,
    ) -> Option<Duration> {
        current
    }
}

/// Slots of [`Invalidations`] (a power of two): 32 KiB per cache.
const INVALIDATION_SLOTS: usize = 4096;

/// The latest invalidation epoch of every key id, kept in a fixed table
/// that may only err towards distrust: each slot holds the latest epoch of
/// every id that falls in it, so an id is never reported older than it is,
/// at worst newer (an entry of another key in its slot is then read from
/// the store once more). Nothing is ever forgotten, whatever the number of
/// invalidations; a lookup is a hash and one atomic load.
struct Invalidations {
    slots: Box<[AtomicU64]>,
}

impl Invalidations {
    fn new() -> Invalidations {
        Invalidations {
            slots: (0..INVALIDATION_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of `id`. Ids are random; an id chosen to collide only
    /// costs extra reads, never trust.
    fn slot(&self, id: &KeyId) -> &AtomicU64 {
        let mut word = [0u8; 8];
        for (i, b) in id.as_bytes().iter().enumerate() {
            word[i % 8] ^= b;
        }
        let mixed = u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.slots[(mixed >> (64 - INVALIDATION_SLOTS.trailing_zeros())) as usize]
    }

    /// Notes that `id` was invalidated at `epoch`.
    fn mark(&self, id: &KeyId, epoch: u64) {
        self.slot(id).fetch_max(epoch, Ordering::AcqRel);
    }

    /// Whether `id` may have been invalidated after `epoch`.
    fn since(&self, id: &KeyId, epoch: u64) -> bool {
        self.slot(id).load(Ordering::Acquire) > epoch
    }
}

/// The shared validation cache.
pub(crate) struct KeyCache {
    /// Valid keys. A synchronous cache: a hit is answered without a future,
    /// so the middleware can authenticate a cached key inside `call`.
    entries: moka::sync::Cache<CacheKey, Entry>,
    /// Unknown ids/tokens → the epoch of their load. Kept apart so that a
    /// flood of forged, well-formed tokens cannot evict valid keys.
    negatives: moka::sync::Cache<CacheKey, u64>,
    /// Loads in flight, so that concurrent misses for one entry share one
    /// store read.
    flights: Mutex<HashMap<CacheKey, Flight>>,
    /// Bumped by every invalidation.
    epoch: AtomicU64,
    /// Entries loaded before this epoch were cleared wholesale.
    cleared: AtomicU64,
    /// Key id → epoch of its latest invalidation (or a later one), for as
    /// long as the cache lives: custom-validator entries are found by token
    /// digest, so only this tells that their key was invalidated, and loads
    /// in flight may insert an entry read before an invalidation.
    invalidated: Invalidations,
    /// The per-thread memos of recently served entries.
    front: Front,
    config: CacheConfig,
}

/// One shared load: every waiter gets its outcome, the error included.
type Flight = Arc<tokio::sync::OnceCell<Result<Entry, LoadError>>>;

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.entries.entry_count())
            .field("negatives", &self.negatives.entry_count())
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a load could not answer: the store or validator failed. Shared by
/// every waiter of that load.
pub(crate) type LoadError = Arc<dyn std::error::Error + Send + Sync>;

impl KeyCache {
    pub(crate) fn new(config: CacheConfig) -> KeyCache {
        KeyCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                .expire_after(Expiry)
                .build(),
            negatives: moka::sync::Cache::builder()
                .max_capacity(config.negative_capacity)
                .time_to_live(config.negative_ttl)
                .build(),
            flights: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            invalidated: Invalidations::new(),
            front: Front::new(),
            config,
        }
    }

    /// Whether key `id` was invalidated after a load that began at `epoch`.
    fn invalidated_since(&self, id: &KeyId, epoch: u64) -> bool {
        self.invalidated.since(id, epoch)
    }

    /// How far a hit can be trusted.
    fn freshness(&self, entry: &Entry) -> Freshness {
        if entry.epoch == self.epoch.load(Ordering::Acquire) {
            return Freshness::Fresh;
        }
        if let Some(record) = &entry.record
            && self.invalidated_since(&record.key.id, entry.epoch)
        {
            return Freshness::Invalidated;
        }
        if entry.epoch < self.cleared.load(Ordering::Acquire) {
            return Freshness::Cleared;
        }
        Freshness::Fresh
    }

    /// A negative entry still to be believed: not loaded before a clear, nor
    /// before an invalidation of its id.
    fn negative(&self, key: &CacheKey, now: Instant) -> Option<Entry> {
        let epoch = self.negatives.get(key)?;
        let stale = epoch < self.cleared.load(Ordering::Acquire)
            || matches!(key, CacheKey::Id(id) if self.invalidated_since(id, epoch));
        if stale {
            self.drop_stale(key, epoch);
            return None;
        }
        Some(Entry {
            record: None,
            epoch,
            // Not kept anywhere else: no later deadline to tell.
            deadline: now,
        })
    }

    /// The entry for `key` if the cache can answer for it right now (`now`),
    /// without the store: a fresh valid entry or a believed negative one.
    /// `None` means [`get_or_load`](KeyCache::get_or_load) must ask the
    /// store.
    pub(crate) fn lookup(&self, key: &CacheKey, now: Instant) -> Option<Entry> {
        if let Some(entry) = self.front.get(key, now) {
            return Some(entry);
        }
        // Read before the lookup: an invalidation that completes after this
        // point leaves the memo made below stale.
        let generation = self.front.generation();
        if let Some(entry) = self.entries.get(key) {
            return match self.freshness(&entry) {
                Freshness::Fresh => {
                    self.front.put(*key, generation, &entry, now);
                    Some(entry)
                }
                Freshness::Invalidated => {
                    self.drop_stale(key, entry.epoch);
                    None
                }
                Freshness::Cleared => None,
            };
        }
        self.negative(key, now)
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
    ) -> Result<Entry, LoadError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Arc<Record>>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        for _ in 0..3 {
            // An entry loaded before a clear: served only if the store
            // cannot answer.
            let mut cleared = None;
            if let Some(entry) = self.entries.get(&key) {
                match self.freshness(&entry) {
                    Freshness::Fresh => return Ok(entry),
                    Freshness::Cleared => cleared = Some(entry),
                    Freshness::Invalidated => self.drop_stale(&key, entry.epoch),
                }
            } else if let Some(entry) = self.negative(&key, Instant::now()) {
                return Ok(entry);
            }
            // A reload after a clear is a miss like any other: one load for
            // every concurrent request.
            let entry = match (self.load_shared(key, &load).await, cleared) {
                (Ok(entry), _) => entry,
                (Err(_), Some(stale)) => {
                    tracing::debug!("store unreachable: serving a cached entry until its TTL");
                    return Ok(stale);
                }
                (Err(e), None) => return Err(e),
            };
            if self.believed(&key, &entry) {
                return Ok(entry);
            }
            // Only what this stale load left: a newer load's entry stays.
            self.drop_stale(&key, entry.epoch);
        }
        // Invalidations keep racing this key: answer from the store directly.
        let epoch = self.epoch.load(Ordering::Acquire);
        let record = load().await.map_err(|e| Arc::new(e) as LoadError)?;
        Ok(Entry::loaded(record, epoch, &self.config))
    }

    /// Whether a loaded entry may be served: its key was not invalidated
    /// after its load began.
    fn believed(&self, key: &CacheKey, entry: &Entry) -> bool {
        match &entry.record {
            Some(_) => matches!(self.freshness(entry), Freshness::Fresh),
            None => match key {
                CacheKey::Id(id) => !self.invalidated_since(id, entry.epoch),
                CacheKey::Digest(_) => true,
            },
        }
    }

    /// Caches a loaded entry, valid or negative, in place of any older
    /// answer for `key` (of either kind), but never over an entry from a
    /// load that began later; a TTL of zero turns that kind of caching off.
    fn remember(&self, key: CacheKey, entry: &Entry) {
        let epoch = entry.epoch;
        let newer = |existing: Option<u64>| existing.is_some_and(|at| at > epoch);
        match &entry.record {
            Some(_) => {
                if !self.config.positive_ttl.is_zero() {
                    self.entries.entry(key).and_compute_with(|existing| {
                        if newer(existing.map(|e| e.into_value().epoch)) {
                            Op::Nop
                        } else {
                            Op::Put(entry.clone())
                        }
                    });
                }
                self.drop_negative(&key, epoch);
            }
            None => {
                if !self.config.negative_ttl.is_zero() {
                    self.negatives.entry(key).and_compute_with(|existing| {
                        if newer(existing.map(|e| e.into_value())) {
                            Op::Nop
                        } else {
                            Op::Put(epoch)
                        }
                    });
                }
                self.drop_entry(&key, epoch);
            }
        }
    }

    /// Drops the entries for `key`, valid or negative, from loads that
    /// began at or before `epoch`; an entry from a later load stays.
    fn drop_stale(&self, key: &CacheKey, epoch: u64) {
        self.drop_entry(key, epoch);
        self.drop_negative(key, epoch);
    }

    fn drop_entry(&self, key: &CacheKey, epoch: u64) {
        if self.entries.contains_key(key) {
            self.entries
                .entry(*key)
                .and_compute_with(|existing| match existing {
                    Some(e) if e.value().epoch <= epoch => Op::Remove,
                    _ => Op::Nop,
                });
        }
    }

    fn drop_negative(&self, key: &CacheKey, epoch: u64) {
        if self.negatives.contains_key(key) {
            self.negatives
                .entry(*key)
                .and_compute_with(|existing| match existing {
                    Some(e) if *e.value() <= epoch => Op::Remove,
                    _ => Op::Nop,
                });
        }
    }

    /// Runs `load` once for every concurrent caller with the same `key`,
    /// and caches what it finds. A caller that gives up (its request is
    /// dropped) hands the load over to the next waiter.
    async fn load_shared<F, Fut, E>(&self, key: CacheKey, load: &F) -> Result<Entry, LoadError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Arc<Record>>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let flight = Boarding::join(self, key);
        flight
            .cell
            .get_or_init(|| async {
                let epoch = self.epoch.load(Ordering::Acquire);
                match load().await {
                    Ok(record) => {
                        let entry = Entry::loaded(record, epoch, &self.config);
                        // A load that read the store before an invalidation
                        // is not cached (and if one completes in between,
                        // its epoch still gives it away).
                        if self.believed(&key, &entry) {
                            self.remember(key, &entry);
                        }
                        Ok(entry)
                    }
                    Err(e) => Err(Arc::new(e) as LoadError),
                }
            })
            .await
            .clone()
    }

    /// Drops every entry of key `id`, now and against any load in flight.
    pub(crate) fn invalidate(&self, id: KeyId) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.invalidated.mark(&id, epoch);
        self.drop_stale(&CacheKey::Id(id), epoch - 1);
        // A load in flight may have read the old record: requests from now
        // on start their own (its waiters load again when it ends).
        self.flights().remove(&CacheKey::Id(id));
        // Last, once nothing above can serve the old record any more.
        self.front.bump();
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
        self.front.bump();
    }

    /// Number of entries, valid and unknown (approximate until pending
    /// maintenance runs).
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count() + self.negatives.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expirations).
    pub(crate) fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
        self.negatives.run_pending_tasks();
    }
}

/// A caller's seat on a shared load. Leaving takes the load out of the
/// table once it is done, or once nobody is left waiting for it, so the
/// table holds only loads somebody is waiting for.
struct Boarding<'a> {
    cache: &'a KeyCache,
    key: CacheKey,
    cell: Flight,
}

impl<'a> Boarding<'a> {
    fn join(cache: &'a KeyCache, key: CacheKey) -> Boarding<'a> {
        let cell = cache
            .flights()
            .entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::OnceCell::new()))
            .clone();
        Boarding { cache, key, cell }
    }
}

impl Drop for Boarding<'_> {
    fn drop(&mut self) {
        let mut flights = self.cache.flights();
        let ours = flights
            .get(&self.key)
            .is_some_and(|cell| Arc::ptr_eq(cell, &self.cell));
        // Counted under the lock, which every new waiter takes to join: the
        // table's reference and this seat's mean nobody else is waiting.
        let alone = Arc::strong_count(&self.cell) == 2;
        if ours && (self.cell.initialized() || alone) {
            flights.remove(&self.key);
        }
    }
}

impl KeyCache {
    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Flight>> {
        // The table stays consistent whatever panicked while holding it.
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey::Digest([n; 32])
    }

    fn record(id: &str) -> Arc<Record> {
        Arc::new(Record::new(
            ApiKey::new(KeyId::parse(id).unwrap(), "owner"),
            None,
        ))
    }

    #[derive(Debug, thiserror::Error)]
    #[error("store down")]
    struct Down;

    fn cache() -> Arc<KeyCache> {
        Arc::new(KeyCache::new(CacheConfig::default()))
    }

    /// A task whose load of `key` never finishes, once it is in flight.
    async fn stuck_load(
        cache: &Arc<KeyCache>,
        key: CacheKey,
    ) -> tokio::task::JoinHandle<Option<Entry>> {
        let task = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(key, || async {
                        std::future::pending::<()>().await;
                        Ok::<_, Down>(None)
                    })
                    .await
                    .ok()
            })
        };
        until_a_load_is_in_flight(cache).await;
        task
    }

    async fn until_a_load_is_in_flight(cache: &KeyCache) {
        for _ in 0..1000 {
            if !cache.flights().is_empty() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("no load in flight");
    }

    /// Tasks waiting on a load.
    type Waiters = Vec<tokio::task::JoinHandle<Result<Entry, LoadError>>>;

    /// `n` concurrent misses of `key`, each task loading with `outcome` once
    /// the returned gate opens. Returns the number of loads run, the gate
    /// and the tasks.
    fn gated_misses(
        cache: &Arc<KeyCache>,
        key: CacheKey,
        n: usize,
        outcome: fn() -> Result<Option<Arc<Record>>, Down>,
    ) -> (Arc<AtomicUsize>, tokio::sync::watch::Sender<bool>, Waiters) {
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let tasks = (0..n)
            .map(|_| {
                let (cache, loads, gate) = (cache.clone(), loads.clone(), gate.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(key, || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            let mut gate = gate.clone();
                            async move {
                                gate.wait_for(|open| *open).await.unwrap();
                                outcome()
                            }
                        })
                        .await
                })
            })
            .collect();
        (loads, release, tasks)
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load_and_leave_no_flight_behind() {
        let cache = cache();
        let (loads, release, tasks) =
            gated_misses(&cache, key(1), 20, || Ok(Some(record("aaaaaaaaaaaaaaa1"))));
        // Current-thread runtime: every task runs up to the gate first.
        tokio::task::yield_now().await;
        assert_eq!(cache.flights().len(), 1, "all 20 wait on one load");
        release.send(true).unwrap();
        for task in tasks {
            assert!(
                task.await
                    .unwrap()
                    .is_ok_and(|entry| entry.record.is_some())
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.flights().len(), 0);
        assert!(
            cache
                .lookup(&key(1), Instant::now())
                .is_some_and(|e| e.record.is_some())
        );
    }

    #[tokio::test]
    async fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
        let cache = cache();
        let (loads, release, tasks) = gated_misses(&cache, key(2), 5, || Err(Down));
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        for task in tasks {
            assert!(
                task.await.unwrap().is_err(),
                "every waiter sees the failure"
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.flights().len(), 0);
        assert!(
            cache.lookup(&key(2), Instant::now()).is_none(),
            "errors are not cached"
        );
        let entry = cache
            .get_or_load(key(2), || async { Ok::<_, Down>(None) })
            .await
            .unwrap();
        assert!(entry.record.is_none(), "the next request asks again");
    }

    #[tokio::test]
    async fn a_dropped_loader_hands_the_load_to_the_next_waiter() {
        let cache = cache();
        let first = stuck_load(&cache, key(3)).await;
        let second = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(key(3), || async {
                        Ok::<_, Down>(Some(record("aaaaaaaaaaaaaaa3")))
                    })
                    .await
                    .map(|entry| entry.record.is_some())
            })
        };
        tokio::task::yield_now().await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert!(
            second.await.unwrap().unwrap(),
            "the waiter loaded it itself"
        );
        assert_eq!(cache.flights().len(), 0);
    }

    #[tokio::test]
    async fn a_load_abandoned_by_everyone_leaves_no_flight_behind() {
        let cache = cache();
        let task = stuck_load(&cache, key(4)).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(cache.flights().len(), 0);
    }

    #[tokio::test]
    async fn a_load_that_raced_an_invalidation_is_not_served() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaaa5").unwrap();
        let loads = AtomicUsize::new(0);
        let entry = cache
            .get_or_load(CacheKey::Id(id), || {
                let n = loads.fetch_add(1, Ordering::SeqCst);
                // The first load reads the old record, then the key changes.
                if n == 0 {
                    cache.invalidate(id);
                }
                async move {
                    let mut r = Record::new(ApiKey::new(id, "owner"), None);
                    r.key.name = format!("read {n}");
                    Ok::<_, Down>(Some(Arc::new(r)))
                }
            })
            .await
            .unwrap();
        assert_eq!(entry.record.unwrap().key.name, "read 1");
        assert_eq!(
            cache
                .lookup(&CacheKey::Id(id), Instant::now())
                .unwrap()
                .record
                .unwrap()
                .key
                .name,
            "read 1"
        );
    }

    #[tokio::test]
    async fn a_negative_entry_loaded_before_an_invalidation_is_not_believed() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaaa6").unwrap();
        let entry = cache
            .get_or_load(CacheKey::Id(id), || async { Ok::<_, Down>(None) })
            .await
            .unwrap();
        assert!(entry.record.is_none());
        assert!(
            cache.lookup(&CacheKey::Id(id), Instant::now()).is_some(),
            "cached as unknown"
        );
        cache.invalidate(id);
        assert!(cache.lookup(&CacheKey::Id(id), Instant::now()).is_none());
    }

    /// A valid entry for key id `id`, loaded and then found twice through
    /// [`KeyCache::lookup`], which makes this thread's memo of it.
    async fn served_twice(cache: &KeyCache, id: KeyId) -> CacheKey {
        let key = CacheKey::Id(id);
        cache
            .get_or_load(key, || async move {
                Ok::<_, Down>(Some(Arc::new(Record::new(ApiKey::new(id, "owner"), None))))
            })
            .await
            .unwrap();
        assert!(cache.lookup(&key, Instant::now()).is_some());
        assert!(cache.lookup(&key, Instant::now()).is_some());
        assert!(cache.front.get(&key, Instant::now()).is_some());
        key
    }

    #[tokio::test]
    async fn a_key_becomes_a_memo_the_second_time_its_slot_sees_it() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaab7").unwrap();
        let key = CacheKey::Id(id);
        cache
            .get_or_load(key, || async move {
                Ok::<_, Down>(Some(Arc::new(Record::new(ApiKey::new(id, "owner"), None))))
            })
            .await
            .unwrap();
        assert!(cache.lookup(&key, Instant::now()).is_some());
        assert!(
            cache.front.get(&key, Instant::now()).is_none(),
            "once: only seen"
        );
        assert!(cache.lookup(&key, Instant::now()).is_some());
        assert!(
            cache.front.get(&key, Instant::now()).is_some(),
            "twice: a memo"
        );
    }

    #[tokio::test]
    async fn a_served_key_is_found_in_the_threads_memo_until_an_invalidation() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaaa7").unwrap();
        let key = served_twice(&cache, id).await;
        // Out of moka behind the cache's back: only the memo can answer now.
        cache.entries.invalidate(&key);
        assert!(cache.entries.get(&key).is_none());
        assert!(
            cache.lookup(&key, Instant::now()).is_some(),
            "answered from the memo"
        );
        cache.invalidate(id);
        assert!(cache.front.get(&key, Instant::now()).is_none());
        assert!(cache.lookup(&key, Instant::now()).is_none());
    }

    #[tokio::test]
    async fn a_clear_makes_every_memo_stale() {
        let cache = cache();
        let key = served_twice(&cache, KeyId::parse("aaaaaaaaaaaaaaa8").unwrap()).await;
        assert!(cache.front.get(&key, Instant::now()).is_some());
        cache.clear();
        assert!(cache.front.get(&key, Instant::now()).is_none());
        assert!(
            cache.lookup(&key, Instant::now()).is_none(),
            "a cleared entry is read from the store again"
        );
    }

    #[tokio::test]
    async fn a_memo_made_from_a_lookup_that_began_before_an_invalidation_is_never_used() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaaa9").unwrap();
        let key = served_twice(&cache, id).await;
        let entry = cache.entries.get(&key).unwrap();
        // A lookup reads the generation, then an invalidation completes,
        // then the lookup stores what it found (the old record).
        let generation = cache.front.generation();
        cache.invalidate(id);
        cache.front.put(key, generation, &entry, Instant::now());
        assert!(cache.front.get(&key, Instant::now()).is_none());
    }

    #[tokio::test]
    async fn an_invalidation_on_one_thread_makes_other_threads_memos_stale() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaab1").unwrap();
        let key = served_twice(&cache, id).await;
        // Another thread serves the key (and makes its own memo).
        let (memo_made, made) = std::sync::mpsc::channel();
        let (invalidated, wait) = std::sync::mpsc::channel::<()>();
        let other = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for _ in 0..2 {
                    assert!(cache.lookup(&key, Instant::now()).is_some());
                }
                cache.entries.invalidate(&key);
                memo_made
                    .send(cache.front.get(&key, Instant::now()).is_some())
                    .unwrap();
                wait.recv().unwrap();
                cache.front.get(&key, Instant::now()).is_some()
            })
        };
        assert!(made.recv().unwrap(), "the other thread has its memo");
        cache.invalidate(id);
        invalidated.send(()).unwrap();
        assert!(!other.join().unwrap(), "the other thread's memo went stale");
    }

    #[tokio::test]
    async fn a_memo_never_outlives_its_entry_or_the_keys_expiry() {
        let cache = Arc::new(KeyCache::new(CacheConfig {
            positive_ttl: Duration::from_secs(30),
            ..CacheConfig::default()
        }));
        let id = KeyId::parse("aaaaaaaaaaaaaab2").unwrap();
        let key = served_twice(&cache, id).await;
        let now = Instant::now();
        assert!(cache.front.get(&key, now).is_some());
        assert!(
            cache
                .front
                .get(&key, now + Duration::from_secs(31))
                .is_none()
        );

        // A key expiring in 20 s, before the 30 s TTL: its entry, and so its
        // memo, ends then.
        let soon = KeyId::parse("aaaaaaaaaaaaaab3").unwrap();
        let key = CacheKey::Id(soon);
        cache
            .get_or_load(key, || async move {
                let mut api_key = ApiKey::new(soon, "owner");
                api_key.expires_at = Some(OffsetDateTime::now_utc() + Duration::from_secs(20));
                Ok::<_, Down>(Some(Arc::new(Record::new(api_key, None))))
            })
            .await
            .unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            assert!(cache.lookup(&key, now).is_some());
        }
        assert!(cache.front.get(&key, now).is_some());
        assert!(
            cache
                .front
                .get(&key, now + Duration::from_secs(21))
                .is_none()
        );
    }

    #[tokio::test]
    async fn memos_belong_to_their_cache() {
        let (one, two) = (cache(), cache());
        let key = served_twice(&one, KeyId::parse("aaaaaaaaaaaaaab4").unwrap()).await;
        assert!(one.front.get(&key, Instant::now()).is_some());
        assert!(two.front.get(&key, Instant::now()).is_none());
        assert!(two.lookup(&key, Instant::now()).is_none());
    }

    #[tokio::test]
    async fn unknown_ids_are_never_memos() {
        let cache = cache();
        let key = CacheKey::Id(KeyId::parse("aaaaaaaaaaaaaab5").unwrap());
        cache
            .get_or_load(key, || async { Ok::<_, Down>(None) })
            .await
            .unwrap();
        let entry = cache.lookup(&key, Instant::now()).unwrap();
        assert!(entry.record.is_none());
        cache
            .front
            .put(key, cache.front.generation(), &entry, Instant::now());
        assert!(cache.front.get(&key, Instant::now()).is_none());
    }

    #[tokio::test]
    async fn a_stale_load_neither_overwrites_nor_removes_a_newer_loads_entry() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaac1").unwrap();
        let key = CacheKey::Id(id);
        let named = move |name: &str| {
            let mut r = Record::new(ApiKey::new(id, "owner"), None);
            r.key.name = name.to_owned();
            Ok::<_, Down>(Some(Arc::new(r)))
        };
        // A load reads the old record, then stalls.
        let (release, gate) = tokio::sync::watch::channel(false);
        let stale = {
            let (cache, gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(key, || {
                        let mut gate = gate.clone();
                        async move {
                            let read = named("old");
                            if gate.wait_for(|open| *open).await.is_ok() {
                                return read;
                            }
                            named("new")
                        }
                    })
                    .await
                    .map(|entry| entry.record.unwrap().key.name.clone())
            })
        };
        until_a_load_is_in_flight(&cache).await;
        // The key changes; a request that starts now loads the new record
        // without waiting for the stale load.
        cache.invalidate(id);
        let fresh = tokio::time::timeout(
            Duration::from_secs(5),
            cache.get_or_load(key, || async { named("new") }),
        )
        .await
        .expect("a request after the invalidation waited for the stale load")
        .unwrap();
        assert_eq!(fresh.record.unwrap().key.name, "new");
        // The stale load ends: its caller gets the new entry, which stays.
        drop(gate);
        release.send(true).unwrap();
        assert_eq!(stale.await.unwrap().unwrap(), "new");
        let cached = cache
            .entries
            .get(&key)
            .expect("the newer entry was removed");
        assert_eq!(cached.record.unwrap().key.name, "new");
        assert_eq!(
            cache
                .lookup(&key, Instant::now())
                .unwrap()
                .record
                .unwrap()
                .key
                .name,
            "new"
        );
    }

    #[tokio::test]
    async fn a_stale_entry_never_replaces_a_newer_one() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaac2").unwrap();
        let key = CacheKey::Id(id);
        let loaded = |name: &str, epoch| {
            let mut r = Record::new(ApiKey::new(id, "owner"), None);
            r.key.name = name.to_owned();
            Entry::loaded(Some(Arc::new(r)), epoch, &cache.config)
        };
        cache.invalidate(id);
        cache.remember(key, &loaded("new", 1));
        // A load that began before the invalidation ends now.
        cache.remember(key, &loaded("old", 0));
        assert_eq!(
            cache.entries.get(&key).unwrap().record.unwrap().key.name,
            "new"
        );
        cache.drop_stale(&key, 0);
        assert!(
            cache.entries.get(&key).is_some(),
            "only older entries are dropped"
        );
        cache.drop_stale(&key, 1);
        assert!(cache.entries.get(&key).is_none());
    }

    #[tokio::test]
    async fn a_key_gone_after_a_clear_is_remembered_as_unknown_and_its_entry_dropped() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaac5").unwrap();
        let key = served_twice(&cache, id).await;
        cache.clear();
        let entry = cache
            .get_or_load(key, || async { Ok::<_, Down>(None) })
            .await
            .unwrap();
        assert!(entry.record.is_none());
        assert!(
            cache.entries.get(&key).is_none(),
            "the cleared entry is gone"
        );
        assert!(
            cache
                .lookup(&key, Instant::now())
                .is_some_and(|e| e.record.is_none())
        );
    }

    #[test]
    fn a_replaced_entry_gets_its_own_deadline() {
        use moka::Expiry as _;
        let now = Instant::now();
        let id = KeyId::parse("aaaaaaaaaaaaaac3").unwrap();
        let entry = |ttl| Entry {
            record: Some(record("aaaaaaaaaaaaaac3")),
            epoch: 0,
            deadline: now + ttl,
        };
        let key = CacheKey::Id(id);
        let (long, short) = (Duration::from_secs(30), Duration::from_secs(2));
        assert_eq!(
            Expiry.expire_after_create(&key, &entry(long), now),
            Some(long)
        );
        // Re-inserted with a shorter deadline (the key now expires sooner).
        assert_eq!(
            Expiry.expire_after_update(&key, &entry(short), now, Some(long)),
            Some(short)
        );
        // And with a longer one (a reload after the TTL was nearly spent).
        assert_eq!(
            Expiry.expire_after_update(&key, &entry(long), now, Some(short)),
            Some(long)
        );
        // A read keeps the deadline.
        assert_eq!(
            Expiry.expire_after_read(&key, &entry(long), now, Some(short), now),
            Some(short)
        );
    }

    #[tokio::test]
    async fn a_replaced_entry_is_not_served_past_its_own_deadline() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaac4").unwrap();
        let key = CacheKey::Id(id);
        let entry = |ttl: Duration, name: &str| {
            let mut r = Record::new(ApiKey::new(id, "owner"), None);
            r.key.name = name.to_owned();
            let now = Instant::now();
            Entry {
                record: Some(Arc::new(r)),
                epoch: 0,
                deadline: now + ttl,
            }
        };
        cache.remember(key, &entry(Duration::from_secs(30), "long"));
        cache.remember(key, &entry(Duration::from_millis(100), "short"));
        assert!(cache.entries.get(&key).is_some());
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            cache.entries.get(&key).is_none(),
            "served past the re-inserted entry's deadline"
        );
    }

    #[test]
    fn invalidations_are_never_forgotten() {
        let cache = KeyCache::new(CacheConfig {
            capacity: 10,
            ..CacheConfig::default()
        });
        let id = KeyId::parse("legacy0000000001").unwrap();
        cache.invalidate(id);
        for n in 0..100_000 {
            cache.invalidate(KeyId::parse(&format!("o{n:015}")).unwrap());
        }
        assert!(cache.invalidated_since(&id, 0));
        assert!(!cache.invalidated_since(&id, cache.epoch.load(Ordering::SeqCst)));
    }

    #[test]
    fn expiries_convert_to_the_system_clock_exactly() {
        let now = OffsetDateTime::now_utc();
        for at in [
            now,
            now + Duration::from_secs(90 * 86_400),
            now - Duration::from_nanos(1),
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH - Duration::from_secs(86_400 * 3650),
            time::macros::datetime!(9999-12-31 23:59:59.999_999_999 UTC),
        ] {
            assert_eq!(system_time(at), SystemTime::from(at), "{at}");
            let record = Record::new(
                {
                    let mut key = ApiKey::new(KeyId::parse("aaaaaaaaaaaaaab6").unwrap(), "o");
                    key.expires_at = Some(at);
                    key
                },
                None,
            );
            assert_eq!(record.expiry, Some(SystemTime::from(at)));
        }
    }
}
