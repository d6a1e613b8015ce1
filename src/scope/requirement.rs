//! [`Requirement`], an `and`/`or` expression over scopes that a request must satisfy.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

use super::error::RequirementError;
use super::name::Scope;
use super::parse_visitor::ParseVisitor;
use super::parser::{self, combine};
use super::set::ScopeSet;
use super::tree::Node;

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
///
/// ```
/// use keygate::{Requirement, ScopeSet};
///
/// let requirement: Requirement = "a:read AND (b:use OR b:*)".parse()?; // operators in any case
/// assert_eq!(requirement.to_string(), "a:read and (b:use or b:*)");
/// assert!(requirement.is_satisfied_by(&ScopeSet::parse(["a:read", "b:*"])?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    node: Node,
}

impl Requirement {
    /// Parses a requirement expression.
    ///
    /// ```
    /// use keygate::{Requirement, Scope};
    ///
    /// let req = Requirement::parse("a:read OR b:read AND c:read")?;
    /// let scope = |s| Requirement::scope(Scope::parse(s).unwrap());
    /// let and = Requirement::all([scope("b:read"), scope("c:read")])?;
    /// assert_eq!(req, Requirement::any([scope("a:read"), and])?);
    /// assert_eq!(req.to_string(), "a:read or b:read and c:read");
    /// # Ok::<(), keygate::RequirementError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Returns a [`RequirementError`] with the byte offset of the first problem: an empty
    /// expression, a misplaced or missing operator or operand, unbalanced or empty parentheses,
    /// an invalid scope, or an exceeded limit.
    pub fn parse(expr: &str) -> Result<Requirement, RequirementError> {
        parser::parse_expression(expr).map(|node| Requirement { node })
    }

    /// The requirement of one scope.
    ///
    /// ```
    /// use keygate::{Requirement, Scope, ScopeSet};
    ///
    /// let requirement = Requirement::scope(Scope::parse("reports:read")?);
    /// assert!(requirement.is_satisfied_by(&ScopeSet::parse(["reports:*"])?));
    /// # Ok::<(), keygate::ScopeError>(())
    /// ```
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
    ///
    /// ```
    /// use keygate::{Requirement, ScopeSet};
    ///
    /// let both = Requirement::all([Requirement::parse("a:read")?, Requirement::parse("b:read")?])?;
    /// assert_eq!(both.to_string(), "a:read and b:read");
    /// assert!(!both.is_satisfied_by(&ScopeSet::parse(["a:read"])?));
    /// assert!(Requirement::all([]).is_err()); // an empty conjunction would allow anything
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// use keygate::{Requirement, ScopeSet};
    ///
    /// let either = Requirement::any([Requirement::parse("a:read")?, Requirement::parse("b:read")?])?;
    /// assert_eq!(either.to_string(), "a:read or b:read");
    /// assert!(either.is_satisfied_by(&ScopeSet::parse(["b:read"])?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// use keygate::{Requirement, ScopeSet};
    ///
    /// let requirement = Requirement::parse("workspaces:read and (templates:use or templates:*)")?;
    /// assert!(requirement.is_satisfied_by(&ScopeSet::parse(["workspaces:read", "templates:use"])?));
    /// assert!(!requirement.is_satisfied_by(&ScopeSet::parse(["workspaces:read"])?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_satisfied_by(&self, grants: &ScopeSet) -> bool {
        self.node.is_satisfied_by(grants)
    }

    /// Every scope in the expression, in order of first appearance, without duplicates (e.g.
    /// for the `scope="..."` parameter of a `WWW-Authenticate` header).
    ///
    /// ```
    /// use keygate::Requirement;
    ///
    /// let requirement = Requirement::parse("a:read and (b:use or a:read)")?;
    /// let scopes: Vec<&str> = requirement.scopes().iter().map(|s| s.as_str()).collect();
    /// assert_eq!(scopes, ["a:read", "b:use"]);
    /// # Ok::<(), keygate::RequirementError>(())
    /// ```
    pub fn scopes(&self) -> Vec<&Scope> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        self.node.collect_scopes(&mut seen, &mut out);
        out
    }
}

// `ScopeSet::satisfies` is defined here rather than in `set.rs`, so that the scope set does not
// depend on requirements (which depend on the scope set).
impl ScopeSet {
    /// Whether these grants satisfy the requirement; same as
    /// [`req.is_satisfied_by(self)`](Requirement::is_satisfied_by).
    ///
    /// ```
    /// use keygate::{Requirement, ScopeSet};
    ///
    /// let grants = ScopeSet::parse(["reports:read"])?;
    /// assert!(grants.satisfies(&Requirement::parse("reports:read or audit:read")?));
    /// assert!(!grants.satisfies(&Requirement::parse("reports:read and audit:read")?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn satisfies(&self, req: &Requirement) -> bool {
        req.is_satisfied_by(self)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::test_support::{expression_like_string, req, requirement_tree, scope, set};
    use proptest::prelude::*;

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
    fn requirement_serde_round_trips_as_a_string() {
        let r = req("a:a OR b:b AND (c:c or d:d)");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"a:a or b:b and (c:c or d:d)\"");
        assert_eq!(serde_json::from_str::<Requirement>(&json).unwrap(), r);
        let err = serde_json::from_str::<Requirement>("\"a:a or\"").unwrap_err();
        assert!(err.to_string().contains("position 6"), "{err}");
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

    proptest! {
        #[test]
        fn display_reparses_to_an_equal_requirement(tree in requirement_tree()) {
            let normal = Requirement { node: normalize(tree.clone()) };
            prop_assert_eq!(Requirement::parse(&normal.to_string()), Ok(normal.clone()));
            prop_assert_eq!(Requirement::parse(&tree.to_string()), Ok(normal.clone()));
            prop_assert_eq!(Requirement::parse(&render_messy(&tree)), Ok(normal));
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
    }
}
