//! gRPC: keygate in front of tonic services, and Envoy's external
//! authorization API over gRPC.
//!
//! - The layer ([`Keygate::layer`](crate::Keygate::layer)) protects tonic
//!   services unchanged: the credential comes from the `authorization:
//!   Bearer` or `x-api-key` metadata, the [`AuthenticatedKey`](crate::AuthenticatedKey)
//!   is in `request.extensions()`, and a gRPC request is refused with a
//!   trailers-only response: 16 `UNAUTHENTICATED` (missing_token,
//!   invalid_request, invalid_token — every invalid_token answer
//!   byte-identical), 7 `PERMISSION_DENIED` (ip_not_allowed,
//!   insufficient_scope), 8 `RESOURCE_EXHAUSTED` (rate_limited,
//!   credits_exhausted), 14 `UNAVAILABLE`.
//! - [`RulesLayer`] (`layer`) applies route rules to gRPC paths
//!   (`/package.Service/Method`, `/package.Service/*`): requirements per
//!   method.
//! - [`CheckService`] (`check`: the request it describes is read in
//!   `request`, the verdict written in `answer`) answers
//!   `envoy.service.auth.v3.Authorization/Check` with the gateway's
//!   decision, and [`serve_check`] (`server`) serves it with
//!   `grpc.health.v1.Health` (`keygate serve --grpc-listen`).
//!
//! # Example
//!
//! ```
//! use keygate::{Keygate, MemoryStore, Pepper};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()?;
//! // Any tonic service (here a stand-in) behind the layer.
//! let service = ServiceBuilder::new().layer(keygate.layer()).service_fn(
//!     |_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     },
//! );
//! let request = http::Request::post("/demo.Greeter/SayHello")
//!     .header("content-type", "application/grpc")
//!     .header("authorization", "Bearer kg_live_not-a-key")
//!     .body(String::new())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["grpc-status"], "16"); // UNAUTHENTICATED
//! assert_eq!(
//!     response.headers()["grpc-message"],
//!     "The API key is invalid, expired or revoked."
//! );
//! # Ok(())
//! # }
//! ```

mod answer;
mod check;
mod layer;
mod request;
mod server;

pub use check::CheckService;
pub use layer::{RulesFuture, RulesLayer, RulesService};
pub use server::serve_check;
// The fuzz targets' entry (`crate::fuzz`).
#[cfg(feature = "__fuzz")]
pub(crate) use request::{Original, client};
