//! The shared cache: moka's, with keygate's coalesced loads, invalidation
//! epochs and clears (see the [module docs](super)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use moka::ops::compute::Op;

use crate::token::KeyId;

use super::config::CacheConfig;
use super::entry::{CacheKey, Entry, Expiry, Freshness, Record};
use super::flight::{Boarding, Flight, Flights, LoadError};
use super::front::Front;
use super::invalidation::Invalidations;

/// How long a request waits for a reload already in flight of an entry
/// loaded before a [`clear`](KeyCache::clear) before it is served that
/// entry (as when the store is unreachable). The reload goes on.
pub(crate) const STALE_RELOAD_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// A reload after a clear that took longer than [`STALE_RELOAD_WAIT`].
#[derive(Debug, thiserror::Error)]
#[error("the store did not answer within {STALE_RELOAD_WAIT:?}")]
struct ReloadTimedOut;

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
    flights: Flights,
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

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.entries.entry_count())
            .field("negatives", &self.negatives.entry_count())
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish()
    }
}

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
            flights: Flights::default(),
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
    /// runs out, and so it is to the requests that find that reload in
    /// flight for longer than [`STALE_RELOAD_WAIT`]: a key that was valid a
    /// moment ago keeps working through an outage for at most the TTL, with
    /// one request at a time waiting for the store, while anything the
    /// store can answer is answered fresh.
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
            // every concurrent request. With an entry to fall back on, a
            // request that finds the reload already in flight waits for it
            // at most `STALE_RELOAD_WAIT`: a store that cannot be reached
            // may take its whole connect timeout (5 s for PostgreSQL) to say
            // so, and the requests of a key that was valid a moment ago must
            // not all wait that long. The request that started the reload
            // waits for it (giving up would cancel it for everyone).
            let joining = cleared.is_some() && self.flights().contains_key(&key);
            let loaded = if joining {
                match tokio::time::timeout(STALE_RELOAD_WAIT, self.load_shared(key, &load)).await {
                    Ok(loaded) => loaded,
                    Err(_) => Err(Arc::new(ReloadTimedOut) as LoadError),
                }
            } else {
                self.load_shared(key, &load).await
            };
            let entry = match (loaded, cleared) {
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
        let flight = Boarding::join(&self.flights, key);
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

impl KeyCache {
    /// The loads in flight.
    pub(super) fn flights(&self) -> MutexGuard<'_, HashMap<CacheKey, Flight>> {
        self.flights.lock()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::key::ApiKey;
    use crate::verify::cache::test_support::{Down, cache, until_a_load_is_in_flight};

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

    #[tokio::test]
    async fn a_cleared_entry_is_served_without_waiting_for_a_store_that_hangs() {
        let cache = cache();
        let id = KeyId::parse("aaaaaaaaaaaaaac6").unwrap();
        let key = served_twice(&cache, id).await;
        cache.clear();
        let cache = Arc::new(cache);
        let loads = Arc::new(AtomicUsize::new(0));
        // A store that never answers (a server gone without a reset): the
        // first request's reload hangs...
        let first = {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(key, || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<Result<Option<Arc<Record>>, Down>>()
                    })
                    .await
                    .map(|_| ())
            })
        };
        until_a_load_is_in_flight(&cache).await;
        // ...and the next one, finding it in flight, does not wait for it
        // (without the bounded wait this would never return).
        let served = cache.get_or_load(key, || {
            loads.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<Option<Arc<Record>>, Down>>()
        });
        let entry = tokio::time::timeout(Duration::from_secs(60), served)
            .await
            .expect("the request waited for a store that never answers")
            .expect("the cleared entry is served");
        assert!(entry.record.is_some());
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "one reload, still in flight"
        );
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        // A store that answers in time is believed: a key gone is gone.
        let entry = cache
            .get_or_load(key, || async { Ok::<_, Down>(None) })
            .await
            .unwrap();
        assert!(
            entry.record.is_none(),
            "a prompt answer wins over the stale entry"
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
}
