//! [`RulesLayer`]: route rules in front of any service — for tonic, rules
//! per gRPC method (`/package.Service/Method`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::gateway::{Decision, Gateway};
use crate::middleware::{AuthBody, grpc_form, is_grpc};
use crate::request::client_ip;
use crate::verify::Rejection;

/// Applies a [`Gateway`]'s rules to every request, and refuses what they
/// refuse — requirements per gRPC method when put on a tonic server.
/// Build it with [`RulesLayer::new`].
///
/// Each request is decided as forward auth decides it (the rules on its
/// path, then the credential, the key, its IP lists, the rule's scopes,
/// the key's limits and the rule's cost); an allowed key is inserted into
/// the request extensions as an [`AuthenticatedKey`](crate::AuthenticatedKey)
/// (a tonic handler finds it in `request.extensions()`); a public rule
/// lets the request through without one. A gRPC request
/// (`content-type: application/grpc…`) is refused with a gRPC
/// trailers-only response (`grpc-status`, `grpc-message`), any other
/// with the HTTP refusal.
///
/// gRPC paths are `/package.Service/Method`; rules match them like any
/// path, `/package.Service/*` every method of a service.
///
/// # Example
///
/// ```
/// use keygate::gateway::{Gateway, Rules};
/// use keygate::{Keygate, MemoryStore, NewKey, Pepper, RulesLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let token = keygate
///     .keys()
///     .create(NewKey::new("alice", "ci").scopes(["greeter:read"]))
///     .await?
///     .token;
/// let rules = Rules::parse_toml(
///     r#"
///     [[rule]]
///     path = "/demo.Greeter/*"
///     require = "greeter:write"
///     "#,
/// )?;
/// let service = ServiceBuilder::new()
///     .layer(RulesLayer::new(Gateway::new(keygate, rules)))
///     .service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     });
/// let request = http::Request::post("/demo.Greeter/SayHello")
///     .header("content-type", "application/grpc")
///     .header("authorization", format!("Bearer {}", token.expose()))
///     .body(String::new())?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "7"); // PERMISSION_DENIED
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RulesLayer {
    gateway: Gateway,
}

impl RulesLayer {
    /// A layer applying `gateway`'s rules.
    pub fn new(gateway: Gateway) -> RulesLayer {
        RulesLayer { gateway }
    }
}

impl<S> Layer<S> for RulesLayer {
    type Service = RulesService<S>;

    fn layer(&self, inner: S) -> RulesService<S> {
        RulesService {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

/// The service of [`RulesLayer`].
#[derive(Clone, Debug)]
pub struct RulesService<S> {
    inner: S,
    gateway: Gateway,
}

/// The response future of [`RulesService`].
pub type RulesFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<AuthBody<B>>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RulesService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = RulesFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The ready inner service goes with this request; a fresh clone
        // stays. See
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gateway = self.gateway.clone();
        Box::pin(async move {
            let client = client_ip(
                request.headers(),
                request.extensions(),
                gateway.trusted_proxies(),
            );
            let decision = gateway
                .decide(request.method(), request.uri(), request.headers(), client)
                .await;
            let grpc = is_grpc(request.headers());
            let refusal = match &decision {
                Decision::Allow(key) => {
                    let limit = decision.rate_limit_headers();
                    if let Some(key) = key {
                        request.extensions_mut().insert(key.clone());
                    }
                    let mut response = inner.call(request).await?;
                    if let Some(limit) = limit {
                        limit.insert(response.headers_mut());
                    }
                    return Ok(response.map(AuthBody::inner));
                }
                _ => gateway
                    .refusal(&decision)
                    .unwrap_or_else(|| gateway.deny(&Rejection::InvalidPath)),
            };
            let refusal = match (grpc, decision.grpc_status()) {
                (true, Some((code, message))) => grpc_form(refusal, code, message),
                _ => refusal,
            };
            Ok(refusal.map(AuthBody::rejection))
        })
    }
}
