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
    /// 404 `not_found`.
    NotFound,
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
