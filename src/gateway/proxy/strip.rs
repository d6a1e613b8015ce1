//! Removing the keygate credential from a forwarded request, from every
//! configured source: `Bearer` `Authorization` values, the API-key
//! header(s), the cookie and the query parameter.

use std::borrow::Cow;

use bytes::BytesMut;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::request::CredentialSource;

/// The credential sources, as what to remove from a forwarded request.
#[derive(Debug, Default)]
pub(crate) struct Strip {
    bearer: bool,
    headers: Vec<HeaderName>,
    cookies: Vec<Box<str>>,
    pub(crate) queries: Vec<Box<str>>,
}

impl Strip {
    pub(crate) fn new(sources: &[CredentialSource]) -> Strip {
        let mut strip = Strip::default();
        for source in sources {
            match source {
                CredentialSource::Bearer => strip.bearer = true,
                CredentialSource::Header(name) => strip.headers.push(name.clone()),
                CredentialSource::Cookie(name) => strip.cookies.push(name.as_str().into()),
                CredentialSource::Query(name) => strip.queries.push(name.as_str().into()),
            }
        }
        strip
    }

    /// Removes the credential headers and cookies (the query parameter is
    /// dropped when the upstream URI is built).
    pub(crate) fn headers(&self, headers: &mut HeaderMap) {
        if self.bearer {
            remove_bearer(headers);
        }
        for name in &self.headers {
            headers.remove(name);
        }
        rewrite_cookies(headers, &self.cookies);
    }
}

/// Whether an `Authorization` value uses the `Bearer` scheme: stricter
/// parsing is the extractor's job, here anything that looks like Bearer goes.
fn is_bearer(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes().trim_ascii_start();
    bytes.len() >= 6
        && bytes[..6].eq_ignore_ascii_case(b"bearer")
        && bytes.get(6).is_none_or(|b| b.is_ascii_whitespace())
}

/// Removes every `Bearer` `Authorization` value, keeping the others in order.
fn remove_bearer(headers: &mut HeaderMap) {
    if !headers.get_all(AUTHORIZATION).iter().any(is_bearer) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|value| !is_bearer(value))
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for value in kept {
        headers.append(AUTHORIZATION, value);
    }
}

/// Removes the cookies named in `names` and joins several `Cookie` headers
/// into one. Untouched when there is one header and nothing to remove.
fn rewrite_cookies(headers: &mut HeaderMap, names: &[Box<str>]) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), more) = (values.next(), values.next().is_some()) else {
        return;
    };
    let is_named = |pair: &[u8]| {
        let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
        let key = key.trim_ascii();
        names.iter().any(|name| key == name.as_bytes())
    };
    if !more && !first.as_bytes().split(|&b| b == b';').any(is_named) {
        return;
    }
    let mut joined = BytesMut::new();
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() || is_named(pair) {
                continue;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(pair);
        }
    }
    headers.remove(COOKIE);
    if !joined.is_empty() {
        // Bytes of valid header values joined by "; ": still valid.
        if let Ok(value) = HeaderValue::from_maybe_shared(joined.freeze()) {
            headers.insert(COOKIE, value);
        }
    }
}

/// The query without the parameters named in `names` (compared as sent and
/// percent-decoded). Borrowed when nothing is removed.
pub(super) fn strip_query<'a>(query: &'a str, names: &[Box<str>]) -> Cow<'a, str> {
    if names.is_empty() {
        return Cow::Borrowed(query);
    }
    let is_named = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        names.iter().any(|name| {
            key == &**name
                || (key.contains('%')
                    && percent_encoding::percent_decode_str(key).decode_utf8_lossy() == **name)
        })
    };
    if !query.split('&').any(is_named) {
        return Cow::Borrowed(query);
    }
    let mut kept = String::with_capacity(query.len());
    for pair in query.split('&').filter(|pair| !is_named(pair)) {
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    Cow::Owned(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|name| (*name).into()).collect()
    }

    #[test]
    fn query_parameters_are_stripped_as_sent_and_decoded() {
        let strip = names(&["api_key"]);
        assert!(matches!(
            strip_query("a=1&b=2", &strip),
            Cow::Borrowed("a=1&b=2")
        ));
        assert_eq!(strip_query("api_key=1", &strip), "");
        assert_eq!(strip_query("api%5Fkey=1&a=2", &strip), "a=2");
        assert_eq!(strip_query("api_key&api_keyx=1", &strip), "api_keyx=1");
    }

    #[test]
    fn bearer_values_go_other_authorization_schemes_stay() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("bEaReR tok"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearertok"));
        remove_bearer(&mut headers);
        let left: Vec<_> = headers.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(left, ["Basic eDp5", "Bearertok"]);
    }

    #[test]
    fn cookies_are_filtered_and_joined() {
        let strip = names(&["kg"]);
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; kg=tok;b=2"));
        headers.append(COOKIE, HeaderValue::from_static(" kg = \"tok\" ; c=3"));
        rewrite_cookies(&mut headers, &strip);
        assert_eq!(
            headers.get_all(COOKIE).iter().collect::<Vec<_>>(),
            ["a=1; b=2; c=3"]
        );

        let mut only = HeaderMap::new();
        only.insert(COOKIE, HeaderValue::from_static("kg=tok"));
        rewrite_cookies(&mut only, &strip);
        assert!(!only.contains_key(COOKIE));

        let mut untouched = HeaderMap::new();
        untouched.insert(COOKIE, HeaderValue::from_static("a=1;b=2"));
        rewrite_cookies(&mut untouched, &strip);
        assert_eq!(untouched[COOKIE], "a=1;b=2");
    }
}
