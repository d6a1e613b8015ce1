//! The original request a `CheckRequest` describes: its method, URI and
//! headers, and the client address as far as it can be believed.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use ipnet::IpNet;

use crate::key::canonical_ip;
use crate::request::{forwarded_client, is_trusted};
use crate::verify::Rejection;

/// What a `CheckRequest` says about the request Envoy is asking about.
#[derive(Debug)]
pub(crate) struct Original {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

impl Original {
    /// The method, path (with its query) and headers of
    /// `attributes.request.http`. A missing part, a method or path that
    /// does not parse, or a header that cannot be an HTTP header is
    /// refused (400 `invalid_request`); pseudo-headers (`:path`, …) are
    /// skipped, the method and path come from their own fields.
    pub(crate) fn parse(check: &CheckRequest) -> Result<Original, Rejection> {
        let http = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .ok_or(Rejection::InvalidPath)?;
        let method =
            Method::from_bytes(http.method.as_bytes()).map_err(|_| Rejection::InvalidPath)?;
        // `Uri` drops a `#fragment` silently: `/public#/../admin` would be
        // judged as `/public`, while a server that reads `#` as a path
        // character resolves it to `/admin`. No client sends a fragment, so
        // a request target holding `#` is refused.
        let uri = Some(http.path.as_str())
            .filter(|path| !path.contains('#'))
            .and_then(|path| path.parse::<Uri>().ok())
            .filter(|u| u.scheme().is_none() && u.path().starts_with('/'))
            .ok_or(Rejection::InvalidPath)?;
        Ok(Original {
            method,
            uri,
            headers: headers(http)?,
        })
    }
}

/// The headers: `header_map` when Envoy sends it (`encode_raw_headers`),
/// else the `headers` map (where Envoy joins repeated headers with `,`).
fn headers(http: &HttpRequest) -> Result<HeaderMap, Rejection> {
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &[u8]| -> Result<(), Rejection> {
        if name.starts_with(':') {
            return Ok(());
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| Rejection::InvalidRequest)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Rejection::InvalidRequest)?;
        headers.append(name, value);
        Ok(())
    };
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => {
            for header in &map.headers {
                let value = if header.raw_value.is_empty() {
                    header.value.as_bytes()
                } else {
                    &header.raw_value
                };
                add(&header.key, value)?;
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes())?;
            }
        }
    }
    Ok(headers)
}

/// The client address of the original request.
///
/// The `source` of a `CheckRequest` is believed only when the caller of
/// `Check` (`caller`, the gRPC peer) is a trusted proxy; from any other
/// caller the client is unknown, and keys with IP lists are refused.
/// From a trusted caller, the source is the client unless it is itself a
/// trusted proxy, in which case `X-Forwarded-For` is walked past trusted
/// hops exactly as for forward auth.
pub(crate) fn client(
    check: &CheckRequest,
    headers: &HeaderMap,
    caller: Option<IpAddr>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let caller = caller.map(canonical_ip)?;
    if !is_trusted(caller, trusted) {
        tracing::debug!(%caller, "Check from an untrusted caller: its source address is not believed");
        return None;
    }
    let source = source(check)?;
    if !is_trusted(source, trusted) {
        return Some(source);
    }
    forwarded_client(headers, source, trusted)
}

/// `attributes.source.address` as an IP address.
fn source(check: &CheckRequest) -> Option<IpAddr> {
    let address = check
        .attributes
        .as_ref()?
        .source
        .as_ref()?
        .address
        .as_ref()?;
    match address.address.as_ref()? {
        Address::SocketAddress(socket) => socket.address.parse::<IpAddr>().ok().map(canonical_ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{
        Address as EnvoyAddress, HeaderMap as EnvoyHeaderMap, HeaderValue as EnvoyHeaderValue,
        SocketAddress,
    };
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, Request};
    use proptest::prelude::*;

    fn check(method: &str, path: &str, headers: &[(&str, &str)], source: &str) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(EnvoyAddress {
                        address: Some(Address::SocketAddress(SocketAddress {
                            address: source.to_owned(),
                            ..SocketAddress::default()
                        })),
                    }),
                    ..Peer::default()
                }),
                request: Some(Request {
                    time: None,
                    http: Some(HttpRequest {
                        method: method.to_owned(),
                        path: path.to_owned(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        ..HttpRequest::default()
                    }),
                }),
                ..AttributeContext::default()
            }),
        }
    }

    fn loopback() -> Vec<IpNet> {
        vec!["127.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn method_path_and_headers_come_from_the_http_attributes() {
        let request = check(
            "POST",
            "/pkg.Service/Method?x=1",
            &[(":authority", "h"), ("x-api-key", "k")],
            "203.0.113.7",
        );
        let original = Original::parse(&request).unwrap();
        assert_eq!(original.method, Method::POST);
        assert_eq!(original.uri.path(), "/pkg.Service/Method");
        assert_eq!(original.uri.query(), Some("x=1"));
        assert_eq!(original.headers["x-api-key"], "k");
        assert_eq!(original.headers.len(), 1, "pseudo-headers are skipped");
    }

    #[test]
    fn raw_header_maps_win_over_the_joined_map() {
        let mut request = check("GET", "/", &[("x-api-key", "joined")], "203.0.113.7");
        let http = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        http.header_map = Some(EnvoyHeaderMap {
            headers: vec![
                EnvoyHeaderValue {
                    key: "authorization".into(),
                    value: String::new(),
                    raw_value: b"Bearer a".to_vec(),
                },
                EnvoyHeaderValue {
                    key: "authorization".into(),
                    value: "Bearer b".into(),
                    raw_value: Vec::new(),
                },
            ],
        });
        let original = Original::parse(&request).unwrap();
        let values: Vec<_> = original.headers.get_all("authorization").iter().collect();
        assert_eq!(values, ["Bearer a", "Bearer b"]);
        assert!(!original.headers.contains_key("x-api-key"));
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert_eq!(
            Original::parse(&CheckRequest::default()).unwrap_err(),
            Rejection::InvalidPath
        );
        for (method, path) in [
            ("", "/"),
            ("GET", ""),
            ("GET", "relative"),
            ("GET", "http://h/x"),
            // Found by fuzz/fuzz_targets/grpc_check.rs: the fragment was
            // dropped, and `/public` judged in place of the whole target.
            ("GET", "/public#/../admin"),
            ("GET", "/a#"),
        ] {
            let error = Original::parse(&check(method, path, &[], "1.2.3.4")).unwrap_err();
            assert_eq!(error, Rejection::InvalidPath, "{method} {path}");
        }
        let bad = check("GET", "/", &[("bad name", "v")], "1.2.3.4");
        assert_eq!(
            Original::parse(&bad).unwrap_err(),
            Rejection::InvalidRequest
        );
        let bad = check("GET", "/", &[("x", "a\nb")], "1.2.3.4");
        assert_eq!(
            Original::parse(&bad).unwrap_err(),
            Rejection::InvalidRequest
        );
    }

    #[test]
    fn the_source_is_believed_only_from_a_trusted_caller() {
        let request = check("GET", "/", &[], "203.0.113.7");
        let headers = HeaderMap::new();
        let trusted_caller = Some("127.0.0.1".parse().unwrap());
        let other_caller = Some("198.51.100.1".parse().unwrap());
        assert_eq!(
            client(&request, &headers, trusted_caller, &loopback()),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(client(&request, &headers, other_caller, &loopback()), None);
        assert_eq!(client(&request, &headers, None, &loopback()), None);
    }

    #[test]
    fn a_trusted_source_passes_on_the_forwarded_client() {
        let request = check(
            "GET",
            "/",
            &[("x-forwarded-for", "203.0.113.9")],
            "127.0.0.2",
        );
        let original = Original::parse(&request).unwrap();
        let caller = Some("127.0.0.1".parse().unwrap());
        assert_eq!(
            client(&request, &original.headers, caller, &loopback()),
            Some("203.0.113.9".parse().unwrap())
        );
        let request = check("GET", "/", &[("x-forwarded-for", "not-an-ip")], "127.0.0.2");
        let original = Original::parse(&request).unwrap();
        assert_eq!(
            client(&request, &original.headers, caller, &loopback()),
            None
        );
    }

    proptest! {
        #[test]
        fn any_check_request_parses_or_is_refused_without_panicking(
            method in "\\PC{0,12}",
            path in "\\PC{0,40}",
            name in "\\PC{0,12}",
            value in "\\PC{0,24}",
            source in "\\PC{0,20}",
        ) {
            let request = check(&method, &path, &[(&name, &value)], &source);
            if let Ok(original) = Original::parse(&request) {
                prop_assert!(original.uri.path().starts_with('/'));
                let _ = client(&request, &original.headers, Some("127.0.0.1".parse().unwrap()), &loopback());
            }
        }
    }
}
