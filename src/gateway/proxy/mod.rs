//! The authenticating reverse proxy of `keygate serve --upstream`: every request is decided by a [`Gateway`](super::Gateway); a denied one is
//! answered exactly as the middleware answers, without reading its body (a path servers
//! read differently: 400 `invalid_request`; `CONNECT` and `TRACE`: 405
//! `method_not_allowed`; with a rules file, no rule allowing it: 403
//! `forbidden`), an allowed one is forwarded
//! to one plain-HTTP upstream with the credential removed and the
//! `X-Keygate-*` identity headers set. Bodies are streamed both ways, never
//! collected.
//!
//! # Example
//!
//! ```no_run
//! use keygate::gateway::proxy::{Proxy, ProxyError};
//! use keygate::gateway::{Gateway, Rules};
//! use keygate::{Keygate, MemoryStore, Pepper};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::from_env()?)
//!     .build()?;
//! let rules = Rules::parse_toml(r#"
//!     [[rule]]
//!     path = "/public/**"
//!     public = true
//! "#)?;
//! let gateway = Gateway::new(keygate, rules);
//!
//! // Only plain-HTTP upstreams.
//! assert!(matches!(
//!     Proxy::new(gateway.clone(), "https://api.internal"),
//!     Err(ProxyError::Https)
//! ));
//!
//! let proxy = Proxy::new(gateway, "http://127.0.0.1:3000")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! proxy
//!     .serve(listener, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What the upstream receives
//!
//! - The same method; the URI is the upstream's scheme and authority, its
//!   base path (if any) joined with **the normalized path that was judged**
//!   (dot and empty segments resolved, escapes re-made canonically, case
//!   kept; see [`Rules`](super::Rules)), never the raw one, and the
//!   original query. The asterisk form (`OPTIONS *`) is refused.
//! - **No keygate credential**, from every configured source, whether the
//!   route is public or not (the upstream must never see a keygate token):
//!   `Authorization` values whose scheme is `Bearer` (case-insensitive; other
//!   schemes such as `Basic` are kept), the API-key header(s), the cookie
//!   (other cookies kept) and the query parameter (other parameters kept).
//! - No client-sent `X-Keygate-*` header; the four identity headers of
//!   [`Decision::identity`](super::Decision::identity) instead (empty on a public rule).
//! - No hop-by-hop header: `Connection` and every header it lists,
//!   `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`
//!   (the same list is removed from the upstream's response). Protocol
//!   upgrades (WebSocket) are therefore not proxied. A body that arrived
//!   chunked leaves chunked, without a stale `Content-Length`.
//! - `X-Forwarded-For`: the TCP peer appended to the client's chain when the
//!   peer is a trusted proxy (`Keygate` builder `trusted_proxies`), else the
//!   peer alone. `X-Forwarded-Proto: http` and `X-Forwarded-Host` (the
//!   original `Host`) are set, unless a trusted peer already sent them.
//!   `Forwarded` and `X-Real-IP` from an untrusted peer are removed.
//! - `Host`: the upstream's authority. Several `Cookie` headers (HTTP/2
//!   clients) are joined into one, as HTTP/1.1 requires.
//!
//! The upstream is spoken to in HTTP/1.1 over pooled connections, whatever
//! the client spoke (HTTP/1 or HTTP/2). When it cannot be reached, the client
//! gets `502 {"error":"bad_gateway",...}`.

mod headers;
mod service;
mod strip;
#[cfg(feature = "grpc")]
pub(crate) use strip::Strip;
mod upstream;

pub use service::Proxy;
pub use upstream::ProxyError;
