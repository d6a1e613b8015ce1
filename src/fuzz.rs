//! Entry points for the fuzz targets of `fuzz/` (feature `__fuzz`, never
//! enabled by a user): each exposes one crate-private parser, exactly as
//! the request path calls it, and returns what it found as plain values.
//! Not part of the public API: no stability promise, hidden from the docs.

use std::net::IpAddr;

use http::{HeaderMap, Uri};
use ipnet::IpNet;

use crate::request::{self, CredentialError, CredentialSource};

/// What credential extraction found on a request.
#[derive(Debug, PartialEq, Eq)]
pub enum CredentialOutcome {
    /// Exactly one credential: its text.
    Found(String),
    /// No credential in any source (401 `missing_token`).
    Missing,
    /// Ambiguous or malformed (400 `invalid_request`).
    InvalidRequest,
}

/// The one credential of a request, per `sources` (§3), as the layer,
/// forward auth, the proxy and gRPC extract it.
pub fn extract_credential(
    headers: &HeaderMap,
    uri: &Uri,
    sources: &[CredentialSource],
) -> CredentialOutcome {
    let reader = request::Reader::new(sources.to_vec(), Vec::new());
    match reader.credential(headers, uri) {
        Ok(credential) => CredentialOutcome::Found(credential.as_str().to_owned()),
        Err(CredentialError::Missing) => CredentialOutcome::Missing,
        Err(CredentialError::InvalidRequest) => CredentialOutcome::InvalidRequest,
    }
}

/// The client address behind a trusted `peer`: `X-Forwarded-For` walked
/// from the right past `trusted` hops; `None` when the deciding hop does
/// not parse.
pub fn forwarded_client(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> Option<IpAddr> {
    request::forwarded_client(headers, peer, trusted)
}

/// A request path checked and normalized as the rules judge it (§10a):
/// the canonically encoded path and its lowercased decoded segments, or
/// `None` when the path is refused before any rule.
#[cfg(feature = "gateway")]
pub fn normalize_path(raw: &str) -> Option<(String, Vec<String>)> {
    crate::gateway::NormalizedPath::parse(raw)
        .ok()
        .map(|path| (path.as_str().to_owned(), path.lowercase.clone()))
}

/// The original method and URI forward auth judges (§10, §10a): from the
/// nginx or Traefik headers (believed only when `trusted`), or the
/// request's own method and path after `/v1/forward-auth` (Envoy), per
/// `mode`. `None` is a 400 `invalid_request`.
#[cfg(feature = "gateway")]
pub fn forward_auth_original(
    method: http::Method,
    uri: Uri,
    headers: HeaderMap,
    mode: crate::gateway::ForwardAuthMode,
    trusted: bool,
) -> Option<(http::Method, Uri)> {
    let mut request = axum::extract::Request::new(axum::body::Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    crate::gateway::forward_auth::original(&request, mode, trusted).ok()
}

/// The Envoy `CheckRequest` message the gRPC `Check` server decodes.
#[cfg(feature = "grpc")]
pub use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

/// What the gRPC `Check` server reads from a `CheckRequest` (§12).
#[cfg(feature = "grpc")]
#[derive(Debug)]
pub struct CheckOriginal {
    /// The original method.
    pub method: http::Method,
    /// The original path and query.
    pub uri: Uri,
    /// The original headers, pseudo-headers left out.
    pub headers: HeaderMap,
    /// The client address as far as it can be believed.
    pub client: Option<IpAddr>,
}

/// The original request of a `CheckRequest` from `caller`, or `None` when
/// it is refused (400 `invalid_request`).
#[cfg(feature = "grpc")]
pub fn check_request(
    check: &CheckRequest,
    caller: Option<IpAddr>,
    trusted: &[IpNet],
) -> Option<CheckOriginal> {
    let original = crate::grpc::Original::parse(check).ok()?;
    let client = crate::grpc::client(check, &original.headers, caller, trusted);
    Some(CheckOriginal {
        method: original.method,
        uri: original.uri,
        headers: original.headers,
        client,
    })
}

/// The request bodies of the HTTP API (§9) that [`admin_body`] parses.
#[cfg(feature = "admin")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminBody {
    /// `POST /v1/keys`.
    CreateKey,
    /// `PATCH /v1/keys/{id}`.
    UpdateKey,
    /// `POST /v1/keys/{id}/revoke` (optional body).
    Revoke,
    /// `POST /v1/keys/{id}/rotate` (optional body).
    Rotate,
    /// `POST /v1/keys/{id}/credits`.
    Credits,
    /// `POST /v1/authcheck`.
    Authcheck,
    /// `POST /v1/verify`.
    Verify,
}

/// A body of `kind` with this `Content-Type`, read and parsed as its
/// handler does before touching any store: `Ok(())` when it is accepted,
/// else the error response (status and body bytes) the API would send.
#[cfg(feature = "admin")]
pub fn admin_body(
    kind: AdminBody,
    content_type: Option<http::HeaderValue>,
    body: &[u8],
) -> Result<(), (http::StatusCode, bytes::Bytes)> {
    crate::admin::fuzz_body(kind, content_type, body)
}
