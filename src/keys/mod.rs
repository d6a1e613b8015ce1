//! Key management — create, list, update, revoke, rotate, delete and
//! credit keys: [`Keys`], reached through
//! [`Keygate::keys`](crate::Keygate::keys).

mod audited;
mod ceiling;
mod credits;
mod error;
mod input;
mod leaked;
mod lifetime;
mod limits;
mod manager;
mod rules;

pub use ceiling::Ceiling;
#[cfg(feature = "admin")]
pub(crate) use ceiling::holds_admin_keys;
#[cfg(feature = "admin")]
pub(crate) use credits::change as parse_credit_change;
pub use error::KeyError;
pub use input::{KeyUpdate, NewKey};
pub use leaked::Leaked;
#[cfg(feature = "cli")]
pub(crate) use lifetime::parse_duration;
#[cfg(feature = "admin")]
pub(crate) use lifetime::{Span, parse_span};
pub use manager::{CreatedKey, KeyPage, Keys};
pub(crate) use rules::KeyPolicy;
pub use rules::{
    MAX_DESCRIPTION_CHARS, MAX_IP_ENTRIES, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_SCOPES,
};
