//! What the middleware writes to the log: the key and the outcome, a hint
//! when a server forgot its connect info, never a token or a secret.
//!
//! These tests install a thread-local subscriber, and `tracing` caches
//! each call site's interest process-wide: a call site first reached on
//! another test's thread (with no subscriber) while this one is being
//! installed can be cached as "never" and stay silent. So they live in a
//! binary of their own, and take turns.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use common::counting::CountingStore;
use common::token_secret;
use http::Request;
use keygate::{Keygate, KeygateBuilder, NewKey, Pepper};
use tower::ServiceExt;

fn builder(store: &CountingStore) -> KeygateBuilder {
    Keygate::builder(store.clone()).pepper(Pepper::insecure_fixed_for_tests())
}

/// One capturing test at a time (a panicking one does not block the rest:
/// tokio's mutex is not poisoned).
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Installs a subscriber writing into the returned buffer for as long as
/// the guard lives, and rebuilds the call-site interest cache so that no
/// call site keeps an interest computed before it was installed.
fn capture(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    (captured, guard)
}

/// Collects everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_name_the_key_and_outcome_but_never_the_secret() {
    let _turn = one_at_a_time().await;
    let (captured, _guard) = capture(tracing::Level::TRACE);

    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let good = keygate
        .keys()
        .create(NewKey::new("alice", "good"))
        .await
        .unwrap();
    let revoked = keygate
        .keys()
        .create(NewKey::new("alice", "revoked"))
        .await
        .unwrap();
    keygate.keys().revoke(&revoked.key.id, None).await.unwrap();
    let rotated = keygate
        .keys()
        .rotate(&good.key.id, time::Duration::hours(1))
        .await
        .unwrap();
    let mut wrong_secret = good.token.expose().to_owned();
    wrong_secret.replace_range(
        30..31,
        if &wrong_secret[30..31] == "a" {
            "b"
        } else {
            "a"
        },
    );

    let service = tower::ServiceBuilder::new()
        .layer(keygate.layer())
        .service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        });
    let tokens = [
        good.token.expose(),
        revoked.token.expose(),
        rotated.token.expose(),
        &wrong_secret,
    ];
    for token in tokens {
        let request = Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(String::new())
            .unwrap();
        service.clone().oneshot(request).await.unwrap();
    }
    keygate.flush_usage().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(&good.key.display_prefix), "{logs}");
    assert!(logs.contains("outcome=\"authenticated\""), "{logs}");
    assert!(logs.contains("outcome=\"invalid_token\""), "{logs}");
    assert!(logs.contains("reason=\"revoked\""), "{logs}");
    for token in tokens {
        assert!(!logs.contains(token), "a token reached the logs");
        assert!(
            !logs.contains(token_secret(token)),
            "a secret reached the logs"
        );
    }
}

/// A server that forgot `into_make_service_with_connect_info` refuses keys
/// with IP lists (fail closed) — and says why in its log, with the fix.
#[tokio::test(flavor = "current_thread")]
async fn a_key_with_ip_lists_and_no_client_address_is_refused_with_a_hint_in_the_log() {
    let _turn = one_at_a_time().await;
    let (captured, _guard) = capture(tracing::Level::DEBUG);

    let store = CountingStore::new();
    let keygate = builder(&store).build().unwrap();
    let fenced = keygate
        .keys()
        .create(NewKey::new("alice", "fenced").ip_allow(["127.0.0.0/8"]))
        .await
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(keygate.layer());
    let addr = common::server::serve_app_without_peer(app).await;
    let token = fenced.token.expose().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        common::http::get(addr, "/", &[("Authorization", &format!("Bearer {token}"))])
    })
    .await
    .unwrap();
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.json()["error"], "ip_not_allowed");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("no client address"))
        .unwrap_or_else(|| panic!("no hint in the log:\n{log}"));
    assert!(line.contains(&fenced.key.id.to_string()), "{line}");
    assert!(
        log.contains("into_make_service_with_connect_info"),
        "the hint names the fix:\n{log}"
    );
    assert!(!log.contains(fenced.token.expose()), "never the token");
}
