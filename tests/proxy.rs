//! The authenticating reverse proxy over real sockets (SPEC §3, §8, §10): a
//! hyper upstream on 127.0.0.1 that echoes what it received (method, URI,
//! headers, body length) as JSON, `keygate::gateway::proxy::Proxy` in front
//! of it, and hyper clients. Nothing is mocked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keygate::gateway::proxy::{Proxy, ProxyError};
use keygate::gateway::{Gateway, Rules};
use keygate::{CredentialSource, Keygate, KeygateBuilder, MemoryStore, NewKey, Pepper};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const MB: usize = 1 << 20;
/// Fails a test instead of letting it hang (a buffering proxy deadlocks).
const TIMEOUT: Duration = Duration::from_secs(20);

const RULES: &str = r#"
    [[rule]]
    path = "/public/**"
    public = true

    [[rule]]
    path = "/admin/**"
    require = "admin:write"

    [[rule]]
    path = "/api/**"
    require = "items:write or workspaces:read"
"#;

// ---------------------------------------------------------------------------
// The upstream: echoes what it received
// ---------------------------------------------------------------------------

#[derive(Default)]
struct UpstreamState {
    /// Requests received.
    hits: AtomicUsize,
    /// Signalled when a request body's first bytes arrive.
    body_started: Notify,
    /// Signalled by the test to let `/api/download` send the rest.
    release_download: Notify,
    /// Signalled when `/api/slow` arrives (it answers 1.5 s later).
    slow_started: Notify,
}

struct Upstream {
    addr: SocketAddr,
    state: Arc<UpstreamState>,
}

impl Upstream {
    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

type UpstreamBody = BoxBody<Bytes, Infallible>;

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(UpstreamState::default());
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| echo(state.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, state }
}

/// A stream over an mpsc receiver, for `StreamBody`.
fn channel_stream<T: Send + 'static>(
    receiver: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

async fn echo(
    state: Arc<UpstreamState>,
    request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    match request.uri().path() {
        "/api/slow" => {
            state.slow_started.notify_one();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        "/api/download" => return Ok(download(state)),
        _ => {}
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        let values = headers
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(String::from_utf8_lossy(value.as_bytes()).into());
        }
    }
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let version = format!("{:?}", request.version());
    let mut body = request.into_body();
    let mut body_len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            if body_len == 0 && !data.is_empty() {
                state.body_started.notify_one();
            }
            body_len += data.len();
        }
    }
    let seen = json!({
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_len": body_len,
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "yes")
        // Hop-by-hop headers the proxy must not pass back.
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authenticate", "Basic")
        .body(Full::new(Bytes::from(seen.to_string())).boxed())
        .unwrap())
}

/// 50 MB: the first MB at once, the rest when the test says so.
fn download(state: Arc<UpstreamState>) -> Response<UpstreamBody> {
    let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![7u8; MB]);
        if sender.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
            return;
        }
        state.release_download.notified().await;
        for _ in 1..50 {
            if sender.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
                return;
            }
        }
    });
    Response::new(StreamBody::new(channel_stream(receiver)).boxed())
}

// ---------------------------------------------------------------------------
// The proxy under test
// ---------------------------------------------------------------------------

struct Harness {
    proxy: SocketAddr,
    upstream: Upstream,
    keygate: Keygate,
    shutdown: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
    keys: usize,
}

fn builder() -> KeygateBuilder {
    Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .usage_flush_interval(None)
}

async fn serve(
    proxy: Proxy,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, signal) = oneshot::channel::<()>();
    let served = tokio::spawn(proxy.serve(listener, async move {
        let _ = signal.await;
    }));
    (addr, shutdown, served)
}

/// An upstream and a proxy in front of it, with `RULES`.
async fn start(configure: impl FnOnce(KeygateBuilder) -> KeygateBuilder) -> Harness {
    start_with(configure, "").await
}

/// As [`start`], the upstream URL ending with `base_path`.
async fn start_with(
    configure: impl FnOnce(KeygateBuilder) -> KeygateBuilder,
    base_path: &str,
) -> Harness {
    let upstream = upstream().await;
    let keygate = configure(builder()).build().unwrap();
    let gateway = Gateway::new(keygate.clone(), Rules::parse_toml(RULES).unwrap());
    let proxy = Proxy::new(gateway, &format!("http://{}{base_path}", upstream.addr)).unwrap();
    let (proxy, shutdown, served) = serve(proxy).await;
    Harness {
        proxy,
        upstream,
        keygate,
        shutdown: Some(shutdown),
        served,
        keys: 0,
    }
}

impl Harness {
    /// A new key of owner `alice` with `scopes`: (token, key id, scopes text).
    async fn key(&mut self, scopes: &[&str], ip_allow: &[&str]) -> (String, String, String) {
        self.keys += 1;
        let created = self
            .keygate
            .keys()
            .create(
                NewKey::new("alice", format!("key-{}", self.keys))
                    .scopes(scopes.iter().copied())
                    .ip_allow(ip_allow.iter().copied()),
            )
            .await
            .unwrap();
        (
            created.token.expose().to_owned(),
            created.key.id.to_string(),
            created.key.scopes.to_string(),
        )
    }

    async fn token(&mut self, scopes: &[&str]) -> String {
        self.key(scopes, &[]).await.0
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// Sends one request on a fresh HTTP/1.1 connection.
async fn send<B>(addr: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender.send_request(request).await.unwrap()
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    async fn read(response: Response<Incoming>) -> Reply {
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let value = values.next().map(|v| v.to_str().unwrap());
        assert!(values.next().is_none(), "{name} repeated");
        value
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// What the upstream saw (the echo).
    fn seen(&self) -> Seen {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        Seen(self.json())
    }
}

async fn call(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let response = timeout(TIMEOUT, send(addr, request)).await.unwrap();
    Reply::read(response).await
}

/// What the upstream received.
struct Seen(Value);

impl Seen {
    fn uri(&self) -> &str {
        self.0["uri"].as_str().unwrap()
    }

    fn method(&self) -> &str {
        self.0["method"].as_str().unwrap()
    }

    fn body_len(&self) -> u64 {
        self.0["body_len"].as_u64().unwrap()
    }

    /// Every value of header `name` (lowercase).
    fn all(&self, name: &str) -> Vec<&str> {
        match &self.0["headers"][name] {
            Value::Array(values) => values.iter().map(|v| v.as_str().unwrap()).collect(),
            _ => Vec::new(),
        }
    }

    /// The only value of header `name`.
    fn header(&self, name: &str) -> Option<&str> {
        let values = self.all(name);
        assert!(values.len() <= 1, "{name} repeated: {values:?}");
        values.first().copied()
    }

    fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    /// No header named like a keygate credential or a hop-by-hop header.
    fn assert_no_hop_by_hop(&self) {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "x-secret-hop",
        ] {
            assert!(!self.has(name), "{name} was forwarded: {}", self.0);
        }
    }
}

fn request(method: &str, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "proxy.test")
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// `GET uri` with `Authorization: Bearer <token>` and no body.
fn get_bearer(uri: &str, token: &str) -> Request<Full<Bytes>> {
    request("GET", uri)
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap()
}

// ---------------------------------------------------------------------------
// Credentials removed, identity set
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bearer_token_is_removed_and_identity_headers_replace_forged_ones() {
    let mut h = start(|b| b).await;
    let (token, id, scopes) = h.key(&["items:write", "workspaces:read"], &[]).await;
    let reply = call(
        h.proxy,
        request("PUT", "/api/items/42?x=1&y=two%20words")
            .header("authorization", format!("bEaReR {token}"))
            .header("x-keygate-owner", "mallory")
            .header("X-Keygate-Key-Id", "forged")
            .header("x-keygate-scopes", "*:*")
            .header("x-keygate-environment", "test")
            .header("x-keygate-admin", "true")
            .header("connection", "x-secret-hop")
            .header("x-secret-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic eDp5")
            .header("te", "trailers")
            .header("x-custom", "kept")
            .body(Full::from("hello"))
            .unwrap(),
    )
    .await;
    let seen = reply.seen();
    assert_eq!(seen.method(), "PUT");
    assert_eq!(seen.uri(), "/api/items/42?x=1&y=two%20words");
    assert_eq!(seen.body_len(), 5);
    assert!(!seen.has("authorization"), "{}", seen.0);
    assert_eq!(seen.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(seen.header("x-keygate-owner"), Some("alice"));
    assert_eq!(seen.header("x-keygate-scopes"), Some(scopes.as_str()));
    assert_eq!(seen.header("x-keygate-environment"), Some("live"));
    assert!(!seen.has("x-keygate-admin"));
    seen.assert_no_hop_by_hop();
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(
        seen.header("host"),
        Some(h.upstream.addr.to_string().as_str())
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("proxy.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.0["version"], "HTTP/1.1");

    // The response: the upstream's, minus its hop-by-hop headers.
    assert_eq!(reply.header("x-upstream"), Some("yes"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    for name in ["x-upstream-hop", "keep-alive", "proxy-authenticate"] {
        assert!(reply.header(name).is_none(), "{name} came back");
    }
    assert!(
        !reply
            .header("connection")
            .unwrap_or("")
            .contains("x-upstream-hop"),
        "the upstream's Connection header came back"
    );
    assert_eq!(h.upstream.hits(), 1);
}

#[tokio::test]
async fn api_key_header_is_removed_and_basic_authorization_is_kept() {
    let mut h = start(|b| b).await;
    let (token, id, _) = h.key(&["workspaces:read"], &[]).await;
    let seen = call(
        h.proxy,
        request("GET", "/api/workspaces")
            .header("authorization", "Basic dXNlcjpwYXNz")
            .header("X-API-Key", &token)
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert!(!seen.has("x-api-key"), "{}", seen.0);
    assert_eq!(seen.all("authorization"), ["Basic dXNlcjpwYXNz"]);
    assert_eq!(seen.header("x-keygate-key-id"), Some(id.as_str()));
    assert!(
        !seen.0.to_string().contains(&token),
        "the token reached the upstream"
    );
}

fn all_sources(builder: KeygateBuilder) -> KeygateBuilder {
    let mut sources = CredentialSource::defaults();
    sources.push(CredentialSource::Cookie("kg".into()));
    sources.push(CredentialSource::Query("api_key".into()));
    builder.credential_sources(sources)
}

#[tokio::test]
async fn opt_in_cookie_is_removed_and_other_cookies_are_kept() {
    let mut h = start(all_sources).await;
    let (token, id, _) = h.key(&["workspaces:read"], &[]).await;
    let seen = call(
        h.proxy,
        request("GET", "/api/workspaces")
            .header("cookie", format!("theme=dark; kg={token}; lang=fr"))
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert_eq!(seen.all("cookie"), ["theme=dark; lang=fr"]);
    assert_eq!(seen.header("x-keygate-key-id"), Some(id.as_str()));
    assert!(!seen.0.to_string().contains(&token));

    // Only the credential cookie: no Cookie header at all.
    let seen = call(
        h.proxy,
        request("GET", "/api/workspaces")
            .header("cookie", format!("kg={token}"))
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert!(!seen.has("cookie"), "{}", seen.0);
}

#[tokio::test]
async fn opt_in_query_parameter_is_removed_and_other_parameters_are_kept() {
    let mut h = start(all_sources).await;
    let (token, id, _) = h.key(&["workspaces:read"], &[]).await;
    let seen = call(
        h.proxy,
        request(
            "GET",
            &format!("/api/workspaces?page=2&api_key={token}&sort=name"),
        )
        .body(empty())
        .unwrap(),
    )
    .await
    .seen();
    assert_eq!(seen.uri(), "/api/workspaces?page=2&sort=name");
    assert_eq!(seen.header("x-keygate-key-id"), Some(id.as_str()));

    let seen = call(
        h.proxy,
        request("GET", &format!("/api/workspaces?api_key={token}"))
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert_eq!(seen.uri(), "/api/workspaces");
    assert!(!seen.0.to_string().contains(&token));
}

// ---------------------------------------------------------------------------
// Denials
// ---------------------------------------------------------------------------

#[tokio::test]
async fn denials_answer_per_spec_and_never_reach_the_upstream() {
    let mut h = start(|b| b).await;
    let token = h.token(&["items:write"]).await;

    let missing = call(h.proxy, request("GET", "/api/items").body(empty()).unwrap()).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="keygate""#)
    );
    assert_eq!(missing.header("cache-control"), Some("no-store"));
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(missing.json()["error"], "missing_token");

    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 10;
    forged[last] = if forged[last] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [forged.as_str(), "kg_live_nope", "not-a-token"] {
        let invalid = call(
            h.proxy,
            request("POST", "/api/items")
                .header("authorization", format!("Bearer {bad}"))
                .body(Full::from("payload"))
                .unwrap(),
        )
        .await;
        assert_eq!(invalid.status, 401, "{bad}");
        assert_eq!(
            invalid.header("www-authenticate"),
            Some(r#"Bearer realm="keygate", error="invalid_token""#)
        );
        assert_eq!(invalid.json()["error"], "invalid_token");
    }

    let ambiguous = call(
        h.proxy,
        request("GET", "/api/items")
            .header("authorization", format!("Bearer {token}"))
            .header("x-api-key", &token)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(ambiguous.status, 400);
    assert_eq!(ambiguous.json()["error"], "invalid_request");

    let scope = call(
        h.proxy,
        request("DELETE", "/admin/users/1")
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(scope.status, 403);
    assert_eq!(
        scope.header("www-authenticate"),
        Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="admin:write""#)
    );
    assert_eq!(scope.header("cache-control"), Some("no-store"));
    assert_eq!(scope.json()["error"], "insufficient_scope");
    assert_eq!(scope.json()["required"], "admin:write");

    assert_eq!(
        h.upstream.hits(),
        0,
        "a denied request reached the upstream"
    );
}

#[tokio::test]
async fn a_denied_request_body_is_not_read() {
    let h = start(|b| b).await;
    // `Expect: 100-continue`: the client waits for a go-ahead before sending
    // its megabyte. A proxy reading the body would send `100 Continue`.
    let mut stream = TcpStream::connect(h.proxy).await.unwrap();
    stream
        .write_all(
            b"POST /api/items HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 1048576\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    timeout(TIMEOUT, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    assert_eq!(h.upstream.hits(), 0);
}

#[tokio::test]
async fn a_chunked_body_with_a_stale_content_length_is_forwarded_chunked() {
    let h = start(|b| b).await;
    // Both framings: hyper decodes the chunked body (5 bytes); the stale
    // `Content-Length: 3` must not reach the upstream with it.
    let mut stream = TcpStream::connect(h.proxy).await.unwrap();
    stream
        .write_all(
            b"POST /public/upload HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\
              Content-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    timeout(TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    let seen = Seen(serde_json::from_str(body).unwrap());
    assert_eq!(seen.body_len(), 5);
    assert!(!seen.has("content-length"), "{}", seen.0);
}

#[tokio::test]
async fn a_chunked_response_with_a_stale_content_length_is_passed_back_chunked() {
    // A raw upstream answering with both framings: the body is the chunked
    // one (5 bytes); passing `Content-Length: 3` on would cut it short.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\
                  Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
            .await
            .unwrap();
    });
    let gateway = Gateway::new(
        builder().build().unwrap(),
        Rules::parse_toml(RULES).unwrap(),
    );
    let proxy = Proxy::new(gateway, &format!("http://{upstream}")).unwrap();
    let (addr, _shutdown, _served) = serve(proxy).await;
    let reply = call(addr, request("GET", "/public/file").body(empty()).unwrap()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hello");
    assert_ne!(reply.header("content-length"), Some("3"));
}

// ---------------------------------------------------------------------------
// Public rules
// ---------------------------------------------------------------------------

#[tokio::test]
async fn public_route_is_forwarded_without_a_key_with_empty_identity_headers() {
    let h = start(|b| b).await;
    let seen = call(
        h.proxy,
        request("GET", "/public/docs?v=1")
            .header("x-keygate-owner", "mallory")
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert_eq!(seen.uri(), "/public/docs?v=1");
    for name in [
        "x-keygate-key-id",
        "x-keygate-owner",
        "x-keygate-scopes",
        "x-keygate-environment",
    ] {
        assert_eq!(seen.header(name), Some(""), "{name}: {}", seen.0);
    }
}

/// Choice: a credential sent to a public route is stripped all the same —
/// the upstream must never see a keygate token, even one nobody checked
/// (here two of them, which a protected route would refuse as ambiguous).
#[tokio::test]
async fn credentials_sent_to_a_public_route_are_stripped_anyway() {
    let mut h = start(|b| b).await;
    let token = h.token(&["items:write"]).await;
    let seen = call(
        h.proxy,
        request("GET", "/public/docs")
            .header("authorization", format!("Bearer {token}"))
            .header("x-api-key", &token)
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert!(!seen.has("authorization"));
    assert!(!seen.has("x-api-key"));
    assert_eq!(seen.header("x-keygate-key-id"), Some(""));
    assert!(!seen.0.to_string().contains(&token));
}

// ---------------------------------------------------------------------------
// Client address and X-Forwarded-*
// ---------------------------------------------------------------------------

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_replaced_by_the_peer() {
    let mut h = start(|b| b).await;
    let token = h.token(&["workspaces:read"]).await;
    let seen = call(
        h.proxy,
        request("GET", "/api/workspaces")
            .header("authorization", format!("Bearer {token}"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.test")
            .header("forwarded", "for=203.0.113.7")
            .header("x-real-ip", "203.0.113.7")
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("proxy.test"));
    assert!(!seen.has("forwarded"));
    assert!(!seen.has("x-real-ip"));

    // The client address is the peer: a key allowed only from 203.0.113.0/24
    // is refused whatever X-Forwarded-For says.
    let (limited, _, _) = h.key(&["workspaces:read"], &["203.0.113.0/24"]).await;
    let refused = call(
        h.proxy,
        request("GET", "/api/workspaces")
            .header("authorization", format!("Bearer {limited}"))
            .header("x-forwarded-for", "203.0.113.7")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "ip_not_allowed");
    assert_eq!(h.upstream.hits(), 1);
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_peer_is_kept_and_the_peer_appended() {
    let mut h = start(|b| b.trusted_proxies(["127.0.0.0/8".parse().unwrap()])).await;
    let (limited, _, _) = h.key(&["workspaces:read"], &["203.0.113.0/24"]).await;
    let seen = call(
        h.proxy,
        request("GET", "/api/workspaces")
            .header("authorization", format!("Bearer {limited}"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
            .header("x-forwarded-proto", "https")
            .body(empty())
            .unwrap(),
    )
    .await
    .seen();
    // The client (nearest untrusted hop) is 203.0.113.7: the key is allowed.
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("198.51.100.1, 203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("https"),
        "a trusted proxy's"
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("proxy.test"));
}

// ---------------------------------------------------------------------------
// Upstream URL, errors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn upstream_base_path_is_joined_with_the_request_path() {
    let mut h = start_with(|b| b, "/base/").await;
    let token = h.token(&["workspaces:read"]).await;
    let seen = call(h.proxy, get_bearer("/api/workspaces?q=1", &token))
        .await
        .seen();
    assert_eq!(seen.uri(), "/base/api/workspaces?q=1");
}

#[tokio::test]
async fn https_and_malformed_upstreams_are_refused() {
    let gateway = Gateway::new(builder().build().unwrap(), Rules::parse_toml("").unwrap());
    let https = Proxy::new(gateway.clone(), "https://api.internal").unwrap_err();
    assert!(matches!(https, ProxyError::Https));
    assert!(https.to_string().contains("https"), "{https}");
    for bad in [
        "api.internal:80",
        "/api",
        "http://user:pw@api.internal",
        "ws://x",
    ] {
        let error = Proxy::new(gateway.clone(), bad).unwrap_err();
        assert!(!error.to_string().contains("pw"), "{error}");
    }
    assert!(Proxy::new(gateway, "http://api.internal:8080/v1").is_ok());
}

#[tokio::test]
async fn unreachable_upstream_is_a_502() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let keygate = builder().build().unwrap();
    let created = keygate
        .keys()
        .create(NewKey::new("alice", "ci").scopes(["workspaces:read"]))
        .await
        .unwrap();
    let gateway = Gateway::new(keygate, Rules::parse_toml(RULES).unwrap());
    let proxy = Proxy::new(gateway, &format!("http://{closed}")).unwrap();
    let (addr, _shutdown, _served) = serve(proxy).await;

    let reply = call(addr, get_bearer("/api/workspaces", created.token.expose())).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        reply.body,
        r#"{"error":"bad_gateway","message":"The upstream service is unreachable."}"#
    );

    // Denials do not need the upstream.
    let missing = call(
        addr,
        request("GET", "/api/workspaces").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(missing.status, 401);
}

#[tokio::test]
async fn http2_clients_are_forwarded_over_http1() {
    let mut h = start(|b| b).await;
    let (token, id, _) = h.key(&["workspaces:read"], &[]).await;
    let stream = TcpStream::connect(h.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("http://proxy.test/api/workspaces?x=1")
                .header("authorization", format!("Bearer {token}"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let seen = Reply::read(response).await.seen();
    assert_eq!(seen.0["version"], "HTTP/1.1");
    assert_eq!(seen.uri(), "/api/workspaces?x=1");
    assert_eq!(seen.header("x-forwarded-host"), Some("proxy.test"));
    assert_eq!(seen.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(seen.all("cookie"), ["a=1; b=2"], "joined into one header");
    assert!(!seen.has("authorization"));
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mb_upload_is_streamed_not_buffered() {
    let mut h = start(|b| b).await;
    let token = h.token(&["items:write"]).await;
    let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let upload = request("POST", "/api/upload")
        .header("authorization", format!("Bearer {token}"))
        .body(StreamBody::new(channel_stream(receiver)))
        .unwrap();
    let proxy = h.proxy;
    let response = tokio::spawn(async move { Reply::read(send(proxy, upload).await).await });

    let chunk = Bytes::from(vec![b'u'; MB]);
    sender.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    // Only the first megabyte is sent: a proxy that buffers request bodies
    // never passes it on and this times out.
    timeout(TIMEOUT, h.upstream.state.body_started.notified())
        .await
        .expect("the upstream saw no byte of an unfinished upload: the proxy buffers");
    for _ in 1..100 {
        sender.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    }
    drop(sender);
    let reply = timeout(TIMEOUT, response).await.unwrap().unwrap();
    let seen = reply.seen();
    assert_eq!(seen.body_len(), 104_857_600);
    assert!(!seen.has("content-length") || seen.header("content-length") == Some("104857600"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_50_mb_response_is_streamed_not_buffered() {
    let mut h = start(|b| b).await;
    let token = h.token(&["workspaces:read"]).await;
    let response = timeout(TIMEOUT, send(h.proxy, get_bearer("/api/download", &token)))
        .await
        .expect("no response head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0usize;
    // The upstream holds back 49 MB until the client has seen bytes: a
    // proxy that buffers responses never delivers any and this times out.
    while received == 0 {
        let frame = timeout(TIMEOUT, body.frame())
            .await
            .expect("no byte of an unfinished response arrived: the proxy buffers")
            .expect("the body ended early")
            .unwrap();
        received += frame.data_ref().map_or(0, Bytes::len);
    }
    h.upstream.state.release_download.notify_one();
    while let Some(frame) = timeout(TIMEOUT, body.frame()).await.unwrap() {
        received += frame.unwrap().data_ref().map_or(0, Bytes::len);
    }
    assert_eq!(received, 50 * MB);
}

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let mut h = start(|b| b).await;
    let token = h.token(&["workspaces:read"]).await;
    let proxy = h.proxy;
    let slow_request = get_bearer("/api/slow", &token);
    let slow = tokio::spawn(async move { Reply::read(send(proxy, slow_request).await).await });
    timeout(TIMEOUT, h.upstream.state.slow_started.notified())
        .await
        .expect("the slow request never reached the upstream");

    h.shutdown.take().unwrap().send(()).unwrap();
    let refused = timeout(Duration::from_secs(1), async {
        while TcpStream::connect(proxy).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "new connections are still accepted after shutdown"
    );
    assert!(
        !slow.is_finished(),
        "the slow request should still be in flight"
    );

    let reply = timeout(TIMEOUT, slow).await.unwrap().unwrap();
    assert_eq!(reply.seen().uri(), "/api/slow");
    timeout(TIMEOUT, h.served)
        .await
        .expect("serve did not return after its last request")
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------
// Hardening (SPEC §10a)
// ---------------------------------------------------------------------------

/// Sends `head` (a raw request head, `Connection: close`) as is and reads
/// the whole answer: request targets no URI builder would let through.
async fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    (status, answer)
}

fn raw_get(target: &str, token: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: proxy.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn paths_servers_read_differently_are_refused_and_never_reach_the_upstream() {
    let mut h = start(|b| b).await;
    // A key that may use /api/** but not /admin/**.
    let token = h.token(&["items:write"]).await;
    let deep = "/api".to_owned() + &"/x".repeat(128);
    let long = format!("/api/{}", "a".repeat(4096));
    for target in [
        "/public/..%2fadmin/x",
        "/public/..%2Fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..\\admin/x",
        "/public/..;/admin/x",
        "/api/..;/admin/x",
        "/admin;x=1/users",
        "/public/%252e%252e/admin/x",
        "/admin./x",
        "/admin%2e/x",
        "/admin%20/x",
        "/api/a%00b",
        "/api/%zz",
        "/api/%c3",
        deep.as_str(),
        long.as_str(),
    ] {
        let (status, answer) = raw(h.proxy, &raw_get(target, &token)).await;
        assert_eq!(status, 400, "{target}: {answer}");
        // Hyper refuses a raw `\` itself; every other answer is keygate's.
        if !target.contains('\\') {
            assert!(
                answer.contains(r#""error":"invalid_request""#),
                "{target}: {answer}"
            );
            assert!(answer.contains("no-store"), "{target}: {answer}");
        }
    }
    assert_eq!(h.upstream.hits(), 0, "a refused path reached the upstream");
}

#[tokio::test]
async fn rules_match_paths_case_insensitively() {
    let mut h = start(|b| b).await;
    let token = h.token(&["items:write"]).await;
    for target in [
        "/ADMIN/x",
        "/Admin/users/1",
        "/%41dmin/x",
        "/public/../ADMIN/x",
    ] {
        let reply = call(
            h.proxy,
            request("DELETE", target)
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 403, "{target}");
        assert_eq!(reply.json()["error"], "insufficient_scope", "{target}");
        assert_eq!(reply.json()["required"], "admin:write", "{target}");
    }
    assert_eq!(h.upstream.hits(), 0);
    // Public rules too: `/PUBLIC/x` needs no key.
    let reply = call(h.proxy, request("GET", "/PUBLIC/x").body(empty()).unwrap()).await;
    assert_eq!(reply.seen().uri(), "/PUBLIC/x", "the case is kept");
}

#[tokio::test]
async fn the_upstream_gets_the_normalized_path_that_was_judged() {
    let mut h = start_with(all_sources, "").await;
    let token = h.token(&["items:write"]).await;
    let cases = [
        ("/public/./x//y/../z?q=1", "/public/x/z?q=1"),
        ("/%70ublic/x", "/public/x"),
        ("/public/a/", "/public/a/"),
        ("/admin/../public/x", "/public/x"),
        ("/public/%7euser/caf%c3%a9", "/public/~user/caf%C3%A9"),
        ("//api//items/.", "/api/items/"),
    ];
    for (target, forwarded) in cases {
        let reply = call(
            h.proxy,
            request("GET", target)
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.seen().uri(), forwarded, "{target}");
    }
    // Credential query parameters are still removed; the rest of the query
    // is kept as sent.
    let reply = call(
        h.proxy,
        request("GET", &format!("/api/./items?a=%2F&api_key={token}&b=1"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.seen().uri(), "/api/items?a=%2F&b=1");
}

#[tokio::test]
async fn connect_and_trace_are_refused_with_405() {
    let mut h = start(|b| b).await;
    let token = h.token(&["*:*"]).await;
    let trace = call(
        h.proxy,
        request("TRACE", "/public/x")
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(trace.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(trace.json()["error"], "method_not_allowed");
    assert!(trace.json()["message"].is_string());
    assert_eq!(trace.header("cache-control"), Some("no-store"));
    assert_eq!(trace.header("content-type"), Some("application/json"));

    let (status, answer) = raw(
        h.proxy,
        &format!(
            "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 405, "{answer}");
    assert!(
        answer.contains(r#""error":"method_not_allowed""#),
        "{answer}"
    );
    assert_eq!(h.upstream.hits(), 0);
}

#[tokio::test]
async fn a_request_no_rule_allows_is_refused_before_its_credential_is_read() {
    let mut h = start(|b| b).await;
    let token = h.token(&["*:*"]).await;
    for authorization in [
        None,
        Some(format!("Bearer {token}")),
        Some("Bearer nope".into()),
    ] {
        let mut builder = request("GET", "/elsewhere");
        if let Some(value) = &authorization {
            builder = builder.header("authorization", value);
        }
        let reply = call(h.proxy, builder.body(empty()).unwrap()).await;
        assert_eq!(reply.status, 403, "{authorization:?}");
        assert_eq!(
            reply.json(),
            json!({"error": "forbidden", "message": "no rule allows this request"})
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("www-authenticate"), None);
    }
    assert_eq!(h.upstream.hits(), 0);
}

#[tokio::test]
async fn default_key_lets_any_valid_key_through_where_no_rule_matches() {
    let upstream = upstream().await;
    let keygate = builder().build().unwrap();
    let rules = Rules::parse_toml(&format!("default = \"key\"\n{RULES}")).unwrap();
    let proxy = Proxy::new(
        Gateway::new(keygate.clone(), rules),
        &format!("http://{}", upstream.addr),
    )
    .unwrap();
    let (addr, _shutdown, _served) = serve(proxy).await;
    let created = keygate
        .keys()
        .create(NewKey::new("alice", "any").scopes(["things:read"]))
        .await
        .unwrap();
    let missing = call(addr, request("GET", "/elsewhere").body(empty()).unwrap()).await;
    assert_eq!(missing.status, 401);
    let allowed = call(addr, get_bearer("/elsewhere", created.token.expose())).await;
    assert_eq!(allowed.seen().uri(), "/elsewhere");
}

#[tokio::test]
async fn an_unparseable_forwarded_for_hop_makes_the_client_unknown() {
    let mut h = start(|b| b.trusted_proxies(["127.0.0.0/8".parse().unwrap()])).await;
    // Allowed only from the proxy's own address: what a broken hop used to
    // be judged as.
    let (local_only, _, _) = h.key(&["workspaces:read"], &["127.0.0.1"]).await;
    let (anywhere, _, _) = h.key(&["workspaces:read"], &[]).await;
    for chain in ["garbage", "203.0.113.7, not-an-ip", "203.0.113.7:443"] {
        let refused = call(
            h.proxy,
            request("GET", "/api/workspaces")
                .header("authorization", format!("Bearer {local_only}"))
                .header("x-forwarded-for", chain)
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(refused.status, 403, "{chain}");
        assert_eq!(refused.json()["error"], "ip_not_allowed", "{chain}");
        // A key without IP lists does not care where the client is.
        let allowed = call(
            h.proxy,
            request("GET", "/api/workspaces")
                .header("authorization", format!("Bearer {anywhere}"))
                .header("x-forwarded-for", chain)
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(allowed.status, 200, "{chain}");
    }
    assert_eq!(h.upstream.hits(), 3);
}
