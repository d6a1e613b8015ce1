//! Route rules (SPEC §10, §10a): the TOML file, path checks and
//! normalization, and matching.
//!
//! Two modes, by the first input byte:
//! - **TOML**: any text through `Rules::parse_toml`; for a file that
//!   parses, the input's paths are judged and every judgement is stable
//!   under normalization (below).
//! - **Oracle**: rules and a path built from fragments that servers read
//!   differently (`%2e%2e`, `%2f`, `;`, `%25`, `\`, trailing dots, case,
//!   UTF-8 escapes…). A reference written from §10a — refuse the raw path
//!   if any segment breaks a rule; else percent-decode each raw segment,
//!   resolve `.` and `..` one by one, lowercase, and match each rule's
//!   pattern with a backtracking matcher — must reach the **same decision**
//!   as `Rules::evaluate` (refused, public, which key rule, no rule).
//!   In particular a path is public only when its raw form, read segment
//!   by segment, matches that public rule: normalization never makes a
//!   path match a public rule its raw form could not.
//!
//! In both modes, for a path that is not refused: the normalized path is
//! a fixed point of normalization, holds no `.`/`..`/empty segment, and
//! judging it gives the raw path's decision (the proxy forwards the
//! normalized path, so the upstream is asked about what was judged).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use http::Method;
use keygate::fuzz::normalize_path;
use keygate::gateway::{Access, Rules};
use libfuzzer_sys::fuzz_target;

const LITERALS: [&str; 10] = [
    "a",
    "B",
    "admin",
    "Public",
    "%41",
    "caf%C3%A9",
    "%C3%89",
    "x.y",
    "%7Eu",
    "v1",
];
const FRAGMENTS: [&str; 40] = [
    "/",
    "/",
    "/",
    "a",
    "A",
    "b",
    "admin",
    "ADMIN",
    "public",
    "Public",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2e",
    "%41",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    ";",
    "%3b",
    "%00",
    "%25",
    "%2541",
    "%",
    " ",
    "%20",
    "x.",
    "é",
    "É",
    "caf%C3%A9",
    "%C3%89",
    "%C3",
    "%e9",
    "//",
    "?q=/admin",
    "~u",
    "%7Eu",
    "v1",
];
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::HEAD, Method::DELETE];

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    One,
    Any,
}

#[derive(Debug)]
struct Spec {
    pattern: Vec<Seg>,
    text: String,
    methods: Option<Vec<usize>>,
    public: bool,
}

fn spec(u: &mut Unstructured<'_>) -> arbitrary::Result<Spec> {
    let mut pattern = Vec::new();
    let mut text = String::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let (seg, raw) = match u.int_in_range(0..=5)? {
            0 => (Seg::One, "*".to_owned()),
            1 => (Seg::Any, "**".to_owned()),
            _ => {
                let lit = *u.choose(&LITERALS)?;
                (
                    Seg::Lit(decode(lit).unwrap().to_lowercase()),
                    lit.to_owned(),
                )
            }
        };
        pattern.push(seg);
        text.push('/');
        text.push_str(&raw);
    }
    if text.is_empty() {
        text.push('/');
    }
    let methods = if bool::arbitrary(u)? {
        Some(
            (0..METHODS.len())
                .filter(|_| u.arbitrary().unwrap_or(false))
                .collect::<Vec<_>>(),
        )
        .filter(|m: &Vec<usize>| !m.is_empty())
    } else {
        None
    };
    Ok(Spec {
        pattern,
        text,
        methods,
        public: bool::arbitrary(u)?,
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes a raw segment; `None` for a bad escape or non-UTF-8.
fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a decoded segment is one §10a refuses.
fn bad_segment(decoded: &str) -> bool {
    let b = decoded.as_bytes();
    decoded.contains(['/', '\\', ';'])
        || decoded.chars().any(char::is_control)
        || b.windows(3)
            .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
        || (decoded != "." && decoded != ".." && decoded.ends_with(['.', ' ']))
}

/// The reference reading of a raw path: `None` when refused, else the
/// resolved, lowercased segments.
fn reference_segments(raw: &str) -> Option<Vec<String>> {
    let path = raw.split('?').next().unwrap_or_default();
    if path.len() > 4096 || !path.starts_with('/') || path.contains('\\') {
        return None;
    }
    let parts: Vec<&str> = path[1..].split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > 128 {
        return None;
    }
    let mut stack = Vec::new();
    for part in parts {
        let decoded = decode(part)?;
        if bad_segment(&decoded) {
            return None;
        }
        match decoded.as_str() {
            "." => {}
            ".." => {
                stack.pop();
            }
            _ => stack.push(decoded.to_lowercase()),
        }
    }
    Some(stack)
}

/// The backtracking matcher: `*` one segment, `**` any number.
fn matches(pattern: &[Seg], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Seg::Any, rest)) => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((Seg::One, rest)) => !path.is_empty() && matches(rest, &path[1..]),
        Some((Seg::Lit(lit), rest)) => {
            path.first().is_some_and(|p| p == lit) && matches(rest, &path[1..])
        }
    }
}

#[derive(Debug, PartialEq)]
enum Decision {
    Invalid,
    Public,
    Key(u64),
    NoRule,
}

fn decision(access: Access<'_>) -> Decision {
    match access {
        Access::InvalidPath => Decision::Invalid,
        Access::Public => Decision::Public,
        Access::Key { cost, .. } => Decision::Key(cost),
        Access::NoRule => Decision::NoRule,
        other => panic!("unexpected access {other:?}"),
    }
}

/// The properties of both modes for one path.
fn stable(rules: &Rules, method: &Method, raw: &str) -> Decision {
    let judged = decision(rules.evaluate(method, raw));
    let path = raw.split('?').next().unwrap_or_default();
    match normalize_path(path) {
        None => assert_eq!(judged, Decision::Invalid, "{raw:?}"),
        Some((normalized, segments)) => {
            assert_ne!(judged, Decision::Invalid, "{raw:?}");
            assert!(normalized.starts_with('/'));
            assert!(!normalized.contains("//"), "{normalized:?}");
            assert!(!normalized.split('/').any(|s| s == "." || s == ".."));
            let again = normalize_path(&normalized).expect("a normalized path is accepted");
            assert_eq!(again, (normalized.clone(), segments), "{raw:?}");
            let rejudged = decision(rules.evaluate(method, &normalized));
            assert_eq!(rejudged, judged, "{raw:?} -> {normalized:?}");
        }
    }
    judged
}

fn toml_mode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "TOML \0 path \0 path …"
    let mut parts = text.split('\0');
    let Ok(rules) = Rules::parse_toml(parts.next().unwrap_or_default()) else {
        return;
    };
    for (i, path) in parts.take(8).enumerate() {
        stable(&rules, &METHODS[i % METHODS.len()], path);
    }
}

fn oracle_mode(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let specs: Vec<Spec> = (0..u.int_in_range(0..=5)?)
        .map(|_| spec(&mut u))
        .collect::<arbitrary::Result<_>>()?;
    let default_key = bool::arbitrary(&mut u)?;
    let mut toml = String::new();
    if default_key {
        toml.push_str("default = \"key\"\n");
    }
    for (i, s) in specs.iter().enumerate() {
        toml.push_str(&format!("[[rule]]\npath = {:?}\n", s.text));
        if let Some(methods) = &s.methods {
            let names: Vec<String> = methods
                .iter()
                .map(|&m| format!("{:?}", METHODS[m].as_str()))
                .collect();
            toml.push_str(&format!("methods = [{}]\n", names.join(", ")));
        }
        if s.public {
            toml.push_str("public = true\n");
        } else {
            toml.push_str(&format!("cost = {}\n", i + 2));
        }
    }
    let rules = Rules::parse_toml(&toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
    let mut raw = String::new();
    for _ in 0..u.int_in_range(0..=12)? {
        raw.push_str(u.choose(&FRAGMENTS)?);
    }
    if u.arbitrary()? {
        raw.insert(0, '/');
    }
    let method = u.choose(&METHODS)?.clone();

    let expected = match reference_segments(&raw) {
        None => Decision::Invalid,
        Some(segments) => specs
            .iter()
            .enumerate()
            .find(|(_, s)| {
                s.methods
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|&i| METHODS[i] == method))
                    && matches(&s.pattern, &segments)
            })
            .map(|(i, s)| {
                if s.public {
                    Decision::Public
                } else {
                    Decision::Key(i as u64 + 2)
                }
            })
            .unwrap_or(if default_key {
                Decision::Key(1)
            } else {
                Decision::NoRule
            }),
    };
    let judged = stable(&rules, &method, &raw);
    assert_eq!(judged, expected, "{method} {raw:?} under\n{toml}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => toml_mode(rest),
        Some((_, rest)) => {
            let _ = oracle_mode(rest);
        }
        None => {}
    }
});
