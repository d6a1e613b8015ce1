//! Why a scope or a requirement expression was rejected: [`ScopeError`], [`RequirementError`].

/// Echoed input in error messages is cut to this many characters.
const MAX_ECHO_CHARS: usize = 64;

/// Why a scope was rejected.
///
/// Messages name the offending scope text; echoed input is cut to 64 characters so that error
/// messages stay bounded.
///
/// ```
/// use keygate::Scope;
///
/// let error = Scope::parse("workspaces").unwrap_err();
/// assert!(error.to_string().contains("workspaces"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is the empty string.
    #[error("invalid scope \"\": the scope is empty")]
    Empty,
    /// The scope is longer than 128 characters.
    #[error("invalid scope {input:?}: the scope is {len} characters long (maximum 128)")]
    TooLong {
        /// The offending input (truncated).
        input: String,
        /// Length of the scope in characters.
        len: usize,
    },
    /// The scope has no `:` separating resource and action.
    #[error("invalid scope {input:?}: expected `resource:action` but found no ':'")]
    MissingColon {
        /// The offending input (truncated).
        input: String,
    },
    /// The scope has more than one `:`.
    #[error("invalid scope {input:?}: expected exactly one ':' between resource and action")]
    TooManyColons {
        /// The offending input (truncated).
        input: String,
    },
    /// The resource or the action is empty.
    #[error("invalid scope {input:?}: the {which} part is empty")]
    EmptyPart {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
    },
    /// The resource or the action is longer than 64 characters.
    #[error("invalid scope {input:?}: the {which} part is {len} characters long (maximum 64)")]
    PartTooLong {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
        /// Length of the part in characters.
        len: usize,
    },
    /// The scope contains a character outside `a-z`, `0-9`, `_`, `.`, `-`, `:` and `*`.
    #[error(
        "invalid scope {input:?}: character {ch:?} at position {position} is not allowed \
         (use a-z, 0-9, '_', '.', '-')"
    )]
    InvalidChar {
        /// The offending input (truncated).
        input: String,
        /// The first character that is not allowed.
        ch: char,
        /// Zero-based position of `ch` in the input (every character before it is ASCII, so
        /// this is both its character index and its byte offset).
        position: usize,
    },
    /// A part does not start with `a-z` or `0-9`.
    #[error("invalid scope {input:?}: the {which} part must start with a-z or 0-9, not {ch:?}")]
    BadStart {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
        /// The first character of the part.
        ch: char,
    },
    /// A part contains `*` but is not exactly `*`.
    #[error(
        "invalid scope {input:?}: the {which} part mixes '*' with other characters \
         (a wildcard must be the whole part)"
    )]
    BadWildcard {
        /// The offending input (truncated).
        input: String,
        /// `"resource"` or `"action"`.
        which: &'static str,
    },
    /// A catalog is in use and the scope is not defined in it.
    #[error("scope {scope:?} is not defined in the scope catalog")]
    NotInCatalog {
        /// The scope that was refused.
        scope: String,
    },
    /// Catalog entries must be concrete scopes; wildcards are derived from them.
    #[error(
        "scope {scope:?} cannot be added to the scope catalog: catalog entries must not contain '*'"
    )]
    WildcardInCatalog {
        /// The scope that was refused.
        scope: String,
    },
}

/// Why a requirement expression was rejected.
///
/// ```
/// use keygate::Requirement;
///
/// let error = Requirement::parse("a:read and").unwrap_err();
/// assert!(!error.to_string().is_empty());
/// assert!(Requirement::parse("(a:read").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid requirement at position {position}: {message}")]
#[non_exhaustive]
pub struct RequirementError {
    /// Byte offset in the expression where the problem was found.
    pub position: usize,
    /// What is wrong, as one sentence.
    pub message: String,
}

impl RequirementError {
    pub(super) fn new(position: usize, message: impl Into<String>) -> RequirementError {
        RequirementError {
            position,
            message: message.into(),
        }
    }
}

/// Returns `input` for use in an error message, cut to [`MAX_ECHO_CHARS`] characters.
pub(super) fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::scope::Scope;
    use crate::scope::test_support::req_err;

    #[test]
    fn error_messages_name_the_scope_and_the_problem() {
        let err = Scope::parse("Work:read").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scope \"Work:read\": character 'W' at position 0 is not allowed \
             (use a-z, 0-9, '_', '.', '-')"
        );
        let err = Scope::parse("_w:read").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scope \"_w:read\": the resource part must start with a-z or 0-9, not '_'"
        );
    }

    #[test]
    fn error_messages_truncate_long_input() {
        let long = format!("{}X", "a".repeat(5000));
        let message = Scope::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "message too long: {message}");
        assert!(message.contains(&format!("\"{}…\"", "a".repeat(64))));
        assert!(message.contains("position 5000"));
    }

    #[test]
    fn error_messages_escape_control_characters() {
        let message = Scope::parse("a:b\n\u{1b}[31m").unwrap_err().to_string();
        assert!(!message.contains('\n') && !message.contains('\u{1b}'));
    }

    #[test]
    fn requirement_error_display_includes_the_position() {
        assert_eq!(
            req_err("a:b c:d").to_string(),
            "invalid requirement at position 4: expected 'and' or 'or' before scope \"c:d\", \
             found no operator"
        );
    }
}
