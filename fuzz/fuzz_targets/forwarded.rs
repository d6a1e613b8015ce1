//! Forwarded headers (SPEC §10, §10a): `X-Forwarded-For` and the original
//! method and URI of forward auth.
//!
//! Checked, for any headers:
//! - the client address behind a trusted peer is exactly a reference's:
//!   walk every `X-Forwarded-For` value from the last, each from its last
//!   hop; skip empty hops; a value that is not visible text or a hop that
//!   is not a bare IP address makes the client unknown; the first hop
//!   outside the trusted ranges is the client (IPv4-mapped IPv6 read as
//!   IPv4); if every hop is trusted, the leftmost one;
//! - forward auth from an untrusted peer ignores the nginx and Traefik
//!   headers: `nginx`/`traefik` modes refuse, `auto` is the Envoy reading,
//!   and the Envoy reading never depends on the headers;
//! - from a trusted peer, what `auto` accepts agrees with every convention
//!   whose headers are present (so a client-sent header the proxy did not
//!   overwrite cannot choose the path), and each single-convention answer
//!   is what its two headers say (a URI holding `#` refused: `Uri` would
//!   drop the fragment and judge a shorter path).

#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use ipnet::IpNet;
use keygate::fuzz::{forward_auth_original, forwarded_client};
use keygate::gateway::ForwardAuthMode;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    xff: Vec<Vec<u8>>,
    hops: Vec<(u8, u8)>,
    peer: u8,
    original: Vec<(u8, Vec<u8>)>,
    method: u8,
    path: String,
}

const ADDRS: [&str; 10] = [
    "127.0.0.1",
    "10.0.0.7",
    "203.0.113.9",
    "::1",
    "2001:db8::5",
    "::ffff:10.0.0.7",
    "::ffff:203.0.113.9",
    "198.51.100.1",
    "fe80::1",
    "10.255.255.255",
];
const JUNK: [&str; 8] = [
    "",
    " ",
    "unknown",
    "1.2.3.4:80",
    "[::1]",
    "300.1.1.1",
    "a,b",
    "\t10.0.0.1",
];
const ORIGINAL: [&str; 4] = [
    "x-original-method",
    "x-original-uri",
    "x-forwarded-method",
    "x-forwarded-uri",
];
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::OPTIONS];

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted_nets() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn reference(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> Option<IpAddr> {
    let values: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    let mut client = peer;
    for value in values.iter().rev() {
        let bytes = value.as_bytes();
        if !bytes
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let hops: Vec<&str> = text.split(',').collect();
        for hop in hops.iter().rev() {
            let hop = hop.trim_matches(|c: char| c.is_whitespace());
            if hop.is_empty() {
                continue;
            }
            client = canonical(hop.parse().ok()?);
            if !trusted.iter().any(|n| n.contains(&client)) {
                return Some(client);
            }
        }
    }
    Some(client)
}

fn convention(
    headers: &HeaderMap,
    own: &Method,
    names: (&str, &str),
) -> Option<Option<(Method, Uri)>> {
    let (m, u) = names;
    if !headers.contains_key(m) && !headers.contains_key(u) {
        return None;
    }
    let one = |name: &str| {
        let all: Vec<_> = headers.get_all(name).iter().collect();
        match all.as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(*v)),
            _ => Err(()),
        }
    };
    Some((|| {
        let text = one(u).ok()??.to_str().ok()?;
        if text.contains('#') {
            return None;
        }
        let uri: Uri = text.parse().ok()?;
        if uri.scheme().is_some() || !uri.path().starts_with('/') {
            return None;
        }
        let method = match one(m).ok()? {
            Some(v) => Method::from_bytes(v.as_bytes()).ok()?,
            None => own.clone(),
        };
        Some((method, uri))
    })())
}

fuzz_target!(|input: Input| {
    let trusted = trusted_nets();
    let mut headers = HeaderMap::new();
    for value in input.xff.iter().take(4) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append("x-forwarded-for", value);
        }
    }
    // And values built from addresses and junk, so that hops parse often.
    if !input.hops.is_empty() {
        let text: Vec<&str> = input
            .hops
            .iter()
            .take(6)
            .map(|&(kind, i)| {
                if kind % 4 == 0 {
                    JUNK[usize::from(i) % JUNK.len()]
                } else {
                    ADDRS[usize::from(i) % ADDRS.len()]
                }
            })
            .collect();
        if let Ok(value) = HeaderValue::from_str(&text.join(", ")) {
            headers.append("x-forwarded-for", value);
        }
    }
    let peer: IpAddr = ADDRS[usize::from(input.peer) % ADDRS.len()]
        .parse()
        .unwrap();
    let peer = canonical(peer);
    if trusted.iter().any(|n| n.contains(&peer)) {
        let got = forwarded_client(&headers, peer, &trusted);
        assert_eq!(
            got,
            reference(&headers, peer, &trusted),
            "{headers:?} from {peer}"
        );
        if let Some(ip) = got {
            assert_eq!(ip, canonical(ip), "the client is canonical");
        }
    }

    // Forward auth's original request.
    for (name, value) in input.original.iter().take(6) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(
                HeaderName::from_static(ORIGINAL[usize::from(*name) % 4]),
                value,
            );
        }
    }
    let own = METHODS[usize::from(input.method) % METHODS.len()].clone();
    let Ok(uri) = format!("/v1/forward-auth{}", input.path).parse::<Uri>() else {
        return;
    };
    let ask = |mode, trusted, headers: &HeaderMap| {
        forward_auth_original(own.clone(), uri.clone(), headers.clone(), mode, trusted)
    };
    let envoy = ask(ForwardAuthMode::Envoy, true, &headers);
    assert_eq!(envoy, ask(ForwardAuthMode::Envoy, false, &HeaderMap::new()));
    assert_eq!(ask(ForwardAuthMode::Nginx, false, &headers), None);
    assert_eq!(ask(ForwardAuthMode::Traefik, false, &headers), None);
    assert_eq!(ask(ForwardAuthMode::Auto, false, &headers), envoy);
    if let Some((method, _)) = &envoy {
        assert_eq!(*method, own);
    }

    let nginx = convention(&headers, &own, ("x-original-method", "x-original-uri"));
    let traefik = convention(&headers, &own, ("x-forwarded-method", "x-forwarded-uri"));
    assert_eq!(
        ask(ForwardAuthMode::Nginx, true, &headers),
        nginx.clone().flatten()
    );
    assert_eq!(
        ask(ForwardAuthMode::Traefik, true, &headers),
        traefik.clone().flatten()
    );
    if let Some(auto) = ask(ForwardAuthMode::Auto, true, &headers) {
        for found in [nginx, traefik].into_iter().flatten() {
            assert_eq!(
                found.as_ref(),
                Some(&auto),
                "auto agrees with every convention present"
            );
        }
    }
});
