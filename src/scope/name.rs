//! One `resource:action` [`Scope`]: validation, parsing, display and serde.

use std::fmt;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

use super::error::{ScopeError, echo};
use super::parse_visitor::ParseVisitor;

/// Maximum length of a whole scope, in characters (all valid scopes are ASCII).
const MAX_SCOPE_LEN: usize = 128;
/// Maximum length of one part of a scope, in characters.
const MAX_PART_LEN: usize = 64;
/// The wildcard part.
pub(super) const WILDCARD: &str = "*";

/// One `resource:action` scope, such as `workspaces:read` or `templates:*`.
///
/// A `Scope` can only be constructed by parsing ([`Scope::parse`], [`str::parse`] or
/// deserializing), so every value is valid. It serializes as its plain string.
///
/// A [`Scope`] is a `resource:action` pair such as `workspaces:read`. Either part may be the
/// wildcard `*`: `workspaces:*` covers every action on workspaces, `*:read` covers reading every
/// resource and `*:*` covers everything.
///
/// - [`ScopeSet`](crate::ScopeSet) is the set of scopes granted to a key.
/// - [`Requirement`](crate::Requirement) is an expression over scopes, such as
///   `workspaces:read and (templates:use or templates:*)`, that a request must satisfy.
/// - [`ScopeCatalog`](crate::ScopeCatalog) optionally lists the scopes an application defines, so that keys cannot be
///   created with scopes that do not exist.
///
/// # Syntax
///
/// ```text
/// scope  = part ":" part               ; at most 128 characters
/// part   = "*" / 1*64 (a-z / 0-9 / "_" / "." / "-")   ; must start with a-z or 0-9
/// ```
///
/// # Matching
///
/// A granted scope satisfies a required scope when, for both the resource and the action, the
/// granted part is `*` or equal to the required part. A required wildcard is therefore only
/// satisfied by an equal or wider wildcard grant: `workspaces:*` is satisfied by `workspaces:*` or
/// `*:*`, never by `workspaces:read`. The same rule is the mint ceiling: a key can only mint
/// (or narrow another key to) scopes that it holds itself ([`ScopeSet::check_can_mint`](crate::ScopeSet::check_can_mint)).
///
/// # Example
///
/// ```
/// use keygate::{Requirement, Scope, ScopeSet};
///
/// let grants = ScopeSet::parse(["workspaces:read", "templates:*"])?;
/// let required: Requirement = "workspaces:read and (templates:use or templates:admin)".parse()?;
/// assert!(grants.satisfies(&required));
///
/// // A concrete grant never satisfies a wildcard requirement.
/// assert!(!grants.allows(&Scope::parse("workspaces:*")?));
/// assert!(grants.allows(&Scope::parse("templates:delete")?));
/// assert_eq!(grants.to_string(), "templates:* workspaces:read");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The whole scope text.
    text: Box<str>,
    /// Byte index of the `:` in `text`.
    colon: usize,
}

impl Scope {
    /// Parses and validates a scope.
    ///
    /// # Errors
    ///
    /// Returns a [`ScopeError`] describing the first problem found if `s` does not follow the
    /// scope syntax described on [`Scope`](crate::Scope).
    ///
    /// ```
    /// use keygate::Scope;
    ///
    /// let scope = Scope::parse("workspaces:read")?;
    /// assert_eq!((scope.resource(), scope.action()), ("workspaces", "read"));
    /// assert!(Scope::parse("workspaces").is_err()); // no action
    /// assert!(Scope::parse("Workspaces:read").is_err()); // upper case
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let colon = validate_scope(s)?;
        Ok(Scope {
            text: s.into(),
            colon,
        })
    }

    /// The scope as a string, e.g. `"workspaces:read"`.
    ///
    /// ```
    /// use keygate::Scope;
    ///
    /// assert_eq!(Scope::parse("reports:*")?.as_str(), "reports:*");
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The resource part (before the `:`), possibly `"*"`.
    ///
    /// ```
    /// use keygate::Scope;
    ///
    /// assert_eq!(Scope::parse("reports:read")?.resource(), "reports");
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn resource(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The action part (after the `:`), possibly `"*"`.
    ///
    /// ```
    /// use keygate::Scope;
    ///
    /// assert_eq!(Scope::parse("reports:read")?.action(), "read");
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn action(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// Whether the resource or the action is the wildcard `*`.
    ///
    /// ```
    /// use keygate::Scope;
    ///
    /// assert!(Scope::parse("reports:*")?.is_wildcard());
    /// assert!(Scope::parse("*:read")?.is_wildcard());
    /// assert!(!Scope::parse("reports:read")?.is_wildcard());
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn is_wildcard(&self) -> bool {
        self.resource() == WILDCARD || self.action() == WILDCARD
    }

    /// Whether this scope, as a **grant**, satisfies the `required` scope.
    ///
    /// True when, for both parts, the granted part is `*` or equal to the required part. A
    /// required wildcard is thus only satisfied by an equal or wider wildcard.
    ///
    /// ```
    /// use keygate::Scope;
    ///
    /// let grant = Scope::parse("workspaces:*")?;
    /// assert!(grant.satisfies(&Scope::parse("workspaces:read")?));
    /// assert!(grant.satisfies(&Scope::parse("workspaces:*")?));
    /// assert!(!grant.satisfies(&Scope::parse("*:read")?));
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
    pub fn satisfies(&self, required: &Scope) -> bool {
        part_covers(self.resource(), required.resource())
            && part_covers(self.action(), required.action())
    }
}

/// Whether a granted part covers a required part.
fn part_covers(granted: &str, required: &str) -> bool {
    granted == WILDCARD || granted == required
}

/// Characters that may appear anywhere in a scope string.
fn is_scope_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-' | ':' | '*')
}

/// Validates a scope string and returns the byte index of its colon.
fn validate_scope(s: &str) -> Result<usize, ScopeError> {
    if s.is_empty() {
        return Err(ScopeError::Empty);
    }
    if let Some((position, ch)) = s.char_indices().find(|&(_, c)| !is_scope_char(c)) {
        return Err(ScopeError::InvalidChar {
            input: echo(s),
            ch,
            position,
        });
    }
    // From here on the string is ASCII: byte lengths are character counts.
    if s.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong {
            input: echo(s),
            len: s.len(),
        });
    }
    let Some((resource, action)) = s.split_once(':') else {
        return Err(ScopeError::MissingColon { input: echo(s) });
    };
    if action.contains(':') {
        return Err(ScopeError::TooManyColons { input: echo(s) });
    }
    validate_part(s, resource, "resource")?;
    validate_part(s, action, "action")?;
    Ok(resource.len())
}

/// Validates one (ASCII) part of the scope `input`.
fn validate_part(input: &str, part: &str, which: &'static str) -> Result<(), ScopeError> {
    let Some(&first) = part.as_bytes().first() else {
        return Err(ScopeError::EmptyPart {
            input: echo(input),
            which,
        });
    };
    if part == WILDCARD {
        return Ok(());
    }
    if part.contains('*') {
        return Err(ScopeError::BadWildcard {
            input: echo(input),
            which,
        });
    }
    if part.len() > MAX_PART_LEN {
        return Err(ScopeError::PartTooLong {
            input: echo(input),
            which,
            len: part.len(),
        });
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(ScopeError::BadStart {
            input: echo(input),
            which,
            ch: char::from(first),
        });
    }
    Ok(())
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Scope").field(&self.as_str()).finish()
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scope, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("a `resource:action` scope string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::test_support::{scope, set};
    use proptest::prelude::*;

    // --- Scope parsing -----------------------------------------------------------------------

    #[test]
    fn parse_accepts_valid_scopes_and_splits_parts() {
        for (text, resource, action) in [
            ("workspaces:read", "workspaces", "read"),
            ("r:*", "r", "*"),
            ("*:a", "*", "a"),
            ("*:*", "*", "*"),
            ("0.v2_x-y:a.b", "0.v2_x-y", "a.b"),
        ] {
            let s = scope(text);
            assert_eq!(s.as_str(), text);
            assert_eq!(s.resource(), resource);
            assert_eq!(s.action(), action);
            assert_eq!(s.to_string(), text);
        }
    }

    #[test]
    fn parse_accepts_maximum_lengths() {
        let a64 = "a".repeat(64);
        let b63 = "b".repeat(63);
        let s = scope(&format!("{a64}:{b63}"));
        assert_eq!(s.as_str().len(), 128);
    }

    #[test]
    fn is_wildcard_is_true_when_either_part_is_a_wildcard() {
        assert!(!scope("r:a").is_wildcard());
        assert!(scope("r:*").is_wildcard());
        assert!(scope("*:a").is_wildcard());
        assert!(scope("*:*").is_wildcard());
    }

    #[test]
    fn parse_rejects_malformed_scopes_with_specific_errors() {
        let a64 = "a".repeat(64);
        let a65 = "a".repeat(65);
        let cases: Vec<(String, ScopeError)> = vec![
            (String::new(), ScopeError::Empty),
            (
                "Work:read".into(),
                ScopeError::InvalidChar {
                    input: "Work:read".into(),
                    ch: 'W',
                    position: 0,
                },
            ),
            (
                "work:reAd".into(),
                ScopeError::InvalidChar {
                    input: "work:reAd".into(),
                    ch: 'A',
                    position: 7,
                },
            ),
            (
                ":read".into(),
                ScopeError::EmptyPart {
                    input: ":read".into(),
                    which: "resource",
                },
            ),
            (
                "work:".into(),
                ScopeError::EmptyPart {
                    input: "work:".into(),
                    which: "action",
                },
            ),
            (
                "_w:read".into(),
                ScopeError::BadStart {
                    input: "_w:read".into(),
                    which: "resource",
                    ch: '_',
                },
            ),
            (
                ".w:read".into(),
                ScopeError::BadStart {
                    input: ".w:read".into(),
                    which: "resource",
                    ch: '.',
                },
            ),
            (
                "w:-read".into(),
                ScopeError::BadStart {
                    input: "w:-read".into(),
                    which: "action",
                    ch: '-',
                },
            ),
            (
                format!("{a65}:read"),
                ScopeError::PartTooLong {
                    input: echo(&format!("{a65}:read")),
                    which: "resource",
                    len: 65,
                },
            ),
            (
                format!("w:{a65}"),
                ScopeError::PartTooLong {
                    input: echo(&format!("w:{a65}")),
                    which: "action",
                    len: 65,
                },
            ),
            (
                format!("{a64}:{a64}"),
                ScopeError::TooLong {
                    input: echo(&format!("{a64}:{a64}")),
                    len: 129,
                },
            ),
            (
                "workspaces".into(),
                ScopeError::MissingColon {
                    input: "workspaces".into(),
                },
            ),
            (
                "a:b:c".into(),
                ScopeError::TooManyColons {
                    input: "a:b:c".into(),
                },
            ),
            (
                "a::b".into(),
                ScopeError::TooManyColons {
                    input: "a::b".into(),
                },
            ),
            (
                "a b:c".into(),
                ScopeError::InvalidChar {
                    input: "a b:c".into(),
                    ch: ' ',
                    position: 1,
                },
            ),
            (
                " a:b".into(),
                ScopeError::InvalidChar {
                    input: " a:b".into(),
                    ch: ' ',
                    position: 0,
                },
            ),
            (
                "café:read".into(),
                ScopeError::InvalidChar {
                    input: "café:read".into(),
                    ch: 'é',
                    position: 3,
                },
            ),
            (
                "**:a".into(),
                ScopeError::BadWildcard {
                    input: "**:a".into(),
                    which: "resource",
                },
            ),
            (
                "a*:b".into(),
                ScopeError::BadWildcard {
                    input: "a*:b".into(),
                    which: "resource",
                },
            ),
            (
                "a:*b".into(),
                ScopeError::BadWildcard {
                    input: "a:*b".into(),
                    which: "action",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Scope::parse(&input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn from_str_debug_and_display_use_the_scope_text() {
        let s: Scope = "workspaces:read".parse().unwrap();
        assert_eq!(format!("{s}"), "workspaces:read");
        assert_eq!(format!("{s:?}"), "Scope(\"workspaces:read\")");
        assert!("nope".parse::<Scope>().is_err());
    }

    #[test]
    fn scope_serializes_as_a_string_and_deserialization_validates() {
        let s = scope("workspaces:read");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"workspaces:read\"");
        let back: Scope = serde_json::from_str("\"workspaces:read\"").unwrap();
        assert_eq!(back, s);
        let err = serde_json::from_str::<Scope>("\"Workspaces:read\"").unwrap_err();
        assert!(err.to_string().contains("is not allowed"), "{err}");
        assert!(serde_json::from_str::<Scope>("42").is_err());
    }

    // --- Matching ----------------------------------------------------------------------------

    #[test]
    fn grant_matching_follows_the_wildcard_table() {
        // Columns: required r:a, r:*, *:a, *:*.
        let required = ["r:a", "r:*", "*:a", "*:*"];
        let table: [(&str, [bool; 4]); 6] = [
            ("r:a", [true, false, false, false]),
            ("r:*", [true, true, false, false]),
            ("*:a", [true, false, true, false]),
            ("*:*", [true, true, true, true]),
            ("other:a", [false, false, false, false]),
            ("r:other", [false, false, false, false]),
        ];
        for (grant, expected) in table {
            for (req, want) in required.iter().zip(expected) {
                assert_eq!(
                    scope(grant).satisfies(&scope(req)),
                    want,
                    "grant {grant} vs required {req}"
                );
                assert_eq!(set(&[grant]).allows(&scope(req)), want);
            }
        }
    }

    // --- Properties --------------------------------------------------------------------------

    fn part_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("*".to_owned()),
            4 => "[a-z0-9][a-z0-9_.-]{0,63}",
        ]
    }

    fn valid_scope_string() -> impl Strategy<Value = String> {
        (part_strategy(), part_strategy())
            .prop_map(|(r, a)| format!("{r}:{a}"))
            .prop_filter("at most 128 characters", |s| s.len() <= MAX_SCOPE_LEN)
    }

    proptest! {
        #[test]
        fn valid_scope_strings_parse_and_round_trip(s in valid_scope_string()) {
            let parsed = Scope::parse(&s).expect("generated scope is valid");
            prop_assert_eq!(parsed.as_str(), s.as_str());
            prop_assert_eq!(format!("{}:{}", parsed.resource(), parsed.action()), s);
        }

        #[test]
        fn scope_parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = Scope::parse(&s);
        }
    }
}
