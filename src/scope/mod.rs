//! Scopes: what an API key is allowed to do.
//!
//! A [`Scope`] is a `resource:action` pair such as `workspaces:read`. Either part may be the
//! wildcard `*`: `workspaces:*` covers every action on workspaces, `*:read` covers reading every
//! resource and `*:*` covers everything.
//!
//! - [`ScopeSet`] is the set of scopes granted to a key.
//! - [`Requirement`] is an expression over scopes, such as
//!   `workspaces:read and (templates:use or templates:*)`, that a request must satisfy.
//! - [`ScopeCatalog`] optionally lists the scopes an application defines, so that keys cannot be
//!   created with scopes that do not exist.
//!
//! # Syntax
//!
//! ```text
//! scope  = part ":" part               ; at most 128 characters
//! part   = "*" / 1*64 (a-z / 0-9 / "_" / "." / "-")   ; must start with a-z or 0-9
//! ```
//!
//! # Matching
//!
//! A granted scope satisfies a required scope when, for both the resource and the action, the
//! granted part is `*` or equal to the required part. A required wildcard is therefore only
//! satisfied by an equal or wider wildcard grant: `workspaces:*` is satisfied by `workspaces:*` or
//! `*:*`, never by `workspaces:read`. The same rule is the mint ceiling: a key can only mint
//! (or narrow another key to) scopes that it holds itself ([`ScopeSet::check_can_mint`]).
//!
//! # Example
//!
//! ```
//! use keygate::{Requirement, Scope, ScopeSet};
//!
//! let grants = ScopeSet::parse(["workspaces:read", "templates:*"])?;
//! let required: Requirement = "workspaces:read and (templates:use or templates:admin)".parse()?;
//! assert!(grants.satisfies(&required));
//!
//! // A concrete grant never satisfies a wildcard requirement.
//! assert!(!grants.allows(&Scope::parse("workspaces:*")?));
//! assert!(grants.allows(&Scope::parse("templates:delete")?));
//! assert_eq!(grants.to_string(), "templates:* workspaces:read");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod catalog;
mod error;
mod name;
mod parse_visitor;
mod parser;
mod requirement;
mod set;
#[cfg(test)]
mod test_support;
mod tree;

pub use catalog::ScopeCatalog;
pub use error::{RequirementError, ScopeError};
pub use name::Scope;
pub use requirement::Requirement;
pub use set::ScopeSet;
