//! Leaked keys, found offline: the tokens of a [`TokenFormat`] in files
//! and in the history of a git repository (feature `scan`; what
//! `keygate scan` runs).
//!
//! keygate's tokens carry a prefix and a CRC-32 checksum, so a scanner
//! tells a real token from noise without asking any store: a
//! [`Scanner`] finds `<prefix>_` with SIMD substring search, checks the
//! shape of what follows and keeps only what the token parser accepts,
//! checksum included. A [`Finding`] tells where ([`Location`]) and what
//! may be shown (the display prefix `kg_live_<id>`); the token itself
//! only through [`Finding::token`], to check or revoke it
//! ([`Keys::revoke_leaked`](crate::Keys::revoke_leaked)).
//!
//! # Example
//!
//! ```
//! use keygate::scan::Scanner;
//! use keygate::{Environment, TokenFormat};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let token = TokenFormat::default().generate(Environment::Live);
//! let mut broken = token.expose().to_owned();
//! broken.pop();
//! broken.push(if token.expose().ends_with('0') { '1' } else { '0' });
//! std::fs::write(dir.path().join("config.toml"), format!("key = \"{}\"\n", token.expose()))?;
//! std::fs::write(dir.path().join("notes.md"), format!("not one: {broken}\n"))?;
//!
//! let mut found = Vec::new();
//! Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
//! assert_eq!(found.len(), 1);
//! assert!(found[0].location.path.ends_with("config.toml"));
//! assert_eq!(found[0].location.column, 8);
//! assert!(token.expose().starts_with(found[0].display_prefix()));
//! # Ok(())
//! # }
//! ```
//!
//! [`TokenFormat`]: crate::TokenFormat

mod files;
mod finder;
mod found;
mod git;

pub use finder::Scanner;
pub use found::{Finding, Location, ScanError, ScanStats};
