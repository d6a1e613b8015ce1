//! Single flight: concurrent misses for one entry share one load, and a
//! caller that gives up hands the load over to the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::entry::{CacheKey, Entry};

/// Why a load could not answer: the store or validator failed. Shared by
/// every waiter of that load.
pub(crate) type LoadError = Arc<dyn std::error::Error + Send + Sync>;

/// One shared load: every waiter gets its outcome, the error included.
pub(super) type Flight = Arc<tokio::sync::OnceCell<Result<Entry, LoadError>>>;

/// The loads in flight, by entry, so that concurrent misses for one entry
/// share one store read.
#[derive(Default)]
pub(super) struct Flights(Mutex<HashMap<CacheKey, Flight>>);

impl Flights {
    /// The table, locked.
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Flight>> {
        // The table stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A caller's seat on a shared load. Leaving takes the load out of the
/// table once it is done, or once nobody is left waiting for it, so the
/// table holds only loads somebody is waiting for.
pub(super) struct Boarding<'a> {
    flights: &'a Flights,
    key: CacheKey,
    /// The shared load this seat waits on.
    pub(super) cell: Flight,
}

impl<'a> Boarding<'a> {
    /// Takes a seat on the load of `key`, starting one if none is in
    /// flight.
    pub(super) fn join(flights: &'a Flights, key: CacheKey) -> Boarding<'a> {
        let cell = flights
            .lock()
            .entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::OnceCell::new()))
            .clone();
        Boarding { flights, key, cell }
    }
}

impl Drop for Boarding<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::verify::cache::test_support::{Down, cache, record, until_a_load_is_in_flight};
    use crate::verify::cache::{KeyCache, Record};

    /// The entry of a custom-validator token whose MAC is `n` repeated.
    fn key(n: u8) -> CacheKey {
        CacheKey::Digest([n; 32])
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
}
