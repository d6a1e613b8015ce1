//! [`ResponseFuture`]: the future of the middleware's services — the
//! inner service's response, a refusal answered at once, or (after a cache
//! miss) the authorization, then the inner service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::body::AuthBody;
use super::rejection::{RejectionResponder, refuse};
use crate::verify::{AuthenticatedKey, LimitHeaders, Refusal};

/// The authorization of a request that missed the cache, boxed behind a
/// name.
pub(crate) type AuthFuture =
    Pin<Box<dyn Future<Output = Result<AuthenticatedKey, Refusal>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`ApiKeyAuth`](super::ApiKeyAuth) and
    /// [`RequireScope`](super::RequireScope).
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
            responder: Arc<dyn RejectionResponder>,
            // Whether the request is gRPC (refused in the gRPC form).
            grpc: bool,
        },
        Inner {
            #[pin]
            future: S::Future,
            // The rate-limit headers to add to the response.
            limit: Option<LimitHeaders>,
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
    /// The inner service's response, with the headers of `limit` when the
    /// request was counted.
    pub(crate) fn inner(future: S::Future, limit: Option<LimitHeaders>) -> Self {
        ResponseFuture {
            state: State::Inner { future, limit },
        }
    }

    pub(crate) fn authenticating(
        auth: AuthFuture,
        request: Request<B>,
        service: S,
        responder: Arc<dyn RejectionResponder>,
        grpc: bool,
    ) -> Self {
        ResponseFuture {
            state: State::Authenticating {
                auth,
                request: Some(request),
                service: Some(service),
                responder,
                grpc,
            },
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
                    responder,
                    grpc,
                } => match ready!(auth.as_mut().poll(cx)) {
                    Ok(key) => {
                        let (Some(mut request), Some(mut service)) =
                            (request.take(), service.take())
                        else {
                            unreachable!("ResponseFuture polled after completion");
                        };
                        let limit = key.rate_limit_headers();
                        request.extensions_mut().insert(key);
                        let future = service.call(request);
                        this.state.set(State::Inner { future, limit });
                    }
                    Err(refusal) => {
                        let response = refuse(&**responder, refusal.rejection(), *grpc);
                        return Poll::Ready(Ok(response.map(AuthBody::rejection)));
                    }
                },
                StateProj::Inner { future, limit } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(limit) = limit.take() {
                        limit.insert(response.headers_mut());
                    }
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
