//! A custom validator: keygate's middleware and cache in front of keys that
//! live somewhere else (here, a fixed table standing in for a legacy system).
//!
//! Run it with `cargo run --example custom_validator`. It prints the
//! commands to try:
//!
//! ```text
//! listening on http://127.0.0.1:3002
//! try:
//!   curl -i -H "X-API-Key: legacy-secret-alice" http://127.0.0.1:3002/   # 200
//!   curl -i -H "X-API-Key: wrong" http://127.0.0.1:3002/   # 401
//!   curl -i http://127.0.0.1:3002/   # 401
//! ```
//!
//! (The first answers "hello, alice"; the second is `invalid_token`, the
//! third `missing_token`.) `.ci/examples` runs every printed `curl` line
//! and checks its status.
//!
//! The closure runs only on cache misses; its answers are cached by the
//! token's MAC. `KEYGATE_EXAMPLE_ADDR` changes the address.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use keygate::{ApiKey, AuthenticatedKey, KeyId, Keygate, MemoryStore, Pepper, ScopeSet};

/// Looks a token up in the "legacy system".
async fn legacy_lookup(token: String) -> Result<Option<ApiKey>, Infallible> {
    let (id, owner) = match token.as_str() {
        "legacy-secret-alice" => ("legacyalice0001", "alice"),
        "legacy-secret-bob" => ("legacybob000001", "bob"),
        _ => return Ok(None),
    };
    // Key ids are 16 base62 characters; pad the legacy ids.
    let id = KeyId::parse(&format!("{id:0<16}")).expect("a valid id");
    let mut key = ApiKey::new(id, owner);
    key.scopes = ScopeSet::parse(["reports:read"]).expect("valid scopes");
    Ok(Some(key))
}

async fn hello(key: AuthenticatedKey) -> String {
    format!("hello, {}\n", key.owner())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keygate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::random()?)
        .validator(legacy_lookup)
        .build()?;

    let app = Router::new()
        .route(
            "/",
            get(hello).route_layer(keygate.require("reports:read")?),
        )
        .layer(keygate.layer());

    let addr = std::env::var("KEYGATE_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    println!("try:");
    println!("  curl -i -H \"X-API-Key: legacy-secret-alice\" http://{local}/   # 200");
    println!("  curl -i -H \"X-API-Key: wrong\" http://{local}/   # 401");
    println!("  curl -i http://{local}/   # 401");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
