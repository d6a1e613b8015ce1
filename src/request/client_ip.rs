//! The client address of a request: the peer, or — only when the peer is a
//! trusted proxy — the nearest untrusted hop of `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap};
use ipnet::IpNet;

use crate::key::canonical_ip;

/// The TCP peer of a request, for bare hyper services: insert it into each
/// request's extensions (`req.extensions_mut().insert(PeerAddr(addr))`).
///
/// When the hop that decides the client cannot be parsed (not an IP
/// address, a header value that is not visible ASCII), the client is
/// **unknown** (`None`), never the proxy's own address: keys with IP lists
/// are then refused (`ip_not_allowed`). Hops are bare addresses (`192.0.2.1`,
/// `2001:db8::1`); a port or brackets make a hop unparseable.
///
/// The peer comes from the request extensions: axum's
/// `ConnectInfo<SocketAddr>` (with `into_make_service_with_connect_info`),
/// tonic's `TcpConnectInfo` (with the `grpc` feature), or [`PeerAddr`],
/// which a bare hyper server inserts itself.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use keygate::{Keygate, MemoryStore, NewKey, PeerAddr, Pepper};
/// use tower::{ServiceBuilder, ServiceExt as _};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let token = keygate.keys().create(NewKey::new("alice", "lan").ip_allow(["10.0.0.0/8"])).await?.token;
/// let service = ServiceBuilder::new()
///     .layer(keygate.layer())
///     .service_fn(|_: Request<Full<Bytes>>| async { Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default())) });
/// let mut request = Request::get("/").header("x-api-key", token.expose()).body(Full::default())?;
/// request.extensions_mut().insert(PeerAddr("10.1.2.3:40000".parse()?)); // from accept()
/// assert_eq!(service.oneshot(request).await?.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
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
    #[cfg(feature = "grpc")]
    if let Some(addr) = extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
    {
        return Some(canonical_ip(addr.ip()));
    }
    None
}

/// Whether `ip` is in one of the `trusted` ranges.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address: the peer, unless the peer is trusted, in which case
/// `X-Forwarded-For` is walked from the right past trusted hops. A hop that
/// does not parse makes the client unknown (`None`).
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

/// Walks `X-Forwarded-For` (all headers, in order) from the right, from a
/// trusted `peer`. `None` when the deciding hop cannot be parsed.
pub(crate) fn forwarded_client(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let mut client = peer;
    let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    for value in values.into_iter().rev() {
        // A value that is not text cannot be walked past: unknown.
        let value = value.to_str().ok()?;
        for hop in value.rsplit(',') {
            let hop = hop.trim();
            if hop.is_empty() {
                // `a, , b` or a trailing comma: no hop there.
                continue;
            }
            client = canonical_ip(hop.parse::<IpAddr>().ok()?);
            if !is_trusted(client, trusted) {
                return Some(client);
            }
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

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
    fn an_unparseable_deciding_hop_makes_the_client_unknown() {
        // Not the last trusted hop (127.0.0.5), not the peer: unknown.
        for chain in [
            "1.1.1.1, garbage, 127.0.0.5",
            "garbage",
            "1.1.1.1, 203.0.113.7:443",
            "[2001:db8::1]",
            "unknown",
        ] {
            let ip = client_ip(&xff(&[chain]), &ext("127.0.0.1:1"), &loopback());
            assert_eq!(ip, None, "{chain}");
        }
        let mut headers = xff(&["1.1.1.1"]);
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            client_ip(&headers, &ext("127.0.0.1:1"), &loopback()),
            None,
            "a value that is not text"
        );
    }

    #[test]
    fn garbage_beyond_the_deciding_hop_is_never_read() {
        let ip = client_ip(
            &xff(&["garbage, 203.0.113.9, 127.0.0.5"]),
            &ext("127.0.0.1:1"),
            &loopback(),
        );
        assert_eq!(ip, Some("203.0.113.9".parse().unwrap()));
        let ip = client_ip(
            &xff(&["198.51.100.1, , 203.0.113.9,"]),
            &ext("127.0.0.1:1"),
            &loopback(),
        );
        assert_eq!(
            ip,
            Some("203.0.113.9".parse().unwrap()),
            "empty hops skipped"
        );
    }

    #[test]
    fn an_untrusted_peer_ignores_garbage_forwarding() {
        let ip = client_ip(&xff(&["garbage"]), &ext("203.0.113.5:9"), &loopback());
        assert_eq!(ip, Some("203.0.113.5".parse().unwrap()));
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

    proptest! {
        #[test]
        fn the_client_is_unknown_the_peer_or_a_hop_sent(
            hops in prop::collection::vec(
                prop_oneof![
                    Just("127.0.0.9".to_owned()),
                    Just("10.0.0.1".to_owned()),
                    Just("203.0.113.1".to_owned()),
                    Just("::1".to_owned()),
                    Just("".to_owned()),
                    "[ -~]{0,12}",
                ],
                0..6,
            ),
        ) {
            let chain = hops.join(",");
            let Ok(value) = HeaderValue::from_str(&chain) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value);
            match client_ip(&headers, &ext("127.0.0.1:1"), &loopback()) {
                None => prop_assert!(
                    hops.iter().any(|h| !h.trim().is_empty() && h.trim().parse::<IpAddr>().is_err()),
                    "unknown without a bad hop: {:?}", chain
                ),
                Some(ip) => prop_assert!(
                    ip == "127.0.0.1".parse::<IpAddr>().unwrap()
                        || hops.iter().any(|h| h.trim().parse::<IpAddr>().ok().map(canonical_ip) == Some(ip)),
                    "{} from {:?}", ip, chain
                ),
            }
        }
    }
}
