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
use common::{Serve, ServeOptions};
use http::Request;
use keygate::StoreError;
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
/// A keygate over `store` whose cached entries would outlive every test:
/// whatever a test sees change within seconds was pushed, not expired.
fn gate(store: PostgresStore) -> Keygate {
    gate_with_ttl(store, Duration::from_secs(600))
}

/// As [`gate`], with a cache TTL of `ttl`.
fn gate_with_ttl(store: PostgresStore, ttl: Duration) -> Keygate {
    Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .cache_ttl(ttl)
        .usage_flush_interval(None)
        .build()
        .unwrap()
}

/// A new key of owner "alice"; its token.
async fn a_key(gate: &Keygate, name: &str) -> String {
    gate.keys()
        .create(NewKey::new("alice", name))
        .await
        .unwrap()
        .token
        .expose()
        .to_owned()
}

/// Polls `gate` every `every` until it refuses `token` as invalid; returns
/// how long that took, or panics after `within`.
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

/// Two keys for [`settle`], made through `a`; build `b` only after this.
async fn beacons(a: &Keygate) -> [String; 2] {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    [
        a_key(a, &format!("beacon-{n}-1")).await,
        a_key(a, &format!("beacon-{n}-2")).await,
    ]
}

/// Waits until `b`'s listener has subscribed, cleared `b`'s cache after
/// doing so, and handled every notification sent so far: from then on an
/// entry leaves `b`'s cache only through a new notification (or the long
/// TTL).
///
/// The beacons must have been created (through `a`) before `b` was built,
/// so that no notification of their creation can reach `b`. `b` caches the
/// first, `a` revokes it, and `b` refuses it once either its listener
/// delivered the revocation or the clear after subscribing dropped it:
/// both mean the subscription is complete. The second, revoked the same
/// way, can then only be refused through a notification, which comes after
/// every earlier one.
async fn settle(a: &Keygate, b: &Keygate, beacons: &[String; 2]) {
    for beacon in beacons {
        let id = b.verify(beacon).await.unwrap().id();
        a.keys().revoke(&id, None).await.unwrap();
        refused_within(
            b,
            beacon,
            Duration::from_millis(10),
            Duration::from_secs(10),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_through_one_instance_is_refused_by_another_within_a_second() {
    let db = TestDb::create().await;
    let a = gate(PostgresStore::connect(&db.url).await.unwrap());
    let created = a
        .keys()
        .create(NewKey::new("alice", "ci").scopes(["workspaces:read"]))
        .await
        .unwrap();
    let token = created.token.expose();
    let beacons = beacons(&a).await;

    let b = gate(PostgresStore::connect(&db.url).await.unwrap());
    settle(&a, &b, &beacons).await;
    a.verify(token).await.unwrap();
    let before = b.cached_entries().await;
    b.verify(token).await.unwrap();
    assert_eq!(
        b.cached_entries().await,
        before + 1,
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
    let during = a
        .keys()
        .create(NewKey::new("alice", "during"))
        .await
        .unwrap();
    let after = a
        .keys()
        .create(NewKey::new("alice", "after"))
        .await
        .unwrap();
    let kept = a_key(&a, "kept").await;
    let beacons = [beacons(&a).await, beacons(&a).await];

    // B logs in as a role of its own, so its reconnection can be held off.
    let (role_b, url_b) = db.create_role("b").await;
    let b = gate(PostgresStore::connect(&url_b).await.unwrap());
    settle(&a, &b, &beacons[0]).await;
    let before = b.cached_entries().await;
    for token in [during.token.expose(), after.token.expose(), &kept] {
        b.verify(token).await.unwrap();
    }
    assert_eq!(b.cached_entries().await, before + 3, "B caches all three");

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
    a.keys().revoke(&during.key.id, None).await.unwrap();
    let refused = refused_within(
        &b,
        during.token.expose(),
        Duration::from_millis(10),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        db.listeners(Some(&role_b)).await,
        0,
        "the listener was still down when B refused the key"
    );
    assert!(b.verify(&kept).await.is_ok(), "other keys still work");
    eprintln!("revoked during the listener outage: refused by B after {refused:?}");

    // B's listener comes back (backoff capped at 5 s) and clears the cache
    // once more after re-listening.
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
    settle(&a, &b, &beacons[1]).await;
    b.verify(after.token.expose()).await.unwrap();
    b.verify(&kept).await.unwrap();

    // (b) Revoked after the reconnection: pushed again within a second.
    a.keys().revoke(&after.key.id, None).await.unwrap();
    let refused = refused_within(
        &b,
        after.token.expose(),
        Duration::from_millis(10),
        Duration::from_secs(1),
    )
    .await;
    eprintln!("revoked after the reconnection: refused by B after {refused:?}");
    assert!(b.verify(&kept).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silently_dropped_listener_is_noticed_by_the_heartbeat() {
    let db = TestDb::create().await;
    let a = gate(PostgresStore::connect(&db.url).await.unwrap());
    let quiet = a
        .keys()
        .create(NewKey::new("alice", "quiet"))
        .await
        .unwrap();
    let silent = a
        .keys()
        .create(NewKey::new("alice", "silent"))
        .await
        .unwrap();
    let beacons = beacons(&a).await;

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
    let ttl = Duration::from_secs(3);
    let b = gate_with_ttl(store_b, ttl);
    settle(&a, &b, &beacons).await;
    b.verify(quiet.token.expose()).await.unwrap();
    b.verify(silent.token.expose()).await.unwrap();

    // Several heartbeats pass on a healthy, quiet connection; pushes still
    // arrive afterwards.
    tokio::time::sleep(heartbeat * 4).await;
    a.keys().revoke(&quiet.key.id, None).await.unwrap();
    refused_within(
        &b,
        quiet.token.expose(),
        Duration::from_millis(10),
        Duration::from_secs(1),
    )
    .await;

    // The path to B goes silent. A revocation cannot be pushed; the
    // heartbeat notices the dead connection and B distrusts its cache. With
    // the store unreachable too, B may answer from its cache only until the
    // entry's TTL runs out; after that it answers 503 (fail closed).
    proxy.freeze(true);
    let frozen = Instant::now();
    a.keys().revoke(&silent.key.id, None).await.unwrap();
    loop {
        match b.verify(silent.token.expose()).await {
            Ok(_) => {}
            Err(VerifyError::Unavailable(_)) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            frozen.elapsed() < ttl + Duration::from_secs(3),
            "B still serves the key {:?} after the connection went silent (TTL {ttl:?})",
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
        match b.verify(silent.token.expose()).await {
            Err(VerifyError::Invalid(_)) => break,
            Ok(_) => panic!("a revoked key was accepted"),
            Err(VerifyError::Unavailable(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 10 s) until exactly `n` listener connections are open on
/// `db`; how long that took.
async fn listeners_become(db: &TestDb, n: i64) -> Duration {
    let started = Instant::now();
    loop {
        let found = db.listeners(None).await;
        if found == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{found} listener connections, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_keygate_or_the_subscription_closes_the_listener_connection() {
    use keygate::{Change, ChangeFeed as _};

    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let first = gate(store.clone());
    let clone = first.clone();
    listeners_become(&db, 1).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(db.listeners(None).await, 1, "a clone still follows changes");
    drop(clone);
    let closed = listeners_become(&db, 0).await;
    eprintln!("listener closed {closed:?} after the last keygate clone was dropped");

    // A subscription of one's own, without a keygate: its first change is
    // the resync once it listens; dropping it closes its connection.
    let mut changes = store.subscribe();
    let first = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
    assert_eq!(first.unwrap(), Some(Change::Resync));
    listeners_become(&db, 1).await;
    let other = gate(PostgresStore::connect(&db.url).await.unwrap());
    let created = other
        .keys()
        .create(NewKey::new("alice", "ci"))
        .await
        .unwrap();
    // `other` listens too; its own subscription's resync is not ours.
    let heard = tokio::time::timeout(Duration::from_secs(1), changes.next()).await;
    assert_eq!(heard.unwrap(), Some(Change::Key(created.key.id)));
    drop(other);
    drop(changes);
    listeners_become(&db, 0).await;
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
    // Keys are made through another instance, before this one exists.
    let other = gate(PostgresStore::connect(&db.url).await.unwrap());
    let cached = a_key(&other, "cached").await;
    let uncached = a_key(&other, "uncached").await;
    let beacons = beacons(&other).await;

    let store = PostgresStore::connect(&db.url).await.unwrap();
    let ttl = Duration::from_secs(3);
    let gate = gate_with_ttl(store.clone(), ttl);
    settle(&other, &gate, &beacons).await;
    drop(other);
    assert_eq!(request(&gate, &cached).await.0, 200);

    // New connections are refused and the pools' connections are cut; the
    // listeners' connections survive (as when the server has no free
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
    // so it distrusts its cache. The store cannot answer either, so the
    // cached key keeps working until its TTL — and not a moment longer
    // (fail closed).
    assert!(
        db.terminate(&format!(
            "application_name = '{}'",
            PostgresStore::LISTENER_APPLICATION_NAME
        ))
        .await
            >= 1
    );
    let lost = Instant::now();
    assert_eq!(
        request(&gate, &cached).await.0,
        200,
        "a cached key keeps working during the outage, within its TTL"
    );
    loop {
        match gate.verify(&cached).await {
            Err(VerifyError::Unavailable(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            lost.elapsed() < ttl + Duration::from_secs(1),
            "a cached key outlived its TTL during the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let (status, out, stderr) = run(
        vec!["verify", "--require", "workspaces:write"],
        vec![token.clone()],
    )
    .await;
    assert_eq!(status, 1, "a scope the key lacks: {out} {stderr}");

    let (status, _, stderr) = run(vec!["keys", "revoke", "--reason", "leaked"], vec![id]).await;
    assert_eq!(status, 0, "keys revoke: {stderr}");
    let (status, out, stderr) = run(vec!["--json", "verify"], vec![token]).await;
    assert_eq!(
        status, 1,
        "a revoked key no longer verifies: {out} {stderr}"
    );
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
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        applied,
        i64::try_from(embedded).unwrap(),
        "migrated only now, by this connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_database_without_the_schema_and_a_wrong_pepper() {
    const PEPPER_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const PEPPER_B: &str = "f0e0d0c0b0a090807060504030201000ffeeddccbbaa99887766554433221100";
    let db = TestDb::create().await;
    // A password in the URL (trust auth ignores it) must never be shown.
    use sqlx::Connection as _;
    let url = match db.url.split_once("://") {
        Some((scheme, rest)) if rest.find('@').is_some_and(|at| !rest[..at].contains(':')) => {
            let at = rest.find('@').unwrap();
            format!("{scheme}://{}:sekret-pw{}", &rest[..at], &rest[at..])
        }
        _ => db.url.clone(),
    };
    let cli = |pepper: &'static str, args: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || keygate_cli(&url, Some(pepper), args))
    };

    // No keygate tables yet: every command but init and serve refuses,
    // naming the database, and migrates nothing.
    for args in [&["keys", "list"][..], &["verify", "kg_live_x"][..]] {
        let (status, stdout, stderr) = cli(PEPPER_A, args).await.unwrap();
        assert_eq!(status, 1, "{args:?}: {stdout} {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("no keygate database"), "{stderr}");
        assert!(stderr.contains(&db.name), "names the database: {stderr}");
        assert!(
            !stderr.contains("sekret-pw"),
            "the password leaked: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let migrated: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(&mut sqlx::PgConnection::connect(&db.url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(migrated, None, "a refused command migrated the database");

    // init stores the pepper check; another pepper is then refused.
    let (status, _, stderr) = cli(PEPPER_A, &["init"]).await.unwrap();
    assert_eq!(status, 0, "{stderr}");
    let (status, stdout, stderr) = cli(PEPPER_B, &["keys", "list"]).await.unwrap();
    assert_eq!(status, 1, "{stdout} {stderr}");
    assert!(stderr.contains("pepper does not match"), "{stderr}");
    assert!(
        !stderr.contains(PEPPER_A) && !stderr.contains(PEPPER_B),
        "{stderr}"
    );
    let (status, _, stderr) = cli(PEPPER_A, &["keys", "list"]).await.unwrap();
    assert_eq!(status, 0, "{stderr}");
}

/// `keygate serve` on the test database with `pepper`.
fn serve_on(url: &str, pepper: &str, dir: &std::path::Path) -> Serve {
    Serve::start(
        dir,
        ServeOptions::new()
            .args(["--database-url", url])
            .env("KEYGATE_PEPPER", pepper),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_revocations_within_a_second() {
    let db = TestDb::create().await;
    let pepper = "11".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let url = db.url.clone();
    // The first instance on an empty database prints the bootstrap key.
    let a = serve_on(&url, &pepper, dir.path());
    let admin = a.bootstrap_token();
    assert!(
        admin.starts_with("kg_live_"),
        "instance A printed the bootstrap key"
    );
    let b = serve_on(&url, &pepper, dir.path());
    // Give a bootstrap line a moment: an instance on a database with keys
    // prints nothing.
    std::thread::sleep(Duration::from_millis(500));
    let nothing = b.stdout();
    assert!(nothing.is_empty(), "instance B found keys and printed none");

    for n in 0..5 {
        // The bootstrap admin creates a key on A…
        let response = a.call(
            "POST",
            "/v1/keys",
            &admin,
            &format!(r#"{{"owner":"alice","name":"ci-{n}","scopes":["workspaces:read"]}}"#),
        );
        let (status, body) = (response.status, response.text());
        assert_eq!(status, 201, "{body}");
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = created["key"].as_str().unwrap().to_owned();
        let id = created["api_key"]["id"].as_str().unwrap().to_owned();
        // …B authenticates (and caches) it through forward auth…
        assert_eq!(b.call("GET", "/v1/forward-auth", &token, "").status, 200);
        assert_eq!(b.call("GET", "/v1/forward-auth", &token, "").status, 200);
        // …A revokes it, and B refuses it within a second.
        let response = a.call("POST", &format!("/v1/keys/{id}/revoke"), &admin, "");
        let (status, body) = (response.status, response.text());
        assert_eq!(status, 200, "{body}");
        let revoked = Instant::now();
        loop {
            let status = b.call("GET", "/v1/forward-auth", &token, "").status;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "B still accepted the key {:?} after A revoked it",
                revoked.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "revocation {n} on A refused by B after {:?}",
            revoked.elapsed()
        );
    }
    drop(b);
    drop(a);
}
