//! Strict request bodies and key ids for the HTTP API: a body
//! is at most [`MAX_BODY_BYTES`], not labelled as anything but JSON, a JSON **object** without
//! unknown fields; every refusal is an [`ApiError`], the JSON object
//! `{"error", "message", "field"?}`.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::audit::{Actor, AuditContext};
use crate::gateway::{Gateway, RequestId};
use crate::listener::BodyTimeout;
use crate::request::client_ip;
use crate::verify::AuthenticatedKey;

/// The largest request body the API reads, in bytes (64 KiB: several
/// times the largest valid key).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The refusal of a body over [`MAX_BODY_BYTES`].
const TOO_LARGE: ApiError = ApiError::PayloadTooLarge {
    limit: MAX_BODY_BYTES,
};

/// A required JSON object body, parsed strictly.
pub(crate) struct JsonObject<T>(pub T);

/// An optional JSON object body: an empty body is `T::default()`.
pub(crate) struct OptionalJsonObject<T>(pub T);

/// The `{id}` of a key route, as sent. A path that does not decode is no
/// key at all: 404, like an unknown id.
pub(crate) struct KeyPath(pub String);

/// What the audit record of a change made by this request names besides
/// the caller: the client's address and the request id (from
/// [`RequestIdLayer`](crate::gateway::RequestIdLayer)). Never refuses.
pub(crate) struct AuditInfo {
    client_ip: Option<std::net::IpAddr>,
    request_id: Option<String>,
}

impl AuditInfo {
    /// The context of a change made by `caller` in this request.
    pub(crate) fn context(&self, caller: &AuthenticatedKey) -> AuditContext {
        let mut context = AuditContext::new(Actor::key(caller.id(), caller.owner()));
        if let Some(ip) = self.client_ip {
            context = context.client_ip(ip);
        }
        if let Some(id) = &self.request_id {
            context = context.request_id(id.clone());
        }
        context
    }
}

impl<S> FromRequestParts<S> for AuditInfo
where
    S: Send + Sync,
    Gateway: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gateway = <Gateway as axum::extract::FromRef<S>>::from_ref(state);
        Ok(AuditInfo {
            client_ip: client_ip(&parts.headers, &parts.extensions, gateway.trusted_proxies()),
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|id| id.as_str().to_owned()),
        })
    }
}

impl<S, T> FromRequest<S> for JsonObject<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        match json_object(&parts, body).await? {
            Some(value) => Ok(JsonObject(value)),
            None => Err(ApiError::bad_request(
                None,
                "the body must be a JSON object",
            )),
        }
    }
}

impl<S, T> FromRequest<S> for OptionalJsonObject<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        Ok(OptionalJsonObject(
            json_object(&parts, body).await?.unwrap_or_default(),
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(KeyPath(id)),
            Err(_) => Err(ApiError::NotFound),
        }
    }
}

/// Whether the body may be read as JSON: `application/json` or
/// `application/<anything>+json` (parameters allowed); no `Content-Type` at
/// all; or `application/x-www-form-urlencoded`, what `curl -d` sends
/// unasked. A form-encoded body is no JSON object (its `{` and `"` are
/// percent-encoded), so such a body is still refused, as a 400. Every other
/// type is refused (415) — `text/plain` in particular, the one encoding
/// with which a cross-site HTML form could post a JSON-shaped body.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => {
            subtype == "json" || subtype.ends_with("+json") || subtype == "x-www-form-urlencoded"
        }
        _ => false,
    }
}

/// Reads and parses a JSON object body: `None` when the body is empty (or
/// only whitespace).
///
/// # Errors
///
/// 408 `request_timeout` when the body has not arrived within the
/// listener's header timeout (10 s outside [`serve_router`](crate::serve_router)),
/// 413 `payload_too_large` beyond [`MAX_BODY_BYTES`] (judged from
/// `Content-Length` before reading, else while reading), 415
/// `unsupported_media_type` for a non-empty body not labelled JSON, 400
/// `bad_request` for anything but a JSON object, malformed JSON or an
/// unknown field. Messages never echo the body.
pub(crate) async fn json_object<T: DeserializeOwned>(
    parts: &Parts,
    body: Body,
) -> Result<Option<T>, ApiError> {
    let headers = &parts.headers;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(TOO_LARGE);
    }
    // A body trickled in forever would hold its connection forever.
    let BodyTimeout(wait) = parts
        .extensions
        .get::<BodyTimeout>()
        .copied()
        .unwrap_or_default();
    let bytes = tokio::time::timeout(wait, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
        .map_err(|error| {
            let too_large =
                std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                TOO_LARGE
            } else {
                ApiError::bad_request(None, "the request body could not be read")
            }
        })?;
    let Some(start) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(None);
    };
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if bytes[start] != b'{' {
        return Err(ApiError::bad_request(
            None,
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::bad_request(None, format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn json_media_types_are_recognised() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            "application/x-www-form-urlencoded",
        ] {
            assert!(is_json(&headers(Some(ok))), "{ok}");
        }
        assert!(is_json(&headers(None)), "no label");
        for bad in [
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
            Some("text/json"),
        ] {
            assert!(!is_json(&headers(bad)), "{bad:?}");
        }
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body2 {
        a: Option<String>,
        b: Option<u32>,
    }

    async fn parse(content_type: Option<&str>, body: &str) -> Result<Option<Body2>, ApiError> {
        let mut request = http::Request::new(());
        *request.headers_mut() = headers(content_type);
        let (parts, ()) = request.into_parts();
        json_object(&parts, Body::from(body.to_owned())).await
    }

    #[tokio::test]
    async fn only_objects_are_bodies() {
        let json = Some("application/json");
        assert!(matches!(parse(json, r#" {"a": "x"} "#).await, Ok(Some(_))));
        assert!(matches!(parse(json, "  \n").await, Ok(None)));
        assert!(matches!(parse(None, "").await, Ok(None)));
        for bad in [
            r#"["x", 1]"#,
            "null",
            "1",
            r#""x""#,
            "true",
            "{",
            r#"{"c": 1}"#,
        ] {
            assert!(
                matches!(parse(json, bad).await, Err(ApiError::BadRequest { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(Some("text/plain"), "{}").await,
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(matches!(parse(None, "{}").await, Ok(Some(_))));
        let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert!(matches!(
            parse(json, &big).await,
            Err(ApiError::PayloadTooLarge { .. })
        ));
    }
}
