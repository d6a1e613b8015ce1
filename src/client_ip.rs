//! The client address of a request: the peer, or — only when the peer is a
//! trusted proxy — the nearest untrusted hop of `X-Forwarded-For`.
//!
//! The peer comes from the request extensions: axum's
//! `ConnectInfo<SocketAddr>` (with `into_make_service_with_connect_info`),
//! or [`PeerAddr`], which a bare hyper server inserts itself.

use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap};
use ipnet::IpNet;

use crate::key::canonical_ip;

/// The TCP peer of a request, for bare hyper services: insert it into each
/// request's extensions (`req.extensions_mut().insert(PeerAddr(addr))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The peer address recorded in the extensions, if any.
pub(crate) fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(canonical_ip(addr.ip()));
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(canonical_ip(addr.ip()));
    }
    None
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address: the peer, unless the peer is trusted, in which case
/// `X-Forwarded-For` is walked from the right past trusted hops. A hop that
/// does not parse ends the walk at the last trusted address.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    extensions: &Extensions,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer_ip(extensions)?;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    forwarded_client(headers, peer, trusted)
}

/// Walks `X-Forwarded-For` (all headers, in order) from the right.
pub(crate) fn forwarded_client(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical_ip(ip);
        if !is_trusted(client, trusted) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(addr: &str) -> Extensions {
        let mut e = Extensions::new();
        e.insert(PeerAddr(addr.parse().unwrap()));
        e
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn loopback() -> Vec<IpNet> {
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let ip = client_ip(&xff(&["1.2.3.4"]), &ext("203.0.113.5:999"), &loopback());
        assert_eq!(ip, Some("203.0.113.5".parse().unwrap()));
    }

    #[test]
    fn trusted_peer_passes_on_the_nearest_untrusted_hop() {
        let trusted = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let headers = xff(&["198.51.100.1, 203.0.113.9", "10.0.0.2"]);
        let ip = client_ip(&headers, &ext("127.0.0.1:1"), &trusted);
        assert_eq!(ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn trusted_peer_without_forwarding_is_the_client() {
        assert_eq!(
            client_ip(&HeaderMap::new(), &ext("127.0.0.1:1"), &loopback()),
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let ip = client_ip(
            &xff(&["1.1.1.1, garbage, 127.0.0.5"]),
            &ext("127.0.0.1:1"),
            &loopback(),
        );
        assert_eq!(ip, Some("127.0.0.5".parse().unwrap()));
    }

    #[test]
    fn no_peer_means_no_client_address() {
        assert_eq!(
            client_ip(&xff(&["1.1.1.1"]), &Extensions::new(), &loopback()),
            None
        );
    }

    #[test]
    fn mapped_ipv6_peer_is_seen_as_ipv4() {
        assert_eq!(
            client_ip(&HeaderMap::new(), &ext("[::ffff:192.0.2.1]:80"), &[]),
            Some("192.0.2.1".parse().unwrap())
        );
    }
}
