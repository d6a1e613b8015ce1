//! Route rules for forward auth and the proxy: a TOML file
//! of `[[rule]]`s, first match wins. **With a rules file, a request that
//! matches no rule is refused** (403 `forbidden`, "no rule allows this
//! request", before any credential is looked at), unless the file says
//! `default = "key"` at the top: then any valid key passes, as before.
//! Without a rules file ([`Rules::default`]) every request needs a valid key.
//!
//! ```toml
//! # default = "key"                # optional: no match = any valid key
//!
//! [[rule]]
//! path = "/api/workspaces/**"      # "*" matches one segment, "**" any number
//! methods = ["GET", "HEAD"]        # optional; default every method
//! require = "workspaces:read"      # optional requirement expression
//! cost = 5                         # optional: units taken from the key's
//!                                  # rate limits (default 1, 0 = not counted)
//!
//! [[rule]]
//! path = "/public/**"
//! public = true                    # no key needed
//! ```
//!
//! How paths are checked and normalized, and matched, is documented on
//! [`Rules`] (this module is private; the type is public).
//!
//! # Example
//!
//! ```
//! use keygate::gateway::{Access, Rules};
//!
//! let rules = Rules::parse_toml(r#"
//!     [[rule]]
//!     path = "/public/**"
//!     public = true
//!
//!     [[rule]]
//!     path = "/api/*/items"
//!     methods = ["GET"]
//!     require = "items:read"
//! "#).unwrap();
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/a/b"), Access::Public));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/PUBLIC/a"), Access::Public));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/api/v1/items"), Access::Key { requirement: Some(_), cost: 1 }));
//! // No rule matches: refused, whatever the key.
//! assert!(matches!(rules.evaluate(&http::Method::POST, "/api/v1/items"), Access::NoRule));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/../admin"), Access::NoRule));
//! // Paths that servers read differently never reach a rule.
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/..%2fadmin"), Access::InvalidPath));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/..;/admin"), Access::InvalidPath));
//!
//! // `default = "key"`: no match needs any valid key.
//! let lenient = Rules::parse_toml("default = \"key\"").unwrap();
//! assert!(matches!(lenient.evaluate(&http::Method::GET, "/x"), Access::Key { requirement: None, cost: 1 }));
//! ```

mod access;
mod file;
mod matcher;
mod path;

pub use access::{Access, Rules};
pub use file::{MAX_RULE_COST, RulesError};
pub(crate) use path::NormalizedPath;
// Reachable at `gateway::rules::PathError` as before the split, though
// nothing outside `rules` names it.
#[allow(unused_imports)]
pub(crate) use path::PathError;
