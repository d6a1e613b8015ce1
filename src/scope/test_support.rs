//! Fixtures shared by the unit tests of the `scope` files.

use proptest::prelude::*;

use super::error::RequirementError;
use super::name::Scope;
use super::requirement::Requirement;
use super::set::ScopeSet;
use super::tree::Node;

pub(super) fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

pub(super) fn set(scopes: &[&str]) -> ScopeSet {
    ScopeSet::parse(scopes).expect("valid scopes")
}

pub(super) fn leaf(s: &str) -> Node {
    Node::Scope(scope(s))
}

pub(super) fn req(expr: &str) -> Requirement {
    Requirement::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
}

pub(super) fn req_err(expr: &str) -> RequirementError {
    match Requirement::parse(expr) {
        Ok(r) => panic!("{expr:?} should be rejected, parsed as {r:?}"),
        Err(e) => e,
    }
}

pub(super) const ALPHABET: [&str; 9] = [
    "r:a", "r:b", "r:*", "s:a", "s:b", "s:*", "*:a", "*:b", "*:*",
];

fn small_scope() -> impl Strategy<Value = Scope> {
    prop::sample::select(ALPHABET.to_vec()).prop_map(scope)
}

/// Arbitrary (not normalized) requirement trees with non-empty operand lists.
pub(super) fn requirement_tree() -> impl Strategy<Value = Node> {
    small_scope()
        .prop_map(Node::Scope)
        .prop_recursive(4, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Node::And),
                prop::collection::vec(inner, 1..4).prop_map(Node::Or),
            ]
        })
}

/// Strings that look somewhat like expressions, to reach deep into the parser.
pub(super) fn expression_like_string() -> impl Strategy<Value = String> {
    "(\\(|\\)|and|OR|a:b|r:\\*|\\*:\\*|Ab:c|a:|:|é|\u{a0}| |\t|&|_x:y| ){0,60}"
}
