//! Forward auth: one endpoint for nginx `auth_request`,
//! Traefik `ForwardAuth` and Envoy `ext_authz` (HTTP).
//!
//! Where the original method and URI come from is configured, not guessed
//! ([`ForwardAuthMode`], `keygate serve --forward-auth`):
//!
//! | mode | reads |
//! |---|---|
//! | `nginx` | only `X-Original-Method` / `X-Original-URI` |
//! | `traefik` | only `X-Forwarded-Method` / `X-Forwarded-Uri` |
//! | `envoy` | only the request's own method and its path after `/v1/forward-auth` |
//! | `auto` (default) | every convention present; 400 `invalid_request` when two disagree |
//!
//! The headers are believed only from trusted proxies: from any other peer
//! they are ignored (`auto`) or the request is refused with 400
//! `invalid_request` (`nginx`, `traefik`: without them there is nothing to
//! judge). A convention is present when its URI or its method header is;
//! its URI header is then required, and without its method header the
//! request's own method is used. The same header sent twice is a 400. In
//! `auto`, the Envoy form counts when there is a path after the prefix, or
//! when no header convention is present (then it is `/`). Methods and
//! URIs (path and query, as sent) must be equal for conventions to agree.
//!
//! Then the path is checked and judged as everywhere in the gateway (see
//! [`Rules`](super::Rules)): refused paths are 400 `invalid_request`,
//! `CONNECT` and `TRACE` 405, no matching rule 403 `forbidden`.
//! `X-Forwarded-For` is believed only from trusted proxies; when the hop
//! that decides the client cannot be parsed, the client is unknown and
//! keys with IP lists are refused.
//!
//! Allowed: exactly 200 with the `X-Keygate-*` identity headers (empty for
//! a public rule). Denied: 401 or 403 exactly as the middleware answers. The request body
//! is never read. Each decision writes one access-log line (target
//! `keygate::access`, at info): method, path, status, outcome code, key id
//! when known, latency — never the token.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};

use super::{Decision, ForwardAuthMode, Gateway, access_log};
use crate::request::{client_ip, peer_ip};
use crate::verify::Rejection;

/// The path prefix of the endpoint.
pub const PREFIX: &str = "/v1/forward-auth";

const NGINX: (&str, &str) = ("x-original-method", "x-original-uri");
const TRAEFIK: (&str, &str) = ("x-forwarded-method", "x-forwarded-uri");

/// The original method and URI per one header convention: `None` when
/// neither header is there.
fn from_headers(
    request: &Request,
    (method_header, uri_header): (&str, &str),
) -> Option<Result<(Method, Uri), Rejection>> {
    let headers = request.headers();
    if !headers.contains_key(method_header) && !headers.contains_key(uri_header) {
        return None;
    }
    let single = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            _ => Err(Rejection::InvalidPath),
        }
    };
    Some((|| {
        // A `#` is refused: `Uri` would drop the fragment, judging
        // `/public` for `/public#/../admin` (see `grpc::request`).
        let uri = single(uri_header)?
            .and_then(|u| u.to_str().ok())
            .filter(|u| !u.contains('#'))
            .and_then(|u| u.parse::<Uri>().ok())
            .filter(|u| u.scheme().is_none() && u.path().starts_with('/'))
            .ok_or(Rejection::InvalidPath)?;
        let method = match single(method_header)? {
            Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| Rejection::InvalidPath)?,
            None => request.method().clone(),
        };
        Ok((method, uri))
    })())
}

/// The Envoy form: the request's own method, its path after our prefix,
/// and whether there was such a path.
fn envoy(request: &Request) -> Result<((Method, Uri), bool), Rejection> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let rest = path_and_query
        .strip_prefix(PREFIX)
        .unwrap_or(path_and_query);
    let has_path = rest.starts_with('/') && !rest.starts_with("/?") && rest != "/";
    let rest = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_owned()
    };
    let uri = rest.parse::<Uri>().map_err(|_| Rejection::InvalidPath)?;
    Ok(((request.method().clone(), uri), has_path))
}

/// The original method and URI, per `mode` (see the module docs).
pub(crate) fn original(
    request: &Request,
    mode: ForwardAuthMode,
    trusted: bool,
) -> Result<(Method, Uri), Rejection> {
    let believed = |convention| {
        if trusted {
            from_headers(request, convention)
        } else {
            None
        }
    };
    match mode {
        ForwardAuthMode::Nginx => believed(NGINX).unwrap_or(Err(Rejection::InvalidPath)),
        ForwardAuthMode::Traefik => believed(TRAEFIK).unwrap_or(Err(Rejection::InvalidPath)),
        ForwardAuthMode::Envoy => envoy(request).map(|(original, _)| original),
        ForwardAuthMode::Auto => {
            let mut found = Vec::with_capacity(3);
            for convention in [NGINX, TRAEFIK] {
                if let Some(original) = believed(convention) {
                    found.push(original?);
                }
            }
            let (own, has_path) = envoy(request)?;
            if found.is_empty() || has_path {
                found.push(own);
            }
            let first = found.swap_remove(0);
            let agree = found
                .iter()
                .all(|(method, uri)| *method == first.0 && uri == &first.1);
            if !agree {
                tracing::debug!("forward auth: the original-request conventions disagree");
                return Err(Rejection::InvalidPath);
            }
            Ok(first)
        }
    }
}

/// The handler, mounted at `/v1/forward-auth` and `/v1/forward-auth/{*rest}`
/// for every method. With the `admin` feature it is also described in
/// `keygate::admin::openapi`.
#[cfg_attr(feature = "admin", utoipa::path(get, path = "/v1/forward-auth", tag = "gateway",
    description = "Any method; also `/v1/forward-auth/{path}` (Envoy). The original method and URI come from X-Original-Method/X-Original-URI (nginx), X-Forwarded-Method/X-Forwarded-Uri (Traefik), or the request itself (Envoy), per `--forward-auth` (default auto: every convention present, refused when two disagree), believed only from trusted proxies. Paths that servers read differently are refused; with a rules file, what no rule allows is refused.",
    responses(
        (status = 200, description = "Allowed; X-Keygate-Key-Id, X-Keygate-Owner, X-Keygate-Scopes and X-Keygate-Environment identify the key (empty for public rules). A request counted against the key's rate limits (the rule's `cost`, default 1) also gets RateLimit-Policy and RateLimit for the key's tightest limit (draft-ietf-httpapi-ratelimit-headers)"),
        (status = 400, description = "invalid_request: conventions disagree, headers missing in nginx/traefik mode, a refused path, or an ambiguous credential"),
        (status = 401, description = "No, or an invalid, key"),
        (status = 403, description = "IP not allowed or insufficient scope, or forbidden: no rule allows the request"),
        (status = 405, description = "method_not_allowed: the original method is CONNECT or TRACE"),
        (status = 429, description = "rate_limited: one of the key's rate limits has no budget left for the rule's cost; Retry-After gives the seconds to wait, the body's `limit` names the limit, and RateLimit-Policy / RateLimit describe it. credits_exhausted: the key's credits are short of the cost; Retry-After gives the seconds to the next refill (absent without one)"),
        (status = 503, description = "The store is unavailable and the key is not cached"),
    )))]
pub async fn handler(State(gateway): State<Gateway>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let trusted_proxies = gateway.trusted_proxies();
    let peer_trusted = peer_ip(request.extensions())
        .is_some_and(|peer| trusted_proxies.iter().any(|net| net.contains(&peer)));
    let (method, uri) = match original(&request, gateway.forward_auth(), peer_trusted) {
        Ok(original) => original,
        Err(rejection) => {
            let decision = Decision::Deny(rejection);
            let response = refuse(&gateway, &decision);
            access_log::log(
                "forward_auth",
                request.method(),
                request.uri().path(),
                &decision,
                response.status(),
                started,
            );
            return response;
        }
    };
    let client = client_ip(request.headers(), request.extensions(), trusted_proxies);
    let decision = gateway
        .decide(&method, &uri, request.headers(), client)
        .await;
    let response = match decision.identity() {
        Some(identity) => {
            let mut headers = HeaderMap::with_capacity(6);
            for (name, value) in identity {
                headers.insert(name, value);
            }
            if let Some(limit) = decision.rate_limit_headers() {
                limit.insert(&mut headers);
            }
            (StatusCode::OK, headers).into_response()
        }
        None => refuse(&gateway, &decision),
    };
    access_log::log(
        "forward_auth",
        &method,
        uri.path(),
        &decision,
        response.status(),
        started,
    );
    response
}

fn refuse(gateway: &Gateway, decision: &Decision) -> Response {
    match gateway.refusal(decision) {
        Some(response) => response.map(axum::body::Body::from),
        // Only an allowed decision has no refusal, and it has identity
        // headers; fail closed all the same.
        None => gateway
            .deny(&Rejection::InvalidPath)
            .map(axum::body::Body::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &str)]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        *request.uri_mut() = Uri::from_static(PREFIX);
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("a header value"));
        }
        request
    }

    #[test]
    fn an_original_uri_with_a_fragment_is_refused() {
        // The same defect fuzz/fuzz_targets/grpc_check.rs found in the gRPC
        // Check request: `Uri` drops `#…`, so `/public` was judged.
        for (mode, header) in [
            (ForwardAuthMode::Nginx, "x-original-uri"),
            (ForwardAuthMode::Traefik, "x-forwarded-uri"),
            (ForwardAuthMode::Auto, "x-original-uri"),
        ] {
            let refused = original(&request(&[(header, "/public#/../admin")]), mode, true);
            assert_eq!(refused.unwrap_err(), Rejection::InvalidPath, "{mode:?}");
            let (_, uri) = original(&request(&[(header, "/public/x")]), mode, true).unwrap();
            assert_eq!(uri, "/public/x");
        }
    }
}
