//! Forward auth (SPEC §10): one endpoint for nginx `auth_request`, Traefik
//! `ForwardAuth` and Envoy `ext_authz` (HTTP).
//!
//! The original method and URI come from `X-Original-Method` /
//! `X-Original-URI` (nginx), else `X-Forwarded-Method` / `X-Forwarded-Uri`
//! (Traefik), else the request's own method and the path after
//! `/v1/forward-auth` (Envoy). Those headers, and `X-Forwarded-For`, are
//! believed only from trusted proxies. Allowed: exactly 200 with the
//! `X-Keygate-*` identity headers (empty for a public rule). Denied: 401 or
//! 403 exactly as SPEC §3. The request body is never read.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};

use super::Gateway;
use crate::client_ip::{client_ip, peer_ip};
use crate::rejection::Rejection;

/// The path prefix of the endpoint.
pub const PREFIX: &str = "/v1/forward-auth";

/// The original method and URI, per the precedence above.
fn original(request: &Request, trusted: bool) -> Result<(Method, Uri), Rejection> {
    let headers = request.headers();
    if trusted {
        for (method_header, uri_header) in [
            ("x-original-method", "x-original-uri"),
            ("x-forwarded-method", "x-forwarded-uri"),
        ] {
            if let Some(uri) = headers.get(uri_header) {
                let uri = uri
                    .to_str()
                    .ok()
                    .and_then(|u| u.parse::<Uri>().ok())
                    .filter(|u| u.path().starts_with('/'))
                    .ok_or(Rejection::InvalidRequest)?;
                let method = match headers.get(method_header) {
                    Some(m) => {
                        Method::from_bytes(m.as_bytes()).map_err(|_| Rejection::InvalidRequest)?
                    }
                    None => request.method().clone(),
                };
                return Ok((method, uri));
            }
        }
    }
    // Envoy: the original request, its path after our prefix.
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let rest = path_and_query
        .strip_prefix(PREFIX)
        .unwrap_or(path_and_query);
    let rest = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_owned()
    };
    let uri = rest.parse::<Uri>().map_err(|_| Rejection::InvalidRequest)?;
    Ok((request.method().clone(), uri))
}

/// The handler, mounted at `/v1/forward-auth` and `/v1/forward-auth/{*rest}`
/// for every method.
#[utoipa::path(get, path = "/v1/forward-auth", tag = "gateway",
    description = "Any method; also `/v1/forward-auth/{path}` (Envoy). The original method and URI come from X-Original-Method/X-Original-URI (nginx), X-Forwarded-Method/X-Forwarded-Uri (Traefik), or the request itself (Envoy), believed only from trusted proxies.",
    responses(
        (status = 200, description = "Allowed; X-Keygate-Key-Id, X-Keygate-Owner, X-Keygate-Scopes and X-Keygate-Environment identify the key (empty for public rules)"),
        (status = 401, description = "No, or an invalid, key (SPEC §3)"),
        (status = 403, description = "IP not allowed or insufficient scope (SPEC §3)"),
        (status = 503, description = "The store is unavailable and the key is not cached"),
    ))]
pub async fn handler(State(gateway): State<Gateway>, request: Request) -> Response {
    let trusted_proxies = gateway.trusted_proxies();
    let peer_trusted = peer_ip(request.extensions())
        .is_some_and(|peer| trusted_proxies.iter().any(|net| net.contains(&peer)));
    let (method, uri) = match original(&request, peer_trusted) {
        Ok(original) => original,
        Err(rejection) => return deny(&gateway, &rejection),
    };
    let client = client_ip(request.headers(), request.extensions(), trusted_proxies);
    let decision = gateway
        .decide(&method, &uri, request.headers(), client)
        .await;
    match decision.identity() {
        Some(identity) => {
            let mut headers = HeaderMap::with_capacity(4);
            for (name, value) in identity {
                headers.insert(name, value);
            }
            (StatusCode::OK, headers).into_response()
        }
        None => match decision {
            super::Decision::Deny(rejection) => deny(&gateway, &rejection),
            super::Decision::Allow(_) => unreachable!("an allowed decision has identity headers"),
        },
    }
}

fn deny(gateway: &Gateway, rejection: &Rejection) -> Response {
    gateway.deny(rejection).map(axum::body::Body::from)
}
