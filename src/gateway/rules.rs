//! Route rules for forward auth and the proxy (SPEC §10): a TOML file of
//! `[[rule]]`s, first match wins; with no match a valid key is required.
//!
//! ```toml
//! [[rule]]
//! path = "/api/workspaces/**"      # "*" matches one segment, "**" any number
//! methods = ["GET", "HEAD"]        # optional; default every method
//! require = "workspaces:read"      # optional requirement expression
//!
//! [[rule]]
//! path = "/public/**"
//! public = true                    # no key needed
//! ```
//!
//! Paths are matched after normalization: percent-decoding, removal of `.`
//! and `..` segments and of empty segments, so `/public/../admin` and
//! `/public/%2e%2e/admin` are `/admin`. A path that cannot be normalized
//! (bad escapes, a decoded `/` or NUL, not UTF-8) matches no public rule: it
//! needs a valid key and meets only the rules written for `/**`.
//!
//! # Example
//!
//! ```
//! use keygate::gateway::{Access, Rules};
//!
//! let rules = Rules::parse_toml(r#"
//!     [[rule]]
//!     path = "/public/**"
//!     public = true
//!
//!     [[rule]]
//!     path = "/api/*/items"
//!     methods = ["GET"]
//!     require = "items:read"
//! "#).unwrap();
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/a/b"), Access::Public));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/../admin"), Access::Key(None)));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/api/v1/items"), Access::Key(Some(_))));
//! assert!(matches!(rules.evaluate(&http::Method::POST, "/api/v1/items"), Access::Key(None)));
//! ```

use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use crate::scope::Requirement;

/// What a request needs, per the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// No key needed.
    Public,
    /// A valid key, satisfying the requirement when there is one.
    Key(Option<&'a Arc<Requirement>>),
}

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments, including none.
    Any,
}

/// One `[[rule]]`.
#[derive(Clone, Debug)]
struct Rule {
    pattern: Vec<Segment>,
    methods: Option<Vec<Method>>,
    access: RuleAccess,
}

#[derive(Clone, Debug)]
enum RuleAccess {
    Public,
    Key(Option<Arc<Requirement>>),
}

/// The parsed rules file. The default has no rules: every request needs a
/// valid key.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// Why a rules file was refused. Names the rule (1-based) and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The file cannot be read.
    #[error("cannot read the rules file: {0}")]
    Io(#[source] std::io::Error),
    /// The TOML is malformed or has unknown fields.
    #[error("invalid rules file: {0}")]
    Toml(String),
    /// A rule breaks a rule of its own.
    #[error("rule {index}: {field}: {message}")]
    Rule {
        /// 1-based position in the file.
        index: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    methods: Option<Vec<String>>,
    require: Option<String>,
    #[serde(default)]
    public: bool,
}

fn parse_pattern(path: &str) -> Result<Vec<Segment>, String> {
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
            p => Segment::Literal(
                percent_encoding::percent_decode_str(p)
                    .decode_utf8()
                    .map_err(|_| format!("{p:?} is not valid UTF-8 once decoded"))?
                    .into_owned(),
            ),
        };
        segments.push(segment);
    }
    Ok(segments)
}

impl Rules {
    /// Parses a rules file's text.
    ///
    /// # Errors
    ///
    /// [`RulesError::Toml`] for malformed TOML or unknown fields,
    /// [`RulesError::Rule`] for a bad path, method or requirement, or a
    /// public rule that also requires scopes.
    pub fn parse_toml(text: &str) -> Result<Rules, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError::Toml(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for (i, raw) in file.rule.into_iter().enumerate() {
            let index = i + 1;
            let fail = |field, message: String| RulesError::Rule {
                index,
                field,
                message,
            };
            let pattern = parse_pattern(&raw.path).map_err(|m| fail("path", m))?;
            let methods = raw
                .methods
                .map(|list| {
                    if list.is_empty() {
                        return Err(fail(
                            "methods",
                            "must not be empty (omit it for every method)".into(),
                        ));
                    }
                    list.iter()
                        .map(|m| {
                            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                                fail("methods", format!("{m:?} is not an HTTP method"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            let access = match (raw.public, raw.require) {
                (true, Some(_)) => {
                    return Err(fail(
                        "public",
                        "a public rule cannot also require scopes".into(),
                    ));
                }
                (true, None) => RuleAccess::Public,
                (false, Some(expr)) => RuleAccess::Key(Some(Arc::new(
                    Requirement::parse(&expr).map_err(|e| fail("require", e.to_string()))?,
                ))),
                (false, None) => RuleAccess::Key(None),
            };
            rules.push(Rule {
                pattern,
                methods,
                access,
            });
        }
        Ok(Rules { rules })
    }

    /// Reads and parses a rules file.
    ///
    /// # Errors
    ///
    /// As [`Rules::parse_toml`], plus [`RulesError::Io`].
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(RulesError::Io)?;
        Rules::parse_toml(&text)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What a request with `method` for `path` (the path part of the URI,
    /// query allowed and ignored) needs.
    pub fn evaluate(&self, method: &Method, path: &str) -> Access<'_> {
        let path = path.split('?').next().unwrap_or_default();
        let normalized = normalize_path(path);
        let segments: Option<Vec<&str>> = normalized
            .as_deref()
            .map(|p| p.split('/').filter(|s| !s.is_empty()).collect());
        for rule in &self.rules {
            if rule.methods.as_ref().is_some_and(|m| !m.contains(method)) {
                continue;
            }
            let matched = match &segments {
                Some(segments) => matches(&rule.pattern, segments),
                // Unnormalizable paths meet only catch-all rules.
                None => rule.pattern == [Segment::Any],
            };
            if !matched {
                continue;
            }
            return match &rule.access {
                RuleAccess::Public if segments.is_none() => Access::Key(None),
                RuleAccess::Public => Access::Public,
                RuleAccess::Key(req) => Access::Key(req.as_ref()),
            };
        }
        Access::Key(None)
    }
}

/// Matches segments against a pattern; `**` backtracks.
fn matches(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((Segment::One, rest)) => !path.is_empty() && matches(rest, &path[1..]),
        Some((Segment::Literal(lit), rest)) => {
            path.first().is_some_and(|p| p == lit) && matches(rest, &path[1..])
        }
    }
}

/// Percent-decodes a path and resolves `.`/`..` and empty segments.
/// `None` for bad escapes, non-UTF-8, or a decoded `/`, `\` or NUL (which
/// would let a segment hide a separator).
pub(crate) fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        if raw.contains('%') && !valid_escapes(raw) {
            return None;
        }
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        if decoded.contains(['/', '\\', '\0']) {
            return None;
        }
        match decoded.as_ref() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            segment => out.push(segment.to_owned()),
        }
    }
    Some(format!("/{}", out.join("/")))
}

fn valid_escapes(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(text: &str) -> Rules {
        Rules::parse_toml(text).unwrap()
    }

    const SPEC: &str = r#"
        [[rule]]
        path = "/api/workspaces/**"
        methods = ["GET", "HEAD"]
        require = "workspaces:read"

        [[rule]]
        path = "/public/**"
        public = true
    "#;

    fn req(access: Access<'_>) -> Option<String> {
        match access {
            Access::Key(Some(r)) => Some(r.to_string()),
            _ => None,
        }
    }

    #[test]
    fn spec_example_rules() {
        let r = rules(SPEC);
        assert_eq!(
            req(r.evaluate(&Method::GET, "/api/workspaces/1")),
            Some("workspaces:read".into())
        );
        assert_eq!(
            req(r.evaluate(&Method::HEAD, "/api/workspaces")),
            Some("workspaces:read".into())
        );
        assert_eq!(
            r.evaluate(&Method::POST, "/api/workspaces/1"),
            Access::Key(None)
        );
        assert_eq!(r.evaluate(&Method::GET, "/public"), Access::Public);
        assert_eq!(
            r.evaluate(&Method::DELETE, "/public/x/y?z=1"),
            Access::Public
        );
        assert_eq!(r.evaluate(&Method::GET, "/other"), Access::Key(None));
        assert_eq!(r.evaluate(&Method::GET, "/publicity"), Access::Key(None));
    }

    #[test]
    fn first_match_wins() {
        let r = rules(
            r#"
            [[rule]]
            path = "/a/secret"
            require = "admin:read"
            [[rule]]
            path = "/a/**"
            public = true
        "#,
        );
        assert_eq!(
            req(r.evaluate(&Method::GET, "/a/secret")),
            Some("admin:read".into())
        );
        assert_eq!(r.evaluate(&Method::GET, "/a/other"), Access::Public);
    }

    #[test]
    fn single_star_matches_exactly_one_segment() {
        let r = rules("[[rule]]\npath = \"/x/*/y\"\npublic = true\n");
        assert_eq!(r.evaluate(&Method::GET, "/x/1/y"), Access::Public);
        assert_eq!(r.evaluate(&Method::GET, "/x/y"), Access::Key(None));
        assert_eq!(r.evaluate(&Method::GET, "/x/1/2/y"), Access::Key(None));
        let r = rules("[[rule]]\npath = \"/x/**/y\"\npublic = true\n");
        assert_eq!(r.evaluate(&Method::GET, "/x/y"), Access::Public);
        assert_eq!(r.evaluate(&Method::GET, "/x/1/2/y"), Access::Public);
        assert_eq!(r.evaluate(&Method::GET, "/x/1/2/z"), Access::Key(None));
    }

    #[test]
    fn traversal_and_encoding_cannot_reach_a_public_rule_from_outside() {
        let r = rules(SPEC);
        for path in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/./../admin",
        ] {
            assert_eq!(r.evaluate(&Method::GET, path), Access::Key(None), "{path}");
        }
        for path in [
            "/public/a%2fb",
            "/public/%zz",
            "/public/%",
            "/public/%c3",
            "/public/a%00",
        ] {
            assert_eq!(r.evaluate(&Method::GET, path), Access::Key(None), "{path}");
        }
        // Normalization also works the other way: these are public paths.
        assert_eq!(r.evaluate(&Method::GET, "//public//x"), Access::Public);
        assert_eq!(
            r.evaluate(&Method::GET, "/admin/../public/x"),
            Access::Public
        );
        assert_eq!(r.evaluate(&Method::GET, "/%70ublic/x"), Access::Public);
    }

    #[test]
    fn bad_rules_files_name_the_rule_and_field() {
        let cases = [
            ("[[rule]]\npath = \"nope\"\n", "path"),
            ("[[rule]]\npath = \"/a*\"\n", "path"),
            ("[[rule]]\npath = \"/a/../b\"\n", "path"),
            ("[[rule]]\npath = \"/a\"\nmethods = []\n", "methods"),
            ("[[rule]]\npath = \"/a\"\nmethods = [\"G ET\"]\n", "methods"),
            (
                "[[rule]]\npath = \"/a\"\nrequire = \"not a scope\"\n",
                "require",
            ),
            (
                "[[rule]]\npath = \"/a\"\npublic = true\nrequire = \"a:b\"\n",
                "public",
            ),
        ];
        for (text, field) in cases {
            match Rules::parse_toml(text) {
                Err(RulesError::Rule {
                    index: 1, field: f, ..
                }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Rules::parse_toml("[[rule]]\npath = \"/a\"\nextra = 1\n"),
            Err(RulesError::Toml(_))
        ));
        assert!(matches!(
            Rules::parse_toml("[[rule]\n"),
            Err(RulesError::Toml(_))
        ));
        assert!(matches!(
            Rules::parse_toml("[[rule]]\nmethods = [\"GET\"]\n"),
            Err(RulesError::Toml(_))
        ));
        assert!(Rules::parse_toml("").unwrap().is_empty());
    }

    #[test]
    fn methods_are_case_insensitive() {
        let r = rules("[[rule]]\npath = \"/a\"\nmethods = [\"get\"]\npublic = true\n");
        assert_eq!(r.evaluate(&Method::GET, "/a"), Access::Public);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_path("/a/./b/../c//d/").as_deref(), Some("/a/c/d"));
        assert_eq!(normalize_path("/../../x").as_deref(), Some("/x"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_path("relative"), None);
        assert_eq!(normalize_path("/a%2Fb"), None);
        assert_eq!(normalize_path("/a%5cb"), None);
    }

    proptest! {
        #[test]
        fn evaluation_never_panics(path in "\\PC{0,80}", pattern in "(/(\\*|\\*\\*|[a-z%0-9.]{1,4})){0,6}") {
            let text = format!("[[rule]]\npath = \"/{}\"\npublic = true\n", pattern.trim_start_matches('/'));
            if let Ok(r) = Rules::parse_toml(&text) {
                let _ = r.evaluate(&Method::GET, &path);
            }
            let _ = normalize_path(&path);
        }

        #[test]
        fn normalized_paths_are_fixed_points(path in "(/[a-z.%2e]{0,4}){0,8}") {
            if let Some(n) = normalize_path(&path) {
                prop_assert_eq!(normalize_path(&n), Some(n.clone()));
                prop_assert!(!n.split('/').any(|s| s == ".." || s == "."));
            }
        }
    }
}
