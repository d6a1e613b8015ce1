//! `POST /v1/secret-scanning/github`: the report, its signature, the
//! revocations and the answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::keys::GithubKeys;
use crate::audit::{Actor, AuditContext};
use crate::keygate::Keygate;
use crate::keys::Leaked;

/// The route's path.
pub const PATH: &str = "/v1/secret-scanning/github";
/// Largest report read, in bytes; a larger one is refused (413) unread.
pub const MAX_REPORT_BYTES: usize = 1 << 20;
/// The audit actor of the revocations: `{"operator": "github-secret-scanning"}`.
pub const ACTOR: &str = "github-secret-scanning";

const KEY_ID_HEADER: &str = "github-public-key-identifier";
const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// One reported match.
#[derive(Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: String,
}

/// The answer for one match.
#[derive(Serialize)]
struct Answer<'a> {
    token_raw: &'a str,
    token_type: &'a str,
    label: &'static str,
}

#[derive(Clone)]
struct Endpoint {
    keygate: Keygate,
    keys: Arc<GithubKeys>,
}

/// The router of GitHub's secret scanning partner endpoint, `POST
/// /v1/secret-scanning/github`, to merge into an app.
///
/// The route takes no API key: the signature is the authentication. A
/// report whose `Github-Public-Key-Signature` is not `keys`' signature of
/// the raw body by the key named in `Github-Public-Key-Identifier` is a
/// 401 and nothing is read from it; a body over [`MAX_REPORT_BYTES`] is a
/// 413. A signed report, a JSON array of `{"token", "type", "url",
/// "source"}`, is answered `[{"token_raw", "token_type", "label"}]` in
/// its order: `true_positive` for a token that is one of the store's keys
/// — live keys are revoked ([`Keys::revoke_leaked`](crate::Keys::revoke_leaked))
/// with reason `leaked: <url>` and an audit record whose actor is
/// `{"operator": "github-secret-scanning"}`; keys already revoked or
/// expired are left as they are, so a replayed report writes nothing —
/// and `false_positive` for anything else. A report that is not such an
/// array is a 400; a store that fails, a 503 (GitHub sends it again, and
/// what was revoked stays revoked).
///
/// # Example
///
/// ```
/// use keygate::secret_scanning::{GithubKeys, router};
/// use keygate::{Keygate, MemoryStore, Pepper};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let keys = GithubKeys::from_json(r#"{"public_keys": [{"key_identifier": "k1",
///     "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----"}]}"#)?;
/// let app = router(keygate, keys);
///
/// // Unsigned: refused.
/// let request = http::Request::post("/v1/secret-scanning/github")
///     .body(axum::body::Body::from("[]"))?;
/// assert_eq!(app.oneshot(request).await?.status(), 401);
/// # Ok(())
/// # }
/// ```
pub fn router(keygate: Keygate, keys: GithubKeys) -> Router {
    let endpoint = Endpoint {
        keygate,
        keys: Arc::new(keys),
    };
    Router::new()
        .route(PATH, post(report))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        .with_state(endpoint)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Github-Public-Key-Signature realm=\"keygate\""),
        );
    }
    response
}

async fn report(
    State(endpoint): State<Endpoint>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = match (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) {
        (Some(key_id), Some(signature)) => endpoint.keys.verify(key_id, signature, &body),
        _ => false,
    };
    if !signed {
        tracing::warn!("secret scanning report refused: missing or bad GitHub signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the report must be signed by GitHub (Github-Public-Key-Identifier, Github-Public-Key-Signature)",
        );
    }
    let Ok(reported) = serde_json::from_slice::<Vec<Reported>>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected a JSON array of {\"token\", \"type\", \"url\", \"source\"}",
        );
    };
    let mut context = AuditContext::new(Actor::operator(ACTOR));
    if let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<SocketAddr>>() {
        context = context.client_ip(peer.ip());
    }
    let keys = endpoint.keygate.keys();
    let keys = keys.acting(&context);
    let mut answers = Vec::with_capacity(reported.len());
    for item in &reported {
        let leaked = match keys
            .revoke_leaked(&item.token, &format!("leaked: {}", item.url))
            .await
        {
            Ok(leaked) => leaked,
            Err(e) => {
                tracing::error!(error = %e, "secret scanning report: the store failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the key store cannot be reached; send the report again",
                );
            }
        };
        match &leaked {
            Leaked::Revoked(key) => tracing::warn!(
                key_id = %key.id, url = %item.url,
                "key revoked: GitHub secret scanning reported it leaked"
            ),
            Leaked::AlreadyRevoked(key) | Leaked::Expired(key) => tracing::info!(
                key_id = %key.id, url = %item.url,
                "GitHub secret scanning reported a key that cannot be used any more"
            ),
            _ => {}
        }
        answers.push(Answer {
            token_raw: &item.token,
            token_type: &item.token_type,
            label: if leaked.is_key() {
                "true_positive"
            } else {
                "false_positive"
            },
        });
    }
    let body = serde_json::to_string(&answers).unwrap_or_else(|_| "[]".to_owned());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
