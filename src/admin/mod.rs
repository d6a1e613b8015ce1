//! The HTTP API: key management, the audit log, scopes, checks, verification,
//! forward auth, health and the OpenAPI document — as an axum [`Router`]
//! you can nest in your own app, and what `keygate serve` runs.
//!
//! Management scopes `keys:read`, `keys:create`, `keys:update`,
//! `keys:revoke` and `keys:delete` act on the caller's own owner;
//! `admin:keys` extends them to every owner (`keys:*` does not: it covers
//! the own-owner scopes only); `admin:*` and `*:*` cover `admin:keys`. Keys
//! of other owners are invisible (404) without `admin:keys`.
//!
//! # Example
//!
//! ```
//! use keygate::{Keygate, MemoryStore, NewKey, Pepper};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()?;
//! let admin = keygate.keys().create(NewKey::new("admin", "root").scopes(["*:*"])).await?;
//! let app = axum::Router::new().nest("/keygate", keygate::admin::router(keygate.clone()));
//!
//! let request = http::Request::get("/keygate/v1/keys")
//!     .header("authorization", format!("Bearer {}", admin.token.expose()))
//!     .body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! [`Router`]: axum::Router

mod error;
mod extract;
#[cfg(feature = "__fuzz")]
mod fuzz;
mod handlers;
mod routes;
mod types;

#[cfg(feature = "__fuzz")]
pub(crate) use fuzz::fuzz_body;
pub use routes::{openapi, router, router_with_gateway, router_with_rules};
