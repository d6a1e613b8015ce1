//! # keygate
//!
//! API-key authentication for Rust services: a tower middleware
//! ([`ApiKeyLayer`]) for any axum or hyper service, backed by a bounded moka
//! cache; prefixed, checksummed keys of which only a peppered HMAC-SHA256 is
//! stored; `resource:action` scopes; expiry, revocation, rotation, IP
//! allow/deny lists, metadata and usage tracking; stores in memory and
//! SQLite.
//!
//! The data path reads top-down in the source tree: the domain types at
//! the bottom (`token`, `secret`, `scope`, `key`); the stores (`store/`,
//! a [`KeyStore`] knowing nothing of the engine); verification (`verify/`:
//! the [`Verifier`] parses a token once, finds it in the cache (`verify/cache/`)
//! or by id in the store, compares its MAC in constant time, checks its
//! status, its IP lists against the client's [`Origin`] and the
//! [`Requirement`]); the rate limits (`limit/`: [`RateLimits`], counted
//! by a [`Limiter`], in process or in Redis); the request side (`request/`: the one credential and
//! the client address); the middleware (`middleware/`: [`ApiKeyLayer`],
//! [`RequireScopeLayer`], the responses to a [`Rejection`], the axum
//! extractors); key management (`keys/`, through [`Keygate::keys`]); the
//! handle and its builder (`keygate/`: [`Keygate`]); and on top the
//! [`gateway`], the [`admin`] API and the binary. Every type is exported
//! here, at the crate root, once.
//!
//! Where each part is described:
//!
//! - the token format: [`TokenFormat`]; the pepper and the stored MAC:
//!   [`Pepper`];
//! - scope syntax and matching: [`Scope`]; requirements: [`Requirement`];
//! - where a credential is read: [`CredentialSource`]; the client address
//!   (the peer, or past trusted proxies): [`PeerAddr`];
//! - the check chain: [`Verifier`]; the middleware: [`ApiKeyLayer`]; the
//!   answers to refusals: [`Rejection`] and [`RejectionResponder`];
//! - the key record: [`ApiKey`]; key management and its rules: [`Keys`];
//! - stores and their optional abilities: [`KeyStore`], [`ChangeFeed`],
//!   [`CreditStore`], [`AuditLog`];
//! - the audit log's records: [`AuditRecord`]; who acts: [`AuditContext`];
//! - the bounded HTTP listener: [`ListenerLimits`] (feature `gateway`).
//!
//! # Example
//!
//! ```
//! use keygate::{Keygate, MemoryStore, NewKey, Pepper, Requirement};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests()) // Pepper::from_env()? in production
//!     .build()?;
//!
//! let created = keygate
//!     .keys()
//!     .create(NewKey::new("alice", "ci").scopes(["workspaces:read"]))
//!     .await?;
//! let token = created.token.expose(); // shown once
//!
//! let key = keygate.verify(token).await?;
//! assert_eq!(key.owner(), "alice");
//! assert!(key.scopes().satisfies(&Requirement::parse("workspaces:read")?));
//! assert!(!key.scopes().satisfies(&Requirement::parse("workspaces:write")?));
//!
//! keygate.keys().revoke(&key.id(), Some("leaked")).await?;
//! assert!(keygate.verify(token).await.is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! Each optional module has its feature, so that a library build compiles
//! none of the binary's, the gateway's or the admin API's dependencies. The
//! defaults build the `keygate` binary; a library wants
//! `default-features = false` and the features it uses, e.g.
//! `keygate = { version = "0.1", default-features = false, features = ["sqlite", "axum"] }`.
//!
//! | feature    | default | what it adds | what it pulls in |
//! |------------|---------|--------------|------------------|
//! | `sqlite`   | yes | [`SqliteStore`], the embedded store | sqlx's `sqlite-bundled` (SQLite, compiled in) |
//! | `postgres` | no  | `PostgresStore`, shared by many instances, with push invalidation | sqlx's `postgres` |
//! | `axum`     | yes | the axum extractors `AuthenticatedKey` and `Option<AuthenticatedKey>`, and the client address from axum's `ConnectInfo<SocketAddr>` | `axum` without its defaults, with its `tokio` feature (for `ConnectInfo`: `hyper`, `hyper-util`) |
//! | `gateway`  | yes | [`gateway`]: route rules, forward auth, the reverse proxy; the bounded listener ([`serve_router`], [`ListenerLimits`]). Enables `axum` | `hyper` (server and client, HTTP/1 and HTTP/2), `hyper-util`, `toml`, `percent-encoding`, tokio's `net` and `macros` |
//! | `admin`    | yes | [`admin`]: the HTTP API as an axum `Router`, and its OpenAPI document. Enables `gateway` (the API mounts forward auth) | `utoipa`, `http-body-util`, axum's `json` |
//! | `console`  | no (yes through `cli`) | [`console`]: the web page of `/console` for managing keys through the HTTP API, its files compiled in. Enables `admin` | nothing more |
//! | `redis`    | no (yes through `cli`) | `RedisLimiter`: rate-limit buckets shared exactly by every instance through Redis | `redis` (its `tokio-comp`, `connection-manager` and `script` features) |
//! | `grpc`     | no (yes through `cli`) | gRPC: [`RulesLayer`] (route rules per gRPC method), [`CheckService`] and [`serve_check`] (Envoy's `envoy.service.auth.v3.Authorization/Check` with `grpc.health.v1`), tonic's peer address for the layer. Enables `gateway`. (Without it the layer already refuses gRPC requests with gRPC statuses.) | `tonic` (server and channel), `tonic-health`, `envoy-types` (with `prost`) |
//! | `scan`     | no (yes through `cli`) | [`scan`]: checksum-valid tokens in files and in a git repository's history (`keygate scan`) | `memchr`, `gix` (without its defaults: history only) |
//! | `secret-scanning` | no (yes through `cli`) | [`secret_scanning`]: GitHub's secret scanning partner endpoint, revoking reported keys. Enables `axum` | `p256` (ECDSA, PEM) |
//! | `cli`      | yes | the `keygate` binary (`keygate serve`, `keygate keys …`, `keygate scan`). Enables `admin`, `console`, `gateway`, `grpc`, `sqlite`, `redis`, `scan` and `secret-scanning` | `clap`, `tracing-subscriber`, tokio's `rt-multi-thread` and `signal` |
//!
//! Without any feature, keygate is the core: the middleware ([`ApiKeyLayer`],
//! [`RequireScopeLayer`]) for any `Service<http::Request<B>>`, key
//! management, the cache and [`MemoryStore`]; the authenticated key is in
//! the request extensions.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(unreachable_pub)]

/// The README's code blocks, compiled as doc tests.
#[cfg(all(doctest, feature = "sqlite", feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// docs/audit.md's code blocks, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/audit.md")]
struct AuditDocDoctests;

// The guide's code blocks (docs/), compiled as doc tests, and run unless
// marked `no_run`; each page under the features its code uses.
/// docs/quick-start-axum.md.
#[cfg(all(doctest, feature = "sqlite", feature = "admin"))]
#[doc = include_str!("../docs/quick-start-axum.md")]
struct GuideAxumDoctests;

/// docs/quick-start-hyper.md.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../docs/quick-start-hyper.md")]
struct GuideHyperDoctests;

/// docs/quick-start-tonic.md.
#[cfg(all(doctest, feature = "sqlite", feature = "grpc"))]
#[doc = include_str!("../docs/quick-start-tonic.md")]
struct GuideTonicDoctests;

/// docs/key-lifecycle.md.
#[cfg(doctest)]
#[doc = include_str!("../docs/key-lifecycle.md")]
struct GuideLifecycleDoctests;

/// docs/limits-and-credits.md.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../docs/limits-and-credits.md")]
struct GuideLimitsDoctests;

/// docs/migrating.md.
#[cfg(doctest)]
#[doc = include_str!("../docs/migrating.md")]
struct GuideMigratingDoctests;

/// docs/troubleshooting.md.
#[cfg(all(doctest, feature = "sqlite", feature = "axum"))]
#[doc = include_str!("../docs/troubleshooting.md")]
struct GuideTroubleshootingDoctests;

/// docs/grpc.md.
#[cfg(all(doctest, feature = "grpc"))]
#[doc = include_str!("../docs/grpc.md")]
struct GrpcDocDoctests;

/// docs/operations.md.
#[cfg(doctest)]
#[doc = include_str!("../docs/operations.md")]
struct OperationsDocDoctests;

// Bottom to top: domain types, stores, verification, the request side,
// the middleware, key management, the handle; then the optional surfaces.
mod audit;
mod credits;
mod key;
mod scope;
mod secret;
mod telemetry;
mod token;

mod store;

mod limit;

mod verify;

mod request;

mod middleware;

mod keys;

mod keygate;

#[cfg(feature = "gateway")]
mod listener;

#[cfg(feature = "gateway")]
pub mod gateway;

#[cfg(feature = "grpc")]
mod grpc;

#[cfg(feature = "admin")]
pub mod admin;

#[cfg(feature = "console")]
pub mod console;

#[cfg(feature = "scan")]
pub mod scan;

#[cfg(feature = "secret-scanning")]
pub mod secret_scanning;

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

// The fuzz targets' entry points (fuzz/): not public API.
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;

pub use crate::audit::{
    Actor, AuditAction, AuditContext, AuditCursor, AuditPage, AuditQuery, AuditRecord, AuditTarget,
    FieldChange, InvalidAuditCursor, MAX_REQUEST_ID_LEN, UnknownAuditAction, valid_request_id,
};
pub use crate::credits::{
    CreditChange, CreditGrant, Credits, CreditsError, InvalidRefillEvery, MAX_CREDITS, Refill,
    RefillEvery, Reservation,
};
#[cfg(feature = "grpc")]
pub use crate::grpc::{CheckService, RulesFuture, RulesLayer, RulesService, serve_check};
pub use crate::key::{ApiKey, KeyStatus, StoredKey};
pub use crate::keygate::{ConfigError, Keygate, KeygateBuilder};
pub use crate::keys::{
    Ceiling, CreatedKey, KeyError, KeyPage, KeyUpdate, Keys, Leaked, MAX_DESCRIPTION_CHARS,
    MAX_IP_ENTRIES, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_SCOPES, NewKey,
};
pub use crate::limit::{
    DEFAULT_MAX_BUCKETS, LimitName, LimitNameError, LimitOutcome, LimitRequest, LimitState,
    LimitStates, Limiter, LimiterError, LocalLimiter, MAX_LIMIT_NAME_LEN, MAX_LIMIT_PER_PERIOD,
    MAX_PERIOD_SECS, MAX_RATE_LIMITS, Period, PeriodError, RATELIMIT, RATELIMIT_POLICY, RateLimit,
    RateLimitError, RateLimits, RateLimitsError,
};
#[cfg(feature = "redis")]
pub use crate::limit::{DEFAULT_REDIS_KEY_PREFIX, RedisLimitError, RedisLimiter};
#[cfg(feature = "gateway")]
pub use crate::listener::{
    DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ListenerLimits,
    serve_router,
};
#[cfg(feature = "axum")]
pub use crate::middleware::MissingKey;
pub use crate::middleware::{
    ApiKeyAuth, ApiKeyLayer, AuthBody, DefaultResponder, InvalidRealm, RejectionResponder,
    RequireScope, RequireScopeLayer, ResponseFuture,
};
pub use crate::request::{CredentialSource, PeerAddr};
pub use crate::scope::{Requirement, RequirementError, Scope, ScopeCatalog, ScopeError, ScopeSet};
pub use crate::secret::{
    MIN_PEPPER_LEN, PEPPER_CHECK_LABEL, PEPPER_ENV, Pepper, PepperError, SecretToken, TokenMac,
};
#[cfg(feature = "postgres")]
pub use crate::store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use crate::store::SqliteStore;
pub use crate::store::{
    AuditLog, Change, ChangeFeed, ChangeSender, Changes, CreditStore, Cursor, DEFAULT_PAGE_SIZE,
    InsertRules, InvalidCursor, KeyStore, ListQuery, MAX_PAGE_SIZE, MAX_SUCCESSOR_HOPS,
    MemoryStore, Page, StoreError, StoreMeta, Usage,
};
pub use crate::token::{
    CHECKSUM_LEN, DEFAULT_PREFIX, Environment, ID_LEN, InvalidPrefix, KeyId, MAX_PREFIX_LEN,
    MAX_TOKEN_LEN, SECRET_LEN, Token, TokenError, TokenFormat,
};
pub use crate::verify::{
    AuthenticatedKey, Authorized, InvalidReason, KeyValidator, Origin, Refusal, Rejection,
    ValidatorError, Verifier, VerifyError,
};
