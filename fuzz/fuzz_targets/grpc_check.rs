//! The gRPC `Check` request (SPEC §12): a protobuf `CheckRequest` decoded
//! and read into the original method, path, headers and client address.
//!
//! Two modes, by the first input byte: the rest decoded as protobuf wire
//! bytes, or a `CheckRequest` built from the input (so that method, path,
//! headers and addresses are reached often). Checked, for a request that
//! is read:
//! - the method is the `method` field and the URI exactly the `path`
//!   field (nothing dropped, e.g. no `#fragment`), which starts with `/`
//!   and has no scheme;
//! - the headers are exactly the non-pseudo entries of the map read
//!   (`header_map` when it has entries, else `headers`), in order, with
//!   `raw_value` preferred to `value`;
//! - the client is unknown when the caller of `Check` is not trusted; from
//!   a trusted caller it is the source address when that is not trusted.
//!
//! A request refused (no HTTP attributes, a bad method, path or header)
//! must have such a defect.

#![no_main]

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use ipnet::IpNet;
use keygate::fuzz::{CheckRequest, check_request};
use libfuzzer_sys::fuzz_target;
use prost::Message;

use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::config::core::v3::{
    Address as EnvoyAddress, HeaderMap as EnvoyHeaderMap, HeaderValue as EnvoyHeaderValue,
    SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};

const ADDRS: [&str; 6] = [
    "127.0.0.1",
    "10.1.2.3",
    "203.0.113.9",
    "::1",
    "::ffff:127.0.0.1",
    "not-an-ip",
];
const NAMES: [&str; 6] = [
    ":path",
    "authorization",
    "x-api-key",
    "x-forwarded-for",
    "Bad Name",
    "x-b",
];
const METHODS: [&str; 5] = ["GET", "POST", "", "G ET", "PURGE"];
const PATHS: [&str; 6] = ["/a/b", "/v1/x?y=1", "", "http://h/x", "*", "/%2e%2e/admin"];

fn trusted_nets() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn built(u: &mut Unstructured<'_>) -> arbitrary::Result<CheckRequest> {
    let pick = |u: &mut Unstructured<'_>, list: &[&str]| -> arbitrary::Result<String> {
        Ok(if u.ratio(1, 4)? {
            String::arbitrary(u)?
        } else {
            (*u.choose(list)?).to_owned()
        })
    };
    let mut pairs = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        pairs.push((pick(u, &NAMES)?, pick(u, &ADDRS)?, Vec::<u8>::arbitrary(u)?));
    }
    let raw_map = bool::arbitrary(u)?;
    let http = HttpRequest {
        method: pick(u, &METHODS)?,
        path: pick(u, &PATHS)?,
        headers: pairs
            .iter()
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect(),
        header_map: raw_map.then(|| EnvoyHeaderMap {
            headers: pairs
                .iter()
                .map(|(n, v, raw)| EnvoyHeaderValue {
                    key: n.clone(),
                    value: v.clone(),
                    raw_value: raw.clone(),
                })
                .collect(),
        }),
        ..Default::default()
    };
    let source = pick(u, &ADDRS)?;
    Ok(CheckRequest {
        attributes: Some(AttributeContext {
            source: bool::arbitrary(u)?.then(|| Peer {
                address: Some(EnvoyAddress {
                    address: Some(Address::SocketAddress(SocketAddress {
                        address: source,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: bool::arbitrary(u)?
                .then_some(Request {
                    http: Some(http),
                    ..Default::default()
                })
                .or(Some(Request::default())),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let check = if control % 2 == 0 {
        match CheckRequest::decode(rest) {
            Ok(check) => check,
            Err(_) => return,
        }
    } else {
        match built(&mut Unstructured::new(rest)) {
            Ok(check) => check,
            Err(_) => return,
        }
    };
    let trusted = trusted_nets();
    let caller: Option<IpAddr> = ADDRS[usize::from(control / 2) % 3].parse().ok();
    let http = check
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let Some(original) = check_request(&check, caller, &trusted) else {
        return;
    };
    let http = http.expect("a request without HTTP attributes is refused");
    assert_eq!(original.method.as_str(), http.method);
    assert_eq!(original.uri.to_string(), http.path);
    assert!(original.uri.scheme().is_none() && original.uri.path().starts_with('/'));
    let entries: Vec<(String, Vec<u8>)> = match &http.header_map {
        Some(map) if !map.headers.is_empty() => map
            .headers
            .iter()
            .map(|h| {
                (
                    h.key.clone(),
                    if h.raw_value.is_empty() {
                        h.value.clone().into_bytes()
                    } else {
                        h.raw_value.clone()
                    },
                )
            })
            .collect(),
        _ => http
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect(),
    };
    let expected: Vec<(String, Vec<u8>)> = entries
        .into_iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let got: Vec<(String, Vec<u8>)> = original
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    // HeaderMap groups values by name: compare as multisets per name.
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    let mut sorted_got = got.clone();
    sorted_got.sort();
    assert_eq!(sorted_got, sorted_expected);

    let caller_trusted = caller.is_some_and(|c| trusted.iter().any(|n| n.contains(&canonical(c))));
    if !caller_trusted {
        assert_eq!(
            original.client, None,
            "an untrusted caller's source is not believed"
        );
    } else {
        let source = check
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .and_then(|s| s.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                Address::SocketAddress(s) => s.address.parse::<IpAddr>().ok().map(canonical),
                _ => None,
            });
        match source {
            None => assert_eq!(original.client, None),
            Some(ip) if !trusted.iter().any(|n| n.contains(&ip)) => {
                assert_eq!(original.client, Some(ip))
            }
            Some(_) => {}
        }
    }
});
