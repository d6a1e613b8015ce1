//! [`ApiError`]: management errors as `{"error", "message", "field"?}`.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

use crate::keys::KeyError;
use crate::store::StoreError;

/// A refused or failed management call (SPEC §9).
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
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: a body not labelled JSON.
    UnsupportedMediaType,
    /// A key-management refusal.
    Key(KeyError),
    /// The store failed: 503 `unavailable`.
    Unavailable,
    /// A ready-made SPEC §3 response (e.g. `insufficient_scope`).
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
                tracing::warn!(%error, "key store failed");
                ApiError::Unavailable
            }
            other => ApiError::Key(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        tracing::warn!(%error, "key store failed");
        ApiError::Unavailable
    }
}

fn json(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
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
            ApiError::PayloadTooLarge => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!(
                    "The request body is larger than {} bytes.",
                    super::extract::MAX_BODY_BYTES
                ),
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
