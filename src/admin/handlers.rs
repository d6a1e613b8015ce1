//! The handlers of the HTTP API (SPEC §9), each annotated for the
//! generated OpenAPI document.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::types::{
    AuthcheckBody, CreatedBody, ErrorBody, Grace, KeyListBody, RevokeBody, RotateBody, ScopeEntry,
    ScopesBody, StatusBody, VerifyBody, VerifyResult,
};
use crate::client_ip::client_ip;
use crate::gateway::Gateway;
use crate::key::ApiKey;
use crate::keygate::Keygate;
use crate::keys::{Ceiling, CreatedKey, KeyUpdate, NewKey, Span, holds_admin_keys, parse_span};
use crate::rejection::Rejection;
use crate::scope::{Requirement, Scope, ScopeCatalog};
use crate::store::{Cursor, ListQuery, MAX_PAGE_SIZE};
use crate::token::KeyId;
use crate::validator::{AuthenticatedKey, VerifyError};

/// Shared state of the API routes.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub keygate: Keygate,
    pub gateway: Gateway,
}

impl axum::extract::FromRef<AppState> for Gateway {
    fn from_ref(state: &AppState) -> Gateway {
        state.gateway.clone()
    }
}

/// Most checks in one `/v1/authcheck` call.
const MAX_CHECKS: usize = 100;

/// The caller must hold `keys:<action>`; otherwise a SPEC §3
/// `insufficient_scope` response.
fn need(state: &AppState, caller: &AuthenticatedKey, action: &str) -> Result<(), ApiError> {
    let scope = Scope::parse(&format!("keys:{action}"))
        .unwrap_or_else(|_| unreachable!("management scopes are valid"));
    if caller.scopes().allows(&scope) {
        return Ok(());
    }
    let rejection = Rejection::InsufficientScope(Arc::new(Requirement::Scope(scope)));
    Err(ApiError::Auth(Box::new(
        state.keygate.responder().respond(&rejection),
    )))
}

/// Whether the caller holds `admin:keys` (SPEC §4a): every owner's keys,
/// and no mint ceiling but its scopes. `keys:*` does not reach it.
fn is_admin(caller: &AuthenticatedKey) -> bool {
    holds_admin_keys(caller.scopes())
}

/// Parses a JSON body strictly: malformed JSON and unknown fields are 400.
fn strict<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(None, format!("invalid JSON body: {e}")))
}

/// As [`strict`], with an empty body meaning the default.
fn strict_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        strict(body)
    }
}

/// The key `id`, if the caller may see it: its own owner's, or any with
/// `admin:keys`. Anything else is 404, like a key that does not exist.
async fn visible_key(
    state: &AppState,
    caller: &AuthenticatedKey,
    id: &str,
) -> Result<KeyId, ApiError> {
    let id = KeyId::parse(id).map_err(|_| ApiError::NotFound)?;
    let record = state.keygate.keys().get(&id).await?;
    if record.owner != caller.owner() && !is_admin(caller) {
        return Err(ApiError::NotFound);
    }
    Ok(id)
}

fn created(created: CreatedKey) -> Response {
    let body = CreatedBody {
        key: created.token.expose().to_owned(),
        api_key: created.key,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Create a key. `owner` defaults to the caller's; another owner needs
/// `admin:keys`. Scopes must be within the caller's own.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses(
        (status = 201, description = "Created; the token is shown once", body = CreatedBody),
        (status = 400, description = "A field breaks a rule", body = ErrorBody),
        (status = 403, description = "Missing keys:create, or another owner without admin:keys", body = ErrorBody),
        (status = 409, description = "Duplicate name or key limit reached", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&state, &caller, "create")?;
    let mut new: NewKey = strict(&body)?;
    match new.owner_name() {
        None => new = new.owner(caller.owner()),
        Some(owner) if owner != caller.owner() && !is_admin(&caller) => {
            return Err(ApiError::Forbidden(
                "Creating keys for another owner requires admin:keys.",
            ));
        }
        Some(_) => {}
    }
    let key = state
        .keygate
        .keys()
        .create_as(&Ceiling::of(&caller), new)
        .await?;
    Ok(created(key))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// List keys: the caller's own, or (with `admin:keys`) any owner's.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    params(
        ("owner" = Option<String>, Query, description = "Only this owner's keys (another owner needs admin:keys; admins see every owner by default)"),
        ("include_revoked" = Option<bool>, Query, description = "Include revoked keys"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of keys", body = KeyListBody),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 403, description = "Missing keys:read, or another owner without admin:keys", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    need(&state, &caller, "read")?;
    let mut list = ListQuery::default();
    let mut owner = None;
    for (name, value) in query_pairs(query.as_deref()) {
        match name.as_str() {
            "owner" => owner = Some(value),
            "include_revoked" => {
                list.include_revoked = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            Some("include_revoked"),
                            "include_revoked must be true or false",
                        ));
                    }
                }
            }
            "limit" => {
                list.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            Some("limit"),
                            format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
                        )
                    })?;
            }
            "cursor" => {
                list.cursor = Some(value.parse::<Cursor>().map_err(|_| {
                    ApiError::bad_request(
                        Some("cursor"),
                        "cursor is not a next_cursor from this API",
                    )
                })?);
            }
            _ => {}
        }
    }
    list.owner = match owner {
        Some(o) if o != caller.owner() && !is_admin(&caller) => {
            return Err(ApiError::Forbidden(
                "Listing another owner's keys requires admin:keys.",
            ));
        }
        Some(o) => Some(o),
        None if is_admin(&caller) => None,
        None => Some(caller.owner().to_owned()),
    };
    let page = state.keygate.keys().list(&list).await?;
    Ok(Json(KeyListBody {
        keys: page.keys,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
    .into_response())
}

/// One key.
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key", body = ApiKey),
        (status = 404, description = "Absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "read")?;
    let id = visible_key(&state, &caller, &id).await?;
    let key = state.keygate.keys().get(&id).await?;
    Ok(Json(key).into_response())
}

/// Change name, description, metadata, IP lists, or narrow scopes.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", request_body = KeyUpdate,
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The updated key", body = ApiKey),
        (status = 400, description = "A field breaks a rule", body = ErrorBody),
        (status = 404, description = "Absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "Duplicate name", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn update_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&state, &caller, "update")?;
    let id = visible_key(&state, &caller, &id).await?;
    let update: KeyUpdate = strict(&body)?;
    let key = state
        .keygate
        .keys()
        .update_as(&Ceiling::of(&caller), &id, update)
        .await?;
    Ok(Json(key).into_response())
}

/// Revoke a key; it is refused from the next request on.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys", request_body(content = RevokeBody, description = "Optional"),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        (status = 404, description = "Absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&state, &caller, "revoke")?;
    let id = visible_key(&state, &caller, &id).await?;
    let body: RevokeBody = strict_or_default(&body)?;
    let key = state
        .keygate
        .keys()
        .revoke(&id, body.reason.as_deref())
        .await?;
    Ok(Json(key).into_response())
}

/// Rotate a key: a new key with the same attributes; the old one expires
/// after the grace period. The caller must hold every scope of the key.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", request_body(content = RotateBody, description = "Optional"),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 201, description = "The new key; its token is shown once", body = CreatedBody),
        (status = 404, description = "Absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "Revoked, expired or already rotated", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&state, &caller, "create")?;
    let id = visible_key(&state, &caller, &id).await?;
    let body: RotateBody = strict_or_default(&body)?;
    let grace = match body.grace {
        None => Span::ZERO,
        Some(Grace::Seconds(secs)) => i64::try_from(secs)
            .ok()
            .filter(|s| *s <= 1000 * 365 * 86_400)
            .map(Span::Seconds)
            .ok_or_else(|| ApiError::bad_request(Some("grace"), "grace is too large"))?,
        Some(Grace::Text(text)) => parse_span(&text)
            .map_err(|m| ApiError::bad_request(Some("grace"), format!("grace: {m}")))?,
    };
    let key = state
        .keygate
        .keys()
        .rotate_within(&id, grace, Some(&Ceiling::of(&caller)))
        .await?;
    Ok(created(key))
}

/// Delete a key's record.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "delete")?;
    let id = visible_key(&state, &caller, &id).await?;
    state.keygate.keys().delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The scopes the application defines.
#[utoipa::path(get, path = "/v1/scopes", tag = "scopes",
    responses((status = 200, description = "The scope catalog", body = ScopesBody)),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn scopes(State(state): State<AppState>, _caller: AuthenticatedKey) -> Response {
    let default = ScopeCatalog::default();
    let catalog = state.keygate.catalog().unwrap_or(&default);
    Json(ScopesBody {
        scopes: catalog
            .entries()
            .map(|(scope, description)| ScopeEntry {
                name: scope.to_string(),
                description: description.to_owned(),
            })
            .collect(),
    })
    .into_response()
}

/// Evaluate named requirement expressions for the calling key.
#[utoipa::path(post, path = "/v1/authcheck", tag = "scopes", request_body = AuthcheckBody,
    responses(
        (status = 200, description = "Each check's name and whether the calling key satisfies it", body = BTreeMap<String, bool>),
        (status = 400, description = "A check does not parse", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn authcheck(caller: AuthenticatedKey, body: Bytes) -> Result<Response, ApiError> {
    let body: AuthcheckBody = strict(&body)?;
    if body.checks.len() > MAX_CHECKS {
        return Err(ApiError::bad_request(
            Some("checks"),
            format!("at most {MAX_CHECKS} checks per call"),
        ));
    }
    let mut results = BTreeMap::new();
    for (name, expr) in &body.checks {
        let requirement = Requirement::parse(expr)
            .map_err(|e| ApiError::bad_request(Some("checks"), format!("check {name:?}: {e}")))?;
        results.insert(name.clone(), caller.scopes().satisfies(&requirement));
    }
    Ok(Json(results).into_response())
}

/// Verify a token on behalf of another service.
#[utoipa::path(post, path = "/v1/verify", tag = "keys", request_body = VerifyBody,
    responses(
        (status = 200, description = "The verdict", body = VerifyResult),
        (status = 400, description = "A bad field", body = ErrorBody),
        (status = 403, description = "Missing keys:verify", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    request: Request,
) -> Result<Response, ApiError> {
    need(&state, &caller, "verify")?;
    let client = client_ip(
        request.headers(),
        request.extensions(),
        state.gateway.trusted_proxies(),
    );
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::bad_request(None, "the body is too large"))?;
    let body: VerifyBody = strict(&body)?;
    let requirement = body
        .require
        .as_deref()
        .map(Requirement::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(Some("require"), e.to_string()))?;
    let ip =
        match body.ip.as_deref() {
            Some(text) => Some(text.trim().parse::<IpAddr>().map_err(|_| {
                ApiError::bad_request(Some("ip"), "ip is not an IPv4 or IPv6 address")
            })?),
            None => client,
        };
    let result = match state.keygate.verify(&body.key).await {
        Err(VerifyError::Unavailable(error)) => return Err(error.into()),
        Err(VerifyError::Invalid(reason)) => {
            tracing::debug!(reason = reason.as_str(), "verify: invalid token");
            VerifyResult {
                valid: false,
                code: "invalid_token",
                api_key: None,
            }
        }
        Ok(key) => {
            let code = if !state.keygate.ip_allowed(&key, ip) {
                "ip_not_allowed"
            } else if requirement
                .as_ref()
                .is_some_and(|r| !key.scopes().satisfies(r))
            {
                "insufficient_scope"
            } else {
                state.keygate.note_use(&key, ip);
                "valid"
            };
            VerifyResult {
                valid: code == "valid",
                code,
                api_key: Some(key.record().clone()),
            }
        }
    };
    Ok(Json(result).into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = StatusBody)))]
pub(crate) async fn healthz() -> Response {
    Json(StatusBody { status: "ok" }).into_response()
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The store answers", body = StatusBody),
        (status = 503, description = "The store does not answer", body = StatusBody),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.keygate.store().ping(),
    )
    .await;
    match ping {
        Ok(Ok(())) => Json(StatusBody { status: "ready" }).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(StatusBody {
                status: "unavailable",
            }),
        )
            .into_response(),
    }
}
