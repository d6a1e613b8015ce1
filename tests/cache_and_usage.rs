//! The validation cache, background usage tracking and tracing, observed
//! through a store that counts its calls (SPEC §5 usage, §6). What the
//! middleware logs is `tests/logging.rs`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::counting::CountingStore;
use common::server::serve_app;
use http::Request;
use keygate::{
    AuthenticatedKey, InvalidReason, KeyUpdate, Keygate, KeygateBuilder, NewKey, PeerAddr, Pepper,
    VerifyError,
};
use time::OffsetDateTime;
use tower::{Service, ServiceExt};

fn builder(store: &CountingStore) -> KeygateBuilder {
    Keygate::builder(store.clone()).pepper(Pepper::insecure_fixed_for_tests())
}

fn invalid(err: VerifyError) -> InvalidReason {
    match err {
        VerifyError::Invalid(r) => r,
        other => panic!("expected invalid, got {other:?}"),
    }
}

/// An axum app protected by `keygate`, served on a real socket.
async fn serve(keygate: &Keygate) -> SocketAddr {
    let app = Router::new()
        .route(
            "/",
            get(|key: AuthenticatedKey| async move { key.owner().to_string() }),
        )
        .layer(keygate.layer());
    serve_app(app).await
}

/// One HTTP/1.1 request over a fresh connection; returns the status code.
async fn status_of(addr: SocketAddr, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_first_requests_cause_one_store_read() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let token = keygate
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap()
        .token;
    let addr = serve(&keygate).await;
    // Hold the first read so all 100 requests arrive while it is in flight.
    store.hold_reads.store(1, Ordering::SeqCst);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let token = token.expose().to_owned();
            tokio::spawn(async move { status_of(addr, &token).await })
        })
        .collect();
    while store.reads_waiting.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Give the other 99 requests time to reach the cache and queue behind the load.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.read_gate.add_permits(1000);
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(
        store.counts.gets(),
        1,
        "100 concurrent misses must share one store read"
    );
    // And later requests are served from the cache.
    assert_eq!(status_of(addr, token.expose()).await, 200);
    assert_eq!(store.counts.gets(), 1);
}

#[tokio::test]
async fn unknown_ids_are_cached_briefly_and_the_cache_stays_bounded() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .cache_capacity(1_000)
        .negative_cache_capacity(1_000)
        .build()
        .unwrap();
    let format = keygate.token_format().clone();
    let mut first = None;
    for i in 0..100_000 {
        let token = format.generate(keygate::Environment::Live);
        let err = keygate.verify(token.expose()).await.unwrap_err();
        assert_eq!(invalid(err), InvalidReason::UnknownId);
        if i == 0 {
            first = Some(token);
        }
    }
    assert_eq!(store.counts.gets(), 100_000);
    let entries = keygate.cached_entries().await;
    assert!(
        entries <= 1_000,
        "cache holds {entries} entries, bound is 1000"
    );
    // A repeated unknown id within the negative TTL is answered from the cache.
    let recent = format.generate(keygate::Environment::Live);
    let _ = keygate.verify(recent.expose()).await;
    let _ = keygate.verify(recent.expose()).await;
    assert_eq!(store.counts.gets(), 100_001);
    drop(first);
}

#[tokio::test]
async fn a_flood_of_forged_unknown_ids_does_not_evict_valid_keys() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .cache_capacity(100)
        .negative_cache_capacity(100)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..50 {
        let created = keygate
            .keys()
            .create(NewKey::new("alice", format!("k{i}")))
            .await
            .unwrap();
        keygate.verify(created.token.expose()).await.unwrap();
        tokens.push(created.token);
    }
    let reads_before = store.counts.gets();
    let format = keygate.token_format().clone();
    for _ in 0..20_000 {
        let forged = format.generate(keygate::Environment::Live);
        assert!(keygate.verify(forged.expose()).await.is_err());
    }
    keygate.cached_entries().await;
    let reads_after_flood = store.counts.gets();
    assert_eq!(reads_after_flood - reads_before, 20_000);
    for token in &tokens {
        keygate.verify(token.expose()).await.unwrap();
    }
    assert_eq!(
        store.counts.gets(),
        reads_after_flood,
        "every valid key was still cached after the flood"
    );
}

#[tokio::test]
async fn negative_entries_expire_after_their_ttl() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .negative_cache_ttl(Duration::from_millis(200))
        .build()
        .unwrap();
    let token = keygate.token_format().generate(keygate::Environment::Live);
    let _ = keygate.verify(token.expose()).await;
    let _ = keygate.verify(token.expose()).await;
    assert_eq!(store.counts.gets(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = keygate.verify(token.expose()).await;
    assert_eq!(store.counts.gets(), 2);
}

#[tokio::test]
async fn garbage_tokens_never_reach_the_store_or_the_cache() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let real = keygate
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap()
        .token;
    let mut bad_checksum = real.expose().to_owned();
    bad_checksum.pop();
    bad_checksum.push(if real.expose().ends_with('0') {
        '1'
    } else {
        '0'
    });
    for garbage in [
        "",
        "hello",
        "kg_live_",
        &"x".repeat(400),
        "kg_prod_0123456789abcdef0123456789abcdef0123456789abcdef012345",
        "zz_live_0123456789abcdef0123456789abcdef0123456789abcdef012345",
        &bad_checksum,
    ] {
        assert!(keygate.verify(garbage).await.is_err());
    }
    assert_eq!(store.counts.gets(), 0);
    assert_eq!(keygate.cached_entries().await, 0);
}

#[tokio::test]
async fn cached_key_is_refused_at_the_exact_second_it_expires() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let at = (OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .replace_nanosecond(0)
        .unwrap();
    let token = keygate
        .keys()
        .create(NewKey::new("alice", "short").expires_at(at))
        .await
        .unwrap()
        .token;
    assert!(keygate.verify(token.expose()).await.is_ok());
    assert!(keygate.verify(token.expose()).await.is_ok());
    assert_eq!(store.counts.gets(), 1, "second check came from the cache");
    let wait = at - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(wait).unwrap() + Duration::from_millis(2)).await;
    assert_eq!(
        invalid(keygate.verify(token.expose()).await.unwrap_err()),
        InvalidReason::Expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_wins_over_a_load_that_read_the_old_record() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let created = keygate
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap();
    let token = created.token.expose().to_owned();

    // A request starts, reads the still-active record, and stalls.
    store.hold_reads.store(1, Ordering::SeqCst);
    let early = {
        let keygate = keygate.clone();
        let token = token.clone();
        tokio::spawn(async move { keygate.verify(&token).await.map(|k| k.id()) })
    };
    while store.reads_waiting.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The key is revoked while that stale record is in flight.
    keygate
        .keys()
        .revoke(&created.key.id, Some("leaked"))
        .await
        .unwrap();
    // A request that starts now may share the in-flight load; it must still
    // see the revocation.
    let late = {
        let keygate = keygate.clone();
        let token = token.clone();
        tokio::spawn(async move { keygate.verify(&token).await.map(|k| k.id()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.read_gate.add_permits(1000);
    let _ = early.await.unwrap();
    assert_eq!(
        invalid(late.await.unwrap().unwrap_err()),
        InvalidReason::Revoked
    );
    assert_eq!(
        invalid(keygate.verify(&token).await.unwrap_err()),
        InvalidReason::Revoked
    );
}

#[tokio::test]
async fn every_mutation_invalidates_the_cached_entry() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let created = keygate
        .keys()
        .create(NewKey::new("alice", "ci").scopes(["a:read", "a:write"]))
        .await
        .unwrap();
    let token = created.token.expose();
    assert_eq!(keygate.verify(token).await.unwrap().scopes().len(), 2);
    keygate
        .keys()
        .update(&created.key.id, KeyUpdate::default().scopes(["a:read"]))
        .await
        .unwrap();
    assert_eq!(keygate.verify(token).await.unwrap().scopes().len(), 1);
    keygate.keys().delete(&created.key.id).await.unwrap();
    assert_eq!(
        invalid(keygate.verify(token).await.unwrap_err()),
        InvalidReason::UnknownId
    );
}

#[tokio::test]
async fn a_cached_key_survives_a_store_outage_an_uncached_one_does_not() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let cached = keygate
        .keys()
        .create(NewKey::new("alice", "a"))
        .await
        .unwrap()
        .token;
    let uncached = keygate
        .keys()
        .create(NewKey::new("alice", "b"))
        .await
        .unwrap()
        .token;
    keygate.verify(cached.expose()).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert!(keygate.verify(cached.expose()).await.is_ok());
    assert!(matches!(
        keygate.verify(uncached.expose()).await,
        Err(VerifyError::Unavailable(_))
    ));
    store.down.store(false, Ordering::SeqCst);
    assert!(keygate.verify(uncached.expose()).await.is_ok());
}

#[tokio::test]
async fn after_a_wholesale_clear_keys_are_reread_but_survive_an_outage_until_their_ttl() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .cache_ttl(Duration::from_millis(1500))
        .build()
        .unwrap();
    let a = keygate
        .keys()
        .create(NewKey::new("alice", "a"))
        .await
        .unwrap();
    let b = keygate
        .keys()
        .create(NewKey::new("alice", "b"))
        .await
        .unwrap();
    keygate.verify(a.token.expose()).await.unwrap();
    keygate.verify(b.token.expose()).await.unwrap();
    assert_eq!(store.counts.gets(), 2);

    // A change made behind this keygate's back (another instance), then the
    // signal that changes may have been missed.
    let mut revoked = keygate::KeyStore::get(&*store.inner, &b.key.id)
        .await
        .unwrap()
        .unwrap();
    revoked.key.revoked_at = Some(OffsetDateTime::now_utc());
    keygate::KeyStore::replace(&*store.inner, &revoked, OffsetDateTime::now_utc())
        .await
        .unwrap();
    keygate.invalidate_all();
    assert_eq!(
        invalid(keygate.verify(b.token.expose()).await.unwrap_err()),
        InvalidReason::Revoked
    );
    assert_eq!(store.counts.gets(), 3, "the cleared entry was read again");

    // During an outage a cleared but once-valid entry is still served...
    keygate.invalidate_all();
    store.down.store(true, Ordering::SeqCst);
    assert!(keygate.verify(a.token.expose()).await.is_ok());
    // ...until its TTL runs out; then the store must answer.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(matches!(
        keygate.verify(a.token.expose()).await,
        Err(VerifyError::Unavailable(_))
    ));
    store.down.store(false, Ordering::SeqCst);
    assert!(keygate.verify(a.token.expose()).await.is_ok());
}

#[tokio::test]
async fn a_key_invalidated_by_id_is_never_served_from_the_cache_during_an_outage() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let a = keygate
        .keys()
        .create(NewKey::new("alice", "a"))
        .await
        .unwrap();
    keygate.verify(a.token.expose()).await.unwrap();
    keygate.invalidate(a.key.id).await;
    store.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        keygate.verify(a.token.expose()).await,
        Err(VerifyError::Unavailable(_))
    ));
}

#[tokio::test]
async fn custom_validator_shares_the_cache_and_is_invalidated_by_id() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let id = keygate::KeyId::parse("legacy0000000001").unwrap();
    let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keygate = {
        let calls = calls.clone();
        let revoked = revoked.clone();
        Keygate::builder(keygate::MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .validator(move |token: String| {
                let calls = calls.clone();
                let revoked = revoked.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let mut key = keygate::ApiKey::new(id, "legacy");
                    if revoked.load(Ordering::SeqCst) {
                        key.revoked_at = Some(OffsetDateTime::now_utc());
                    }
                    Ok::<_, Infallible>((token == "legacy-token-1").then_some(key))
                }
            })
            .build()
            .unwrap()
    };
    assert_eq!(
        keygate.verify("legacy-token-1").await.unwrap().owner(),
        "legacy"
    );
    assert_eq!(keygate.verify("legacy-token-1").await.unwrap().id(), id);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "second check came from the cache"
    );
    assert!(keygate.verify("nope").await.is_err());
    assert!(keygate.verify("nope").await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "unknown tokens are cached too"
    );
    assert!(keygate.verify("has space").await.is_err());
    assert!(keygate.verify(&"x".repeat(256)).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "malformed tokens never reach the validator"
    );
    revoked.store(true, Ordering::SeqCst);
    keygate.invalidate(id).await;
    assert_eq!(
        invalid(keygate.verify("legacy-token-1").await.unwrap_err()),
        InvalidReason::Revoked
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn requests_never_write_to_the_store_and_usage_is_flushed_in_one_batch() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .usage_flush_interval(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let a = keygate
        .keys()
        .create(NewKey::new("alice", "a"))
        .await
        .unwrap();
    let b = keygate
        .keys()
        .create(NewKey::new("alice", "b"))
        .await
        .unwrap();
    let writes_before = store.counts.writes();

    let mut service = tower::ServiceBuilder::new()
        .layer(keygate.layer())
        .service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        });
    for (i, token) in [&a.token, &b.token, &a.token, &a.token].iter().enumerate() {
        let mut request = Request::builder()
            .header("x-api-key", token.expose())
            .body(String::new())
            .unwrap();
        let peer: SocketAddr = format!("10.0.0.{}:4000", i + 1).parse().unwrap();
        request.extensions_mut().insert(PeerAddr(peer));
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        store.counts.writes(),
        writes_before,
        "no store write on the request path"
    );

    assert_eq!(keygate.flush_usage().await, 2);
    assert_eq!(store.counts.usage_batches(), 1);
    assert_eq!(
        store.counts.usage_rows.load(Ordering::SeqCst),
        2,
        "one row per key"
    );
    let a_record = keygate.keys().get(&a.key.id).await.unwrap();
    assert_eq!(
        a_record.last_used_ip,
        Some("10.0.0.4".parse().unwrap()),
        "the latest use wins"
    );
    assert!(a_record.last_used_at.is_some());
    assert_eq!(
        a_record.updated_at, a.key.updated_at,
        "usage is not an update"
    );
    assert_eq!(keygate.flush_usage().await, 0, "nothing left to write");
}

#[tokio::test]
async fn usage_is_written_in_the_background_at_most_once_per_interval() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .usage_flush_interval(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let created = keygate
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(keygate.layer())
        .service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        });
    for _ in 0..50 {
        let request = Request::builder()
            .header(
                "authorization",
                format!("Bearer {}", created.token.expose()),
            )
            .body(String::new())
            .unwrap();
        assert_eq!(
            service.clone().oneshot(request).await.unwrap().status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(store.counts.usage_batches(), 1, "50 uses, one write");
    let record = keygate.keys().get(&created.key.id).await.unwrap();
    assert!(record.last_used_at.is_some());
    assert_eq!(record.last_used_ip, None, "no peer address was known");
}

#[tokio::test]
async fn usage_survives_a_failed_flush() {
    let store = CountingStore::new();
    let keygate = builder(&store)
        .usage_flush_interval(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let created = keygate
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(keygate.layer())
        .service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        });
    let request = Request::builder()
        .header("x-api-key", created.token.expose())
        .body(String::new())
        .unwrap();
    assert_eq!(service.oneshot(request).await.unwrap().status(), 200);
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(keygate.flush_usage().await, 0);
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(keygate.flush_usage().await, 1, "the failed batch was kept");
    assert!(
        keygate
            .keys()
            .get(&created.key.id)
            .await
            .unwrap()
            .last_used_at
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_wholesale_clear_concurrent_requests_for_one_key_share_one_store_read() {
    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let token = keygate
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap()
        .token;
    keygate.verify(token.expose()).await.unwrap();
    assert_eq!(store.counts.gets(), 1);

    // What the PostgreSQL listener does on every reconnect.
    keygate.invalidate_all();
    // Hold every reload, so all 20 requests arrive while one is in flight.
    store.hold_reads.store(20, Ordering::SeqCst);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (keygate, token) = (keygate.clone(), token.expose().to_owned());
            tokio::spawn(async move { keygate.verify(&token).await.map(|key| key.id()) })
        })
        .collect();
    while store.reads_waiting.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Give the other 19 time to reach the cache and queue behind the reload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.read_gate.add_permits(1000);
    for request in requests {
        assert!(request.await.unwrap().is_ok());
    }
    assert_eq!(
        store.counts.gets(),
        2,
        "20 concurrent requests after a clear must share one store read"
    );
    keygate.verify(token.expose()).await.unwrap();
    assert_eq!(store.counts.gets(), 2, "and the reloaded entry is cached");
}

#[tokio::test]
async fn a_custom_key_invalidated_by_id_is_revalidated_however_many_other_keys_were_invalidated() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let calls = Arc::new(AtomicUsize::new(0));
    let id = keygate::KeyId::parse("legacy0000000001").unwrap();
    let revoked = Arc::new(AtomicBool::new(false));
    // The token "other" belongs to key `o<n>`, n set by the test.
    let other = Arc::new(AtomicUsize::new(0));
    let other_id = |n: usize| keygate::KeyId::parse(&format!("o{n:015}")).unwrap();
    let keygate = {
        let (calls, revoked, other) = (calls.clone(), revoked.clone(), other.clone());
        Keygate::builder(keygate::MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .cache_capacity(10)
            .validator(move |token: String| {
                let (calls, revoked, other) = (calls.clone(), revoked.clone(), other.clone());
                async move {
                    if token == "other" {
                        let n = other.load(Ordering::SeqCst);
                        return Ok(Some(keygate::ApiKey::new(other_id(n), "other")));
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                    let mut key = keygate::ApiKey::new(id, "legacy");
                    if revoked.load(Ordering::SeqCst) {
                        key.revoked_at = Some(OffsetDateTime::now_utc());
                    }
                    Ok::<_, Infallible>((token == "legacy-token-1").then_some(key))
                }
            })
            .build()
            .unwrap()
    };
    keygate.verify("legacy-token-1").await.unwrap();
    keygate.verify("legacy-token-1").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "cached");

    revoked.store(true, Ordering::SeqCst);
    keygate.invalidate(id).await;
    // Many more invalidations than a bounded record of them could keep, of
    // keys presented again after each one.
    for n in 0..20_000 {
        other.store(n, Ordering::SeqCst);
        assert_eq!(keygate.verify("other").await.unwrap().id(), other_id(n));
        keygate.invalidate(other_id(n)).await;
    }
    keygate.verify("other").await.unwrap();
    keygate.cached_entries().await;
    assert_eq!(
        invalid(keygate.verify("legacy-token-1").await.unwrap_err()),
        InvalidReason::Revoked
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the validator was asked again"
    );
}
