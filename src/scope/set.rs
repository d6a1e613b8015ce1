//! [`ScopeSet`], the scopes granted to a key, and the mint ceiling.

use std::fmt;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

use super::error::ScopeError;
use super::name::Scope;

/// The scopes granted to a key: sorted and free of duplicates.
///
/// Serializes as a JSON array of scope strings; displays as the scopes separated by single
/// spaces (the format of the `X-Keygate-Scopes` header).
///
/// ```
/// use keygate::{Requirement, ScopeSet};
///
/// let grants = ScopeSet::parse(["workspaces:read", "templates:*"])?;
/// assert!(grants.satisfies(&Requirement::parse("workspaces:read and templates:use")?));
/// assert_eq!(serde_json::to_string(&grants)?, r#"["templates:*","workspaces:read"]"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    /// Sorted, deduplicated.
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Builds a set from scopes, sorting them and dropping duplicates.
    ///
    /// ```
    /// use keygate::{Scope, ScopeSet};
    ///
    /// let set = ScopeSet::new([Scope::parse("b:read")?, Scope::parse("a:read")?, Scope::parse("a:read")?]);
    /// assert_eq!(set.to_string(), "a:read b:read"); // sorted, without duplicates
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> ScopeSet {
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort_unstable();
        scopes.dedup();
        ScopeSet { scopes }
    }

    /// Parses every string as a [`Scope`] and builds a set from them.
    ///
    /// # Errors
    ///
    /// Returns the error of the first string that is not a valid scope.
    ///
    /// ```
    /// use keygate::ScopeSet;
    ///
    /// let set = ScopeSet::parse(["workspaces:read", "templates:*"])?;
    /// assert_eq!(set.len(), 2);
    /// assert!(ScopeSet::parse(["workspaces:read", "nope"]).is_err());
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn parse<I, S>(scopes: I) -> Result<ScopeSet, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        scopes
            .into_iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(ScopeSet::new)
    }

    /// Whether some granted scope satisfies `required` (see [`Scope::satisfies`]).
    ///
    /// ```
    /// use keygate::{Scope, ScopeSet};
    ///
    /// let grants = ScopeSet::parse(["templates:*"])?;
    /// assert!(grants.allows(&Scope::parse("templates:use")?));
    /// assert!(!grants.allows(&Scope::parse("workspaces:read")?));
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn allows(&self, required: &Scope) -> bool {
        self.scopes.iter().any(|grant| grant.satisfies(required))
    }

    /// Mint ceiling: checks that a key holding these scopes may mint a key with `requested`.
    ///
    /// Every requested scope must be [allowed](ScopeSet::allows) by these grants, so a key can
    /// never mint a scope it does not hold, and a wildcard only from an equal or wider wildcard.
    ///
    /// # Errors
    ///
    /// Returns the first requested scope (in set order) that these grants do not allow.
    ///
    /// ```
    /// use keygate::ScopeSet;
    ///
    /// let caller = ScopeSet::parse(["reports:read", "keys:create"])?;
    /// assert!(caller.check_can_mint(&ScopeSet::parse(["reports:read"])?).is_ok());
    /// let wider = ScopeSet::parse(["reports:*"])?;
    /// assert_eq!(caller.check_can_mint(&wider).unwrap_err().as_str(), "reports:*");
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn check_can_mint<'a>(&self, requested: &'a ScopeSet) -> Result<(), &'a Scope> {
        match requested.iter().find(|scope| !self.allows(scope)) {
            Some(scope) => Err(scope),
            None => Ok(()),
        }
    }

    /// Narrowing for updates: true if every scope in `other` is allowed by these grants (the
    /// same rule as [`check_can_mint`](ScopeSet::check_can_mint)).
    ///
    /// ```
    /// use keygate::ScopeSet;
    ///
    /// let grants = ScopeSet::parse(["reports:*"])?;
    /// assert!(grants.covers(&ScopeSet::parse(["reports:read", "reports:write"])?));
    /// assert!(!grants.covers(&ScopeSet::parse(["audit:read"])?));
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn covers(&self, other: &ScopeSet) -> bool {
        self.check_can_mint(other).is_ok()
    }

    /// The scopes, in sorted order.
    ///
    /// ```
    /// use keygate::ScopeSet;
    ///
    /// let set = ScopeSet::parse(["b:read", "a:read"])?;
    /// let names: Vec<&str> = set.iter().map(|s| s.as_str()).collect();
    /// assert_eq!(names, ["a:read", "b:read"]);
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    /// Number of scopes in the set.
    ///
    /// ```
    /// use keygate::ScopeSet;
    ///
    /// assert_eq!(ScopeSet::parse(["a:read", "a:read", "b:read"])?.len(), 2);
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether the set has no scopes.
    ///
    /// ```
    /// use keygate::ScopeSet;
    ///
    /// assert!(ScopeSet::default().is_empty());
    /// assert!(!ScopeSet::parse(["a:read"])?.is_empty());
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether exactly this scope is in the set (no wildcard matching; see
    /// [`allows`](ScopeSet::allows) for that).
    ///
    /// ```
    /// use keygate::{Scope, ScopeSet};
    ///
    /// let set = ScopeSet::parse(["reports:*"])?;
    /// assert!(set.contains(&Scope::parse("reports:*")?));
    /// assert!(!set.contains(&Scope::parse("reports:read")?)); // allowed, but not in the set
    /// assert!(set.allows(&Scope::parse("reports:read")?));
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn contains(&self, s: &Scope) -> bool {
        self.scopes.binary_search(s).is_ok()
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.iter()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> ScopeSet {
        ScopeSet::new(iter)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.scopes)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ScopeSet, D::Error> {
        Vec::<Scope>::deserialize(deserializer).map(ScopeSet::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::test_support::{scope, set};

    // --- ScopeSet ----------------------------------------------------------------------------

    #[test]
    fn scope_set_is_sorted_and_deduplicated() {
        let s = set(&["b:b", "a:a", "b:b", "*:x"]);
        let items: Vec<&str> = s.iter().map(Scope::as_str).collect();
        assert_eq!(items, ["*:x", "a:a", "b:b"]);
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert!(ScopeSet::default().is_empty());
        assert_eq!(
            s,
            [scope("a:a"), scope("*:x"), scope("b:b")]
                .into_iter()
                .collect::<ScopeSet>()
        );
        assert_eq!((&s).into_iter().count(), 3);
    }

    #[test]
    fn scope_set_contains_is_exact_membership() {
        let s = set(&["r:*"]);
        assert!(s.contains(&scope("r:*")));
        assert!(!s.contains(&scope("r:a")));
        assert!(s.allows(&scope("r:a")));
    }

    #[test]
    fn scope_set_parse_reports_the_first_invalid_scope() {
        let err = ScopeSet::parse(["a:b", "Bad:x", "also bad"]).unwrap_err();
        assert!(matches!(err, ScopeError::InvalidChar { ch: 'B', .. }));
        let owned: Vec<String> = vec!["a:b".into()];
        assert_eq!(ScopeSet::parse(&owned).unwrap().len(), 1);
    }

    #[test]
    fn scope_set_displays_space_separated() {
        assert_eq!(set(&["b:b", "a:*"]).to_string(), "a:* b:b");
        assert_eq!(ScopeSet::default().to_string(), "");
    }

    #[test]
    fn scope_set_serde_round_trips_as_a_string_array() {
        let s = set(&["b:b", "a:*"]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["a:*","b:b"]"#);
        let back: ScopeSet = serde_json::from_str(r#"["b:b","a:*","b:b"]"#).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<ScopeSet>(r#"["b:b","B:b"]"#).is_err());
    }

    // --- Mint ceiling ------------------------------------------------------------------------

    #[test]
    fn resource_wildcard_can_mint_concrete_and_same_wildcard() {
        let holder = set(&["r:*"]);
        assert_eq!(holder.check_can_mint(&set(&["r:a"])), Ok(()));
        assert_eq!(holder.check_can_mint(&set(&["r:*"])), Ok(()));
        assert_eq!(holder.check_can_mint(&set(&["r:a", "r:*"])), Ok(()));
        assert_eq!(holder.check_can_mint(&ScopeSet::default()), Ok(()));
    }

    #[test]
    fn concrete_scope_cannot_mint_a_wildcard() {
        let requested = set(&["r:*"]);
        assert_eq!(set(&["r:a"]).check_can_mint(&requested), Err(&scope("r:*")));
        let requested = set(&["*:a"]);
        assert_eq!(
            set(&["r:a", "r:*"]).check_can_mint(&requested),
            Err(&scope("*:a"))
        );
    }

    #[test]
    fn full_wildcard_mints_anything() {
        let holder = set(&["*:*"]);
        let requested = set(&["*:*", "r:*", "*:a", "x:y", "admin:keys"]);
        assert_eq!(holder.check_can_mint(&requested), Ok(()));
    }

    #[test]
    fn keys_wildcard_does_not_reach_admin_keys() {
        let admin = scope("admin:keys");
        assert!(!set(&["keys:*"]).allows(&admin));
        assert!(!set(&["keys:admin"]).allows(&admin));
        assert!(set(&["admin:*"]).allows(&admin));
        assert!(set(&["*:*"]).allows(&admin));
        assert!(set(&["admin:keys"]).allows(&admin));
        for own in [
            "keys:read",
            "keys:create",
            "keys:update",
            "keys:revoke",
            "keys:delete",
        ] {
            assert!(set(&["keys:*"]).allows(&scope(own)), "{own}");
            assert!(!set(&["admin:keys"]).allows(&scope(own)), "{own}");
        }
    }

    #[test]
    fn mint_check_returns_the_first_offending_scope() {
        let holder = set(&["b:*", "d:d"]);
        let requested = set(&["d:e", "a:a", "b:x", "c:c"]);
        let offending = holder.check_can_mint(&requested).unwrap_err();
        assert_eq!(offending, &scope("a:a"));
        assert!(std::ptr::eq(offending, requested.iter().next().unwrap()));
    }

    #[test]
    fn covers_uses_the_mint_rule() {
        let holder = set(&["r:*", "x:y"]);
        assert!(holder.covers(&set(&["r:a", "x:y"])));
        assert!(holder.covers(&ScopeSet::default()));
        assert!(!holder.covers(&set(&["x:*"])));
    }
}
