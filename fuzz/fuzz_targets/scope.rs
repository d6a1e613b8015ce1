//! Scope and requirement parsing (SPEC §4).
//!
//! Checked, on any string:
//! - `Scope::parse` accepts exactly what a reference validator of the §4
//!   grammar accepts (`part ":" part`, at most 128 characters, each part
//!   `*` or 1–64 of `a-z 0-9 _ . -` starting with `a-z`/`0-9`); an accepted
//!   scope displays back to the same text, re-parses equal, splits into
//!   its resource and action, and satisfies itself; `*:*` satisfies it;
//! - `Requirement::parse`: an accepted requirement displays in a canonical
//!   form that re-parses equal and displays identically (a fixed point),
//!   survives a JSON round trip, is satisfied by the set of its own
//!   scopes and never by no scope at all; `all([r, r])` and `any([r, r])`
//!   are satisfied exactly when `r` is, for grants taken from the input.

#![no_main]

use keygate::{Requirement, Scope, ScopeSet};
use libfuzzer_sys::fuzz_target;

fn part_ok(part: &str) -> bool {
    part == "*"
        || ((1..=64).contains(&part.len())
            && part
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
            && matches!(part.as_bytes()[0], b'a'..=b'z' | b'0'..=b'9'))
}

fn reference_scope(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    s.len() <= 128 && parts.len() == 2 && part_ok(parts[0]) && part_ok(parts[1])
}

fn check_scope(text: &str) {
    let parsed = Scope::parse(text);
    assert_eq!(
        parsed.is_ok(),
        reference_scope(text),
        "{text:?}: {parsed:?}"
    );
    if let Ok(scope) = parsed {
        assert_eq!(scope.to_string(), text);
        assert_eq!(scope.as_str(), text);
        assert_eq!(Scope::parse(&scope.to_string()).as_ref(), Ok(&scope));
        assert_eq!(format!("{}:{}", scope.resource(), scope.action()), text);
        assert_eq!(
            scope.is_wildcard(),
            scope.resource() == "*" || scope.action() == "*"
        );
        assert!(scope.satisfies(&scope));
        assert!(Scope::parse("*:*").unwrap().satisfies(&scope));
        let json = serde_json::to_string(&scope).unwrap();
        assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
    }
}

fn check_requirement(text: &str, grants: &ScopeSet) {
    let Ok(req) = Requirement::parse(text) else {
        // A refused expression is refused through serde too.
        if let Ok(json) = serde_json::to_string(text) {
            assert!(serde_json::from_str::<Requirement>(&json).is_err());
        }
        return;
    };
    let canonical = req.to_string();
    let again = Requirement::parse(&canonical).expect("the canonical form parses");
    assert_eq!(again, req, "{text:?} -> {canonical:?}");
    assert_eq!(
        again.to_string(),
        canonical,
        "the canonical form is a fixed point"
    );
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(serde_json::from_str::<Requirement>(&json).unwrap(), req);

    let own: ScopeSet = req.scopes().into_iter().cloned().collect();
    assert!(req.is_satisfied_by(&own), "{canonical:?} by its own scopes");
    assert!(
        !req.is_satisfied_by(&ScopeSet::default()),
        "{canonical:?} by nothing"
    );
    assert!(own.satisfies(&req));

    let by_grants = req.is_satisfied_by(grants);
    if let Ok(both) = Requirement::all([req.clone(), req.clone()]) {
        assert_eq!(both.is_satisfied_by(grants), by_grants);
    }
    if let Ok(either) = Requirement::any([req.clone(), req.clone()]) {
        assert_eq!(either.is_satisfied_by(grants), by_grants);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "expression \n grant grant …": the grants are the words that parse.
    let (expr, grants) = text.split_once('\n').unwrap_or((text, ""));
    check_scope(expr);
    for word in grants.split_whitespace() {
        check_scope(word);
    }
    let grants: ScopeSet = grants
        .split_whitespace()
        .filter_map(|w| Scope::parse(w).ok())
        .collect();
    check_requirement(expr, &grants);
});
