//! Shared test support: one module per concern. Each test crate uses a
//! subset, hence the `dead_code` allowance.
//!
//! - [`process`]: `keygate` processes (`Serve`, `run_keygate`), free ports,
//!   stopping children, fixtures.
//! - [`http`]: a minimal blocking HTTP/1.1 client over `std::net::TcpStream`.
//! - [`headers`]: header values out of parsed responses and requests.
//! - [`upstream`]: a recording upstream server.
//! - [`forge`]: taking tokens apart and forging bad ones.
//! - [`greeter`]: a small tonic gRPC service and its client.
//! - [`records`]: the fields of a key record.
//! - [`wire`]: parsing raw HTTP/1.1 responses byte for byte.
//! - [`server`]: an axum app served on an ephemeral loopback port.
//! - [`proxies`]: nginx/Traefik processes in front of `keygate serve`.
//! - [`faults`]: creates cut by SIGKILL, and what must survive them.
//! - [`pg_server`]: a PostgreSQL server of a test's own, to stop and start.
//! - [`browser`]: headless Chromium driven through chromedriver.
//! - [`conformance`], [`counting`], [`postgres`]: store tests.

#![allow(dead_code, unused_imports)]

#[cfg(feature = "cli")]
pub mod browser;
pub mod conformance;
pub mod counting;
pub mod faults;
pub mod forge;
#[cfg(feature = "grpc")]
pub mod greeter;
pub mod headers;
pub mod http;
#[cfg(feature = "postgres")]
pub mod pg_server;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod process;
pub mod proxies;
pub mod records;
pub mod redis;
pub mod server;
pub mod upstream;
pub mod wire;

pub use forge::{token_id, token_secret};
pub use headers::{first_header, header_values};
pub use process::{
    IO_TIMEOUT, KEYGATE, START_TIMEOUT, STOP_TIMEOUT, Serve, ServeOptions, fixture, free_port,
    keygate_command, run_keygate, run_keygate_env, send_signal, stop_child, wait_timeout,
};
pub use upstream::{Received, Upstream};
