//! The TOML rules file: its format, and parsing or loading it into
//! [`Rules`].

use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use super::access::{Fallback, Rule, RuleAccess, Rules};
use super::matcher::parse_pattern;
use crate::scope::Requirement;

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
    cost: Option<i64>,
}

/// The largest `cost` a rule may give a request: the largest rate limit
/// (a greater cost could never pass).
pub const MAX_RULE_COST: u64 = crate::limit::MAX_LIMIT_PER_PERIOD;

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
    ///
    /// ```
    /// use keygate::gateway::{Access, Rules};
    ///
    /// let rules = Rules::parse_toml(r#"
    ///     [[rule]]
    ///     path = "/public/**"
    ///     public = true
    ///
    ///     [[rule]]
    ///     path = "/api/**"
    ///     require = "api:read"
    /// "#)?;
    /// assert_eq!(rules.len(), 2);
    /// assert!(matches!(rules.evaluate(&http::Method::GET, "/public/logo.png"), Access::Public));
    /// assert!(Rules::parse_toml("[[rule]]\npublic = true").is_err()); // no path
    /// # Ok::<(), keygate::gateway::RulesError>(())
    /// ```
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
            let cost = match raw.cost {
                None => 1,
                Some(cost) => u64::try_from(cost)
                    .ok()
                    .filter(|cost| *cost <= MAX_RULE_COST)
                    .ok_or_else(|| {
                        fail(
                            "cost",
                            format!("must be an integer from 0 to {MAX_RULE_COST}, not {cost}"),
                        )
                    })?,
            };
            let access = match (raw.public, raw.require) {
                (true, Some(_)) => {
                    return Err(fail(
                        "public",
                        "a public rule cannot also require scopes".into(),
                    ));
                }
                (true, None) if raw.cost.is_some() => {
                    return Err(fail(
                        "cost",
                        "a public rule has no key to count a cost against".into(),
                    ));
                }
                (true, None) => RuleAccess::Public,
                (false, require) => RuleAccess::Key {
                    requirement: require
                        .map(|expr| Requirement::parse(&expr).map(Arc::new))
                        .transpose()
                        .map_err(|e| fail("require", e.to_string()))?,
                    cost,
                },
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
    ///
    /// ```
    /// use keygate::gateway::Rules;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("rules.toml");
    /// std::fs::write(&path, "[[rule]]\npath = \"/**\"\n").unwrap();
    /// assert_eq!(Rules::load(&path)?.len(), 1);
    /// assert!(Rules::load(&dir.path().join("missing.toml")).is_err());
    /// # Ok::<(), keygate::gateway::RulesError>(())
    /// ```
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(RulesError::Io)?;
        Rules::parse_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Access;
    use super::*;

    fn rules(text: &str) -> Rules {
        Rules::parse_toml(text).unwrap()
    }

    #[test]
    fn a_rule_gives_its_cost_and_every_other_key_access_costs_one() {
        let r = rules(
            "default = \"key\"\n\
             [[rule]]\npath = \"/reports/**\"\nrequire = \"reports:write\"\ncost = 10\n\
             [[rule]]\npath = \"/free/**\"\ncost = 0\n\
             [[rule]]\npath = \"/top\"\ncost = 1000000000\n\
             [[rule]]\npath = \"/plain\"\n",
        );
        let cost = |path: &str| match r.evaluate(&http::Method::GET, path) {
            Access::Key { cost, .. } => cost,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(cost("/reports/1"), 10);
        assert_eq!(cost("/free/x"), 0);
        assert_eq!(cost("/top"), MAX_RULE_COST);
        assert_eq!(cost("/plain"), 1);
        assert_eq!(cost("/no/rule"), 1, "the default costs 1");
        let error = Rules::parse_toml("[[rule]]\npath = \"/a\"\ncost = -3\n").unwrap_err();
        assert!(
            error.to_string().contains("from 0 to 1000000000, not -3"),
            "{error}"
        );
        assert!(matches!(
            Rules::parse_toml("[[rule]]\npath = \"/a\"\ncost = 1.5\n"),
            Err(RulesError::Toml(_))
        ));
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
            ("[[rule]]\npath = \"/a\"\ncost = -1\n", "cost"),
            ("[[rule]]\npath = \"/a\"\ncost = 1000000001\n", "cost"),
            ("[[rule]]\npath = \"/a\"\npublic = true\ncost = 0\n", "cost"),
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
}
