//! The tower middleware, in the shape of tower-http's `auth` and axum's
//! `middleware`: [`ApiKeyLayer`] / [`ApiKeyAuth`] (`layer`: authenticate
//! every request), [`RequireScopeLayer`] / [`RequireScope`] (`require`:
//! scopes per route), their [`ResponseFuture`] (`future`) and body
//! [`AuthBody`] (`body`), the responses to refusals (`rejection`:
//! [`RejectionResponder`], [`DefaultResponder`]) and, with the `axum`
//! feature, the extractors (`extract`). What a layer shares with its
//! keygate and gateway is the `guard`.

mod body;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod guard;
mod layer;
mod rejection;
mod require;

pub use body::AuthBody;
#[cfg(feature = "axum")]
pub use extract::MissingKey;
pub use future::ResponseFuture;
pub(crate) use guard::Guard;
pub use layer::{ApiKeyAuth, ApiKeyLayer};
pub use rejection::{DefaultResponder, InvalidRealm, RejectionResponder};
#[cfg(feature = "grpc")]
pub(crate) use rejection::{grpc_form, is_grpc};
pub use require::{RequireScope, RequireScopeLayer};
