//! The other header rewriting, both ways: hop-by-hop headers,
//! `Content-Length` of a chunked body, client-sent `X-Keygate-*` headers and
//! `X-Forwarded-*`.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::BytesMut;
use http::header::{
    CONNECTION, CONTENT_LENGTH, FORWARDED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Body as _;
use hyper::body::Incoming;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones), never
/// forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Every client-sent header starting with this is removed.
const KEYGATE_HEADER_PREFIX: &str = "x-keygate-";

/// Removes the hop-by-hop headers: those listed in `Connection`, then the
/// fixed list.
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Drops `Content-Length` when the body's length is not known exactly:
/// it came chunked (`Transfer-Encoding`, just removed, beat a
/// `Content-Length` sent alongside) and leaves chunked; forwarding the stale
/// length would desynchronize the next hop.
pub(super) fn fix_content_length(headers: &mut HeaderMap, body: &Incoming) {
    if body.size_hint().exact().is_none() {
        headers.remove(CONTENT_LENGTH);
    }
}

/// Removes every `X-Keygate-*` header.
pub(super) fn remove_keygate_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(KEYGATE_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`; see the module docs.
pub(super) fn set_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    original_host: Option<HeaderValue>,
) {
    let mut chain = BytesMut::new();
    if peer_trusted {
        for value in headers.get_all(X_FORWARDED_FOR) {
            let value = value.as_bytes().trim_ascii();
            if value.is_empty() {
                continue;
            }
            if !chain.is_empty() {
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(value);
        }
    }
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    // Writing an address into a `BytesMut` cannot fail.
    let _ = write!(chain, "{peer}");
    // Valid header values joined by ", ", and an address: still valid.
    if let Ok(chain) = HeaderValue::from_maybe_shared(chain.freeze()) {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match original_host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    if !peer_trusted {
        headers.remove(FORWARDED);
        headers.remove(X_REAL_IP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_lists_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Hop , x-other"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert("x-end-to-end", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-end-to-end"));
    }

    #[test]
    fn forwarding_headers_trust_only_trusted_peers() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        let mut untrusted = headers.clone();
        set_forwarding(
            &mut untrusted,
            peer,
            false,
            Some(HeaderValue::from_static("h")),
        );
        assert_eq!(untrusted[X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(untrusted[X_FORWARDED_PROTO], "http");
        assert_eq!(untrusted[X_FORWARDED_HOST], "h");
        assert!(!untrusted.contains_key(FORWARDED));

        let mut trusted = headers;
        trusted.append(X_FORWARDED_FOR, HeaderValue::from_static("5.6.7.8"));
        set_forwarding(&mut trusted, peer, true, None);
        assert_eq!(trusted[X_FORWARDED_FOR], "1.2.3.4, 5.6.7.8, 10.0.0.1");
        assert_eq!(trusted[X_FORWARDED_PROTO], "https");
        assert!(!trusted.contains_key(X_FORWARDED_HOST));
        assert!(trusted.contains_key(FORWARDED));
    }
}
