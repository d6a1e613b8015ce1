//! A bare hyper 1 service protected by keygate, without axum.
//!
//! Run it with `cargo run --example hyper`. It prints the token of a key
//! it created and the commands to try, with the token filled in:
//!
//! ```text
//! token (shown once): kg_live_…
//! listening on http://127.0.0.1:3001
//! try:
//!   curl -i -H "Authorization: Bearer kg_live_…" http://127.0.0.1:3001/   # 200
//!   curl -i http://127.0.0.1:3001/   # 401
//! ```
//!
//! `.ci/examples` runs every printed `curl` line and checks its status.
//!
//! Each connection's peer address goes into the request extensions as
//! `keygate::PeerAddr`, so keys with IP lists work. `KEYGATE_EXAMPLE_ADDR`
//! changes the address.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use keygate::{AuthenticatedKey, Keygate, MemoryStore, NewKey, PeerAddr, Pepper};
use tower::ServiceBuilder;

async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The layer put the authenticated key here.
    let owner = request
        .extensions()
        .get::<AuthenticatedKey>()
        .map(|key| key.owner().to_owned())
        .unwrap_or_default();
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello, {owner}\n"
    )))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keygate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::random()?)
        .build()?;
    let created = keygate.keys().create(NewKey::new("alice", "hyper")).await?;
    println!("token (shown once): {}", created.token.expose());

    let addr = std::env::var("KEYGATE_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let token = created.token.expose();
    println!("listening on http://{local}");
    println!("try:");
    println!("  curl -i -H \"Authorization: Bearer {token}\" http://{local}/   # 200");
    println!("  curl -i http://{local}/   # 401");
    loop {
        let (stream, peer) = listener.accept().await?;
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
            .layer(keygate.layer())
            .service_fn(hello);
        tokio::spawn(async move {
            let service = TowerToHyperService::new(service);
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}
