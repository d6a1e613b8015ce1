//! The handlers of the HTTP API (`/v1/keys`, `/v1/scopes`, `/v1/authcheck`,
//! `/v1/verify`, `/v1/audit`, `/healthz`, `/readyz`), each annotated for the
//! generated OpenAPI document.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{AuditInfo, JsonObject, KeyPath, OptionalJsonObject, json_object};
use super::types::{
    AuditListBody, AuthcheckBody, CreatedBody, CreditsBody, ErrorBody, Grace, KeyListBody,
    RevokeBody, RotateBody, ScopeEntry, ScopesBody, StatusBody, VerifyBody, VerifyResult,
};
use crate::audit::{AuditAction, AuditCursor, AuditQuery, AuditRecord};
use crate::gateway::Gateway;
use crate::key::ApiKey;
use crate::keygate::Keygate;
use crate::keys::{
    Ceiling, CreatedKey, KeyUpdate, NewKey, Span, holds_admin_keys, parse_credit_change, parse_span,
};
use crate::request::client_ip;

use crate::scope::{Requirement, Scope, ScopeCatalog};
use crate::store::{Cursor, ListQuery, MAX_PAGE_SIZE};
use crate::token::KeyId;
use crate::verify::{AuthenticatedKey, Origin, Rejection};

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

/// The caller must hold `keys:<action>`; otherwise the responder's
/// `insufficient_scope` answer (by default 403, the scope named in
/// `WWW-Authenticate`).
fn need(state: &AppState, caller: &AuthenticatedKey, action: &str) -> Result<(), ApiError> {
    need_scope(state, caller, &format!("keys:{action}"))
}

/// The caller must hold `scope`; otherwise an `insufficient_scope` response.
fn need_scope(state: &AppState, caller: &AuthenticatedKey, scope: &str) -> Result<(), ApiError> {
    let scope = Scope::parse(scope).unwrap_or_else(|_| unreachable!("management scopes are valid"));
    if caller.scopes().allows(&scope) {
        return Ok(());
    }
    let rejection = Rejection::InsufficientScope(Arc::new(Requirement::scope(scope)));
    Err(ApiError::Auth(Box::new(
        state.keygate.responder().respond(&rejection),
    )))
}

/// Whether the caller holds `admin:keys` (itself, `admin:*` or `*:*`):
/// every owner's keys, and no mint ceiling but its scopes. `keys:*` does
/// not reach it.
fn is_admin(caller: &AuthenticatedKey) -> bool {
    holds_admin_keys(caller.scopes())
}

/// The fallback of the router: 404 `not_found` as JSON.
pub(crate) async fn no_route() -> ApiError {
    ApiError::NoRoute
}

/// A route that exists, asked with another method: 405
/// `method_not_allowed` as JSON (axum adds `Allow`).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
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
/// `admin:keys`. The key must stay within the caller's own limits (the mint
/// ceiling): scopes within its grants and, unless the caller
/// holds `admin:keys`, an expiry no later than its own, its environment and
/// organization (the defaults when left out), an allow list within its own
/// and a deny list including its own, rate limits no looser and credits no
/// larger than its own. A left-out lifetime is the default
/// cut to the caller's expiry. Each violation is 403 `forbidden` naming the
/// field.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses(
        (status = 201, description = "Created; the token is shown once", body = CreatedBody),
        (status = 400, description = "A field breaks a rule of its NewKey schema (bad_request naming the field), the body is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:create; another owner without admin:keys; the key would exceed the calling key's own limits (forbidden, naming the field: scopes, expires_at, environment, organization, ip_allow, ip_deny, rate_limits, credits); or ip_not_allowed", body = ErrorBody),
        (status = 409, description = "Duplicate name (conflict) or key limit reached (key_limit_reached)", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    audit: AuditInfo,
    JsonObject(mut new): JsonObject<NewKey>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "create")?;
    match new.owner_name() {
        None => new = new.owner(caller.owner()),
        Some(owner) if owner != caller.owner() && !is_admin(&caller) => {
            return Err(ApiError::Forbidden(
                "Creating keys for another owner requires admin:keys.",
            ));
        }
        Some(_) => {}
    }
    let context = audit.context(&caller);
    let key = state
        .keygate
        .keys()
        .acting(&context)
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
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of keys", body = KeyListBody),
        (status = 400, description = "A bad parameter, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:read, another owner without admin:keys, or ip_not_allowed", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
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
    params(("id" = String, Path, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Key id")),
    responses(
        (status = 200, description = "The key", body = ApiKey),
        (status = 400, description = "Credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:read, or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to the caller", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    KeyPath(id): KeyPath,
) -> Result<Response, ApiError> {
    need(&state, &caller, "read")?;
    let id = visible_key(&state, &caller, &id).await?;
    let key = state.keygate.keys().get(&id).await?;
    Ok(Json(key).into_response())
}

/// Change name, description, metadata, IP lists, rate limits, credits
/// (`"credits": null` removes them), or narrow scopes. Unless the caller
/// holds `admin:keys`, new scopes must be within its grants, new IP lists
/// no wider than its own, rate limits no looser and credits no larger
/// (403 `forbidden` naming the field).
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", request_body = KeyUpdate,
    params(("id" = String, Path, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Key id")),
    responses(
        (status = 200, description = "The updated key", body = ApiKey),
        (status = 400, description = "A field breaks a rule (scopes may only narrow), the body is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:update; a value beyond the calling key's own limits (forbidden, naming the field: scopes, ip_allow, ip_deny, rate_limits, credits); or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to the caller", body = ErrorBody),
        (status = 409, description = "Duplicate name, or credits given to a rotated key (its credits moved to its successor; naming id)", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn update_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    audit: AuditInfo,
    KeyPath(id): KeyPath,
    JsonObject(update): JsonObject<KeyUpdate>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "update")?;
    let id = visible_key(&state, &caller, &id).await?;
    let context = audit.context(&caller);
    let key = state
        .keygate
        .keys()
        .acting(&context)
        .update_as(&Ceiling::of(&caller), &id, update)
        .await?;
    Ok(Json(key).into_response())
}

/// Add to a key's credits or set them: a body of exactly one of
/// `{"add": N}` and `{"set": N}` (N from 0 to 10^12; a balance above 10^12
/// is refused). `set` keeps the refill, and gives a key without credits a
/// balance (and no refill); `add` on a key without credits (unlimited) is a
/// 400 naming `credits`. A rotated key's credits moved to its successor:
/// 409 naming `id`. Unless the caller holds `admin:keys`, a caller with
/// credits cannot leave the key with more than its own remaining (403
/// `forbidden` naming `credits`).
#[utoipa::path(post, path = "/v1/keys/{id}/credits", tag = "keys", request_body = CreditsBody,
    params(("id" = String, Path, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Key id")),
    responses(
        (status = 200, description = "The key, with its new credits", body = ApiKey),
        (status = 400, description = "Not exactly one of add and set, a value out of bounds (naming add or set), add on a key without credits (naming credits), a body that is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:update; a balance beyond the calling key's own (forbidden, naming credits); or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to the caller", body = ErrorBody),
        (status = 409, description = "The key was rotated: its credits moved to its successor (naming id)", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn adjust_credits(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    audit: AuditInfo,
    KeyPath(id): KeyPath,
    JsonObject(body): JsonObject<serde_json::Value>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "update")?;
    let id = visible_key(&state, &caller, &id).await?;
    let change = parse_credit_change(&body)?;
    let context = audit.context(&caller);
    let key = state
        .keygate
        .keys()
        .acting(&context)
        .adjust_credits_as(&Ceiling::of(&caller), &id, change)
        .await?;
    Ok(Json(key).into_response())
}

/// Revoke a key; it is refused from the next request on.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys", request_body(content = RevokeBody, description = "Optional: no body is `{}`"),
    params(("id" = String, Path, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Key id")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        (status = 400, description = "A bad reason, a body that is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:revoke, or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to the caller", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    audit: AuditInfo,
    KeyPath(id): KeyPath,
    OptionalJsonObject(body): OptionalJsonObject<RevokeBody>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "revoke")?;
    let id = visible_key(&state, &caller, &id).await?;
    let context = audit.context(&caller);
    let key = state
        .keygate
        .keys()
        .acting(&context)
        .revoke(&id, body.reason.as_deref())
        .await?;
    Ok(Json(key).into_response())
}

/// Rotate a key: a new key with the same attributes; the old one expires
/// after the grace period (`90s`, `30min`, `12h`, `1d`, `1mo`, … or whole
/// seconds). The key must be within the caller's own limits (403
/// `forbidden` naming the field otherwise), and the new key never outlives
/// a caller without `admin:keys`.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", request_body(content = RotateBody, description = "Optional: no body is `{}`"),
    params(("id" = String, Path, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Key id")),
    responses(
        (status = 201, description = "The new key; its token is shown once", body = CreatedBody),
        (status = 400, description = "A bad grace, a body that is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:create; the key exceeds the calling key's own limits (forbidden, naming the field); or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to the caller", body = ErrorBody),
        (status = 409, description = "Revoked, expired or already rotated", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    audit: AuditInfo,
    KeyPath(id): KeyPath,
    OptionalJsonObject(body): OptionalJsonObject<RotateBody>,
) -> Result<Response, ApiError> {
    need(&state, &caller, "create")?;
    let id = visible_key(&state, &caller, &id).await?;
    let grace = body
        .grace
        .map(grace_span)
        .transpose()?
        .unwrap_or(Span::ZERO);
    let context = audit.context(&caller);
    let key = state
        .keygate
        .keys()
        .acting(&context)
        .rotate_within(&id, grace, Some(&Ceiling::of(&caller)))
        .await?;
    Ok(created(key))
}

/// A rotation's grace period: whole seconds (at most 1000 years) or a
/// duration text.
pub(super) fn grace_span(grace: Grace) -> Result<Span, ApiError> {
    match grace {
        Grace::Seconds(secs) => i64::try_from(secs)
            .ok()
            .filter(|s| *s <= 1000 * 365 * 86_400)
            .map(Span::Seconds)
            .ok_or_else(|| ApiError::bad_request(Some("grace"), "grace is too large")),
        Grace::Text(text) => parse_span(&text)
            .map_err(|m| ApiError::bad_request(Some("grace"), format!("grace: {m}"))),
    }
}

/// Delete a key's record.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Key id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:delete, or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to the caller", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    audit: AuditInfo,
    KeyPath(id): KeyPath,
) -> Result<Response, ApiError> {
    need(&state, &caller, "delete")?;
    let id = visible_key(&state, &caller, &id).await?;
    let context = audit.context(&caller);
    state.keygate.keys().acting(&context).delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The largest page of `GET /v1/audit`.
const MAX_AUDIT_PAGE: u32 = MAX_PAGE_SIZE;

fn timestamp(name: &'static str, value: &str) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            ApiError::bad_request(
                Some(name),
                format!("{name} must be an RFC 3339 timestamp, e.g. 2026-12-04T00:00:00Z"),
            )
        },
    )
}

/// Read the audit log: one record per change of a key (create, update,
/// revoke, rotate, delete, credits), newest first. The caller sees the
/// records of its own owner's keys; with `admin:keys`, every owner's
/// (filtered by `owner` when given). A record never holds a token or a
/// MAC; a deleted key keeps its records.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(
        ("owner" = Option<String>, Query, description = "Only records of this owner's keys (another owner needs admin:keys; admins see every owner by default)"),
        ("key_id" = Option<String>, Query, min_length = 16, max_length = 16, pattern = "^[0-9A-Za-z]{16}$", description = "Only records of this key"),
        ("action" = Option<AuditAction>, Query, description = "Only records of this action: key.create, key.update, key.revoke, key.rotate, key.delete or key.credits"),
        ("since" = Option<String>, Query, format = DateTime, description = "Only records made at or after this RFC 3339 time"),
        ("until" = Option<String>, Query, format = DateTime, description = "Only records made before this RFC 3339 time"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of records, newest first", body = AuditListBody),
        (status = 400, description = "A bad parameter (bad_request naming it), or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing audit:read (insufficient_scope), another owner without admin:keys (forbidden), or ip_not_allowed", body = ErrorBody),
        (status = 404, description = "The key store keeps no audit log (not_found)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    caller: AuthenticatedKey,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    need_scope(&state, &caller, "audit:read")?;
    let mut audit = AuditQuery::default();
    let mut owner = None;
    for (name, value) in query_pairs(query.as_deref()) {
        match name.as_str() {
            "owner" => owner = Some(value),
            "key_id" => {
                audit.key_id = Some(KeyId::parse(&value).map_err(|_| {
                    ApiError::bad_request(Some("key_id"), "key_id must be a 16-character key id")
                })?);
            }
            "action" => {
                audit.action = Some(
                    value
                        .parse::<AuditAction>()
                        .map_err(|e| ApiError::bad_request(Some("action"), e.to_string()))?,
                );
            }
            "since" => audit.since = Some(timestamp("since", &value)?),
            "until" => audit.until = Some(timestamp("until", &value)?),
            "limit" => {
                audit.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            Some("limit"),
                            format!("limit must be between 1 and {MAX_AUDIT_PAGE}"),
                        )
                    })?;
            }
            "cursor" => {
                audit.cursor = Some(value.parse::<AuditCursor>().map_err(|_| {
                    ApiError::bad_request(
                        Some("cursor"),
                        "cursor is not a next_cursor from this API",
                    )
                })?);
            }
            _ => {}
        }
    }
    audit.owner = match owner {
        Some(o) if o != caller.owner() && !is_admin(&caller) => {
            return Err(ApiError::Forbidden(
                "Reading another owner's audit records requires admin:keys.",
            ));
        }
        Some(o) => Some(o),
        None if is_admin(&caller) => None,
        None => Some(caller.owner().to_owned()),
    };
    let store = state.keygate.store();
    let log = store.audit_log().ok_or(ApiError::NoRoute)?;
    let page = log.audit_records(&audit).await?;
    let records: Vec<AuditRecord> = page.records;
    Ok(Json(AuditListBody {
        records,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
    .into_response())
}

/// The scopes the application defines.
#[utoipa::path(get, path = "/v1/scopes", tag = "scopes",
    responses(
        (status = 200, description = "The scope catalog", body = ScopesBody),
        (status = 400, description = "Credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "ip_not_allowed", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
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
        (status = 400, description = "A check does not parse, more than 100 checks, a body that is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "ip_not_allowed", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn authcheck(
    caller: AuthenticatedKey,
    JsonObject(body): JsonObject<AuthcheckBody>,
) -> Result<Response, ApiError> {
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
        (status = 200, description = "The verdict. The check consumes `cost` (default 1) from the key's credits and every one of its rate limits, or from none when one lacks budget (code credits_exhausted or rate_limited); `rate_limits` reports each limit's state and `credits_remaining` the credits left", body = VerifyResult),
        (status = 400, description = "A bad field, a body that is not a JSON object, or credentials in two places or a malformed credential (invalid_request)", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid one (missing_token / invalid_token)", body = ErrorBody),
        (status = 403, description = "Missing keys:verify, or ip_not_allowed", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "A body not sent as Content-Type: application/json (unsupported_media_type)", body = ErrorBody),
        (status = 503, description = "The key store is unavailable (Retry-After: 1)", body = ErrorBody),
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
    let (parts, body) = request.into_parts();
    let body: VerifyBody = json_object(&parts, body)
        .await?
        .ok_or_else(|| ApiError::bad_request(None, "the body must be a JSON object"))?;
    let requirement = body
        .require
        .as_deref()
        .map(Requirement::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(Some("require"), e.to_string()))?
        .map(Arc::new);
    let ip =
        match body.ip.as_deref() {
            Some(text) => Some(text.trim().parse::<IpAddr>().map_err(|_| {
                ApiError::bad_request(Some("ip"), "ip is not an IPv4 or IPv6 address")
            })?),
            None => client,
        };
    let cost = match &body.cost {
        None => 1,
        Some(value) => value
            .as_u64()
            .filter(|cost| *cost <= crate::limit::MAX_LIMIT_PER_PERIOD)
            .ok_or_else(|| {
                ApiError::bad_request(
                    Some("cost"),
                    format!(
                        "cost must be an integer from 0 to {}",
                        crate::limit::MAX_LIMIT_PER_PERIOD
                    ),
                )
            })?,
    };
    let result = match state
        .keygate
        .verifier()
        .authorize_charged(&body.key, Origin::from(ip), requirement.as_ref(), cost)
        .await
    {
        Ok(authorized) => VerifyResult {
            valid: true,
            code: "valid",
            api_key: Some(authorized.key().record().clone()),
            rate_limits: authorized
                .limits()
                .states()
                .iter()
                .map(Into::into)
                .collect(),
            credits_remaining: authorized.credits_remaining(),
        },
        Err(refusal) => match refusal.rejection() {
            Rejection::Unavailable => return Err(ApiError::Unavailable),
            rejection => {
                if let Rejection::InvalidToken(reason) = rejection {
                    tracing::debug!(reason = reason.as_str(), "verify: invalid token");
                }
                VerifyResult {
                    valid: false,
                    code: rejection.code(),
                    api_key: refusal.key().map(|key| key.record().clone()),
                    rate_limits: refusal.limits().iter().map(Into::into).collect(),
                    credits_remaining: None,
                }
            }
        },
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
