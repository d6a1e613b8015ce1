//! Rule path patterns (`*` one segment, `**` any number) and the linear
//! matcher that matches them against normalized path segments.

use super::path::{check_segment, decode_segment};

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// A decoded, lowercased segment.
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments, including none.
    Any,
}

pub(super) fn parse_pattern(path: &str) -> Result<Vec<Segment>, String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if path.len() > 1024 {
        return Err("must be at most 1024 characters".into());
    }
    let mut segments = Vec::new();
    for part in path.split('/').filter(|s| !s.is_empty()) {
        let segment = match part {
            "*" => Segment::One,
            "**" => Segment::Any,
            "." | ".." => return Err("must not contain '.' or '..' segments".into()),
            p if p.contains('*') => {
                return Err(format!("{p:?}: '*' and '**' must be whole segments"));
            }
            p => {
                // A literal no judged path can contain would never match.
                let decoded = decode_segment(p)
                    .and_then(|d| check_segment(&d).map(|()| d))
                    .map_err(|e| format!("{p:?} can never match: {e}"))?;
                Segment::Literal(decoded.to_lowercase())
            }
        };
        segments.push(segment);
    }
    Ok(segments)
}

/// Matches path segments against a pattern.
pub(super) fn matches(pattern: &[Segment], path: &[String]) -> bool {
    matches_counting(pattern, path, &mut 0)
}

/// The two-pointer wildcard algorithm over segments: `*` takes one
/// segment, a literal one equal segment, and `**` is first tried empty;
/// on a mismatch the last `**` takes one more segment and matching resumes
/// after it. Only the last `**` is ever remembered (an earlier one could
/// not do better: whatever it skips, the later one can skip too), so the
/// loop runs at most (pattern + 1) × (path + 1) times; `steps` counts the
/// iterations (the tests check that bound).
fn matches_counting(pattern: &[Segment], path: &[String], steps: &mut usize) -> bool {
    let (mut p, mut s) = (0, 0);
    // (pattern index after the last `**`, path index it matched up to)
    let mut star: Option<(usize, usize)> = None;
    while s < path.len() {
        *steps += 1;
        match pattern.get(p) {
            Some(Segment::Any) => {
                star = Some((p + 1, s));
                p += 1;
                continue;
            }
            Some(Segment::One) => {
                p += 1;
                s += 1;
                continue;
            }
            Some(Segment::Literal(literal)) if *literal == path[s] => {
                p += 1;
                s += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((after, taken)) => {
                star = Some((after, taken + 1));
                p = after;
                s = taken + 1;
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|segment| *segment == Segment::Any)
}

#[cfg(test)]
mod tests {
    use super::super::path::MAX_SEGMENTS;
    use super::*;
    use proptest::prelude::*;

    /// The matcher this module had before: correct, but `**` backtracks
    /// (exponential in the number of `**`). The reference for the new one.
    fn reference(pattern: &[Segment], path: &[String], steps: &mut usize) -> bool {
        *steps += 1;
        match pattern.split_first() {
            None => path.is_empty(),
            Some((Segment::Any, rest)) => {
                (0..=path.len()).any(|skip| reference(rest, &path[skip..], steps))
            }
            Some((Segment::One, rest)) => !path.is_empty() && reference(rest, &path[1..], steps),
            Some((Segment::Literal(lit), rest)) => {
                path.first().is_some_and(|p| p == lit) && reference(rest, &path[1..], steps)
            }
        }
    }

    #[test]
    fn several_double_stars_against_a_deep_path_take_bounded_steps() {
        // The attack: three `**` and a path that almost matches. The old
        // matcher took 1.3 s of CPU on 1 200 segments.
        let pattern = parse_pattern("/**/a/**/b/**/c/d").unwrap();
        let mut path = vec!["a".to_owned(); 40];
        path.extend(vec!["b".to_owned(); 40]);
        path.extend(vec!["c".to_owned(); MAX_SEGMENTS - 80]);
        assert_eq!(path.len(), MAX_SEGMENTS);

        let mut steps = 0;
        assert!(!matches_counting(&pattern, &path, &mut steps));
        let bound = (pattern.len() + 1) * (path.len() + 1);
        assert!(steps <= bound, "{steps} steps > {bound}");

        let mut old = 0;
        assert!(!reference(&pattern, &path, &mut old));
        assert!(
            old > 100 * steps,
            "the backtracking matcher took {old} steps, the new one {steps}"
        );

        // The bound holds for every pattern shape on a maximal path.
        for text in ["/**", "/**/**/**/**/**/**/z", "/*/**/*/**/x/**", "/a/**"] {
            let pattern = parse_pattern(text).unwrap();
            let mut steps = 0;
            matches_counting(&pattern, &path, &mut steps);
            let bound = (pattern.len() + 1) * (path.len() + 1);
            assert!(steps <= bound, "{text}: {steps} steps > {bound}");
        }
    }

    fn pattern_strategy() -> impl Strategy<Value = Vec<Segment>> {
        prop::collection::vec(
            prop_oneof![
                Just(Segment::Any),
                Just(Segment::One),
                Just(Segment::Literal("a".into())),
                Just(Segment::Literal("b".into())),
            ],
            0..7,
        )
    }

    fn path_strategy() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop_oneof![Just("a".to_owned()), Just("b".to_owned())],
            0..9,
        )
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_the_backtracking_reference(
            pattern in pattern_strategy(),
            path in path_strategy(),
        ) {
            let mut steps = 0;
            let got = matches_counting(&pattern, &path, &mut steps);
            prop_assert_eq!(got, reference(&pattern, &path, &mut 0));
            prop_assert!(steps <= (pattern.len() + 1) * (path.len() + 1));
        }
    }
}
