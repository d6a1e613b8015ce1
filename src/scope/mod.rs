//! Scopes: what an API key is allowed to do.

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
