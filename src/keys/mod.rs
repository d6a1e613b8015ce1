//! Key management (SPEC §5): [`Keys`], reached through
//! [`Keygate::keys`](crate::Keygate::keys).
//!
//! Every call checks every rule before writing, and writes nothing when it
//! refuses; refusals are [`KeyError`]s naming the field at fault. Name
//! uniqueness and the per-owner limit are enforced inside the store's own
//! transactions, so they hold under concurrency.
//!
//! [`Keys::create`], [`Keys::rotate`] and [`Keys::update`] act as the
//! operator (the CLI, your own code) and are bounded by the rules only.
//! [`Keys::create_as`], [`Keys::rotate_as`] and [`Keys::update_as`] act on
//! behalf of a calling key and keep every key within its [`Ceiling`] (SPEC
//! §4a): no key ever creates a key more powerful than itself. Lifetimes and
//! grace periods use the durations of SPEC §5a (`90s`, `30min`, `12h`,
//! `30d`, `1w`, `3mo`, `1y`; `mo` and `y` are calendar units, a bare `m` is
//! refused).
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
#[cfg(feature = "admin")]
pub(crate) use ceiling::holds_admin_keys;
pub use error::KeyError;
pub use input::{KeyUpdate, NewKey};
#[cfg(feature = "cli")]
pub(crate) use lifetime::parse_duration;
#[cfg(feature = "admin")]
pub(crate) use lifetime::{Span, parse_span};
pub use manager::{CreatedKey, KeyPage, Keys};
pub(crate) use rules::KeyPolicy;
pub use rules::{
    MAX_DESCRIPTION_CHARS, MAX_IP_ENTRIES, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_SCOPES,
};
