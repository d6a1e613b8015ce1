//! An axum service protected by keygate: a key store, a key, a route that
//! needs a scope, the management API nested under `/keygate`, and a route
//! where the key is optional.
//!
//! Run it with `cargo run --example axum`. It prints the token of a key it
//! created, then the commands to try, with that token and its address
//! filled in, each with the status it answers:
//!
//! ```text
//! token (shown once): kg_live_…
//! listening on http://127.0.0.1:3000
//! try:
//!   curl -i -H "Authorization: Bearer kg_live_…" http://127.0.0.1:3000/workspaces   # 200
//!   curl -i http://127.0.0.1:3000/workspaces   # 401
//!   curl -i -H "Authorization: Bearer kg_live_…" http://127.0.0.1:3000/workspaces/new   # 403
//!   curl -i -H "Authorization: Bearer kg_live_…" http://127.0.0.1:3000/keygate/v1/keys   # 403
//!   curl -i http://127.0.0.1:3000/whoami   # 200
//! ```
//!
//! (`/workspaces/new` needs `workspaces:create` and the management API
//! `keys:read`, which alice's key does not hold; `/whoami` answers
//! "anonymous" without a key.) `.ci/examples` runs every printed `curl`
//! line and checks its status.
//!
//! Keys live in an in-memory SQLite database and a random pepper, so they
//! vanish when the example stops. `KEYGATE_EXAMPLE_ADDR` changes the address.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use keygate::{AuthenticatedKey, Keygate, NewKey, Pepper, SqliteStore};

async fn list(key: AuthenticatedKey) -> String {
    format!("workspaces of {}\n", key.owner())
}

async fn whoami(key: Option<AuthenticatedKey>) -> String {
    match key {
        Some(key) => format!("{} ({})\n", key.owner(), key.display_prefix()),
        None => "anonymous\n".to_string(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,keygate=debug".into()),
        )
        .init();

    let store = SqliteStore::open("sqlite::memory:").await?;
    let keygate = Keygate::builder(store).pepper(Pepper::random()?).build()?;

    let created = keygate
        .keys()
        .create(NewKey::new("alice", "ci").scopes(["workspaces:read"]))
        .await?;
    println!("token (shown once): {}", created.token.expose());

    let app = Router::new()
        .route(
            "/workspaces",
            get(list).route_layer(keygate.require("workspaces:read")?),
        )
        .route(
            "/workspaces/new",
            get(list).route_layer(keygate.require("workspaces:create")?),
        )
        .layer(keygate.layer())
        // After `.layer`: the management API authenticates on its own and
        // leaves /keygate/healthz, /readyz and /v1/openapi.json open.
        .nest("/keygate", keygate::admin::router(keygate.clone()))
        .merge(
            Router::new()
                .route("/whoami", get(whoami))
                .layer(keygate.layer().optional()),
        );

    let addr = std::env::var("KEYGATE_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let token = created.token.expose();
    println!("listening on http://{local}");
    println!("try:");
    println!("  curl -i -H \"Authorization: Bearer {token}\" http://{local}/workspaces   # 200");
    println!("  curl -i http://{local}/workspaces   # 401");
    println!(
        "  curl -i -H \"Authorization: Bearer {token}\" http://{local}/workspaces/new   # 403"
    );
    println!(
        "  curl -i -H \"Authorization: Bearer {token}\" http://{local}/keygate/v1/keys   # 403"
    );
    println!("  curl -i http://{local}/whoami   # 200");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    keygate.flush_usage().await;
    Ok(())
}
