//! Key management (SPEC §5): [`Keys`], reached through
//! [`Keygate::keys`](crate::Keygate::keys).
//!
//! Every call checks every rule before writing, and writes nothing when it
//! refuses; refusals are [`KeyError`]s naming the field at fault. Name
//! uniqueness and the per-owner limit are enforced inside the store's own
//! transactions, so they hold under concurrency.
//!
//! # Example
//!
//! ```
//! use keygate::{KeyError, Keygate, MemoryStore, NewKey, Pepper};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()?;
//! let keys = keygate.keys();
//! let created = keys.create(NewKey::new("alice", "ci").scopes(["workspaces:read"])).await?;
//! assert!(created.token.expose().starts_with("kg_live_"));
//!
//! let duplicate = keys.create(NewKey::new("alice", "ci")).await.unwrap_err();
//! assert_eq!(duplicate.field(), Some("name"));
//!
//! let bad = keys.create(NewKey::new("alice", "x").scopes(["Not A Scope"])).await.unwrap_err();
//! assert!(matches!(bad, KeyError::Invalid { field: "scopes", .. }));
//! # Ok(())
//! # }
//! ```

mod ceiling;
mod error;
mod input;
mod lifetime;
mod manager;
mod rules;

pub use ceiling::Ceiling;
pub(crate) use ceiling::holds_admin_keys;
pub use error::KeyError;
pub use input::{KeyUpdate, NewKey};
pub(crate) use lifetime::{Span, parse_duration, parse_span};
pub use manager::{CreatedKey, KeyPage, Keys};
pub(crate) use rules::KeyPolicy;
pub use rules::{
    MAX_DESCRIPTION_CHARS, MAX_IP_ENTRIES, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_SCOPES,
};
