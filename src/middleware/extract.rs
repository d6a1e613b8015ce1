//! axum extractors (feature `axum`).
//!
//! `AuthenticatedKey` extracts the key that [`ApiKeyLayer`](crate::ApiKeyLayer)
//! authenticated, answering 401 `missing_token` when there is none (for
//! example on a route of an `optional()` layer). `Option<AuthenticatedKey>`
//! never fails.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::rejection::{DefaultResponder, RejectionResponder, ResponderHandle};
use crate::verify::{AuthenticatedKey, Rejection};

/// The rejection of the `AuthenticatedKey` extractor: 401 `missing_token`,
/// from the keygate's responder when the request passed an optional layer.
pub struct MissingKey(http::Response<bytes::Bytes>);

impl std::fmt::Debug for MissingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MissingKey")
    }
}

impl MissingKey {
    fn new(parts: &Parts) -> MissingKey {
        let response = match parts.extensions.get::<ResponderHandle>() {
            Some(ResponderHandle(responder)) => responder.respond(&Rejection::MissingToken),
            None => DefaultResponder::new("keygate")
                .unwrap_or_else(|_| unreachable!("\"keygate\" is a valid realm"))
                .respond(&Rejection::MissingToken),
        };
        MissingKey(response)
    }
}

impl IntoResponse for MissingKey {
    fn into_response(self) -> Response {
        self.0.map(axum::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedKey {
    type Rejection = MissingKey;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, MissingKey> {
        parts
            .extensions
            .get::<AuthenticatedKey>()
            .cloned()
            .ok_or_else(|| MissingKey::new(parts))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<AuthenticatedKey>().cloned())
    }
}
