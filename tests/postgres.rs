//! The PostgreSQL store against a real server (SPEC §6, §7, §8): the
//! conformance suite, push invalidation between instances, losing the
//! listener connection, a database outage, and the binary on PostgreSQL.
//!
//! The server comes from `KEYGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); every test works in a
//! database of its own. An unreachable server fails the tests.

#![cfg(feature = "postgres")]

mod common;

use std::convert::Infallible;
use std::process::Command;
use std::time::{Duration, Instant};

use common::postgres::TestDb;
use http::Request;
use keygate::store::StoreError;
use keygate::{KeyStore, Keygate, NewKey, Pepper, PostgresStore, VerifyError};
use tower::ServiceExt as _;

conformance_suite!(postgres, async {
    let db = TestDb::create().await;
    let store =
        PostgresStore::connect_with(PostgresStore::pool_options().max_connections(5), &db.url)
            .await
            .unwrap();
    (store, db)
});

/// A keygate over `store` whose cached entries would outlive every test:
/// whatever a test sees change within seconds was pushed, not expired.
fn gate(store: PostgresStore) -> Keygate {
    Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .cache_ttl(Duration::from_secs(600))
        .usage_flush_interval(None)
        .build()
        .unwrap()
}

/// Polls `gate` every `every` until it refuses `token`; returns how long
/// that took, or panics after `within`.
async fn refused_within(
    gate: &Keygate,
    token: &str,
    every: Duration,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        match gate.verify(token).await {
            Err(VerifyError::Invalid(_)) => return started.elapsed(),
            Err(VerifyError::Unavailable(e)) => panic!("store unavailable: {e:?}"),
            Err(e) => panic!("unexpected error: {e:?}"),
            Ok(_) => {}
        }
        assert!(
            started.elapsed() < within,
            "still accepted {:?} after the revocation",
            started.elapsed()
        );
        tokio::time::sleep(every).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_through_one_instance_is_refused_by_another_within_a_second() {
    let db = TestDb::create().await;
    let a = gate(PostgresStore::connect(&db.url).await.unwrap());
    let b = gate(PostgresStore::connect(&db.url).await.unwrap());
    db.wait_for_listeners(None, 2, Duration::from_secs(10))
        .await;

    let created = a
        .keys()
        .create(NewKey::new("alice", "ci").scopes(["workspaces:read"]))
        .await
        .unwrap();
    let token = created.token.expose();
    a.verify(token).await.unwrap();
    b.verify(token).await.unwrap();
    assert_eq!(
        b.cached_entries().await,
        1,
        "B serves the key from its cache"
    );

    let started = Instant::now();
    a.keys()
        .revoke(&created.key.id, Some("leaked"))
        .await
        .unwrap();
    let revoke_took = started.elapsed();
    let latency =
        refused_within(&b, token, Duration::from_millis(10), Duration::from_secs(1)).await;
    eprintln!("propagation: revoke took {revoke_took:?}, B refused {latency:?} after it returned");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert!(a.verify(token).await.is_err(), "A refuses at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_listener_clears_the_cache_and_reconnecting_resumes_push() {
    let mut db = TestDb::create().await;
    let a = gate(PostgresStore::connect(&db.url).await.unwrap());
    // B logs in as a role of its own, so its reconnection can be held off.
    let (role_b, url_b) = db.create_role("b").await;
    let b = gate(PostgresStore::connect(&url_b).await.unwrap());
    db.wait_for_listeners(Some(&role_b), 1, Duration::from_secs(10))
        .await;

    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for name in ["during", "after", "kept"] {
        let created = a.keys().create(NewKey::new("alice", name)).await.unwrap();
        b.verify(created.token.expose()).await.unwrap();
        tokens.push(created.token.expose().to_owned());
        ids.push(created.key.id);
    }
    assert_eq!(b.cached_entries().await, 3);

    // The outage: B's listener is killed and may not log in again, while
    // B's pooled connections stay up.
    common::postgres::admin_exec(&format!(
        "ALTER ROLE {} NOLOGIN",
        common::postgres::quote(&role_b)
    ))
    .await;
    let killed = db
        .terminate(&format!(
            "application_name = '{}' AND usename = '{role_b}'",
            PostgresStore::LISTENER_APPLICATION_NAME
        ))
        .await;
    assert_eq!(killed, 1, "B's listener was found and terminated");

    // (a) Revoked during the outage: the notification cannot reach B, yet B
    // refuses the key, because losing the listener cleared its cache.
    a.keys().revoke(&ids[0], None).await.unwrap();
    let during = refused_within(
        &b,
        &tokens[0],
        Duration::from_millis(10),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        db.listeners(Some(&role_b)).await,
        0,
        "the listener was still down when B refused the key"
    );
    assert!(b.verify(&tokens[2]).await.is_ok(), "other keys still work");
    eprintln!("revoked during the listener outage: refused by B after {during:?}");

    // B's listener comes back (backoff capped at 5 s) ...
    common::postgres::admin_exec(&format!(
        "ALTER ROLE {} LOGIN",
        common::postgres::quote(&role_b)
    ))
    .await;
    let back = Instant::now();
    db.wait_for_listeners(Some(&role_b), 1, Duration::from_secs(10))
        .await;
    eprintln!(
        "listener back {:?} after logins were allowed",
        back.elapsed()
    );
    // ... it clears the cache once more after re-listening; let that pass
    // before caching again so the next refusal can only come from a push.
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.verify(&tokens[1]).await.unwrap();
    b.verify(&tokens[2]).await.unwrap();

    // (b) Revoked after the reconnection: pushed again within a second.
    a.keys().revoke(&ids[1], None).await.unwrap();
    let after = refused_within(
        &b,
        &tokens[1],
        Duration::from_millis(10),
        Duration::from_secs(1),
    )
    .await;
    eprintln!("revoked after the reconnection: refused by B after {after:?}");
    assert!(b.verify(&tokens[2]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silently_dropped_listener_is_noticed_by_the_heartbeat() {
    let db = TestDb::create().await;
    let a = gate(PostgresStore::connect(&db.url).await.unwrap());
    // B reaches the server through a proxy that can stop carrying packets
    // without closing anything: no error, no EOF, just silence.
    let proxy = common::postgres::FreezableProxy::start().await;
    let url_b = common::postgres::with_address(&db.url, &proxy.addr.to_string());
    let heartbeat = Duration::from_millis(300);
    let store_b = PostgresStore::connect_with(
        PostgresStore::pool_options().acquire_timeout(Duration::from_secs(1)),
        &url_b,
    )
    .await
    .unwrap()
    .listener_heartbeat(heartbeat);
    let b = gate(store_b);
    db.wait_for_listeners(None, 2, Duration::from_secs(10))
        .await;

    let quiet = a_key(&a, "quiet").await;
    let silent = a_key(&a, "silent").await;
    let quiet_id = a.verify(&quiet).await.unwrap().id();
    let silent_id = a.verify(&silent).await.unwrap().id();
    b.verify(&quiet).await.unwrap();
    b.verify(&silent).await.unwrap();

    // Several heartbeats pass on a healthy, quiet connection; pushes still
    // arrive afterwards.
    tokio::time::sleep(heartbeat * 4).await;
    a.keys().revoke(&quiet_id, None).await.unwrap();
    refused_within(
        &b,
        &quiet,
        Duration::from_millis(10),
        Duration::from_secs(1),
    )
    .await;

    // The path to B goes silent. A revocation cannot be pushed; the
    // heartbeat notices the dead connection and B stops serving the key
    // from its cache (the store is unreachable too, so it answers 503).
    proxy.freeze(true);
    let frozen = Instant::now();
    a.keys().revoke(&silent_id, None).await.unwrap();
    loop {
        match b.verify(&silent).await {
            Ok(_) => {}
            Err(VerifyError::Unavailable(_)) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            frozen.elapsed() < heartbeat * 3,
            "B still serves the key {:?} after the connection went silent",
            frozen.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "silent connection noticed after {:?} (heartbeat {heartbeat:?})",
        frozen.elapsed()
    );

    // Traffic flows again: B recovers by itself and sees the revocation.
    proxy.freeze(false);
    let started = Instant::now();
    loop {
        match b.verify(&silent).await {
            Err(VerifyError::Invalid(_)) => break,
            Ok(_) => panic!("a revoked key was accepted"),
            Err(VerifyError::Unavailable(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request through the middleware with `token`; the response status and
/// `Retry-After`.
async fn request(gate: &Keygate, token: &str) -> (u16, Option<String>) {
    let service = tower::ServiceBuilder::new().layer(gate.layer()).service_fn(
        |_req: Request<String>| async { Ok::<_, Infallible>(http::Response::new(String::new())) },
    );
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_is_503_for_uncached_keys_and_recovers_without_a_rebuild() {
    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let gate = gate(store.clone());
    db.wait_for_listeners(None, 1, Duration::from_secs(10))
        .await;
    let cached = a_key(&gate, "cached").await;
    let uncached = a_key(&gate, "uncached").await;
    assert_eq!(request(&gate, &cached).await.0, 200);

    // New connections are refused and the pool's connections are cut; the
    // listener's connection survives (e.g. the server is out of
    // connection slots).
    db.allow_connections(false).await;
    let cut = db
        .terminate(&format!(
            "application_name IS DISTINCT FROM '{}'",
            PostgresStore::LISTENER_APPLICATION_NAME
        ))
        .await;
    assert!(cut >= 1, "the pool had a connection");

    let started = Instant::now();
    assert!(matches!(
        gate.verify(&uncached).await,
        Err(VerifyError::Unavailable(_))
    ));
    assert_eq!(
        request(&gate, &uncached).await,
        (503, Some("1".to_owned())),
        "an uncached key is a 503 with Retry-After"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the outage was reported in {:?}",
        started.elapsed()
    );
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(
        request(&gate, &cached).await.0,
        200,
        "a cached key keeps working while revocations can still be pushed"
    );

    // The listener goes too: revocations can no longer reach this instance,
    // so it stops trusting its cache (fail closed) until it is back.
    assert_eq!(
        db.terminate(&format!(
            "application_name = '{}'",
            PostgresStore::LISTENER_APPLICATION_NAME
        ))
        .await,
        1
    );
    let started = Instant::now();
    loop {
        match gate.verify(&cached).await {
            Err(VerifyError::Unavailable(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "cache not cleared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(request(&gate, &cached).await, (503, Some("1".to_owned())));

    // The database is back: the same keygate recovers on its own.
    db.allow_connections(true).await;
    let started = Instant::now();
    loop {
        if store.ping().await.is_ok()
            && gate.verify(&cached).await.is_ok()
            && gate.verify(&uncached).await.is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(request(&gate, &uncached).await.0, 200);
    db.wait_for_listeners(None, 1, Duration::from_secs(10))
        .await;
    let id = gate.verify(&uncached).await.unwrap().id();
    gate.keys().revoke(&id, None).await.unwrap();
    assert_eq!(request(&gate, &uncached).await.0, 401);
}

async fn a_key(gate: &Keygate, name: &str) -> String {
    gate.keys()
        .create(NewKey::new("alice", name))
        .await
        .unwrap()
        .token
        .expose()
        .to_owned()
}

/// The binary against the test database; `pepper` as `KEYGATE_PEPPER`.
fn keygate_cli(url: &str, pepper: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    cmd.env_remove("KEYGATE_PEPPER")
        .env_remove("KEYGATE_DATABASE_URL")
        .env_remove("RUST_LOG")
        .arg("--database-url")
        .arg(url)
        .args(args);
    if let Some(pepper) = pepper {
        cmd.env("KEYGATE_PEPPER", pepper);
    }
    let out = cmd.output().expect("run the keygate binary");
    (
        out.status.code().expect("keygate exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_manages_and_verifies_keys_on_postgres() {
    const PEPPER: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let db = TestDb::create().await;
    let url = db.url.clone();
    let pepper = Some(PEPPER);
    let run = move |args: Vec<&'static str>, extra: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all: Vec<&str> = args;
                all.extend(extra.iter().map(String::as_str));
                keygate_cli(&url, pepper, &all)
            })
            .await
            .unwrap()
        }
    };

    let (status, admin, stderr) = run(vec!["init"], vec![]).await;
    assert_eq!(status, 0, "init: {stderr}");
    assert!(admin.trim().starts_with("kg_live_"), "{admin}");

    let (status, out, stderr) = run(
        vec![
            "--json",
            "keys",
            "create",
            "--owner",
            "alice",
            "--name",
            "ci",
            "--scope",
            "workspaces:read",
        ],
        vec![],
    )
    .await;
    assert_eq!(status, 0, "keys create: {stderr}");
    let created: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let token = created["key"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();

    let (status, _, stderr) = run(vec!["verify"], vec![token.clone()]).await;
    assert_eq!(status, 0, "verify: {stderr}");
    let (status, _, _) = run(
        vec!["verify", "--require", "workspaces:write"],
        vec![token.clone()],
    )
    .await;
    assert_eq!(status, 1, "a scope the key lacks");

    let (status, _, stderr) = run(vec!["keys", "revoke", "--reason", "leaked"], vec![id]).await;
    assert_eq!(status, 0, "keys revoke: {stderr}");
    let (status, out, _) = run(vec!["--json", "verify"], vec![token]).await;
    assert_eq!(status, 1, "a revoked key no longer verifies");
    let body: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(body["valid"], false);

    // The library sees what the binary wrote.
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let page = store
        .list(&keygate::ListQuery {
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 2, "the admin key and alice's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_postgres_without_a_pepper() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || keygate_cli(&url, None, &["init"]))
            .await
            .unwrap();
    assert_ne!(status, 0);
    assert!(stdout.trim().is_empty(), "no key was printed: {stdout}");
    assert!(
        stderr.contains("KEYGATE_PEPPER") && stderr.contains("PostgreSQL"),
        "the message names what is missing: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        db.sessions("TRUE").await,
        0,
        "nothing connected to the database"
    );
    // Nor was the schema created.
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(applied, 1, "migrated only now, by this connect");
}
