//! The middleware over real HTTP (SPEC §3, §4, §6, §7): an axum app (and a
//! bare hyper 1 server) on a real socket, requests written by hand on a raw
//! `TcpStream` so that duplicate headers, odd bytes and the exact response
//! bytes are all in reach.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::Router;
use axum::routing;
use bytes::Bytes;
use common::forge::{with_bad_checksum, with_checksum, with_secret};
use common::header_values;
use common::server::serve_app as serve;
use common::wire;
use http::header::HeaderName;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use keygate::{
    AuthenticatedKey, CreatedKey, CredentialSource, Environment, KeyId, KeyStore, KeyUpdate,
    Keygate, KeygateBuilder, MemoryStore, NewKey, PeerAddr, Pepper, Rejection, SqliteStore,
    StoreError, StoredKey,
};
use keygate::{InsertRules, ListQuery, Page, Usage};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// A response as it came off the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header names lowercased, values as sent, in wire order.
    headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked if need be).
    body: Vec<u8>,
    /// Every byte received.
    raw: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name`.
    fn all(&self, name: &str) -> Vec<&[u8]> {
        header_values(&self.headers, name)
    }

    /// The only value of header `name`, as text; panics when it repeats.
    fn header(&self, name: &str) -> Option<&str> {
        let values = self.all(name);
        assert!(values.len() <= 1, "header {name} repeated: {self}");
        values
            .first()
            .map(|v| std::str::from_utf8(v).expect("header value is UTF-8"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The raw bytes without the `date` header line, which changes with the clock.
    fn raw_without_date(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len());
        for line in self.raw.split_inclusive(|&b| b == b'\n') {
            if line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"date:") {
                continue;
            }
            out.extend_from_slice(line);
        }
        out
    }
}

impl std::fmt::Display for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

fn parse_response(raw: Vec<u8>) -> RawResponse {
    let parsed = wire::parse(&raw);
    RawResponse {
        status: parsed.status,
        headers: parsed.headers,
        body: parsed.body,
        raw,
    }
}

/// Writes `request` as is, then reads the response to EOF.
async fn send(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(StdDuration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read response");
    parse_response(raw)
}

/// A `GET` with `Connection: close` and the given header lines, verbatim
/// (so names may repeat and values may hold any byte).
fn request(path: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    send(addr, &request(path, &headers)).await
}

async fn get_bearer(addr: SocketAddr, path: &str, token: &str) -> RawResponse {
    get(addr, path, &[("Authorization", &format!("Bearer {token}"))]).await
}

// ---------------------------------------------------------------------------
// Spec assertions
// ---------------------------------------------------------------------------

const REALM: &str = r#"Bearer realm="keygate""#;
const INVALID_REQUEST: &str = r#"Bearer realm="keygate", error="invalid_request""#;
const INVALID_TOKEN: &str = r#"Bearer realm="keygate", error="invalid_token""#;

fn assert_one_sentence(message: &str, context: &str) {
    let body = message
        .strip_suffix('.')
        .unwrap_or_else(|| panic!("message {message:?} does not end a sentence ({context})"));
    assert!(
        body.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
        "message {message:?} does not start a sentence ({context})"
    );
    assert!(
        !body.contains(['.', '!', '?', '\n']),
        "message {message:?} is more than one sentence ({context})"
    );
}

/// An auth error per SPEC §3: status, exact challenge (or none), no-store,
/// JSON with `error` and a one-sentence `message`. Returns the body.
#[track_caller]
fn assert_rejection(r: &RawResponse, status: u16, challenge: Option<&str>, code: &str) -> Value {
    assert_eq!(r.status, status, "{r}");
    assert_eq!(r.header("www-authenticate"), challenge, "{r}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r}");
    let body = r.json();
    assert_eq!(body["error"], code, "{r}");
    assert_one_sentence(
        body["message"].as_str().expect("message is a string"),
        &r.to_string(),
    );
    body
}

#[track_caller]
fn assert_missing_token(r: &RawResponse) {
    let body = assert_rejection(r, 401, Some(REALM), "missing_token");
    assert_eq!(body.as_object().unwrap().len(), 2, "{r}");
}

#[track_caller]
fn assert_invalid_request(r: &RawResponse) {
    let body = assert_rejection(r, 400, Some(INVALID_REQUEST), "invalid_request");
    assert_eq!(body.as_object().unwrap().len(), 2, "{r}");
}

#[track_caller]
fn assert_invalid_token(r: &RawResponse) -> Value {
    assert_rejection(r, 401, Some(INVALID_TOKEN), "invalid_token")
}

#[track_caller]
fn assert_ip_not_allowed(r: &RawResponse) {
    let body = assert_rejection(r, 403, None, "ip_not_allowed");
    assert_eq!(body.as_object().unwrap().len(), 2, "{r}");
}

#[track_caller]
fn assert_ok(r: &RawResponse) {
    assert_eq!(r.status, 200, "{r}");
}

// ---------------------------------------------------------------------------
// Fixtures: gates, apps, servers
// ---------------------------------------------------------------------------

const SCOPED_EXPR: &str = "workspaces:read and (templates:use or templates:*)";

fn builder() -> KeygateBuilder {
    Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests())
}

fn gate() -> Keygate {
    builder().build().expect("keygate builds")
}

async fn create(gate: &Keygate, new: NewKey) -> CreatedKey {
    gate.keys().create(new).await.expect("key is created")
}

async fn create_token(gate: &Keygate, new: NewKey) -> String {
    create(gate, new).await.token.expose().to_owned()
}

/// Everything the handler can see of the key.
async fn whoami(key: AuthenticatedKey) -> axum::Json<Value> {
    axum::Json(json!({
        "id": key.id().to_string(),
        "display_prefix": key.display_prefix(),
        "owner": key.owner(),
        "organization": key.organization(),
        "environment": key.environment().as_str(),
        "scopes": key.scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "metadata": key.metadata(),
        "expires_at": key.expires_at().map(|t| t.format(&Rfc3339).unwrap()),
    }))
}

async fn owner(key: AuthenticatedKey) -> String {
    format!("ok {}", key.owner())
}

async fn maybe(key: Option<AuthenticatedKey>) -> String {
    match key {
        Some(key) => format!("key {}", key.owner()),
        None => "anonymous".to_owned(),
    }
}

/// The test app: protected routes (some with scope requirements) and two
/// routes behind an optional layer.
fn app(gate: &Keygate) -> Router {
    let require = |expr: &str| gate.require(expr).expect("requirement parses");
    Router::new()
        .route("/whoami", routing::get(whoami))
        .route(
            "/scoped",
            routing::get(owner).route_layer(require(SCOPED_EXPR)),
        )
        .route(
            "/ws-star",
            routing::get(owner).route_layer(require("workspaces:*")),
        )
        .route(
            "/ws-read",
            routing::get(owner).route_layer(require("workspaces:read")),
        )
        .route(
            "/ws-write",
            routing::get(owner).route_layer(require("workspaces:write")),
        )
        .layer(gate.layer())
        .merge(
            Router::new()
                .route("/maybe", routing::get(maybe))
                .route("/maybe-strict", routing::get(owner))
                .route(
                    "/maybe-scoped",
                    routing::get(maybe).route_layer(require("workspaces:read")),
                )
                .layer(gate.layer().optional()),
        )
}

async fn serve_gate(gate: &Keygate) -> SocketAddr {
    serve(app(gate)).await
}

/// A memory store the test controls: `get` and `ping` fail while `down` is
/// set, `get` waits `get_delay_ms` first, and reads and writes are counted.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: Arc<MemoryStore>,
    down: Arc<AtomicBool>,
    get_delay_ms: Arc<AtomicU64>,
    gets: Arc<AtomicU64>,
    /// Writes other than `insert` (which only the test itself causes).
    writes: Arc<AtomicU64>,
}

impl FlakyStore {
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "the test took the store down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl KeyStore for FlakyStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        self.inner.insert(key, rules).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let delay = self.get_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(StdDuration::from_millis(delay)).await;
        }
        self.check()?;
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn replace(&self, key: &StoredKey, now: OffsetDateTime) -> Result<(), StoreError> {
        self.write();
        self.inner.replace(key, now).await
    }
    async fn rotate(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner.rotate(old, new, now).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete(id).await
    }
    async fn count_current(&self, owner: &str, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.count_current(owner, now).await
    }
    async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        self.write();
        self.inner.record_usage(batch).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
}

/// A memory and an SQLite (file) gate, both exposing the invalid-token reason.
async fn lifecycle_gates() -> Vec<(&'static str, Keygate, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let sqlite = SqliteStore::open(&url).await.expect("sqlite opens");
    vec![
        (
            "memory",
            builder().expose_reason(true).build().unwrap(),
            None,
        ),
        (
            "sqlite",
            Keygate::builder(sqlite)
                .pepper(Pepper::insecure_fixed_for_tests())
                .expose_reason(true)
                .build()
                .unwrap(),
            Some(dir),
        ),
    ]
}

// ---------------------------------------------------------------------------
// §3: finding the credential
// ---------------------------------------------------------------------------

#[tokio::test]
async fn no_credential_or_only_a_non_bearer_scheme_is_401_missing_token() {
    let gate = gate();
    let addr = serve_gate(&gate).await;

    assert_missing_token(&get(addr, "/whoami", &[]).await);
    assert_missing_token(
        &get(
            addr,
            "/whoami",
            &[("Authorization", "Basic YWxhZGRpbjpvcGVu")],
        )
        .await,
    );
    assert_missing_token(
        &get(
            addr,
            "/whoami",
            &[("Authorization", "Digest username=\"a\"")],
        )
        .await,
    );
    // Scope-protected routes fail the same way, before any scope check.
    assert_missing_token(&get(addr, "/scoped", &[]).await);
}

#[tokio::test]
async fn credentials_in_two_places_are_400_invalid_request() {
    let gate = gate();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let addr = serve_gate(&gate).await;
    let bearer = format!("Bearer {token}");

    // Each source alone works, so only the duplication is at fault.
    assert_ok(&get(addr, "/whoami", &[("Authorization", &bearer)]).await);
    assert_ok(&get(addr, "/whoami", &[("X-API-Key", &token)]).await);

    let cases: [&[(&str, &str)]; 4] = [
        &[("Authorization", &bearer), ("X-API-Key", &token)],
        &[("Authorization", &bearer), ("Authorization", &bearer)],
        &[("X-API-Key", &token), ("X-API-Key", &token)],
        &[("Authorization", &bearer), ("Authorization", "Basic eDp5")],
    ];
    for headers in cases {
        let r = get(addr, "/whoami", headers).await;
        assert_invalid_request(&r);
    }
}

#[tokio::test]
async fn malformed_credential_headers_are_400_invalid_request() {
    let gate = gate();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let addr = serve_gate(&gate).await;

    let inner_space = format!("Bearer {} {}", &token[..20], &token[20..]);
    let trailing_word = format!("Bearer {token} extra");
    let mut high_byte = format!("Bearer {token}").into_bytes();
    high_byte.push(0xff);
    let mut utf8_key = token.clone().into_bytes();
    utf8_key.extend_from_slice("é".as_bytes());
    let cases: [(&str, &[u8]); 8] = [
        ("Authorization", b"Bearer"),
        ("Authorization", b"Bearer   "),
        ("Authorization", inner_space.as_bytes()),
        ("Authorization", trailing_word.as_bytes()),
        ("Authorization", &high_byte),
        ("X-API-Key", b""),
        ("X-API-Key", &utf8_key),
        ("X-API-Key", b"a b"),
    ];
    for (name, value) in cases {
        let r = send(addr, &request("/whoami", &[(name, value)])).await;
        assert_eq!(
            r.status,
            400,
            "{name}: {:?}\n{r}",
            String::from_utf8_lossy(value)
        );
        assert_invalid_request(&r);
    }
}

/// SPEC §3: the scheme is followed by "one or more spaces", and a
/// non-visible-ASCII header value is a 400. A tab is neither a space nor
/// visible ASCII, so a tab next to the Bearer token is an invalid request —
/// not another scheme (which would let the request through an optional layer
/// anonymously) and not an accepted separator.
#[tokio::test]
async fn a_tab_in_a_bearer_header_value_is_400_invalid_request() {
    let gate = gate();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let addr = serve_gate(&gate).await;

    for value in [
        format!("Bearer\t{token}"),
        format!("Bearer \t{token}"),
        format!("Bearer\t\t{token}"),
    ] {
        for path in ["/whoami", "/maybe"] {
            let r = send(addr, &request(path, &[("Authorization", value.as_bytes())])).await;
            assert_eq!(
                r.status,
                400,
                "{path} with {:?}\n{r}",
                value.replace(&token, "<token>")
            );
            assert_invalid_request(&r);
        }
    }
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_takes_one_or_more_spaces() {
    let gate = gate();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let addr = serve_gate(&gate).await;

    for value in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("bEaReR {token}"),
        format!("Bearer    {token}"),
        format!("Bearer {token}   "),
    ] {
        let r = get(addr, "/whoami", &[("Authorization", &value)]).await;
        assert_ok(&r);
        assert_eq!(r.json()["owner"], "alice", "{value}");
    }
    // Header names are case-insensitive too.
    assert_ok(&get(addr, "/whoami", &[("x-api-key", &token)]).await);
    assert_ok(&get(addr, "/whoami", &[("X-API-KEY", &token)]).await);
    // A non-Bearer Authorization next to X-API-Key is not a second credential.
    assert_ok(
        &get(
            addr,
            "/whoami",
            &[("Authorization", "Basic eDp5"), ("X-API-Key", &token)],
        )
        .await,
    );
}

// ---------------------------------------------------------------------------
// §3: invalid tokens
// ---------------------------------------------------------------------------

/// One token per cause of `invalid_token`, with the `reason` name each should
/// get. Sleeps until the expiring key has expired (about 1–2 s). `good` is a
/// valid token of the gate, for a sanity check after.
struct InvalidCases {
    good: String,
    cases: Vec<(&'static str, String)>,
}

async fn invalid_token_cases(gate: &Keygate, addr: SocketAddr) -> InvalidCases {
    let expiring = create(
        gate,
        NewKey::new("alice", "expiring")
            .expires_at(OffsetDateTime::now_utc() + Duration::seconds(2)),
    )
    .await;
    let expiring_token = expiring.token.expose().to_owned();
    // Used (and so cached) while valid.
    assert_ok(&get_bearer(addr, "/whoami", &expiring_token).await);

    let good = create_token(gate, NewKey::new("alice", "good")).await;
    // Sanity check of the forging helpers: re-signing the real secret gives the real token.
    assert_eq!(
        with_secret(&good, &good[good.len() - 38..good.len() - 6]),
        good
    );
    let wrong_secret = with_secret(&good, &"0".repeat(32));
    assert_ne!(wrong_secret, good);

    let revoked = create(gate, NewKey::new("alice", "revoked")).await;
    assert_ok(&get_bearer(addr, "/whoami", revoked.token.expose()).await);
    gate.keys()
        .revoke(&revoked.key.id, Some("leaked"))
        .await
        .unwrap();

    let test_env = create_token(
        gate,
        NewKey::new("alice", "test-env").environment(Environment::Test),
    )
    .await;
    assert!(test_env.starts_with("kg_test_"));

    let unknown_id = gate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();
    let body = &good[8..good.len() - 6];
    let unknown_prefix = with_checksum(&format!("zz_live_{body}"));
    let unknown_env = with_checksum(&format!("kg_prod_{body}"));
    let too_long = format!("kg_live_{}", "a".repeat(292));
    assert_eq!(too_long.len(), 300);

    let expires_at = expiring.key.expires_at.expect("expiring key has an expiry");
    let left = expires_at - OffsetDateTime::now_utc();
    if left > Duration::ZERO {
        tokio::time::sleep(StdDuration::try_from(left).unwrap() + StdDuration::from_millis(50))
            .await;
    }

    InvalidCases {
        cases: vec![
            ("malformed", "kg_live_tooshort".to_owned()),
            ("malformed", "not-a-keygate-token".to_owned()),
            ("unknown_prefix", unknown_prefix),
            ("unknown_environment", unknown_env),
            ("bad_checksum", with_bad_checksum(&good)),
            ("unknown_id", unknown_id),
            ("wrong_secret", wrong_secret),
            ("revoked", revoked.token.expose().to_owned()),
            ("expired", expiring_token),
            ("wrong_environment", test_env),
            ("too_long", too_long),
        ],
        good,
    }
}

#[tokio::test]
async fn every_invalid_token_cause_gets_a_byte_identical_401() {
    let gate = builder().environments([Environment::Live]).build().unwrap();
    let addr = serve_gate(&gate).await;
    let InvalidCases { good, cases } = invalid_token_cases(&gate, addr).await;

    let mut first: Option<(&str, Vec<u8>)> = None;
    for (cause, token) in &cases {
        for r in [
            get_bearer(addr, "/whoami", token).await,
            get(addr, "/whoami", &[("X-API-Key", token)]).await,
        ] {
            let body = assert_invalid_token(&r);
            assert_eq!(
                body.as_object().unwrap().len(),
                2,
                "{cause}: no reason by default\n{r}"
            );
            let bytes = r.raw_without_date();
            match &first {
                None => first = Some((cause, bytes)),
                Some((first_cause, first_bytes)) => assert_eq!(
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(first_bytes),
                    "{cause} differs from {first_cause}"
                ),
            }
        }
    }
    // The route's requirement is not what refused them.
    assert_invalid_token(&get_bearer(addr, "/scoped", &cases[0].1).await);
    assert_ok(&get_bearer(addr, "/whoami", &good).await);
}

#[tokio::test]
async fn expose_reason_names_each_invalid_token_cause() {
    let gate = builder()
        .environments([Environment::Live])
        .expose_reason(true)
        .build()
        .unwrap();
    let addr = serve_gate(&gate).await;
    let InvalidCases { good, cases } = invalid_token_cases(&gate, addr).await;

    for (cause, token) in &cases {
        let r = get_bearer(addr, "/whoami", token).await;
        let body = assert_invalid_token(&r);
        assert_eq!(body["reason"], *cause, "{r}");
        assert_eq!(body.as_object().unwrap().len(), 3, "{r}");
    }
    // Other rejections do not grow a reason.
    let r = get(addr, "/whoami", &[]).await;
    assert_missing_token(&r);
    assert_ok(&get_bearer(addr, "/whoami", &good).await);
}

// ---------------------------------------------------------------------------
// §3/§5: IP lists and X-Forwarded-For
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ip_lists_are_checked_against_the_peer_address() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let outside = create_token(
        &gate,
        NewKey::new("alice", "outside").ip_allow(["10.0.0.0/8"]),
    )
    .await;
    let denied = create_token(&gate, NewKey::new("alice", "denied").ip_deny(["127.0.0.1"])).await;
    let allowed = create_token(
        &gate,
        NewKey::new("alice", "allowed").ip_allow(["10.0.0.0/8", "127.0.0.1"]),
    )
    .await;
    let both = create_token(
        &gate,
        NewKey::new("alice", "both")
            .ip_allow(["127.0.0.0/8"])
            .ip_deny(["127.0.0.1/32"]),
    )
    .await;
    let other_deny = create_token(
        &gate,
        NewKey::new("alice", "other-deny").ip_deny(["10.0.0.0/8"]),
    )
    .await;

    assert_ip_not_allowed(&get_bearer(addr, "/whoami", &outside).await);
    assert_ip_not_allowed(&get_bearer(addr, "/whoami", &denied).await);
    assert_ip_not_allowed(&get_bearer(addr, "/whoami", &both).await);
    assert_ok(&get_bearer(addr, "/whoami", &allowed).await);
    assert_ok(&get_bearer(addr, "/whoami", &other_deny).await);
    // The IP check comes before the route's scopes, with the same answer.
    assert_ip_not_allowed(&get_bearer(addr, "/scoped", &outside).await);
    // Cached or not, the answer stays.
    assert_ip_not_allowed(&get(addr, "/whoami", &[("X-API-Key", &outside)]).await);
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let store = Arc::new(MemoryStore::new());
    let trusting = Keygate::builder(store.clone())
        .pepper(Pepper::insecure_fixed_for_tests())
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()])
        .build()
        .unwrap();
    let plain = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    let token = create_token(
        &trusting,
        NewKey::new("alice", "behind-proxy").ip_allow(["203.0.113.0/24"]),
    )
    .await;
    let trusting_addr = serve_gate(&trusting).await;
    let plain_addr = serve_gate(&plain).await;
    let send_xff = |addr: SocketAddr, xff: &'static str| {
        let bearer = format!("Bearer {token}");
        async move {
            get(
                addr,
                "/whoami",
                &[("Authorization", &bearer), ("X-Forwarded-For", xff)],
            )
            .await
        }
    };

    assert_ok(&send_xff(trusting_addr, "203.0.113.7").await);
    assert_ip_not_allowed(&send_xff(trusting_addr, "198.51.100.1").await);
    // The nearest untrusted hop is the client; what the client wrote to its left is not.
    assert_ok(&send_xff(trusting_addr, "198.51.100.1, 203.0.113.7").await);
    assert_ip_not_allowed(&send_xff(trusting_addr, "203.0.113.7, 198.51.100.1").await);
    // Trusted hops are skipped.
    assert_ok(&send_xff(trusting_addr, "203.0.113.7, 127.0.0.9").await);
    // Several header lines form one list, the last line nearest.
    let bearer = format!("Bearer {token}");
    let two_lines = [
        ("Authorization", bearer.as_str()),
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Forwarded-For", "203.0.113.7"),
    ];
    assert_ok(&get(trusting_addr, "/whoami", &two_lines).await);
    let two_lines = [
        ("Authorization", bearer.as_str()),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-For", "198.51.100.1"),
    ];
    assert_ip_not_allowed(&get(trusting_addr, "/whoami", &two_lines).await);
    // An unparseable hop ends the walk at the last trusted address.
    assert_ip_not_allowed(&send_xff(trusting_addr, "203.0.113.7, garbage").await);
    // No header: the (trusted) peer itself is the client.
    assert_ip_not_allowed(&get_bearer(trusting_addr, "/whoami", &token).await);

    // Without trusted proxies the header is ignored: 127.0.0.1 is the client.
    assert_ip_not_allowed(&send_xff(plain_addr, "203.0.113.7").await);
}

// ---------------------------------------------------------------------------
// §4: scopes per route
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unsatisfied_requirement_is_403_insufficient_scope_with_challenge() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let read_only = create_token(
        &gate,
        NewKey::new("alice", "read").scopes(["workspaces:read"]),
    )
    .await;
    let templates_only =
        create_token(&gate, NewKey::new("alice", "tpl").scopes(["templates:*"])).await;
    let wildcard = create_token(
        &gate,
        NewKey::new("alice", "wild").scopes(["templates:*", "workspaces:read"]),
    )
    .await;
    let concrete = create_token(
        &gate,
        NewKey::new("alice", "concrete").scopes(["workspaces:read", "templates:use"]),
    )
    .await;
    let everything = create_token(&gate, NewKey::new("alice", "all").scopes(["*:*"])).await;

    let challenge = r#"Bearer realm="keygate", error="insufficient_scope", scope="workspaces:read templates:use templates:*""#;
    for token in [&read_only, &templates_only] {
        let r = get_bearer(addr, "/scoped", token).await;
        let body = assert_rejection(&r, 403, Some(challenge), "insufficient_scope");
        assert_eq!(body["required"], SCOPED_EXPR, "{r}");
        assert_eq!(body.as_object().unwrap().len(), 3, "{r}");
    }
    for token in [&wildcard, &concrete, &everything] {
        let r = get_bearer(addr, "/scoped", token).await;
        assert_ok(&r);
        assert_eq!(r.text(), "ok alice");
    }
}

#[tokio::test]
async fn required_wildcard_needs_an_equal_or_wider_grant() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let challenge = r#"Bearer realm="keygate", error="insufficient_scope", scope="workspaces:*""#;

    for (scopes, allowed) in [
        (vec!["workspaces:read"], false),
        (vec!["workspaces:read", "workspaces:write"], false),
        (vec!["*:read"], false),
        (vec!["workspaces:*"], true),
        (vec!["*:*"], true),
    ] {
        let name = scopes.join(",");
        let token = create_token(&gate, NewKey::new("alice", name.clone()).scopes(scopes)).await;
        let r = get_bearer(addr, "/ws-star", &token).await;
        if allowed {
            assert_ok(&r);
        } else {
            let body = assert_rejection(&r, 403, Some(challenge), "insufficient_scope");
            assert_eq!(body["required"], "workspaces:*", "{name}: {r}");
        }
        // Every one of them satisfies the concrete requirement.
        assert_ok(&get_bearer(addr, "/ws-read", &token).await);
    }
}

// ---------------------------------------------------------------------------
// §3: store outage
// ---------------------------------------------------------------------------

#[tokio::test]
async fn store_outage_is_503_unless_the_key_is_cached_and_recovery_needs_no_restart() {
    let store = FlakyStore::default();
    let down = store.down.clone();
    let gate = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    let addr = serve_gate(&gate).await;
    let cached = create_token(&gate, NewKey::new("alice", "cached")).await;
    let uncached = create_token(&gate, NewKey::new("bob", "uncached")).await;
    assert_ok(&get_bearer(addr, "/whoami", &cached).await);

    down.store(true, Ordering::SeqCst);
    let r = get_bearer(addr, "/whoami", &uncached).await;
    let body = assert_rejection(&r, 503, None, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{r}");
    // A well-formed token with an unknown id cannot be judged either.
    let unknown = gate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();
    let r = get_bearer(addr, "/whoami", &unknown).await;
    assert_rejection(&r, 503, None, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    // Offline checks need no store.
    assert_invalid_token(&get_bearer(addr, "/whoami", "kg_live_tooshort").await);
    assert_invalid_token(&get_bearer(addr, "/whoami", &with_bad_checksum(&uncached)).await);
    // The key cached before the outage keeps working during it.
    let r = get_bearer(addr, "/whoami", &cached).await;
    assert_ok(&r);
    assert_eq!(r.json()["owner"], "alice");
    // Failures are not cached: still 503 on a retry.
    assert_eq!(get_bearer(addr, "/whoami", &uncached).await.status, 503);

    down.store(false, Ordering::SeqCst);
    let r = get_bearer(addr, "/whoami", &uncached).await;
    assert_ok(&r);
    assert_eq!(r.json()["owner"], "bob");
    assert_invalid_token(&get_bearer(addr, "/whoami", &unknown).await);
}

// ---------------------------------------------------------------------------
// §3/§7: the key in the request, optional auth
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authenticated_key_reaches_the_handler_with_all_its_fields() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let created = create(
        &gate,
        NewKey::new("alice", "ci")
            .organization("acme")
            .environment(Environment::Test)
            .scopes(["workspaces:read", "templates:*"])
            .metadata(json!({"team": "platform", "tier": 2}))
            .expires_in("30d"),
    )
    .await;
    let record = &created.key;

    let r = get_bearer(addr, "/whoami", created.token.expose()).await;
    assert_ok(&r);
    let body = r.json();
    assert_eq!(body["id"], record.id.to_string());
    assert_eq!(body["display_prefix"], format!("kg_test_{}", record.id));
    assert_eq!(body["owner"], "alice");
    assert_eq!(body["organization"], "acme");
    assert_eq!(body["environment"], "test");
    let mut scopes: Vec<&str> = body["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["templates:*", "workspaces:read"]);
    assert_eq!(body["metadata"], json!({"team": "platform", "tier": 2}));
    let expires_at = record.expires_at.expect("30d expiry");
    assert_eq!(body["expires_at"], expires_at.format(&Rfc3339).unwrap());
    let days = (expires_at - OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days), "{days}");

    // A key without organization or expiry says so.
    let bare = create_token(&gate, NewKey::new("bob", "bare").expires_in("never")).await;
    let body = get(addr, "/whoami", &[("X-API-Key", &bare)]).await.json();
    assert_eq!(body["owner"], "bob");
    assert_eq!(body["organization"], Value::Null);
    assert_eq!(body["environment"], "live");
    assert_eq!(body["expires_at"], Value::Null);
    assert_eq!(body["scopes"], json!([]));
    assert_eq!(body["metadata"], json!({}));
}

#[tokio::test]
async fn optional_layer_lets_anonymous_requests_through_but_not_bad_credentials() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;

    let r = get(addr, "/maybe", &[]).await;
    assert_ok(&r);
    assert_eq!(r.text(), "anonymous");
    let r = get(addr, "/maybe", &[("Authorization", "Basic eDp5")]).await;
    assert_eq!(r.text(), "anonymous", "{r}");

    let r = get_bearer(addr, "/maybe", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "key alice");

    assert_invalid_token(&get_bearer(addr, "/maybe", &with_bad_checksum(&token)).await);
    let unknown = gate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();
    assert_invalid_token(&get_bearer(addr, "/maybe", &unknown).await);
    assert_invalid_request(
        &get(
            addr,
            "/maybe",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("X-API-Key", &token),
            ],
        )
        .await,
    );
    assert_invalid_request(&get(addr, "/maybe", &[("Authorization", "Bearer")]).await);
}

#[tokio::test]
async fn authenticated_key_extractor_on_an_optional_route_without_credential_is_401() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;

    assert_missing_token(&get(addr, "/maybe-strict", &[]).await);
    let r = get_bearer(addr, "/maybe-strict", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "ok alice");
}

#[tokio::test]
async fn a_scope_requirement_behind_an_optional_layer_fails_closed() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let reader = create_token(
        &gate,
        NewKey::new("alice", "reader").scopes(["workspaces:read"]),
    )
    .await;
    let nobody = create_token(&gate, NewKey::new("bob", "nobody")).await;

    assert_missing_token(&get(addr, "/maybe-scoped", &[]).await);
    let r = get_bearer(addr, "/maybe-scoped", &nobody).await;
    let body = assert_rejection(
        &r,
        403,
        Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="workspaces:read""#),
        "insufficient_scope",
    );
    assert_eq!(body["required"], "workspaces:read");
    let r = get_bearer(addr, "/maybe-scoped", &reader).await;
    assert_ok(&r);
    assert_eq!(r.text(), "key alice");
}

// ---------------------------------------------------------------------------
// §6: changes through the same process are seen at once, cached or not
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revoke_is_refused_by_the_very_next_request_although_cached() {
    for (backend, gate, _dir) in lifecycle_gates().await {
        let addr = serve_gate(&gate).await;
        let created = create(&gate, NewKey::new("alice", "ci")).await;
        let token = created.token.expose();
        let other = create_token(&gate, NewKey::new("alice", "other")).await;
        assert_ok(&get_bearer(addr, "/whoami", token).await);
        assert_ok(&get_bearer(addr, "/whoami", &other).await);
        assert!(
            gate.cached_entries().await >= 1,
            "{backend}: the key is cached"
        );

        gate.keys()
            .revoke(&created.key.id, Some("leaked"))
            .await
            .unwrap();
        let body = assert_invalid_token(&get_bearer(addr, "/whoami", token).await);
        assert_eq!(body["reason"], "revoked", "{backend}");
        let body = assert_invalid_token(&get(addr, "/whoami", &[("X-API-Key", token)]).await);
        assert_eq!(body["reason"], "revoked", "{backend}");
        // Only that key.
        assert_ok(&get_bearer(addr, "/whoami", &other).await);
    }
}

#[tokio::test]
async fn rotate_without_grace_refuses_the_old_token_at_once() {
    for (backend, gate, _dir) in lifecycle_gates().await {
        let addr = serve_gate(&gate).await;
        let created = create(
            &gate,
            NewKey::new("alice", "ci").scopes(["workspaces:read"]),
        )
        .await;
        let old = created.token.expose();
        assert_ok(&get_bearer(addr, "/ws-read", old).await);

        let rotated = gate
            .keys()
            .rotate(&created.key.id, Duration::ZERO)
            .await
            .unwrap();
        let body = assert_invalid_token(&get_bearer(addr, "/ws-read", old).await);
        assert_eq!(body["reason"], "expired", "{backend}");
        let r = get_bearer(addr, "/whoami", rotated.token.expose()).await;
        assert_ok(&r);
        assert_eq!(r.json()["id"], rotated.key.id.to_string(), "{backend}");
        assert_ok(&get_bearer(addr, "/ws-read", rotated.token.expose()).await);
    }
}

#[tokio::test]
async fn rotate_with_grace_keeps_the_old_token_working_meanwhile() {
    let gate = gate();
    let addr = serve_gate(&gate).await;
    let created = create(&gate, NewKey::new("alice", "ci")).await;
    let old = created.token.expose();
    assert_ok(&get_bearer(addr, "/whoami", old).await);
    let rotated = gate
        .keys()
        .rotate(&created.key.id, Duration::hours(1))
        .await
        .unwrap();
    assert_ok(&get_bearer(addr, "/whoami", old).await);
    assert_ok(&get_bearer(addr, "/whoami", rotated.token.expose()).await);
}

#[tokio::test]
async fn update_is_seen_by_the_very_next_request_although_cached() {
    for (backend, gate, _dir) in lifecycle_gates().await {
        let addr = serve_gate(&gate).await;
        let created = create(
            &gate,
            NewKey::new("alice", "ci").scopes(["workspaces:read", "workspaces:write"]),
        )
        .await;
        let token = created.token.expose();
        assert_ok(&get_bearer(addr, "/ws-write", token).await);
        assert_ok(&get_bearer(addr, "/ws-read", token).await);

        gate.keys()
            .update(
                &created.key.id,
                KeyUpdate::default().scopes(["workspaces:read"]),
            )
            .await
            .unwrap();
        let r = get_bearer(addr, "/ws-write", token).await;
        let body = assert_rejection(
            &r,
            403,
            Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="workspaces:write""#),
            "insufficient_scope",
        );
        assert_eq!(body["required"], "workspaces:write", "{backend}");
        assert_ok(&get_bearer(addr, "/ws-read", token).await);
        let r = get_bearer(addr, "/whoami", token).await;
        assert_eq!(r.json()["scopes"], json!(["workspaces:read"]), "{backend}");

        // IP lists too.
        gate.keys()
            .update(
                &created.key.id,
                KeyUpdate::default().ip_allow(["10.0.0.0/8"]),
            )
            .await
            .unwrap();
        assert_ip_not_allowed(&get_bearer(addr, "/ws-read", token).await);
        gate.keys()
            .update(
                &created.key.id,
                KeyUpdate::default().ip_allow(Vec::<String>::new()),
            )
            .await
            .unwrap();
        assert_ok(&get_bearer(addr, "/ws-read", token).await);
    }
}

#[tokio::test]
async fn delete_is_seen_by_the_very_next_request_although_cached() {
    for (backend, gate, _dir) in lifecycle_gates().await {
        let addr = serve_gate(&gate).await;
        let created = create(&gate, NewKey::new("alice", "ci")).await;
        let token = created.token.expose();
        assert_ok(&get_bearer(addr, "/whoami", token).await);

        gate.keys().delete(&created.key.id).await.unwrap();
        let body = assert_invalid_token(&get_bearer(addr, "/whoami", token).await);
        assert_eq!(body["reason"], "unknown_id", "{backend}");
    }
}

// ---------------------------------------------------------------------------
// §3: configurable sources, realm and responder
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cookie_and_query_sources_work_only_when_opted_in() {
    let store = Arc::new(MemoryStore::new());
    let opted_in = Keygate::builder(store.clone())
        .pepper(Pepper::insecure_fixed_for_tests())
        .credential_sources([
            CredentialSource::Bearer,
            CredentialSource::Header(HeaderName::from_static("x-api-key")),
            CredentialSource::Cookie("kg_token".to_owned()),
            CredentialSource::Query("api_key".to_owned()),
        ])
        .build()
        .unwrap();
    let default = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    let token = create_token(&opted_in, NewKey::new("alice", "ci")).await;
    let on = serve_gate(&opted_in).await;
    let off = serve_gate(&default).await;
    let cookie = format!("theme=dark; kg_token={token}; lang=en");
    let query = format!("/whoami?page=2&api_key={token}");

    let r = get(on, "/whoami", &[("Cookie", &cookie)]).await;
    assert_ok(&r);
    assert_eq!(r.json()["owner"], "alice");
    let r = get(on, &query, &[]).await;
    assert_ok(&r);
    assert_eq!(r.json()["owner"], "alice");
    assert_ok(&get_bearer(on, "/whoami", &token).await);

    assert_missing_token(&get(off, "/whoami", &[("Cookie", &cookie)]).await);
    assert_missing_token(&get(off, &query, &[]).await);
    // Another cookie's name does not count.
    assert_missing_token(&get(on, "/whoami", &[("Cookie", &format!("other={token}"))]).await);

    let bearer = format!("Bearer {token}");
    assert_invalid_request(
        &get(
            on,
            "/whoami",
            &[("Cookie", &cookie), ("Authorization", &bearer)],
        )
        .await,
    );
    assert_invalid_request(&get(on, &query, &[("Cookie", &cookie)]).await);
    assert_invalid_request(&get(on, &query, &[("X-API-Key", &token)]).await);
    // A bad token in a cookie is an invalid token like any other.
    assert_invalid_token(
        &get(
            on,
            "/whoami",
            &[("Cookie", &format!("kg_token={}", with_bad_checksum(&token)))],
        )
        .await,
    );
}

#[tokio::test]
async fn a_custom_header_name_replaces_x_api_key() {
    let gate = builder()
        .credential_sources([
            CredentialSource::Bearer,
            CredentialSource::Header(HeaderName::from_static("x-custom-key")),
        ])
        .build()
        .unwrap();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let addr = serve_gate(&gate).await;

    let r = get(addr, "/whoami", &[("X-Custom-Key", &token)]).await;
    assert_ok(&r);
    assert_eq!(r.json()["owner"], "alice");
    assert_missing_token(&get(addr, "/whoami", &[("X-API-Key", &token)]).await);
    assert_invalid_request(
        &get(
            addr,
            "/whoami",
            &[
                ("X-Custom-Key", &token),
                ("Authorization", &format!("Bearer {token}")),
            ],
        )
        .await,
    );
    assert_invalid_request(
        &get(
            addr,
            "/whoami",
            &[("X-Custom-Key", &token), ("X-Custom-Key", &token)],
        )
        .await,
    );
}

#[tokio::test]
async fn the_configured_realm_appears_in_every_challenge() {
    let gate = builder().realm("My API").build().unwrap();
    let addr = serve_gate(&gate).await;
    let token = create_token(
        &gate,
        NewKey::new("alice", "ci").scopes(["workspaces:read"]),
    )
    .await;

    let r = get(addr, "/whoami", &[]).await;
    assert_rejection(&r, 401, Some(r#"Bearer realm="My API""#), "missing_token");
    let r = get(addr, "/maybe-strict", &[]).await;
    assert_rejection(&r, 401, Some(r#"Bearer realm="My API""#), "missing_token");
    let r = get(addr, "/whoami", &[("Authorization", "Bearer")]).await;
    assert_rejection(
        &r,
        400,
        Some(r#"Bearer realm="My API", error="invalid_request""#),
        "invalid_request",
    );
    let r = get_bearer(addr, "/whoami", "kg_live_tooshort").await;
    assert_rejection(
        &r,
        401,
        Some(r#"Bearer realm="My API", error="invalid_token""#),
        "invalid_token",
    );
    let r = get_bearer(addr, "/ws-write", &token).await;
    assert_rejection(
        &r,
        403,
        Some(r#"Bearer realm="My API", error="insufficient_scope", scope="workspaces:write""#),
        "insufficient_scope",
    );
    assert!(
        !String::from_utf8_lossy(&r.raw).contains(r#"realm="keygate""#),
        "{r}"
    );
}

#[tokio::test]
async fn a_replaced_responder_answers_every_rejection() {
    let store = FlakyStore::default();
    let down = store.down.clone();
    let gate = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .responder(|rejection: &Rejection| {
            http::Response::builder()
                .status(418)
                .header("x-teapot", rejection.code())
                .body(Bytes::from(format!("teapot says {}", rejection.code())))
                .unwrap()
        })
        .build()
        .unwrap();
    let addr = serve_gate(&gate).await;
    let token = create_token(
        &gate,
        NewKey::new("alice", "ci").scopes(["workspaces:read"]),
    )
    .await;
    let fenced = create_token(
        &gate,
        NewKey::new("alice", "fenced").ip_allow(["10.0.0.0/8"]),
    )
    .await;
    let unknown = gate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();

    let mut responses = vec![
        ("missing_token", get(addr, "/whoami", &[]).await),
        ("missing_token", get(addr, "/maybe-strict", &[]).await),
        (
            "invalid_request",
            get(addr, "/whoami", &[("Authorization", "Bearer")]).await,
        ),
        (
            "invalid_token",
            get_bearer(addr, "/whoami", "kg_live_tooshort").await,
        ),
        ("ip_not_allowed", get_bearer(addr, "/whoami", &fenced).await),
        (
            "insufficient_scope",
            get_bearer(addr, "/ws-write", &token).await,
        ),
    ];
    down.store(true, Ordering::SeqCst);
    responses.push(("unavailable", get_bearer(addr, "/whoami", &unknown).await));
    down.store(false, Ordering::SeqCst);

    for (code, r) in responses {
        assert_eq!(r.status, 418, "{code}: {r}");
        assert_eq!(r.header("x-teapot"), Some(code), "{r}");
        assert_eq!(r.text(), format!("teapot says {code}"), "{r}");
        assert_eq!(r.header("www-authenticate"), None, "{r}");
    }
    assert_ok(&get_bearer(addr, "/ws-read", &token).await);
}

// ---------------------------------------------------------------------------
// §7: a bare hyper 1 server, no axum
// ---------------------------------------------------------------------------

async fn hyper_handler(
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let text = match request.extensions().get::<AuthenticatedKey>() {
        Some(key) => format!("owner={}", key.owner()),
        None => "no key".to_owned(),
    };
    Ok(http::Response::new(Full::new(Bytes::from(text))))
}

/// Serves `keygate.layer()` over a hand-written hyper 1 accept loop. With
/// `insert_peer`, each request carries `PeerAddr(peer)`.
async fn serve_hyper(gate: Keygate, insert_peer: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.expect("accept");
            let gate = gate.clone();
            tokio::spawn(async move {
                let service = tower::ServiceBuilder::new()
                    .map_request(move |mut request: http::Request<Incoming>| {
                        if insert_peer {
                            request.extensions_mut().insert(PeerAddr(peer));
                        }
                        request
                    })
                    .layer(gate.layer())
                    .service_fn(hyper_handler);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_bare_hyper_server_is_protected_with_peer_addr() {
    let gate = gate();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let local = create_token(
        &gate,
        NewKey::new("alice", "local").ip_allow(["127.0.0.1/32"]),
    )
    .await;
    let fenced = create_token(
        &gate,
        NewKey::new("alice", "fenced").ip_allow(["10.0.0.0/8"]),
    )
    .await;
    let addr = serve_hyper(gate.clone(), true).await;

    let r = get_bearer(addr, "/anything", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "owner=alice");
    let r = get(addr, "/anything", &[("X-API-Key", &token)]).await;
    assert_eq!(r.text(), "owner=alice", "{r}");

    assert_missing_token(&get(addr, "/anything", &[]).await);
    assert_invalid_request(
        &get(
            addr,
            "/",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("X-API-Key", &token),
            ],
        )
        .await,
    );
    assert_invalid_token(&get_bearer(addr, "/", &with_bad_checksum(&token)).await);

    assert_ok(&get_bearer(addr, "/", &local).await);
    assert_ip_not_allowed(&get_bearer(addr, "/", &fenced).await);
}

#[tokio::test]
async fn without_a_known_peer_keys_with_ip_lists_fail_closed() {
    let gate = gate();
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    let local = create_token(
        &gate,
        NewKey::new("alice", "local").ip_allow(["127.0.0.1/32"]),
    )
    .await;
    let denying = create_token(
        &gate,
        NewKey::new("alice", "denying").ip_deny(["10.0.0.0/8"]),
    )
    .await;
    let addr = serve_hyper(gate.clone(), false).await;

    assert_ok(&get_bearer(addr, "/", &token).await);
    assert_ip_not_allowed(&get_bearer(addr, "/", &local).await);
    assert_ip_not_allowed(&get_bearer(addr, "/", &denying).await);
}

// ---------------------------------------------------------------------------
// §5/§6: what the request path does to the store
// ---------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_requests_for_an_uncached_key_cause_one_store_read() {
    let store = FlakyStore::default();
    let (gets, delay) = (store.gets.clone(), store.get_delay_ms.clone());
    let gate = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    let addr = serve_gate(&gate).await;
    let token = create_token(&gate, NewKey::new("alice", "ci")).await;
    delay.store(200, Ordering::SeqCst);
    assert_eq!(gets.load(Ordering::SeqCst), 0);

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let token = token.clone();
        requests.spawn(async move { get_bearer(addr, "/whoami", &token).await });
    }
    while let Some(r) = requests.join_next().await {
        assert_ok(&r.unwrap());
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "one store read for 16 concurrent misses"
    );
}

#[tokio::test]
async fn no_store_write_happens_on_the_request_path() {
    let store = FlakyStore::default();
    let writes = store.writes.clone();
    let inner = store.inner.clone();
    let gate = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap();
    let addr = serve_gate(&gate).await;
    let created = create(&gate, NewKey::new("alice", "ci")).await;
    for _ in 0..5 {
        assert_ok(&get_bearer(addr, "/whoami", created.token.expose()).await);
    }
    assert_eq!(
        writes.load(Ordering::SeqCst),
        0,
        "requests wrote to the store"
    );

    // The use is written in the background, once, on flush.
    assert_eq!(gate.flush_usage().await, 1);
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    let stored = inner.get(&created.key.id).await.unwrap().unwrap();
    assert_eq!(stored.key.last_used_ip, Some("127.0.0.1".parse().unwrap()));
    assert!(stored.key.last_used_at.is_some());
}

// ---------------------------------------------------------------------------
// Rate limits through the layer
// ---------------------------------------------------------------------------

/// A token of alice's with `limits` (JSON) and scope `reports:read`.
async fn limited_token(gate: &Keygate, limits: Value) -> String {
    let limits = serde_json::from_value(limits).expect("limits parse");
    create_token(
        gate,
        NewKey::new("alice", "limited")
            .scopes(["reports:read"])
            .rate_limits(limits),
    )
    .await
}

/// Where the handler sees the tightest limit: `remaining` of it, or "none".
async fn remaining(key: AuthenticatedKey) -> String {
    match key.rate_limit() {
        Some(state) => format!("{} {}", state.name, state.remaining),
        None => "none".to_owned(),
    }
}

/// An app whose routes each carry their own layer: the default cost, a
/// cost of 3 behind a requirement, and a cost of 0.
fn limited_app(gate: &Keygate) -> Router {
    Router::new()
        .route("/one", routing::get(remaining).route_layer(gate.layer()))
        .route(
            "/three",
            routing::get(remaining).route_layer(
                gate.layer()
                    .require("reports:read")
                    .expect("requirement parses")
                    .cost(3),
            ),
        )
        .route(
            "/write",
            routing::get(remaining).route_layer(
                gate.layer()
                    .require("reports:write")
                    .expect("requirement parses")
                    .cost(3),
            ),
        )
        .route(
            "/free",
            routing::get(remaining).route_layer(gate.layer().cost(0)),
        )
}

#[tokio::test]
async fn the_layer_charges_its_cost_and_says_where_the_tightest_limit_stands() {
    let gate = gate();
    let addr = serve(limited_app(&gate)).await;
    let token = limited_token(
        &gate,
        json!([{"name": "hourly", "limit": 5, "period": "1h"},
               {"name": "daily", "limit": 100, "period": "1d"}]),
    )
    .await;

    let r = get_bearer(addr, "/one", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "hourly 4");
    assert_eq!(r.header("ratelimit-policy"), Some(r#""hourly";q=5;w=3600"#));
    // One unit comes back every 720 s.
    assert_eq!(r.header("ratelimit"), Some(r#""hourly";r=4;t=720"#));

    let r = get_bearer(addr, "/three", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "hourly 1");
    assert_eq!(r.header("ratelimit"), Some(r#""hourly";r=1;t=2880"#));

    // Cost 0: not counted, no headers.
    let r = get_bearer(addr, "/free", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "none");
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("ratelimit-policy"), None);

    // A requirement the key fails is refused before the charge.
    for _ in 0..3 {
        let r = get_bearer(addr, "/write", &token).await;
        assert_rejection(
            &r,
            403,
            Some("Bearer realm=\"keygate\", error=\"insufficient_scope\", scope=\"reports:write\""),
            "insufficient_scope",
        );
        assert_eq!(r.header("ratelimit"), None);
    }

    // 1 left: a cost of 3 is refused and takes nothing, neither from
    // `hourly` nor from `daily`.
    let r = get_bearer(addr, "/three", &token).await;
    assert_eq!(r.status, 429, "{r}");
    let body = r.json();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["limit"], "hourly");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    // Two more units are needed: 2 × 720 s, less what has passed.
    assert!((1_400..=1_440).contains(&retry), "{retry}");
    assert_eq!(r.header("ratelimit-policy"), Some(r#""hourly";q=5;w=3600"#));
    assert_eq!(r.header("ratelimit"), Some(r#""hourly";r=1;t=2880"#));

    let r = get_bearer(addr, "/one", &token).await;
    assert_ok(&r);
    assert_eq!(r.text(), "hourly 0");
    let verdict = gate
        .verifier()
        .authorize_charged(&token, keygate::Origin::Inspection, None, 1)
        .await
        .unwrap();
    assert!(
        verdict.limits().states().is_empty(),
        "an inspection counts nothing"
    );
    let r = get_bearer(addr, "/one", &token).await;
    assert_eq!(r.status, 429, "{r}");
    // `daily` took 1 + 3 + 1 = 5: the refused requests took nothing. A
    // refusal reports every limit, unchanged.
    let client = keygate::Origin::Client("127.0.0.1".parse().unwrap());
    let refusal = gate
        .verifier()
        .authorize_charged(&token, client, None, 1)
        .await
        .unwrap_err();
    let states: Vec<(String, u64)> = refusal
        .limits()
        .iter()
        .map(|s| (s.name.to_string(), s.remaining))
        .collect();
    assert_eq!(states, [("hourly".to_owned(), 0), ("daily".to_owned(), 95)]);
    let authorized = gate
        .verifier()
        .authorize_charged(&token, client, None, 0)
        .await
        .unwrap();
    assert!(
        authorized.limits().states().is_empty(),
        "cost 0 is not counted"
    );
}

#[tokio::test]
async fn keys_without_limits_get_no_rate_limit_headers() {
    let gate = gate();
    let addr = serve(limited_app(&gate)).await;
    let token = create_token(&gate, NewKey::new("alice", "free").scopes(["reports:read"])).await;
    for path in ["/one", "/three", "/free"] {
        let r = get_bearer(addr, path, &token).await;
        assert_ok(&r);
        assert_eq!(r.text(), "none", "{path}");
        assert_eq!(r.header("ratelimit"), None, "{path}");
        assert_eq!(r.header("ratelimit-policy"), None, "{path}");
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn with_a_redis_limiter_cached_keys_are_counted_through_the_round_trip() {
    let url =
        std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "keygate-test:mw-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let limiter = keygate::RedisLimiter::connect_with_prefix(&url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis is needed at {url} (CI starts it): {e}"));
    let gate = builder().limiter(limiter).build().unwrap();
    let addr = serve(limited_app(&gate)).await;
    let token = limited_token(
        &gate,
        json!([{"name": "burst", "limit": 4, "period": "1h"}]),
    )
    .await;
    // The first request loads the key; the others find it cached and still
    // wait for Redis.
    let mut seen = Vec::new();
    for path in ["/one", "/one", "/three", "/one"] {
        let r = get_bearer(addr, path, &token).await;
        seen.push((r.status, r.header("ratelimit").map(str::to_owned)));
    }
    assert_eq!(
        seen,
        [
            (200, Some(r#""burst";r=3;t=900"#.to_owned())),
            (200, Some(r#""burst";r=2;t=1800"#.to_owned())),
            (429, Some(r#""burst";r=2;t=1800"#.to_owned())),
            (200, Some(r#""burst";r=1;t=2700"#.to_owned())),
        ]
    );
    assert_eq!(gate.verifier().limiter_failures(), 0);
}

#[tokio::test]
async fn credits_run_out_and_refill_at_midnight_utc_on_the_injected_clock() {
    use keygate::{Credits, Refill, RefillEvery};
    // 1.5 s before the first of the month after next: ahead of the system
    // clock, which stamps the key's records (a fixed date would break once
    // it has passed).
    let next_month = |date: time::Date| {
        let (year, month) = (date.year(), date.month());
        let year = if month == time::Month::December {
            year + 1
        } else {
            year
        };
        time::Date::from_calendar_date(year, month.next(), 1).unwrap()
    };
    let today = time::OffsetDateTime::now_utc().date();
    let refill_day = next_month(next_month(today));
    let midnight = refill_day.midnight().assume_utc();
    let clock = Arc::new(std::sync::Mutex::new(
        midnight - time::Duration::milliseconds(1_500),
    ));
    let read = clock.clone();
    let gate = builder()
        .clock(move || *read.lock().unwrap())
        .build()
        .unwrap();
    let addr = serve(limited_app(&gate)).await;
    let credits = Credits::new(2)
        .unwrap()
        .with_refill(Refill::new(3, RefillEvery::Month).unwrap());
    let token = create_token(
        &gate,
        NewKey::new("alice", "paid")
            .scopes(["reports:read"])
            .credits(credits),
    )
    .await;
    assert_ok(&get_bearer(addr, "/one", &token).await);
    // A cost of 3 is more than the 1 left: refused, nothing taken.
    let r = get_bearer(addr, "/three", &token).await;
    assert_eq!(r.status, 429, "{r}");
    assert_eq!(r.json()["error"], "credits_exhausted");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The refill is 1.5 s away: rounded up.
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("ratelimit"), None, "no rate limit was checked");
    assert_ok(&get_bearer(addr, "/one", &token).await);
    let r = get_bearer(addr, "/one", &token).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (429, json!("credits_exhausted"))
    );
    // Free routes stay free.
    assert_ok(&get_bearer(addr, "/free", &token).await);

    // 00:00 UTC on the 1st: the balance is set to 3.
    *clock.lock().unwrap() = midnight;
    assert_ok(&get_bearer(addr, "/three", &token).await);
    let r = get_bearer(addr, "/one", &token).await;
    assert_eq!(r.status, 429, "{r}");
    // The next refill is on the 1st of the month after.
    let days = time::util::days_in_month(refill_day.month(), refill_day.year());
    assert_eq!(
        r.header("retry-after"),
        Some(&*(u64::from(days) * 86_400).to_string())
    );
    let stored = gate
        .store()
        .get(&keygate::KeyId::parse(&token[8..24]).unwrap())
        .await;
    let remaining = stored.unwrap().unwrap().key.credits.unwrap().remaining();
    assert_eq!(remaining, 0);
}
