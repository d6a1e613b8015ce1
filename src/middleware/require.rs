//! Scopes per route: [`RequireScopeLayer`], built by
//! [`Keygate::require`](crate::Keygate::require).
//!
//! It reads the [`AuthenticatedKey`] that [`ApiKeyLayer`](crate::ApiKeyLayer)
//! put in the request extensions and refuses the request with 403
//! `insufficient_scope` (and `WWW-Authenticate … scope="…"`) unless the
//! key's scopes satisfy the requirement. Without a key — the outer layer
//! missing or optional — it answers 401 `missing_token`: it fails closed.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::body::AuthBody;
use super::future::ResponseFuture;
use super::rejection::{RejectionResponder, is_grpc, refuse};
use crate::scope::Requirement;
use crate::verify::{AuthenticatedKey, Rejection};

/// Refuses keys whose scopes do not satisfy a requirement.
#[derive(Clone)]
#[must_use]
pub struct RequireScopeLayer {
    requirement: Arc<Requirement>,
    responder: Arc<dyn RejectionResponder>,
}

impl std::fmt::Debug for RequireScopeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireScopeLayer")
            .field("requirement", &self.requirement.to_string())
            .finish_non_exhaustive()
    }
}

impl RequireScopeLayer {
    pub(crate) fn new(
        requirement: Arc<Requirement>,
        responder: Arc<dyn RejectionResponder>,
    ) -> RequireScopeLayer {
        RequireScopeLayer {
            requirement,
            responder,
        }
    }

    /// The requirement enforced.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper, Scope, ScopeSet};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let layer = keygate.require("reports:read or reports:*")?;
    /// assert!(layer.requirement().is_satisfied_by(&ScopeSet::new([Scope::parse("reports:read")?])));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> RequireScope<S> {
        RequireScope {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequireScopeLayer`].
#[derive(Clone, Debug)]
pub struct RequireScope<S> {
    inner: S,
    layer: RequireScopeLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let rejection = match request.extensions().get::<AuthenticatedKey>() {
            None => Rejection::MissingToken,
            Some(key) if key.scopes().satisfies(&self.layer.requirement) => {
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            Some(key) => {
                tracing::debug!(
                    key = key.display_prefix(),
                    required = %self.layer.requirement,
                    "insufficient scope"
                );
                Rejection::InsufficientScope(self.layer.requirement.clone())
            }
        };
        ResponseFuture::rejected(refuse(
            &*self.layer.responder,
            &rejection,
            is_grpc(request.headers()),
        ))
    }
}
