//! # keygate
//!
//! API-key authentication for Rust services: a tower middleware
//! ([`ApiKeyLayer`]) for any axum or hyper service, backed by a bounded moka
//! cache; prefixed, checksummed keys of which only a peppered HMAC-SHA256 is
//! stored; `resource:action` scopes; expiry, revocation, rotation, IP
//! allow/deny lists, metadata and usage tracking; stores in memory and
//! SQLite.
//!
//! The data path reads top-down: a request's credential is extracted
//! ([`credentials`]) and parsed ([`token`]), looked up in the cache and, on
//! a miss, by id in a [`KeyStore`] ([`store`]); its MAC is compared in
//! constant time ([`secret`], [`validator`]); the key's IP lists are checked
//! against the client address ([`client_ip`]); route scopes are enforced by
//! [`require`]; refusals become responses in [`rejection`]. The middleware
//! itself is [`layer`]. Keys are managed through [`Keygate::keys`] ([`keys`]).
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
//! | `axum`     | yes | the axum extractors ([`extract`]) `AuthenticatedKey` and `Option<AuthenticatedKey>`, and the client address from axum's `ConnectInfo<SocketAddr>` | `axum` without its defaults, with its `tokio` feature (for `ConnectInfo`: `hyper`, `hyper-util`) |
//! | `gateway`  | yes | [`gateway`]: route rules, forward auth, the reverse proxy; the bounded [`listener`] and [`ListenerLimits`]. Enables `axum` | `hyper` (server and client, HTTP/1 and HTTP/2), `hyper-util`, `toml`, `percent-encoding`, tokio's `net` and `macros` |
//! | `admin`    | yes | [`admin`]: the HTTP API as an axum `Router`, and its OpenAPI document. Enables `gateway` (the API mounts forward auth) | `utoipa`, `http-body-util`, axum's `json` |
//! | `cli`      | yes | the `keygate` binary (`keygate serve`, `keygate keys …`). Enables `admin`, `gateway` and `sqlite` | `clap`, `tracing-subscriber`, tokio's `rt-multi-thread` and `signal` |
//!
//! Without any feature, keygate is the core: the middleware ([`ApiKeyLayer`],
//! [`RequireScopeLayer`]) for any `Service<http::Request<B>>`, key
//! management, the cache and [`MemoryStore`]; the authenticated key is in
//! the request extensions.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's code blocks, compiled as doc tests.
#[cfg(all(doctest, feature = "sqlite", feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "admin")]
pub mod admin;
pub mod body;
mod cache;
pub mod client_ip;
pub mod credentials;
#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod key;
pub mod keygate;
pub mod keys;
pub mod layer;
#[cfg(feature = "gateway")]
pub mod listener;
pub mod rejection;
pub mod require;
pub mod scope;
pub mod secret;
pub mod store;
pub mod token;
mod usage;
pub mod validator;

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

pub use crate::body::AuthBody;
pub use crate::client_ip::PeerAddr;
pub use crate::credentials::CredentialSource;
pub use crate::key::{ApiKey, KeyStatus, StoredKey};
pub use crate::keygate::{ConfigError, Keygate, KeygateBuilder};
pub use crate::keys::{Ceiling, CreatedKey, KeyError, KeyPage, KeyUpdate, Keys, NewKey};
pub use crate::layer::{ApiKeyAuth, ApiKeyLayer};
#[cfg(feature = "gateway")]
pub use crate::listener::ListenerLimits;
pub use crate::rejection::{Rejection, RejectionResponder};
pub use crate::require::{RequireScope, RequireScopeLayer};
pub use crate::scope::{Requirement, Scope, ScopeCatalog, ScopeSet};
pub use crate::secret::{Pepper, PepperError, SecretToken};
#[cfg(feature = "postgres")]
pub use crate::store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use crate::store::SqliteStore;
pub use crate::store::{
    Change, ChangeFeed, Changes, KeyStore, ListQuery, MemoryStore, StoreError, StoreMeta,
};
pub use crate::token::{Environment, KeyId};
pub use crate::validator::{AuthenticatedKey, InvalidReason, KeyValidator, VerifyError};
