//! The body parsing of the handlers, for `crate::fuzz` (feature `__fuzz`).

use axum::response::IntoResponse;
use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::extract::json_object;
use super::handlers::grace_span;
use super::types::{AuthcheckBody, RevokeBody, RotateBody, VerifyBody};
use crate::fuzz::AdminBody;
use crate::keys::{KeyUpdate, NewKey, parse_credit_change};

thread_local! {
    /// The body reader waits with a timer: one runtime per fuzzing thread.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime with a timer builds");
}

/// See [`crate::fuzz::admin_body`].
pub(crate) fn fuzz_body(
    kind: AdminBody,
    content_type: Option<http::HeaderValue>,
    body: &[u8],
) -> Result<(), (StatusCode, Bytes)> {
    let mut request = http::Request::new(());
    if let Some(value) = content_type {
        request.headers_mut().insert(CONTENT_TYPE, value);
    }
    let (parts, ()) = request.into_parts();
    let body = axum::body::Body::from(body.to_vec());
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let parsed = match kind {
                AdminBody::CreateKey => required::<NewKey>(&parts, body).await.map(drop),
                AdminBody::UpdateKey => required::<KeyUpdate>(&parts, body).await.map(drop),
                AdminBody::Revoke => json_object::<RevokeBody>(&parts, body).await.map(drop),
                AdminBody::Rotate => match json_object::<RotateBody>(&parts, body).await {
                    Ok(Some(RotateBody { grace: Some(grace) })) => grace_span(grace).map(drop),
                    other => other.map(drop),
                },
                AdminBody::Credits => required::<serde_json::Value>(&parts, body)
                    .await
                    .and_then(|value| parse_credit_change(&value).map_err(ApiError::from))
                    .map(drop),
                AdminBody::Authcheck => required::<AuthcheckBody>(&parts, body).await.map(drop),
                AdminBody::Verify => required::<VerifyBody>(&parts, body).await.map(drop),
            };
            match parsed {
                Ok(()) => Ok(()),
                Err(error) => {
                    let response = error.into_response();
                    let status = response.status();
                    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap_or_default();
                    Err((status, bytes))
                }
            }
        })
    })
}

/// A required body, as `JsonObject` reads it.
async fn required<T: DeserializeOwned>(
    parts: &http::request::Parts,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    json_object(parts, body)
        .await?
        .ok_or_else(|| ApiError::bad_request(None, "the body must be a JSON object"))
}
