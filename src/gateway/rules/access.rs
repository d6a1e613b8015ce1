//! [`Rules`], and what they say a request needs ([`Access`]).

use std::sync::Arc;

use http::Method;

use super::matcher::{Segment, matches};
use super::path::NormalizedPath;
use crate::scope::Requirement;

/// What a request needs, per the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access<'a> {
    /// No key needed.
    Public,
    /// A valid key, satisfying the requirement when there is one; the
    /// request costs `cost` against the key's rate limits (the rule's
    /// `cost`, 1 by default; 0: not counted).
    Key {
        /// The rule's requirement, if any.
        requirement: Option<&'a Arc<Requirement>>,
        /// What the request costs against the key's rate limits.
        cost: u64,
    },
    /// No rule matches and the file has no `default = "key"`: refused
    /// (403 `forbidden`) whatever the credential.
    NoRule,
    /// The path is refused before any rule (400 `invalid_request`); see
    /// [`Rules`].
    InvalidPath,
}

/// One `[[rule]]`.
#[derive(Clone, Debug)]
pub(super) struct Rule {
    pub(super) pattern: Vec<Segment>,
    pub(super) methods: Option<Vec<Method>>,
    pub(super) access: RuleAccess,
}

#[derive(Clone, Debug)]
pub(super) enum RuleAccess {
    Public,
    Key {
        requirement: Option<Arc<Requirement>>,
        cost: u64,
    },
}

/// What a request that matches no rule gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fallback {
    /// Any valid key: no rules file, or `default = "key"`.
    Key,
    /// Refused: a rules file without `default`.
    Deny,
}

/// The parsed rules file.
///
/// [`Rules::default`] stands for "no rules file": no rules, and every
/// request needs a valid key. A parsed file refuses what no rule matches
/// unless it says `default = "key"`.
///
/// # Paths
///
/// Before any rule, the path (the query is ignored) is checked and
/// normalized; what servers read differently is **refused** (400
/// `invalid_request`), never guessed at:
///
/// - a path that does not start with `/`, is longer than 4096 bytes or has
///   more than 128 segments (empty and dot segments count);
/// - a raw `\`, an encoded `/` or `\` (`%2f`, `%5c`, any case), NUL (`%00`)
///   or any other control character;
/// - a `;` in a segment, raw or encoded (`/public/..;/admin` is `/admin` to
///   Tomcat);
/// - double encoding: a `%` that decodes to `%` followed by two hex digits
///   (`%252f`);
/// - a bad escape (`%zz`, `%4`) or bytes that are not UTF-8 once decoded;
/// - a segment that ends with `.` or a space once decoded (`/admin./x` and
///   `/admin%20/x` are `/admin/x` to Windows servers).
///
/// Then every segment is percent-decoded; the dot segments `.` and `..`
/// (also encoded, `%2e%2e`) are resolved as RFC 3986 does (`..` above the
/// root stays at the root); empty segments are dropped; a trailing `/` is
/// kept. The result is the normalized path that is judged
/// — and that the proxy forwards, re-encoded canonically, so the upstream
/// reads exactly what was judged.
///
/// **Rules match case-insensitively**: `/ADMIN/x` meets a `/admin/**` rule
/// (pattern and path are compared lowercased).
///
/// Matching takes at most (pattern segments + 1) × (path segments + 1)
/// steps whatever the pattern: `**` is matched by the two-pointer wildcard
/// algorithm, which only remembers the last `**`, never by backtracking.
///
#[derive(Clone, Debug)]
pub struct Rules {
    pub(super) rules: Vec<Rule>,
    pub(super) fallback: Fallback,
}

impl Default for Rules {
    /// No rules file: every request needs a valid key.
    fn default() -> Rules {
        Rules {
            rules: Vec::new(),
            fallback: Fallback::Key,
        }
    }
}

impl Rules {
    /// Number of rules.
    ///
    /// ```
    /// use keygate::gateway::Rules;
    ///
    /// assert_eq!(Rules::parse_toml("[[rule]]\npath = \"/a\"\n[[rule]]\npath = \"/b\"\n")?.len(), 2);
    /// # Ok::<(), keygate::gateway::RulesError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    ///
    /// ```
    /// use keygate::gateway::Rules;
    ///
    /// assert!(Rules::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What a request with `method` for `path` (the path part of the URI,
    /// query allowed and ignored) needs: [`Access::InvalidPath`] when the
    /// path is refused (see [`Rules`]), else per the first
    /// matching rule, else per the file's default.
    ///
    /// ```
    /// use http::Method;
    /// use keygate::gateway::{Access, Rules};
    ///
    /// let rules = Rules::parse_toml(r#"
    ///     [[rule]]
    ///     path = "/api/workspaces/**"
    ///     methods = ["GET"]
    ///     require = "workspaces:read"
    ///     cost = 2
    /// "#)?;
    /// match rules.evaluate(&Method::GET, "/API/workspaces/1?full=1") { // case-insensitive, query ignored
    ///     Access::Key { requirement, cost } => {
    ///         assert_eq!(requirement.map(|r| r.to_string()).as_deref(), Some("workspaces:read"));
    ///         assert_eq!(cost, 2);
    ///     }
    ///     _ => panic!("the rule matches"),
    /// }
    /// assert!(matches!(rules.evaluate(&Method::POST, "/api/workspaces/1"), Access::NoRule));
    /// assert!(matches!(rules.evaluate(&Method::GET, "/api/%2e%2e%2fadmin"), Access::InvalidPath));
    /// # Ok::<(), keygate::gateway::RulesError>(())
    /// ```
    pub fn evaluate(&self, method: &Method, path: &str) -> Access<'_> {
        let path = path.split('?').next().unwrap_or_default();
        match NormalizedPath::parse(path) {
            Ok(normalized) => self.evaluate_normalized(method, &normalized),
            Err(_) => Access::InvalidPath,
        }
    }

    /// What a request for an already normalized path needs.
    pub(crate) fn evaluate_normalized(&self, method: &Method, path: &NormalizedPath) -> Access<'_> {
        for rule in &self.rules {
            if rule.methods.as_ref().is_some_and(|m| !m.contains(method)) {
                continue;
            }
            if !matches(&rule.pattern, &path.lowercase) {
                continue;
            }
            return match &rule.access {
                RuleAccess::Public => Access::Public,
                RuleAccess::Key { requirement, cost } => Access::Key {
                    requirement: requirement.as_ref(),
                    cost: *cost,
                },
            };
        }
        match self.fallback {
            Fallback::Key => Access::Key {
                requirement: None,
                cost: 1,
            },
            Fallback::Deny => Access::NoRule,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::PathError;
    use super::*;
    use percent_encoding::percent_decode_str;
    use proptest::prelude::*;

    fn rules(text: &str) -> Rules {
        Rules::parse_toml(text).unwrap()
    }

    const EXAMPLE: &str = r#"
        [[rule]]
        path = "/api/workspaces/**"
        methods = ["GET", "HEAD"]
        require = "workspaces:read"

        [[rule]]
        path = "/admin/**"
        require = "admin:write"

        [[rule]]
        path = "/public/**"
        public = true
    "#;

    fn req(access: Access<'_>) -> Option<String> {
        match access {
            Access::Key {
                requirement: Some(r),
                ..
            } => Some(r.to_string()),
            _ => None,
        }
    }

    fn norm(path: &str) -> Result<String, PathError> {
        NormalizedPath::parse(path).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn spec_example_rules() {
        let r = rules(EXAMPLE);
        assert_eq!(
            req(r.evaluate(&Method::GET, "/api/workspaces/1")),
            Some("workspaces:read".into())
        );
        assert_eq!(
            req(r.evaluate(&Method::HEAD, "/api/workspaces")),
            Some("workspaces:read".into())
        );
        assert_eq!(r.evaluate(&Method::GET, "/public"), Access::Public);
        assert_eq!(
            r.evaluate(&Method::DELETE, "/public/x/y?z=1"),
            Access::Public
        );
        assert_eq!(r.evaluate(&Method::GET, "/publicity"), Access::NoRule);
    }

    #[test]
    fn a_request_no_rule_matches_is_refused_unless_the_default_is_key() {
        let r = rules(EXAMPLE);
        assert_eq!(
            r.evaluate(&Method::POST, "/api/workspaces/1"),
            Access::NoRule
        );
        assert_eq!(r.evaluate(&Method::GET, "/other"), Access::NoRule);
        assert_eq!(rules("").evaluate(&Method::GET, "/"), Access::NoRule);

        let lenient = rules(&format!("default = \"key\"\n{EXAMPLE}"));
        assert_eq!(
            lenient.evaluate(&Method::POST, "/api/workspaces/1"),
            Access::Key {
                requirement: None,
                cost: 1
            }
        );
        assert_eq!(lenient.evaluate(&Method::GET, "/public/x"), Access::Public);

        // No rules file at all: every request needs a valid key.
        assert_eq!(
            Rules::default().evaluate(&Method::GET, "/x"),
            Access::Key {
                requirement: None,
                cost: 1
            }
        );
        // Refused paths are refused with every fallback.
        for r in [&r, &lenient, &Rules::default()] {
            assert_eq!(r.evaluate(&Method::GET, "/a%2fb"), Access::InvalidPath);
        }
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
        assert_eq!(r.evaluate(&Method::GET, "/x/y"), Access::NoRule);
        assert_eq!(r.evaluate(&Method::GET, "/x/1/2/y"), Access::NoRule);
        let r = rules("[[rule]]\npath = \"/x/**/y\"\npublic = true\n");
        assert_eq!(r.evaluate(&Method::GET, "/x/y"), Access::Public);
        assert_eq!(r.evaluate(&Method::GET, "/x/1/2/y"), Access::Public);
        assert_eq!(r.evaluate(&Method::GET, "/x/1/2/z"), Access::NoRule);
    }

    #[test]
    fn rules_match_case_insensitively() {
        let r = rules(EXAMPLE);
        for path in ["/ADMIN/x", "/Admin/x", "/aDmIn", "/%41dmin/x"] {
            assert_eq!(
                req(r.evaluate(&Method::GET, path)),
                Some("admin:write".into()),
                "{path}"
            );
        }
        assert_eq!(r.evaluate(&Method::GET, "/PUBLIC/x"), Access::Public);
        let upper = rules("[[rule]]\npath = \"/Öffentlich/**\"\npublic = true\n");
        assert_eq!(
            upper.evaluate(&Method::GET, "/%C3%B6FFENTLICH/x"),
            Access::Public
        );
    }

    #[test]
    fn dot_segments_are_resolved_before_matching() {
        let r = rules(EXAMPLE);
        for path in [
            "/public/../admin/x",
            "/public/%2e%2e/admin/x",
            "/public/%2E%2E/admin/x",
            "/public/./../admin/x",
            "/public/.%2e/admin/x",
        ] {
            assert_eq!(
                req(r.evaluate(&Method::GET, path)),
                Some("admin:write".into()),
                "{path}"
            );
        }
        // And the other way: these are public paths.
        assert_eq!(r.evaluate(&Method::GET, "//public//x"), Access::Public);
        assert_eq!(
            r.evaluate(&Method::GET, "/admin/../public/x"),
            Access::Public
        );
        assert_eq!(r.evaluate(&Method::GET, "/%70ublic/x"), Access::Public);
    }

    #[test]
    fn paths_that_servers_read_differently_are_refused() {
        let cases = [
            ("/public/..%2fadmin/x", PathError::EncodedSeparator),
            ("/public/..%2Fadmin/x", PathError::EncodedSeparator),
            ("/public/..%5cadmin/x", PathError::EncodedSeparator),
            ("/public/..%5Cadmin/x", PathError::EncodedSeparator),
            ("/public/..\\admin/x", PathError::Backslash),
            ("/public/a%00", PathError::Control),
            ("/public/a%0a", PathError::Control),
            ("/public/..;/admin/x", PathError::Semicolon),
            ("/admin;jsessionid=1/x", PathError::Semicolon),
            ("/public/%3b/x", PathError::Semicolon),
            ("/public/%252e%252e/admin", PathError::DoubleEncoding),
            ("/public/%252f", PathError::DoubleEncoding),
            ("/admin./x", PathError::TrailingDotOrSpace),
            ("/admin%2e/x", PathError::TrailingDotOrSpace),
            ("/admin%20/x", PathError::TrailingDotOrSpace),
            ("/admin.%20/x", PathError::TrailingDotOrSpace),
            ("/public/.../x", PathError::TrailingDotOrSpace),
            ("/public/%zz", PathError::BadEscape),
            ("/public/%", PathError::BadEscape),
            ("/public/%4", PathError::BadEscape),
            ("/public/%c3", PathError::NotUtf8),
            ("/public/%c0%af", PathError::NotUtf8),
            ("relative", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        let r = rules(EXAMPLE);
        for (path, error) in cases {
            assert_eq!(norm(path), Err(error), "{path}");
            assert_eq!(
                r.evaluate(&Method::GET, path),
                Access::InvalidPath,
                "{path}"
            );
        }
        // A `%` that is not double encoding is an ordinary character.
        assert_eq!(norm("/a%25zz").as_deref(), Ok("/a%25zz"));
        // Dots and spaces elsewhere in a segment are fine.
        assert_eq!(norm("/v1.2/a b%20c").as_deref(), Ok("/v1.2/a%20b%20c"));
    }

    /// How a lenient server may read a path: everything decoded at once,
    /// `\` as `/`, `;…` path parameters cut (Tomcat), trailing dots and
    /// spaces trimmed (Windows), dot segments resolved, case folded.
    fn lenient_reading(path: &str) -> Vec<String> {
        let decoded = percent_decode_str(path).decode_utf8_lossy();
        let decoded = percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .replace('\\', "/");
        let mut out: Vec<String> = Vec::new();
        for segment in decoded.split('/') {
            let segment = segment.split(';').next().unwrap_or_default();
            let trimmed = match segment {
                "." | ".." => segment,
                s => s.trim_end_matches(['.', ' ']),
            };
            match trimmed {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_lowercase()),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn evaluation_never_panics(path in "\\PC{0,80}", pattern in "(/(\\*|\\*\\*|[a-z%0-9.]{1,4})){0,6}") {
            let text = format!("[[rule]]\npath = \"/{}\"\npublic = true\n", pattern.trim_start_matches('/'));
            if let Ok(r) = Rules::parse_toml(&text) {
                let _ = r.evaluate(&Method::GET, &path);
            }
            let _ = NormalizedPath::parse(&path);
        }

        #[test]
        fn a_judged_public_path_is_public_however_a_server_reads_it(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("public"), Just("PUBLIC"), Just("admin"), Just("."), Just(".."),
                    Just("%2e%2e"), Just("%2e"), Just("..%2f"), Just("%2f"), Just("%5c"),
                    Just("\\"), Just(";"), Just("..;"), Just("%3b"), Just("admin."),
                    Just("x%20"), Just("%252e%252e"), Just("%252f"), Just(""), Just("x"),
                ],
                0..8,
            ),
        ) {
            let path = format!("/{}", parts.join("/"));
            let r = rules(EXAMPLE);
            if r.evaluate(&Method::GET, &path) == Access::Public {
                let read = lenient_reading(&path);
                prop_assert_eq!(read.first().map(String::as_str), Some("public"), "{} read as {:?}", path, read);
            }
            // And what the rules judged is what the upstream gets.
            if let Ok(n) = NormalizedPath::parse(&path) {
                prop_assert_eq!(lenient_reading(n.as_str()), n.lowercase.clone());
            }
        }
    }
}
