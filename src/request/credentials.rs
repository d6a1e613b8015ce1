//! Finding the credential on a request.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE, HeaderName};
use http::{HeaderMap, HeaderValue, Uri};

/// Where a credential may be found.
///
/// Sources, by default: `Authorization: Bearer <token>` (scheme
/// case-insensitive, one or more spaces) and `X-API-Key: <token>`. A cookie
/// and a query parameter can be added. A credential in two sources, two
/// `Authorization` headers, an empty Bearer value, a value with inner
/// whitespace or with bytes outside visible ASCII are `invalid_request`;
/// no credential at all (or only a non-Bearer `Authorization` scheme) is
/// `missing_token`. Nothing here touches a store.
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{HeaderName, Request, StatusCode};
/// use keygate::{CredentialSource, Keygate, MemoryStore, NewKey, Pepper};
/// use tower::ServiceExt as _;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .credential_sources([CredentialSource::Bearer, CredentialSource::Cookie("session".into())])
///     .build()?;
/// let token = keygate.keys().create(NewKey::new("alice", "web")).await?.token;
/// let app = Router::new().route("/", get(|| async { "hi" })).layer(keygate.layer());
/// let cookie = Request::get("/").header("cookie", format!("session={}", token.expose())).body(Body::empty())?;
/// assert_eq!(app.clone().oneshot(cookie).await?.status(), StatusCode::OK);
/// let header = Request::get("/").header("x-api-key", token.expose()).body(Body::empty())?;
/// assert_eq!(app.oneshot(header).await?.status(), StatusCode::UNAUTHORIZED); // not a source here
/// # let _ = HeaderName::from_static("x");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A header holding the bare token, such as `X-API-Key`.
    Header(HeaderName),
    /// A cookie of this name. Opt-in.
    Cookie(String),
    /// A query parameter of this name. Opt-in: URLs end up in logs.
    Query(String),
}

impl CredentialSource {
    /// The default sources: Bearer, then `X-API-Key`.
    ///
    /// ```
    /// use http::HeaderName;
    /// use keygate::CredentialSource;
    ///
    /// assert_eq!(
    ///     CredentialSource::defaults(),
    ///     [CredentialSource::Bearer, CredentialSource::Header(HeaderName::from_static("x-api-key"))]
    /// );
    /// ```
    pub fn defaults() -> Vec<CredentialSource> {
        vec![
            CredentialSource::Bearer,
            CredentialSource::Header(HeaderName::from_static("x-api-key")),
        ]
    }
}

/// Why no usable credential was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// Nothing in any source.
    Missing,
    /// Ambiguous or malformed.
    InvalidRequest,
}

/// A credential found on a request: borrowed from its header, or owned
/// when it had to be copied (a query parameter) or must outlive the
/// borrow ([`into_owned`](Credential::into_owned): header values are
/// reference-counted bytes, so that copies nothing either).
#[derive(Clone)]
pub(crate) struct Credential<'a> {
    value: Cow<'a, HeaderValue>,
    start: usize,
    end: usize,
}

impl<'a> Credential<'a> {
    fn header(value: &'a HeaderValue, start: usize, end: usize) -> Credential<'a> {
        Credential {
            value: Cow::Borrowed(value),
            start,
            end,
        }
    }

    fn owned(text: &str) -> Result<Credential<'a>, CredentialError> {
        let value = HeaderValue::from_str(text).map_err(|_| CredentialError::InvalidRequest)?;
        let end = text.len();
        Ok(Credential {
            value: Cow::Owned(value),
            start: 0,
            end,
        })
    }

    /// The same credential, independent of the request.
    pub(crate) fn into_owned(self) -> Credential<'static> {
        Credential {
            value: Cow::Owned(self.value.into_owned()),
            start: self.start,
            end: self.end,
        }
    }

    /// The token text.
    pub(crate) fn as_str(&self) -> &str {
        // Checked to be visible ASCII when extracted, so valid UTF-8 (and
        // `from_utf8` checks ASCII a word at a time).
        let bytes = self.value.as_bytes();
        std::str::from_utf8(bytes.get(self.start..self.end).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential([redacted])")
    }
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The only value of header `name`, or `InvalidRequest` when it repeats.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, CredentialError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(CredentialError::InvalidRequest);
    }
    Ok(first)
}

/// Every byte visible ASCII or a space. A tab is neither: the credential rules want
/// one or more *spaces* after `Bearer`, and visible ASCII otherwise.
fn is_text(bytes: &[u8]) -> bool {
    let (words, rest) = words(bytes);
    let outside = words.fold(0, |found, word| {
        // A byte at or above 0x80, below 0x20, or equal to 0x7f (DEL).
        found | (word & HIGH) | below(word, 0x20) | equal(word, 0x7f)
    });
    outside == 0 && rest.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// Every byte visible ASCII (`!` to `~`): a token as it should be sent,
/// with nothing to trim and nothing to refuse.
fn is_visible(bytes: &[u8]) -> bool {
    let (words, rest) = words(bytes);
    let outside = words.fold(0, |found, word| {
        found | (word & HIGH) | below(word, 0x21) | equal(word, 0x7f)
    });
    outside == 0 && rest.iter().all(|&b| (0x21..0x7f).contains(&b))
}

/// Whether `bytes` holds a space or a tab.
fn has_ows(bytes: &[u8]) -> bool {
    let (words, rest) = words(bytes);
    let found = words.fold(0, |found, word| {
        found | equal(word, b' ') | equal(word, b'\t')
    });
    found != 0 || rest.iter().any(|&b| is_ows(b))
}

// Eight bytes at a time (a header value is read whole either way, so
// there is nothing to gain from stopping early). For bytes `x` of a word:
// `below(word, n)` has the high bit of some byte set iff some x < n (n ≤ 128),
// `equal(word, b)` iff some x == b — exact for "some byte", which is all
// that is asked.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH
}

fn equal(word: u64, byte: u8) -> u64 {
    below(word ^ (ONES * u64::from(byte)), 1)
}

/// `bytes` as little-endian words, and the bytes after the last whole word.
fn words(bytes: &[u8]) -> (impl Iterator<Item = u64> + '_, &[u8]) {
    let chunks = bytes.chunks_exact(8);
    let rest = chunks.remainder();
    let words = chunks.map(|chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        u64::from_le_bytes(word)
    });
    (words, rest)
}

/// The token in `bytes[start..end]`: trimmed of surrounding whitespace,
/// non-empty, without inner whitespace. Returns its byte range.
fn trimmed(
    bytes: &[u8],
    mut start: usize,
    mut end: usize,
) -> Result<(usize, usize), CredentialError> {
    while start < end && is_ows(bytes[start]) {
        start += 1;
    }
    while end > start && is_ows(bytes[end - 1]) {
        end -= 1;
    }
    if start == end || has_ows(&bytes[start..end]) {
        return Err(CredentialError::InvalidRequest);
    }
    Ok((start, end))
}

fn bearer(headers: &HeaderMap) -> Result<Option<Credential<'_>>, CredentialError> {
    let Some(value) = single(headers, &AUTHORIZATION)? else {
        return Ok(None);
    };
    // The usual form, `Bearer <token>` with one space and a token of
    // visible ASCII, is read in one pass over the token; the general rules
    // below find the same range for it (a proptest compares them).
    let bytes = value.as_bytes();
    if bytes.len() > BEARER_SP.len()
        && bytes[..BEARER_SP.len()].eq_ignore_ascii_case(BEARER_SP)
        && is_visible(&bytes[BEARER_SP.len()..])
    {
        return Ok(Some(Credential::header(
            value,
            BEARER_SP.len(),
            bytes.len(),
        )));
    }
    bearer_value(value)
}

/// `Bearer` and the one space after it, in any case.
const BEARER_SP: &[u8] = b"bearer ";

/// The general rules for an `Authorization` value.
fn bearer_value(value: &HeaderValue) -> Result<Option<Credential<'_>>, CredentialError> {
    let bytes = value.as_bytes();
    if !is_text(bytes) {
        return Err(CredentialError::InvalidRequest);
    }
    let scheme_end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        // Another scheme (Basic, Digest…) is not ours to judge.
        return Ok(None);
    }
    let (start, end) = trimmed(bytes, scheme_end, bytes.len())?;
    Ok(Some(Credential::header(value, start, end)))
}

fn header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<Credential<'a>>, CredentialError> {
    let Some(value) = single(headers, name)? else {
        return Ok(None);
    };
    // A bare token of visible ASCII: nothing to trim (the general rules
    // below agree; a proptest compares them).
    let bytes = value.as_bytes();
    if !bytes.is_empty() && is_visible(bytes) {
        return Ok(Some(Credential::header(value, 0, bytes.len())));
    }
    header_value(value)
}

/// The general rules for a header holding the bare token.
fn header_value(value: &HeaderValue) -> Result<Option<Credential<'_>>, CredentialError> {
    let bytes = value.as_bytes();
    if !is_text(bytes) {
        return Err(CredentialError::InvalidRequest);
    }
    let (start, end) = trimmed(bytes, 0, bytes.len())?;
    Ok(Some(Credential::header(value, start, end)))
}

fn cookie<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<Credential<'a>>, CredentialError> {
    let mut found: Option<Credential<'a>> = None;
    for value in headers.get_all(COOKIE) {
        let bytes = value.as_bytes();
        let mut offset = 0;
        for pair in bytes.split(|&b| b == b';') {
            let pair_start = offset;
            offset += pair.len() + 1;
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let key = pair[..eq].trim_ascii();
            if key != name.as_bytes() {
                continue;
            }
            if found.is_some() || !is_text(pair) {
                return Err(CredentialError::InvalidRequest);
            }
            let (mut start, mut end) =
                trimmed(bytes, pair_start + eq + 1, pair_start + pair.len())?;
            // RFC 6265 allows a double-quoted cookie value.
            if end - start >= 2 && bytes[start] == b'"' && bytes[end - 1] == b'"' {
                (start, end) = trimmed(bytes, start + 1, end - 1)?;
            }
            found = Some(Credential::header(value, start, end));
        }
    }
    Ok(found)
}

fn query(uri: &Uri, name: &str) -> Result<Option<Credential<'static>>, CredentialError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            continue;
        }
        // `Uri` lets bytes above 0x7f through in a query: such a value is
        // no more a credential than a header value holding them.
        if found.is_some() || value.is_empty() || !is_text(value.as_bytes()) {
            return Err(CredentialError::InvalidRequest);
        }
        found = Some(Credential::owned(value)?);
    }
    Ok(found)
}

/// The one credential on a request, per the configured sources.
pub(crate) fn extract<'a>(
    headers: &'a HeaderMap,
    uri: &Uri,
    sources: &[CredentialSource],
) -> Result<Credential<'a>, CredentialError> {
    let mut found: Option<Credential<'a>> = None;
    for source in sources {
        let credential = match source {
            CredentialSource::Bearer => bearer(headers)?,
            CredentialSource::Header(name) => header(headers, name)?,
            CredentialSource::Cookie(name) => cookie(headers, name)?,
            CredentialSource::Query(name) => query(uri, name)?,
        };
        if let Some(credential) = credential {
            if found.is_some() {
                return Err(CredentialError::InvalidRequest);
            }
            found = Some(credential);
        }
    }
    found.ok_or(CredentialError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(
        headers: &[(&str, &[u8])],
        uri: &str,
        sources: &[CredentialSource],
    ) -> Result<String, CredentialError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        extract(&map, &uri.parse().unwrap(), sources).map(|c| c.as_str().to_owned())
    }

    fn defaults(headers: &[(&str, &[u8])]) -> Result<String, CredentialError> {
        run(headers, "/", &CredentialSource::defaults())
    }

    fn all() -> Vec<CredentialSource> {
        let mut s = CredentialSource::defaults();
        s.push(CredentialSource::Cookie("kg".into()));
        s.push(CredentialSource::Query("api_key".into()));
        s
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_with_one_or_more_spaces() {
        for value in ["Bearer tok", "bearer tok", "BEARER   tok", "Bearer tok  "] {
            assert_eq!(
                defaults(&[("authorization", value.as_bytes())]).unwrap(),
                "tok",
                "{value}"
            );
        }
    }

    #[test]
    fn x_api_key_header_is_read() {
        assert_eq!(defaults(&[("x-api-key", b"tok")]).unwrap(), "tok");
        assert_eq!(defaults(&[("X-Api-Key", b" tok ")]).unwrap(), "tok");
    }

    #[test]
    fn nothing_or_only_another_scheme_is_missing() {
        assert_eq!(defaults(&[]), Err(CredentialError::Missing));
        assert_eq!(
            defaults(&[("authorization", b"Basic YWxhZGRpbjpvcGVu")]),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            defaults(&[("authorization", b"Bearertok")]),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            defaults(&[("cookie", b"kg=tok")]),
            Err(CredentialError::Missing),
            "cookies are opt-in"
        );
        assert_eq!(
            run(&[], "/?api_key=tok", &CredentialSource::defaults()),
            Err(CredentialError::Missing)
        );
    }

    #[test]
    fn ambiguous_or_malformed_credentials_are_invalid_requests() {
        let bad: &[&[(&str, &[u8])]] = &[
            &[
                ("authorization", b"Bearer a"),
                ("authorization", b"Bearer a"),
            ],
            &[("authorization", b"Bearer a"), ("x-api-key", b"a")],
            &[("x-api-key", b"a"), ("x-api-key", b"b")],
            &[("authorization", b"Bearer")],
            &[("authorization", b"Bearer   ")],
            &[("authorization", b"Bearer a b")],
            &[("authorization", b"Bearer a\tb")],
            &[("authorization", b"Bearer\ttok")],
            &[("authorization", b"Bearer \ttok")],
            &[("x-api-key", b"\ttok")],
            &[("authorization", b"Bearer tok\xff")],
            &[("x-api-key", b"")],
            &[("x-api-key", b"a b")],
            &[("x-api-key", b"\xc3\xa9")],
            &[("authorization", b"Basic \xff")],
        ];
        for headers in bad {
            assert_eq!(
                defaults(headers),
                Err(CredentialError::InvalidRequest),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn basic_auth_next_to_an_api_key_is_not_ambiguous() {
        assert_eq!(
            defaults(&[("authorization", b"Basic eDp5"), ("x-api-key", b"tok")]).unwrap(),
            "tok"
        );
    }

    #[test]
    fn opt_in_cookie_and_query_sources() {
        assert_eq!(
            run(&[("cookie", b"a=1; kg=tok; b=2")], "/", &all()).unwrap(),
            "tok"
        );
        assert_eq!(
            run(&[("cookie", b"kg=\"tok\"")], "/", &all()).unwrap(),
            "tok"
        );
        assert_eq!(run(&[], "/x?a=1&api_key=tok", &all()).unwrap(), "tok");
        assert_eq!(
            run(&[("cookie", b"kg=a; kg=b")], "/", &all()),
            Err(CredentialError::InvalidRequest)
        );
        assert_eq!(
            run(&[("cookie", b"kg=")], "/", &all()),
            Err(CredentialError::InvalidRequest)
        );
        assert_eq!(
            run(&[], "/?api_key=a&api_key=b", &all()),
            Err(CredentialError::InvalidRequest)
        );
        assert_eq!(
            run(&[], "/?api_key=", &all()),
            Err(CredentialError::InvalidRequest)
        );
        assert_eq!(
            run(&[("x-api-key", b"tok")], "/?api_key=tok", &all()),
            Err(CredentialError::InvalidRequest)
        );
        assert_eq!(
            run(
                &[("cookie", b"kg=tok"), ("authorization", b"Bearer tok")],
                "/",
                &all()
            ),
            Err(CredentialError::InvalidRequest)
        );
    }

    #[test]
    fn a_query_credential_with_bytes_outside_visible_ascii_is_an_invalid_request() {
        // Found by fuzz/fuzz_targets/credentials.rs: `Uri` accepts UTF-8 in
        // a query, and the credential came out with it (a later 401
        // instead of the 400 for a malformed credential, and a "visible ASCII" credential that was not).
        let uri: Uri = "/p?api_key=ab\u{213}c"
            .parse()
            .expect("Uri takes UTF-8 in a query");
        let sources = [CredentialSource::Query("api_key".into())];
        let found = extract(&HeaderMap::new(), &uri, &sources).map(|c| c.as_str().to_owned());
        assert_eq!(found, Err(CredentialError::InvalidRequest));
        let uri: Uri = "/p?api_key=abc".parse().unwrap();
        let found = extract(&HeaderMap::new(), &uri, &sources).map(|c| c.as_str().to_owned());
        assert_eq!(found.as_deref(), Ok("abc"));
    }

    #[test]
    fn debug_never_shows_the_credential() {
        let c = Credential::owned("secret-token").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    proptest! {
        #[test]
        fn extraction_never_panics(
            auth in proptest::collection::vec(any::<u8>(), 0..80),
            key in proptest::collection::vec(any::<u8>(), 0..80),
            cookie in "[ -~]{0,60}",
            q in "[a-z=&_]{0,40}",
        ) {
            let mut map = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&auth) { map.append(AUTHORIZATION, v); }
            if let Ok(v) = HeaderValue::from_bytes(&key) { map.append("x-api-key", v); }
            if let Ok(v) = HeaderValue::from_str(&cookie) { map.append(COOKIE, v); }
            let uri: Uri = format!("/p?{q}").parse().unwrap_or_default();
            if let Ok(c) = extract(&map, &uri, &all()) {
                let s = c.as_str();
                prop_assert!(!s.is_empty());
                prop_assert!(!s.contains(' ') && !s.contains('\t'));
            }
        }

        #[test]
        fn the_usual_forms_read_as_the_general_rules_read_them(
            scheme in prop_oneof![Just("Bearer "), Just("bearer "), Just("BEARER "), Just("Bearer  "), Just("Bearer\t"), Just("Basic "), Just("Bearer"), Just("")],
            token in proptest::collection::vec(
                prop_oneof![0x21u8..0x7f, Just(b' '), Just(b'\t'), Just(0x7f), Just(0x80), Just(0x1f)],
                0..70,
            ),
        ) {
            let range = |c: Result<Option<Credential<'_>>, CredentialError>| {
                c.map(|c| c.map(|c| (c.start, c.end)))
            };
            let mut bytes = scheme.as_bytes().to_vec();
            bytes.extend_from_slice(&token);
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut map = HeaderMap::new();
                map.insert(AUTHORIZATION, value.clone());
                prop_assert_eq!(range(bearer(&map)), range(bearer_value(&value)));
                let mut map = HeaderMap::new();
                map.insert("x-api-key", value.clone());
                let name = HeaderName::from_static("x-api-key");
                prop_assert_eq!(range(header(&map, &name)), range(header_value(&value)));
            }
        }

        #[test]
        fn word_at_a_time_checks_agree_with_byte_at_a_time(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b' '), Just(b'\t'), Just(0x1f), Just(0x7f), 0x20u8..0x7f],
                0..40,
            ),
        ) {
            prop_assert_eq!(is_text(&bytes), bytes.iter().all(|&b| (0x20..0x7f).contains(&b)));
            prop_assert_eq!(has_ows(&bytes), bytes.iter().any(|&b| b == b' ' || b == b'\t'));
            prop_assert_eq!(is_visible(&bytes), bytes.iter().all(|&b| (0x21..0x7f).contains(&b)));
        }

        #[test]
        fn one_bad_byte_anywhere_in_visible_text_is_found(
            text in "[!-~]{0,40}",
            pos in any::<proptest::sample::Index>(),
            bad in prop_oneof![0u8..0x20, 0x7fu8..=0xff],
        ) {
            let mut bytes = text.into_bytes();
            prop_assert!(is_text(&bytes) && !has_ows(&bytes));
            let at = pos.index(bytes.len() + 1);
            bytes.insert(at, bad);
            prop_assert!(!is_text(&bytes));
            prop_assert_eq!(has_ows(&bytes), bad == b'\t');
        }
    }
}
