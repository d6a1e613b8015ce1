//! Micro-benchmarks of the authentication hot path, each next to its floor.
//!
//! Run: `cargo bench --bench auth`. Groups:
//! - `token_parse`: `TokenFormat::parse` of a valid token;
//! - `mac`: HMAC-SHA256 of a token under the pepper, and the constant-time
//!   verify against a stored MAC;
//! - `cached_validation/{1000,100000}`: `Keygate::verify` of random cached
//!   keys, next to `floor` — the same HMAC, a constant-time compare and a
//!   `HashMap` lookup by id, i.e. the least any store-backed check can do;
//! - `requirement`: evaluating a requirement expression against a key's
//!   scopes;
//! - `cold_miss`: `Keygate::verify` on SQLite with caching disabled (every
//!   call is a miss: parse, store read, decode, MAC), next to `raw_select` —
//!   the same `SELECT … WHERE id = ?` through sqlx, fetching the row;
//! - `middleware`: one request through `keygate.layer()` (cached valid key,
//!   usage tracking on) over a service answering a fixed response, next to
//!   `no_auth` — the same request and service without the layer. The
//!   difference is what the middleware adds per request, without HTTP or
//!   sockets around it;
//! - `limits/{none,in_process,redis}`: the same request for a cached key
//!   without a rate limit, with one in this process, and with one in Redis
//!   (see [`limits`]).
//!
//! Results and ratios: BENCHMARKS.md.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use keygate::{
    ApiKey, Environment, KeyId, KeyStore, Keygate, Pepper, Requirement, ScopeSet, SecretToken,
    StoredKey, TokenFormat,
};
use keygate::{InsertRules, ListQuery, Page, StoreError, Usage};
use time::OffsetDateTime;

/// A read-only map of keys: lets the benchmark hold 100 000 keys without
/// paying for inserts through a real store.
struct MapStore(Arc<HashMap<KeyId, StoredKey>>);

#[async_trait]
impl KeyStore for MapStore {
    async fn insert(&self, _: &StoredKey, _: InsertRules) -> Result<(), StoreError> {
        Err(StoreError::Backend("read-only benchmark store".into()))
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.0.get(id).cloned())
    }
    async fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
        Ok(Page::default())
    }
    async fn replace(&self, _: &StoredKey, _: OffsetDateTime) -> Result<(), StoreError> {
        Err(StoreError::Backend("read-only benchmark store".into()))
    }
    async fn rotate(
        &self,
        _: &StoredKey,
        _: &StoredKey,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Err(StoreError::Backend("read-only benchmark store".into()))
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

/// `n` keys with their tokens, as a store would hold them.
fn keys(n: usize, pepper: &Pepper) -> (HashMap<KeyId, StoredKey>, Vec<SecretToken>) {
    let format = TokenFormat::default();
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

fn token_parse(c: &mut Criterion) {
    let format = TokenFormat::default();
    let token = format.generate(Environment::Live);
    c.bench_function("token_parse", |b| {
        b.iter(|| format.parse(black_box(token.expose())).unwrap().id())
    });
}

fn mac(c: &mut Criterion) {
    let pepper = Pepper::insecure_fixed_for_tests();
    let token = TokenFormat::default().generate(Environment::Live);
    let stored = pepper.mac(token.expose());
    let mut group = c.benchmark_group("mac");
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| pepper.mac(black_box(token.expose())))
    });
    group.bench_function("verify_constant_time", |b| {
        b.iter(|| pepper.verify(black_box(token.expose()), black_box(&stored)))
    });
    group.finish();
}

fn cached_validation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pepper = Pepper::insecure_fixed_for_tests();
    let format = TokenFormat::default();
    let mut group = c.benchmark_group("cached_validation");
    for n in [1_000usize, 100_000] {
        let (map, tokens) = keys(n, &pepper);
        let map = Arc::new(map);
        let keygate = Keygate::builder(MapStore(map.clone()))
            .pepper(pepper.clone())
            .cache_capacity(n as u64 * 2)
            .usage_flush_interval(None)
            .build()
            .unwrap();
        // Warm the cache with every key.
        runtime.block_on(async {
            for t in &tokens {
                keygate.verify(t.expose()).await.unwrap();
            }
        });
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("keygate", n), &n, |b, _| {
            b.to_async(&runtime).iter(|| {
                next = (next + 7919) % tokens.len();
                let token = tokens[next].expose();
                let keygate = &keygate;
                async move { keygate.verify(black_box(token)).await.unwrap() }
            })
        });
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("floor", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 7919) % tokens.len();
                let token = black_box(tokens[next].expose());
                let id = format.parse(token).unwrap().id();
                let stored = map.get(&id).unwrap();
                assert!(pepper.verify(token, &stored.mac));
                stored.key.scopes.len()
            })
        });
    }
    group.finish();
}

fn requirement(c: &mut Criterion) {
    let scopes = ScopeSet::parse([
        "workspaces:read",
        "templates:*",
        "billing:read",
        "keys:read",
    ])
    .unwrap();
    let requirement =
        Requirement::parse("workspaces:read and (templates:use or templates:*)").unwrap();
    let mut group = c.benchmark_group("requirement");
    group.bench_function("evaluate", |b| {
        b.iter(|| black_box(&scopes).satisfies(black_box(&requirement)))
    });
    group.bench_function("parse", |b| {
        b.iter(|| {
            Requirement::parse(black_box(
                "workspaces:read and (templates:use or templates:*)",
            ))
            .unwrap()
        })
    });
    group.finish();
}

fn cold_miss(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (keygate, store, tokens) = runtime.block_on(async {
        let store = keygate::SqliteStore::open(&url).await.unwrap();
        let keygate = Keygate::builder(store.clone())
            .pepper(Pepper::insecure_fixed_for_tests())
            .cache_ttl(std::time::Duration::ZERO)
            .negative_cache_ttl(std::time::Duration::ZERO)
            .usage_flush_interval(None)
            .build()
            .unwrap();
        let mut tokens = Vec::new();
        for i in 0..1000 {
            let created = keygate
                .keys()
                .create(
                    keygate::NewKey::new(format!("owner{}", i % 10), format!("k{i}"))
                        .scopes(["workspaces:read"]),
                )
                .await
                .unwrap();
            tokens.push(created.token);
        }
        (keygate, store, tokens)
    });
    let ids: Vec<String> = tokens
        .iter()
        .map(|t| {
            TokenFormat::default()
                .parse(t.expose())
                .unwrap()
                .id()
                .to_string()
        })
        .collect();
    let mut group = c.benchmark_group("cold_miss");
    let mut next = 0usize;
    group.bench_function("keygate", |b| {
        b.to_async(&runtime).iter(|| {
            next = (next + 7919) % tokens.len();
            let token = tokens[next].expose();
            let keygate = &keygate;
            async move { keygate.verify(black_box(token)).await.unwrap() }
        })
    });
    let mut next = 0usize;
    group.bench_function("raw_select", |b| {
        b.to_async(&runtime).iter(|| {
            next = (next + 7919) % ids.len();
            let id = ids[next].as_str();
            let pool = store.pool();
            async move {
                sqlx::query("SELECT * FROM keygate_keys WHERE id = ?")
                    .bind(black_box(id))
                    .fetch_optional(pool)
                    .await
                    .unwrap()
                    .unwrap()
            }
        })
    });
    group.finish();
}

fn middleware(c: &mut Criterion) {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use http::{Request, Response};
    use tower::{Layer as _, ServiceExt as _};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pepper = Pepper::insecure_fixed_for_tests();
    let (map, tokens) = keys(1_000, &pepper);
    let keygate = Keygate::builder(MapStore(Arc::new(map)))
        .pepper(pepper)
        .build()
        .unwrap();
    let token = tokens[0].expose().to_owned();
    runtime.block_on(async { keygate.verify(&token).await.unwrap() });
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // As axum's `into_make_service_with_connect_info` hands it over.
    let request = move || {
        let mut request = Request::builder()
            .uri("/")
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    };
    let handler = tower::service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new("hello"))
    });
    let mut group = c.benchmark_group("middleware");
    group.bench_function("no_auth", |b| {
        b.to_async(&runtime).iter_batched(
            &request,
            |request| {
                let service = handler;
                async move {
                    let status = service.oneshot(request).await.unwrap().status();
                    assert_eq!(status, 200);
                    status
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let layered = keygate.layer().layer(handler);
    group.bench_function("keygate", |b| {
        b.to_async(&runtime).iter_batched(
            &request,
            |request| {
                let service = layered.clone();
                async move {
                    let status = service.oneshot(request).await.unwrap().status();
                    assert_eq!(status, 200);
                    status
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A request through the layer for a cached key with one rate limit, next
/// to the same key without one (`limits/in_process` vs `limits/none`), and
/// with the buckets in Redis (`limits/redis`; needs Redis at
/// `KEYGATE_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`, and is
/// skipped with a note when it is not there). The limit is wide enough
/// never to refuse during the run. The handler's response has a content
/// type, as an axum handler's has.
fn limits(c: &mut Criterion) {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use http::{Request, Response};
    use tower::{Layer as _, ServiceExt as _};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pepper = Pepper::insecure_fixed_for_tests();
    let (mut map, tokens) = keys(2, &pepper);
    let limited_token = tokens[0].expose().to_owned();
    let free_token = tokens[1].expose().to_owned();
    let limited_id = TokenFormat::default().parse(&limited_token).unwrap().id();
    map.get_mut(&limited_id).unwrap().key.rate_limits =
        serde_json::from_str(r#"[{"name": "wide", "limit": 1000000000, "period": "1s"}]"#).unwrap();
    let map = Arc::new(map);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = |token: String| {
        move || {
            let mut request = Request::builder()
                .uri("/")
                .header("host", "127.0.0.1")
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        }
    };
    // As an axum handler answers: with a content type, so that the
    // response's header map exists before the layer adds to it.
    let handler = tower::service_fn(|_: Request<()>| async {
        let mut response = Response::new("hello");
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok::<_, std::convert::Infallible>(response)
    });
    let local = Keygate::builder(MapStore(map.clone()))
        .pepper(pepper.clone())
        .build()
        .unwrap();
    let mut gates = vec![
        ("none", local.clone(), free_token),
        ("in_process", local, limited_token.clone()),
    ];
    let url = std::env::var("KEYGATE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match runtime.block_on(keygate::RedisLimiter::connect_with_prefix(
        &url,
        &format!("keygate-bench:{}", std::process::id()),
    )) {
        Ok(redis) => {
            let gate = Keygate::builder(MapStore(map.clone()))
                .pepper(pepper.clone())
                .limiter(redis)
                .build()
                .unwrap();
            gates.push(("redis", gate, limited_token));
        }
        Err(error) => eprintln!("limits/redis skipped: no Redis at {url}: {error}"),
    }
    let mut group = c.benchmark_group("limits");
    for (name, gate, token) in gates {
        runtime.block_on(async { gate.verify(&token).await.unwrap() });
        let layered = gate.layer().layer(handler);
        let request = request(token);
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_batched(
                &request,
                |request| {
                    let service = layered.clone();
                    async move {
                        let status = service.oneshot(request).await.unwrap().status();
                        assert_eq!(status, 200);
                        status
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    token_parse,
    mac,
    cached_validation,
    requirement,
    cold_miss,
    middleware,
    limits
);
criterion_main!(benches);
