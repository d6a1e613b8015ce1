//! The connection loop behind both listeners of `keygate serve` — the HTTP
//! API and the authenticating proxy: HTTP/1.1 and cleartext
//! HTTP/2 on a `TcpListener`, with every connection held to the bounds of
//! [`ListenerLimits`], and a graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

/// Default [`ListenerLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ListenerLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ListenerLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long a connection asked to close (after a timeout) may take to do
/// so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The bounds every connection of a listener is held to (see
/// [`serve_router`](crate::serve_router)). The defaults are the secure ones.
///
/// - **Header timeout** (default 10 s): a new connection must deliver its
///   first request head within this time of being accepted; on a kept-alive
///   connection, once the first byte of the next request has arrived, its
///   head must be complete within this time. Otherwise the connection is
///   closed (no answer is sent). This is what stops slowloris clients.
/// - **Idle timeout** (default 60 s): a kept-alive connection with no request
///   in flight and no byte of a next request is closed after this time.
///   A request is in flight from the moment its head is parsed until its
///   response body has been sent or dropped, so a slow handler or a
///   streaming response is never cut. HTTP/2 connections are closed with a
///   `GOAWAY`; HTTP/2 also pings the peer after the idle timeout and drops
///   the connection when no pong arrives within the header timeout.
/// - **Connection bound** (default 1024): at most this many connections are
///   open at once. When the bound is reached the loop stops accepting: new
///   connections wait in the kernel's listen backlog (and are refused by
///   the kernel when that is full) until an open connection closes. Since
///   every connection is itself bounded in time, slow clients cannot keep
///   the listener full.
///
/// A connection is closed when a timeout fires with nothing in flight: it is
/// first asked to shut down gracefully and dropped 1 s later if it is still
/// open. On shutdown the loop stops accepting (new connections are refused),
/// lets in-flight requests finish, closes idle connections and returns.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{Router, routing::get};
/// use keygate::{ListenerLimits, serve_router};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let limits = ListenerLimits::default().header_timeout(Duration::from_secs(5));
/// assert_eq!(limits.max_connections, 1024);
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve_router(listener, limits, app, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// How long a request head may take to arrive. Default: 10 s.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may stay idle. Default: 60 s.
    pub idle_timeout: Duration,
    /// How many connections may be open at once; further ones wait in the
    /// listen backlog. Default: 1024. Zero is treated as one, and values
    /// above `u32::MAX` as `u32::MAX`.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> ListenerLimits {
        ListenerLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ListenerLimits {
    /// Sets [`header_timeout`](ListenerLimits::header_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use keygate::{DEFAULT_HEADER_TIMEOUT, ListenerLimits};
    ///
    /// assert_eq!(ListenerLimits::default().header_timeout, DEFAULT_HEADER_TIMEOUT);
    /// let limits = ListenerLimits::default().header_timeout(Duration::from_secs(5));
    /// assert_eq!(limits.header_timeout, Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> ListenerLimits {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`idle_timeout`](ListenerLimits::idle_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use keygate::ListenerLimits;
    ///
    /// assert_eq!(ListenerLimits::default().idle_timeout(Duration::from_secs(30)).idle_timeout, Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> ListenerLimits {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`max_connections`](ListenerLimits::max_connections).
    ///
    /// ```
    /// use keygate::{DEFAULT_MAX_CONNECTIONS, ListenerLimits};
    ///
    /// assert_eq!(ListenerLimits::default().max_connections, DEFAULT_MAX_CONNECTIONS);
    /// assert_eq!(ListenerLimits::default().max_connections(64).max_connections, 64);
    /// ```
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> ListenerLimits {
        self.max_connections = max;
        self
    }
}

/// How long a handler may wait for a request body it reads whole, put in
/// each request's extensions by [`serve_router`]: the listener's header
/// timeout. The API's JSON bodies answer 408 `request_timeout` past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

impl Default for BodyTimeout {
    fn default() -> BodyTimeout {
        BodyTimeout(DEFAULT_HEADER_TIMEOUT)
    }
}

/// Serves an axum [`Router`](axum::Router) on `listener` within `limits`
/// until `shutdown` resolves. Each request carries
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), the TCP peer;
/// the API's JSON bodies must arrive within the header timeout (408).
///
/// # Errors
///
/// An I/O error when the listener's address cannot be read.
///
/// ```
/// use axum::{Router, routing::get};
/// use keygate::{ListenerLimits, serve_router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(serve_router(
///     listener,
///     ListenerLimits::default(),
///     Router::new().route("/", get(|| async { "hello" })),
///     async { let _ = stopped.await; },
/// ));
///
/// let mut stream = tokio::net::TcpStream::connect(addr).await?;
/// tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
/// let mut answer = String::new();
/// tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK"));
/// assert!(answer.ends_with("hello"));
///
/// stop.send(()).ok();
/// server.await??; // in-flight requests finish, then it returns
/// # Ok(())
/// # }
/// ```
pub async fn serve_router(
    listener: TcpListener,
    limits: ListenerLimits,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(
        listener,
        limits,
        move |peer| {
            let router = router.clone();
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let extensions = request.extensions_mut();
                extensions.insert(axum::extract::ConnectInfo(peer));
                extensions.insert(BodyTimeout(limits.header_timeout));
                // A Router is always ready (its `poll_ready` returns at
                // once), so calling it without `poll_ready` is sound; see
                // tower's "Be careful when cloning inner services".
                let mut router = router.clone();
                tower_service::Service::call(&mut router, request)
            })
        },
        shutdown,
    )
    .await
}

/// Serves HTTP/1.1 and cleartext HTTP/2 connections from `listener` within
/// `limits` until `shutdown` resolves, with the service `make_service`
/// builds for each connection from its peer address; then stops accepting,
/// lets in-flight requests finish, closes idle connections and returns.
/// Wrap the call in a timeout to bound how long that may take.
///
/// Errors accepting a connection are logged and retried.
///
/// # Errors
///
/// An I/O error when the listener's address cannot be read.
pub(crate) async fn serve<M, S, B>(
    listener: TcpListener,
    limits: ListenerLimits,
    mut make_service: M,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    M: FnMut(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let local = listener.local_addr()?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is ours (hyper's would also close idle
    // keep-alive connections): hyper's own is turned off.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.header_timeout);
    // At most u32::MAX, so that shutdown can wait for every slot at once.
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: when full, new clients
        // wait in the backlog.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_error(error).await;
                    continue;
                }
            },
        };
        // Best effort: the connection still works without it.
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let service = Tracked {
            inner: make_service(peer),
            state: state.clone(),
        };
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            state: state.clone(),
        });
        let connection = builder.serve_connection(io, service).into_owned();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // When the connection was asked to close; dropped CLOSE_GRACE later.
            let mut closing: Option<Instant> = None;
            let mut stopping = false;
            loop {
                let deadline = match closing {
                    Some(asked) => state.deadline(&limits).map(|_| asked + CLOSE_GRACE),
                    None => state.deadline(&limits),
                };
                let timer = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(peer = %peer, error = %error, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        // The listener is shutting down (or gone): in-flight
                        // requests finish, then the connection closes.
                        stopping = true;
                        let _ = changed;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = state.changed.notified() => {}
                    () = timer => {
                        // Recheck: a request may have started meanwhile.
                        match state.deadline(&limits) {
                            None => continue,
                            Some(due) if closing.is_none() && due > Instant::now() => continue,
                            Some(_) => {}
                        }
                        if closing.is_some() {
                            tracing::debug!(peer = %peer, "connection dropped");
                            break;
                        }
                        tracing::debug!(peer = %peer, "connection timed out");
                        closing = Some(Instant::now());
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(permit);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    tracing::debug!(listen = %local, "listener stopped accepting; finishing connections");
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends.
    let _ = slots
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Per-connection bookkeeping shared by the IO wrapper, the service wrapper
/// and the watchdog in [`drive`].
struct ConnState {
    /// When the connection was accepted.
    base: Instant,
    /// Requests whose head was parsed and whose response is not done.
    in_flight: AtomicUsize,
    /// Whether any request has started on this connection.
    served: AtomicBool,
    /// When the last request finished (ms since `base`).
    idle_since: AtomicU64,
    /// When the first byte read since the last request finished arrived
    /// (ms since `base`, plus one; zero = none yet).
    first_byte: AtomicU64,
    /// Woken when a first byte arrives or the last request finishes.
    changed: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn saw_bytes(&self) {
        if self.first_byte.load(Ordering::Relaxed) == 0 {
            let now = self.now_ms().saturating_add(1);
            if self
                .first_byte
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.changed.notify_one();
            }
        }
    }

    fn begin(self: &Arc<ConnState>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection must be closed if nothing is in flight by then;
    /// `None` while a request is in flight.
    fn deadline(&self, limits: &ListenerLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some(self.base + limits.header_timeout);
        }
        match self.first_byte.load(Ordering::Acquire) {
            0 => Some(self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle_timeout),
            first => Some(self.at(first - 1) + limits.header_timeout),
        }
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        if state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.idle_since.store(state.now_ms(), Ordering::Release);
            state.first_byte.store(0, Ordering::Release);
            state.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// The connection's socket, noting when bytes arrive.
    struct WatchedIo {
        #[pin]
        inner: TcpStream,
        state: Arc<ConnState>,
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.inner.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.state.saw_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A service counting its requests in flight on the connection.
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = self.state.begin();
        TrackedFuture {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; hands the in-flight guard to the body.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(result.map(|response| {
            response.map(|body| TrackedBody {
                inner: body,
                _guard: guard,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body; the request stays in flight until it is dropped.
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Per-connection accept errors are skipped; others (out of file
/// descriptors…) are logged and retried after a pause, as axum does.
async fn accept_error(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::{ListenerLimits, serve_router};

    const SHORT: Duration = Duration::from_millis(300);

    /// A server with 300 ms header and idle timeouts; its address.
    async fn short_server() -> SocketAddr {
        let app =
            Router::new()
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(SHORT * 4).await;
                        "done"
                    }),
                )
                .route(
                    "/stream",
                    get(|| async {
                        let chunks = futures_util::stream::unfold(0u8, |n| async move {
                            if n == 4 {
                                return None;
                            }
                            tokio::time::sleep(SHORT * 2).await;
                            Some((
                                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")),
                                n + 1,
                            ))
                        });
                        axum::body::Body::from_stream(chunks)
                    }),
                )
                .route(
                    "/peer",
                    get(
                        |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                            SocketAddr,
                        >| async move { peer.to_string() },
                    ),
                );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ListenerLimits::default()
            .header_timeout(SHORT)
            .idle_timeout(SHORT);
        tokio::spawn(serve_router(listener, limits, app, std::future::pending()));
        addr
    }

    async fn get_to_end(addr: SocketAddr, path: &str) -> (String, SocketAddr) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
            .await
            .expect("an answer")
            .unwrap();
        (String::from_utf8_lossy(&raw).into_owned(), local)
    }

    #[tokio::test]
    async fn a_slow_handler_and_a_slow_stream_outlive_the_idle_timeout() {
        let addr = short_server().await;
        let (slow, _) = get_to_end(addr, "/slow").await;
        assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
        assert!(slow.ends_with("done"), "{slow}");
        let (stream, _) = get_to_end(addr, "/stream").await;
        assert!(stream.starts_with("HTTP/1.1 200"), "{stream}");
        assert_eq!(stream.matches("1\r\nx\r\n").count(), 4, "{stream}");
        assert!(stream.ends_with("0\r\n\r\n"), "the whole body: {stream}");
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let addr = short_server().await;
        let (answer, local) = get_to_end(addr, "/peer").await;
        assert!(answer.ends_with(&local.to_string()), "{answer}");
    }

    #[tokio::test]
    async fn an_idle_http2_connection_is_closed_too() {
        let addr = short_server().await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        let connection = tokio::spawn(connection);
        let request = http::Request::get(format!("http://{addr}/peer"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        // Nothing more is sent: the server closes the connection.
        tokio::time::timeout(Duration::from_secs(10), connection)
            .await
            .expect("the idle HTTP/2 connection was closed")
            .unwrap()
            .ok();
    }

    #[test]
    fn defaults_are_the_secure_ones() {
        let limits = ListenerLimits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_connections, 1024);
    }
}
