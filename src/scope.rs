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
//! use keygate::scope::{Requirement, Scope, ScopeSet};
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

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

/// Maximum length of a whole scope, in characters (all valid scopes are ASCII).
const MAX_SCOPE_LEN: usize = 128;
/// Maximum length of one part of a scope, in characters.
const MAX_PART_LEN: usize = 64;
/// The wildcard part.
const WILDCARD: &str = "*";
/// Maximum length of a requirement expression, in bytes.
const MAX_EXPR_LEN: usize = 4096;
/// Maximum parenthesis nesting depth of a requirement expression.
const MAX_DEPTH: usize = 32;
/// Maximum number of scopes in a requirement expression.
const MAX_EXPR_SCOPES: usize = 256;
/// Echoed input in error messages is cut to this many characters.
const MAX_ECHO_CHARS: usize = 64;

/// keygate's own scopes, which every catalog contains (SPEC §4a): the five
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

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a scope was rejected.
///
/// Messages name the offending scope text; echoed input is cut to 64 characters so that error
/// messages stay bounded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is the empty string.
    #[error("invalid scope \"\": the scope is empty")]
    Empty,
    /// The scope is longer than 128 characters.
    #[error("invalid scope {input:?}: the scope is {len} characters long (maximum 128)")]
    TooLong {
        /// The offending input (truncated).
        input: String,
        /// Length of the scope in characters.
        len: usize,
    },
    /// The scope has no `:` separating resource and action.
    #[error("invalid scope {input:?}: expected `resource:action` but found no ':'")]
    MissingColon {
        /// The offending input (truncated).
        input: String,
    },
    /// The scope has more than one `:`.
    #[error("invalid scope {input:?}: expected exactly one ':' between resource and action")]
    TooManyColons {
        /// The offending input (truncated).
        input: String,
    },
    /// The resource or the action is empty.
    #[error("invalid scope {input:?}: the {which} part is empty")]
    EmptyPart {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
    },
    /// The resource or the action is longer than 64 characters.
    #[error("invalid scope {input:?}: the {which} part is {len} characters long (maximum 64)")]
    PartTooLong {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
        /// Length of the part in characters.
        len: usize,
    },
    /// The scope contains a character outside `a-z`, `0-9`, `_`, `.`, `-`, `:` and `*`.
    #[error(
        "invalid scope {input:?}: character {ch:?} at position {position} is not allowed \
         (use a-z, 0-9, '_', '.', '-')"
    )]
    InvalidChar {
        /// The offending input (truncated).
        input: String,
        /// The first character that is not allowed.
        ch: char,
        /// Zero-based position of `ch` in the input (every character before it is ASCII, so
        /// this is both its character index and its byte offset).
        position: usize,
    },
    /// A part does not start with `a-z` or `0-9`.
    #[error("invalid scope {input:?}: the {which} part must start with a-z or 0-9, not {ch:?}")]
    BadStart {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
        /// The first character of the part.
        ch: char,
    },
    /// A part contains `*` but is not exactly `*`.
    #[error(
        "invalid scope {input:?}: the {which} part mixes '*' with other characters \
         (a wildcard must be the whole part)"
    )]
    BadWildcard {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
    },
    /// A catalog is in use and the scope is not defined in it.
    #[error("scope {scope:?} is not defined in the scope catalog")]
    NotInCatalog {
        /// The scope that was refused.
        scope: String,
    },
    /// Catalog entries must be concrete scopes; wildcards are derived from them.
    #[error(
        "scope {scope:?} cannot be added to the scope catalog: catalog entries must not contain '*'"
    )]
    WildcardInCatalog {
        /// The scope that was refused.
        scope: String,
    },
}

/// Why a requirement expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid requirement at position {position}: {message}")]
#[non_exhaustive]
pub struct RequirementError {
    /// Byte offset in the expression where the problem was found.
    pub position: usize,
    /// What is wrong, as one sentence.
    pub message: String,
}

impl RequirementError {
    fn new(position: usize, message: impl Into<String>) -> RequirementError {
        RequirementError {
            position,
            message: message.into(),
        }
    }
}

/// Returns `input` for use in an error message, cut to [`MAX_ECHO_CHARS`] characters.
fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scope
// ---------------------------------------------------------------------------------------------

/// One `resource:action` scope, such as `workspaces:read` or `templates:*`.
///
/// A `Scope` can only be constructed by parsing ([`Scope::parse`], [`str::parse`] or
/// deserializing), so every value is valid. It serializes as its plain string.
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
    /// scope syntax described in the [module documentation](self).
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let colon = validate_scope(s)?;
        Ok(Scope {
            text: s.into(),
            colon,
        })
    }

    /// The scope as a string, e.g. `"workspaces:read"`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The resource part (before the `:`), possibly `"*"`.
    pub fn resource(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The action part (after the `:`), possibly `"*"`.
    pub fn action(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// Whether the resource or the action is the wildcard `*`.
    pub fn is_wildcard(&self) -> bool {
        self.resource() == WILDCARD || self.action() == WILDCARD
    }

    /// Whether this scope, as a **grant**, satisfies the `required` scope.
    ///
    /// True when, for both parts, the granted part is `*` or equal to the required part. A
    /// required wildcard is thus only satisfied by an equal or wider wildcard.
    ///
    /// ```
    /// use keygate::scope::Scope;
    ///
    /// let grant = Scope::parse("workspaces:*")?;
    /// assert!(grant.satisfies(&Scope::parse("workspaces:read")?));
    /// assert!(grant.satisfies(&Scope::parse("workspaces:*")?));
    /// assert!(!grant.satisfies(&Scope::parse("*:read")?));
    /// # Ok::<(), keygate::scope::ScopeError>(())
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

/// Deserializes a string through `T`'s [`FromStr`] implementation.
struct ParseVisitor<T> {
    expecting: &'static str,
    target: PhantomData<T>,
}

impl<T> ParseVisitor<T> {
    fn new(expecting: &'static str) -> ParseVisitor<T> {
        ParseVisitor {
            expecting,
            target: PhantomData,
        }
    }
}

impl<T> Visitor<'_> for ParseVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// ScopeSet
// ---------------------------------------------------------------------------------------------

/// The scopes granted to a key: sorted and free of duplicates.
///
/// Serializes as a JSON array of scope strings; displays as the scopes separated by single
/// spaces (the format of the `X-Keygate-Scopes` header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    /// Sorted, deduplicated.
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Builds a set from scopes, sorting them and dropping duplicates.
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
    pub fn allows(&self, required: &Scope) -> bool {
        self.scopes.iter().any(|grant| grant.satisfies(required))
    }

    /// Whether these grants satisfy the requirement; same as
    /// [`req.is_satisfied_by(self)`](Requirement::is_satisfied_by).
    pub fn satisfies(&self, req: &Requirement) -> bool {
        req.is_satisfied_by(self)
    }

    /// Mint ceiling: checks that a key holding these scopes may mint a key with `requested`.
    ///
    /// Every requested scope must be [allowed](ScopeSet::allows) by these grants, so a key can
    /// never mint a scope it does not hold, and a wildcard only from an equal or wider wildcard.
    ///
    /// # Errors
    ///
    /// Returns the first requested scope (in set order) that these grants do not allow.
    pub fn check_can_mint<'a>(&self, requested: &'a ScopeSet) -> Result<(), &'a Scope> {
        match requested.iter().find(|scope| !self.allows(scope)) {
            Some(scope) => Err(scope),
            None => Ok(()),
        }
    }

    /// Narrowing for updates: true if every scope in `other` is allowed by these grants (the
    /// same rule as [`check_can_mint`](ScopeSet::check_can_mint)).
    pub fn covers(&self, other: &ScopeSet) -> bool {
        self.check_can_mint(other).is_ok()
    }

    /// The scopes, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    /// Number of scopes in the set.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether the set has no scopes.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether exactly this scope is in the set (no wildcard matching; see
    /// [`allows`](ScopeSet::allows) for that).
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

// ---------------------------------------------------------------------------------------------
// Requirement
// ---------------------------------------------------------------------------------------------

/// A requirement expression: scopes combined with `and` / `or`.
///
/// ```text
/// expr     = and-expr *( "or" and-expr )
/// and-expr = primary *( "and" primary )
/// primary  = scope / "(" expr ")"
/// ```
///
/// `and` binds tighter than `or`; operators are case-insensitive; words and parentheses are
/// separated by ASCII whitespace, and parentheses may touch words. Parsing flattens nested
/// operators (`a:a and (b:b and c:c)` becomes one `And` of three scopes) and drops redundant
/// parentheses, so every `And`/`Or` produced by [`Requirement::parse`] has at least two
/// operands, none of them of the same kind.
///
/// [`Display`](fmt::Display) prints a canonical form (lowercase operators, single spaces,
/// parentheses only around an `or` inside an `and`) that parses back to an equal requirement.
/// Requirements serialize as that string.
///
/// Limits: at most 4096 bytes, 32 levels of parentheses and 256 scopes.
///
/// The representation is private: a requirement comes from [`Requirement::parse`],
/// [`Requirement::scope`], [`Requirement::all`] or [`Requirement::any`], so every one is
/// an expression `parse` could have produced (no empty `and`, which would grant anything, nor
/// empty `or`), within the limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    node: Node,
}

/// The expression tree of a [`Requirement`]: every `And`/`Or` has at least two operands, none
/// of its own kind.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    /// A single scope that some grant must satisfy.
    Scope(Scope),
    /// Every operand must be satisfied.
    And(Vec<Node>),
    /// At least one operand must be satisfied.
    Or(Vec<Node>),
}

impl Requirement {
    /// Parses a requirement expression.
    ///
    /// ```
    /// use keygate::scope::{Requirement, Scope};
    ///
    /// let req = Requirement::parse("a:read OR b:read AND c:read")?;
    /// let scope = |s| Requirement::scope(Scope::parse(s).unwrap());
    /// let and = Requirement::all([scope("b:read"), scope("c:read")])?;
    /// assert_eq!(req, Requirement::any([scope("a:read"), and])?);
    /// assert_eq!(req.to_string(), "a:read or b:read and c:read");
    /// # Ok::<(), keygate::scope::RequirementError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Returns a [`RequirementError`] with the byte offset of the first problem: an empty
    /// expression, a misplaced or missing operator or operand, unbalanced or empty parentheses,
    /// an invalid scope, or an exceeded limit.
    pub fn parse(expr: &str) -> Result<Requirement, RequirementError> {
        if expr.len() > MAX_EXPR_LEN {
            return Err(RequirementError::new(
                MAX_EXPR_LEN,
                format!(
                    "the expression is {} bytes long (maximum {MAX_EXPR_LEN})",
                    expr.len()
                ),
            ));
        }
        if expr.bytes().all(|b| b.is_ascii_whitespace()) {
            return Err(RequirementError::new(0, "the expression is empty"));
        }
        let mut parser = Parser::new(expr);
        let node = parser.parse_or()?;
        let token = parser.next()?;
        match token.kind {
            Tok::End => Ok(Requirement { node }),
            Tok::RParen => Err(RequirementError::new(token.pos, "unmatched ')'")),
            // `And`/`Or` are always consumed by the loops above, so this is a scope or '('.
            _ => Err(missing_operator(&token)),
        }
    }

    /// The requirement of one scope.
    pub fn scope(scope: Scope) -> Requirement {
        Requirement {
            node: Node::Scope(scope),
        }
    }

    /// The requirement that every one of `operands` is satisfied (`a and b and …`); one
    /// operand is that operand itself.
    ///
    /// # Errors
    ///
    /// A [`RequirementError`] when there is no operand (an empty conjunction would be
    /// satisfied by anything) or the result exceeds the limits of [`Requirement::parse`].
    pub fn all(
        operands: impl IntoIterator<Item = Requirement>,
    ) -> Result<Requirement, RequirementError> {
        Requirement::combined(operands, Node::And, "all")
    }

    /// The requirement that at least one of `operands` is satisfied (`a or b or …`); one
    /// operand is that operand itself.
    ///
    /// # Errors
    ///
    /// A [`RequirementError`] when there is no operand or the result exceeds the limits of
    /// [`Requirement::parse`].
    pub fn any(
        operands: impl IntoIterator<Item = Requirement>,
    ) -> Result<Requirement, RequirementError> {
        Requirement::combined(operands, Node::Or, "any")
    }

    /// `operands` under `make`, flattened as `parse` does; only what `parse` accepts.
    fn combined(
        operands: impl IntoIterator<Item = Requirement>,
        make: fn(Vec<Node>) -> Node,
        name: &str,
    ) -> Result<Requirement, RequirementError> {
        let mut items = Vec::new();
        for operand in operands {
            match (make(Vec::new()), operand.node) {
                (Node::And(_), Node::And(nested)) | (Node::Or(_), Node::Or(nested)) => {
                    items.extend(nested)
                }
                (_, other) => items.push(other),
            }
        }
        if items.is_empty() {
            return Err(RequirementError::new(
                0,
                format!("Requirement::{name} needs at least one operand"),
            ));
        }
        let built = Requirement {
            node: combine(items, make),
        };
        // The limits are those of the text, which must parse back to this value.
        let reparsed = Requirement::parse(&built.to_string())?;
        debug_assert_eq!(reparsed, built);
        Ok(reparsed)
    }

    /// Whether `grants` satisfy this requirement.
    pub fn is_satisfied_by(&self, grants: &ScopeSet) -> bool {
        self.node.is_satisfied_by(grants)
    }

    /// Every scope in the expression, in order of first appearance, without duplicates (e.g.
    /// for the `scope="..."` parameter of a `WWW-Authenticate` header).
    pub fn scopes(&self) -> Vec<&Scope> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        self.node.collect_scopes(&mut seen, &mut out);
        out
    }
}

impl Node {
    fn is_satisfied_by(&self, grants: &ScopeSet) -> bool {
        match self {
            Node::Scope(scope) => grants.allows(scope),
            Node::And(items) => items.iter().all(|item| item.is_satisfied_by(grants)),
            Node::Or(items) => items.iter().any(|item| item.is_satisfied_by(grants)),
        }
    }

    fn collect_scopes<'a>(&'a self, seen: &mut HashSet<&'a Scope>, out: &mut Vec<&'a Scope>) {
        match self {
            Node::Scope(scope) => {
                if seen.insert(scope) {
                    out.push(scope);
                }
            }
            Node::And(items) | Node::Or(items) => {
                for item in items {
                    item.collect_scopes(seen, out);
                }
            }
        }
    }
}

impl FromStr for Requirement {
    type Err = RequirementError;

    fn from_str(s: &str) -> Result<Requirement, RequirementError> {
        Requirement::parse(s)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node.fmt(f)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Scope(scope) => f.write_str(scope.as_str()),
            Node::And(items) => {
                write_operands(f, items, " and ", |item| matches!(item, Node::Or(_)))
            }
            Node::Or(items) => write_operands(f, items, " or ", |_| false),
        }
    }
}

/// Writes `items` separated by `separator`, parenthesizing those for which `needs_parens` holds.
fn write_operands(
    f: &mut fmt::Formatter<'_>,
    items: &[Node],
    separator: &str,
    needs_parens: fn(&Node) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl Serialize for Requirement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Requirement, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("a scope requirement expression"))
    }
}

/// A token of a requirement expression.
#[derive(Debug)]
struct Token {
    kind: Tok,
    /// Byte offset of the token in the expression.
    pos: usize,
}

/// The kinds of tokens.
#[derive(Debug)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Scope(Scope),
    End,
}

impl Tok {
    /// How the token is named in error messages.
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".to_owned(),
            Tok::RParen => "')'".to_owned(),
            Tok::And => "operator 'and'".to_owned(),
            Tok::Or => "operator 'or'".to_owned(),
            Tok::Scope(scope) => format!("scope {:?}", scope.as_str()),
            Tok::End => "the end of the expression".to_owned(),
        }
    }
}

/// The error for two operands with no operator between them; `token` is the second operand.
fn missing_operator(token: &Token) -> RequirementError {
    RequirementError::new(
        token.pos,
        format!(
            "expected 'and' or 'or' before {}, found no operator",
            token.kind.describe()
        ),
    )
}

/// Lazy lexer and recursive-descent parser for requirement expressions.
///
/// Recursion only happens through parentheses, which are limited to [`MAX_DEPTH`] levels, so
/// the stack use is bounded whatever the input.
struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the lexer.
    pos: usize,
    /// One token of lookahead.
    peeked: Option<Token>,
    /// Number of currently open parentheses.
    depth: usize,
    /// Number of scopes lexed so far.
    scopes: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Parser<'a> {
        Parser {
            src,
            pos: 0,
            peeked: None,
            depth: 0,
            scopes: 0,
        }
    }

    /// Returns the next token without consuming it.
    fn peek(&mut self) -> Result<&Token, RequirementError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lex()?,
        };
        Ok(self.peeked.insert(token))
    }

    /// Consumes and returns the next token.
    fn next(&mut self) -> Result<Token, RequirementError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lex(),
        }
    }

    /// Reads one token from the source.
    fn lex(&mut self) -> Result<Token, RequirementError> {
        let bytes = self.src.as_bytes();
        while bytes.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let kind = match bytes.get(start) {
            None => Tok::End,
            Some(b'(') => {
                self.pos += 1;
                Tok::LParen
            }
            Some(b')') => {
                self.pos += 1;
                Tok::RParen
            }
            Some(_) => {
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b.is_ascii_whitespace() || b == b'(' || b == b')')
                    .map_or(bytes.len(), |len| start + len);
                self.pos = end;
                // `start` and `end` are each next to an ASCII delimiter or at an end of the
                // string, so they are char boundaries.
                let word = &self.src[start..end];
                if word.eq_ignore_ascii_case("and") {
                    Tok::And
                } else if word.eq_ignore_ascii_case("or") {
                    Tok::Or
                } else {
                    self.scopes += 1;
                    if self.scopes > MAX_EXPR_SCOPES {
                        return Err(RequirementError::new(
                            start,
                            format!("too many scopes (maximum {MAX_EXPR_SCOPES})"),
                        ));
                    }
                    let scope = Scope::parse(word)
                        .map_err(|e| RequirementError::new(start, e.to_string()))?;
                    Tok::Scope(scope)
                }
            }
        };
        Ok(Token { kind, pos: start })
    }

    /// `expr = and-expr *( "or" and-expr )`
    fn parse_or(&mut self) -> Result<Node, RequirementError> {
        let mut items = Vec::new();
        loop {
            match self.parse_and()? {
                Node::Or(nested) => items.extend(nested),
                other => items.push(other),
            }
            if !matches!(self.peek()?.kind, Tok::Or) {
                break;
            }
            self.next()?;
        }
        Ok(combine(items, Node::Or))
    }

    /// `and-expr = primary *( "and" primary )`
    fn parse_and(&mut self) -> Result<Node, RequirementError> {
        let mut items = Vec::new();
        loop {
            match self.parse_primary()? {
                Node::And(nested) => items.extend(nested),
                other => items.push(other),
            }
            if !matches!(self.peek()?.kind, Tok::And) {
                break;
            }
            self.next()?;
        }
        Ok(combine(items, Node::And))
    }

    /// `primary = scope / "(" expr ")"`
    fn parse_primary(&mut self) -> Result<Node, RequirementError> {
        let token = self.next()?;
        match token.kind {
            Tok::Scope(scope) => Ok(Node::Scope(scope)),
            Tok::LParen => {
                if self.depth == MAX_DEPTH {
                    return Err(RequirementError::new(
                        token.pos,
                        format!("parentheses are nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                if matches!(self.peek()?.kind, Tok::RParen) {
                    return Err(RequirementError::new(token.pos, "empty parentheses '()'"));
                }
                self.depth += 1;
                let inner = self.parse_or()?;
                self.depth -= 1;
                let close = self.next()?;
                match close.kind {
                    Tok::RParen => Ok(inner),
                    Tok::End => Err(RequirementError::new(token.pos, "unclosed '('")),
                    _ => Err(missing_operator(&close)),
                }
            }
            kind => Err(RequirementError::new(
                token.pos,
                format!("expected a scope or '(', found {}", kind.describe()),
            )),
        }
    }
}

/// Builds an operator node, or returns the only operand.
fn combine(mut items: Vec<Node>, make: fn(Vec<Node>) -> Node) -> Node {
    if items.len() == 1 {
        items.swap_remove(0)
    } else {
        make(items)
    }
}

// ---------------------------------------------------------------------------------------------
// ScopeCatalog
// ---------------------------------------------------------------------------------------------

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
/// use keygate::scope::{Scope, ScopeCatalog};
///
/// let catalog = ScopeCatalog::new()
///     .with("workspaces:read", "Read workspaces")?
///     .with("workspaces:write", "Create and modify workspaces")?;
/// assert!(catalog.check(&Scope::parse("workspaces:*")?).is_ok());
/// assert!(catalog.check(&Scope::parse("keys:create")?).is_ok());
/// assert!(catalog.check(&Scope::parse("workspace:read")?).is_err());
/// # Ok::<(), keygate::scope::ScopeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ScopeCatalog {
    entries: BTreeMap<Scope, String>,
}

impl ScopeCatalog {
    /// A catalog containing only keygate's built-in scopes (`keys:*`, `admin:keys`,
    /// `audit:read`, `metrics:read`).
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

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn set(scopes: &[&str]) -> ScopeSet {
        ScopeSet::parse(scopes).expect("valid scopes")
    }

    fn leaf(s: &str) -> Node {
        Node::Scope(scope(s))
    }

    fn req(expr: &str) -> Requirement {
        Requirement::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    /// The tree `expr` parses to.
    fn tree(expr: &str) -> Node {
        req(expr).node
    }

    fn req_err(expr: &str) -> RequirementError {
        match Requirement::parse(expr) {
            Ok(r) => panic!("{expr:?} should be rejected, parsed as {r:?}"),
            Err(e) => e,
        }
    }

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
    fn error_messages_name_the_scope_and_the_problem() {
        let err = Scope::parse("Work:read").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scope \"Work:read\": character 'W' at position 0 is not allowed \
             (use a-z, 0-9, '_', '.', '-')"
        );
        let err = Scope::parse("_w:read").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scope \"_w:read\": the resource part must start with a-z or 0-9, not '_'"
        );
    }

    #[test]
    fn error_messages_truncate_long_input() {
        let long = format!("{}X", "a".repeat(5000));
        let message = Scope::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "message too long: {message}");
        assert!(message.contains(&format!("\"{}…\"", "a".repeat(64))));
        assert!(message.contains("position 5000"));
    }

    #[test]
    fn error_messages_escape_control_characters() {
        let message = Scope::parse("a:b\n\u{1b}[31m").unwrap_err().to_string();
        assert!(!message.contains('\n') && !message.contains('\u{1b}'));
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

    // --- Requirement -------------------------------------------------------------------------

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            tree("a:a or b:b and c:c"),
            Node::Or(vec![leaf("a:a"), Node::And(vec![leaf("b:b"), leaf("c:c")])])
        );
        assert_eq!(
            tree("a:a and b:b or c:c"),
            Node::Or(vec![Node::And(vec![leaf("a:a"), leaf("b:b")]), leaf("c:c")])
        );
    }

    #[test]
    fn operators_are_case_insensitive() {
        assert_eq!(req("a:a AND b:b Or c:c"), req("a:a and b:b or c:c"));
        assert_eq!(req("a:a aNd b:b"), req("a:a and b:b"));
    }

    #[test]
    fn chains_are_flattened_and_redundant_parentheses_dropped() {
        let flat = Node::And(vec![leaf("a:a"), leaf("b:b"), leaf("c:c")]);
        assert_eq!(tree("a:a and b:b and c:c"), flat);
        assert_eq!(tree("(a:a and b:b) and c:c"), flat);
        assert_eq!(tree("a:a and (b:b and (c:c))"), flat);
        assert_eq!(tree("((a:a))"), leaf("a:a"));
    }

    #[test]
    fn nested_parentheses_group_operands() {
        assert_eq!(
            tree("workspaces:read and (templates:use or (templates:* and x:y))"),
            Node::And(vec![
                leaf("workspaces:read"),
                Node::Or(vec![
                    leaf("templates:use"),
                    Node::And(vec![leaf("templates:*"), leaf("x:y")]),
                ]),
            ])
        );
    }

    #[test]
    fn parentheses_may_touch_words_and_any_ascii_whitespace_separates() {
        assert_eq!(req("(a:b or c:d)and(e:f)"), req("(a:b or c:d) and e:f"));
        assert_eq!(req("\ta:b\n AND\r\nc:d  "), req("a:b and c:d"));
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(
            req("a:a  OR (b:b AND (c:c Or d:d))").to_string(),
            "a:a or b:b and (c:c or d:d)"
        );
        assert_eq!(req("(a:a)").to_string(), "a:a");
        assert_eq!(
            req("(a:a and b:b) or c:c").to_string(),
            "a:a and b:b or c:c"
        );
    }

    #[test]
    fn requirement_is_evaluated_against_grants() {
        let r = req("workspaces:read and (templates:use or templates:*)");
        assert!(r.is_satisfied_by(&set(&["workspaces:read", "templates:use"])));
        assert!(r.is_satisfied_by(&set(&["workspaces:*", "templates:*"])));
        assert!(!r.is_satisfied_by(&set(&["workspaces:read", "templates:read"])));
        // The required wildcard needs a wildcard grant; `templates:use` already satisfies.
        assert!(!set(&["workspaces:read", "templates:x"]).satisfies(&r));
        assert!(set(&["*:*"]).satisfies(&r));
    }

    #[test]
    fn an_empty_conjunction_or_disjunction_cannot_be_built() {
        let err = Requirement::all([]).unwrap_err();
        assert!(err.message.contains("at least one operand"), "{err}");
        assert!(Requirement::any(std::iter::empty()).is_err());
        // The parser has no way to write one either.
        assert!(Requirement::parse("()").is_err());
        assert!(Requirement::parse("a:a and ()").is_err());
    }

    #[test]
    fn built_requirements_are_what_parse_produces() {
        let one = Requirement::scope(scope("a:a"));
        assert_eq!(one, req("a:a"));
        assert_eq!(Requirement::all([one.clone()]).unwrap(), one);
        assert_eq!(Requirement::any([one.clone()]).unwrap(), one);
        let and = Requirement::all([req("a:a and b:b"), req("c:c")]).unwrap();
        assert_eq!(and, req("a:a and b:b and c:c"));
        let or = Requirement::any([req("a:a or b:b"), and.clone()]).unwrap();
        assert_eq!(or, req("a:a or b:b or a:a and b:b and c:c"));
        assert_eq!(
            Requirement::all([req("x:x"), or]).unwrap().to_string(),
            "x:x and (a:a or b:b or a:a and b:b and c:c)"
        );
    }

    #[test]
    fn built_requirements_keep_the_limits_of_parse() {
        let many = vec![req("a:b"); MAX_EXPR_SCOPES + 1];
        assert!(Requirement::any(many[..MAX_EXPR_SCOPES].to_vec()).is_ok());
        let err = Requirement::any(many).unwrap_err();
        assert!(err.message.contains("too many scopes"), "{err}");
        let mut deep = req("a:a");
        for _ in 0..MAX_DEPTH {
            deep = Requirement::all([req("b:b"), Requirement::any([req("c:c"), deep]).unwrap()])
                .unwrap();
        }
        assert!(
            Requirement::all([req("b:b"), Requirement::any([req("c:c"), deep]).unwrap()]).is_err()
        );
    }

    #[test]
    fn scopes_lists_each_scope_once_in_order_of_appearance() {
        let r = req("b:b and (a:a or b:b) and c:* or a:a");
        let names: Vec<&str> = r.scopes().into_iter().map(Scope::as_str).collect();
        assert_eq!(names, ["b:b", "a:a", "c:*"]);
    }

    #[test]
    fn requirement_serde_round_trips_as_a_string() {
        let r = req("a:a OR b:b AND (c:c or d:d)");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"a:a or b:b and (c:c or d:d)\"");
        assert_eq!(serde_json::from_str::<Requirement>(&json).unwrap(), r);
        let err = serde_json::from_str::<Requirement>("\"a:a or\"").unwrap_err();
        assert!(err.to_string().contains("position 6"), "{err}");
    }

    #[test]
    fn requirement_errors_carry_the_expected_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty"),
            (" \t\n ", 0, "empty"),
            ("and a:b", 0, "found operator 'and'"),
            ("OR a:b", 0, "found operator 'or'"),
            ("a:b and", 7, "found the end of the expression"),
            ("a:b or  ", 8, "found the end of the expression"),
            ("a:b and or c:d", 8, "found operator 'or'"),
            ("a:b or and c:d", 7, "found operator 'and'"),
            ("a:b c:d", 4, "expected 'and' or 'or'"),
            ("a:b (c:d)", 4, "expected 'and' or 'or' before '('"),
            ("(a:b) c:d", 6, "expected 'and' or 'or'"),
            ("(a:b c:d)", 5, "expected 'and' or 'or'"),
            ("(a:b", 0, "unclosed '('"),
            ("a:b and ((c:d)", 8, "unclosed '('"),
            ("a:b)", 3, "unmatched ')'"),
            ("(a:b))", 5, "unmatched ')'"),
            (")", 0, "found ')'"),
            ("(a:b and)", 8, "found ')'"),
            ("()", 0, "empty parentheses"),
            ("a:b or ( )", 7, "empty parentheses"),
            ("a:b and Foo:bar", 8, "character 'F'"),
            ("a:b & c:d", 4, "character '&'"),
            ("a:b && c:d", 4, "character '&'"),
            ("a:b and é:x", 8, "character 'é'"),
            ("a:b or\u{a0}c:d", 4, "character '\\u{a0}'"),
            ("a:b or c", 7, "no ':'"),
        ];
        for &(expr, position, fragment) in cases {
            let err = req_err(expr);
            assert_eq!(err.position, position, "{expr:?}: {err}");
            assert!(
                err.message.contains(fragment),
                "{expr:?}: message {:?} should contain {fragment:?}",
                err.message
            );
        }
    }

    #[test]
    fn requirement_error_display_includes_the_position() {
        assert_eq!(
            req_err("a:b c:d").to_string(),
            "invalid requirement at position 4: expected 'and' or 'or' before scope \"c:d\", \
             found no operator"
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_rejected() {
        let nested = |depth: usize| format!("{}a:b{}", "(".repeat(depth), ")".repeat(depth));
        assert_eq!(tree(&nested(MAX_DEPTH)), leaf("a:b"));
        let err = req_err(&nested(MAX_DEPTH + 1));
        assert_eq!(err.position, MAX_DEPTH);
        assert!(err.message.contains("nested"), "{err}");
        // Far deeper input still fails cleanly rather than overflowing the stack.
        let err = req_err(&"(".repeat(4000));
        assert_eq!(err.position, MAX_DEPTH);
    }

    #[test]
    fn too_many_scopes_are_rejected() {
        let expr = |n: usize| vec!["a:b"; n].join(" or ");
        assert!(Requirement::parse(&expr(MAX_EXPR_SCOPES)).is_ok());
        let err = req_err(&expr(MAX_EXPR_SCOPES + 1));
        assert_eq!(err.position, MAX_EXPR_SCOPES * "a:b or ".len());
        assert!(err.message.contains("too many scopes"), "{err}");
    }

    #[test]
    fn overlong_expressions_are_rejected() {
        let ok = format!("{}:b", "a".repeat(MAX_EXPR_LEN - 2));
        assert_eq!(ok.len(), MAX_EXPR_LEN);
        // Within the length limit, so the error comes from the scope itself.
        assert!(req_err(&ok).message.contains("maximum 128"));
        let err = req_err(&format!("{ok} "));
        assert_eq!(err.position, MAX_EXPR_LEN);
        assert!(err.message.contains("4097 bytes"), "{err}");
    }

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

    /// Strings that look somewhat like expressions, to reach deep into the parser.
    fn expression_like_string() -> impl Strategy<Value = String> {
        "(\\(|\\)|and|OR|a:b|r:\\*|\\*:\\*|Ab:c|a:|:|é|\u{a0}| |\t|&|_x:y| ){0,60}"
    }

    const ALPHABET: [&str; 9] = [
        "r:a", "r:b", "r:*", "s:a", "s:b", "s:*", "*:a", "*:b", "*:*",
    ];

    fn small_scope() -> impl Strategy<Value = Scope> {
        prop::sample::select(ALPHABET.to_vec()).prop_map(scope)
    }

    /// Arbitrary (not normalized) requirement trees with non-empty operand lists.
    fn requirement_tree() -> impl Strategy<Value = Node> {
        small_scope()
            .prop_map(Node::Scope)
            .prop_recursive(4, 48, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 1..4).prop_map(Node::And),
                    prop::collection::vec(inner, 1..4).prop_map(Node::Or),
                ]
            })
    }

    /// The shape `Requirement::parse` produces: flattened, no single-operand nodes.
    fn normalize(r: Node) -> Node {
        fn flatten(
            items: Vec<Node>,
            make: fn(Vec<Node>) -> Node,
            same: fn(&Node) -> Option<&Vec<Node>>,
        ) -> Node {
            let mut out = Vec::new();
            for item in items.into_iter().map(normalize) {
                match same(&item) {
                    Some(nested) => out.extend(nested.iter().cloned()),
                    None => out.push(item),
                }
            }
            combine(out, make)
        }
        match r {
            Node::Scope(s) => Node::Scope(s),
            Node::And(items) => flatten(items, Node::And, |r| match r {
                Node::And(v) => Some(v),
                _ => None,
            }),
            Node::Or(items) => flatten(items, Node::Or, |r| match r {
                Node::Or(v) => Some(v),
                _ => None,
            }),
        }
    }

    /// A non-canonical but equivalent rendering: every compound operand parenthesized,
    /// mixed-case operators and assorted whitespace.
    fn render_messy(r: &Node) -> String {
        match r {
            Node::Scope(s) => s.to_string(),
            Node::And(items) => items
                .iter()
                .map(|i| format!("( {} )", render_messy(i)))
                .collect::<Vec<_>>()
                .join("\tAND\n"),
            Node::Or(items) => items
                .iter()
                .map(|i| format!("({})", render_messy(i)))
                .collect::<Vec<_>>()
                .join("  Or "),
        }
    }

    fn naive_eval(r: &Node, grants: &[&str]) -> bool {
        match r {
            Node::Scope(required) => grants.iter().any(|g| {
                let (gr, ga) = g.split_once(':').expect("alphabet scope");
                (gr == "*" || gr == required.resource()) && (ga == "*" || ga == required.action())
            }),
            Node::And(items) => items.iter().all(|i| naive_eval(i, grants)),
            Node::Or(items) => items.iter().any(|i| naive_eval(i, grants)),
        }
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

        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..600)
        ) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = Scope::parse(&s);
            let _ = Requirement::parse(&s);
        }

        #[test]
        fn requirement_parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = Requirement::parse(&s);
        }

        #[test]
        fn requirement_parse_never_panics_on_expression_like_strings(
            s in expression_like_string()
        ) {
            if let Ok(r) = Requirement::parse(&s) {
                // Whatever parses must print canonically and re-parse to the same value.
                prop_assert_eq!(Requirement::parse(&r.to_string()), Ok(r));
            }
        }

        #[test]
        fn display_reparses_to_an_equal_requirement(tree in requirement_tree()) {
            let normal = Requirement { node: normalize(tree.clone()) };
            prop_assert_eq!(Requirement::parse(&normal.to_string()), Ok(normal.clone()));
            prop_assert_eq!(Requirement::parse(&tree.to_string()), Ok(normal.clone()));
            prop_assert_eq!(Requirement::parse(&render_messy(&tree)), Ok(normal));
        }

        #[test]
        fn parse_never_yields_an_empty_or_single_operand_node(s in expression_like_string()) {
            fn well_formed(node: &Node) -> bool {
                match node {
                    Node::Scope(_) => true,
                    Node::And(items) => items.len() >= 2
                        && items.iter().all(|i| !matches!(i, Node::And(_)) && well_formed(i)),
                    Node::Or(items) => items.len() >= 2
                        && items.iter().all(|i| !matches!(i, Node::Or(_)) && well_formed(i)),
                }
            }
            if let Ok(r) = Requirement::parse(&s) {
                prop_assert!(well_formed(&r.node), "{:?}", r);
            }
        }

        #[test]
        fn building_a_tree_equals_parsing_its_display(tree in requirement_tree()) {
            fn build(node: &Node) -> Requirement {
                match node {
                    Node::Scope(s) => Requirement::scope(s.clone()),
                    Node::And(items) => Requirement::all(items.iter().map(build)).unwrap(),
                    Node::Or(items) => Requirement::any(items.iter().map(build)).unwrap(),
                }
            }
            prop_assert_eq!(Ok(build(&tree)), Requirement::parse(&tree.to_string()));
        }

        #[test]
        fn satisfaction_matches_a_naive_evaluator(
            tree in requirement_tree(),
            grants in prop::sample::subsequence(ALPHABET.to_vec(), 0..=ALPHABET.len()),
        ) {
            let set = ScopeSet::parse(&grants).expect("alphabet scopes");
            let expected = naive_eval(&tree, &grants);
            prop_assert_eq!(tree.is_satisfied_by(&set), expected);
            let reparsed = Requirement::parse(&tree.to_string()).expect("display re-parses");
            prop_assert_eq!(set.satisfies(&reparsed), expected);
        }
    }
}
