//! [`Node`], the expression tree behind a [`Requirement`](super::Requirement): evaluation
//! against grants, the scopes it names, and its canonical text.

use std::collections::HashSet;
use std::fmt;

use super::name::Scope;
use super::set::ScopeSet;

/// The expression tree of a [`Requirement`](super::Requirement): every `And`/`Or` has at least two operands, none
/// of its own kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    /// A single scope that some grant must satisfy.
    Scope(Scope),
    /// Every operand must be satisfied.
    And(Vec<Node>),
    /// At least one operand must be satisfied.
    Or(Vec<Node>),
}

impl Node {
    pub(super) fn is_satisfied_by(&self, grants: &ScopeSet) -> bool {
        match self {
            Node::Scope(scope) => grants.allows(scope),
            Node::And(items) => items.iter().all(|item| item.is_satisfied_by(grants)),
            Node::Or(items) => items.iter().any(|item| item.is_satisfied_by(grants)),
        }
    }

    pub(super) fn collect_scopes<'a>(
        &'a self,
        seen: &mut HashSet<&'a Scope>,
        out: &mut Vec<&'a Scope>,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Requirement;
    use crate::scope::test_support::{ALPHABET, req, requirement_tree};
    use proptest::prelude::*;

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
    fn scopes_lists_each_scope_once_in_order_of_appearance() {
        let r = req("b:b and (a:a or b:b) and c:* or a:a");
        let names: Vec<&str> = r.scopes().into_iter().map(Scope::as_str).collect();
        assert_eq!(names, ["b:b", "a:a", "c:*"]);
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
