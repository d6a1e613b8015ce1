//! Credential extraction from a request's headers and query (SPEC §3),
//! against a reference written from the table of §3.
//!
//! Checked, for any headers (names among `Authorization`, `X-API-Key`,
//! `Cookie` and another, any valid header value bytes), any query string
//! and any choice of sources: keygate finds exactly the reference's
//! outcome — the one credential's text, `missing_token`, or
//! `invalid_request` — and a credential found is non-empty visible ASCII
//! without whitespace.

#![no_main]

use arbitrary::Arbitrary;
use http::header::{COOKIE, HeaderName};
use http::{HeaderMap, HeaderValue, Uri};
use keygate::CredentialSource;
use keygate::fuzz::{CredentialOutcome, extract_credential};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(u8, Vec<u8>)>,
    query: Option<String>,
    sources: u8,
}

const NAMES: [&str; 4] = ["authorization", "x-api-key", "cookie", "x-other"];
const COOKIE_NAME: &str = "kg";
const QUERY_NAME: &str = "api_key";

fn visible(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// A token out of `text`, trimmed of spaces and tabs: refused when empty
/// or holding inner whitespace.
fn trim(text: &[u8]) -> Result<String, CredentialOutcome> {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = text.iter().position(|b| !ows(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    let text = &text[start..end.max(start)];
    if text.is_empty() || text.iter().any(ows) {
        return Err(CredentialOutcome::InvalidRequest);
    }
    Ok(String::from_utf8(text.to_vec()).unwrap())
}

type Found = Result<Option<String>, CredentialOutcome>;

fn only<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a [u8]>, CredentialOutcome> {
    let all: Vec<_> = headers.get_all(name).iter().collect();
    match all.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.as_bytes())),
        _ => Err(CredentialOutcome::InvalidRequest),
    }
}

fn bearer(headers: &HeaderMap) -> Found {
    let Some(value) = only(headers, "authorization")? else {
        return Ok(None);
    };
    if !visible(value) {
        return Err(CredentialOutcome::InvalidRequest);
    }
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    trim(rest).map(Some)
}

fn api_key(headers: &HeaderMap) -> Found {
    let Some(value) = only(headers, "x-api-key")? else {
        return Ok(None);
    };
    if !visible(value) {
        return Err(CredentialOutcome::InvalidRequest);
    }
    trim(value).map(Some)
}

fn cookie(headers: &HeaderMap) -> Found {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != COOKIE_NAME.as_bytes() {
                continue;
            }
            if found.is_some() || !visible(pair) {
                return Err(CredentialOutcome::InvalidRequest);
            }
            let mut token = trim(&pair[eq + 1..])?;
            if token.len() >= 2 && token.starts_with('"') && token.ends_with('"') {
                token = trim(token[1..token.len() - 1].as_bytes())?;
            }
            found = Some(token);
        }
    }
    Ok(found)
}

fn query(uri: &Uri) -> Found {
    let mut found = None;
    for pair in uri.query().unwrap_or_default().split('&') {
        if uri.query().is_none() {
            break;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != QUERY_NAME {
            continue;
        }
        if found.is_some() || value.is_empty() || !visible(value.as_bytes()) {
            return Err(CredentialOutcome::InvalidRequest);
        }
        found = Some(value.to_owned());
    }
    Ok(found)
}

fn reference(headers: &HeaderMap, uri: &Uri, sources: &[CredentialSource]) -> CredentialOutcome {
    let mut found = None;
    for source in sources {
        let one = match source {
            CredentialSource::Bearer => bearer(headers),
            CredentialSource::Header(_) => api_key(headers),
            CredentialSource::Cookie(_) => cookie(headers),
            CredentialSource::Query(_) => query(uri),
            _ => unreachable!(),
        };
        match one {
            Err(outcome) => return outcome,
            Ok(Some(token)) => {
                if found.is_some() {
                    return CredentialOutcome::InvalidRequest;
                }
                found = Some(token);
            }
            Ok(None) => {}
        }
    }
    found.map_or(CredentialOutcome::Missing, CredentialOutcome::Found)
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, value) in input.headers.iter().take(8) {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        let name = HeaderName::from_static(NAMES[usize::from(*name) % NAMES.len()]);
        headers.append(name, value);
    }
    let uri: Uri = match &input.query {
        Some(q) => match format!("/p?{q}").parse() {
            Ok(uri) => uri,
            Err(_) => return,
        },
        None => Uri::from_static("/p"),
    };
    let all = [
        CredentialSource::Bearer,
        CredentialSource::Header(HeaderName::from_static("x-api-key")),
        CredentialSource::Cookie(COOKIE_NAME.into()),
        CredentialSource::Query(QUERY_NAME.into()),
    ];
    // Bit i of `sources` picks source i; none picked means the defaults.
    let mut sources: Vec<CredentialSource> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| input.sources & (1 << i) != 0)
        .map(|(_, s)| s.clone())
        .collect();
    if sources.is_empty() {
        sources = CredentialSource::defaults();
    }
    let got = extract_credential(&headers, &uri, &sources);
    let expected = reference(&headers, &uri, &sources);
    assert_eq!(got, expected, "{headers:?} {uri} {sources:?}");
    if let CredentialOutcome::Found(token) = &got {
        assert!(!token.is_empty());
        assert!(
            token.bytes().all(|b| (0x21..0x7f).contains(&b)),
            "{token:?}"
        );
    }
});
