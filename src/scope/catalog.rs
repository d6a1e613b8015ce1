//! [`ScopeCatalog`], the scopes an application defines, with keygate's built-in scopes.

use std::collections::BTreeMap;

use super::error::ScopeError;
use super::name::{Scope, WILDCARD};

/// keygate's own scopes, which every catalog contains: the five
/// own-owner management scopes and `keys:verify` (all covered by `keys:*`),
/// `admin:keys` (reaches every owner; covered by `admin:*` and `*:*`, not by
/// `keys:*`), `audit:read` and `metrics:read`.
const BUILTIN_SCOPES: [(&str, &str); 9] = [
    ("keys:read", "List and inspect the owner's own API keys"),
    (
        "keys:create",
        "Create and rotate the owner's own API keys, within the creating key's own limits",
    ),
    (
        "keys:update",
        "Update the owner's own API keys, limited to narrowing their scopes",
    ),
    ("keys:revoke", "Revoke the owner's own API keys"),
    ("keys:delete", "Permanently delete the owner's own API keys"),
    ("keys:verify", "Verify API keys presented to a service"),
    (
        "admin:keys",
        "Extend the keys:* scopes to every owner's keys, without the mint ceiling",
    ),
    ("audit:read", "Read the audit log of key changes"),
    ("metrics:read", "Read the Prometheus metrics"),
];

/// The scopes an application defines, each with a description.
///
/// With a catalog, keys can only be created with scopes it knows: a concrete scope must be an
/// entry, `resource:*` needs an entry with that resource, `*:action` needs an entry with that
/// action, and `*:*` is always accepted. keygate's own scopes — `keys:read`, `keys:create`,
/// `keys:update`, `keys:revoke`, `keys:delete`, `keys:verify`, `admin:keys`, `audit:read` and
/// `metrics:read` — are built into every catalog (so `keys:*` and `admin:*` are always known, as
/// are `*:read`, `*:create`, and so on). `keys:admin` is not one of them: it was replaced by
/// `admin:keys` and is an ordinary scope with no power of its own.
///
/// ```
/// use keygate::{Scope, ScopeCatalog};
///
/// let catalog = ScopeCatalog::new()
///     .with("workspaces:read", "Read workspaces")?
///     .with("workspaces:write", "Create and modify workspaces")?;
/// assert!(catalog.check(&Scope::parse("workspaces:*")?).is_ok());
/// assert!(catalog.check(&Scope::parse("keys:create")?).is_ok());
/// assert!(catalog.check(&Scope::parse("workspace:read")?).is_err());
/// # Ok::<(), keygate::ScopeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ScopeCatalog {
    entries: BTreeMap<Scope, String>,
}

impl ScopeCatalog {
    /// A catalog containing only keygate's built-in scopes (`keys:*`, `admin:keys`,
    /// `audit:read`, `metrics:read`).
    ///
    /// ```
    /// use keygate::{Scope, ScopeCatalog};
    ///
    /// let catalog = ScopeCatalog::new();
    /// // keygate's own scopes are always there.
    /// assert!(catalog.check(&Scope::parse("keys:read")?).is_ok());
    /// assert!(catalog.check(&Scope::parse("reports:read")?).is_err());
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn new() -> ScopeCatalog {
        let entries = BUILTIN_SCOPES
            .iter()
            .filter_map(|&(scope, description)| {
                Scope::parse(scope)
                    .ok()
                    .map(|scope| (scope, description.to_owned()))
            })
            .collect();
        ScopeCatalog { entries }
    }

    /// Adds a concrete scope with its description (replacing the description if the scope is
    /// already present).
    ///
    /// # Errors
    ///
    /// Returns the parse error if `scope` is invalid, or [`ScopeError::WildcardInCatalog`] if it
    /// contains a wildcard.
    ///
    /// ```
    /// use keygate::{Scope, ScopeCatalog};
    ///
    /// let catalog = ScopeCatalog::new().with("reports:read", "Read reports")?;
    /// assert!(catalog.check(&Scope::parse("reports:read")?).is_ok());
    /// assert!(catalog.check(&Scope::parse("reports:*")?).is_ok()); // its resource is known
    /// assert!(ScopeCatalog::new().with("not a scope", "…").is_err());
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn with(mut self, scope: &str, description: &str) -> Result<ScopeCatalog, ScopeError> {
        let scope = Scope::parse(scope)?;
        if scope.is_wildcard() {
            return Err(ScopeError::WildcardInCatalog {
                scope: scope.as_str().to_owned(),
            });
        }
        self.entries.insert(scope, description.to_owned());
        Ok(self)
    }

    /// The entries with their descriptions, sorted by scope, built-in scopes included.
    ///
    /// ```
    /// use keygate::ScopeCatalog;
    ///
    /// let catalog = ScopeCatalog::new().with("reports:read", "Read reports")?;
    /// let entry = catalog.entries().find(|(scope, _)| scope.as_str() == "reports:read");
    /// assert_eq!(entry.map(|(_, description)| description), Some("Read reports"));
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn entries(&self) -> impl Iterator<Item = (&Scope, &str)> {
        self.entries
            .iter()
            .map(|(scope, description)| (scope, description.as_str()))
    }

    /// Checks that `scope` may be granted under this catalog.
    ///
    /// # Errors
    ///
    /// Returns [`ScopeError::NotInCatalog`] if the scope (or, for a wildcard, its concrete part)
    /// is not defined in the catalog.
    ///
    /// ```
    /// use keygate::{Scope, ScopeCatalog};
    ///
    /// let catalog = ScopeCatalog::new().with("reports:read", "Read reports")?;
    /// assert!(catalog.check(&Scope::parse("reports:read")?).is_ok());
    /// assert!(catalog.check(&Scope::parse("billing:read")?).is_err());
    /// assert!(catalog.check(&Scope::parse("*:*")?).is_ok());
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn check(&self, scope: &Scope) -> Result<(), ScopeError> {
        let known = match (scope.resource(), scope.action()) {
            (WILDCARD, WILDCARD) => true,
            (resource, WILDCARD) => self.entries.keys().any(|e| e.resource() == resource),
            (WILDCARD, action) => self.entries.keys().any(|e| e.action() == action),
            _ => self.entries.contains_key(scope),
        };
        if known {
            Ok(())
        } else {
            Err(ScopeError::NotInCatalog {
                scope: scope.as_str().to_owned(),
            })
        }
    }
}

impl Default for ScopeCatalog {
    fn default() -> ScopeCatalog {
        ScopeCatalog::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::test_support::scope;

    // --- Catalog -----------------------------------------------------------------------------

    fn catalog() -> ScopeCatalog {
        ScopeCatalog::new()
            .with("workspaces:x", "Do x to workspaces")
            .and_then(|c| c.with("templates:read", "Read templates"))
            .expect("valid catalog")
    }

    fn not_in_catalog(s: &str) -> Result<(), ScopeError> {
        Err(ScopeError::NotInCatalog { scope: s.into() })
    }

    #[test]
    fn catalog_accepts_concrete_entries_and_refuses_others() {
        let c = catalog();
        assert_eq!(c.check(&scope("workspaces:x")), Ok(()));
        assert_eq!(c.check(&scope("templates:read")), Ok(()));
        assert_eq!(
            c.check(&scope("workspaces:y")),
            not_in_catalog("workspaces:y")
        );
        assert_eq!(c.check(&scope("other:x")), not_in_catalog("other:x"));
    }

    #[test]
    fn catalog_accepts_resource_wildcard_when_the_resource_exists() {
        let c = catalog();
        assert_eq!(c.check(&scope("workspaces:*")), Ok(()));
        assert_eq!(c.check(&scope("billing:*")), not_in_catalog("billing:*"));
    }

    #[test]
    fn catalog_accepts_action_wildcard_when_the_action_exists() {
        let c = catalog();
        assert_eq!(c.check(&scope("*:x")), Ok(()));
        assert_eq!(c.check(&scope("*:read")), Ok(()));
        assert_eq!(c.check(&scope("*:use")), not_in_catalog("*:use"));
    }

    #[test]
    fn catalog_always_knows_the_full_wildcard_and_key_management_scopes() {
        for c in [ScopeCatalog::new(), ScopeCatalog::default(), catalog()] {
            for s in [
                "*:*",
                "keys:*",
                "keys:read",
                "keys:create",
                "keys:update",
                "keys:revoke",
                "keys:delete",
                "keys:verify",
                "admin:keys",
                "admin:*",
                "audit:read",
                "metrics:read",
            ] {
                assert_eq!(c.check(&scope(s)), Ok(()), "{s}");
            }
            assert_eq!(c.check(&scope("keys:fly")), not_in_catalog("keys:fly"));
            // Replaced by admin:keys: no longer built in.
            assert_eq!(c.check(&scope("keys:admin")), not_in_catalog("keys:admin"));
        }
    }

    #[test]
    fn catalog_refuses_wildcard_and_invalid_entries() {
        for s in ["workspaces:*", "*:read", "*:*"] {
            let err = ScopeCatalog::new().with(s, "nope").unwrap_err();
            assert_eq!(err, ScopeError::WildcardInCatalog { scope: s.into() });
        }
        assert!(matches!(
            ScopeCatalog::new().with("Nope:x", "nope"),
            Err(ScopeError::InvalidChar { .. })
        ));
    }

    #[test]
    fn catalog_entries_are_sorted_and_include_builtins_with_descriptions() {
        let c = catalog()
            .with("templates:read", "Read templates v2")
            .unwrap();
        let entries: Vec<(&str, &str)> = c.entries().map(|(s, d)| (s.as_str(), d)).collect();
        assert_eq!(entries.len(), BUILTIN_SCOPES.len() + 2);
        assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(entries.contains(&("templates:read", "Read templates v2")));
        assert!(
            entries
                .iter()
                .filter(|(s, _)| BUILTIN_SCOPES.iter().any(|(b, _)| b == s))
                .all(|(_, d)| !d.is_empty())
        );
    }
}
