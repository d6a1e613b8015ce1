//! [`serve_check`]: the gRPC listener of `keygate serve --grpc-listen`.

use std::future::Future;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use tokio::net::TcpListener;

use super::check::CheckService;
use crate::gateway::Gateway;
use crate::listener::{ListenerLimits, serve_router};

/// Serves `envoy.service.auth.v3.Authorization/Check` (a [`CheckService`]
/// deciding with `gateway`) and `grpc.health.v1.Health` (`SERVING` for
/// the server, `""`, and for `envoy.service.auth.v3.Authorization`) on
/// `listener`, over HTTP/2 without TLS, until `shutdown` resolves; then
/// in-flight RPCs finish before it returns.
///
/// The connections are held to `limits` exactly as the HTTP listeners of
/// `keygate serve` are (see [`ListenerLimits`]): a header timeout, an idle
/// timeout (HTTP/2 `GOAWAY` after pings go unanswered), and a bound on
/// open connections.
///
/// # Errors
///
/// An I/O error when the listener's address cannot be read.
///
/// # Example
///
/// ```no_run
/// use keygate::gateway::{Gateway, Rules};
/// use keygate::{Keygate, ListenerLimits, MemoryStore, Pepper, serve_check};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let gateway = Gateway::new(keygate, Rules::default());
/// serve_check(listener, gateway, ListenerLimits::default(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_check(
    listener: TcpListener,
    gateway: Gateway,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;
    let routes = tonic::service::Routes::new(health_service)
        .add_service(CheckService::new(gateway).into_server())
        .prepare()
        .into_axum_router();
    serve_router(listener, limits, routes, shutdown).await
}
