//! The authenticating reverse proxy of `keygate serve --upstream` (SPEC §8,
//! §10, §10a): every request is decided by a [`Gateway`]; a denied one is
//! answered exactly as SPEC §3 without reading its body (a path servers
//! read differently: 400 `invalid_request`; `CONNECT` and `TRACE`: 405
//! `method_not_allowed`; with a rules file, no rule allowing it: 403
//! `forbidden`), an allowed one is forwarded
//! to one plain-HTTP upstream with the credential removed and the
//! `X-Keygate-*` identity headers set. Bodies are streamed both ways, never
//! collected.
//!
//! # Example
//!
//! ```no_run
//! use keygate::gateway::proxy::{Proxy, ProxyError};
//! use keygate::gateway::{Gateway, Rules};
//! use keygate::{Keygate, MemoryStore, Pepper};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::from_env()?)
//!     .build()?;
//! let rules = Rules::parse_toml(r#"
//!     [[rule]]
//!     path = "/public/**"
//!     public = true
//! "#)?;
//! let gateway = Gateway::new(keygate, rules);
//!
//! // Only plain-HTTP upstreams.
//! assert!(matches!(
//!     Proxy::new(gateway.clone(), "https://api.internal"),
//!     Err(ProxyError::Https)
//! ));
//!
//! let proxy = Proxy::new(gateway, "http://127.0.0.1:3000")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! proxy
//!     .serve(listener, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What the upstream receives
//!
//! - The same method; the URI is the upstream's scheme and authority, its
//!   base path (if any) joined with **the normalized path that was judged**
//!   (dot and empty segments resolved, escapes re-made canonically, case
//!   kept; see [`Rules`](super::Rules)), never the raw one, and the
//!   original query. The asterisk form (`OPTIONS *`) is refused.
//! - **No keygate credential**, from every configured source, whether the
//!   route is public or not (the upstream must never see a keygate token):
//!   `Authorization` values whose scheme is `Bearer` (case-insensitive; other
//!   schemes such as `Basic` are kept), the API-key header(s), the cookie
//!   (other cookies kept) and the query parameter (other parameters kept).
//! - No client-sent `X-Keygate-*` header; the four identity headers of
//!   [`Decision::identity`] instead (empty on a public rule).
//! - No hop-by-hop header: `Connection` and every header it lists,
//!   `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`
//!   (the same list is removed from the upstream's response). Protocol
//!   upgrades (WebSocket) are therefore not proxied. A body that arrived
//!   chunked leaves chunked, without a stale `Content-Length`.
//! - `X-Forwarded-For`: the TCP peer appended to the client's chain when the
//!   peer is a trusted proxy (`Keygate` builder `trusted_proxies`), else the
//!   peer alone. `X-Forwarded-Proto: http` and `X-Forwarded-Host` (the
//!   original `Host`) are set, unless a trusted peer already sent them.
//!   `Forwarded` and `X-Real-IP` from an untrusted peer are removed.
//! - `Host`: the upstream's authority. Several `Cookie` headers (HTTP/2
//!   clients) are joined into one, as HTTP/1.1 requires.
//!
//! The upstream is spoken to in HTTP/1.1 over pooled connections, whatever
//! the client spoke (HTTP/1 or HTTP/2). When it cannot be reached, the client
//! gets `502 {"error":"bad_gateway",...}`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, FORWARDED,
    HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;

use super::{Decision, Gateway};
use crate::listener::ListenerLimits;
use crate::middleware::AuthBody;
use crate::request::CredentialSource;
use crate::request::{PeerAddr, client_ip, peer_ip};
use crate::verify::Rejection;

/// How long connecting to the upstream may take before the request is a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones), never
/// forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Every client-sent header starting with this is removed.
const KEYGATE_HEADER_PREFIX: &str = "x-keygate-";

const BAD_GATEWAY_BODY: &str =
    r#"{"error":"bad_gateway","message":"The upstream service is unreachable."}"#;

/// A [`Proxy`] that cannot be built from its upstream URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The upstream is not a URL. (The URL itself is left out of the message:
    /// it may hold a password.)
    #[error("the upstream is not a valid URL")]
    InvalidUrl(#[source] http::uri::InvalidUri),
    /// The upstream is not absolute, such as `127.0.0.1:3000` or `/api`.
    #[error(
        "the upstream must be an absolute http:// URL with a host, such as http://127.0.0.1:3000"
    )]
    NotAbsolute,
    /// An `https://` upstream.
    #[error(
        "https upstreams are not supported: the proxy speaks plain http:// to its upstream \
         (put it next to the service, on a private network)"
    )]
    Https,
    /// A scheme other than `http`.
    #[error("unsupported upstream scheme {0:?}: only http:// upstreams are supported")]
    UnsupportedScheme(String),
    /// User info (`user:password@`) in the upstream URL.
    #[error("the upstream URL must not contain user info (user:password@)")]
    UserInfo,
    /// A query in the upstream URL.
    #[error("the upstream URL must not contain a query")]
    Query,
}

/// Where allowed requests go: an `http://` authority and an optional base
/// path.
#[derive(Debug)]
struct Upstream {
    authority: Authority,
    /// The `Host` header sent upstream: the authority.
    host: HeaderValue,
    /// `""` or a path starting with `/`, without a trailing `/`.
    base_path: Box<str>,
}

impl Upstream {
    fn parse(text: &str) -> Result<Upstream, ProxyError> {
        let uri: Uri = text.parse().map_err(ProxyError::InvalidUrl)?;
        match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => return Err(ProxyError::Https),
            Some(scheme) => return Err(ProxyError::UnsupportedScheme(scheme.to_owned())),
            None => return Err(ProxyError::NotAbsolute),
        }
        let authority = uri.authority().cloned().ok_or(ProxyError::NotAbsolute)?;
        if authority.as_str().contains('@') {
            return Err(ProxyError::UserInfo);
        }
        if authority.host().is_empty() {
            return Err(ProxyError::NotAbsolute);
        }
        if uri.query().is_some() {
            return Err(ProxyError::Query);
        }
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::NotAbsolute)?;
        Ok(Upstream {
            authority,
            host,
            base_path: uri.path().trim_end_matches('/').into(),
        })
    }

    /// The upstream URI: the base path joined with the normalized `path`
    /// that was judged, and the original URI's query without the
    /// credential query parameters.
    fn uri(&self, original: &Uri, path: &str, strip: &[Box<str>]) -> Result<Uri, http::Error> {
        let query = original.query().map(|q| strip_query(q, strip));
        let unchanged = self.base_path.is_empty()
            && original.path() == path
            && matches!(query, None | Some(Cow::Borrowed(_)));
        let path_and_query = match original.path_and_query() {
            // The common case: no copy (`PathAndQuery` is shared bytes).
            Some(pq) if unchanged => pq.clone(),
            _ => {
                let query = query.as_deref().unwrap_or("");
                let mut joined =
                    String::with_capacity(self.base_path.len() + path.len() + query.len() + 1);
                joined.push_str(&self.base_path);
                joined.push_str(path);
                if !query.is_empty() {
                    joined.push('?');
                    joined.push_str(query);
                }
                PathAndQuery::try_from(joined)?
            }
        };
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

/// The credential sources, as what to remove from a forwarded request.
#[derive(Debug, Default)]
struct Strip {
    bearer: bool,
    headers: Vec<HeaderName>,
    cookies: Vec<Box<str>>,
    queries: Vec<Box<str>>,
}

impl Strip {
    fn new(sources: &[CredentialSource]) -> Strip {
        let mut strip = Strip::default();
        for source in sources {
            match source {
                CredentialSource::Bearer => strip.bearer = true,
                CredentialSource::Header(name) => strip.headers.push(name.clone()),
                CredentialSource::Cookie(name) => strip.cookies.push(name.as_str().into()),
                CredentialSource::Query(name) => strip.queries.push(name.as_str().into()),
            }
        }
        strip
    }

    /// Removes the credential headers and cookies (the query parameter is
    /// dropped when the upstream URI is built).
    fn headers(&self, headers: &mut HeaderMap) {
        if self.bearer {
            remove_bearer(headers);
        }
        for name in &self.headers {
            headers.remove(name);
        }
        rewrite_cookies(headers, &self.cookies);
    }
}

/// Whether an `Authorization` value uses the `Bearer` scheme: stricter
/// parsing is the extractor's job, here anything that looks like Bearer goes.
fn is_bearer(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes().trim_ascii_start();
    bytes.len() >= 6
        && bytes[..6].eq_ignore_ascii_case(b"bearer")
        && bytes.get(6).is_none_or(|b| b.is_ascii_whitespace())
}

/// Removes every `Bearer` `Authorization` value, keeping the others in order.
fn remove_bearer(headers: &mut HeaderMap) {
    if !headers.get_all(AUTHORIZATION).iter().any(is_bearer) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|value| !is_bearer(value))
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for value in kept {
        headers.append(AUTHORIZATION, value);
    }
}

/// Removes the cookies named in `names` and joins several `Cookie` headers
/// into one. Untouched when there is one header and nothing to remove.
fn rewrite_cookies(headers: &mut HeaderMap, names: &[Box<str>]) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), more) = (values.next(), values.next().is_some()) else {
        return;
    };
    let is_named = |pair: &[u8]| {
        let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
        let key = key.trim_ascii();
        names.iter().any(|name| key == name.as_bytes())
    };
    if !more && !first.as_bytes().split(|&b| b == b';').any(is_named) {
        return;
    }
    let mut joined = BytesMut::new();
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() || is_named(pair) {
                continue;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(pair);
        }
    }
    headers.remove(COOKIE);
    if !joined.is_empty() {
        // Bytes of valid header values joined by "; ": still valid.
        if let Ok(value) = HeaderValue::from_maybe_shared(joined.freeze()) {
            headers.insert(COOKIE, value);
        }
    }
}

/// The query without the parameters named in `names` (compared as sent and
/// percent-decoded). Borrowed when nothing is removed.
fn strip_query<'a>(query: &'a str, names: &[Box<str>]) -> Cow<'a, str> {
    if names.is_empty() {
        return Cow::Borrowed(query);
    }
    let is_named = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        names.iter().any(|name| {
            key == &**name
                || (key.contains('%')
                    && percent_encoding::percent_decode_str(key).decode_utf8_lossy() == **name)
        })
    };
    if !query.split('&').any(is_named) {
        return Cow::Borrowed(query);
    }
    let mut kept = String::with_capacity(query.len());
    for pair in query.split('&').filter(|pair| !is_named(pair)) {
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    Cow::Owned(kept)
}

/// Removes the hop-by-hop headers: those listed in `Connection`, then the
/// fixed list.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Drops `Content-Length` when the body's length is not known exactly:
/// it came chunked (`Transfer-Encoding`, just removed, beat a
/// `Content-Length` sent alongside) and leaves chunked; forwarding the stale
/// length would desynchronize the next hop.
fn fix_content_length(headers: &mut HeaderMap, body: &Incoming) {
    if body.size_hint().exact().is_none() {
        headers.remove(CONTENT_LENGTH);
    }
}

/// Removes every `X-Keygate-*` header.
fn remove_keygate_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(KEYGATE_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`; see the module docs.
fn set_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    original_host: Option<HeaderValue>,
) {
    let mut chain = BytesMut::new();
    if peer_trusted {
        for value in headers.get_all(X_FORWARDED_FOR) {
            let value = value.as_bytes().trim_ascii();
            if value.is_empty() {
                continue;
            }
            if !chain.is_empty() {
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(value);
        }
    }
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    // Writing an address into a `BytesMut` cannot fail.
    let _ = write!(chain, "{peer}");
    // Valid header values joined by ", ", and an address: still valid.
    if let Ok(chain) = HeaderValue::from_maybe_shared(chain.freeze()) {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match original_host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    if !peer_trusted {
        headers.remove(FORWARDED);
        headers.remove(X_REAL_IP);
    }
}

/// A `Display` of an error and its sources, for logs.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// The 502 answered when the upstream cannot be reached.
fn bad_gateway() -> Response<AuthBody<Incoming>> {
    let mut response = Response::new(AuthBody::rejection(Bytes::from_static(
        BAD_GATEWAY_BODY.as_bytes(),
    )));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The shared state of a proxy.
struct Inner {
    gateway: Gateway,
    upstream: Upstream,
    strip: Strip,
    client: Client<HttpConnector, Incoming>,
}

impl Inner {
    /// The answer to a refused request; its body is dropped unread.
    fn refuse(&self, decision: &Decision) -> Response<AuthBody<Incoming>> {
        let refusal = self
            .gateway
            .refusal(decision)
            // Only `Allow` has no refusal, and it is never passed here.
            .unwrap_or_else(|| self.gateway.deny(&Rejection::InvalidRequest));
        refusal.map(AuthBody::rejection)
    }

    /// One request, start to finish.
    async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AuthBody<Incoming>> {
        request.extensions_mut().insert(PeerAddr(peer));
        let trusted_proxies = self.gateway.trusted_proxies();
        let client = client_ip(request.headers(), request.extensions(), trusted_proxies);
        // The method and the path first; the upstream gets the path judged.
        let path = match self.gateway.admit(request.method(), request.uri()) {
            Ok(path) => path,
            Err(refused) => return self.refuse(&refused),
        };
        let decision = self
            .gateway
            .decide_path(
                request.method(),
                &path,
                request.uri(),
                request.headers(),
                client,
            )
            .await;
        if !matches!(decision, Decision::Allow(_)) {
            return self.refuse(&decision);
        }

        let (mut parts, body) = request.into_parts();
        let peer_ip = peer_ip(&parts.extensions).unwrap_or(peer.ip());
        let peer_trusted = trusted_proxies.iter().any(|net| net.contains(&peer_ip));
        let original_host = parts
            .headers
            .get(HOST)
            .cloned()
            .or_else(|| HeaderValue::from_str(parts.uri.authority()?.as_str()).ok());

        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        fix_content_length(headers, &body);
        self.strip.headers(headers);
        remove_keygate_headers(headers);
        for (name, value) in decision.identity().into_iter().flatten() {
            headers.insert(name, value);
        }
        set_forwarding(headers, peer_ip, peer_trusted, original_host);
        headers.insert(HOST, self.upstream.host.clone());

        parts.uri = match self
            .upstream
            .uri(&parts.uri, path.as_str(), &self.strip.queries)
        {
            Ok(uri) => uri,
            Err(error) => {
                tracing::warn!(error = %error, "cannot build the upstream URI");
                return bad_gateway();
            }
        };
        parts.version = Version::HTTP_11;
        parts.extensions.clear();
        let method = parts.method.clone();

        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                fix_content_length(&mut parts.headers, &body);
                Response::from_parts(parts, AuthBody::inner(body))
            }
            Err(error) => {
                // Never the headers or the URI: they may carry secrets.
                tracing::warn!(
                    %method,
                    upstream = %self.upstream.authority,
                    error = %Chain(&error),
                    "upstream request failed"
                );
                bad_gateway()
            }
        }
    }
}

/// The authenticating reverse proxy: decides each request with a
/// [`Gateway`] and forwards the allowed ones to one `http://` upstream (see
/// the [module docs](self) for exactly what is forwarded). Cheap to clone
/// (an `Arc` inside); clones share the upstream connection pool.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("gateway", &self.inner.gateway)
            .field("upstream", &self.inner.upstream.authority)
            .field("base_path", &self.inner.upstream.base_path)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy deciding with `gateway` and forwarding to `upstream`: an
    /// absolute `http://` URL, such as `http://127.0.0.1:3000`, optionally
    /// with a base path (`http://10.0.0.5:8080/api` sends `/items` to
    /// `/api/items`). Connecting to the upstream times out after 10 s.
    ///
    /// The credential sources to remove are read from the gateway's
    /// keygate now.
    ///
    /// # Errors
    ///
    /// [`ProxyError`] when `upstream` is not an absolute `http://` URL
    /// (`https://` is refused: TLS to the upstream is not supported), or
    /// holds user info or a query.
    pub fn new(gateway: Gateway, upstream: &str) -> Result<Proxy, ProxyError> {
        let upstream = Upstream::parse(upstream)?;
        let strip = Strip::new(gateway.keygate().credential_sources());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Proxy {
            inner: Arc::new(Inner {
                gateway,
                upstream,
                strip,
                client,
            }),
        })
    }

    /// Serves HTTP/1.1 and HTTP/2 (cleartext) connections from `listener`
    /// with the default [`ListenerLimits`] until `shutdown` resolves; see
    /// [`Proxy::serve_with`].
    ///
    /// # Errors
    ///
    /// An I/O error when the listener's address cannot be read.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_with(listener, ListenerLimits::default(), shutdown)
            .await
    }

    /// Serves HTTP/1.1 and HTTP/2 (cleartext) connections from `listener`
    /// until `shutdown` resolves, each connection held to `limits` (header
    /// and idle timeouts, a bound on open connections: see
    /// [`crate::listener`]); then stops accepting (new connections are
    /// refused), lets in-flight requests finish, closes idle connections and
    /// returns. Wrap the call in a timeout to bound how long that may take.
    ///
    /// Each request's client address is its TCP peer, or the nearest
    /// untrusted hop of `X-Forwarded-For` when the peer is one of the
    /// keygate's trusted proxies. Errors accepting a connection are logged
    /// and retried.
    ///
    /// # Errors
    ///
    /// An I/O error when the listener's address cannot be read.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        limits: ListenerLimits,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let local = listener.local_addr()?;
        tracing::info!(
            listen = %local,
            upstream = %self.inner.upstream.authority,
            "proxy listening"
        );
        let inner = self.inner;
        let make_service = move |peer: SocketAddr| {
            let inner = inner.clone();
            hyper::service::service_fn(move |request| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(inner.handle(request, peer).await) }
            })
        };
        crate::listener::serve(listener, limits, make_service, shutdown).await?;
        tracing::info!(listen = %local, "proxy stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|name| (*name).into()).collect()
    }

    #[test]
    fn upstream_urls_are_checked() {
        assert!(matches!(
            Upstream::parse("https://a.example"),
            Err(ProxyError::Https)
        ));
        assert!(matches!(
            Upstream::parse("ftp://a.example"),
            Err(ProxyError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Upstream::parse("127.0.0.1:3000"),
            Err(ProxyError::NotAbsolute)
        ));
        assert!(matches!(
            Upstream::parse("/api"),
            Err(ProxyError::NotAbsolute)
        ));
        assert!(matches!(
            Upstream::parse("http://u:p@a.example"),
            Err(ProxyError::UserInfo)
        ));
        assert!(matches!(
            Upstream::parse("http://a.example/?x=1"),
            Err(ProxyError::Query)
        ));
        assert!(matches!(
            Upstream::parse("http://a b"),
            Err(ProxyError::InvalidUrl(_))
        ));
        let upstream = Upstream::parse("http://a.example:81/base/").unwrap();
        assert_eq!(upstream.host, "a.example:81");
        assert_eq!(&*upstream.base_path, "/base");
    }

    #[test]
    fn upstream_uri_joins_the_base_path_and_keeps_the_query() {
        let plain = Upstream::parse("http://up:1").unwrap();
        let based = Upstream::parse("http://up:1/base").unwrap();
        let none: &[Box<str>] = &[];
        let uri = |u: &Upstream, original: &str, strip: &[Box<str>]| {
            let original: Uri = original.parse().unwrap();
            u.uri(&original, original.path(), strip)
                .unwrap()
                .to_string()
        };
        assert_eq!(uri(&plain, "/a/b?x=1", none), "http://up:1/a/b?x=1");
        assert_eq!(
            uri(&plain, "http://other/a?x", none),
            "http://up:1/a?x",
            "absolute-form"
        );
        assert_eq!(uri(&based, "/a/b?x=1", none), "http://up:1/base/a/b?x=1");
        assert_eq!(uri(&based, "/", none), "http://up:1/base/");
        let judged = plain
            .uri(&"/a/../b//c?x=1".parse().unwrap(), "/b/c", none)
            .unwrap();
        assert_eq!(
            judged.to_string(),
            "http://up:1/b/c?x=1",
            "the judged path, not the raw one"
        );
        let strip = names(&["api_key"]);
        assert_eq!(
            uri(&plain, "/a?x=1&api_key=t&y=2", &strip),
            "http://up:1/a?x=1&y=2"
        );
        assert_eq!(uri(&plain, "/a?api_key=t", &strip), "http://up:1/a");
        assert_eq!(uri(&based, "/a?api_key=t", &strip), "http://up:1/base/a");
    }

    #[test]
    fn query_parameters_are_stripped_as_sent_and_decoded() {
        let strip = names(&["api_key"]);
        assert!(matches!(
            strip_query("a=1&b=2", &strip),
            Cow::Borrowed("a=1&b=2")
        ));
        assert_eq!(strip_query("api_key=1", &strip), "");
        assert_eq!(strip_query("api%5Fkey=1&a=2", &strip), "a=2");
        assert_eq!(strip_query("api_key&api_keyx=1", &strip), "api_keyx=1");
    }

    #[test]
    fn bearer_values_go_other_authorization_schemes_stay() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("bEaReR tok"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearertok"));
        remove_bearer(&mut headers);
        let left: Vec<_> = headers.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(left, ["Basic eDp5", "Bearertok"]);
    }

    #[test]
    fn cookies_are_filtered_and_joined() {
        let strip = names(&["kg"]);
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; kg=tok;b=2"));
        headers.append(COOKIE, HeaderValue::from_static(" kg = \"tok\" ; c=3"));
        rewrite_cookies(&mut headers, &strip);
        assert_eq!(
            headers.get_all(COOKIE).iter().collect::<Vec<_>>(),
            ["a=1; b=2; c=3"]
        );

        let mut only = HeaderMap::new();
        only.insert(COOKIE, HeaderValue::from_static("kg=tok"));
        rewrite_cookies(&mut only, &strip);
        assert!(!only.contains_key(COOKIE));

        let mut untouched = HeaderMap::new();
        untouched.insert(COOKIE, HeaderValue::from_static("a=1;b=2"));
        rewrite_cookies(&mut untouched, &strip);
        assert_eq!(untouched[COOKIE], "a=1;b=2");
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_lists_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Hop , x-other"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert("x-end-to-end", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-end-to-end"));
    }

    #[test]
    fn forwarding_headers_trust_only_trusted_peers() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        let mut untrusted = headers.clone();
        set_forwarding(
            &mut untrusted,
            peer,
            false,
            Some(HeaderValue::from_static("h")),
        );
        assert_eq!(untrusted[X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(untrusted[X_FORWARDED_PROTO], "http");
        assert_eq!(untrusted[X_FORWARDED_HOST], "h");
        assert!(!untrusted.contains_key(FORWARDED));

        let mut trusted = headers;
        trusted.append(X_FORWARDED_FOR, HeaderValue::from_static("5.6.7.8"));
        set_forwarding(&mut trusted, peer, true, None);
        assert_eq!(trusted[X_FORWARDED_FOR], "1.2.3.4, 5.6.7.8, 10.0.0.1");
        assert_eq!(trusted[X_FORWARDED_PROTO], "https");
        assert!(!trusted.contains_key(X_FORWARDED_HOST));
        assert!(trusted.contains_key(FORWARDED));
    }
}
