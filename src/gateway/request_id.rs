//! Request ids: [`RequestIdLayer`] gives every request an `X-Request-Id` —
//! the one a trusted proxy sent, when it is acceptable, or a fresh UUID v7
//! — puts it in the request (header and extensions), runs the request
//! inside a tracing span carrying it (so every log line of the request
//! names it), and returns it on the response.
//!
//! # Example
//!
//! ```
//! use keygate::gateway::{REQUEST_ID_HEADER, RequestId, RequestIdLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new(Vec::new())) // no trusted proxy: always generated
//!     .service_fn(|request: http::Request<String>| async move {
//!         let id = request.extensions().get::<RequestId>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(id.as_str().to_owned()))
//!     });
//! let request = http::Request::get("/").header(REQUEST_ID_HEADER, "from-the-client").body(String::new())?;
//! let response = app.oneshot(request).await?;
//! let id = response.headers()[REQUEST_ID_HEADER].to_str()?.to_owned();
//! assert_ne!(id, "from-the-client", "only trusted proxies choose the id");
//! assert_eq!(response.body(), &id);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response};
use ipnet::IpNet;
use tracing::Instrument;

use crate::audit::valid_request_id;
use crate::request::peer_ip;

/// The header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request's id: visible ASCII, 1 to
/// [`MAX_REQUEST_ID_LEN`](crate::MAX_REQUEST_ID_LEN) bytes. In the request
/// extensions of every request that went through [`RequestIdLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A fresh id: a UUID v7 (time-ordered), e.g.
    /// `0193a7c4-5b1e-7cc0-9d2e-3f4a5b6c7d8e`.
    ///
    /// ```
    /// use keygate::gateway::RequestId;
    ///
    /// let (a, b) = (RequestId::generate(), RequestId::generate());
    /// assert_eq!(a.as_str().len(), 36); // a UUID
    /// assert_eq!(&a.as_str()[14..15], "7"); // version 7: time-ordered
    /// assert_ne!(a.as_str(), b.as_str());
    /// ```
    pub fn generate() -> RequestId {
        let text = uuid::Uuid::now_v7().hyphenated().to_string();
        // A hyphenated UUID is always a valid header value.
        RequestId(HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("-")))
    }

    /// `text` as an id, when it is an acceptable one (see
    /// [`valid_request_id`](crate::valid_request_id)).
    ///
    /// ```
    /// use keygate::gateway::RequestId;
    ///
    /// assert_eq!(RequestId::parse("req-42").map(|id| id.as_str().to_owned()).as_deref(), Some("req-42"));
    /// assert!(RequestId::parse("two words").is_none());
    /// assert!(RequestId::parse(&"x".repeat(129)).is_none());
    /// ```
    pub fn parse(text: &str) -> Option<RequestId> {
        if !valid_request_id(text) {
            return None;
        }
        HeaderValue::from_str(text).ok().map(RequestId)
    }

    /// The id of a request whose headers are `headers`: the one
    /// `X-Request-Id` sent when `from_trusted_proxy` and it is acceptable
    /// (exactly one header, visible ASCII, bounded), otherwise a fresh one.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use keygate::gateway::RequestId;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-request-id", "from-nginx".parse().unwrap());
    /// assert_eq!(RequestId::for_request(&headers, true).as_str(), "from-nginx");
    /// assert_ne!(RequestId::for_request(&headers, false).as_str(), "from-nginx"); // a client's: replaced
    /// ```
    pub fn for_request(headers: &HeaderMap, from_trusted_proxy: bool) -> RequestId {
        if from_trusted_proxy {
            let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
            if let (Some(value), None) = (values.next(), values.next())
                && let Some(id) = value.to_str().ok().and_then(RequestId::parse)
            {
                return id;
            }
        }
        RequestId::generate()
    }

    /// The id as text.
    ///
    /// ```
    /// use keygate::gateway::RequestId;
    ///
    /// assert_eq!(RequestId::parse("abc").unwrap().as_str(), "abc");
    /// ```
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    ///
    /// ```
    /// use keygate::gateway::RequestId;
    ///
    /// assert_eq!(RequestId::parse("abc").unwrap().header_value(), "abc");
    /// ```
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The tracing span a request with this id runs in: `request`, with
    /// the fields `request_id` and `key_id` (recorded once the gateway
    /// knows the key).
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "request",
            request_id = %self.as_str(),
            key_id = tracing::field::Empty
        )
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tower layer giving every request its [`RequestId`]: the one a
/// trusted proxy sent, when acceptable, or a fresh UUID v7 — set in the
/// request's `X-Request-Id` and extensions, on the response, and on the
/// tracing span the request runs in ([`RequestId::span`]). The id in a
/// request's `X-Request-Id` is kept only when the TCP peer (axum's
/// `ConnectInfo` or [`PeerAddr`](crate::PeerAddr)) is in
/// `trusted_proxies`; any other `X-Request-Id` is replaced before the
/// inner service sees the request.
///
/// # Example
///
/// ```
/// use keygate::gateway::{REQUEST_ID_HEADER, RequestId, RequestIdLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = ServiceBuilder::new()
///     .layer(RequestIdLayer::new(Vec::new())) // no trusted proxy: always generated
///     .service_fn(|request: http::Request<String>| async move {
///         let id = request.extensions().get::<RequestId>().unwrap().clone();
///         Ok::<_, std::convert::Infallible>(http::Response::new(id.as_str().to_owned()))
///     });
/// let request = http::Request::get("/").header(REQUEST_ID_HEADER, "from-the-client").body(String::new())?;
/// let response = app.oneshot(request).await?;
/// let id = response.headers()[REQUEST_ID_HEADER].to_str()?.to_owned();
/// assert_ne!(id, "from-the-client", "only trusted proxies choose the id");
/// assert_eq!(response.body(), &id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RequestIdLayer {
    trusted: Arc<[IpNet]>,
}

impl RequestIdLayer {
    /// A layer trusting the request ids of peers in `trusted_proxies`.
    ///
    /// ```
    /// use keygate::gateway::RequestIdLayer;
    ///
    /// let layer = RequestIdLayer::new(vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    /// let _ = layer.clone(); // a layer is cheap to clone
    /// assert!(format!("{layer:?}").contains("10.0.0.0/8"));
    /// ```
    pub fn new(trusted_proxies: impl Into<Vec<IpNet>>) -> RequestIdLayer {
        RequestIdLayer {
            trusted: trusted_proxies.into().into(),
        }
    }
}

impl<S> tower_layer::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> RequestIdService<S> {
        RequestIdService {
            inner,
            trusted: self.trusted.clone(),
        }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
    trusted: Arc<[IpNet]>,
}

impl<S, B, R> tower_service::Service<Request<B>> for RequestIdService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> RequestIdFuture<S::Future> {
        let trusted = peer_ip(request.extensions())
            .is_some_and(|peer| self.trusted.iter().any(|net| net.contains(&peer)));
        let id = RequestId::for_request(request.headers(), trusted);
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, id.header_value().clone());
        let span = id.span();
        request.extensions_mut().insert(id.clone());
        // The service that was driven to readiness moves into the call; a
        // clone stays behind (tower-service docs, "Be careful when cloning
        // inner services").
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = span.in_scope(|| inner.call(request)).instrument(span);
        RequestIdFuture {
            inner: future,
            id: Some(id.0),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestIdService`]: the inner response, with
    /// `X-Request-Id` set.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: tracing::instrument::Instrumented<F>,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(REQUEST_ID_HEADER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_trusted_proxys_id_is_kept_and_anyone_elses_replaced() {
        let sent = headers(&["abc-123"]);
        assert_eq!(RequestId::for_request(&sent, true).as_str(), "abc-123");
        assert_ne!(RequestId::for_request(&sent, false).as_str(), "abc-123");
    }

    #[test]
    fn an_unacceptable_id_from_a_trusted_proxy_is_replaced() {
        let long = "a".repeat(129);
        for bad in [&["a b"][..], &["x", "y"], &[""], &[long.as_str()]] {
            let id = RequestId::for_request(&headers(bad), true);
            assert!(
                uuid::Uuid::try_parse(id.as_str()).is_ok(),
                "{bad:?} -> {id}"
            );
        }
    }

    #[test]
    fn generated_ids_are_uuid_v7() {
        let id = RequestId::generate();
        let uuid = uuid::Uuid::try_parse(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_ne!(RequestId::generate(), id);
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_valid_ids(s in "[ -~\u{e9}]{0,140}") {
            let parsed = RequestId::parse(&s);
            prop_assert_eq!(parsed.is_some(), valid_request_id(&s));
            if let Some(id) = parsed {
                prop_assert_eq!(id.as_str(), s.as_str());
            }
        }
    }
}
