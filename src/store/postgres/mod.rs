//! [`PostgresStore`]: the backend shared by many instances, with push
//! invalidation over `LISTEN`/`NOTIFY` — the store (`store.rs`) and its
//! [`ChangeFeed`](crate::store::ChangeFeed), the listener (`listener.rs`).

mod listener;
mod store;

pub use store::PostgresStore;
