//! The [`Proxy`] itself: serving connections and handling each request
//! (decide, refuse or rewrite and forward, stream the answer back).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;

use super::headers::{
    fix_content_length, remove_hop_by_hop, remove_keygate_headers, set_forwarding,
};
use super::strip::Strip;
use super::upstream::{ProxyError, Upstream};
use crate::gateway::rules::NormalizedPath;
use crate::gateway::{Decision, Gateway, REQUEST_ID_HEADER, RequestId, access_log};
use crate::listener::ListenerLimits;
use crate::middleware::AuthBody;
use crate::request::{PeerAddr, client_ip, peer_ip};
use crate::verify::Rejection;
use tracing::Instrument;

/// How long connecting to the upstream may take before the request is a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const BAD_GATEWAY_BODY: &str =
    r#"{"error":"bad_gateway","message":"The upstream service is unreachable."}"#;

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

    /// One request, start to finish, inside its request-id span; one
    /// access-log line per decision.
    async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AuthBody<Incoming>> {
        request.extensions_mut().insert(PeerAddr(peer));
        let trusted_proxies = self.gateway.trusted_proxies();
        let peer_trusted = peer_ip(request.extensions())
            .is_some_and(|ip| trusted_proxies.iter().any(|net| net.contains(&ip)));
        let id = RequestId::for_request(request.headers(), peer_trusted);
        // The upstream gets the id judged here, never one a client chose.
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, id.header_value().clone());
        let span = id.span();
        let mut response = self.decide_and_forward(request).instrument(span).await;
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER, id.header_value().clone());
        response
    }

    async fn decide_and_forward(&self, request: Request<Incoming>) -> Response<AuthBody<Incoming>> {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let trusted_proxies = self.gateway.trusted_proxies();
        let client = client_ip(request.headers(), request.extensions(), trusted_proxies);
        // The method and the path first; the upstream gets the path judged.
        let path = match self.gateway.admit(request.method(), request.uri()) {
            Ok(path) => path,
            Err(refused) => {
                let response = self.refuse(&refused);
                access_log::log(
                    "proxy",
                    &method,
                    request.uri().path(),
                    &refused,
                    response.status(),
                    started,
                );
                return response;
            }
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
            let response = self.refuse(&decision);
            access_log::log(
                "proxy",
                &method,
                path.as_str(),
                &decision,
                response.status(),
                started,
            );
            return response;
        }
        let peer = match request.extensions().get::<PeerAddr>() {
            Some(PeerAddr(peer)) => *peer,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let mut response = self.forward(request, &path, &decision, peer).await;
        // Counted requests say where the key's tightest limit stands,
        // replacing whatever the upstream said.
        if let Some(limit) = decision.rate_limit_headers() {
            limit.insert(response.headers_mut());
        }
        access_log::log(
            "proxy",
            &method,
            path.as_str(),
            &decision,
            response.status(),
            started,
        );
        response
    }

    /// Sends an allowed request upstream and returns its response (502 when
    /// the upstream fails).
    async fn forward(
        &self,
        request: Request<Incoming>,
        path: &NormalizedPath,
        decision: &Decision,
        peer: SocketAddr,
    ) -> Response<AuthBody<Incoming>> {
        let trusted_proxies = self.gateway.trusted_proxies();
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
/// the [module docs](super) for exactly what is forwarded). Cheap to clone
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
    /// [`serve_router`](crate::serve_router)); then stops accepting (new connections are
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
