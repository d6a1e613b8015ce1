//! The HTTP API of SPEC §9 and forward auth of SPEC §10 over a real socket:
//! `keygate::admin::router_with_rules` served by axum on 127.0.0.1, requests
//! written by hand on a raw `TcpStream` (HTTP/1.1, `Connection: close`), so
//! odd bodies and the exact status, headers and JSON are all in reach.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use base64::Engine as _;
use common::header_values;
use common::records::RECORD_FIELDS;
use common::server::serve_app as serve;
use common::token_secret;
use common::wire;
use keygate::gateway::Rules;
use keygate::{InsertRules, ListQuery, Page, Usage};
use keygate::{
    KeyId, KeyStore, Keygate, KeygateBuilder, MemoryStore, NewKey, Pepper, ScopeCatalog,
    StoreError, StoredKey,
};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// A response as it came off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    /// Header names lowercased, values trimmed, in wire order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    /// The only value of header `name`; panics when it repeats.
    fn header(&self, name: &str) -> Option<&str> {
        let values: Vec<&str> = header_values(&self.headers, name);
        assert!(values.len() <= 1, "header {name} repeated: {self}");
        values.first().copied()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Panics with the whole response unless the status is `status`.
    #[track_caller]
    fn expect(&self, status: u16) -> &Resp {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {v}")?;
        }
        write!(f, "\n{}", self.text())
    }
}

fn parse_response(raw: &[u8]) -> Resp {
    let parsed = wire::parse(raw);
    let headers = parsed
        .headers
        .into_iter()
        .map(|(name, value)| {
            (
                name,
                String::from_utf8(value).expect("header value is UTF-8"),
            )
        })
        .collect();
    Resp {
        status: parsed.status,
        headers,
        body: parsed.body,
    }
}

/// A request being built; [`Req::send`] writes it and reads the response.
struct Req {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    fn new(addr: SocketAddr, method: &str, path: &str) -> Req {
        Req {
            addr,
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn bearer(self, token: &str) -> Req {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A JSON body.
    fn json(self, value: &Value) -> Req {
        self.raw(value.to_string())
    }

    /// A body sent as is, labelled `application/json`.
    fn raw(self, body: impl Into<Vec<u8>>) -> Req {
        self.body_as_is(body)
            .header("Content-Type", "application/json")
    }

    /// A body sent as is, with no `Content-Type` of its own.
    fn body_as_is(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }

    async fn send(self) -> Resp {
        let mut bytes = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.path, self.addr
        );
        for (name, value) in &self.headers {
            bytes.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            bytes.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        bytes.push_str("\r\n");
        let mut bytes = bytes.into_bytes();
        if let Some(body) = &self.body {
            bytes.extend_from_slice(body);
        }
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            stream.write_all(&bytes).await?;
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                    // A reset after the whole response arrived is not our concern.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::ConnectionReset
                            && wire::find(&raw, b"\r\n\r\n").is_some() =>
                    {
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(StdDuration::from_secs(10), exchange)
            .await
            .expect("response within 10 s")
            .expect("HTTP exchange");
        parse_response(&raw)
    }
}

// ---------------------------------------------------------------------------
// A store whose `ping` can be made to fail
// ---------------------------------------------------------------------------

/// `MemoryStore`, except that `ping` fails while `down` is set.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: Arc<MemoryStore>,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl KeyStore for FlakyStore {
    async fn insert(&self, key: &StoredKey, rules: InsertRules) -> Result<(), StoreError> {
        self.inner.insert(key, rules).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
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
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("the test store is down".into()))
        } else {
            self.inner.ping().await
        }
    }
    fn credits(&self) -> Option<&dyn keygate::CreditStore> {
        self.inner.credits()
    }
}

// ---------------------------------------------------------------------------
// Fixture: a served API and a key for each role
// ---------------------------------------------------------------------------

/// The rules of SPEC §10's example, and (SPEC §10a: with a rules file, no
/// match is refused) a last rule letting any valid key reach the rest.
const RULES: &str = r#"
[[rule]]
path = "/api/workspaces/**"
methods = ["GET", "HEAD"]
require = "workspaces:read"

[[rule]]
path = "/public/**"
public = true

[[rule]]
path = "/**"
"#;

/// Every management scope except admin, plus `workspaces:*`.
const MANAGER_SCOPES: [&str; 6] = [
    "keys:read",
    "keys:create",
    "keys:update",
    "keys:revoke",
    "keys:delete",
    "workspaces:*",
];

/// keygate's own scopes, which every catalog lists (SPEC §4a).
const BUILTIN_SCOPES: [&str; 9] = [
    "keys:read",
    "keys:create",
    "keys:update",
    "keys:revoke",
    "keys:delete",
    "keys:verify",
    "admin:keys",
    "audit:read",
    "metrics:read",
];

/// A key with its token.
#[derive(Clone, Debug)]
struct Key {
    token: String,
    id: String,
}

fn catalog() -> ScopeCatalog {
    ScopeCatalog::new()
        .with("workspaces:read", "Read workspaces")
        .and_then(|c| c.with("workspaces:write", "Create and modify workspaces"))
        .and_then(|c| c.with("templates:use", "Use templates"))
        .expect("a valid catalog")
}

/// The keygate of most tests: memory store, test pepper, the catalog above,
/// no trusted proxies (the library default).
fn builder() -> KeygateBuilder {
    Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .catalog(catalog())
}

fn loopback() -> ipnet::IpNet {
    "127.0.0.0/8".parse().expect("a CIDR range")
}

/// Creates a key directly through the library.
async fn make_key(keygate: &Keygate, new: NewKey) -> Key {
    let created = keygate.keys().create(new).await.expect("create key");
    Key {
        token: created.token.expose().to_owned(),
        id: created.key.id.to_string(),
    }
}

/// A served API with a key for each role.
struct Api {
    addr: SocketAddr,
    keygate: Keygate,
    /// Owner `admin`, `*:*`.
    admin: Key,
    /// Owner `alice`, [`MANAGER_SCOPES`], name `manager`.
    alice: Key,
    /// Owner `alice`, only `keys:read`, name `reader`.
    alice_reader: Key,
    /// Owner `bob`, [`MANAGER_SCOPES`].
    bob: Key,
    /// Owner `svc`, only `keys:verify`.
    verifier: Key,
    /// Owner `ops`, `admin:keys keys:read keys:create workspaces:read`.
    ops: Key,
}

impl Api {
    async fn start() -> Api {
        Api::start_with(builder()).await
    }

    /// The API of a keygate that believes forwarding headers from loopback
    /// (what `keygate serve` does by default).
    async fn start_trusting_loopback() -> Api {
        Api::start_with(builder().trusted_proxies([loopback()])).await
    }

    async fn start_with(builder: KeygateBuilder) -> Api {
        let keygate = builder.build().expect("keygate");
        let rules = Rules::parse_toml(RULES).expect("rules");
        let addr = serve(keygate::admin::router_with_rules(keygate.clone(), rules)).await;
        // The role keys never expire (unless the keygate has a maximum
        // lifetime), so that the mint ceiling (SPEC §4a) does not cut the
        // lifetimes the tests look at; tests/admin_http.rs's ceiling tests
        // make their own expiring callers.
        let key = |owner: &str, name: &str, scopes: &[&str]| {
            let new = NewKey::new(owner, name).scopes(scopes.iter().copied());
            let keygate = keygate.clone();
            async move {
                match keygate.keys().create(new.clone().expires_in("never")).await {
                    Ok(created) => Key {
                        token: created.token.expose().to_owned(),
                        id: created.key.id.to_string(),
                    },
                    Err(_) => make_key(&keygate, new).await,
                }
            }
        };
        let admin = key("admin", "root", &["*:*"]).await;
        let alice = key("alice", "manager", &MANAGER_SCOPES).await;
        let alice_reader = key("alice", "reader", &["keys:read"]).await;
        let bob = key("bob", "manager", &MANAGER_SCOPES).await;
        let verifier = key("svc", "verifier", &["keys:verify"]).await;
        let ops_scopes = ["admin:keys", "keys:read", "keys:create", "workspaces:read"];
        let ops = key("ops", "ops", &ops_scopes).await;
        Api {
            addr,
            keygate: keygate.clone(),
            admin,
            alice,
            alice_reader,
            bob,
            verifier,
            ops,
        }
    }

    /// Creates a key directly through the library.
    async fn key(&self, new: NewKey) -> Key {
        make_key(&self.keygate, new).await
    }

    fn req(&self, method: &str, path: &str) -> Req {
        Req::new(self.addr, method, path)
    }

    fn get(&self, path: &str) -> Req {
        self.req("GET", path)
    }

    fn post(&self, path: &str) -> Req {
        self.req("POST", path)
    }

    /// Whether `token` authenticates right now (200 on `GET /v1/scopes`,
    /// 401 `invalid_token` otherwise).
    async fn works(&self, token: &str) -> bool {
        let resp = self.get("/v1/scopes").bearer(token).send().await;
        match resp.status {
            200 => true,
            401 => {
                assert_invalid_token(&resp);
                false
            }
            _ => panic!("unexpected answer for a token: {resp}"),
        }
    }

    /// `GET /v1/keys/{id}` as admin: the record.
    async fn record(&self, id: &str) -> Value {
        let resp = self
            .get(&format!("/v1/keys/{id}"))
            .bearer(&self.admin.token)
            .send()
            .await;
        resp.expect(200);
        resp.json()
    }

    /// Every key id of `owner` (admin listing, revoked included).
    async fn ids_of(&self, owner: &str) -> BTreeSet<String> {
        let resp = self
            .get(&format!(
                "/v1/keys?owner={owner}&include_revoked=true&limit=1000"
            ))
            .bearer(&self.admin.token)
            .send()
            .await;
        resp.expect(200);
        ids(&resp.json()["keys"])
    }

    /// A forward-auth subrequest: `GET path` with `headers`.
    async fn forward(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.get(path);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.send().await
    }

    /// An nginx `auth_request` subrequest for `method uri`, with `token`
    /// as a Bearer credential when given.
    async fn nginx(&self, method: &str, uri: &str, token: Option<&str>) -> Resp {
        self.forward_with("X-Original-Method", "X-Original-URI", method, uri, token)
            .await
    }

    /// A Traefik `ForwardAuth` subrequest for `method uri`.
    async fn traefik(&self, method: &str, uri: &str, token: Option<&str>) -> Resp {
        self.forward_with("X-Forwarded-Method", "X-Forwarded-Uri", method, uri, token)
            .await
    }

    async fn forward_with(
        &self,
        method_header: &str,
        uri_header: &str,
        method: &str,
        uri: &str,
        token: Option<&str>,
    ) -> Resp {
        let mut req = self
            .get("/v1/forward-auth")
            .header(method_header, method)
            .header(uri_header, uri)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "app.example.com");
        if let Some(token) = token {
            req = req.bearer(token);
        }
        req.send().await
    }
}

// ---------------------------------------------------------------------------
// Spec assertions
// ---------------------------------------------------------------------------

const CHALLENGE_MISSING: &str = r#"Bearer realm="keygate""#;
const CHALLENGE_INVALID_TOKEN: &str = r#"Bearer realm="keygate", error="invalid_token""#;

fn ids(keys: &Value) -> BTreeSet<String> {
    keys.as_array()
        .expect("an array of keys")
        .iter()
        .map(|k| k["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

fn parse_time(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    assert!(text.ends_with('Z'), "{text} is not UTC");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A management error (SPEC §9): status, `error`, a message, `field` when given.
#[track_caller]
fn assert_error(resp: &Resp, status: u16, code: &str, field: Option<&str>) {
    resp.expect(status);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{resp}"
    );
    let body = resp.json();
    assert_eq!(body["error"], code, "{resp}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{resp}"
    );
    match field {
        Some(field) => assert_eq!(body["field"], field, "{resp}"),
        None => assert!(body.get("field").is_none(), "{resp}"),
    }
}

/// A 400 `bad_request`, with `field` when given (unchecked when `None`).
#[track_caller]
fn assert_bad_request(resp: &Resp, field: Option<&str>) {
    resp.expect(400);
    let body = resp.json();
    assert_eq!(body["error"], "bad_request", "{resp}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{resp}"
    );
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{resp}");
    }
}

#[track_caller]
fn assert_not_found(resp: &Resp) {
    assert_error(resp, 404, "not_found", None);
}

/// SPEC §3 `missing_token`.
#[track_caller]
fn assert_missing_token(resp: &Resp) {
    resp.expect(401);
    assert_eq!(resp.header("www-authenticate"), Some(CHALLENGE_MISSING));
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp}");
    assert_eq!(resp.json()["error"], "missing_token", "{resp}");
}

/// SPEC §3 `invalid_token`.
#[track_caller]
fn assert_invalid_token(resp: &Resp) {
    resp.expect(401);
    assert_eq!(
        resp.header("www-authenticate"),
        Some(CHALLENGE_INVALID_TOKEN)
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp}");
    assert_eq!(resp.json()["error"], "invalid_token", "{resp}");
}

/// SPEC §3 `insufficient_scope` for the requirement `required` (a single
/// scope or a space-separated list in the challenge).
#[track_caller]
fn assert_insufficient_scope(resp: &Resp, required: &str) {
    resp.expect(403);
    assert_eq!(
        resp.header("www-authenticate"),
        Some(
            format!(r#"Bearer realm="keygate", error="insufficient_scope", scope="{required}""#)
                .as_str()
        ),
        "{resp}"
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp}");
    let body = resp.json();
    assert_eq!(body["error"], "insufficient_scope", "{resp}");
    assert_eq!(body["required"], required, "{resp}");
}

/// SPEC §3 `ip_not_allowed`: 403, no challenge.
#[track_caller]
fn assert_ip_not_allowed(resp: &Resp) {
    resp.expect(403);
    assert_eq!(resp.header("www-authenticate"), None, "{resp}");
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp}");
    assert_eq!(resp.json()["error"], "ip_not_allowed", "{resp}");
}

/// A key record per SPEC §5: exactly its fields, with sound values.
#[track_caller]
fn assert_record(record: &Value) {
    let object = record
        .as_object()
        .unwrap_or_else(|| panic!("a record is an object: {record}"));
    let fields: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = RECORD_FIELDS.into_iter().collect();
    assert_eq!(fields, expected, "record fields: {record}");
    let id = record["id"].as_str().expect("id");
    assert_eq!(id.len(), 16, "{record}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{record}");
    let env = record["environment"].as_str().expect("environment");
    assert!(env == "live" || env == "test", "{record}");
    assert_eq!(
        record["display_prefix"],
        format!("kg_{env}_{id}"),
        "{record}"
    );
    assert!(record["name"].is_string(), "{record}");
    assert!(record["owner"].is_string(), "{record}");
    assert!(record["scopes"].is_array(), "{record}");
    assert!(record["ip_allow"].is_array(), "{record}");
    assert!(record["ip_deny"].is_array(), "{record}");
    assert!(record["metadata"].is_object(), "{record}");
    assert!(record["rate_limits"].is_array(), "{record}");
    parse_time(&record["created_at"]);
    parse_time(&record["updated_at"]);
    for field in ["expires_at", "last_used_at", "revoked_at"] {
        if !record[field].is_null() {
            parse_time(&record[field]);
        }
    }
    let status = record["status"].as_str().expect("status");
    assert!(
        ["active", "expired", "revoked"].contains(&status),
        "{record}"
    );
    assert_eq!(
        status == "revoked",
        !record["revoked_at"].is_null(),
        "{record}"
    );
}

/// `body` holds neither the token, nor its secret part, nor its MAC in hex
/// or base64.
#[track_caller]
fn assert_no_secret(body: &[u8], token: &str) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(token.len(), 62, "a token is 62 characters: {token}");
    assert!(!text.contains(token), "token leaked: {text}");
    let secret = token_secret(token);
    assert!(!text.contains(secret), "secret leaked: {text}");
    let mac = Pepper::insecure_fixed_for_tests().mac(token);
    let forms = [
        hex::encode(mac),
        hex::encode_upper(mac),
        base64::engine::general_purpose::STANDARD.encode(mac),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(mac),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac),
    ];
    for form in forms {
        assert!(!text.contains(&form), "MAC leaked ({form}): {text}");
    }
}

/// An allowed forward-auth answer carrying `key`'s identity.
#[track_caller]
fn assert_identity(resp: &Resp, key: &Key, owner: &str, scopes: &[&str]) {
    resp.expect(200);
    assert_eq!(resp.header("x-keygate-key-id"), Some(key.id.as_str()));
    assert_eq!(resp.header("x-keygate-owner"), Some(owner));
    let sent = resp.header("x-keygate-scopes").expect("X-Keygate-Scopes");
    let sent: Vec<&str> = if sent.is_empty() {
        Vec::new()
    } else {
        sent.split(' ').collect()
    };
    assert!(sent.iter().all(|s| !s.is_empty()), "{resp}");
    let sent: BTreeSet<&str> = sent.into_iter().collect();
    let expected: BTreeSet<&str> = scopes.iter().copied().collect();
    assert_eq!(sent, expected, "{resp}");
    assert_eq!(resp.header("x-keygate-environment"), Some("live"));
}

/// An allowed forward-auth answer for a public rule: the four headers, empty.
#[track_caller]
fn assert_public(resp: &Resp) {
    resp.expect(200);
    for name in [
        "x-keygate-key-id",
        "x-keygate-owner",
        "x-keygate-scopes",
        "x-keygate-environment",
    ] {
        assert_eq!(resp.header(name), Some(""), "{name}: {resp}");
    }
}

// ---------------------------------------------------------------------------
// POST /v1/keys
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_returns_a_working_token_once_with_the_callers_owner() {
    let api = Api::start().await;
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "ci", "scopes": ["workspaces:read"], "description": "CI"}))
        .send()
        .await;
    resp.expect(201);
    let body = resp.json();
    let fields: BTreeSet<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(["key", "api_key"]), "{resp}");
    let token = body["key"].as_str().expect("token").to_owned();
    let record = &body["api_key"];
    assert_record(record);
    assert_eq!(record["owner"], "alice", "owner defaults to the caller's");
    assert_eq!(record["name"], "ci");
    assert_eq!(record["description"], "CI");
    assert_eq!(strings(&record["scopes"]), ["workspaces:read"]);
    assert_eq!(record["status"], "active");
    assert_eq!(record["environment"], "live");
    assert!(record["revoked_at"].is_null() && record["superseded_by"].is_null());
    let id = record["id"].as_str().expect("id");
    assert!(token.starts_with(&format!("kg_live_{id}")), "{token}");
    assert_eq!(token.len(), 62);
    assert_no_secret(record.to_string().as_bytes(), &token);
    // The default lifetime is 90 days.
    let lifetime = parse_time(&record["expires_at"]) - parse_time(&record["created_at"]);
    assert_eq!(lifetime, Duration::days(90));

    // The token authenticates on the very next request.
    let next = api.get("/v1/scopes").bearer(&token).send().await;
    next.expect(200);
    let check = api
        .post("/v1/authcheck")
        .bearer(&token)
        .json(&json!({"checks": {"r": "workspaces:read", "w": "workspaces:write"}}))
        .send()
        .await;
    check.expect(200);
    assert_eq!(check.json(), json!({"r": true, "w": false}));
}

#[tokio::test]
async fn create_accepts_every_lifetime_form() {
    let api = Api::start().await;
    let cases = [
        ("90s", Some(Duration::seconds(90))),
        ("30min", Some(Duration::minutes(30))),
        ("12h", Some(Duration::hours(12))),
        ("30d", Some(Duration::days(30))),
        ("1w", Some(Duration::weeks(1))),
        ("never", None),
    ];
    for (i, (expires_in, lifetime)) in cases.into_iter().enumerate() {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.alice.token)
            .json(&json!({"name": format!("life-{i}"), "expires_in": expires_in}))
            .send()
            .await;
        resp.expect(201);
        let record = &resp.json()["api_key"];
        match lifetime {
            Some(lifetime) => assert_eq!(
                parse_time(&record["expires_at"]) - parse_time(&record["created_at"]),
                lifetime,
                "{expires_in}"
            ),
            None => assert!(record["expires_at"].is_null(), "{expires_in}: {record}"),
        }
    }
    // Calendar units (SPEC §5a): the same day and time a month / a year on.
    for (expires_in, months) in [("1mo", 1), ("3mo", 3), ("1y", 12)] {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.alice.token)
            .json(&json!({"name": format!("cal-{expires_in}"), "expires_in": expires_in}))
            .send()
            .await;
        resp.expect(201);
        let record = &resp.json()["api_key"];
        let created = parse_time(&record["created_at"]);
        let expires = parse_time(&record["expires_at"]);
        let index = |t: OffsetDateTime| i64::from(t.year()) * 12 + i64::from(u8::from(t.month()));
        assert_eq!(
            index(expires) - index(created),
            months,
            "{expires_in}: {record}"
        );
        assert!(expires.day() <= created.day(), "{expires_in}: {record}");
        assert_eq!(expires.time(), created.time(), "{expires_in}: {record}");
    }
    // A bare `m` is ambiguous: minutes or months? Refused, naming both.
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "ambiguous", "expires_in": "30m"}))
        .send()
        .await;
    assert_error(&resp, 400, "bad_request", Some("expires_in"));
    let message = resp.json()["message"].as_str().expect("message").to_owned();
    assert!(
        message.contains("min") && message.contains("mo"),
        "{message}"
    );
    let at = (OffsetDateTime::now_utc() + Duration::days(10))
        .replace_nanosecond(0)
        .expect("whole second");
    let at_text = at.format(&Rfc3339).expect("format");
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "absolute", "expires_at": at_text}))
        .send()
        .await;
    resp.expect(201);
    assert_eq!(parse_time(&resp.json()["api_key"]["expires_at"]), at);
}

#[tokio::test]
async fn create_sets_environment_and_organization() {
    let api = Api::start().await;
    // An admin:keys caller: a live key without an organization may not
    // create these (the mint ceiling, SPEC §4a).
    let resp = api
        .post("/v1/keys")
        .bearer(&api.admin.token)
        .json(&json!({"name": "staging", "environment": "test", "organization": "acme"}))
        .send()
        .await;
    resp.expect(201);
    let body = resp.json();
    let record = &body["api_key"];
    assert_record(record);
    assert_eq!(record["environment"], "test");
    assert_eq!(record["organization"], "acme");
    let id = record["id"].as_str().expect("id");
    let token = body["key"].as_str().expect("token");
    assert!(token.starts_with(&format!("kg_test_{id}")), "{token}");
    assert!(api.works(token).await);

    for body in [
        json!({"name": "x", "environment": "prod"}),
        json!({"name": "x", "organization": ""}),
    ] {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.admin.token)
            .json(&body)
            .send()
            .await;
        assert!(resp.status == 400, "{body} → {resp}");
        assert_bad_request(&resp, None);
    }
}

#[tokio::test]
async fn create_respects_the_maximum_lifetime() {
    let month = StdDuration::from_secs(30 * 86_400);
    let api = Api::start_with(
        builder()
            .max_lifetime(month)
            .default_lifetime(Some(StdDuration::from_secs(86_400))),
    )
    .await;
    for (body, field) in [
        (json!({"name": "n", "expires_in": "never"}), "expires_in"),
        (json!({"name": "n", "expires_in": "31d"}), "expires_in"),
        (json!({"name": "n", "expires_in": "1y"}), "expires_in"),
        (
            json!({"name": "n", "expires_at": "2999-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.admin.token)
            .json(&body)
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some(field));
    }
    let resp = api
        .post("/v1/keys")
        .bearer(&api.admin.token)
        .json(&json!({"name": "ok", "expires_in": "30d"}))
        .send()
        .await;
    resp.expect(201);
    let resp = api
        .post("/v1/keys")
        .bearer(&api.admin.token)
        .json(&json!({"name": "default"}))
        .send()
        .await;
    resp.expect(201);
    let record = &resp.json()["api_key"];
    assert_eq!(
        parse_time(&record["expires_at"]) - parse_time(&record["created_at"]),
        Duration::days(1),
        "the configured default lifetime"
    );
}

#[tokio::test]
async fn create_for_another_owner_needs_admin_keys() {
    let api = Api::start().await;
    let before = api.ids_of("bob").await;
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"owner": "bob", "name": "sneaky", "scopes": ["workspaces:read"]}))
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", None);
    assert_eq!(api.ids_of("bob").await, before, "nothing written");

    // Naming oneself is fine.
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"owner": "alice", "name": "explicit"}))
        .send()
        .await;
    resp.expect(201);
    assert_eq!(resp.json()["api_key"]["owner"], "alice");

    // admin:keys (+ keys:create) may create for anyone.
    let resp = api
        .post("/v1/keys")
        .bearer(&api.ops.token)
        .json(&json!({"owner": "bob", "name": "from-ops", "scopes": ["workspaces:read"]}))
        .send()
        .await;
    resp.expect(201);
    assert_eq!(resp.json()["api_key"]["owner"], "bob");
    let resp = api
        .post("/v1/keys")
        .bearer(&api.admin.token)
        .json(&json!({"owner": "carol", "name": "from-admin", "scopes": ["*:*"]}))
        .send()
        .await;
    resp.expect(201);
    assert_eq!(resp.json()["api_key"]["owner"], "carol");
    assert_eq!(strings(&resp.json()["api_key"]["scopes"]), ["*:*"]);
}

#[tokio::test]
async fn create_cannot_mint_a_scope_the_caller_does_not_hold() {
    let api = Api::start().await;
    let minter = api
        .key(NewKey::new("mia", "minter").scopes(["workspaces:read", "keys:create"]))
        .await;
    for scopes in [
        json!(["workspaces:*"]),
        json!(["*:*"]),
        json!(["*:read"]),
        json!(["workspaces:write"]),
        json!(["admin:keys"]),
        json!(["workspaces:read", "keys:read"]),
    ] {
        let resp = api
            .post("/v1/keys")
            .bearer(&minter.token)
            .json(&json!({"name": "wider", "scopes": scopes}))
            .send()
            .await;
        assert_error(&resp, 403, "forbidden", Some("scopes"));
    }
    assert_eq!(api.ids_of("mia").await, BTreeSet::from([minter.id.clone()]));
    // Within its grants, it may.
    let resp = api
        .post("/v1/keys")
        .bearer(&minter.token)
        .json(&json!({"name": "same", "scopes": ["workspaces:read", "keys:create"]}))
        .send()
        .await;
    resp.expect(201);

    // A wildcard only from an equal or wider wildcard.
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "wild", "scopes": ["workspaces:*", "workspaces:write"]}))
        .send()
        .await;
    resp.expect(201);
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "wilder", "scopes": ["*:*"]}))
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", Some("scopes"));
}

#[tokio::test]
async fn create_refuses_each_field_rule_with_the_field_named() {
    let api = Api::start().await;
    let too_many_scopes: Vec<String> = (0..65).map(|i| format!("r{i}:read")).collect();
    let too_many_ips: Vec<String> = (0..65).map(|i| format!("10.0.0.{i}")).collect();
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "bad\u{7}name"}), "name"),
        (json!({"name": "x".repeat(129)}), "name"),
        (json!({"name": "n", "owner": ""}), "owner"),
        (json!({"name": "n", "owner": "o".repeat(129)}), "owner"),
        (json!({"name": "n", "scopes": ["Not A Scope"]}), "scopes"),
        (json!({"name": "n", "scopes": ["workspaces"]}), "scopes"),
        (json!({"name": "n", "scopes": ["billing:read"]}), "scopes"),
        (json!({"name": "n", "scopes": too_many_scopes}), "scopes"),
        (
            json!({"name": "n", "ip_allow": ["10.0.0.0/33"]}),
            "ip_allow",
        ),
        (
            json!({"name": "n", "ip_allow": ["example.com"]}),
            "ip_allow",
        ),
        (json!({"name": "n", "ip_allow": too_many_ips}), "ip_allow"),
        (json!({"name": "n", "ip_deny": ["300.1.1.1"]}), "ip_deny"),
        (
            json!({"name": "n", "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (json!({"name": "n", "expires_at": "tomorrow"}), "expires_at"),
        (json!({"name": "n", "expires_in": "30x"}), "expires_in"),
        (json!({"name": "n", "expires_in": "0d"}), "expires_in"),
        (json!({"name": "n", "expires_in": "-1d"}), "expires_in"),
        (json!({"name": "n", "metadata": [1, 2]}), "metadata"),
        (json!({"name": "n", "metadata": "text"}), "metadata"),
        (
            json!({"name": "n", "metadata": {"x": "y".repeat(4100)}}),
            "metadata",
        ),
        (
            json!({"name": "n", "description": "d".repeat(1025)}),
            "description",
        ),
    ];
    let before: BTreeSet<String> = api.ids_of("admin").await;
    for (body, field) in cases {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.admin.token)
            .json(&body)
            .send()
            .await;
        assert!(resp.status == 400, "{body} → {resp}");
        assert_error(&resp, 400, "bad_request", Some(field));
    }
    assert_eq!(api.ids_of("admin").await, before, "nothing written");
    // The limits themselves are allowed.
    let resp = api
        .post("/v1/keys")
        .bearer(&api.admin.token)
        .json(&json!({
            "name": "x".repeat(128),
            "description": "d".repeat(1024),
            "metadata": {"x": "y".repeat(4000)},
        }))
        .send()
        .await;
    resp.expect(201);
}

#[tokio::test]
async fn create_with_a_duplicate_name_is_a_conflict() {
    let api = Api::start().await;
    let first = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "dup"}))
        .send()
        .await;
    first.expect(201);
    let first_id = first.json()["api_key"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = api.ids_of("alice").await;
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "dup"}))
        .send()
        .await;
    assert_error(&resp, 409, "conflict", Some("name"));
    assert_eq!(api.ids_of("alice").await, before, "nothing written");
    // Names are unique per owner.
    api.post("/v1/keys")
        .bearer(&api.bob.token)
        .json(&json!({"name": "dup"}))
        .send()
        .await
        .expect(201);
    // ... among active keys: once revoked, the name is free again.
    api.post(&format!("/v1/keys/{first_id}/revoke"))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    api.post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "dup"}))
        .send()
        .await
        .expect(201);
}

#[tokio::test]
async fn create_beyond_the_per_owner_limit_is_key_limit_reached() {
    let api = Api::start_with(builder().max_keys_per_owner(3)).await;
    // alice holds two keys (manager, reader); one more fits.
    let third = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "third"}))
        .send()
        .await;
    third.expect(201);
    let third_id = third.json()["api_key"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "fourth"}))
        .send()
        .await;
    assert_error(&resp, 409, "key_limit_reached", None);
    // Other owners are not affected.
    api.post("/v1/keys")
        .bearer(&api.bob.token)
        .json(&json!({"name": "fourth"}))
        .send()
        .await
        .expect(201);
    // Revoked keys do not count.
    api.post(&format!("/v1/keys/{third_id}/revoke"))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    api.post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "fourth"}))
        .send()
        .await
        .expect(201);
}

#[tokio::test]
async fn create_refuses_unknown_fields_and_malformed_json() {
    let api = Api::start().await;
    let before = api.ids_of("alice").await;
    for body in [
        r#"{"name": "x", "colour": "red"}"#,
        r#"{"name": "x", "mac": "00"}"#,
        r#"{"name": "x""#,
        "{not json",
        "",
        "[]",
        r#"{"name": 5}"#,
        r#"{"name": "x", "scopes": "workspaces:read"}"#,
    ] {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.alice.token)
            .raw(body)
            .send()
            .await;
        assert!(resp.status == 400, "{body:?} → {resp}");
        assert_bad_request(&resp, None);
    }
    assert_eq!(api.ids_of("alice").await, before, "nothing written");
}

#[tokio::test]
async fn create_needs_a_valid_key_holding_keys_create() {
    let api = Api::start().await;
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice_reader.token)
        .json(&json!({"name": "x"}))
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:create");
    let resp = api
        .post("/v1/keys")
        .json(&json!({"name": "x"}))
        .send()
        .await;
    assert_missing_token(&resp);
    let mut forged = api.alice.token.clone();
    forged.replace_range(30..31, if &forged[30..31] == "A" { "B" } else { "A" });
    let resp = api
        .post("/v1/keys")
        .bearer(&forged)
        .json(&json!({"name": "x"}))
        .send()
        .await;
    assert_invalid_token(&resp);
    // The X-API-Key header works as well as Bearer.
    api.post("/v1/keys")
        .header("X-API-Key", &api.alice.token)
        .json(&json!({"name": "via-header"}))
        .send()
        .await
        .expect(201);
}

// ---------------------------------------------------------------------------
// GET /v1/keys
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_shows_only_the_callers_own_keys_by_default() {
    let api = Api::start().await;
    for token in [&api.alice.token, &api.alice_reader.token] {
        let resp = api.get("/v1/keys").bearer(token).send().await;
        resp.expect(200);
        let body = resp.json();
        assert!(body["next_cursor"].is_null(), "{body}");
        for key in body["keys"].as_array().expect("keys") {
            assert_record(key);
            assert_eq!(key["owner"], "alice", "{key}");
        }
        assert_eq!(
            ids(&body["keys"]),
            BTreeSet::from([api.alice.id.clone(), api.alice_reader.id.clone()])
        );
    }
    let resp = api
        .get("/v1/keys?owner=alice")
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["keys"].as_array().map(Vec::len), Some(2));

    let resp = api
        .get("/v1/keys?owner=bob")
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", None);

    let resp = api.get("/v1/keys").bearer(&api.verifier.token).send().await;
    assert_insufficient_scope(&resp, "keys:read");
    assert_missing_token(&api.get("/v1/keys").send().await);
}

#[tokio::test]
async fn admin_lists_every_owner_and_can_filter_by_owner() {
    let api = Api::start().await;
    let all = BTreeSet::from([
        api.admin.id.clone(),
        api.alice.id.clone(),
        api.alice_reader.id.clone(),
        api.bob.id.clone(),
        api.verifier.id.clone(),
        api.ops.id.clone(),
    ]);
    for token in [&api.admin.token, &api.ops.token] {
        let resp = api.get("/v1/keys").bearer(token).send().await;
        resp.expect(200);
        assert_eq!(ids(&resp.json()["keys"]), all);

        let resp = api.get("/v1/keys?owner=bob").bearer(token).send().await;
        resp.expect(200);
        let body = resp.json();
        assert_eq!(ids(&body["keys"]), BTreeSet::from([api.bob.id.clone()]));
        assert_eq!(body["keys"][0]["owner"], "bob");

        let resp = api.get("/v1/keys?owner=nobody").bearer(token).send().await;
        resp.expect(200);
        assert_eq!(resp.json(), json!({"keys": [], "next_cursor": null}));
    }
}

#[tokio::test]
async fn list_excludes_revoked_keys_unless_asked() {
    let api = Api::start().await;
    let gone = api.key(NewKey::new("alice", "gone")).await;
    api.post(&format!("/v1/keys/{}/revoke", gone.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    let resp = api.get("/v1/keys").bearer(&api.alice.token).send().await;
    resp.expect(200);
    assert!(!ids(&resp.json()["keys"]).contains(&gone.id));
    let resp = api
        .get("/v1/keys?include_revoked=false")
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(200);
    assert!(!ids(&resp.json()["keys"]).contains(&gone.id));

    let resp = api
        .get("/v1/keys?include_revoked=true")
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(200);
    let body = resp.json();
    assert_eq!(
        ids(&body["keys"]),
        BTreeSet::from([
            api.alice.id.clone(),
            api.alice_reader.id.clone(),
            gone.id.clone()
        ])
    );
    let revoked = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == gone.id.as_str())
        .expect("the revoked key");
    assert_record(revoked);
    assert_eq!(revoked["status"], "revoked");
}

#[tokio::test]
async fn list_paginates_each_key_exactly_once() {
    let api = Api::start().await;
    let mut created = BTreeSet::new();
    for i in 0..5 {
        created.insert(api.key(NewKey::new("dave", format!("k{i}"))).await.id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        let path = match &cursor {
            None => "/v1/keys?owner=dave&limit=2".to_owned(),
            Some(c) => format!("/v1/keys?owner=dave&limit=2&cursor={c}"),
        };
        let resp = api.get(&path).bearer(&api.admin.token).send().await;
        resp.expect(200);
        let body = resp.json();
        let keys = body["keys"].as_array().expect("keys");
        assert!(keys.len() <= 2, "{body}");
        seen.extend(
            keys.iter()
                .map(|k| k["id"].as_str().expect("id").to_owned()),
        );
        match &body["next_cursor"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is {other}"),
        }
    }
    assert_eq!(seen.len(), 5, "each key once: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);
    assert!(pages >= 3, "5 keys at 2 per page take 3 pages, got {pages}");
}

#[tokio::test]
async fn list_refuses_a_bad_limit_or_cursor() {
    let api = Api::start().await;
    for query in ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit="] {
        let resp = api
            .get(&format!("/v1/keys?{query}"))
            .bearer(&api.alice.token)
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some("limit"));
    }
    for cursor in ["garbage", "123.short", "abc.0123456789abcdef", "123"] {
        let resp = api
            .get(&format!("/v1/keys?cursor={cursor}"))
            .bearer(&api.alice.token)
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some("cursor"));
    }
    let resp = api
        .get("/v1/keys?include_revoked=maybe")
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_error(&resp, 400, "bad_request", Some("include_revoked"));
    for query in ["limit=1", "limit=1000"] {
        api.get(&format!("/v1/keys?{query}"))
            .bearer(&api.alice.token)
            .send()
            .await
            .expect(200);
    }
}

#[tokio::test]
async fn records_never_contain_a_token_or_its_mac() {
    let api = Api::start().await;
    let created = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "fresh", "metadata": {"team": "ci"}}))
        .send()
        .await;
    created.expect(201);
    let fresh_token = created.json()["key"].as_str().expect("token").to_owned();
    let revoked = api.key(NewKey::new("alice", "revoked")).await;
    api.post(&format!("/v1/keys/{}/revoke", revoked.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    let tokens = [
        api.admin.token.as_str(),
        api.alice.token.as_str(),
        api.alice_reader.token.as_str(),
        api.bob.token.as_str(),
        api.verifier.token.as_str(),
        api.ops.token.as_str(),
        revoked.token.as_str(),
        fresh_token.as_str(),
    ];
    let resp = api
        .get("/v1/keys?include_revoked=true")
        .bearer(&api.admin.token)
        .send()
        .await;
    resp.expect(200);
    let body = resp.json();
    let keys = body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 8, "{body}");
    for key in keys {
        assert_record(key);
    }
    for token in tokens {
        assert_no_secret(&resp.body, token);
    }
    for key in keys {
        let id = key["id"].as_str().expect("id");
        let one = api
            .get(&format!("/v1/keys/{id}"))
            .bearer(&api.admin.token)
            .send()
            .await;
        one.expect(200);
        for token in tokens {
            assert_no_secret(&one.body, token);
        }
    }
}

// ---------------------------------------------------------------------------
// GET /v1/keys/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_returns_the_record_of_an_own_key() {
    let api = Api::start().await;
    let resp = api
        .get(&format!("/v1/keys/{}", api.alice_reader.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(200);
    let record = resp.json();
    assert_record(&record);
    assert_eq!(record["id"], api.alice_reader.id.as_str());
    assert_eq!(record["owner"], "alice");
    assert_eq!(record["name"], "reader");
    assert_eq!(strings(&record["scopes"]), ["keys:read"]);
    assert_eq!(record["status"], "active");
    assert_eq!(record["environment"], "live");
    assert_eq!(record["metadata"], json!({}));
    assert_eq!(record["ip_allow"], json!([]));
    assert!(record["description"].is_null() && record["organization"].is_null());
    // A key may read itself with keys:read.
    api.get(&format!("/v1/keys/{}", api.alice_reader.id))
        .bearer(&api.alice_reader.token)
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn another_owners_key_is_not_found_unless_admin() {
    let api = Api::start().await;
    let hidden = api
        .get(&format!("/v1/keys/{}", api.bob.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_not_found(&hidden);
    let absent = api
        .get("/v1/keys/0000000000000000")
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_not_found(&absent);
    assert_eq!(hidden.body, absent.body, "same body as an absent key");
    for id in ["nope", "0000", "0123456789abcde!", "%00"] {
        let resp = api
            .get(&format!("/v1/keys/{id}"))
            .bearer(&api.alice.token)
            .send()
            .await;
        assert_not_found(&resp);
        assert_eq!(resp.body, absent.body);
    }
    for token in [&api.admin.token, &api.ops.token] {
        let resp = api
            .get(&format!("/v1/keys/{}", api.bob.id))
            .bearer(token)
            .send()
            .await;
        resp.expect(200);
        assert_eq!(resp.json()["owner"], "bob");
    }
    let resp = api
        .get(&format!("/v1/keys/{}", api.alice.id))
        .bearer(&api.verifier.token)
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:read");
}

// ---------------------------------------------------------------------------
// PATCH /v1/keys/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn patch_changes_name_description_metadata_and_ip_lists() {
    let api = Api::start().await;
    let target = api
        .key(NewKey::new("alice", "target").scopes(["workspaces:read", "workspaces:write"]))
        .await;
    let before = api.record(&target.id).await;
    let resp = api
        .req("PATCH", &format!("/v1/keys/{}", target.id))
        .bearer(&api.alice.token)
        .json(&json!({
            "name": "renamed",
            "description": "the target",
            "metadata": {"team": "ci", "n": 1},
            "ip_allow": ["10.0.0.0/8", "2001:db8::/32"],
            "ip_deny": ["10.9.0.0/16"],
        }))
        .send()
        .await;
    resp.expect(200);
    let record = resp.json();
    assert_record(&record);
    assert_eq!(record["id"], target.id.as_str());
    assert_eq!(record["name"], "renamed");
    assert_eq!(record["description"], "the target");
    assert_eq!(record["metadata"], json!({"team": "ci", "n": 1}));
    assert_eq!(
        strings(&record["ip_allow"]),
        ["10.0.0.0/8", "2001:db8::/32"]
    );
    assert_eq!(strings(&record["ip_deny"]), ["10.9.0.0/16"]);
    assert_eq!(record["scopes"], before["scopes"], "scopes untouched");
    assert_eq!(record["created_at"], before["created_at"]);
    assert!(parse_time(&record["updated_at"]) >= parse_time(&before["updated_at"]));
    assert_eq!(api.record(&target.id).await, record, "the change is stored");

    // The new IP list applies from the next request: 127.0.0.1 is not allowed.
    let resp = api.get("/v1/scopes").bearer(&target.token).send().await;
    assert_ip_not_allowed(&resp);
}

#[tokio::test]
async fn patch_scopes_may_only_narrow() {
    let api = Api::start().await;
    let target = api
        .key(NewKey::new("alice", "target").scopes(["workspaces:read", "workspaces:write"]))
        .await;
    let check = json!({"checks": {"w": "workspaces:write"}});
    let resp = api
        .post("/v1/authcheck")
        .bearer(&target.token)
        .json(&check)
        .send()
        .await;
    assert_eq!(resp.json(), json!({"w": true}));

    let resp = api
        .req("PATCH", &format!("/v1/keys/{}", target.id))
        .bearer(&api.alice.token)
        .json(&json!({"scopes": ["workspaces:read"]}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(strings(&resp.json()["scopes"]), ["workspaces:read"]);
    // Narrowed from the next request on.
    let resp = api
        .post("/v1/authcheck")
        .bearer(&target.token)
        .json(&check)
        .send()
        .await;
    assert_eq!(resp.json(), json!({"w": false}));

    for scopes in [
        json!(["workspaces:read", "workspaces:write"]),
        json!(["workspaces:*"]),
        json!(["templates:use"]),
    ] {
        let resp = api
            .req("PATCH", &format!("/v1/keys/{}", target.id))
            .bearer(&api.alice.token)
            .json(&json!({"scopes": scopes}))
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some("scopes"));
    }
    assert_eq!(
        strings(&api.record(&target.id).await["scopes"]),
        ["workspaces:read"]
    );
}

#[tokio::test]
async fn patch_refuses_a_taken_name_unknown_fields_and_bad_values() {
    let api = Api::start().await;
    let target = api.key(NewKey::new("alice", "target")).await;
    let path = format!("/v1/keys/{}", target.id);
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"name": "reader"}))
        .send()
        .await;
    assert_error(&resp, 409, "conflict", Some("name"));

    for body in [
        r#"{"colour": "red"}"#,
        r#"{"owner": "bob"}"#,
        r#"{"name": "x""#,
        "not json",
    ] {
        let resp = api
            .req("PATCH", &path)
            .bearer(&api.alice.token)
            .raw(body)
            .send()
            .await;
        assert!(resp.status == 400, "{body:?} → {resp}");
        assert_bad_request(&resp, None);
    }
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"ip_allow": ["bad"]}), "ip_allow"),
        (json!({"ip_deny": ["10.0.0.0/99"]}), "ip_deny"),
        (json!({"metadata": [1]}), "metadata"),
        (json!({"description": "d".repeat(1025)}), "description"),
        (json!({"scopes": ["Not A Scope"]}), "scopes"),
    ] {
        let resp = api
            .req("PATCH", &path)
            .bearer(&api.alice.token)
            .json(&body)
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some(field));
    }
    assert_eq!(api.record(&target.id).await["name"], "target", "unchanged");

    // Renaming a key to its own name is no conflict.
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"name": "target"}))
        .send()
        .await;
    resp.expect(200);

    // A revoked key's name is free.
    let old = api.key(NewKey::new("alice", "retired")).await;
    api.post(&format!("/v1/keys/{}/revoke", old.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"name": "retired"}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["name"], "retired");
}

#[tokio::test]
async fn patch_needs_keys_update_and_a_visible_key() {
    let api = Api::start().await;
    let resp = api
        .req("PATCH", &format!("/v1/keys/{}", api.bob.id))
        .bearer(&api.alice.token)
        .json(&json!({"name": "mine-now"}))
        .send()
        .await;
    assert_not_found(&resp);
    let resp = api
        .req("PATCH", &format!("/v1/keys/{}", api.alice_reader.id))
        .bearer(&api.alice_reader.token)
        .json(&json!({"name": "x"}))
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:update");
    let resp = api
        .req("PATCH", &format!("/v1/keys/{}", api.bob.id))
        .bearer(&api.admin.token)
        .json(&json!({"description": "seen by admin"}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["description"], "seen by admin");
    assert_eq!(api.record(&api.bob.id).await["name"], "manager");
}

// ---------------------------------------------------------------------------
// POST /v1/keys/{id}/revoke
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revoke_refuses_the_token_from_the_next_request_on() {
    let api = Api::start().await;
    let with_reason = api.key(NewKey::new("alice", "one")).await;
    let no_body = api.key(NewKey::new("alice", "two")).await;
    let empty_object = api.key(NewKey::new("alice", "three")).await;
    for key in [&with_reason, &no_body, &empty_object] {
        assert!(api.works(&key.token).await, "works before (and is cached)");
    }

    let resp = api
        .post(&format!("/v1/keys/{}/revoke", with_reason.id))
        .bearer(&api.alice.token)
        .json(&json!({"reason": "leaked"}))
        .send()
        .await;
    resp.expect(200);
    let record = resp.json();
    assert_record(&record);
    assert_eq!(record["id"], with_reason.id.as_str());
    assert_eq!(record["status"], "revoked");
    assert_eq!(record["revoked_reason"], "leaked");
    parse_time(&record["revoked_at"]);
    assert!(!api.works(&with_reason.token).await, "refused at once");

    let resp = api
        .post(&format!("/v1/keys/{}/revoke", no_body.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["status"], "revoked");
    assert!(resp.json()["revoked_reason"].is_null());
    assert!(!api.works(&no_body.token).await);

    let resp = api
        .post(&format!("/v1/keys/{}/revoke", empty_object.id))
        .bearer(&api.alice.token)
        .raw("{}")
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["status"], "revoked");
    assert!(!api.works(&empty_object.token).await);
    assert!(api.works(&api.alice.token).await, "others unaffected");
}

#[tokio::test]
async fn revoke_needs_keys_revoke_a_visible_key_and_a_strict_body() {
    let api = Api::start().await;
    let resp = api
        .post(&format!("/v1/keys/{}/revoke", api.bob.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_not_found(&resp);
    assert!(api.works(&api.bob.token).await);
    let resp = api
        .post("/v1/keys/0000000000000000/revoke")
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_not_found(&resp);
    let resp = api
        .post(&format!("/v1/keys/{}/revoke", api.alice_reader.id))
        .bearer(&api.alice_reader.token)
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:revoke");
    let resp = api
        .post(&format!("/v1/keys/{}/revoke", api.alice_reader.id))
        .bearer(&api.alice.token)
        .raw(r#"{"why": "x"}"#)
        .send()
        .await;
    assert_bad_request(&resp, None);
    let resp = api
        .post(&format!("/v1/keys/{}/revoke", api.alice_reader.id))
        .bearer(&api.alice.token)
        .raw("{oops")
        .send()
        .await;
    assert_bad_request(&resp, None);
    let resp = api
        .post(&format!("/v1/keys/{}/revoke", api.alice_reader.id))
        .bearer(&api.alice.token)
        .json(&json!({"reason": "r".repeat(1025)}))
        .send()
        .await;
    assert_error(&resp, 400, "bad_request", Some("reason"));
    assert!(api.works(&api.alice_reader.token).await, "not revoked");
}

// ---------------------------------------------------------------------------
// POST /v1/keys/{id}/rotate
// ---------------------------------------------------------------------------

/// Rotates `key` as alice with `body` (none when `None`): the new key.
async fn rotate(api: &Api, key: &Key, body: Option<Value>) -> (Key, Value) {
    let mut req = api
        .post(&format!("/v1/keys/{}/rotate", key.id))
        .bearer(&api.alice.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await;
    resp.expect(201);
    let body = resp.json();
    let fields: BTreeSet<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(["key", "api_key"]), "{resp}");
    let record = body["api_key"].clone();
    assert_record(&record);
    let new = Key {
        token: body["key"].as_str().expect("token").to_owned(),
        id: record["id"].as_str().expect("id").to_owned(),
    };
    assert_ne!(new.id, key.id);
    assert!(new.token.starts_with(&format!("kg_live_{}", new.id)));
    (new, record)
}

#[tokio::test]
async fn rotate_without_grace_refuses_the_old_token_at_once() {
    let api = Api::start().await;
    let old = api
        .key(
            NewKey::new("alice", "rotating")
                .scopes(["workspaces:read"])
                .description("d")
                .metadata(json!({"team": "ci"})),
        )
        .await;
    assert!(api.works(&old.token).await);
    let (new, record) = rotate(&api, &old, None).await;
    assert_eq!(record["name"], "rotating", "same name");
    assert_eq!(record["owner"], "alice");
    assert_eq!(strings(&record["scopes"]), ["workspaces:read"]);
    assert_eq!(record["description"], "d");
    assert_eq!(record["metadata"], json!({"team": "ci"}));
    assert_eq!(record["status"], "active");
    assert!(!api.works(&old.token).await, "old token refused at once");
    assert!(api.works(&new.token).await, "new token works");
    let old_record = api.record(&old.id).await;
    assert_eq!(old_record["superseded_by"], new.id.as_str());
    assert_eq!(old_record["status"], "expired");
    assert!(parse_time(&old_record["expires_at"]) <= OffsetDateTime::now_utc());

    // A rotated key cannot be rotated again.
    let resp = api
        .post(&format!("/v1/keys/{}/rotate", old.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(409);
    assert_eq!(resp.json()["error"], "conflict", "{resp}");
}

#[tokio::test]
async fn rotate_with_grace_keeps_the_old_token_working() {
    let api = Api::start().await;
    for (i, grace) in [json!("1h"), json!(3600)].into_iter().enumerate() {
        let old = api
            .key(NewKey::new("alice", format!("graceful-{i}")).scopes(["workspaces:read"]))
            .await;
        assert!(api.works(&old.token).await);
        let before = OffsetDateTime::now_utc();
        let (new, _) = rotate(&api, &old, Some(json!({"grace": grace}))).await;
        assert!(api.works(&old.token).await, "old token works during grace");
        assert!(api.works(&new.token).await);
        let old_record = api.record(&old.id).await;
        assert_eq!(old_record["superseded_by"], new.id.as_str());
        assert_eq!(old_record["status"], "active");
        let expires = parse_time(&old_record["expires_at"]);
        let hour = Duration::hours(1);
        assert!(
            expires >= before + hour - Duration::seconds(2)
                && expires <= OffsetDateTime::now_utc() + hour,
            "{grace}: old key expires in about an hour: {old_record}"
        );
    }
    // The grace never extends a key past its own expiry.
    let short = api
        .key(NewKey::new("alice", "short").expires_in("30min"))
        .await;
    let short_expiry = parse_time(&api.record(&short.id).await["expires_at"]);
    rotate(&api, &short, Some(json!({"grace": "1d"}))).await;
    assert_eq!(
        parse_time(&api.record(&short.id).await["expires_at"]),
        short_expiry
    );
}

#[tokio::test]
async fn rotate_needs_every_scope_of_the_key() {
    let api = Api::start().await;
    let target = api
        .key(NewKey::new("alice", "templated").scopes(["workspaces:read", "templates:use"]))
        .await;
    let resp = api
        .post(&format!("/v1/keys/{}/rotate", target.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", Some("scopes"));
    assert!(api.works(&target.token).await, "nothing changed");
    assert!(api.record(&target.id).await["superseded_by"].is_null());
    // An admin holding every scope may.
    let resp = api
        .post(&format!("/v1/keys/{}/rotate", target.id))
        .bearer(&api.admin.token)
        .send()
        .await;
    resp.expect(201);
    assert_eq!(resp.json()["api_key"]["owner"], "alice");
}

#[tokio::test]
async fn rotate_refuses_revoked_keys_bad_grace_and_other_owners() {
    let api = Api::start().await;
    let revoked = api.key(NewKey::new("alice", "revoked")).await;
    api.post(&format!("/v1/keys/{}/revoke", revoked.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    let resp = api
        .post(&format!("/v1/keys/{}/rotate", revoked.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(409);
    assert_eq!(resp.json()["error"], "conflict", "{resp}");

    let target = api.key(NewKey::new("alice", "target")).await;
    let path = format!("/v1/keys/{}/rotate", target.id);
    for grace in [json!("abc"), json!("-5"), json!("1x"), json!("99999y")] {
        let resp = api
            .post(&path)
            .bearer(&api.alice.token)
            .json(&json!({"grace": grace}))
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some("grace"));
    }
    for body in [
        r#"{"grace": -5}"#,
        r#"{"grace": 1.5}"#,
        r#"{"grace": {"h": 1}}"#,
        r#"{"graze": "1h"}"#,
        "{nope",
    ] {
        let resp = api
            .post(&path)
            .bearer(&api.alice.token)
            .raw(body)
            .send()
            .await;
        assert!(resp.status == 400, "{body} → {resp}");
        assert_bad_request(&resp, None);
    }
    assert!(api.record(&target.id).await["superseded_by"].is_null());

    let resp = api
        .post(&format!("/v1/keys/{}/rotate", api.bob.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_not_found(&resp);
    let resp = api
        .post(&format!("/v1/keys/{}/rotate", api.alice_reader.id))
        .bearer(&api.alice_reader.token)
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:create");
    assert!(api.works(&api.bob.token).await && api.works(&api.alice_reader.token).await);
}

// ---------------------------------------------------------------------------
// DELETE /v1/keys/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn delete_removes_the_record_and_its_token() {
    let api = Api::start().await;
    let doomed = api.key(NewKey::new("alice", "doomed")).await;
    assert!(api.works(&doomed.token).await);
    let path = format!("/v1/keys/{}", doomed.id);
    let resp = api
        .req("DELETE", &path)
        .bearer(&api.alice.token)
        .send()
        .await;
    resp.expect(204);
    assert!(resp.body.is_empty(), "{resp}");
    assert_not_found(&api.get(&path).bearer(&api.alice.token).send().await);
    assert_not_found(&api.get(&path).bearer(&api.admin.token).send().await);
    assert!(!api.works(&doomed.token).await, "token refused at once");
    assert!(!api.ids_of("alice").await.contains(&doomed.id));
    assert_not_found(
        &api.req("DELETE", &path)
            .bearer(&api.alice.token)
            .send()
            .await,
    );
}

#[tokio::test]
async fn delete_needs_keys_delete_and_a_visible_key() {
    let api = Api::start().await;
    let resp = api
        .req("DELETE", &format!("/v1/keys/{}", api.bob.id))
        .bearer(&api.alice.token)
        .send()
        .await;
    assert_not_found(&resp);
    let resp = api
        .req("DELETE", &format!("/v1/keys/{}", api.alice_reader.id))
        .bearer(&api.alice_reader.token)
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:delete");
    assert_not_found(
        &api.req("DELETE", "/v1/keys/bad-id")
            .bearer(&api.alice.token)
            .send()
            .await,
    );
    assert!(api.works(&api.bob.token).await && api.works(&api.alice_reader.token).await);
    // An admin may delete anyone's key.
    api.req("DELETE", &format!("/v1/keys/{}", api.bob.id))
        .bearer(&api.admin.token)
        .send()
        .await
        .expect(204);
    assert!(!api.works(&api.bob.token).await);
}

// ---------------------------------------------------------------------------
// GET /v1/scopes, POST /v1/authcheck
// ---------------------------------------------------------------------------

#[tokio::test]
async fn scopes_lists_the_catalog_and_the_management_scopes_to_any_key() {
    let api = Api::start().await;
    let plain = api.key(NewKey::new("erin", "no-scopes")).await;
    for token in [&plain.token, &api.verifier.token, &api.admin.token] {
        let resp = api.get("/v1/scopes").bearer(token).send().await;
        resp.expect(200);
        let body = resp.json();
        assert_eq!(
            body.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["scopes".to_owned()])
        );
        let mut listed = BTreeMap::new();
        for entry in body["scopes"].as_array().expect("scopes") {
            let fields: BTreeSet<&str> = entry
                .as_object()
                .expect("entry")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(fields, BTreeSet::from(["name", "description"]), "{entry}");
            listed.insert(
                entry["name"].as_str().expect("name").to_owned(),
                entry["description"]
                    .as_str()
                    .expect("description")
                    .to_owned(),
            );
        }
        assert_eq!(listed["workspaces:read"], "Read workspaces");
        assert_eq!(listed["workspaces:write"], "Create and modify workspaces");
        assert_eq!(listed["templates:use"], "Use templates");
        for scope in BUILTIN_SCOPES {
            assert!(
                listed.get(scope).is_some_and(|d| !d.is_empty()),
                "{scope} missing: {body}"
            );
        }
        assert_eq!(listed.len(), 3 + BUILTIN_SCOPES.len(), "{body}");
    }
    assert_missing_token(&api.get("/v1/scopes").send().await);

    // Without a catalog, the management scopes are still listed.
    let keygate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .expect("keygate");
    let key = keygate
        .keys()
        .create(NewKey::new("x", "y"))
        .await
        .expect("key");
    let addr = serve(keygate::admin::router(keygate.clone())).await;
    let resp = Req::new(addr, "GET", "/v1/scopes")
        .bearer(key.token.expose())
        .send()
        .await;
    resp.expect(200);
    let names: BTreeSet<String> = resp.json()["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_owned())
        .collect();
    for scope in BUILTIN_SCOPES {
        assert!(names.contains(scope), "{scope} missing: {names:?}");
    }
}

#[tokio::test]
async fn authcheck_answers_each_named_expression_for_the_calling_key() {
    let api = Api::start().await;
    let key = api
        .key(NewKey::new("erin", "reader").scopes(["workspaces:read", "keys:read"]))
        .await;
    let checks = json!({"checks": {
        "a": "workspaces:read",
        "b": "workspaces:write or templates:use",
        "c": "admin:keys",
    }});
    let resp = api
        .post("/v1/authcheck")
        .bearer(&key.token)
        .json(&checks)
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json(), json!({"a": true, "b": false, "c": false}));

    let resp = api
        .post("/v1/authcheck")
        .bearer(&api.admin.token)
        .json(&checks)
        .send()
        .await;
    assert_eq!(resp.json(), json!({"a": true, "b": true, "c": true}));

    let resp = api
        .post("/v1/authcheck")
        .bearer(&api.alice.token)
        .json(&json!({"checks": {
            "mixed": "workspaces:read AND (templates:use OR workspaces:write)",
            "wild": "workspaces:*",
            "none": "templates:use",
        }}))
        .send()
        .await;
    assert_eq!(
        resp.json(),
        json!({"mixed": true, "wild": true, "none": false})
    );

    let resp = api
        .post("/v1/authcheck")
        .bearer(&key.token)
        .json(&json!({"checks": {}}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json(), json!({}));
}

#[tokio::test]
async fn authcheck_refuses_malformed_expressions_and_bodies() {
    let api = Api::start().await;
    for expr in [
        "workspaces:read and",
        "Not A Scope",
        "(a:b",
        "a:b or or c:d",
        "",
    ] {
        let resp = api
            .post("/v1/authcheck")
            .bearer(&api.alice.token)
            .json(&json!({"checks": {"ok": "workspaces:read", "bad": expr}}))
            .send()
            .await;
        assert!(resp.status == 400, "{expr:?} → {resp}");
        assert_bad_request(&resp, None);
    }
    for body in [
        r#"{"checks": {"a": "workspaces:read"}, "extra": 1}"#,
        r#"{"checks": ["workspaces:read"]}"#,
        r#"{"checks": {"a": 1}}"#,
        "{}",
        "{nope",
    ] {
        let resp = api
            .post("/v1/authcheck")
            .bearer(&api.alice.token)
            .raw(body)
            .send()
            .await;
        assert!(resp.status == 400, "{body} → {resp}");
        assert_bad_request(&resp, None);
    }
    let resp = api
        .post("/v1/authcheck")
        .json(&json!({"checks": {"a": "workspaces:read"}}))
        .send()
        .await;
    assert_missing_token(&resp);
}

// ---------------------------------------------------------------------------
// POST /v1/verify
// ---------------------------------------------------------------------------

async fn verify(api: &Api, body: Value) -> Value {
    let resp = api
        .post("/v1/verify")
        .bearer(&api.verifier.token)
        .json(&body)
        .send()
        .await;
    resp.expect(200);
    resp.json()
}

#[tokio::test]
async fn verify_reports_a_valid_key_with_its_record() {
    let api = Api::start().await;
    let body = verify(&api, json!({"key": api.alice.token})).await;
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["code"], "valid", "{body}");
    assert_record(&body["api_key"]);
    assert_eq!(body["api_key"]["id"], api.alice.id.as_str());
    assert_eq!(body["api_key"]["owner"], "alice");
    assert_no_secret(body.to_string().as_bytes(), &api.alice.token);
    assert_no_secret(body.to_string().as_bytes(), &api.verifier.token);

    let body = verify(
        &api,
        json!({"key": api.alice.token, "require": "workspaces:read and keys:read"}),
    )
    .await;
    assert_eq!(
        (&body["valid"], &body["code"]),
        (&json!(true), &json!("valid"))
    );
}

#[tokio::test]
async fn verify_reports_invalid_tokens_without_a_record() {
    let api = Api::start().await;
    let revoked = api.key(NewKey::new("alice", "revoked")).await;
    api.post(&format!("/v1/keys/{}/revoke", revoked.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
    let deleted = api.key(NewKey::new("alice", "deleted")).await;
    api.req("DELETE", &format!("/v1/keys/{}", deleted.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(204);
    let mut bad_checksum = api.alice.token.clone();
    let last = bad_checksum.pop().expect("a char");
    bad_checksum.push(if last == '0' { '1' } else { '0' });
    for token in [
        "garbage".to_owned(),
        String::new(),
        bad_checksum,
        revoked.token.clone(),
        deleted.token.clone(),
        "x".repeat(300),
    ] {
        let body = verify(&api, json!({"key": token})).await;
        assert_eq!(
            body,
            json!({"valid": false, "code": "invalid_token"}),
            "{token}"
        );
    }
}

#[tokio::test]
async fn verify_checks_the_requirement() {
    let api = Api::start().await;
    let reader = api
        .key(NewKey::new("erin", "reader").scopes(["workspaces:read"]))
        .await;
    let body = verify(
        &api,
        json!({"key": reader.token, "require": "workspaces:write"}),
    )
    .await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["code"], "insufficient_scope", "{body}");
    assert_eq!(body["api_key"]["id"], reader.id.as_str());
    let body = verify(
        &api,
        json!({"key": reader.token, "require": "workspaces:write or workspaces:read"}),
    )
    .await;
    assert_eq!(body["code"], "valid", "{body}");

    let resp = api
        .post("/v1/verify")
        .bearer(&api.verifier.token)
        .json(&json!({"key": reader.token, "require": "workspaces:read and"}))
        .send()
        .await;
    assert_bad_request(&resp, Some("require"));
}

#[tokio::test]
async fn verify_checks_ip_lists_against_the_caller_or_the_given_ip() {
    let api = Api::start().await;
    let fenced = api
        .key(NewKey::new("erin", "fenced").ip_allow(["10.0.0.0/8"]))
        .await;
    // The request comes from 127.0.0.1.
    let body = verify(&api, json!({"key": fenced.token})).await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["code"], "ip_not_allowed", "{body}");
    assert_eq!(body["api_key"]["id"], fenced.id.as_str());
    let body = verify(&api, json!({"key": fenced.token, "ip": "10.1.2.3"})).await;
    assert_eq!(
        (&body["valid"], &body["code"]),
        (&json!(true), &json!("valid"))
    );
    let body = verify(&api, json!({"key": fenced.token, "ip": "192.168.1.1"})).await;
    assert_eq!(body["code"], "ip_not_allowed", "{body}");

    let denied = api
        .key(NewKey::new("erin", "denied").ip_deny(["127.0.0.1"]))
        .await;
    let body = verify(&api, json!({"key": denied.token})).await;
    assert_eq!(body["code"], "ip_not_allowed", "{body}");

    let resp = api
        .post("/v1/verify")
        .bearer(&api.verifier.token)
        .json(&json!({"key": fenced.token, "ip": "not-an-ip"}))
        .send()
        .await;
    assert_bad_request(&resp, Some("ip"));
}

#[tokio::test]
async fn verify_needs_keys_verify_and_a_strict_body() {
    let api = Api::start().await;
    let resp = api
        .post("/v1/verify")
        .bearer(&api.alice.token)
        .json(&json!({"key": api.bob.token}))
        .send()
        .await;
    assert_insufficient_scope(&resp, "keys:verify");
    assert_missing_token(
        &api.post("/v1/verify")
            .json(&json!({"key": api.bob.token}))
            .send()
            .await,
    );
    for body in [
        json!({"key": api.bob.token, "extra": true}).to_string(),
        json!({"require": "keys:read"}).to_string(),
        "{nope".to_owned(),
        String::new(),
    ] {
        let resp = api
            .post("/v1/verify")
            .bearer(&api.verifier.token)
            .raw(body.clone())
            .send()
            .await;
        assert!(resp.status == 400, "{body} → {resp}");
        assert_bad_request(&resp, None);
    }
    // `*:*` holds keys:verify.
    api.post("/v1/verify")
        .bearer(&api.admin.token)
        .json(&json!({"key": api.bob.token}))
        .send()
        .await
        .expect(200);
}

// ---------------------------------------------------------------------------
// Management scopes and the mint ceiling (SPEC §4a)
// ---------------------------------------------------------------------------

/// `METHOD path` with `token` and an optional JSON body.
async fn call(api: &Api, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
    let mut req = api.req(method, path).bearer(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await
}

#[tokio::test]
async fn a_keys_wildcard_key_cannot_reach_another_owners_keys() {
    let api = Api::start().await;
    let wild = api
        .key(NewKey::new("bob", "wild").scopes(["keys:*", "workspaces:*"]))
        .await;
    let victim = api
        .key(NewKey::new("alice", "victim").scopes(["workspaces:read"]))
        .await;
    let before = api.record(&victim.id).await;
    let item = format!("/v1/keys/{}", victim.id);

    // Listing: own keys only; naming alice is forbidden.
    let resp = call(&api, "GET", "/v1/keys?limit=1000", &wild.token, None).await;
    resp.expect(200);
    let listed = ids(&resp.json()["keys"]);
    assert!(!listed.contains(&victim.id), "{resp}");
    assert!(listed.contains(&wild.id), "{resp}");
    let resp = call(&api, "GET", "/v1/keys?owner=alice", &wild.token, None).await;
    assert_error(&resp, 403, "forbidden", None);
    // Show, update, revoke, rotate, delete: invisible (404).
    for (method, path, body) in [
        ("GET", item.clone(), None),
        ("PATCH", item.clone(), Some(json!({"name": "mine now"}))),
        ("POST", format!("{item}/revoke"), None),
        ("POST", format!("{item}/rotate"), None),
        ("DELETE", item.clone(), None),
    ] {
        let resp = call(&api, method, &path, &wild.token, body).await;
        assert_not_found(&resp);
    }
    // Creating for alice is forbidden.
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &wild.token,
        Some(json!({"owner": "alice", "name": "planted"})),
    )
    .await;
    assert_error(&resp, 403, "forbidden", None);
    assert!(api.works(&victim.token).await, "alice's key untouched");
    assert_eq!(api.record(&victim.id).await, before);

    // admin:keys (or admin:*) with the own-owner scopes reaches every owner.
    for (i, admin_scope) in ["admin:keys", "admin:*"].into_iter().enumerate() {
        let admin = api
            .key(NewKey::new("bob", format!("admin-{i}")).scopes(["keys:*", admin_scope]))
            .await;
        let target = api.key(NewKey::new("alice", format!("target-{i}"))).await;
        let item = format!("/v1/keys/{}", target.id);
        let resp = call(
            &api,
            "GET",
            "/v1/keys?owner=alice&limit=1000",
            &admin.token,
            None,
        )
        .await;
        resp.expect(200);
        assert!(ids(&resp.json()["keys"]).contains(&target.id), "{resp}");
        call(&api, "GET", &item, &admin.token, None)
            .await
            .expect(200);
        call(&api, "POST", &format!("{item}/revoke"), &admin.token, None)
            .await
            .expect(200);
        assert!(!api.works(&target.token).await, "revoked by {admin_scope}");
        call(&api, "DELETE", &item, &admin.token, None)
            .await
            .expect(204);
    }
}

#[tokio::test]
async fn a_key_limited_to_one_address_cannot_mint_a_wider_key() {
    let api = Api::start().await;
    let fenced = api
        .key(
            NewKey::new("alice", "fenced")
                .scopes(["keys:create", "workspaces:read"])
                .ip_allow(["127.0.0.1/32"]),
        )
        .await;
    assert!(api.works(&fenced.token).await, "127.0.0.1 is allowed");
    let before = api.ids_of("alice").await;
    for body in [
        json!({"name": "free"}),
        json!({"name": "free", "ip_allow": []}),
        json!({"name": "wider", "ip_allow": ["127.0.0.0/8"]}),
        json!({"name": "elsewhere", "ip_allow": ["127.0.0.1", "10.0.0.1"]}),
        json!({"name": "v6", "ip_allow": ["::1"]}),
    ] {
        let resp = call(&api, "POST", "/v1/keys", &fenced.token, Some(body.clone())).await;
        assert_error(&resp, 403, "forbidden", Some("ip_allow"));
        assert_no_secret(&resp.body, &fenced.token);
    }
    assert_eq!(api.ids_of("alice").await, before, "nothing written");
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &fenced.token,
        Some(json!({"name": "same", "ip_allow": ["127.0.0.1"]})),
    )
    .await;
    resp.expect(201);
    assert_eq!(
        strings(&resp.json()["api_key"]["ip_allow"]),
        ["127.0.0.1/32"]
    );
}

#[tokio::test]
async fn a_key_with_a_deny_list_cannot_mint_a_key_without_it() {
    let api = Api::start().await;
    let denier = api
        .key(
            NewKey::new("alice", "denier")
                .scopes(["keys:create"])
                .ip_deny(["10.0.0.0/8"]),
        )
        .await;
    let before = api.ids_of("alice").await;
    for body in [
        json!({"name": "open"}),
        json!({"name": "partial", "ip_deny": ["10.1.0.0/16"]}),
        json!({"name": "other", "ip_deny": ["192.168.0.0/16"]}),
    ] {
        let resp = call(&api, "POST", "/v1/keys", &denier.token, Some(body)).await;
        assert_error(&resp, 403, "forbidden", Some("ip_deny"));
    }
    assert_eq!(api.ids_of("alice").await, before, "nothing written");
    call(
        &api,
        "POST",
        "/v1/keys",
        &denier.token,
        Some(json!({"name": "covered", "ip_deny": ["10.0.0.0/7", "192.168.0.0/16"]})),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn a_thirty_minute_key_cannot_mint_or_rotate_into_a_longer_lived_key() {
    let api = Api::start().await;
    let short = api
        .key(
            NewKey::new("alice", "short")
                .scopes(["keys:create", "keys:read", "workspaces:read"])
                .expires_in("30min"),
        )
        .await;
    let short_expiry = parse_time(&api.record(&short.id).await["expires_at"]);
    let before = api.ids_of("alice").await;
    let later = (OffsetDateTime::now_utc() + Duration::days(1))
        .format(&Rfc3339)
        .expect("format");
    for body in [
        json!({"name": "forever", "expires_in": "never"}),
        json!({"name": "longer", "expires_in": "1h"}),
        json!({"name": "month", "expires_in": "1mo"}),
        json!({"name": "absolute", "expires_at": later}),
    ] {
        let resp = call(&api, "POST", "/v1/keys", &short.token, Some(body)).await;
        assert_error(&resp, 403, "forbidden", Some("expires_at"));
    }
    assert_eq!(api.ids_of("alice").await, before, "nothing written");

    // Shorter is fine; no lifetime means the default cut to the caller's.
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &short.token,
        Some(json!({"name": "shorter", "expires_in": "10min"})),
    )
    .await;
    resp.expect(201);
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &short.token,
        Some(json!({"name": "default"})),
    )
    .await;
    resp.expect(201);
    let child = resp.json();
    assert_eq!(parse_time(&child["api_key"]["expires_at"]), short_expiry);

    // Rotating a never-expiring key would hand out a never-expiring token.
    let forever = api
        .key(NewKey::new("alice", "forever").expires_in("never"))
        .await;
    let resp = call(
        &api,
        "POST",
        &format!("/v1/keys/{}/rotate", forever.id),
        &short.token,
        Some(json!({"grace": "1d"})),
    )
    .await;
    assert_error(&resp, 403, "forbidden", Some("expires_at"));
    assert!(api.works(&forever.token).await, "nothing changed");
    let record = api.record(&forever.id).await;
    assert!(
        record["superseded_by"].is_null() && record["expires_at"].is_null(),
        "{record}"
    );

    // A key within the ceiling rotates, and the new key never outlives the
    // caller: the short key rotating itself keeps its expiry.
    let resp = call(
        &api,
        "POST",
        &format!("/v1/keys/{}/rotate", short.id),
        &short.token,
        Some(json!({"grace": "1d"})),
    )
    .await;
    resp.expect(201);
    let new = &resp.json()["api_key"];
    assert_eq!(parse_time(&new["expires_at"]), short_expiry, "{new}");
    let old = api.record(&short.id).await;
    assert_eq!(
        parse_time(&old["expires_at"]),
        short_expiry,
        "grace never extends"
    );
}

#[tokio::test]
async fn a_test_key_cannot_mint_a_live_key() {
    let api = Api::start().await;
    let tester = api
        .key(
            NewKey::new("alice", "tester")
                .scopes(["keys:create"])
                .environment(keygate::Environment::Test),
        )
        .await;
    let before = api.ids_of("alice").await;
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &tester.token,
        Some(json!({"name": "live", "environment": "live"})),
    )
    .await;
    assert_error(&resp, 403, "forbidden", Some("environment"));
    assert_eq!(api.ids_of("alice").await, before, "nothing written");
    // Without an environment, the new key is a test key like its creator.
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &tester.token,
        Some(json!({"name": "t"})),
    )
    .await;
    resp.expect(201);
    assert_eq!(resp.json()["api_key"]["environment"], "test");
    assert!(
        resp.json()["key"]
            .as_str()
            .is_some_and(|t| t.starts_with("kg_test_"))
    );

    // Nor rotate a live key into a fresh live token.
    let live = api.key(NewKey::new("alice", "live-target")).await;
    let resp = call(
        &api,
        "POST",
        &format!("/v1/keys/{}/rotate", live.id),
        &tester.token,
        None,
    )
    .await;
    assert_error(&resp, 403, "forbidden", Some("environment"));
    assert!(api.record(&live.id).await["superseded_by"].is_null());
}

#[tokio::test]
async fn a_key_cannot_mint_a_key_of_another_organization() {
    let api = Api::start().await;
    let member = api
        .key(
            NewKey::new("alice", "member")
                .scopes(["keys:create"])
                .organization("acme"),
        )
        .await;
    let loner = api
        .key(NewKey::new("alice", "loner").scopes(["keys:create"]))
        .await;
    let before = api.ids_of("alice").await;
    for (token, body) in [
        (
            &member.token,
            json!({"name": "x", "organization": "globex"}),
        ),
        (&loner.token, json!({"name": "x", "organization": "acme"})),
    ] {
        let resp = call(&api, "POST", "/v1/keys", token, Some(body)).await;
        assert_error(&resp, 403, "forbidden", Some("organization"));
    }
    assert_eq!(api.ids_of("alice").await, before, "nothing written");
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &member.token,
        Some(json!({"name": "in"})),
    )
    .await;
    resp.expect(201);
    assert_eq!(resp.json()["api_key"]["organization"], "acme");
}

#[tokio::test]
async fn patch_cannot_widen_a_key_beyond_the_callers_own_limits() {
    let api = Api::start().await;
    let fenced = api
        .key(
            NewKey::new("alice", "fenced-updater")
                .scopes(["keys:update", "workspaces:read"])
                .ip_allow(["127.0.0.1/32"])
                .ip_deny(["127.0.0.2/32"]),
        )
        .await;
    let target = api
        .key(
            NewKey::new("alice", "target")
                .scopes(["*:*"])
                .ip_allow(["127.0.0.1"])
                .ip_deny(["127.0.0.2"]),
        )
        .await;
    let before = api.record(&target.id).await;
    let path = format!("/v1/keys/{}", target.id);
    for (body, field) in [
        (json!({"ip_allow": []}), "ip_allow"),
        (json!({"ip_allow": ["0.0.0.0/0"]}), "ip_allow"),
        (json!({"ip_deny": []}), "ip_deny"),
        (
            json!({"name": "renamed", "ip_allow": ["127.0.0.0/8"]}),
            "ip_allow",
        ),
        (json!({"scopes": ["*:*"]}), "scopes"),
    ] {
        let resp = call(&api, "PATCH", &path, &fenced.token, Some(body)).await;
        assert_error(&resp, 403, "forbidden", Some(field));
    }
    assert_eq!(api.record(&target.id).await, before, "nothing written");
    // Narrowing within the caller's limits is fine.
    let resp = call(
        &api,
        "PATCH",
        &path,
        &fenced.token,
        Some(json!({"scopes": ["workspaces:read"], "ip_deny": ["127.0.0.2", "10.0.0.0/8"]})),
    )
    .await;
    resp.expect(200);
    assert_eq!(strings(&resp.json()["scopes"]), ["workspaces:read"]);
}

#[tokio::test]
async fn admin_keys_is_not_bound_by_the_ceiling_but_by_its_scopes() {
    let api = Api::start().await;
    let admin = api
        .key(
            NewKey::new("ops", "limited-admin")
                .scopes(["admin:keys", "keys:create", "workspaces:read"])
                .expires_in("30min")
                .environment(keygate::Environment::Test)
                .ip_allow(["127.0.0.1"]),
        )
        .await;
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &admin.token,
        Some(json!({
            "owner": "carol",
            "name": "unbounded",
            "scopes": ["workspaces:read"],
            "expires_in": "never",
            "environment": "live",
            "organization": "globex",
        })),
    )
    .await;
    resp.expect(201);
    let record = &resp.json()["api_key"];
    assert!(
        record["expires_at"].is_null() && record["ip_allow"] == json!([]),
        "{record}"
    );
    let resp = call(
        &api,
        "POST",
        "/v1/keys",
        &admin.token,
        Some(json!({"name": "wider", "scopes": ["workspaces:write"]})),
    )
    .await;
    assert_error(&resp, 403, "forbidden", Some("scopes"));
}

// ---------------------------------------------------------------------------
// API strictness (SPEC §4a): object bodies, JSON errors everywhere
// ---------------------------------------------------------------------------

/// A JSON error of SPEC §9 with this status and code, and nothing more.
#[track_caller]
fn assert_json_error(resp: &Resp, status: u16, code: &str) {
    assert_error(resp, status, code, None);
    let fields: BTreeSet<String> = resp
        .json()
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["error".to_owned(), "message".to_owned()]),
        "{resp}"
    );
}

#[tokio::test]
async fn arrays_and_other_non_object_bodies_are_refused_everywhere() {
    let api = Api::start().await;
    let target = api.key(NewKey::new("alice", "target")).await;
    let item = format!("/v1/keys/{}", target.id);
    // Arrays that serde would read positionally into each body's fields.
    let verify_array = json!([api.alice.token, null, null]).to_string();
    let endpoints: [(&str, String, &str, &str); 6] = [
        (
            "POST",
            "/v1/keys".to_owned(),
            &api.admin.token,
            r#"[null, "from-array", null, null, null, [], null, null, [], [], null]"#,
        ),
        (
            "PATCH",
            item.clone(),
            &api.alice.token,
            r#"["renamed", null, null, null, null, null]"#,
        ),
        (
            "POST",
            format!("{item}/revoke"),
            &api.alice.token,
            r#"["via an array"]"#,
        ),
        (
            "POST",
            format!("{item}/rotate"),
            &api.alice.token,
            r#"["1h"]"#,
        ),
        (
            "POST",
            "/v1/authcheck".to_owned(),
            &api.alice.token,
            r#"[{"a": "keys:read"}]"#,
        ),
        (
            "POST",
            "/v1/verify".to_owned(),
            &api.verifier.token,
            verify_array.as_str(),
        ),
    ];
    let admin_keys = api.ids_of("admin").await;
    for (method, path, token, array) in endpoints {
        for body in [array, "null", "1", r#""text""#, "true", "[]"] {
            let resp = api.req(method, &path).bearer(token).raw(body).send().await;
            assert_error(&resp, 400, "bad_request", None);
            assert_no_secret(&resp.body, token);
        }
    }
    assert_eq!(api.ids_of("admin").await, admin_keys, "nothing created");
    let record = api.record(&target.id).await;
    assert_eq!(record["name"], "target", "{record}");
    assert!(
        record["revoked_at"].is_null() && record["superseded_by"].is_null(),
        "{record}"
    );
    assert!(api.works(&target.token).await);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_json() {
    let api = Api::start().await;
    for path in [
        "/nope",
        "/v1/key",
        "/v1/keys/x/y",
        "/v1/keys/abc/revoke/now",
        "/",
    ] {
        for token in [None, Some(&api.admin.token)] {
            let mut req = api.get(path);
            if let Some(token) = token {
                req = req.bearer(token);
            }
            let resp = req.send().await;
            assert_json_error(&resp, 404, "not_found");
        }
    }
    for (method, path, allowed) in [
        ("PUT", "/v1/keys", &["GET", "POST"][..]),
        ("DELETE", "/v1/scopes", &["GET"][..]),
        ("GET", "/v1/keys/0000000000000000/revoke", &["POST"][..]),
        ("POST", "/healthz", &["GET"][..]),
        ("DELETE", "/v1/openapi.json", &["GET"][..]),
    ] {
        let resp = api.req(method, path).bearer(&api.admin.token).send().await;
        assert_json_error(&resp, 405, "method_not_allowed");
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("no Allow: {resp}"));
        for m in allowed {
            assert!(allow.contains(m), "{method} {path}: Allow {allow}");
        }
    }
    // Forward auth still answers every method itself, exactly as SPEC §3.
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let resp = api
            .req(method, "/v1/forward-auth/api/workspaces/1")
            .send()
            .await;
        assert_missing_token(&resp);
    }
    let resp = api
        .req("PUT", "/v1/forward-auth")
        .bearer(&api.admin.token)
        .send()
        .await;
    resp.expect(200);
}

#[tokio::test]
async fn oversized_bodies_are_payload_too_large_in_json() {
    let api = Api::start().await;
    let before = api.ids_of("admin").await;
    let padding = "x".repeat(70 * 1024);
    let big = json!({"name": "big", "description": padding}).to_string();
    for (path, token) in [
        ("/v1/keys", &api.admin.token),
        ("/v1/authcheck", &api.admin.token),
        ("/v1/verify", &api.verifier.token),
    ] {
        let resp = api.post(path).bearer(token).raw(big.clone()).send().await;
        assert_json_error(&resp, 413, "payload_too_large");
    }
    assert_eq!(api.ids_of("admin").await, before, "nothing written");
}

#[tokio::test]
async fn bodies_not_labelled_json_are_unsupported_media_type() {
    let api = Api::start().await;
    let before = api.ids_of("admin").await;
    let body = json!({"name": "form"}).to_string();
    for content_type in ["text/plain", "text/plain; charset=utf-8", "application/xml"] {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.admin.token)
            .header("Content-Type", content_type)
            .body_as_is(body.clone())
            .send()
            .await;
        assert_json_error(&resp, 415, "unsupported_media_type");
    }
    assert_eq!(api.ids_of("admin").await, before, "nothing written");
    // A real form body is no JSON object: 400, nothing written.
    let resp = api
        .post("/v1/keys")
        .bearer(&api.admin.token)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body_as_is("name=form&owner=admin".to_owned())
        .send()
        .await;
    assert_json_error(&resp, 400, "bad_request");
    assert_eq!(api.ids_of("admin").await, before, "nothing written");
    // JSON without a label, or with curl -d's default label, is read.
    for content_type in [None, Some("application/x-www-form-urlencoded")] {
        let mut req = api.post("/v1/keys").bearer(&api.admin.token);
        if let Some(content_type) = content_type {
            req = req.header("Content-Type", content_type);
        }
        let name = format!("unlabelled-{}", content_type.is_some());
        let resp = req
            .body_as_is(json!({"name": name}).to_string())
            .send()
            .await;
        resp.expect(201);
    }
    // Empty optional bodies need no label.
    let target = api.key(NewKey::new("alice", "plain-revoke")).await;
    api.post(&format!("/v1/keys/{}/revoke", target.id))
        .bearer(&api.alice.token)
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn a_token_sent_in_the_wrong_field_is_never_echoed() {
    let api = Api::start().await;
    let secret = &api.bob.token;
    for body in [
        json!({"name": "n", "environment": secret}),
        json!({"name": "n", "ip_allow": [secret]}),
        json!({"name": "n", "expires_at": secret}),
        json!({"name": "n", "expires_in": secret}),
        json!({"name": "n", "scopes": [secret]}),
        json!({"name": "n", "metadata": secret}),
        json!({secret: 1}),
    ] {
        let resp = call(
            &api,
            "POST",
            "/v1/keys",
            &api.admin.token,
            Some(body.clone()),
        )
        .await;
        assert_error(&resp, 400, "bad_request", resp.json()["field"].as_str());
        assert_no_secret(&resp.body, secret);
    }
    let resp = call(
        &api,
        "POST",
        "/v1/verify",
        &api.verifier.token,
        Some(json!({"key": 5, "require": secret})),
    )
    .await;
    resp.expect(400);
    assert_no_secret(&resp.body, secret);
}

#[tokio::test]
async fn nested_in_an_app_the_api_keeps_its_json_errors_to_itself() {
    let keygate = builder().build().expect("keygate");
    let admin = make_key(&keygate, NewKey::new("admin", "root").scopes(["*:*"])).await;
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi" }))
        .nest("/keygate", keygate::admin::router(keygate.clone()));
    let addr = serve(app).await;
    let resp = Req::new(addr, "GET", "/keygate/v1/nope")
        .bearer(&admin.token)
        .send()
        .await;
    assert_json_error(&resp, 404, "not_found");
    let resp = Req::new(addr, "PUT", "/keygate/v1/keys")
        .bearer(&admin.token)
        .send()
        .await;
    assert_json_error(&resp, 405, "method_not_allowed");
    Req::new(addr, "GET", "/keygate/v1/keys")
        .bearer(&admin.token)
        .send()
        .await
        .expect(200);
    Req::new(addr, "GET", "/hello").send().await.expect(200);
    // Outside the nest, the app's own (default) answers.
    let resp = Req::new(addr, "GET", "/elsewhere").send().await;
    resp.expect(404);
    assert!(resp.body.is_empty(), "{resp}");
}

// ---------------------------------------------------------------------------
// Health and OpenAPI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn healthz_answers_without_credentials() {
    let api = Api::start().await;
    api.get("/healthz").send().await.expect(200);
    // A credential, even a bad one, changes nothing.
    api.get("/healthz")
        .bearer("garbage")
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn readyz_follows_the_store() {
    let store = FlakyStore::default();
    let down = store.down.clone();
    let keygate = Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .expect("keygate");
    let addr = serve(keygate::admin::router(keygate)).await;
    let readyz = || Req::new(addr, "GET", "/readyz").send();
    readyz().await.expect(200);
    down.store(true, Ordering::SeqCst);
    readyz().await.expect(503);
    Req::new(addr, "GET", "/healthz").send().await.expect(200);
    down.store(false, Ordering::SeqCst);
    readyz().await.expect(200);
}

#[tokio::test]
async fn openapi_document_lists_every_route_and_the_key_schema() {
    let api = Api::start().await;
    let resp = api.get("/v1/openapi.json").send().await;
    resp.expect(200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{resp}"
    );
    let doc = resp.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let routes: [(&str, &[&str]); 13] = [
        ("/v1/keys", &["get", "post"]),
        ("/v1/audit", &["get"]),
        ("/v1/keys/{id}", &["get", "patch", "delete"]),
        ("/v1/keys/{id}/revoke", &["post"]),
        ("/v1/keys/{id}/rotate", &["post"]),
        ("/v1/keys/{id}/credits", &["post"]),
        ("/v1/scopes", &["get"]),
        ("/v1/authcheck", &["post"]),
        ("/v1/verify", &["post"]),
        ("/v1/forward-auth", &[]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/v1/openapi.json", &["get"]),
    ];
    for (path, methods) in routes {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in {:?}", paths.keys()));
        for method in methods {
            assert!(item.get(method).is_some(), "{path} lacks {method}: {item}");
        }
    }
    let schema = &doc["components"]["schemas"]["ApiKey"];
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("ApiKey schema: {schema}"));
    for field in RECORD_FIELDS {
        assert!(properties.contains_key(field), "ApiKey lacks {field}");
    }
    // No credentials needed, and the document is what `openapi()` builds.
    let built = serde_json::to_value(keygate::admin::openapi()).expect("serialize");
    assert_eq!(doc, built);
}

#[tokio::test]
async fn openapi_document_lists_every_status_and_bound() {
    let doc = serde_json::to_value(keygate::admin::openapi()).expect("serialize");
    let codes = |op: &Value| -> BTreeSet<String> {
        op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("responses: {op}"))
            .keys()
            .cloned()
            .collect()
    };
    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let listed = codes(op);
            let has = |code: &str| listed.contains(code);
            let is_secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if is_secured {
                secured += 1;
                for code in ["400", "401", "403", "503"] {
                    assert!(has(code), "{method} {path} lacks {code}: {listed:?}");
                }
            }
            if op.get("requestBody").is_some() {
                for code in ["400", "413", "415"] {
                    assert!(has(code), "{method} {path} lacks {code}: {listed:?}");
                }
            }
            if path.contains("{id}") {
                assert!(has("404"), "{method} {path} lacks 404: {listed:?}");
                let id = op["parameters"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == "id"))
                    .unwrap_or_else(|| panic!("{method} {path}: no id parameter"));
                assert_eq!(id["schema"]["minLength"], 16, "{id}");
                assert_eq!(id["schema"]["maxLength"], 16, "{id}");
            }
            // Every error answer is the JSON error object. (Forward auth's
            // own annotation lives in src/gateway and documents its SPEC §3
            // answers in prose.)
            let gateway = op["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("gateway")));
            for (code, response) in op["responses"].as_object().expect("responses") {
                if gateway {
                    continue;
                }
                if code.starts_with('4') || (code == "503" && is_secured) {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {code}: {response}"
                    );
                }
            }
        }
    }
    assert_eq!(secured, 12, "every management operation is secured");
    for (path, method, code) in [
        ("/v1/keys", "post", "409"),
        ("/v1/keys/{id}", "patch", "409"),
        ("/v1/keys/{id}/rotate", "post", "409"),
        ("/v1/keys/{id}/credits", "post", "409"),
        ("/readyz", "get", "503"),
    ] {
        assert!(
            codes(&doc["paths"][path][method]).contains(code),
            "{method} {path} lacks {code}"
        );
    }

    let limit = doc["paths"]["/v1/keys"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .expect("a limit parameter");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 1000, "{limit}");

    let schemas = &doc["components"]["schemas"];
    for schema in ["NewKey", "KeyUpdate"] {
        let props = &schemas[schema]["properties"];
        assert_eq!(props["name"]["maxLength"], 128, "{schema}: {props}");
        assert_eq!(props["description"]["maxLength"], 1024, "{schema}: {props}");
        for list in ["scopes", "ip_allow", "ip_deny"] {
            assert_eq!(props[list]["maxItems"], 64, "{schema}.{list}: {props}");
        }
        assert!(
            props["metadata"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("4 KiB")),
            "{schema}: {props}"
        );
    }
    let new_key = &schemas["NewKey"]["properties"];
    for field in ["owner", "organization"] {
        assert_eq!(new_key[field]["maxLength"], 128, "{field}: {new_key}");
    }
    assert!(
        new_key["expires_in"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("30min") && !d.contains("30m`")),
        "{new_key}"
    );
    assert_eq!(
        schemas["RevokeBody"]["properties"]["reason"]["maxLength"],
        1024
    );
    assert_eq!(
        schemas["VerifyBody"]["properties"]["require"]["maxLength"],
        4096
    );
}

// ---------------------------------------------------------------------------
// Forward auth (SPEC §10)
// ---------------------------------------------------------------------------

const WORKSPACE_SCOPES: [&str; 1] = ["workspaces:read"];

#[tokio::test]
async fn forward_auth_nginx_allows_a_key_holding_the_rule_scope() {
    let api = Api::start_trusting_loopback().await;
    let reader = api
        .key(NewKey::new("erin", "reader").scopes(["workspaces:read", "keys:read"]))
        .await;
    let resp = api
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/api/workspaces/1?x=1"),
                ("Authorization", &format!("Bearer {}", reader.token)),
            ],
        )
        .await;
    assert_identity(&resp, &reader, "erin", &["keys:read", "workspaces:read"]);
    let scopes = resp.header("x-keygate-scopes").expect("scopes");
    assert_eq!(scopes.split(' ').count(), 2, "space-separated: {scopes}");

    // X-API-Key works too; HEAD is covered by the rule as well.
    let resp = api
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "HEAD"),
                ("X-Original-URI", "/api/workspaces"),
                ("X-API-Key", &reader.token),
            ],
        )
        .await;
    assert_identity(&resp, &reader, "erin", &["keys:read", "workspaces:read"]);
    // alice's workspaces:* satisfies workspaces:read.
    let resp = api
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/api/workspaces/1"),
                ("Authorization", &format!("Bearer {}", api.alice.token)),
            ],
        )
        .await;
    assert_identity(&resp, &api.alice, "alice", &MANAGER_SCOPES);
}

#[tokio::test]
async fn forward_auth_nginx_denies_exactly_as_spec_3() {
    let api = Api::start_trusting_loopback().await;
    let other = api
        .key(NewKey::new("erin", "templates").scopes(["templates:use"]))
        .await;
    let token = Some(other.token.as_str());
    let resp = api.nginx("GET", "/api/workspaces/1", token).await;
    assert_insufficient_scope(&resp, "workspaces:read");
    for name in ["x-keygate-key-id", "x-keygate-owner"] {
        assert_eq!(resp.header(name), None, "no identity on a denial");
    }
    let resp = api.nginx("HEAD", "/api/workspaces/1", token).await;
    assert_insufficient_scope(&resp, "workspaces:read");
    assert_missing_token(&api.nginx("GET", "/api/workspaces/1", None).await);
    let resp = api
        .nginx("GET", "/api/workspaces/1", Some("kg_live_garbage"))
        .await;
    assert_invalid_token(&resp);
    // The same invalid_token bytes as the management routes.
    let admin_side = api.get("/v1/keys").bearer("kg_live_garbage").send().await;
    assert_eq!(resp.body, admin_side.body);
    // Unmatched by the GET-only rule: any valid key is enough; none is not.
    let resp = api.nginx("POST", "/api/workspaces/1", token).await;
    assert_identity(&resp, &other, "erin", &["templates:use"]);
    let resp = api.nginx("GET", "/elsewhere", token).await;
    assert_identity(&resp, &other, "erin", &["templates:use"]);
    assert_missing_token(&api.nginx("GET", "/elsewhere", None).await);
    // A revoked key is refused on the next request.
    api.post(&format!("/v1/keys/{}/revoke", other.id))
        .bearer(&api.admin.token)
        .send()
        .await
        .expect(200);
    assert_invalid_token(&api.nginx("GET", "/elsewhere", token).await);
}

#[tokio::test]
async fn forward_auth_public_rule_answers_with_empty_identity_headers() {
    let api = Api::start_trusting_loopback().await;
    let resp = api
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/public/x"),
            ],
        )
        .await;
    assert_public(&resp);
    // Any method; a key makes no difference on a public path.
    let resp = api
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "DELETE"),
                ("X-Original-URI", "/public/a/b?c=d"),
                ("Authorization", &format!("Bearer {}", api.alice.token)),
            ],
        )
        .await;
    assert_public(&resp);
}

#[tokio::test]
async fn forward_auth_traefik_headers_work_like_nginx_ones() {
    let api = Api::start_trusting_loopback().await;
    let reader = api
        .key(NewKey::new("erin", "reader").scopes(["workspaces:read"]))
        .await;
    let other = api
        .key(NewKey::new("erin", "other").scopes(["templates:use"]))
        .await;
    let resp = api
        .traefik("GET", "/api/workspaces/7?x=1", Some(&reader.token))
        .await;
    assert_identity(&resp, &reader, "erin", &WORKSPACE_SCOPES);
    let resp = api
        .traefik("GET", "/api/workspaces/7", Some(&other.token))
        .await;
    assert_insufficient_scope(&resp, "workspaces:read");
    let resp = api
        .traefik("POST", "/api/workspaces/7", Some(&other.token))
        .await;
    assert_identity(&resp, &other, "erin", &["templates:use"]);
    assert_missing_token(&api.traefik("GET", "/api/workspaces/7", None).await);
    assert_invalid_token(&api.traefik("GET", "/api/workspaces/7", Some("nope")).await);
    assert_public(&api.traefik("GET", "/public/x", None).await);
    let resp = api
        .traefik("GET", "/public/../api/workspaces/7", None)
        .await;
    assert_missing_token(&resp);
}

#[tokio::test]
async fn forward_auth_refuses_nginx_and_traefik_headers_that_disagree() {
    // SPEC §10a (the default `auto` mode): when the conventions disagree,
    // one of them is a client-sent header the proxy did not overwrite, so
    // neither is believed. (Before, nginx's headers simply won.)
    let api = Api::start_trusting_loopback().await;
    for headers in [
        [
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/public/x"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/api/workspaces/1"),
        ],
        [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/public/x"),
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/api/workspaces/1"),
        ],
    ] {
        let resp = api.forward("/v1/forward-auth", &headers).await;
        resp.expect(400);
        assert_eq!(resp.json()["error"], "invalid_request", "{resp}");
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp}");
    }
}

#[tokio::test]
async fn forward_auth_envoy_uses_the_request_method_and_path() {
    let api = Api::start_trusting_loopback().await;
    let reader = api
        .key(NewKey::new("erin", "reader").scopes(["workspaces:read"]))
        .await;
    let other = api
        .key(NewKey::new("erin", "other").scopes(["templates:use"]))
        .await;
    // POST does not match the GET/HEAD rule: any valid key.
    let resp = api
        .post("/v1/forward-auth/api/workspaces/1")
        .bearer(&other.token)
        .send()
        .await;
    assert_identity(&resp, &other, "erin", &["templates:use"]);
    assert_missing_token(&api.post("/v1/forward-auth/api/workspaces/1").send().await);
    // GET needs workspaces:read.
    let resp = api
        .get("/v1/forward-auth/api/workspaces/1?x=1")
        .bearer(&other.token)
        .send()
        .await;
    assert_insufficient_scope(&resp, "workspaces:read");
    let resp = api
        .get("/v1/forward-auth/api/workspaces/1")
        .bearer(&reader.token)
        .send()
        .await;
    assert_identity(&resp, &reader, "erin", &WORKSPACE_SCOPES);
    assert_missing_token(&api.get("/v1/forward-auth/api/workspaces/1").send().await);
    // Public without a key.
    assert_public(&api.get("/v1/forward-auth/public/a").send().await);
    assert_public(&api.req("PUT", "/v1/forward-auth/public/a/b").send().await);
    // The bare endpoint is the path "/": a key is needed.
    assert_missing_token(&api.get("/v1/forward-auth").send().await);
}

#[tokio::test]
async fn forward_auth_ignores_original_uri_headers_from_untrusted_peers() {
    // The library default: no trusted proxies.
    let api = Api::start().await;
    for headers in [
        [
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/public/x"),
        ],
        [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/public/x"),
        ],
    ] {
        let resp = api.forward("/v1/forward-auth", &headers).await;
        assert_missing_token(&resp);
    }
    // Nor are they believed the other way: the path is "/", no rule, any key.
    let other = api
        .key(NewKey::new("erin", "other").scopes(["templates:use"]))
        .await;
    let resp = api
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/api/workspaces/1"),
                ("Authorization", &format!("Bearer {}", other.token)),
            ],
        )
        .await;
    assert_identity(&resp, &other, "erin", &["templates:use"]);

    // Trusting loopback, the same request is honoured.
    let trusted = Api::start_trusting_loopback().await;
    let resp = trusted
        .forward(
            "/v1/forward-auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/public/x"),
            ],
        )
        .await;
    assert_public(&resp);
}

#[tokio::test]
async fn forward_auth_believes_x_forwarded_for_only_from_trusted_peers() {
    for trusting in [false, true] {
        let api = if trusting {
            Api::start_trusting_loopback().await
        } else {
            Api::start().await
        };
        let remote_only = api
            .key(NewKey::new("erin", "remote").ip_allow(["203.0.113.0/24"]))
            .await;
        let local_only = api
            .key(NewKey::new("erin", "local").ip_allow(["127.0.0.0/8"]))
            .await;
        let ask = |key: &Key| {
            let token = format!("Bearer {}", key.token);
            let api = &api;
            async move {
                api.forward(
                    "/v1/forward-auth/anything",
                    &[
                        ("X-Forwarded-For", "203.0.113.5"),
                        ("Authorization", token.as_str()),
                    ],
                )
                .await
            }
        };
        let remote = ask(&remote_only).await;
        let local = ask(&local_only).await;
        if trusting {
            assert_identity(&remote, &remote_only, "erin", &[]);
            assert_ip_not_allowed(&local);
        } else {
            assert_ip_not_allowed(&remote);
            assert_identity(&local, &local_only, "erin", &[]);
        }
    }
}

#[tokio::test]
async fn forward_auth_path_traversal_does_not_reach_a_public_rule() {
    let api = Api::start_trusting_loopback().await;
    let other = api
        .key(NewKey::new("erin", "other").scopes(["templates:use"]))
        .await;
    for uri in [
        "/public/../api/workspaces/1",
        "/public/%2e%2e/api/workspaces/1",
        "/public/./../api/workspaces/1",
    ] {
        let resp = api
            .forward(
                "/v1/forward-auth",
                &[("X-Original-Method", "GET"), ("X-Original-URI", uri)],
            )
            .await;
        assert_missing_token(&resp);
        // It is the protected path, so the rule's scope applies.
        let resp = api
            .forward(
                "/v1/forward-auth",
                &[
                    ("X-Original-Method", "GET"),
                    ("X-Original-URI", uri),
                    ("Authorization", &format!("Bearer {}", other.token)),
                ],
            )
            .await;
        assert_insufficient_scope(&resp, "workspaces:read");
    }
    // Envoy style: the path after the prefix is normalized the same way.
    for path in [
        "/v1/forward-auth/public/../api/workspaces/1",
        "/v1/forward-auth/public/%2e%2e/api/workspaces/1",
    ] {
        assert_missing_token(&api.get(path).send().await);
        let resp = api.get(path).bearer(&other.token).send().await;
        assert_insufficient_scope(&resp, "workspaces:read");
    }
    // Paths servers read differently are refused before any rule (SPEC
    // §10a; before, they needed a key and met only catch-all rules).
    for uri in ["/public/a%2f..%2f..%2fapi", "/public/%zz"] {
        let resp = api
            .forward(
                "/v1/forward-auth",
                &[("X-Original-Method", "GET"), ("X-Original-URI", uri)],
            )
            .await;
        resp.expect(400);
        assert_eq!(resp.json()["error"], "invalid_request", "{resp}");
    }
}

#[tokio::test]
async fn forward_auth_ignores_the_request_body() {
    let api = Api::start_trusting_loopback().await;
    let reader = api
        .key(NewKey::new("erin", "reader").scopes(["workspaces:read"]))
        .await;
    let resp = api
        .post("/v1/forward-auth")
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/api/workspaces/1")
        .bearer(&reader.token)
        .raw(r#"{"this is": "not read", "key": "kg_live_nope"}"#)
        .send()
        .await;
    assert_identity(&resp, &reader, "erin", &WORKSPACE_SCOPES);
    let resp = api
        .post("/v1/forward-auth/public/upload")
        .raw("{not json at all")
        .send()
        .await;
    assert_public(&resp);
    let resp = api
        .post("/v1/forward-auth/api/workspaces/1")
        .raw("some body")
        .send()
        .await;
    assert_missing_token(&resp);
}

/// Two rate limits, as the API answers them.
fn two_limits() -> Value {
    json!([
        {"name": "burst", "limit": 20, "period": "1s"},
        {"name": "hourly", "limit": 1000, "period": "1h", "shared": true},
    ])
}

#[tokio::test]
async fn rate_limits_are_created_shown_replaced_by_patch_and_copied_by_rotation() {
    let api = Api::start().await;
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "limited", "rate_limits": two_limits()}))
        .send()
        .await;
    resp.expect(201);
    let created = resp.json();
    assert_record(&created["api_key"]);
    assert_eq!(created["api_key"]["rate_limits"], two_limits(), "{resp}");
    let key = Key {
        token: created["key"].as_str().expect("token").to_owned(),
        id: created["api_key"]["id"].as_str().expect("id").to_owned(),
    };
    assert_eq!(api.record(&key.id).await["rate_limits"], two_limits());
    // A key created without them shows an empty list.
    let plain = api.record(&api.alice.id).await;
    assert_eq!(plain["rate_limits"], json!([]));

    let path = format!("/v1/keys/{}", key.id);
    let daily = json!([{"name": "daily", "limit": 5, "period": "1d"}]);
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"rate_limits": daily}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["rate_limits"], daily, "PATCH replaces the list");
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"name": "limited-2"}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["rate_limits"], daily, "left alone when absent");
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"rate_limits": []}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["rate_limits"], json!([]), "[] removes them");
    assert_eq!(api.record(&key.id).await["rate_limits"], json!([]));

    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"rate_limits": two_limits()}))
        .send()
        .await;
    resp.expect(200);
    let (new, record) = rotate(&api, &key, None).await;
    assert_eq!(record["rate_limits"], two_limits(), "rotation copies them");
    assert_eq!(api.record(&new.id).await["rate_limits"], two_limits());
}

#[tokio::test]
async fn bad_rate_limits_are_refused_naming_the_field_and_nothing_is_written() {
    let api = Api::start().await;
    let limit = |name: &str, limit: u64, period: &str| json!({"name": name, "limit": limit, "period": period});
    let nine: Vec<Value> = (0..9).map(|i| limit(&format!("l{i}"), 1, "1s")).collect();
    let cases = [
        (json!([limit("Burst", 1, "1s")]), "rate_limits[0].name"),
        (
            json!([limit("ok", 1, "1s"), limit("a b", 1, "1s")]),
            "rate_limits[1].name",
        ),
        (
            json!([limit(&"x".repeat(33), 1, "1s")]),
            "rate_limits[0].name",
        ),
        (json!(nine), "rate_limits"),
        (
            json!([limit("a", 1, "1s"), limit("a", 2, "1h")]),
            "rate_limits[1].name",
        ),
        (json!([limit("a", 1, "2d")]), "rate_limits[0].period"),
        (json!([limit("a", 1, "1m")]), "rate_limits[0].period"),
        (json!([limit("a", 0, "1s")]), "rate_limits[0].limit"),
        (
            json!([limit("a", 1_000_000_001, "1s")]),
            "rate_limits[0].limit",
        ),
        (
            json!([{"name": "a", "limit": 1, "period": "1s", "burst": 2}]),
            "rate_limits[0]",
        ),
        (json!({"name": "a"}), "rate_limits"),
    ];
    let before = api.ids_of("alice").await;
    let target = api.key(NewKey::new("alice", "target")).await;
    let target_before = api.record(&target.id).await;
    for (limits, field) in &cases {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.alice.token)
            .json(&json!({"name": "n", "rate_limits": limits}))
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some(field));
        let resp = api
            .req("PATCH", &format!("/v1/keys/{}", target.id))
            .bearer(&api.alice.token)
            .json(&json!({"rate_limits": limits}))
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some(field));
    }
    let mut after = api.ids_of("alice").await;
    assert!(after.remove(&target.id));
    assert_eq!(after, before, "nothing created");
    assert_eq!(
        api.record(&target.id).await,
        target_before,
        "nothing changed"
    );
}

#[tokio::test]
async fn a_rate_limited_caller_cannot_mint_or_set_looser_limits() {
    let api = Api::start().await;
    let caller = api
        .key(
            NewKey::new("alice", "limited-manager")
                .scopes(["keys:read", "keys:create", "keys:update"])
                .rate_limits(serde_json::from_value(two_limits()).expect("limits")),
        )
        .await;
    let before = api.ids_of("alice").await;
    let hourly = json!({"name": "hourly", "limit": 1000, "period": "1h"});
    for limits in [
        json!([]),
        json!([{"name": "burst", "limit": 20, "period": "1s"}]),
        json!([{"name": "other", "limit": 1, "period": "1s"}, hourly]),
        // A larger burst.
        json!([{"name": "burst", "limit": 21, "period": "2s"}, hourly]),
        // A smaller burst refilled faster: 100/1min is 6000/1h.
        json!([{"name": "burst", "limit": 20, "period": "1s"},
               {"name": "hourly", "limit": 100, "period": "1min"}]),
    ] {
        let resp = api
            .post("/v1/keys")
            .bearer(&caller.token)
            .json(&json!({"name": "child", "rate_limits": limits}))
            .send()
            .await;
        assert_error(&resp, 403, "forbidden", Some("rate_limits"));
    }
    let resp = api
        .post("/v1/keys")
        .bearer(&caller.token)
        .json(&json!({"name": "child"}))
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", Some("rate_limits"));
    assert_eq!(api.ids_of("alice").await, before, "nothing written");

    let tight = json!([
        {"name": "hourly", "limit": 500, "period": "1h"},
        {"name": "burst", "limit": 10, "period": "1s", "shared": true},
        {"name": "daily", "limit": 5000, "period": "1d"},
    ]);
    let resp = api
        .post("/v1/keys")
        .bearer(&caller.token)
        .json(&json!({"name": "child", "rate_limits": tight}))
        .send()
        .await;
    resp.expect(201);
    let child = resp.json()["api_key"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resp = api
        .req("PATCH", &format!("/v1/keys/{child}"))
        .bearer(&caller.token)
        .json(&json!({"rate_limits": [hourly, {"name": "burst", "limit": 40, "period": "2s"}]}))
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", Some("rate_limits"));
    assert_eq!(api.record(&child).await["rate_limits"], tight, "unchanged");
}

#[tokio::test]
async fn openapi_documents_rate_limits_and_their_bounds() {
    let doc = serde_json::to_value(keygate::admin::openapi()).expect("serialize");
    let schemas = &doc["components"]["schemas"];
    let limit = &schemas["RateLimit"];
    let props = &limit["properties"];
    assert_eq!(props["name"]["pattern"], "^[a-z0-9_-]{1,32}$", "{limit}");
    assert_eq!(props["limit"]["minimum"], 1, "{limit}");
    assert_eq!(props["limit"]["maximum"], 1_000_000_000, "{limit}");
    assert!(props["period"]["type"] == "string", "{limit}");
    let required: BTreeSet<&str> = limit["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["name", "limit", "period"]));
    for schema in ["ApiKey", "NewKey", "KeyUpdate"] {
        let field = &schemas[schema]["properties"]["rate_limits"];
        assert_eq!(field["maxItems"], 8, "{schema}: {field}");
        assert_eq!(
            field["items"]["$ref"], "#/components/schemas/RateLimit",
            "{schema}: {field}"
        );
    }
}

/// Monthly credits, as the API answers them.
fn monthly(remaining: u64, amount: u64) -> Value {
    json!({"remaining": remaining, "refill": {"amount": amount, "every": "month"}})
}

/// `POST /v1/keys/{id}/credits` with `body`, as `token`.
async fn adjust(api: &Api, token: &str, id: &str, body: Value) -> Resp {
    api.post(&format!("/v1/keys/{id}/credits"))
        .bearer(token)
        .json(&body)
        .send()
        .await
}

#[tokio::test]
async fn credits_are_created_shown_replaced_adjusted_and_continued_by_rotation() {
    let api = Api::start().await;
    let resp = api
        .post("/v1/keys")
        .bearer(&api.alice.token)
        .json(&json!({"name": "metered", "credits": monthly(5000, 5000)}))
        .send()
        .await;
    resp.expect(201);
    let created = resp.json();
    assert_record(&created["api_key"]);
    assert_eq!(created["api_key"]["credits"], monthly(5000, 5000), "{resp}");
    let key = Key {
        token: created["key"].as_str().expect("token").to_owned(),
        id: created["api_key"]["id"].as_str().expect("id").to_owned(),
    };
    assert_eq!(api.record(&key.id).await["credits"], monthly(5000, 5000));
    // A key created without them is unlimited.
    assert_eq!(api.record(&api.alice.id).await["credits"], Value::Null);

    let path = format!("/v1/keys/{}", key.id);
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"name": "metered-2"}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(
        resp.json()["credits"],
        monthly(5000, 5000),
        "left alone when absent"
    );
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"credits": {"remaining": 10}}))
        .send()
        .await;
    resp.expect(200);
    let plain = json!({"remaining": 10, "refill": null});
    assert_eq!(resp.json()["credits"], plain, "PATCH replaces them");

    let resp = adjust(&api, &api.alice.token, &key.id, json!({"add": 5})).await;
    resp.expect(200);
    assert_record(&resp.json());
    assert_eq!(resp.json()["credits"]["remaining"], 15, "{resp}");
    let resp = adjust(&api, &api.alice.token, &key.id, json!({"set": 3})).await;
    resp.expect(200);
    assert_eq!(
        resp.json()["credits"],
        json!({"remaining": 3, "refill": null})
    );
    assert_eq!(api.record(&key.id).await["credits"]["remaining"], 3);

    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"credits": null}))
        .send()
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["credits"], Value::Null, "null removes them");
    let resp = adjust(&api, &api.alice.token, &key.id, json!({"add": 1})).await;
    assert_error(&resp, 400, "bad_request", Some("credits"));
    assert_eq!(
        api.record(&key.id).await["credits"],
        Value::Null,
        "nothing written"
    );
    let resp = adjust(&api, &api.alice.token, &key.id, json!({"set": 7})).await;
    resp.expect(200);
    assert_eq!(
        resp.json()["credits"],
        json!({"remaining": 7, "refill": null})
    );

    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"credits": monthly(7, 100)}))
        .send()
        .await;
    resp.expect(200);
    let (new, record) = rotate(&api, &key, Some(json!({"grace": "1h"}))).await;
    assert_eq!(
        record["credits"],
        monthly(7, 100),
        "rotation continues them"
    );
    assert_eq!(api.record(&new.id).await["credits"], monthly(7, 100));
    assert_eq!(
        api.record(&key.id).await["credits"],
        json!({"remaining": 0, "refill": null}),
        "the old key keeps no copy"
    );
    let resp = adjust(&api, &api.alice.token, &key.id, json!({"add": 1})).await;
    assert_error(&resp, 409, "conflict", Some("id"));
    let resp = api
        .req("PATCH", &path)
        .bearer(&api.alice.token)
        .json(&json!({"credits": {"remaining": 1}}))
        .send()
        .await;
    assert_error(&resp, 409, "conflict", Some("id"));
}

#[tokio::test]
async fn bad_credits_are_refused_naming_the_field_and_nothing_is_written() {
    let api = Api::start().await;
    let refill = |amount: Value, every: Value| json!({"remaining": 1, "refill": {"amount": amount, "every": every}});
    let cases = [
        (json!(5), "credits"),
        (json!([]), "credits"),
        (json!({"remaining": 1, "left": 2}), "credits"),
        (json!({}), "credits.remaining"),
        (json!({"remaining": -1}), "credits.remaining"),
        (
            json!({"remaining": 1_000_000_000_001u64}),
            "credits.remaining",
        ),
        (json!({"remaining": "5"}), "credits.remaining"),
        (
            json!({"remaining": 1, "refill": "monthly"}),
            "credits.refill",
        ),
        (refill(json!(0), json!("day")), "credits.refill.amount"),
        (
            refill(json!(1_000_000_000_001u64), json!("day")),
            "credits.refill.amount",
        ),
        (refill(json!(5), json!("hour")), "credits.refill.every"),
        (refill(json!(5), json!(null)), "credits.refill.every"),
    ];
    let before = api.ids_of("alice").await;
    let target = api
        .key(NewKey::new("alice", "target").credits(keygate::Credits::new(9).unwrap()))
        .await;
    let target_before = api.record(&target.id).await;
    for (credits, field) in &cases {
        let resp = api
            .post("/v1/keys")
            .bearer(&api.alice.token)
            .json(&json!({"name": "n", "credits": credits}))
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some(field));
        let resp = api
            .req("PATCH", &format!("/v1/keys/{}", target.id))
            .bearer(&api.alice.token)
            .json(&json!({"credits": credits}))
            .send()
            .await;
        assert_error(&resp, 400, "bad_request", Some(field));
    }
    for (body, field) in [
        (json!({}), Some("credits")),
        (json!({"add": 1, "set": 2}), Some("credits")),
        (json!({"add": 1, "by": 2}), Some("credits")),
        (json!({"add": -1}), Some("add")),
        (json!({"add": 1.5}), Some("add")),
        (json!({"set": 1_000_000_000_001u64}), Some("set")),
        (json!({"set": "5"}), Some("set")),
        (json!({"add": 1_000_000_000_000u64}), Some("add")),
        (json!([{"add": 1}]), None),
    ] {
        let resp = adjust(&api, &api.alice.token, &target.id, body.clone()).await;
        assert_error(&resp, 400, "bad_request", field);
    }
    let mut after = api.ids_of("alice").await;
    assert!(after.remove(&target.id));
    assert_eq!(after, before, "nothing created");
    assert_eq!(
        api.record(&target.id).await,
        target_before,
        "nothing changed"
    );
}

#[tokio::test]
async fn adjusting_credits_needs_keys_update_and_stays_within_the_owner() {
    let api = Api::start().await;
    let target = api
        .key(NewKey::new("alice", "target").credits(keygate::Credits::new(9).unwrap()))
        .await;
    let resp = adjust(&api, &api.alice_reader.token, &target.id, json!({"add": 1})).await;
    assert_insufficient_scope(&resp, "keys:update");
    let resp = adjust(&api, &api.bob.token, &target.id, json!({"add": 1})).await;
    assert_error(&resp, 404, "not_found", None);
    let resp = adjust(
        &api,
        &api.alice.token,
        "0000000000000000",
        json!({"add": 1}),
    )
    .await;
    assert_error(&resp, 404, "not_found", None);
    assert_eq!(api.record(&target.id).await["credits"]["remaining"], 9);
    let resp = adjust(&api, &api.admin.token, &target.id, json!({"add": 1})).await;
    resp.expect(200);
    assert_eq!(
        resp.json()["credits"]["remaining"],
        10,
        "admin:keys reaches every owner"
    );
    let resp = api
        .post(&format!("/v1/keys/{}/credits", target.id))
        .send()
        .await;
    resp.expect(401);
}

#[tokio::test]
async fn a_caller_with_credits_cannot_mint_or_raise_credits_beyond_its_own() {
    let api = Api::start().await;
    let caller = api
        .key(
            NewKey::new("alice", "metered-manager")
                .scopes(["keys:read", "keys:create", "keys:update"])
                .credits(serde_json::from_value(monthly(100, 100)).expect("credits")),
        )
        .await;
    let before = api.ids_of("alice").await;
    for credits in [
        Value::Null,
        json!({"remaining": 101}),
        monthly(10, 101),
        json!({"remaining": 10, "refill": {"amount": 10, "every": "day"}}),
    ] {
        let resp = api
            .post("/v1/keys")
            .bearer(&caller.token)
            .json(&json!({"name": "child", "credits": credits}))
            .send()
            .await;
        assert_error(&resp, 403, "forbidden", Some("credits"));
    }
    let resp = api
        .post("/v1/keys")
        .bearer(&caller.token)
        .json(&json!({"name": "child"}))
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", Some("credits"));
    assert_eq!(api.ids_of("alice").await, before, "nothing written");

    let resp = api
        .post("/v1/keys")
        .bearer(&caller.token)
        .json(&json!({"name": "child", "credits": monthly(50, 50)}))
        .send()
        .await;
    resp.expect(201);
    let child = resp.json()["api_key"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for body in [json!({"set": 101}), json!({"add": 51})] {
        let resp = adjust(&api, &caller.token, &child, body).await;
        assert_error(&resp, 403, "forbidden", Some("credits"));
    }
    let resp = api
        .req("PATCH", &format!("/v1/keys/{child}"))
        .bearer(&caller.token)
        .json(&json!({"credits": null}))
        .send()
        .await;
    assert_error(&resp, 403, "forbidden", Some("credits"));
    assert_eq!(
        api.record(&child).await["credits"],
        monthly(50, 50),
        "unchanged"
    );
    let resp = adjust(&api, &caller.token, &child, json!({"add": 50})).await;
    resp.expect(200);
    assert_eq!(resp.json()["credits"]["remaining"], 100);
    // The operator (admin:keys) is not bound by a ceiling of credits.
    let resp = adjust(&api, &api.admin.token, &child, json!({"set": 1_000_000})).await;
    resp.expect(200);
}

#[tokio::test]
async fn openapi_documents_credits_and_their_bounds() {
    let doc = serde_json::to_value(keygate::admin::openapi()).expect("serialize");
    let schemas = &doc["components"]["schemas"];
    let credits = &schemas["Credits"];
    assert_eq!(
        credits["properties"]["remaining"]["minimum"], 0,
        "{credits}"
    );
    assert_eq!(
        credits["properties"]["remaining"]["maximum"], 1_000_000_000_000u64,
        "{credits}"
    );
    let refill = &schemas["Refill"];
    assert_eq!(refill["properties"]["amount"]["minimum"], 1, "{refill}");
    assert_eq!(
        refill["properties"]["amount"]["maximum"], 1_000_000_000_000u64,
        "{refill}"
    );
    let every = serde_json::to_string(&schemas["RefillEvery"]).expect("json");
    for name in ["day", "week", "month"] {
        assert!(every.contains(&format!("\"{name}\"")), "{every}");
    }
    for schema in ["ApiKey", "NewKey", "KeyUpdate"] {
        let field = serde_json::to_string(&schemas[schema]["properties"]["credits"]).expect("json");
        assert!(
            field.contains("#/components/schemas/Credits"),
            "{schema}: {field}"
        );
    }
    let body = &doc["paths"]["/v1/keys/{id}/credits"]["post"];
    let reference = &body["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(reference, "#/components/schemas/CreditsBody", "{body}");
    // A `oneOf` of `{"add"}` and `{"set"}` (exactly one of them).
    let variants = schemas["CreditsBody"]["oneOf"].as_array().expect("oneOf");
    for op in ["add", "set"] {
        let props = &variants
            .iter()
            .find(|v| v["properties"].get(op).is_some())
            .unwrap_or_else(|| panic!("a variant with {op}: {variants:?}"))["properties"];
        assert_eq!(props[op]["minimum"], 0, "{props}");
        assert_eq!(props[op]["maximum"], 1_000_000_000_000u64, "{props}");
    }
    assert!(body["responses"]["200"].is_object(), "{body}");
}

/// What schemathesis (tests/schemathesis/run.sh) found wrong in the
/// document: audit changes are any JSON value, not objects; a credits body
/// is exactly one of `add` and `set`; revoke and rotate bodies are
/// optional; the audit `action` filter is one of the actions.
#[tokio::test]
async fn openapi_document_states_what_the_api_accepts_and_answers() {
    let doc = serde_json::to_value(keygate::admin::openapi()).expect("serialize");
    let schemas = &doc["components"]["schemas"];

    let change = &schemas["FieldChange"]["properties"];
    for side in ["from", "to"] {
        assert!(
            change[side].get("type").is_none(),
            "FieldChange.{side} is any JSON value: {}",
            change[side]
        );
    }

    let credits = schemas["CreditsBody"]["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("CreditsBody is a oneOf: {}", schemas["CreditsBody"]));
    let required: BTreeSet<String> = credits
        .iter()
        .map(|variant| {
            let names = variant["required"].as_array().expect("required");
            assert_eq!(names.len(), 1, "{variant}");
            names[0].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(required, BTreeSet::from(["add".into(), "set".into()]));

    for path in ["/v1/keys/{id}/revoke", "/v1/keys/{id}/rotate"] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert_ne!(
            body["required"],
            json!(true),
            "{path}: the body is optional"
        );
    }

    let action = doc["paths"]["/v1/audit"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "action"))
        .expect("an action parameter");
    let reference = action["schema"]["$ref"]
        .as_str()
        .or_else(|| action["schema"]["oneOf"][0]["$ref"].as_str())
        .unwrap_or_else(|| panic!("action names its enum: {action}"));
    let name = reference.rsplit('/').next().unwrap();
    let listed: BTreeSet<&str> = schemas[name]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is an enum: {}", schemas[name]))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for action in [
        "key.create",
        "key.update",
        "key.revoke",
        "key.rotate",
        "key.delete",
        "key.credits",
    ] {
        assert!(listed.contains(action), "{action} in {listed:?}");
    }
}
