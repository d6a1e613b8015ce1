//! [`ApiError`]: management errors as `{"error", "message", "field"?}`.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

use crate::keys::KeyError;
use crate::store::StoreError;

/// A refused or failed management call, answered as the JSON object
/// `{"error", "message", "field"?}`.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400 `bad_request`.
    BadRequest {
        message: String,
        field: Option<&'static str>,
    },
    /// 403 `forbidden`.
    Forbidden(&'static str),
    /// 404 `not_found`: no such key (or not visible to the caller).
    NotFound,
    /// 404 `not_found`: no such route.
    NoRoute,
    /// 405 `method_not_allowed`: the route exists, not with this method.
    MethodNotAllowed,
    /// 408 `request_timeout`: the body did not arrive in time.
    RequestTimeout,
    /// 413 `payload_too_large`: the body is larger than `limit` bytes.
    PayloadTooLarge {
        /// The largest body accepted, in bytes.
        limit: usize,
    },
    /// 415 `unsupported_media_type`: a body not labelled JSON.
    UnsupportedMediaType,
    /// A key-management refusal.
    Key(KeyError),
    /// The store failed: 503 `unavailable`.
    Unavailable,
    /// A ready-made authentication answer from the responder (e.g. 403
    /// `insufficient_scope`).
    Auth(Box<http::Response<Bytes>>),
}

impl ApiError {
    pub(crate) fn bad_request(field: Option<&'static str>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field,
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::NotFound => ApiError::NotFound,
            KeyError::Store(error) => {
                tracing::warn!(error = %error.with_causes(), "key store failed");
                ApiError::Unavailable
            }
            other => ApiError::Key(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        tracing::warn!(error = %error.with_causes(), "key store failed");
        ApiError::Unavailable
    }
}

/// How many token characters after an environment marker (`_live_`,
/// `_test_`) are public: the key id. One more is a piece of the secret.
const PUBLIC_AFTER_MARKER: usize = crate::token::ID_LEN;

/// `message` with every run of token characters (base62 and `_`) that
/// holds an environment marker followed by more than the key id — a whole
/// token, or one cut short — replaced by `[redacted]`: error messages echo
/// bits of the request (a bad value, a serde complaint), often cut to a
/// few dozen characters, and no piece of a token's secret sent in the
/// wrong field may come back.
fn redact_tokens(message: &str) -> std::borrow::Cow<'_, str> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let suspicious = |run: &str| {
        ["_live_", "_test_"].iter().any(|marker| {
            run.match_indices(marker)
                .any(|(at, _)| run.len() - (at + marker.len()) > PUBLIC_AFTER_MARKER)
        })
    };
    if !message.split(|c: char| !is_token_char(c)).any(suspicious) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len());
    let mut run_start = None;
    for (i, c) in message.char_indices().chain([(message.len(), ' ')]) {
        match (is_token_char(c) && i < message.len(), run_start) {
            (true, None) => run_start = Some(i),
            (true, Some(_)) => {}
            (false, start) => {
                if let Some(start) = start {
                    let run = &message[start..i];
                    out.push_str(if suspicious(run) { "[redacted]" } else { run });
                    run_start = None;
                }
                if i < message.len() {
                    out.push(c);
                }
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

fn json(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let message = redact_tokens(message);
    let mut body = serde_json::json!({"error": code, "message": message});
    if let Some(field) = field {
        body["field"] = serde_json::Value::String(field.to_owned());
    }
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest { message, field } => {
                json(StatusCode::BAD_REQUEST, "bad_request", &message, field)
            }
            ApiError::Forbidden(message) => json(StatusCode::FORBIDDEN, "forbidden", message, None),
            ApiError::NotFound => json(StatusCode::NOT_FOUND, "not_found", "No such key.", None),
            ApiError::NoRoute => json(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such route in this API.",
                None,
            ),
            ApiError::MethodNotAllowed => json(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This route does not accept this method (see the Allow header).",
                None,
            ),
            ApiError::RequestTimeout => json(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body did not arrive in time.",
                None,
            ),
            ApiError::PayloadTooLarge { limit } => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("The request body is larger than {limit} bytes."),
                None,
            ),
            ApiError::UnsupportedMediaType => json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The request body must be JSON, sent as Content-Type: application/json.",
                None,
            ),
            ApiError::Key(e) => {
                let status = match &e {
                    KeyError::Invalid { .. } => StatusCode::BAD_REQUEST,
                    KeyError::Forbidden { .. } => StatusCode::FORBIDDEN,
                    KeyError::Conflict { .. } | KeyError::KeyLimitReached { .. } => {
                        StatusCode::CONFLICT
                    }
                    KeyError::NotFound => StatusCode::NOT_FOUND,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                json(status, e.code(), &e.to_string(), e.field())
            }
            ApiError::Unavailable => {
                let mut response = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The key store is unavailable.",
                    None,
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            ApiError::Auth(response) => response.map(axum::body::Body::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_messages_are_redacted() {
        let token = format!(
            "kg_live_{}",
            "a1B2".repeat(14).get(..54).unwrap_or_default()
        );
        let message = format!("unknown variant `{token}`, expected `live` or `test`");
        let redacted = redact_tokens(&message);
        assert!(!redacted.contains(&token), "{redacted}");
        assert_eq!(
            redacted,
            "unknown variant `[redacted]`, expected `live` or `test`"
        );
        let quoted = format!("\"{token}\" is not an IPv4/IPv6 address");
        assert!(!redact_tokens(&quoted).contains("a1B2a1B2"));
        // Found by fuzz/fuzz_targets/admin_body.rs: `grace` echoes 32
        // characters of a bad duration, and a token cut there
        // (`kg_live_` + the id + 8 characters of secret) was short of a
        // whole token, so it came back.
        let cut = &token[..32];
        let message = format!("grace: \"{cut}\" is not a duration");
        let redacted = redact_tokens(&message);
        assert_eq!(redacted, "grace: \"[redacted]\" is not a duration");
        let secret = &token[24..];
        for fragment in secret.as_bytes().windows(8) {
            let fragment = std::str::from_utf8(fragment).unwrap();
            assert!(!redacted.contains(fragment), "{redacted}");
        }
        // The display prefix alone (the public id) is not a secret.
        let display = &token[..24];
        assert_eq!(redact_tokens(display), display);
        for harmless in [
            "name: name must not be empty",
            "scope workspaces:write is not within the calling key's own scopes",
            "invalid JSON body: expected value at line 1 column 1",
        ] {
            assert_eq!(redact_tokens(harmless), harmless);
        }
    }
}
