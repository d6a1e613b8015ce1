//! The handle and its builder: [`Keygate`] (`handle`) hands out the
//! middleware, the [`Verifier`](crate::Verifier) and key management;
//! [`KeygateBuilder`] (`builder`) checks every setting once.

mod builder;
mod handle;

pub use builder::{ConfigError, KeygateBuilder};
pub use handle::Keygate;
