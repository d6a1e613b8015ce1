//! [`SqliteStore`]: the embedded default backend — the store (`store.rs`)
//! and its [`ChangeFeed`](crate::store::ChangeFeed), a poller of the
//! `keygate_changes` table (`poller.rs`).

mod poller;
mod store;

pub use store::SqliteStore;
