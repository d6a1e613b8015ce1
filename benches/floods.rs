//! Floods of bad keys, memory and allocations: what an attacker's traffic
//! costs keygate, measured in process.
//!
//! Parts (each runs in a fresh child process of this binary, so one part's
//! memory does not leak into another's RSS):
//!
//! 1. `floods` — store reads per request through the real middleware
//!    (`tower::ServiceExt::oneshot` on
//!    `ServiceBuilder::new().layer(keygate.layer()).service_fn(..)`, default
//!    configuration, a [`MemoryStore`] wrapped to count `get`):
//!    100 000 well-formed tokens with unknown ids (valid checksum), then the
//!    same 100 000 again within the negative TTL; 100 000 garbage tokens
//!    (random strings, wrong checksums, wrong prefixes and environments, too
//!    long); and the throughput of each next to 100 000 requests with one
//!    valid cached key, same loop, same round. Three rounds, each on a fresh
//!    keygate.
//! 2. `rss_flood` — resident memory after 1 000 000 distinct unknown ids
//!    through `keygate.verify` with the default cache capacity (100 000),
//!    before and after the cache's pending maintenance, and the final entry
//!    count.
//!    With 1 000 valid keys cached and used before the flood: how many the
//!    flood evicted. `flood_eviction` repeats the flood with those keys in
//!    use during it (one valid request per 10, 100, 1 000 unknown ids) and
//!    counts the valid keys' cache misses.
//! 3. `rss_per_key` — memory per cached key: 100 000 keys in a read-only map
//!    store, each verified once; (RSS after − RSS before verifying) / entries,
//!    next to the live-heap growth counted by the allocator.
//! 4. `allocs` — heap allocations per request (a counting
//!    `#[global_allocator]` around `System`; `stats_alloc`, because this crate
//!    forbids `unsafe_code`) over 10 000 `oneshot` requests on a current-thread
//!    runtime: the bare `service_fn`, the same behind `keygate.layer()` with a
//!    cached valid key (usage tracking on, and off), a negative-cached unknown
//!    id and a garbage token; and per `keygate.verify()` call alone.
//!
//! 5. `cold_alternating` — the cold path of criterion's `cold_miss` group
//!    (`keygate.verify` on SQLite with caching off, next to the same
//!    `SELECT * … WHERE id = ?` through sqlx), but with the two interleaved
//!    call by call (the order flipping every call) on one runtime, 5 rounds
//!    of 2 000 pairs: the ratio of median latencies per round. Each call
//!    crosses to sqlx's SQLite worker thread and back, so run-to-run drift
//!    in thread scheduling moves both sides alike here, where criterion
//!    measures them seconds apart.
//!
//! `--part hot_path` (not run by default) sends 50 000 requests with a valid
//! cached key through the layer and nothing else, for
//! `valgrind --tool=callgrind`.
//!
//! No tracing subscriber is installed: keygate's per-request span is
//! disabled, as in an application logging at `warn`.
//!
//! Run all parts (release): `cargo bench --bench floods`; one part:
//! `cargo bench --bench floods -- --part allocs`.
//! Results: `benches/results/load.md`.

use std::alloc::System;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use keygate::{
    ApiKey, Environment, KeyId, KeyStore, Keygate, MemoryStore, NewKey, Pepper, ScopeSet,
    SecretToken, StoredKey, VerifyError,
};
use keygate::{InsertRules, ListQuery, Page, StoreError, Usage};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, Stats, StatsAlloc};
use time::OffsetDateTime;
use tower::{ServiceBuilder, ServiceExt as _};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Requests per flood.
const FLOOD: usize = 100_000;

/// Distinct unknown ids in the memory flood.
const MEMORY_FLOOD: usize = 1_000_000;

/// Keys for the memory-per-key measurement.
const CACHED_KEYS: usize = 100_000;

/// Requests per allocation measurement.
const ALLOC_REQUESTS: u64 = 10_000;

/// The negative cache TTL (keygate's default, README "Caching and
/// revocation").
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// A store wrapper counting `get` calls, the only store access on the
/// request path.
struct Counting<S> {
    inner: S,
    gets: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> (Counting<S>, Arc<AtomicU64>) {
        let gets = Arc::new(AtomicU64::new(0));
        (
            Counting {
                inner,
                gets: gets.clone(),
            },
            gets,
        )
    }
}

#[async_trait]
impl<S: KeyStore> KeyStore for Counting<S> {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        self.inner.insert(key, rules).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        self.inner.replace(key, now).await
    }
    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.rotate(old, new, now).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.count_current(owner, now).await
    }
    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn credits(&self) -> Option<&dyn keygate::CreditStore> {
        self.inner.credits()
    }
}

/// A read-only map of keys (as in `benches/auth.rs`): 100 000 keys without
/// paying for inserts through a real store.
struct MapStore(HashMap<KeyId, StoredKey>);

fn read_only() -> StoreError {
    StoreError::Backend("read-only benchmark store".into())
}

#[async_trait]
impl KeyStore for MapStore {
    async fn insert(&self, _: &StoredKey, _: InsertRules) -> Result<(), StoreError> {
        Err(read_only())
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.0.get(id).cloned())
    }
    async fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
        Ok(Page::default())
    }
    async fn replace(&self, _: &StoredKey, _: OffsetDateTime) -> Result<(), StoreError> {
        Err(read_only())
    }
    async fn rotate(
        &self,
        _: &StoredKey,
        _: &StoredKey,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Err(read_only())
    }
    async fn delete(&self, _: &KeyId) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn count_current(&self, _: &str, _: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn record_usage(&self, _: &[Usage]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `n` keys with their tokens, as a store would hold them (as
/// `benches/auth.rs` builds them).
fn keys(n: usize, pepper: &Pepper) -> (HashMap<KeyId, StoredKey>, Vec<SecretToken>) {
    let format = keygate::TokenFormat::default();
    let mut map = HashMap::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let token = format.generate(Environment::Live);
        let id = format.parse(token.expose()).unwrap().id();
        let mut key = ApiKey::new(id, format!("owner{}", i % 1000));
        key.display_prefix = format.display_prefix(Environment::Live, id);
        key.scopes = ScopeSet::parse(["workspaces:read", "templates:*"]).unwrap();
        let mac = pepper.mac(token.expose());
        map.insert(
            id,
            StoredKey {
                key,
                mac,
                revision: 0,
            },
        );
        tokens.push(token);
    }
    (map, tokens)
}

/// A small deterministic PRNG (xorshift64*) for garbage tokens.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn alphanumeric(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
        (0..len)
            .map(|_| char::from(CHARS[self.below(CHARS.len() as u64) as usize]))
            .collect()
    }
}

/// `n` garbage tokens, cycling through five kinds, each refused before the
/// cache: random strings; well-formed tokens with one checksum character
/// changed; with another prefix; with an unknown environment; too long.
fn garbage(gate: &Keygate, n: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let token = gate.token_format().generate(Environment::Live);
            let token = token.expose();
            match i % 5 {
                0 => {
                    let len = 8 + rng.below(70) as usize;
                    rng.alphanumeric(len)
                }
                1 => {
                    let mut bytes = token.as_bytes().to_vec();
                    let last = bytes.len() - 1;
                    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
                    String::from_utf8(bytes).unwrap()
                }
                2 => token.replacen("kg_", "zz_", 1),
                3 => token.replacen("_live_", "_prod_", 1),
                _ => format!("{token}{}", rng.alphanumeric(256)),
            }
        })
        .collect()
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

/// The app's handler: a short fixed body, no allocation.
async fn handler(_: Request<String>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world\n",
    ))))
}

/// Sends one request per header value (consumed, so no request pays for a
/// clone) through `service`; returns the elapsed time and a histogram of
/// statuses.
async fn drive<S, B>(service: &S, headers: Vec<HeaderValue>) -> (Duration, BTreeMap<u16, u64>)
where
    S: tower::Service<Request<String>, Response = Response<B>, Error = Infallible> + Clone,
{
    let mut statuses = BTreeMap::new();
    let start = Instant::now();
    for value in headers {
        let request = Request::builder()
            .uri("/")
            .header(AUTHORIZATION, value)
            .body(String::new())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
    }
    (start.elapsed(), statuses)
}

fn histogram(statuses: &BTreeMap<u16, u64>) -> String {
    statuses
        .iter()
        .map(|(s, n)| format!("{s}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A keygate with the default configuration over a counting memory store,
/// and one valid key's token.
async fn gate_with_key() -> (Keygate, Arc<AtomicU64>, String) {
    let (store, gets) = Counting::new(MemoryStore::new());
    let gate = Keygate::builder(store)
        .pepper(Pepper::random().unwrap())
        .build()
        .unwrap();
    let token = gate
        .keys()
        .create(NewKey::new("bench", "floods").scopes(["workspaces:read"]))
        .await
        .unwrap()
        .token
        .expose()
        .to_owned();
    gate.verify(&token).await.unwrap();
    (gate, gets, token)
}

/// Part 1: store reads per request and throughput of floods.
fn part_floods() {
    const PASSES: [&str; 5] = [
        "valid cached key",
        "unknown ids, 1st pass",
        "unknown ids, 2nd pass (negative-cached)",
        "garbage tokens",
        "no layer: bare service_fn, same requests as the valid pass",
    ];
    const ROUNDS: usize = 3;
    println!("## 1. Floods through keygate.layer() (default config, MemoryStore counting `get`)");
    println!();
    println!(
        "{FLOOD} requests per pass via oneshot on a current-thread runtime; {ROUNDS} rounds, \
         each on a fresh keygate; ratios are to the valid-key pass of the same round."
    );
    println!();
    println!("| round | pass | store reads / req | req/s | ratio to valid | statuses |");
    println!("|---|---|---:|---:|---:|---|");
    let runtime = current_thread();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); PASSES.len()];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); PASSES.len()];
    let mut reads: Vec<Vec<f64>> = vec![Vec::new(); PASSES.len()];
    for round in 1..=ROUNDS {
        runtime.block_on(async {
            let (gate, gets, token) = gate_with_key().await;
            let service = ServiceBuilder::new()
                .layer(gate.layer())
                .service_fn(handler);
            let unknown: Vec<String> = (0..FLOOD)
                .map(|_| {
                    gate.token_format()
                        .generate(Environment::Live)
                        .expose()
                        .to_owned()
                })
                .collect();
            let junk = garbage(&gate, FLOOD);
            let inputs: [Vec<HeaderValue>; 5] = [
                (0..FLOOD).map(|_| bearer(&token)).collect(),
                unknown.iter().map(|t| bearer(t)).collect(),
                unknown.iter().map(|t| bearer(t)).collect(),
                junk.iter().map(|t| bearer(t)).collect(),
                (0..FLOOD).map(|_| bearer(&token)).collect(),
            ];
            let bare = ServiceBuilder::new().service_fn(handler);
            let mut valid_rate = 0.0;
            let mut first_pass_start = None;
            for (pass, headers) in inputs.into_iter().enumerate() {
                if pass == 1 {
                    first_pass_start = Some(Instant::now());
                }
                let before = gets.load(Ordering::Relaxed);
                let (elapsed, statuses) = if pass == 4 {
                    drive(&bare, headers).await
                } else {
                    drive(&service, headers).await
                };
                let per_request = (gets.load(Ordering::Relaxed) - before) as f64 / FLOOD as f64;
                let rate = FLOOD as f64 / elapsed.as_secs_f64();
                if pass == 0 {
                    valid_rate = rate;
                }
                if pass == 2 {
                    let since = first_pass_start.unwrap().elapsed();
                    assert!(
                        since < NEGATIVE_TTL,
                        "both unknown-id passes took {since:?}, past the negative TTL"
                    );
                }
                println!(
                    "| {round} | {} | {per_request:.5} | {rate:.0} | {:.3} | {} |",
                    PASSES[pass],
                    rate / valid_rate,
                    histogram(&statuses),
                );
                ratios[pass].push(rate / valid_rate);
                rates[pass].push(rate);
                reads[pass].push(per_request);
            }
            println!(
                "| {round} | (cache entries after the round) | | | | {} |",
                gate.cached_entries().await
            );
        });
    }
    println!();
    println!("Medians over {ROUNDS} rounds:");
    println!();
    println!("| pass | store reads / req | req/s | ratio to valid |");
    println!("|---|---:|---:|---:|");
    for (pass, name) in PASSES.iter().enumerate() {
        println!(
            "| {name} | {:.5} | {:.0} | {:.3} |",
            median(&mut reads[pass]),
            median(&mut rates[pass]),
            median(&mut ratios[pass]),
        );
    }
    println!();
}

/// A field of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn rss_mb() -> f64 {
    status_kb("VmRSS") as f64 / 1024.0
}

/// Bytes live on the heap, as the counting allocator sees them.
fn live_heap(stats: Stats) -> i64 {
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Valid keys in use when the memory flood starts.
const FLOOD_VALID_KEYS: usize = 1_000;

/// Part 2: memory after a flood of 1 000 000 distinct unknown ids, and
/// what the flood did to the valid keys' cache entries.
fn part_rss_flood() {
    println!("## 2. Memory after {MEMORY_FLOOD} distinct unknown ids through keygate.verify");
    println!();
    let runtime = current_thread();
    runtime.block_on(async {
        let pepper = Pepper::random().unwrap();
        let (map, tokens) = keys(FLOOD_VALID_KEYS, &pepper);
        let (store, gets) = Counting::new(MapStore(map));
        let gate = Keygate::builder(store).pepper(pepper).build().unwrap();
        // The valid keys are in use: each verified three times.
        for _ in 0..3 {
            for token in &tokens {
                gate.verify(token.expose()).await.unwrap();
            }
        }
        let format = gate.token_format().clone();
        let heap = || live_heap(GLOBAL.stats());
        let (rss0, heap0) = (rss_mb(), heap());
        let reads0 = gets.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut chunks = Vec::new();
        let mut chunk_start = Instant::now();
        for i in 1..=MEMORY_FLOOD {
            let token = format.generate(Environment::Live);
            let result = gate.verify(token.expose()).await;
            assert!(matches!(result, Err(VerifyError::Invalid(_))));
            if i % 100_000 == 0 {
                chunks.push(chunk_start.elapsed().as_secs_f64() * 1e6 / 100_000.0);
                chunk_start = Instant::now();
            }
        }
        let elapsed = start.elapsed();
        let flood_reads = gets.load(Ordering::Relaxed) - reads0;
        let (rss1, heap1) = (rss_mb(), heap());
        let entries = gate.cached_entries().await;
        let (rss2, heap2) = (rss_mb(), heap());
        // Which valid keys survived the flood in the cache?
        let before = gets.load(Ordering::Relaxed);
        for token in &tokens {
            gate.verify(token.expose()).await.unwrap();
        }
        let evicted = gets.load(Ordering::Relaxed) - before;
        println!(
            "default cache capacity (100 000) and TTLs; {FLOOD_VALID_KEYS} valid keys cached \
             and used 3× each before the flood; {elapsed:.2?} for the flood (token generation \
             included)"
        );
        println!();
        println!("| when | VmRSS | live heap (allocator) | cache entries |");
        println!("|---|---:|---:|---:|");
        println!(
            "| before the flood | {rss0:.1} MB | {:.1} MB | |",
            mb(heap0)
        );
        println!("| after the flood | {rss1:.1} MB | {:.1} MB | |", mb(heap1));
        println!(
            "| after cached_entries() (maintenance) | {rss2:.1} MB | {:.1} MB | {entries} |",
            mb(heap2)
        );
        println!();
        println!(
            "growth: VmRSS +{:.1} MB, live heap +{:.1} MB; VmHWM (peak RSS) {:.1} MB; \
             store reads during the flood {flood_reads} for {MEMORY_FLOOD} ids; \
             entries <= 100 000: {}",
            rss2 - rss0,
            mb(heap2 - heap0),
            status_kb("VmHWM") as f64 / 1024.0,
            if entries <= 100_000 { "yes" } else { "NO" },
        );
        println!(
            "µs per verify (with token generation), by 100 000-id chunk: {}",
            chunks
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "valid keys evicted by the flood (store reads when re-verifying all \
             {FLOOD_VALID_KEYS}): {evicted}"
        );
        println!();
    });
}

/// Part 2b: the same flood with the valid keys in use during it — one
/// valid request (round-robin over the keys) per `every` unknown ids.
fn part_flood_eviction() {
    println!(
        "## 2b. Valid keys in use during a flood of {MEMORY_FLOOD} unknown ids (keygate.verify)"
    );
    println!();
    println!(
        "default cache capacity (100 000) and TTLs; {FLOOD_VALID_KEYS} valid keys, each verified \
         3× before the flood; a store read for a valid key is a cache miss caused by the flood \
         (the flood lasts well under the 30 s positive TTL)"
    );
    println!();
    println!(
        "| valid requests | valid-key store reads during the flood | valid keys evicted at the end (store reads re-verifying all) | flood time |"
    );
    println!("|---|---:|---:|---:|");
    let runtime = current_thread();
    for every in [10usize, 100, 1_000] {
        runtime.block_on(async {
            let pepper = Pepper::random().unwrap();
            let (map, tokens) = keys(FLOOD_VALID_KEYS, &pepper);
            let (store, gets) = Counting::new(MapStore(map));
            let gate = Keygate::builder(store).pepper(pepper).build().unwrap();
            for _ in 0..3 {
                for token in &tokens {
                    gate.verify(token.expose()).await.unwrap();
                }
            }
            let format = gate.token_format().clone();
            let reads0 = gets.load(Ordering::Relaxed);
            let start = Instant::now();
            let mut valid = 0usize;
            for i in 1..=MEMORY_FLOOD {
                let token = format.generate(Environment::Live);
                assert!(gate.verify(token.expose()).await.is_err());
                if i % every == 0 {
                    gate.verify(tokens[valid % tokens.len()].expose())
                        .await
                        .unwrap();
                    valid += 1;
                }
            }
            let elapsed = start.elapsed();
            let valid_reads = gets.load(Ordering::Relaxed) - reads0 - MEMORY_FLOOD as u64;
            let before = gets.load(Ordering::Relaxed);
            for token in &tokens {
                gate.verify(token.expose()).await.unwrap();
            }
            let evicted = gets.load(Ordering::Relaxed) - before;
            println!(
                "| 1 per {every} unknown ids ({valid} requests, {} per key) | {valid_reads} | {evicted} of {FLOOD_VALID_KEYS} | {elapsed:.2?} |",
                valid / FLOOD_VALID_KEYS
            );
        });
    }
    println!();
}

/// Part 3: memory per cached key at 100 000 keys.
fn part_rss_per_key() {
    println!("## 3. Memory per cached key ({CACHED_KEYS} keys, read-only map store)");
    println!();
    let runtime = current_thread();
    runtime.block_on(async {
        let rss_empty = rss_mb();
        let pepper = Pepper::random().unwrap();
        let (map, tokens) = keys(CACHED_KEYS, &pepper);
        let (store, gets) = Counting::new(MapStore(map));
        let gate = Keygate::builder(store).pepper(pepper).build().unwrap();
        let heap = || live_heap(GLOBAL.stats());
        let (rss0, heap0) = (rss_mb(), heap());
        for token in &tokens {
            gate.verify(token.expose()).await.unwrap();
        }
        let entries = gate.cached_entries().await;
        let (rss1, heap1) = (rss_mb(), heap());
        // Every key is still cached: verifying them all again reads nothing.
        let before = gets.load(Ordering::Relaxed);
        for token in &tokens {
            gate.verify(token.expose()).await.unwrap();
        }
        let rereads = gets.load(Ordering::Relaxed) - before;
        let per_key_rss = (rss1 - rss0) * 1024.0 * 1024.0 / entries as f64;
        let per_key_heap = (heap1 - heap0) as f64 / entries as f64;
        println!("default cache capacity (100 000)");
        println!();
        println!("| when | VmRSS | live heap (allocator) |");
        println!("|---|---:|---:|");
        println!("| empty process | {rss_empty:.1} MB | |");
        println!(
            "| map store built, before verifying | {rss0:.1} MB | {:.1} MB |",
            mb(heap0)
        );
        println!(
            "| every key verified once, after maintenance | {rss1:.1} MB | {:.1} MB |",
            mb(heap1)
        );
        println!();
        println!("cache entries {entries}; store reads on a second pass over all keys: {rereads}");
        println!(
            "per cached key: {per_key_rss:.0} B of RSS, {per_key_heap:.0} B of live heap \
             (the map store's own footprint excluded)"
        );
        println!();
    });
}

/// Checks a response's status.
fn expect<B>(status: u16, response: Response<B>) {
    assert_eq!(response.status().as_u16(), status);
}

/// Allocations per call of `f` over `n` calls, after 1 000 warm-up calls.
async fn allocations_per<F, Fut>(n: u64, mut f: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..1_000 {
        f().await;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        f().await;
    }
    let change = region.change();
    let n = n as f64;
    (
        change.allocations as f64 / n,
        change.reallocations as f64 / n,
        change.bytes_allocated as f64 / n,
    )
}

/// Part 4: heap allocations per request and per verify.
fn part_allocs() {
    println!("## 4. Heap allocations ({ALLOC_REQUESTS} calls each, current-thread runtime)");
    println!();
    let runtime = current_thread();
    runtime.block_on(async {
        let (gate, _gets, token) = gate_with_key().await;
        let quiet = Keygate::builder(MemoryStore::new())
            .pepper(Pepper::random().unwrap())
            .usage_flush_interval(None)
            .build()
            .unwrap();
        let quiet_token = quiet
            .keys()
            .create(NewKey::new("bench", "floods"))
            .await
            .unwrap()
            .token
            .expose()
            .to_owned();
        quiet.verify(&quiet_token).await.unwrap();
        let unknown = gate
            .token_format()
            .generate(Environment::Live)
            .expose()
            .to_owned();
        let junk = garbage(&gate, 2).swap_remove(1);

        // Requests clone these header values: after one first clone makes
        // their bytes shared, a clone is a reference-count increment, as
        // for header values hyper slices out of its read buffer.
        let header = bearer(&token);
        let _ = header.clone(); // promote to shared bytes once
        let quiet_header = bearer(&quiet_token);
        let _ = quiet_header.clone();
        let unknown_header = bearer(&unknown);
        let _ = unknown_header.clone();
        let junk_header = bearer(&junk);
        let _ = junk_header.clone();

        let request = |value: &HeaderValue| {
            Request::builder()
                .uri("/")
                .header(AUTHORIZATION, value.clone())
                .body(String::new())
                .unwrap()
        };
        let bare = ServiceBuilder::new().service_fn(handler);
        let with_gate = ServiceBuilder::new().layer(gate.layer()).service_fn(handler);
        let with_quiet = ServiceBuilder::new().layer(quiet.layer()).service_fn(handler);

        let bare_allocs = allocations_per(ALLOC_REQUESTS, || {
            let call = bare.oneshot(request(&header));
            async move { expect(200, call.await.unwrap()) }
        })
        .await;
        let gate_allocs = allocations_per(ALLOC_REQUESTS, || {
            let call = with_gate.clone().oneshot(request(&header));
            async move { expect(200, call.await.unwrap()) }
        })
        .await;
        let quiet_allocs = allocations_per(ALLOC_REQUESTS, || {
            let call = with_quiet.clone().oneshot(request(&quiet_header));
            async move { expect(200, call.await.unwrap()) }
        })
        .await;
        let unknown_allocs = allocations_per(ALLOC_REQUESTS, || {
            let call = with_gate.clone().oneshot(request(&unknown_header));
            async move { expect(401, call.await.unwrap()) }
        })
        .await;
        let junk_allocs = allocations_per(ALLOC_REQUESTS, || {
            let call = with_gate.clone().oneshot(request(&junk_header));
            async move { expect(401, call.await.unwrap()) }
        })
        .await;
        let verify_allocs = allocations_per(ALLOC_REQUESTS, || {
            let gate = &gate;
            let token = token.as_str();
            async move {
                gate.verify(token).await.unwrap();
            }
        })
        .await;
        let verify_unknown_allocs = allocations_per(ALLOC_REQUESTS, || {
            let gate = &gate;
            let unknown = unknown.as_str();
            async move {
                assert!(gate.verify(unknown).await.is_err());
            }
        })
        .await;

        println!("| what | allocs / call | reallocs / call | bytes allocated / call | keygate's own allocs / request |");
        println!("|---|---:|---:|---:|---:|");
        let row = |name: &str, (a, r, b): (f64, f64, f64), own: bool| {
            let own = if own {
                format!("{:.2}", a - bare_allocs.0)
            } else {
                String::new()
            };
            println!("| {name} | {a:.2} | {r:.2} | {b:.0} | {own} |");
        };
        row("bare service_fn (request building + oneshot)", bare_allocs, false);
        row("keygate.layer(), cached valid key, usage tracking on (default)", gate_allocs, true);
        row("keygate.layer(), cached valid key, usage tracking off", quiet_allocs, true);
        row("keygate.layer(), negative-cached unknown id (401)", unknown_allocs, true);
        row("keygate.layer(), garbage token: bad checksum (401)", junk_allocs, true);
        row("keygate.verify() alone, cached valid key", verify_allocs, false);
        row("keygate.verify() alone, negative-cached unknown id", verify_unknown_allocs, false);
        println!();
    });
}

/// Not run by default: 50 000 requests with a cached valid key through
/// `keygate.layer()`, and nothing else, for a profiler:
/// `valgrind --tool=callgrind <floods binary> --part hot_path`.
fn part_hot_path() {
    current_thread().block_on(async {
        let (gate, _gets, token) = gate_with_key().await;
        let service = ServiceBuilder::new()
            .layer(gate.layer())
            .service_fn(handler);
        let headers = (0..50_000).map(|_| bearer(&token)).collect();
        let (elapsed, statuses) = drive(&service, headers).await;
        println!("hot_path: {elapsed:.2?}, {}", histogram(&statuses));
    });
}

/// The cold path (caching off) on SQLite against the raw select, call by
/// call.
fn part_cold_alternating() {
    const PAIRS: usize = 2_000;
    const ROUNDS: usize = 5;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cold.db").display());
        let store = keygate::SqliteStore::open(&url).await.unwrap();
        let gate = Keygate::builder(store.clone())
            .pepper(Pepper::insecure_fixed_for_tests())
            .cache_ttl(Duration::ZERO)
            .negative_cache_ttl(Duration::ZERO)
            .usage_flush_interval(None)
            .build()
            .unwrap();
        let mut tokens = Vec::new();
        for i in 0..1000 {
            let created = gate
                .keys()
                .create(NewKey::new(format!("owner{}", i % 10), format!("k{i}")).scopes(["workspaces:read"]))
                .await
                .unwrap();
            tokens.push(created.token);
        }
        let format = keygate::TokenFormat::default();
        let ids: Vec<String> = tokens
            .iter()
            .map(|t| format.parse(t.expose()).unwrap().id().to_string())
            .collect();
        println!("## 5. Cold miss on SQLite, interleaved with the raw select\n");
        println!(
            "`keygate.verify` with caching off vs `sqlx::query(\"SELECT * FROM keygate_keys WHERE id = ?\").fetch_optional`, \
             1 000 keys, {PAIRS} pairs per round, the order flipping every pair; median latency per call\n"
        );
        println!("| round | keygate verify | raw select | ratio |");
        println!("|---|---:|---:|---:|");
        let mut ratios = Vec::new();
        for round in 1..=ROUNDS {
            let (mut ours, mut raw) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
            for i in 0..PAIRS {
                let n = (i * 7919 + round) % tokens.len();
                let verify = async {
                    let started = Instant::now();
                    let key = gate.verify(tokens[n].expose()).await.unwrap();
                    std::hint::black_box(key);
                    started.elapsed().as_secs_f64() * 1e6
                };
                let select = async {
                    let started = Instant::now();
                    let row = sqlx::query("SELECT * FROM keygate_keys WHERE id = ?")
                        .bind(ids[n].as_str())
                        .fetch_optional(store.pool())
                        .await
                        .unwrap();
                    assert!(row.is_some());
                    started.elapsed().as_secs_f64() * 1e6
                };
                if i % 2 == 0 {
                    ours.push(verify.await);
                    raw.push(select.await);
                } else {
                    raw.push(select.await);
                    ours.push(verify.await);
                }
            }
            let (ours, raw) = (median(&mut ours), median(&mut raw));
            ratios.push(ours / raw);
            println!("| {round} | {ours:.1} µs | {raw:.1} µs | {:.3} |", ours / raw);
        }
        println!("\nmedian ratio over {ROUNDS} rounds: {:.3}\n", median(&mut ratios));
    });
}

const PARTS: [(&str, fn()); 6] = [
    ("floods", part_floods),
    ("rss_flood", part_rss_flood),
    ("flood_eviction", part_flood_eviction),
    ("rss_per_key", part_rss_per_key),
    ("allocs", part_allocs),
    ("cold_alternating", part_cold_alternating),
];

/// Parts run only when named.
const EXTRA_PARTS: [(&str, fn()); 1] = [("hot_path", part_hot_path)];

fn shell(command: &str, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({command}: {e})"))
}

fn main() {
    let mut part = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--part" => part = args.next(),
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other:?}; use --part <name>"),
        }
    }
    if let Some(name) = part {
        let (_, run) = PARTS
            .iter()
            .chain(&EXTRA_PARTS)
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown part {name:?}"));
        run();
        return;
    }

    println!("# floods");
    println!("command: cargo bench --bench floods");
    println!(
        "machine: nproc {}, kernel {}, {}",
        shell("nproc", &[]),
        shell("uname", &["-r"]),
        shell("rustc", &["--version"]),
    );
    println!(
        "each part runs in its own child process (`cargo bench --bench floods -- --part <name>`)"
    );
    println!();
    let exe = std::env::current_exe().unwrap();
    for (name, _) in PARTS {
        let status = Command::new(&exe).args(["--part", name]).status().unwrap();
        assert!(status.success(), "part {name} failed");
    }
}
