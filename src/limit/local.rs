//! [`LocalLimiter`]: the buckets in this process's memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::token::KeyId;

use super::gcra::{Tat, evaluate};
use super::name::LimitName;
use super::outcome::LimitOutcome;
use super::policy::{MAX_RATE_LIMITS, RateLimit};
use super::request::LimitRequest;

/// The default maximum number of buckets a [`LocalLimiter`] keeps.
pub const DEFAULT_MAX_BUCKETS: usize = 1_000_000;

/// The most shards; fewer for a small maximum (at least 8 buckets each).
const MAX_SHARDS: usize = 64;

/// Nanoseconds: the local limiter's unit of time.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Rate-limit buckets in this process: exact for one instance, and the
/// default.
///
/// [`check`](LocalLimiter::check) is synchronous and allocation-free: the
/// buckets live in sharded `Mutex<HashMap>`s, keyed by the key's id (or a
/// 128-bit keyed hash of the owner, for a shared limit) and the limit's
/// name, and a request's shards are locked in ascending order, so requests
/// touching several buckets are atomic (all or nothing) and cannot deadlock.
///
/// Memory is bounded: a bucket whose theoretical arrival time has passed is
/// equal to a fresh one, so it is dropped. When a shard is over its share
/// of the maximum ([`DEFAULT_MAX_BUCKETS`] unless
/// [`with_max_buckets`](LocalLimiter::with_max_buckets)), its idle buckets
/// are removed; if it is still above seven eighths of its share, the
/// buckets nearest to full are forgotten too (a forgotten bucket starts
/// fresh: the only inexactness, and only past the maximum). Between
/// requests the limiter never holds more than the maximum.
/// [`sweep`](LocalLimiter::sweep) removes every idle bucket, for a periodic
/// task.
///
/// Cloning is cheap and clones share the buckets.
///
/// ```
/// use keygate::{Keygate, LocalLimiter, MemoryStore, Pepper};
///
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .limiter(LocalLimiter::new()) // the default
///     .build();
/// assert!(keygate.is_ok());
/// ```
#[derive(Clone)]
pub struct LocalLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// Instants are counted in nanoseconds from here.
    epoch: Instant,
    shards: Box<[Mutex<Shard>]>,
    /// The most buckets one shard holds between requests.
    per_shard: usize,
    /// Hashes buckets' keys (once per bucket and check: the shard and the
    /// map both use that hash); random per limiter. Not the SipHash of
    /// `RandomState`: a bucket key holds a key id the server generated (or
    /// the keyed owner hash below), which no client chooses, so flooding
    /// one map slot takes no more than a fast seeded hash resists, and it
    /// costs a fraction.
    hasher: foldhash::fast::RandomState,
    /// Hashes owners (SipHash, random per limiter); with `hasher2`, 128 bits.
    owner_hasher: RandomState,
    /// A second, independent hasher for the owner hash's other 64 bits.
    hasher2: RandomState,
}

/// A shard's map: the key's hash is computed once, by [`Inner::hashed`],
/// and handed through.
type Shard = HashMap<Hashed, Bucket, BuildHasherDefault<PassThrough>>;

/// A bucket key with its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hashed {
    hash: u64,
    key: BucketKey,
}

impl Hash for Hashed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher of [`Shard`]s: the precomputed hash, as it is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Hashed` is hashed here, through `write_u64`; fold anything
        // else in all the same.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Whose bucket: a key's, or an owner's (by a 128-bit keyed hash, so that
/// no owner string is cloned per check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    Key(KeyId),
    Owner(u64, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BucketKey {
    holder: Holder,
    name: LimitName,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tat: Tat,
    /// The limit the TAT's fraction is counted in.
    limit: u64,
}

impl LocalLimiter {
    /// A limiter keeping at most [`DEFAULT_MAX_BUCKETS`] buckets.
    ///
    /// ```
    /// use keygate::{DEFAULT_MAX_BUCKETS, LocalLimiter};
    ///
    /// let limiter = LocalLimiter::new();
    /// assert_eq!(limiter.max_buckets(), DEFAULT_MAX_BUCKETS);
    /// assert!(limiter.is_empty());
    /// ```
    pub fn new() -> LocalLimiter {
        LocalLimiter::with_max_buckets(DEFAULT_MAX_BUCKETS)
    }

    /// A limiter keeping at most `max_buckets` buckets (at least 1) between
    /// requests.
    ///
    /// ```
    /// use keygate::LocalLimiter;
    ///
    /// // Split evenly between shards: at most the number asked for.
    /// let limiter = LocalLimiter::with_max_buckets(100);
    /// assert!(limiter.max_buckets() <= 100 && limiter.max_buckets() >= 90);
    /// assert_eq!(LocalLimiter::with_max_buckets(0).max_buckets(), 1); // at least one
    /// ```
    pub fn with_max_buckets(max_buckets: usize) -> LocalLimiter {
        let max_buckets = max_buckets.max(1);
        let shards = (max_buckets / 8).clamp(1, MAX_SHARDS);
        LocalLimiter {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                per_shard: max_buckets / shards,
                hasher: foldhash::fast::RandomState::default(),
                owner_hasher: RandomState::new(),
                hasher2: RandomState::new(),
            }),
        }
    }

    /// Counts `request` at `now`: admitted only if every limit's bucket has
    /// budget for its cost, and then the cost is taken from each; a refusal
    /// changes no bucket. A cost of 0, or a key without limits, is
    /// [`LimitOutcome::NotCounted`].
    ///
    /// `now` is normally `Instant::now()`; instants before the limiter was
    /// created count as its creation.
    ///
    /// ```
    /// use std::time::Instant;
    ///
    /// use keygate::{KeyId, LimitOutcome, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let key = KeyId::parse("AAAAAAAAAAAAAAAA")?;
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 2, "period": "1h"}]"#)?;
    /// let limiter = LocalLimiter::new();
    /// let now = Instant::now();
    /// let request = LimitRequest::new(key, "alice", &limits);
    /// assert!(limiter.check(&request, now).is_allowed());
    /// assert!(limiter.check(&request, now).is_allowed());
    /// assert!(matches!(limiter.check(&request, now), LimitOutcome::Refused { .. }));
    /// assert!(matches!(limiter.check(&request.cost(0), now), LimitOutcome::NotCounted));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self, request: &LimitRequest<'_>, now: Instant) -> LimitOutcome {
        if !request.is_counted() {
            return LimitOutcome::NotCounted;
        }
        let inner = &*self.inner;
        let now = inner.units(now);
        let limits = &request.limits()[..request.limits().len().min(MAX_RATE_LIMITS)];
        if let [limit] = limits {
            return inner.check_one(request, limit, now);
        }
        let owner = limits
            .iter()
            .any(|l| l.is_shared())
            .then(|| inner.owner_hash(request.owner));

        // Each limit's bucket and shard, and the distinct shards in
        // ascending order: the one locking order.
        let mut keys = [Hashed {
            hash: 0,
            key: BucketKey {
                holder: Holder::Key(request.key),
                name: LimitName::PLACEHOLDER,
            },
        }; MAX_RATE_LIMITS];
        let mut shard_of = [0usize; MAX_RATE_LIMITS];
        let mut order = [usize::MAX; MAX_RATE_LIMITS];
        let mut distinct = 0;
        for (i, limit) in limits.iter().enumerate() {
            let holder = match owner {
                Some((a, b)) if limit.is_shared() => Holder::Owner(a, b),
                _ => Holder::Key(request.key),
            };
            keys[i] = inner.hashed(BucketKey {
                holder,
                name: limit.name(),
            });
            shard_of[i] = inner.shard_index(&keys[i]);
            if !order[..distinct].contains(&shard_of[i]) {
                order[distinct] = shard_of[i];
                distinct += 1;
            }
        }
        order[..distinct].sort_unstable();
        let mut guards: [Option<MutexGuard<'_, Shard>>; MAX_RATE_LIMITS] =
            [const { None }; MAX_RATE_LIMITS];
        for (slot, &shard) in guards.iter_mut().zip(&order[..distinct]) {
            *slot = Some(inner.lock(shard));
        }
        let slot_of = |shard: usize| {
            order[..distinct]
                .iter()
                .position(|&s| s == shard)
                .unwrap_or(0)
        };

        let mut tats = [Tat::at(0); MAX_RATE_LIMITS];
        for (i, limit) in limits.iter().enumerate() {
            let map = guards[slot_of(shard_of[i])].as_deref();
            let stored = map.and_then(|m| m.get(&keys[i]));
            tats[i] = stored
                .map(|b| b.tat.rescaled(b.limit, limit.limit()))
                .unwrap_or(Tat::at(0))
                .or_now(now);
        }
        let tats = &mut tats[..limits.len()];
        let outcome = evaluate(limits, tats, now, request.cost, NANOS_PER_SEC);
        if outcome.is_allowed() {
            for (i, limit) in limits.iter().enumerate() {
                if let Some(map) = guards[slot_of(shard_of[i])].as_deref_mut() {
                    map.insert(
                        keys[i],
                        Bucket {
                            tat: tats[i],
                            limit: limit.limit(),
                        },
                    );
                }
            }
            for map in guards[..distinct].iter_mut().flatten() {
                if map.len() > inner.per_shard {
                    inner.shrink(map, now);
                }
            }
        }
        outcome
    }

    /// Removes every idle bucket (one whose TAT has passed at `now`: it is
    /// equal to a fresh one). Returns how many were removed.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let key = KeyId::parse("AAAAAAAAAAAAAAAA")?;
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 10, "period": "1s"}]"#)?;
    /// let limiter = LocalLimiter::new();
    /// let now = Instant::now();
    /// limiter.check(&LimitRequest::new(key, "alice", &limits), now);
    /// assert_eq!(limiter.len(), 1);
    /// assert_eq!(limiter.sweep(now + Duration::from_secs(2)), 1); // refilled: idle
    /// assert!(limiter.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sweep(&self, now: Instant) -> usize {
        let now = self.inner.units(now);
        let mut removed = 0;
        for shard in &self.inner.shards {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, bucket| bucket.tat > Tat::at(now));
            removed += before - map.len();
        }
        removed
    }

    /// How many buckets are held.
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 5, "period": "60s"}, {"name": "b", "limit": 50, "period": "1h"}]"#)?;
    /// let limiter = LocalLimiter::new();
    /// limiter.check(&LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits), std::time::Instant::now());
    /// assert_eq!(limiter.len(), 2); // one bucket per limit
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether no bucket is held.
    ///
    /// ```
    /// use keygate::LocalLimiter;
    ///
    /// assert!(LocalLimiter::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most buckets held between requests.
    ///
    /// ```
    /// use keygate::LocalLimiter;
    ///
    /// let max = LocalLimiter::with_max_buckets(10_000).max_buckets();
    /// assert!((9_900..=10_000).contains(&max)); // a whole number per shard
    /// ```
    pub fn max_buckets(&self) -> usize {
        self.inner.per_shard * self.inner.shards.len()
    }
}

impl Inner {
    /// [`LocalLimiter::check`] for a key with one limit, the common case:
    /// one bucket, one shard, one probe of its map.
    fn check_one(&self, request: &LimitRequest<'_>, limit: &RateLimit, now: u64) -> LimitOutcome {
        let holder = match limit.is_shared() {
            true => {
                let (a, b) = self.owner_hash(request.owner);
                Holder::Owner(a, b)
            }
            false => Holder::Key(request.key),
        };
        let key = self.hashed(BucketKey {
            holder,
            name: limit.name(),
        });
        let mut map = self.lock(self.shard_index(&key));
        let limits = std::slice::from_ref(limit);
        let outcome = match map.entry(key) {
            Entry::Occupied(mut stored) => {
                let bucket = stored.get_mut();
                let mut tats = [bucket.tat.rescaled(bucket.limit, limit.limit()).or_now(now)];
                let outcome = evaluate(limits, &mut tats, now, request.cost, NANOS_PER_SEC);
                if outcome.is_allowed() {
                    *bucket = Bucket {
                        tat: tats[0],
                        limit: limit.limit(),
                    };
                }
                outcome
            }
            Entry::Vacant(vacant) => {
                let mut tats = [Tat::at(now)];
                let outcome = evaluate(limits, &mut tats, now, request.cost, NANOS_PER_SEC);
                if outcome.is_allowed() {
                    vacant.insert(Bucket {
                        tat: tats[0],
                        limit: limit.limit(),
                    });
                }
                outcome
            }
        };
        if map.len() > self.per_shard {
            self.shrink(&mut map, now);
        }
        outcome
    }

    /// Locks a shard. A bucket is written only after a decision, so a
    /// panic elsewhere leaves the map consistent: poisoning is ignored.
    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn units(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    fn owner_hash(&self, owner: &str) -> (u64, u64) {
        (
            self.owner_hasher.hash_one(owner),
            self.hasher2.hash_one(owner),
        )
    }

    fn hashed(&self, key: BucketKey) -> Hashed {
        Hashed {
            hash: self.hasher.hash_one(key),
            key,
        }
    }

    fn shard_index(&self, key: &Hashed) -> usize {
        // Bits 32..64: the map inside the shard indexes by the low bits and
        // tags by the top 7, so the shard must not be picked by either
        // alone. The remainder is below the shard count, a usize.
        ((key.hash >> 32) % self.shards.len() as u64) as usize
    }

    /// Brings an over-full shard to at most seven eighths of its share:
    /// idle buckets first, then those nearest to full.
    fn shrink(&self, map: &mut Shard, now: u64) {
        map.retain(|_, bucket| bucket.tat > Tat::at(now));
        let target = self.per_shard - self.per_shard / 8;
        if map.len() <= target {
            return;
        }
        // The rare path past the maximum may allocate.
        let mut tats: Vec<Tat> = map.values().map(|b| b.tat).collect();
        let excess = map.len() - target;
        let (_, &mut threshold, _) = tats.select_nth_unstable(excess - 1);
        let mut to_remove = excess;
        map.retain(|_, bucket| {
            let remove = to_remove > 0 && bucket.tat <= threshold;
            to_remove -= usize::from(remove);
            !remove
        });
    }
}

impl Default for LocalLimiter {
    fn default() -> LocalLimiter {
        LocalLimiter::new()
    }
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("shards", &self.inner.shards.len())
            .field("max_buckets", &self.max_buckets())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::LocalLimiter;
    use crate::limit::outcome::LimitOutcome;
    use crate::limit::policy::RateLimits;
    use crate::limit::request::LimitRequest;
    use crate::limit::test_support::{key, limits};

    fn remaining(outcome: &LimitOutcome, name: &str) -> u64 {
        outcome
            .states()
            .iter()
            .find(|s| s.name.as_str() == name)
            .map(|s| s.remaining)
            .unwrap()
    }

    #[test]
    fn a_fresh_bucket_admits_exactly_the_limit_then_refuses() {
        let limiter = LocalLimiter::new();
        let five = limits(&[("burst", 5, "1s", false)]);
        let now = Instant::now();
        for left in (0..5).rev() {
            let outcome = limiter.check(&LimitRequest::new(key(1), "alice", &five), now);
            assert_eq!(remaining(&outcome, "burst"), left);
            assert!(outcome.is_allowed());
        }
        let refused = limiter.check(&LimitRequest::new(key(1), "alice", &five), now);
        let LimitOutcome::Refused {
            limit,
            retry_after_secs,
            cost_exceeds_limit,
            refusing,
            ref states,
        } = refused
        else {
            panic!("admitted a sixth: {refused:?}")
        };
        let state = states[refusing];
        assert_eq!(
            (limit.as_str(), retry_after_secs, cost_exceeds_limit),
            ("burst", 1, false)
        );
        assert_eq!((state.remaining, state.reset_secs), (0, 1));
    }

    #[test]
    fn one_unit_comes_back_per_emission_interval() {
        let limiter = LocalLimiter::new();
        let ten = limits(&[("m", 10, "1min", false)]); // one per 6 s
        let t0 = Instant::now();
        let request = LimitRequest::new(key(1), "alice", &ten);
        assert!(limiter.check(&request.cost(10), t0).is_allowed());
        let LimitOutcome::Refused {
            retry_after_secs, ..
        } = limiter.check(&request, t0 + Duration::from_secs(1))
        else {
            panic!("admitted with an empty bucket")
        };
        assert_eq!(retry_after_secs, 5);
        assert!(
            !limiter
                .check(&request, t0 + Duration::from_millis(5_999))
                .is_allowed()
        );
        assert!(
            limiter
                .check(&request, t0 + Duration::from_secs(6))
                .is_allowed()
        );
        assert!(
            !limiter
                .check(&request, t0 + Duration::from_secs(6))
                .is_allowed()
        );
    }

    #[test]
    fn a_cost_takes_that_many_units_and_zero_takes_none() {
        let limiter = LocalLimiter::new();
        let ten = limits(&[("a", 10, "1h", false)]);
        let now = Instant::now();
        let request = LimitRequest::new(key(1), "alice", &ten);
        assert_eq!(remaining(&limiter.check(&request.cost(7), now), "a"), 3);
        assert_eq!(
            limiter.check(&request.cost(0), now),
            LimitOutcome::NotCounted
        );
        let refused = limiter.check(&request.cost(4), now);
        assert!(!refused.is_allowed());
        assert_eq!(remaining(&limiter.check(&request.cost(3), now), "a"), 0);
        assert_eq!(
            limiter.check(&LimitRequest::new(key(2), "b", &RateLimits::empty()), now),
            LimitOutcome::NotCounted
        );
    }

    #[test]
    fn a_cost_above_the_limit_never_passes_and_takes_nothing() {
        let limiter = LocalLimiter::new();
        let ten = limits(&[("a", 10, "1h", false), ("b", 100, "1h", false)]);
        let now = Instant::now();
        let request = LimitRequest::new(key(1), "alice", &ten);
        let LimitOutcome::Refused {
            limit,
            retry_after_secs,
            cost_exceeds_limit,
            ..
        } = limiter.check(&request.cost(11), now)
        else {
            panic!("admitted a cost above the limit")
        };
        assert_eq!(
            (limit.as_str(), retry_after_secs, cost_exceeds_limit),
            ("a", 3_600, true)
        );
        // Nothing was taken from either bucket, even days later it is refused.
        assert_eq!(remaining(&limiter.check(&request, now), "b"), 99);
        assert!(
            !limiter
                .check(&request.cost(11), now + Duration::from_secs(86_400 * 3))
                .is_allowed()
        );
    }

    #[test]
    fn a_refusal_by_one_limit_takes_nothing_from_the_others() {
        let limiter = LocalLimiter::new();
        let both = limits(&[("big", 100, "1h", false), ("small", 2, "1h", false)]);
        let now = Instant::now();
        let request = LimitRequest::new(key(1), "alice", &both);
        assert!(limiter.check(&request.cost(2), now).is_allowed());
        let refused = limiter.check(&request, now);
        let LimitOutcome::Refused { limit, .. } = refused else {
            panic!("admitted")
        };
        assert_eq!(limit.as_str(), "small");
        assert_eq!(remaining(&refused, "big"), 98, "reported unchanged");
        // The refusal took nothing: "big" alone still has 98.
        let big_only = limits(&[("big", 100, "1h", false)]);
        let later = limiter.check(&LimitRequest::new(key(1), "alice", &big_only), now);
        assert_eq!(remaining(&later, "big"), 97);
    }

    #[test]
    fn the_tightest_limit_is_the_one_with_the_fewest_remaining() {
        let limiter = LocalLimiter::new();
        let both = limits(&[("hourly", 1000, "1h", false), ("burst", 20, "1s", false)]);
        let LimitOutcome::Admitted { tightest, states } = limiter.check(
            &LimitRequest::new(key(1), "a", &both).cost(13),
            Instant::now(),
        ) else {
            panic!("refused")
        };
        assert_eq!(tightest, 1);
        assert_eq!(states[tightest].header(), r#""burst";r=7;t=1"#);
        assert_eq!(states.len(), 2);
        // A tie goes to the shorter period.
        let tie = limits(&[("long", 10, "1h", false), ("short", 10, "1s", false)]);
        let tied = limiter.check(&LimitRequest::new(key(2), "a", &tie), Instant::now());
        assert_eq!(
            tied.header_state().expect("admitted").name.as_str(),
            "short"
        );
    }

    #[test]
    fn keys_of_one_owner_share_a_shared_limit_and_other_owners_do_not() {
        let limiter = LocalLimiter::new();
        let shared = limits(&[("team", 3, "1h", true)]);
        let now = Instant::now();
        assert!(
            limiter
                .check(&LimitRequest::new(key(1), "alice", &shared).cost(2), now)
                .is_allowed()
        );
        assert!(
            limiter
                .check(&LimitRequest::new(key(2), "alice", &shared), now)
                .is_allowed()
        );
        assert!(
            !limiter
                .check(&LimitRequest::new(key(3), "alice", &shared), now)
                .is_allowed()
        );
        assert!(
            limiter
                .check(&LimitRequest::new(key(3), "bob", &shared).cost(3), now)
                .is_allowed()
        );
        // Without `shared`, each key has its own bucket.
        let own = limits(&[("team", 3, "1h", false)]);
        assert!(
            limiter
                .check(&LimitRequest::new(key(4), "alice", &own).cost(3), now)
                .is_allowed()
        );
    }

    #[test]
    fn threads_hammering_one_bucket_are_admitted_exactly_the_limit() {
        let limiter = LocalLimiter::new();
        let both = limits(&[("team", 500, "1d", true), ("own", 1_000_000, "1d", false)]);
        let now = Instant::now();
        let admitted = AtomicU64::new(0);
        thread::scope(|scope| {
            for t in 0..8 {
                let (limiter, both, admitted) = (&limiter, &both, &admitted);
                scope.spawn(move || {
                    for _ in 0..250 {
                        if limiter
                            .check(&LimitRequest::new(key(t), "alice", both), now)
                            .is_allowed()
                        {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 500);
    }

    #[test]
    fn idle_buckets_are_swept_and_memory_stays_bounded() {
        let limiter = LocalLimiter::with_max_buckets(64);
        assert_eq!(limiter.max_buckets(), 64);
        let second = limits(&[("s", 10, "1s", false)]);
        let t0 = Instant::now();
        for n in 0..10 {
            limiter.check(&LimitRequest::new(key(n), "a", &second), t0);
        }
        assert_eq!(limiter.len(), 10);
        assert_eq!(
            limiter.sweep(t0 + Duration::from_millis(50)),
            0,
            "not idle yet"
        );
        assert_eq!(
            limiter.sweep(t0 + Duration::from_millis(100)),
            10,
            "full again after T"
        );
        assert!(limiter.is_empty());

        let day = limits(&[("d", 10, "1d", false)]);
        for n in 0..5_000 {
            limiter.check(
                &LimitRequest::new(key(n), "a", &day),
                t0 + Duration::from_millis(u64::from(n)),
            );
            assert!(limiter.len() <= 64);
        }
    }

    #[test]
    fn an_over_full_shard_drops_idle_buckets_before_busy_ones() {
        let limiter = LocalLimiter::with_max_buckets(8); // one shard of 8
        let t0 = Instant::now();
        let busy = limits(&[("d", 1, "1d", false)]);
        assert!(
            limiter
                .check(&LimitRequest::new(key(0), "a", &busy), t0)
                .is_allowed()
        );
        let second = limits(&[("s", 1, "1s", false)]);
        for n in 1..8 {
            limiter.check(&LimitRequest::new(key(n), "a", &second), t0);
        }
        let later = t0 + Duration::from_secs(2);
        for n in 8..12 {
            limiter.check(&LimitRequest::new(key(n), "a", &busy), later);
        }
        assert_eq!(limiter.len(), 5);
        assert!(
            !limiter
                .check(&LimitRequest::new(key(0), "a", &busy), later)
                .is_allowed()
        );
    }
}
