//! Credits across processes: real `keygate serve` instances on one
//! PostgreSQL database, driven over real sockets. The store is the
//! authority: together the instances admit exactly the credits granted,
//! a graceful stop returns what an instance held, and a `kill -9` forfeits
//! at most one block and never over-admits.

#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::postgres::TestDb;
use common::{Serve, ServeOptions, send_signal};
use keygate::{KeyId, KeyStore, PostgresStore};
use serde_json::json;

/// The most one instance holds in reserve for one key beyond a request's
/// cost (the documented block bound).
const MAX_BLOCK: u64 = 100;

fn serve_on(url: &str, pepper: &str, dir: &std::path::Path) -> Serve {
    Serve::start(
        dir,
        ServeOptions::new()
            .args(["--database-url", url])
            .env("KEYGATE_PEPPER", pepper),
    )
}

/// Two instances on a fresh database, the bootstrap admin token, and a key
/// with `credits` (its token and id).
async fn two_instances(credits: u64) -> (TestDb, tempfile::TempDir, Serve, Serve, String, KeyId) {
    let db = TestDb::create().await;
    let pepper = "22".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let a = serve_on(&db.url, &pepper, dir.path());
    let admin = a.bootstrap_token();
    let b = serve_on(&db.url, &pepper, dir.path());
    let (token, record) = a.create_key(
        &admin,
        json!({"owner": "alice", "name": "paid", "credits": {"remaining": credits}}),
    );
    assert_eq!(record["credits"]["remaining"], credits, "{record}");
    let id = KeyId::parse(record["id"].as_str().unwrap()).unwrap();
    (db, dir, a, b, token, id)
}

/// `requests` concurrent forward-auth checks of `token`, alternating
/// between the instances; returns (admitted, refused credits_exhausted).
fn spend(instances: &[&Serve], token: &str, requests: usize) -> (usize, usize) {
    let admitted = Arc::new(AtomicUsize::new(0));
    let exhausted = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for i in 0..requests {
            let serve = instances[i % instances.len()];
            let (admitted, exhausted) = (admitted.clone(), exhausted.clone());
            scope.spawn(move || {
                let response = serve.call("GET", "/v1/forward-auth", token, "");
                match response.status {
                    200 => {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    429 => {
                        assert_eq!(
                            response.json()["error"],
                            "credits_exhausted",
                            "{response:?}"
                        );
                        assert_eq!(response.header("cache-control"), Some("no-store"));
                        assert_eq!(response.header("retry-after"), None, "no refill scheduled");
                        exhausted.fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!("unexpected {other}: {response:?}"),
                }
            });
        }
    });
    (
        admitted.load(Ordering::SeqCst),
        exhausted.load(Ordering::SeqCst),
    )
}

/// The balance as the store holds it.
async fn remaining(url: &str, id: &KeyId) -> u64 {
    let store = PostgresStore::connect(url).await.unwrap();
    let stored = store.get(id).await.unwrap().expect("the key");
    stored.key.credits.expect("credits").remaining()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_admit_exactly_the_credits() {
    let (db, _dir, mut a, mut b, token, id) = two_instances(7).await;
    let (admitted, exhausted) = spend(&[&a, &b], &token, 40);
    assert_eq!((admitted, exhausted), (7, 33));
    a.stop();
    b.stop();
    assert_eq!(remaining(&db.url, &id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_returns_what_an_instance_held() {
    let (db, _dir, mut a, mut b, token, id) = two_instances(1_000).await;
    // One request at a time first: the second reservation of each instance
    // takes a block (the first knows nothing of the balance yet).
    for serve in [&a, &b, &a, &b] {
        assert_eq!(spend(&[serve], &token, 1), (1, 0));
    }
    let (admitted, exhausted) = spend(&[&a, &b], &token, 36);
    assert_eq!((admitted, exhausted), (36, 0));
    let held = remaining(&db.url, &id).await;
    assert!(
        held < 960,
        "the instances reserve blocks ({held} left in the store)"
    );
    a.stop();
    b.stop();
    assert!(
        a.stderr().contains("credits_returned"),
        "the stop says what it returned: {}",
        a.stderr()
    );
    assert_eq!(
        remaining(&db.url, &id).await,
        960,
        "every unspent credit is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_forfeits_at_most_one_block_and_never_over_admits() {
    let (db, dir, a, mut b, token, id) = two_instances(1_000).await;
    let (admitted, _) = spend(&[&a, &b], &token, 40);
    assert_eq!(admitted, 40);
    send_signal(a.pid(), "KILL");
    drop(a);
    // The survivor goes on spending from its block and the store.
    let (more, _) = spend(&[&b], &token, 20);
    assert_eq!(more, 20);
    b.stop();
    let left = remaining(&db.url, &id).await;
    let spent = 1_000 - left;
    assert!(
        spent >= 60,
        "never more admitted than taken: {spent} taken for 60"
    );
    assert!(
        spent <= 60 + 1 + MAX_BLOCK,
        "at most one block forfeit: {spent} taken for 60"
    );
    // A fresh instance spends exactly what is left.
    let pepper = "22".repeat(32);
    let mut c = serve_on(&db.url, &pepper, dir.path());
    std::thread::sleep(Duration::from_millis(100));
    let (last, exhausted) = spend(&[&c], &token, usize::try_from(left).unwrap() + 5);
    assert_eq!((last as u64, exhausted), (left, 5));
    c.stop();
    assert_eq!(remaining(&db.url, &id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_are_reported_by_verify_and_adjusted_through_the_api() {
    let (db, _dir, mut a, mut b, token, id) = two_instances(5).await;
    let admin = a.bootstrap_token();
    let verify = |serve: &Serve, cost: u64| {
        let body = json!({"key": token, "cost": cost}).to_string();
        serve.call("POST", "/v1/verify", &admin, &body).json()
    };
    let answer = verify(&a, 2);
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["credits_remaining"], 3, "{answer}");
    let answer = verify(&b, 4);
    assert_eq!(answer["code"], "credits_exhausted", "{answer}");
    assert_eq!(answer["valid"], false);
    let answer = verify(&b, 0);
    assert_eq!(answer["valid"], true, "cost 0 spends nothing: {answer}");
    assert!(answer.get("credits_remaining").is_none(), "{answer}");
    // An operator adds credits; both instances see them.
    let response = a.call(
        "POST",
        &format!("/v1/keys/{id}/credits"),
        &admin,
        r#"{"add": 10}"#,
    );
    assert_eq!(response.status, 200, "{response:?}");
    // B found the key short a moment ago and believes it for a second.
    let added = std::time::Instant::now();
    loop {
        let answer = verify(&b, 4);
        if answer["valid"] == true {
            break;
        }
        assert_eq!(answer["code"], "credits_exhausted", "{answer}");
        assert!(
            added.elapsed() < Duration::from_secs(3),
            "B still refuses {:?} after the credits were added",
            added.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.stop();
    b.stop();
    assert_eq!(remaining(&db.url, &id).await, 3 + 10 - 4);
}
