//! The middleware: [`ApiKeyLayer`] and its service [`ApiKeyAuth`] (their
//! future is [`ResponseFuture`](super::ResponseFuture)).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use super::body::AuthBody;
use super::future::{AuthFuture, ResponseFuture};
use super::guard::Guard;
use super::rejection::{ResponderHandle, is_grpc, refuse};
use crate::request::CredentialError;
use crate::scope::{Requirement, RequirementError};
use crate::verify::{AuthenticatedKey, Origin, Presented, Refusal, Rejection, Verifier};

/// Authenticates every request with keygate. Build it with
/// [`Keygate::layer`](crate::Keygate::layer).
///
/// For every request: extract the credential (no store access), and hand
/// it with the client's address to [`Verifier::authorize`](crate::Verifier::authorize)
/// (the token is parsed once; the cache, then the store; the key's IP
/// lists; usage tracking); insert the [`AuthenticatedKey`] into the request
/// extensions and call the inner service. Every refusal is a response
/// (JSON, see [`RejectionResponder`](crate::RejectionResponder)), never an
/// error.
///
/// # Rate limits
///
/// The layer takes the request's [`cost`](ApiKeyLayer::cost) (1 unless
/// set) from every one of the key's rate limits — or, when one lacks
/// budget, from none, and answers 429 `rate_limited` with `Retry-After`.
/// Every response to a counted request carries `RateLimit-Policy` and
/// `RateLimit` for the key's tightest limit (draft-ietf-httpapi-ratelimit-headers),
/// and the handler finds that limit's state in
/// [`AuthenticatedKey::rate_limit`].
///
/// The charge comes after the key's IP lists and after the layer's own
/// [`require`](ApiKeyLayer::require)ment, but before any inner
/// [`RequireScopeLayer`](crate::RequireScopeLayer): behind one outer layer,
/// a request a route refuses for its scopes has already been counted. For
/// a per-route cost, or for scopes checked before the count, put the layer
/// on the route itself with its requirement and cost:
///
/// ```
/// use axum::{Router, routing::post};
/// use keygate::{Keygate, MemoryStore, Pepper};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let app: Router = Router::new().route(
///     "/reports",
///     post(|| async { "queued" }).route_layer(keygate.layer().require("reports:write")?.cost(10)),
/// );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
/// Whatever the cache can answer — a cached key, a remembered unknown id, a
/// token refused offline — is answered inside `call`, without a future or
/// an allocation; only a cache miss builds the future that asks the store.
///
/// # Example
///
/// ```
/// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
/// use tower::{ServiceBuilder, ServiceExt};
/// use http::{Request, Response};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let token = keygate.keys().create(NewKey::new("alice", "ci")).await?.token;
///
/// let service = ServiceBuilder::new().layer(keygate.layer()).service_fn(
///     |req: Request<String>| async move {
///         let key = req.extensions().get::<keygate::AuthenticatedKey>().unwrap();
///         Ok::<_, std::convert::Infallible>(Response::new(key.owner().to_string()))
///     },
/// );
///
/// let request = Request::builder()
///     .header("authorization", format!("Bearer {}", token.expose()))
///     .body(String::new())?;
/// let response = service.clone().oneshot(request).await?;
/// assert_eq!(response.status(), 200);
///
/// let response = service.oneshot(Request::new(String::new())).await?;
/// assert_eq!(response.status(), 401);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ApiKeyLayer {
    guard: Arc<Guard>,
    optional: bool,
    requirement: Option<Arc<Requirement>>,
    cost: u64,
}

impl ApiKeyLayer {
    pub(crate) fn new(guard: Arc<Guard>) -> ApiKeyLayer {
        ApiKeyLayer {
            guard,
            optional: false,
            requirement: None,
            cost: 1,
        }
    }

    /// Refuses (403 `insufficient_scope`) a key whose scopes do not satisfy
    /// `expr`, checked before the request is counted against the key's
    /// rate limits. Default: any valid key.
    ///
    /// # Errors
    ///
    /// [`RequirementError`] when `expr` is not a valid requirement.
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{Request, StatusCode};
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let token = keygate.keys().create(NewKey::new("alice", "ci").scopes(["reports:read"])).await?.token;
    /// let app = Router::new()
    ///     .route("/reports", get(|| async { "ok" }))
    ///     .layer(keygate.layer().require("reports:write")?);
    /// let request = Request::get("/reports").header("x-api-key", token.expose()).body(Body::empty())?;
    /// assert_eq!(app.oneshot(request).await?.status(), StatusCode::FORBIDDEN);
    /// # Ok(())
    /// # }
    /// ```
    pub fn require(mut self, expr: &str) -> Result<ApiKeyLayer, RequirementError> {
        self.requirement = Some(Arc::new(Requirement::parse(expr)?));
        Ok(self)
    }

    /// What one request costs against the key's rate limits: taken from
    /// every limit, all or nothing. Default: 1; 0 does not count the
    /// request at all (no bucket touched, no rate-limit headers).
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{Request, StatusCode};
    /// use keygate::{Credits, Keygate, MemoryStore, NewKey, Pepper};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(5)?)).await?;
    /// let app = Router::new().route("/export", get(|| async { "ok" })).layer(keygate.layer().cost(5));
    /// let call = || Request::get("/export").header("x-api-key", created.token.expose()).body(Body::empty());
    /// assert_eq!(app.clone().oneshot(call()?).await?.status(), StatusCode::OK);
    /// assert_eq!(app.oneshot(call()?).await?.status(), StatusCode::TOO_MANY_REQUESTS);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cost(mut self, cost: u64) -> ApiKeyLayer {
        self.cost = cost;
        self
    }

    /// Lets requests without any credential through, unauthenticated (use
    /// `Option<AuthenticatedKey>` in handlers). A credential that is
    /// present but invalid is still refused.
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{Request, StatusCode};
    /// use keygate::{AuthenticatedKey, Keygate, MemoryStore, Pepper};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let app = Router::new()
    ///     .route("/", get(|key: Option<AuthenticatedKey>| async move { key.map_or("anonymous", |_| "known") }))
    ///     .layer(keygate.layer().optional());
    /// let anonymous = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
    /// assert_eq!(anonymous.status(), StatusCode::OK);
    /// // A credential that is there but bad is still refused.
    /// let bad = app.oneshot(Request::get("/").header("x-api-key", "kg_live_bad").body(Body::empty())?).await?;
    /// assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    /// # Ok(())
    /// # }
    /// ```
    pub fn optional(mut self) -> ApiKeyLayer {
        self.optional = true;
        self
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyAuth<S>;

    fn layer(&self, inner: S) -> ApiKeyAuth<S> {
        ApiKeyAuth {
            inner,
            guard: self.guard.clone(),
            optional: self.optional,
            requirement: self.requirement.clone(),
            cost: self.cost,
        }
    }
}

/// The service of [`ApiKeyLayer`].
#[derive(Clone, Debug)]
pub struct ApiKeyAuth<S> {
    inner: S,
    guard: Arc<Guard>,
    optional: bool,
    requirement: Option<Arc<Requirement>>,
    cost: u64,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let guard = &*self.guard;
        // A gRPC request is refused in the gRPC trailers-only form: asked
        // only when refusing, or before the request moves into a miss.
        let grpc = |request: &Request<ReqBody>| is_grpc(request.headers());
        let credential = match guard.reader.credential(request.headers(), request.uri()) {
            Ok(credential) => credential,
            Err(CredentialError::Missing) if self.optional => {
                let mut request = request;
                // So that extractors refusing the missing key answer like we do.
                request
                    .extensions_mut()
                    .insert(ResponderHandle(guard.responder.clone()));
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            Err(CredentialError::Missing) => {
                guard.verifier.count_refusal(&Rejection::MissingToken);
                return ResponseFuture::rejected(refuse(
                    &*guard.responder,
                    &Rejection::MissingToken,
                    grpc(&request),
                ));
            }
            Err(CredentialError::InvalidRequest) => {
                guard.verifier.count_refusal(&Rejection::InvalidRequest);
                return ResponseFuture::rejected(refuse(
                    &*guard.responder,
                    &Rejection::InvalidRequest,
                    grpc(&request),
                ));
            }
        };
        let origin = guard.reader.origin(request.headers(), request.extensions());
        // No span at all when no subscriber wants INFO: even a disabled
        // span is recorded into and logged on drop (with `tracing`'s `log`
        // feature, which a dependency may turn on).
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "keygate.authenticate",
                key = tracing::field::Empty,
                outcome = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        // The token's one parse. A cached key, or a token refused offline,
        // is answered right here: no future, no allocation, nothing copied
        // from the request, and the ready inner service is called directly.
        let token = credential.as_str();
        let verifier = &guard.verifier;
        let requirement = self.requirement.as_ref();
        let (presented, result) = match verifier.present(token) {
            Err(reason) => {
                let refusal = Refusal::new(Rejection::InvalidToken(reason));
                verifier.count_refusal(refusal.rejection());
                (None, Err(refusal))
            }
            Ok(presented) => {
                match verifier.authorize_cached(
                    token,
                    &presented,
                    origin,
                    requirement,
                    self.cost,
                    Instant::now(),
                ) {
                    Some(result) => (Some(presented), result),
                    None => {
                        let credential = credential.into_owned();
                        let charge = Charge {
                            origin,
                            requirement: self.requirement.clone(),
                            cost: self.cost,
                        };
                        let auth = missed(verifier.clone(), credential, presented, charge, span);
                        // The inner service was driven to readiness in
                        // `poll_ready`; keep that one for this request and
                        // leave a fresh clone in `self`. See
                        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
                        let clone = self.inner.clone();
                        let ready = std::mem::replace(&mut self.inner, clone);
                        let grpc = grpc(&request);
                        return ResponseFuture::authenticating(
                            auth,
                            request,
                            ready,
                            guard.responder.clone(),
                            grpc,
                        );
                    }
                }
            }
        };
        {
            // Entered only when someone listens: a span nobody wants still
            // looks for a `log` logger on every enter and exit.
            let _entered = (!span.is_disabled()).then(|| span.enter());
            trace_outcome(verifier, presented.as_ref(), &result, &span);
        }
        match result {
            Ok(key) => {
                let limit = key.rate_limit_headers();
                let mut request = request;
                request.extensions_mut().insert(key);
                ResponseFuture::inner(self.inner.call(request), limit)
            }
            Err(refusal) => ResponseFuture::rejected(refuse(
                &*guard.responder,
                refusal.rejection(),
                grpc(&request),
            )),
        }
    }
}

/// The authorization of a token the cache could not answer: its parse
/// (`presented`) goes along, so the token is not parsed again.
/// What a request missing the cache is checked and charged with.
struct Charge {
    origin: Origin,
    requirement: Option<Arc<Requirement>>,
    cost: u64,
}

fn missed(
    verifier: Verifier,
    credential: crate::request::Credential<'static>,
    presented: Presented,
    charge: Charge,
    span: tracing::Span,
) -> AuthFuture {
    Box::pin(
        async move {
            let token = credential.as_str();
            let result = verifier
                .authorize_missed(
                    token,
                    presented,
                    charge.origin,
                    charge.requirement.as_ref(),
                    charge.cost,
                )
                .await;
            trace_outcome(
                &verifier,
                Some(&presented),
                &result,
                &tracing::Span::current(),
            );
            result
        }
        .instrument(span),
    )
}

/// Records the outcome on the `keygate.authenticate` span (the key's
/// display prefix, never the token) and logs it at DEBUG.
fn trace_outcome(
    verifier: &Verifier,
    presented: Option<&Presented>,
    result: &Result<AuthenticatedKey, Refusal>,
    span: &tracing::Span,
) {
    // Recording costs even on a span nobody listens to.
    let listening = !span.is_disabled();
    match result {
        Ok(key) => {
            if listening {
                span.record("key", key.display_prefix());
                span.record("outcome", "authenticated");
            }
            tracing::debug!("request authenticated");
        }
        Err(refusal) => {
            let rejection = refusal.rejection();
            // Naming the key costs an allocation: only when someone is
            // listening.
            if listening {
                if let Some(prefix) = presented.and_then(|p| verifier.display_prefix(p)) {
                    span.record("key", prefix.as_str());
                }
                span.record("outcome", rejection.code());
            }
            if let Rejection::InvalidToken(reason) = rejection {
                tracing::debug!(reason = reason.as_str(), "request refused");
            } else {
                tracing::debug!("request refused");
            }
        }
    }
}
