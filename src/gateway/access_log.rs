//! The access log: one `info` line (target `keygate::access`) per
//! decision of forward auth and of the proxy — surface, method, path (never
//! the query, which may carry a credential), status, outcome code, key id
//! when the key is known, latency. Never the token. It runs inside the
//! request's span, which adds the request id (and the key id of a refused
//! key).

use std::time::Instant;

use http::{Method, StatusCode};

use super::Decision;

/// What a decision came to, as the access log names it: `valid` (a key
/// allowed), `public` (a public rule), or the refusal's error code.
pub(crate) fn outcome(decision: &Decision) -> &'static str {
    match decision {
        Decision::Allow(Some(_)) => "valid",
        Decision::Allow(None) => "public",
        Decision::Deny(rejection) => rejection.code(),
        Decision::NoRule => "forbidden",
        Decision::MethodNotAllowed => "method_not_allowed",
    }
}

/// Writes the access-log line of one decision.
pub(crate) fn log(
    surface: &'static str,
    method: &Method,
    path: &str,
    decision: &Decision,
    status: StatusCode,
    started: Instant,
) {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let key_id = match decision {
        Decision::Allow(Some(key)) => Some(key.id()),
        _ => None,
    };
    match key_id {
        Some(key_id) => tracing::info!(
            target: "keygate::access",
            surface,
            %method,
            path,
            status = status.as_u16(),
            outcome = outcome(decision),
            %key_id,
            latency_ms,
            "access"
        ),
        None => tracing::info!(
            target: "keygate::access",
            surface,
            %method,
            path,
            status = status.as_u16(),
            outcome = outcome(decision),
            latency_ms,
            "access"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Rejection;

    #[test]
    fn outcomes_are_the_error_codes() {
        assert_eq!(outcome(&Decision::Allow(None)), "public");
        assert_eq!(
            outcome(&Decision::Deny(Rejection::MissingToken)),
            "missing_token"
        );
        assert_eq!(outcome(&Decision::NoRule), "forbidden");
        assert_eq!(outcome(&Decision::MethodNotAllowed), "method_not_allowed");
    }
}
