//! The request path as the rules judge it: the checks that
//! refuse what servers read differently, and the normalized form.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The longest path judged, in bytes.
const MAX_PATH_BYTES: usize = 4096;
/// The most segments a judged path may have.
pub(super) const MAX_SEGMENTS: usize = 128;

/// Why a path is refused before any rule. For logs only.
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

/// A path that passed the checks before any rule, normalized (see
/// [`Rules`](super::Rules)): what the rules judge and what the proxy forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NormalizedPath {
    /// Canonically encoded, starting with `/`.
    path: String,
    /// The decoded segments, lowercased, for matching.
    pub(crate) lowercase: Vec<String>,
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
        // Encoding can lengthen a path (`}` becomes `%7D`): the path judged
        // and forwarded stays within the bound, and a normalized path is
        // always accepted again as it is (found by fuzzing).
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        let lowercase = segments.iter().map(|s| s.to_lowercase()).collect();
        Ok(NormalizedPath { path, lowercase })
    }

    /// The normalized path, canonically percent-encoded.
    pub(crate) fn as_str(&self) -> &str {
        &self.path
    }
}

/// Percent-decodes one raw segment, refusing what the path checks refuse in it
/// (apart from the trailing `.` or space, checked after dot segments).
pub(super) fn decode_segment(raw: &str) -> Result<Cow<'_, str>, PathError> {
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
pub(super) fn check_segment(decoded: &str) -> Result<(), PathError> {
    if decoded.ends_with(['.', ' ']) {
        return Err(PathError::TrailingDotOrSpace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(path: &str) -> Result<String, PathError> {
        NormalizedPath::parse(path).map(|n| n.as_str().to_owned())
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
        // Short enough raw, too long once encoded: refused, not forwarded
        // longer than the bound.
        let braces = format!("/{}", "}".repeat(2000));
        assert_eq!(norm(&braces), Err(PathError::TooLong));
        let fits = format!("/{}", "}".repeat(1000));
        let normalized = norm(&fits).unwrap();
        assert!(normalized.len() <= MAX_PATH_BYTES);
        assert_eq!(norm(&normalized), Ok(normalized.clone()));
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

    fn segments(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    proptest! {
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
    }
}
