//! Route rules for forward auth and the proxy (SPEC §10, §10a): a TOML file
//! of `[[rule]]`s, first match wins. **With a rules file, a request that
//! matches no rule is refused** (403 `forbidden`, "no rule allows this
//! request", before any credential is looked at), unless the file says
//! `default = "key"` at the top: then any valid key passes, as before.
//! Without a rules file ([`Rules::default`]) every request needs a valid key.
//!
//! ```toml
//! # default = "key"                # optional: no match = any valid key
//!
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
//! How paths are checked and normalized, and matched, is documented on
//! [`Rules`] (this module is private; the type is public).
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
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/PUBLIC/a"), Access::Public));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/api/v1/items"), Access::Key(Some(_))));
//! // No rule matches: refused, whatever the key.
//! assert!(matches!(rules.evaluate(&http::Method::POST, "/api/v1/items"), Access::NoRule));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/../admin"), Access::NoRule));
//! // Paths that servers read differently never reach a rule.
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/..%2fadmin"), Access::InvalidPath));
//! assert!(matches!(rules.evaluate(&http::Method::GET, "/public/..;/admin"), Access::InvalidPath));
//!
//! // `default = "key"`: no match needs any valid key.
//! let lenient = Rules::parse_toml("default = \"key\"").unwrap();
//! assert!(matches!(lenient.evaluate(&http::Method::GET, "/x"), Access::Key(None)));
//! ```

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use http::Method;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

use crate::scope::Requirement;

/// The longest path judged, in bytes (SPEC §10a).
const MAX_PATH_BYTES: usize = 4096;
/// The most segments a judged path may have (SPEC §10a).
const MAX_SEGMENTS: usize = 128;

/// What a request needs, per the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access<'a> {
    /// No key needed.
    Public,
    /// A valid key, satisfying the requirement when there is one.
    Key(Option<&'a Arc<Requirement>>),
    /// No rule matches and the file has no `default = "key"`: refused
    /// (403 `forbidden`) whatever the credential.
    NoRule,
    /// The path is refused before any rule (400 `invalid_request`); see
    /// [`Rules`].
    InvalidPath,
}

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// A decoded, lowercased segment.
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

/// What a request that matches no rule gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fallback {
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
    rules: Vec<Rule>,
    fallback: Fallback,
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
    /// The top-level `default` is not `"key"`.
    #[error("default: {0:?} is not a known default (the only one is \"key\")")]
    Default(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    default: Option<String>,
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

impl Rules {
    /// Parses a rules file's text.
    ///
    /// # Errors
    ///
    /// [`RulesError::Toml`] for malformed TOML or unknown fields,
    /// [`RulesError::Default`] for a `default` other than `"key"`,
    /// [`RulesError::Rule`] for a bad path (one no normalized path could
    /// match included), method or requirement, or a public rule that also
    /// requires scopes.
    pub fn parse_toml(text: &str) -> Result<Rules, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError::Toml(e.to_string()))?;
        let fallback = match file.default.as_deref() {
            None => Fallback::Deny,
            Some("key") => Fallback::Key,
            Some(other) => return Err(RulesError::Default(other.to_owned())),
        };
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
        Ok(Rules { rules, fallback })
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
    /// query allowed and ignored) needs: [`Access::InvalidPath`] when the
    /// path is refused (see [`Rules`]), else per the first
    /// matching rule, else per the file's default.
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
                RuleAccess::Key(req) => Access::Key(req.as_ref()),
            };
        }
        match self.fallback {
            Fallback::Key => Access::Key(None),
            Fallback::Deny => Access::NoRule,
        }
    }
}

/// Matches path segments against a pattern.
fn matches(pattern: &[Segment], path: &[String]) -> bool {
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

/// Why a path is refused before any rule (SPEC §10a). For logs only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("the path has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error("a raw backslash")]
    Backslash,
    #[error("an encoded '/' or '\\'")]
    EncodedSeparator,
    #[error("NUL or another control character")]
    Control,
    #[error("a ';' in a segment")]
    Semicolon,
    #[error("double percent-encoding")]
    DoubleEncoding,
    #[error("a bad percent escape")]
    BadEscape,
    #[error("not UTF-8 once decoded")]
    NotUtf8,
    #[error("a segment ending with '.' or a space")]
    TrailingDotOrSpace,
}

/// What is percent-encoded when a normalized path is written out: what a
/// path segment may not hold raw, plus `%` (every escape is re-made) and
/// `;` (never in a judged path anyway). Unreserved characters and the
/// other sub-delimiters stay raw.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A path that passed the checks of SPEC §10a, normalized (see
/// [`Rules`]): what the rules judge and what the proxy forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NormalizedPath {
    /// Canonically encoded, starting with `/`.
    path: String,
    /// The decoded segments, lowercased, for matching.
    lowercase: Vec<String>,
}

impl NormalizedPath {
    /// Checks and normalizes the path part of a URI (no query).
    pub(crate) fn parse(raw: &str) -> Result<NormalizedPath, PathError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        if raw.contains('\\') {
            return Err(PathError::Backslash);
        }
        let mut segments: Vec<Cow<'_, str>> = Vec::new();
        let mut count = 0;
        let mut trailing_slash = false;
        for part in rest.split('/') {
            trailing_slash = true;
            if part.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_SEGMENTS {
                return Err(PathError::TooManySegments);
            }
            let decoded = decode_segment(part)?;
            match decoded.as_ref() {
                "." => {}
                ".." => {
                    segments.pop();
                }
                _ => {
                    check_segment(&decoded)?;
                    segments.push(decoded);
                    trailing_slash = false;
                }
            }
        }
        let mut path = String::with_capacity(raw.len());
        for segment in &segments {
            path.push('/');
            path.extend(utf8_percent_encode(segment, SEGMENT));
        }
        if path.is_empty() || trailing_slash {
            path.push('/');
        }
        let lowercase = segments.iter().map(|s| s.to_lowercase()).collect();
        Ok(NormalizedPath { path, lowercase })
    }

    /// The normalized path, canonically percent-encoded.
    pub(crate) fn as_str(&self) -> &str {
        &self.path
    }
}

/// Percent-decodes one raw segment, refusing what SPEC §10a refuses in it
/// (apart from the trailing `.` or space, checked after dot segments).
fn decode_segment(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(PathError::BadEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    let text = decoded.as_bytes();
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            b';' => return Err(PathError::Semicolon),
            b'%' if text.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && text.get(i + 2).is_some_and(u8::is_ascii_hexdigit) =>
            {
                return Err(PathError::DoubleEncoding);
            }
            _ => {}
        }
    }
    if decoded.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    Ok(decoded)
}

/// The check on a decoded segment that is not a dot segment.
fn check_segment(decoded: &str) -> Result<(), PathError> {
    if decoded.ends_with(['.', ' ']) {
        return Err(PathError::TrailingDotOrSpace);
    }
    Ok(())
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
        path = "/admin/**"
        require = "admin:write"

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

    fn norm(path: &str) -> Result<String, PathError> {
        NormalizedPath::parse(path).map(|n| n.as_str().to_owned())
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
        assert_eq!(r.evaluate(&Method::GET, "/public"), Access::Public);
        assert_eq!(
            r.evaluate(&Method::DELETE, "/public/x/y?z=1"),
            Access::Public
        );
        assert_eq!(r.evaluate(&Method::GET, "/publicity"), Access::NoRule);
    }

    #[test]
    fn a_request_no_rule_matches_is_refused_unless_the_default_is_key() {
        let r = rules(SPEC);
        assert_eq!(
            r.evaluate(&Method::POST, "/api/workspaces/1"),
            Access::NoRule
        );
        assert_eq!(r.evaluate(&Method::GET, "/other"), Access::NoRule);
        assert_eq!(rules("").evaluate(&Method::GET, "/"), Access::NoRule);

        let lenient = rules(&format!("default = \"key\"\n{SPEC}"));
        assert_eq!(
            lenient.evaluate(&Method::POST, "/api/workspaces/1"),
            Access::Key(None)
        );
        assert_eq!(lenient.evaluate(&Method::GET, "/public/x"), Access::Public);

        // No rules file at all: every request needs a valid key.
        assert_eq!(
            Rules::default().evaluate(&Method::GET, "/x"),
            Access::Key(None)
        );
        // Refused paths are refused with every fallback.
        for r in [&r, &lenient, &Rules::default()] {
            assert_eq!(r.evaluate(&Method::GET, "/a%2fb"), Access::InvalidPath);
        }
    }

    #[test]
    fn any_other_default_is_a_load_error_naming_it() {
        for text in [
            "default = \"public\"",
            "default = \"Key\"",
            "default = \"\"",
        ] {
            match Rules::parse_toml(text) {
                Err(e @ RulesError::Default(_)) => {
                    let value = text.split('"').nth(1).unwrap();
                    assert!(e.to_string().contains(&format!("{value:?}")), "{e}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Rules::parse_toml("default = 1"),
            Err(RulesError::Toml(_))
        ));
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
        let r = rules(SPEC);
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
        let r = rules(SPEC);
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
        let r = rules(SPEC);
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

    #[test]
    fn long_or_deep_paths_are_refused() {
        let deep = "/a".repeat(MAX_SEGMENTS);
        assert!(norm(&deep).is_ok());
        assert_eq!(norm(&format!("{deep}/a")), Err(PathError::TooManySegments));
        // Dot segments count: they are work too.
        assert_eq!(
            norm(&format!("{}/a", "/.".repeat(MAX_SEGMENTS))),
            Err(PathError::TooManySegments)
        );
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert!(norm(&long).is_ok());
        assert_eq!(norm(&format!("{long}a")), Err(PathError::TooLong));
    }

    #[test]
    fn normalization() {
        assert_eq!(norm("/a/./b/../c//d").as_deref(), Ok("/a/c/d"));
        assert_eq!(norm("/a/b/").as_deref(), Ok("/a/b/"), "a trailing / stays");
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/../../x").as_deref(), Ok("/x"));
        assert_eq!(norm("/").as_deref(), Ok("/"));
        assert_eq!(norm("/..").as_deref(), Ok("/"));
        assert_eq!(norm("/%70ublic/%7Ex").as_deref(), Ok("/public/~x"));
        assert_eq!(
            norm("/caf%C3%A9/%E2%82%ac?").as_deref(),
            Ok("/caf%C3%A9/%E2%82%AC%3F"),
            "escapes are re-made canonically"
        );
        assert_eq!(norm("/Case/Kept").as_deref(), Ok("/Case/Kept"));
    }

    #[test]
    fn bad_rules_files_name_the_rule_and_field() {
        let cases = [
            ("[[rule]]\npath = \"nope\"\n", "path"),
            ("[[rule]]\npath = \"/a*\"\n", "path"),
            ("[[rule]]\npath = \"/a/../b\"\n", "path"),
            ("[[rule]]\npath = \"/admin./x\"\n", "path"),
            ("[[rule]]\npath = \"/a%2fb\"\n", "path"),
            ("[[rule]]\npath = \"/a;b\"\n", "path"),
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

    // -- the matcher ------------------------------------------------------

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

    fn segments(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
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
        fn the_matcher_agrees_with_the_backtracking_reference(
            pattern in pattern_strategy(),
            path in path_strategy(),
        ) {
            let mut steps = 0;
            let got = matches_counting(&pattern, &path, &mut steps);
            prop_assert_eq!(got, reference(&pattern, &path, &mut 0));
            prop_assert!(steps <= (pattern.len() + 1) * (path.len() + 1));
        }

        #[test]
        fn evaluation_never_panics(path in "\\PC{0,80}", pattern in "(/(\\*|\\*\\*|[a-z%0-9.]{1,4})){0,6}") {
            let text = format!("[[rule]]\npath = \"/{}\"\npublic = true\n", pattern.trim_start_matches('/'));
            if let Ok(r) = Rules::parse_toml(&text) {
                let _ = r.evaluate(&Method::GET, &path);
            }
            let _ = NormalizedPath::parse(&path);
        }

        #[test]
        fn normalization_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = NormalizedPath::parse(&format!("/{text}"));
        }

        #[test]
        fn normalized_paths_are_fixed_points(path in "(/([a-zA-Z.~ ]|%2e|%2E|%41|%25|%20|%C3%A9){0,4}){0,8}/?") {
            if let Ok(n) = NormalizedPath::parse(&path) {
                let again = NormalizedPath::parse(n.as_str());
                prop_assert_eq!(again.as_ref(), Ok(&n));
                prop_assert!(!n.as_str().split('/').any(|s| s == ".." || s == "."));
                prop_assert!(!n.as_str().contains("//"));
                // What is matched is what the upstream decodes.
                prop_assert_eq!(segments(n.as_str()).len(), n.lowercase.len());
            }
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
            let r = rules(SPEC);
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
