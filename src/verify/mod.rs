//! Verification: from a presented credential to an [`AuthenticatedKey`].
//!
//! [`Verifier::authorize`] is the one check chain every surface calls. A
//! token is checked offline first (`presented`: structure, prefix,
//! environment, checksum — its one parse), then found in the cache
//! (`cache`) or, on a miss, read by id from the
//! [`KeyStore`](crate::KeyStore) (or asked of a custom [`KeyValidator`]);
//! its MAC is compared in constant time (spent even when the id is
//! unknown, so both failures cost the same); then its status, its IP lists
//! against the [`Origin`], usage tracking (`usage`) and the
//! [`Requirement`](crate::Requirement). Callers see one coarse
//! `invalid_token`; the precise [`InvalidReason`] is for tracing, next to
//! the key id, never the token.
//!
//! The files, in the order of the chain: `presented` (offline checks),
//! `verifier` (the chain), `cache/` (the validation cache in front of the
//! store), `validator` (custom validators), `authenticated`
//! (the key it proves), `error`, `rejection` and `refusal` (what it
//! answers otherwise), `origin` (where a credential comes from), `usage`
//! (background usage tracking) and `feed` (following the store's changes
//! into the cache).
//!
//! # Example
//!
//! ```
//! use keygate::{InvalidReason, Keygate, MemoryStore, Pepper, VerifyError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()
//!     .unwrap();
//! let err = keygate.verify("kg_live_nope").await.unwrap_err();
//! assert!(matches!(err, VerifyError::Invalid(InvalidReason::Malformed)));
//! # }
//! ```

mod authenticated;
mod authorized;
mod cache;
mod charge;
mod credits;
mod error;
pub(crate) mod feed;
mod origin;
mod presented;
mod refusal;
mod rejection;
mod usage;
mod validator;
mod verifier;

pub use authenticated::AuthenticatedKey;
pub(crate) use authenticated::LimitHeaders;
pub use authorized::Authorized;
pub(crate) use cache::CacheConfig;
pub use error::{InvalidReason, VerifyError};
pub use origin::Origin;
pub(crate) use presented::Presented;
pub use refusal::Refusal;
pub use rejection::Rejection;
pub(crate) use usage::UsageMark;
pub use validator::{KeyValidator, ValidatorError};
pub use verifier::Verifier;
pub(crate) use verifier::{Clock, Settings};
