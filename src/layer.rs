//! The middleware: [`ApiKeyLayer`], its service [`ApiKeyAuth`] and
//! [`ResponseFuture`].
//!
//! For every request: extract the credential (no store access), verify it
//! through the cache, check the key's IP lists against the client address,
//! note the use for background tracking, insert the
//! [`AuthenticatedKey`] into the request extensions and call the inner
//! service. Every refusal is a response (SPEC §3), never an error.
//!
//! Whatever the cache can answer — a cached key, a remembered unknown id, a
//! token refused offline — is answered inside `call`, without a future or
//! an allocation; only a cache miss builds the future that asks the store.
//!
//! # Example
//!
//! ```
//! use keygate::{Keygate, MemoryStore, NewKey, Pepper};
//! use tower::{ServiceBuilder, ServiceExt};
//! use http::{Request, Response};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()?;
//! let token = keygate.keys().create(NewKey::new("alice", "ci")).await?.token;
//!
//! let service = ServiceBuilder::new().layer(keygate.layer()).service_fn(
//!     |req: Request<String>| async move {
//!         let key = req.extensions().get::<keygate::AuthenticatedKey>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(key.owner().to_string()))
//!     },
//! );
//!
//! let request = Request::builder()
//!     .header("authorization", format!("Bearer {}", token.expose()))
//!     .body(String::new())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//!
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), 401);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::body::AuthBody;
use crate::client_ip::client_ip;
use crate::credentials::{self, CredentialError};
use crate::keygate::Keygate;
use crate::rejection::{Rejection, ResponderHandle};
use crate::validator::AuthenticatedKey;

/// Authenticates every request with keygate. Build it with
/// [`Keygate::layer`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ApiKeyLayer {
    gate: Keygate,
    optional: bool,
}

impl ApiKeyLayer {
    pub(crate) fn new(gate: Keygate) -> ApiKeyLayer {
        ApiKeyLayer {
            gate,
            optional: false,
        }
    }

    /// Lets requests without any credential through, unauthenticated (use
    /// `Option<AuthenticatedKey>` in handlers). A credential that is
    /// present but invalid is still refused.
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
            gate: self.gate.clone(),
            optional: self.optional,
        }
    }
}

/// The service of [`ApiKeyLayer`].
#[derive(Clone, Debug)]
pub struct ApiKeyAuth<S> {
    inner: S,
    gate: Keygate,
    optional: bool,
}

/// The authentication step of a request that missed the cache, boxed
/// behind a name.
type AuthFuture = Pin<Box<dyn Future<Output = Result<AuthenticatedKey, Rejection>> + Send>>;

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
        let inner = &self.gate.inner;
        let credential =
            match credentials::extract(request.headers(), request.uri(), &inner.sources) {
                Ok(credential) => credential,
                Err(CredentialError::Missing) if self.optional => {
                    let mut request = request;
                    // So that extractors refusing the missing key answer like we do.
                    request
                        .extensions_mut()
                        .insert(ResponderHandle(inner.responder.clone()));
                    return ResponseFuture::inner(self.inner.call(request));
                }
                Err(CredentialError::Missing) => {
                    return ResponseFuture::rejected(
                        inner.responder.respond(&Rejection::MissingToken),
                    );
                }
                Err(CredentialError::InvalidRequest) => {
                    return ResponseFuture::rejected(
                        inner.responder.respond(&Rejection::InvalidRequest),
                    );
                }
            };
        let client = client_ip(
            request.headers(),
            request.extensions(),
            &inner.trusted_proxies,
        );
        let span = tracing::info_span!(
            "keygate.authenticate",
            key = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        // A cached key, or a token refused offline, is answered right here:
        // no future, no allocation, nothing copied from the request, and the
        // ready inner service is called directly.
        let token = credential.as_str();
        if let Some(result) = self.gate.authenticate_cached(token, client) {
            {
                // Entered only when someone listens: a span nobody wants still
                // looks for a `log` logger on every enter and exit.
                let _entered = (!span.is_disabled()).then(|| span.enter());
                trace_outcome(&self.gate, token, &result, &span);
            }
            return match result {
                Ok(key) => {
                    let mut request = request;
                    request.extensions_mut().insert(key);
                    ResponseFuture::inner(self.inner.call(request))
                }
                Err(rejection) => ResponseFuture::rejected(inner.responder.respond(&rejection)),
            };
        }
        let credential = credential.into_owned();
        let gate = self.gate.clone();
        let auth: AuthFuture = Box::pin(
            async move {
                let result = gate.authenticate_missed(credential.as_str(), client).await;
                trace_outcome(
                    &gate,
                    credential.as_str(),
                    &result,
                    &tracing::Span::current(),
                );
                result
            }
            .instrument(span),
        );
        // The inner service was driven to readiness in `poll_ready`; keep that
        // one for this request and leave a fresh clone in `self`. See
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Authenticating {
                auth,
                request: Some(request),
                service: Some(ready),
                gate: self.gate.clone(),
            },
        }
    }
}

/// Records the outcome on the `keygate.authenticate` span (the key's
/// display prefix, never the token) and logs it at DEBUG.
fn trace_outcome(
    gate: &Keygate,
    token: &str,
    result: &Result<AuthenticatedKey, Rejection>,
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
        Err(rejection) => {
            // Naming the key costs a parse and an allocation: only when
            // someone is listening.
            if listening {
                if let Ok(token) = gate.token_format().parse(token) {
                    let prefix = gate
                        .token_format()
                        .display_prefix(token.environment(), token.id());
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

pin_project_lite::pin_project! {
    /// The response future of [`ApiKeyAuth`] and
    /// [`RequireScope`](crate::require::RequireScope).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Authenticating {
            auth: AuthFuture,
            request: Option<Request<B>>,
            service: Option<S>,
            gate: Keygate,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Inner { future },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<AuthBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    auth,
                    request,
                    service,
                    gate,
                } => match ready!(auth.as_mut().poll(cx)) {
                    Ok(key) => {
                        let (Some(mut request), Some(mut service)) =
                            (request.take(), service.take())
                        else {
                            unreachable!("ResponseFuture polled after completion");
                        };
                        request.extensions_mut().insert(key);
                        let future = service.call(request);
                        this.state.set(State::Inner { future });
                    }
                    Err(rejection) => {
                        let response = gate.inner.responder.respond(&rejection);
                        return Poll::Ready(Ok(response.map(AuthBody::rejection)));
                    }
                },
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(AuthBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(AuthBody::rejection)));
                }
            }
        }
    }
}
