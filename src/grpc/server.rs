//! [`serve_check`]: the gRPC listener of `keygate serve --grpc-listen`.

use std::future::Future;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use super::check::CheckService;
use crate::gateway::Gateway;

/// Serves `envoy.service.auth.v3.Authorization/Check` (a [`CheckService`]
/// deciding with `gateway`) and `grpc.health.v1.Health` (`SERVING` for
/// the server, `""`, and for `envoy.service.auth.v3.Authorization`) on
/// `listener`, over HTTP/2 without TLS, until `shutdown` resolves; then
/// in-flight RPCs finish before it returns.
///
/// # Errors
///
/// The transport error that stopped the server.
///
/// # Example
///
/// ```no_run
/// use keygate::gateway::{Gateway, Rules};
/// use keygate::{Keygate, MemoryStore, Pepper, serve_check};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// serve_check(listener, Gateway::new(keygate, Rules::default()), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_check(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(CheckService::new(gateway).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
