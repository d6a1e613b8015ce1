//! Faults with PostgreSQL, with a real `keygate serve`:
//!
//! - SIGKILL in the middle of 1 000 concurrent creates: every create that
//!   answered 201 is there after a restart, whole, with its audit record.
//! - The PostgreSQL server restarted (stopped as by a crash, then started)
//!   while clients keep calling forward auth: a cached key keeps working,
//!   an uncached one is 503 `unavailable` with `Retry-After: 1`, nothing
//!   else is ever answered, and `serve` recovers by itself.
//!
//! The restart test runs a PostgreSQL server of its own (initdb in a
//! temporary directory), never the shared one of `KEYGATE_TEST_POSTGRES_URL`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use common::faults;
use common::http;
use common::pg_server::PgServer;
use common::postgres::TestDb;
use common::process::{Serve, ServeOptions};

const PEPPER: &str = "4b657967617465206661756c7420746573747320706570706572206f6e6c7921";

fn serve_on(url: &str, dir: &std::path::Path) -> Serve {
    Serve::start(
        dir,
        ServeOptions::new()
            .args(["--database-url", url])
            .env("KEYGATE_PEPPER", PEPPER),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_thousand_creates_loses_no_answered_key_on_postgres() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let (admin, cut) = {
        let dir = dir.path().to_owned();
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut serve = serve_on(&url, &dir);
            let admin = serve.bootstrap_token();
            let cut = faults::creates_cut_by_kill_9(&mut serve, &admin, 1000, 300);
            (admin, cut)
        })
        .await
        .unwrap()
    };
    let dir = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let again = serve_on(&url, &dir);
        faults::assert_answered_creates_survived(&again, &admin, &cut);
        eprintln!(
            "kill -9 on PostgreSQL: {} creates answered 201, {} 503, {} unanswered, {} keys after the restart",
            cut.answered.len(),
            cut.refused.len(),
            cut.unanswered,
            faults::all_keys(&again, &admin).len()
        );
    })
    .await
    .unwrap();
    drop(db);
}

/// One forward-auth answer: when it was asked, which key, and the status
/// (`None`: no answer at all).
#[derive(Clone, Copy, Debug)]
struct Call {
    at: Instant,
    done: Instant,
    cached: bool,
    status: Option<u16>,
    retry_after_1: bool,
}

#[test]
fn a_postgres_restart_under_load_is_503_for_uncached_keys_and_recovers_by_itself() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_on(&pg.url("postgres"), dir.path());
    let admin = serve.bootstrap_token();
    let (cached, _) = serve.create_key(&admin, json!({"owner": "load", "name": "cached"}));
    let (uncached, _) = serve.create_key(&admin, json!({"owner": "load", "name": "uncached"}));
    // Loaded into the cache now; positive entries live 30 s, far longer
    // than the test's outage.
    let first = http::get(
        serve.addr,
        "/v1/forward-auth",
        &[("Authorization", &format!("Bearer {cached}"))],
    );
    assert_eq!(first.status, 200, "{first:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let uncached_on = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let addr = serve.addr;
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (stop, uncached_on, calls) = (stop.clone(), uncached_on.clone(), calls.clone());
            let is_cached = i < 5;
            let auth = format!("Bearer {}", if is_cached { &cached } else { &uncached });
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !is_cached && !uncached_on.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let at = Instant::now();
                    let answer = http::try_request(
                        addr,
                        "GET",
                        "/v1/forward-auth",
                        &[("Authorization", auth.as_str())],
                        b"",
                    );
                    let call = Call {
                        at,
                        done: Instant::now(),
                        cached: is_cached,
                        status: answer.as_ref().ok().map(|r| r.status),
                        retry_after_1: answer
                            .as_ref()
                            .is_ok_and(|r| r.header("retry-after") == Some("1")),
                    };
                    calls.lock().unwrap().push(call);
                }
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(500));
    let down = Instant::now();
    pg.stop("immediate");
    // The uncached key is asked for only once the database is gone: it
    // can never have been loaded.
    uncached_on.store(true, Ordering::Relaxed);
    // Longer than the pool's 5 s acquire timeout, so that requests waiting
    // for a connection give up within the outage.
    thread::sleep(Duration::from_secs(8));
    let up = Instant::now();
    pg.start_again();
    let started = Instant::now();
    // Load goes on after the restart, long enough to see the recovery.
    let recovered = loop {
        let answer = http::get(
            serve.addr,
            "/v1/forward-auth",
            &[("Authorization", &format!("Bearer {uncached}"))],
        );
        if answer.status == 200 {
            break Instant::now();
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no recovery within 20 s of PostgreSQL being back;\n{}",
            serve.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    };
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let calls = std::mem::take(&mut *calls.lock().unwrap());

    let no_answer = calls.iter().filter(|c| c.status.is_none()).count();
    assert_eq!(no_answer, 0, "serve dropped {no_answer} requests");
    let by = |cached: bool, status: u16| {
        calls
            .iter()
            .filter(|c| c.cached == cached && c.status == Some(status))
            .count()
    };
    let outage = |c: &&Call| c.at >= down && c.at < up;
    let cached_refused: Vec<_> = calls
        .iter()
        .filter(|c| c.cached && c.status != Some(200))
        .collect();
    assert!(
        cached_refused.is_empty(),
        "the cached key was refused {} times, e.g. {:?}",
        cached_refused.len(),
        cached_refused.first()
    );
    assert!(
        calls.iter().filter(outage).filter(|c| c.cached).count() > 0,
        "no load on the cached key during the outage"
    );
    for call in calls.iter().filter(|c| !c.cached) {
        match call.status {
            // A request may wait for a connection (up to the pool's
            // acquire timeout) and be answered once the server is back.
            Some(200) => assert!(
                call.done >= up,
                "the uncached key was admitted while PostgreSQL was down"
            ),
            Some(503) => assert!(call.retry_after_1, "a 503 without Retry-After: 1"),
            other => panic!("the uncached key was answered {other:?}"),
        }
    }
    assert!(
        calls
            .iter()
            .filter(outage)
            .any(|c| !c.cached && c.status == Some(503)),
        "the uncached key was never tried during the outage"
    );
    // After the recovery, nothing but 200 (a moment for the pool to have
    // replaced every connection the restart cut).
    let settled = recovered + Duration::from_millis(500);
    let late: Vec<_> = calls
        .iter()
        .filter(|c| c.at >= settled && c.status != Some(200))
        .collect();
    assert!(late.is_empty(), "refusals after the recovery: {late:?}");

    // Fully back: key management works and revocation is heard again.
    let (fresh, _) = serve.create_key(&admin, json!({"owner": "load", "name": "after"}));
    let fresh_check = http::get(
        serve.addr,
        "/v1/forward-auth",
        &[("Authorization", &format!("Bearer {fresh}"))],
    );
    assert_eq!(fresh_check.status, 200, "{fresh_check:?}");
    let slowest = |cached: bool| {
        calls
            .iter()
            .filter(|c| c.cached == cached && c.at >= down && c.at < up)
            .map(|c| c.done - c.at)
            .max()
            .unwrap_or_default()
    };
    let in_outage = calls.iter().filter(outage).filter(|c| c.cached).count();
    eprintln!(
        "PostgreSQL restart: cached key 200 x{} ({in_outage} asked during the outage, slowest answer {:?}), uncached 503 x{} (slowest {:?}) then 200 x{}; recovered {:?} after the server was back",
        by(true, 200),
        slowest(true),
        by(false, 503),
        slowest(false),
        by(false, 200),
        recovered - started
    );
}
