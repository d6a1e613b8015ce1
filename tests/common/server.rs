//! In-process servers on a listener: an axum app on an ephemeral loopback
//! port, with `ConnectInfo<SocketAddr>` in the request extensions.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Serves `app` on 127.0.0.1:0 in a spawned task; returns the address.
pub async fn serve_app(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    addr
}

/// Serves `app` like [`serve_app`] but **without** `ConnectInfo`: the
/// mistake of a server set up with `into_make_service()`.
pub async fn serve_app_without_peer(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .await
            .expect("serve");
    });
    addr
}
