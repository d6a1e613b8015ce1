//! The router of the HTTP API and its OpenAPI document.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::handlers::{self, AppState};
use crate::gateway::{Gateway, RequestIdLayer, Rules, forward_auth};
use crate::keygate::Keygate;

/// Adds the two credential schemes: `Authorization: Bearer <token>` and
/// `X-API-Key: <token>`.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Adds the 429 `rate_limited` / `credits_exhausted` answer to every
/// operation that takes a key: the caller's own key may carry rate limits
/// and credits, and each call costs 1.
struct RateLimitedAnswers;

impl utoipa::Modify for RateLimitedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_none() {
                    continue;
                }
                let answer = ResponseBuilder::new()
                    .description(
                        "rate_limited: the calling key's rate limit has no budget left \
                         (each call costs 1); Retry-After gives the seconds to wait, the \
                         body's `limit` names the limit, RateLimit-Policy / RateLimit \
                         describe it. credits_exhausted: the calling key has no credits \
                         left; Retry-After gives the seconds to its next refill",
                    )
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .entry("429".to_owned())
                    .or_insert(answer.into());
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate",
        description = "API-key management, the audit log, scopes and checks, token verification, and forward auth for nginx auth_request, Traefik ForwardAuth and Envoy ext_authz. Every error is the JSON object {\"error\", \"message\", \"field\"?}: an unknown route answers 404 not_found, a known route asked with another method 405 method_not_allowed (with Allow). Request bodies are JSON objects of at most 64 KiB sent as application/json.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        handlers::create_key,
        handlers::list_keys,
        handlers::get_key,
        handlers::update_key,
        handlers::revoke_key,
        handlers::rotate_key,
        handlers::adjust_credits,
        handlers::delete_key,
        handlers::list_audit,
        handlers::scopes,
        handlers::authcheck,
        handlers::verify,
        handlers::healthz,
        handlers::readyz,
        forward_auth::handler,
        openapi_json,
    ),
    modifiers(&SecuritySchemes, &RateLimitedAnswers),
    tags(
        (name = "keys", description = "Key management"),
        (name = "audit", description = "The audit log of key changes"),
        (name = "scopes", description = "Scopes and checks"),
        (name = "gateway", description = "Forward auth for nginx, Traefik and Envoy"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// The OpenAPI 3 document of the API, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // Revoke and rotate take an optional body, but when there is one it is
    // an object (never `null`): utoipa can say "optional" only by making
    // the schema nullable too, so the flag is set here.
    for path in ["/v1/keys/{id}/revoke", "/v1/keys/{id}/rotate"] {
        if let Some(body) = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
        {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document of this API")))]
async fn openapi_json() -> Response {
    axum::Json(openapi()).into_response()
}

/// The whole HTTP API (every route of [`openapi`]), with no route rules:
/// forward auth requires a valid key for every request.
pub fn router(keygate: Keygate) -> Router {
    router_with_rules(keygate, Rules::default())
}

/// The whole HTTP API (every route of [`openapi`]) with forward auth
/// judged by the route `rules` (first match wins; see [`Rules`]), in
/// [`ForwardAuthMode::Auto`](crate::gateway::ForwardAuthMode).
pub fn router_with_rules(keygate: Keygate, rules: Rules) -> Router {
    router_with_gateway(Gateway::new(keygate, rules))
}

/// The whole HTTP API (every route of [`openapi`]) with forward auth
/// decided by `gateway`: its
/// rules and its [forward-auth mode](Gateway::with_forward_auth). The
/// management routes use the gateway's keygate.
///
/// ```
/// use keygate::gateway::{ForwardAuthMode, Gateway, Rules};
/// use keygate::{Keygate, MemoryStore, Pepper};
///
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()
///     .unwrap();
/// let rules = Rules::parse_toml("[[rule]]\npath = \"/public/**\"\npublic = true\n").unwrap();
/// let gateway = Gateway::new(keygate, rules).with_forward_auth(ForwardAuthMode::Traefik);
/// let app: axum::Router = keygate::admin::router_with_gateway(gateway);
/// ```
pub fn router_with_gateway(gateway: Gateway) -> Router {
    let keygate = gateway.keygate().clone();
    let state = AppState {
        keygate: keygate.clone(),
        gateway,
    };
    let authenticated = Router::new()
        .route(
            "/v1/keys",
            post(handlers::create_key).get(handlers::list_keys),
        )
        .route(
            "/v1/keys/{id}",
            get(handlers::get_key)
                .patch(handlers::update_key)
                .delete(handlers::delete_key),
        )
        .route("/v1/keys/{id}/revoke", post(handlers::revoke_key))
        .route("/v1/keys/{id}/rotate", post(handlers::rotate_key))
        .route("/v1/keys/{id}/credits", post(handlers::adjust_credits))
        .route("/v1/audit", get(handlers::list_audit))
        .route("/v1/scopes", get(handlers::scopes))
        .route("/v1/authcheck", post(handlers::authcheck))
        .route("/v1/verify", post(handlers::verify))
        .route_layer(keygate.layer());
    let open = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/v1/openapi.json", get(openapi_json))
        .route(forward_auth::PREFIX, any(forward_auth::handler))
        .route("/v1/forward-auth/{*rest}", any(forward_auth::handler));
    // Unknown routes and wrong methods answer with the JSON error object
    // `{"error", "message"}`, like every other error of the API. The 405
    // fallback is set after the auth layer, so it answers without a
    // credential; `any` routes (forward auth) keep their own handler for
    // every method.
    // Every answer, errors and 404s included, carries its X-Request-Id,
    // and every log line of the request names it.
    let request_ids = RequestIdLayer::new(keygate.trusted_proxies().to_vec());
    authenticated
        .merge(open)
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
        .layer(request_ids)
}
