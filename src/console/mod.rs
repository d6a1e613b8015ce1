//! The console: a web page, served at `/console`, for everything the HTTP
//! API does — sign in by pasting a key, list and search keys, create one
//! (the token shown once), show one with its audit trail, update, revoke,
//! rotate and delete.
//!
//! The page holds no data of its own and needs no credential to load: its
//! script sends the pasted key as `Authorization: Bearer` to the `/v1/*`
//! routes of [`admin::router`](crate::admin::router), so it can do nothing
//! the signed-in key cannot. The key is kept in a JavaScript variable of
//! the tab, never in a cookie, in local or session storage or in the URL.
//!
//! The files are compiled into the binary (no external request: no font,
//! no CDN) and every answer carries a strict `Content-Security-Policy`
//! (`default-src 'self'`, no inline script or style, Trusted Types
//! required), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and
//! `X-Content-Type-Options: nosniff`. Files are revalidated on every load
//! (`Cache-Control: no-cache` with an `ETag`), so an upgraded binary's page
//! is never mixed with an old one's script.
//!
//! `keygate serve` mounts it beside the API. The page calls `/v1/…` and
//! loads `/console/…` from the root of its origin, so mount both at the
//! root of the same listener.
//!
//! # Example
//!
//! ```
//! use keygate::{Keygate, MemoryStore, Pepper};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()?;
//! let app = keygate::admin::router(keygate).merge(keygate::console::router());
//!
//! let request = http::Request::get("/console").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! let csp = response.headers()["content-security-policy"].to_str()?;
//! assert!(csp.starts_with("default-src 'self'"));
//! assert_eq!(response.headers()["x-frame-options"], "DENY");
//! # Ok(())
//! # }
//! ```

mod files;
mod routes;

pub use routes::{CONTENT_SECURITY_POLICY, router};
