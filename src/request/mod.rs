//! The request side: the one credential a request carries
//! (`credentials`: bearer, header, cookie or query, exactly one), where it
//! comes from (`client_ip`: the TCP peer, or past trusted proxies), and the
//! settings that say where to look (`reader`).

mod client_ip;
mod credentials;
mod reader;

pub use client_ip::PeerAddr;
#[cfg(any(feature = "grpc", feature = "__fuzz"))]
pub(crate) use client_ip::forwarded_client;
#[cfg(feature = "grpc")]
pub(crate) use client_ip::is_trusted;
#[cfg(feature = "gateway")]
pub(crate) use client_ip::{client_ip, peer_ip};
pub use credentials::CredentialSource;
pub(crate) use credentials::{Credential, CredentialError};
pub(crate) use reader::Reader;
