//! Fault scenarios shared by the SQLite and PostgreSQL fault tests.
//!
//! - [`creates_cut_by_kill_9`]: many creates at once, the server killed with
//!   SIGKILL in the middle; returns what answered 201.
//! - [`assert_answered_creates_survived`]: after a restart, every create that
//!   answered 201 is there whole (record, token, audit record), and every key
//!   in the store is whole too.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use serde_json::{Value, json};

use super::http;
use super::process::{Serve, send_signal};

/// The owner of every key the scenario creates.
pub const OWNER: &str = "faults";

/// A create that answered 201 before the kill.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The name it was created with (unique per create).
    pub name: String,
    /// The token the answer carried (shown once).
    pub token: String,
    /// The record the answer carried.
    pub record: Value,
}

/// What happened to the creates of [`creates_cut_by_kill_9`].
#[derive(Debug)]
pub struct Cut {
    /// The creates that answered 201, in no order.
    pub answered: Vec<Answered>,
    /// Creates that got no answer (the connection was cut or refused).
    pub unanswered: usize,
    /// The names of creates refused with 503 `unavailable` (the store was
    /// too busy: the pool's acquire timeout); such a create must not
    /// have happened.
    pub refused: Vec<String>,
    /// Answers other than 201 and 503 `unavailable`: none is expected.
    pub unexpected: Vec<(u16, String)>,
}

/// Starts `total` creates at once against `serve` (one thread and one
/// connection each, released together by a barrier) and sends SIGKILL to
/// the server as soon as `kill_after` of them have answered (201, or 503
/// when the store is too busy: the pool's acquire timeout). Waits for the
/// server to be gone, and checks that the cut proves something: some
/// creates answered 201 before it and some got no answer.
pub fn creates_cut_by_kill_9(
    serve: &mut Serve,
    admin: &str,
    total: usize,
    kill_after: usize,
) -> Cut {
    assert!(kill_after < total, "the kill must come before the end");
    let addr = serve.addr;
    let pid = serve.pid();
    let start = Arc::new(Barrier::new(total));
    let created = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let unexpected = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let auth = format!("Bearer {admin}");
    let threads: Vec<_> = (0..total)
        .map(|i| {
            let (start, created, killed) = (start.clone(), created.clone(), killed.clone());
            let answers = answers.clone();
            let (answered, unexpected) = (answered.clone(), unexpected.clone());
            let refused = refused.clone();
            let unanswered = unanswered.clone();
            let auth = auth.clone();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let name = format!("k{i:04}");
                    let body = json!({
                        "owner": OWNER,
                        "name": name,
                        "scopes": ["items:read", "items:write"],
                        "metadata": {"n": i},
                    })
                    .to_string();
                    let headers = [
                        ("Authorization", auth.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    start.wait();
                    match http::try_request(addr, "POST", "/v1/keys", &headers, body.as_bytes()) {
                        Ok(response) if response.status == 201 => {
                            let json = response.json();
                            answered.lock().unwrap().push(Answered {
                                name,
                                token: json["key"].as_str().expect("a token").to_owned(),
                                record: json["api_key"].clone(),
                            });
                            created.fetch_add(1, Ordering::SeqCst);
                            if answers.fetch_add(1, Ordering::SeqCst) + 1 >= kill_after
                                && !killed.swap(true, Ordering::SeqCst)
                            {
                                send_signal(pid, "KILL");
                            }
                        }
                        Ok(response)
                            if response.status == 503
                                && response.json()["error"] == "unavailable" =>
                        {
                            refused.lock().unwrap().push(name);
                            if answers.fetch_add(1, Ordering::SeqCst) + 1 >= kill_after
                                && !killed.swap(true, Ordering::SeqCst)
                            {
                                send_signal(pid, "KILL");
                            }
                        }
                        Ok(response) => unexpected
                            .lock()
                            .unwrap()
                            .push((response.status, response.text())),
                        Err(_) => {
                            unanswered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
                .expect("spawn a create thread")
        })
        .collect();
    for thread in threads {
        thread.join().expect("a create thread panicked");
    }
    assert!(
        killed.load(Ordering::SeqCst),
        "the server was never killed: only {} creates answered ({} with 201)",
        answers.load(Ordering::SeqCst),
        created.load(Ordering::SeqCst)
    );
    let status = serve.wait();
    assert!(!status.success(), "serve was killed, not stopped: {status}");
    let cut = Cut {
        answered: std::mem::take(&mut *answered.lock().unwrap()),
        refused: std::mem::take(&mut *refused.lock().unwrap()),
        unanswered: unanswered.load(Ordering::SeqCst),
        unexpected: std::mem::take(&mut *unexpected.lock().unwrap()),
    };
    assert!(
        !cut.answered.is_empty(),
        "no create answered 201 before the kill"
    );
    assert!(
        cut.unanswered > 0,
        "the kill came after every create had answered; it proved nothing"
    );
    cut
}

/// Every key of [`OWNER`] in the store, by id, read page by page.
pub fn all_keys(serve: &Serve, admin: &str) -> BTreeMap<String, Value> {
    let mut keys = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/keys?owner={OWNER}&limit=100&cursor={cursor}"),
            None => format!("/v1/keys?owner={OWNER}&limit=100"),
        };
        let response = serve.call("GET", &path, admin, "");
        assert_eq!(response.status, 200, "{path}: {response:?}");
        let page = response.json();
        for key in page["keys"].as_array().expect("a keys array") {
            let id = key["id"].as_str().expect("an id").to_owned();
            assert!(keys.insert(id, key.clone()).is_none(), "a key listed twice");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return keys,
        }
    }
}

/// The ids of the `key.create` audit records of [`OWNER`]'s keys.
pub fn created_in_audit(serve: &Serve, admin: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => {
                format!("/v1/audit?owner={OWNER}&action=key.create&limit=1000&cursor={cursor}")
            }
            None => format!("/v1/audit?owner={OWNER}&action=key.create&limit=1000"),
        };
        let response = serve.call("GET", &path, admin, "");
        assert_eq!(response.status, 200, "{path}: {response:?}");
        let page = response.json();
        for record in page["records"].as_array().expect("a records array") {
            let id = record["target"]["key_id"]
                .as_str()
                .expect("a key_id")
                .to_owned();
            assert!(ids.insert(id), "two create records for one key");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

/// A key record is whole: every field a create writes is there and says
/// what the create asked for.
pub fn assert_whole(key: &Value) {
    let name = key["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no name: {key}"));
    let n: u64 = name
        .strip_prefix('k')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a name this test did not give: {key}"));
    assert_eq!(key["owner"], OWNER, "{key}");
    assert_eq!(key["scopes"], json!(["items:read", "items:write"]), "{key}");
    assert_eq!(key["metadata"], json!({"n": n}), "{key}");
    assert_eq!(key["status"], "active", "{key}");
    assert!(key["created_at"].is_string(), "{key}");
    assert!(key["display_prefix"].is_string(), "{key}");
}

/// After a restart: every answered create is in the store as it was
/// answered, its token authenticates, and it has its audit record; every key
/// in the store is whole and has its audit record (creates that were cut
/// either happened whole or not at all).
pub fn assert_answered_creates_survived(serve: &Serve, admin: &str, cut: &Cut) {
    assert!(
        cut.unexpected.is_empty(),
        "{} creates answered other than 201 or 503 before the kill, e.g. {:?}",
        cut.unexpected.len(),
        cut.unexpected.first()
    );
    let keys = all_keys(serve, admin);
    let audited = created_in_audit(serve, admin);
    for answered in &cut.answered {
        let id = answered.record["id"].as_str().expect("an id");
        let stored = keys
            .get(id)
            .unwrap_or_else(|| panic!("key {id} answered 201 but is gone after the restart"));
        assert_eq!(
            stored, &answered.record,
            "key {id} changed across the restart"
        );
        let check = serve.call(
            "POST",
            "/v1/verify",
            admin,
            &json!({"key": answered.token}).to_string(),
        );
        assert_eq!(check.status, 200, "{check:?}");
        assert_eq!(
            check.json()["valid"],
            true,
            "the token of {id} no longer verifies: {check:?}"
        );
    }
    for key in keys.values() {
        assert_whole(key);
        let name = key["name"].as_str().unwrap();
        assert!(
            !cut.refused.iter().any(|refused| refused == name),
            "the create of {name} answered 503 but happened"
        );
    }
    let stored: BTreeSet<String> = keys.keys().cloned().collect();
    assert_eq!(
        stored, audited,
        "the keys in the store and their create records differ"
    );
}
