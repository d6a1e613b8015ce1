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
//! | feature  | default | what it adds                                   |
//! |----------|---------|------------------------------------------------|
//! | `sqlite` | yes     | [`SqliteStore`], the embedded store            |
//! | `axum`   | yes     | `AuthenticatedKey` extractors for axum, the gateway, the admin API and the bounded [`listener`] |
//! | `postgres` | no    | `PostgresStore`, shared by many instances, with push invalidation |

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

/// The README's code blocks, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "axum")]
pub mod admin;
pub mod body;
mod cache;
pub mod client_ip;
pub mod credentials;
#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "axum")]
pub mod gateway;
pub mod key;
pub mod keygate;
pub mod keys;
pub mod layer;
#[cfg(feature = "axum")]
pub mod listener;
pub mod rejection;
pub mod require;
pub mod scope;
pub mod secret;
pub mod store;
pub mod token;
mod usage;
pub mod validator;

#[doc(hidden)]
pub mod cli;

pub use crate::body::AuthBody;
pub use crate::client_ip::PeerAddr;
pub use crate::credentials::CredentialSource;
pub use crate::key::{ApiKey, KeyStatus, StoredKey};
pub use crate::keygate::{ConfigError, Keygate, KeygateBuilder};
pub use crate::keys::{Ceiling, CreatedKey, KeyError, KeyPage, KeyUpdate, Keys, NewKey};
pub use crate::layer::{ApiKeyAuth, ApiKeyLayer};
#[cfg(feature = "axum")]
pub use crate::listener::ListenerLimits;
pub use crate::rejection::{Rejection, RejectionResponder};
pub use crate::require::{RequireScope, RequireScopeLayer};
pub use crate::scope::{Requirement, Scope, ScopeCatalog, ScopeSet};
pub use crate::secret::{Pepper, PepperError, SecretToken};
#[cfg(feature = "postgres")]
pub use crate::store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use crate::store::SqliteStore;
pub use crate::store::{KeyStore, ListQuery, MemoryStore, StoreError, StoreMeta};
pub use crate::token::{Environment, KeyId};
pub use crate::validator::{AuthenticatedKey, InvalidReason, KeyValidator, VerifyError};
