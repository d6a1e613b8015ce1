//! Helpers shared by the cache's tests.

use std::sync::Arc;

use crate::key::ApiKey;
use crate::token::KeyId;

use super::{CacheConfig, KeyCache, Record};

/// A custom-validator record of a new key with id `id`.
pub(super) fn record(id: &str) -> Arc<Record> {
    Arc::new(Record::new(
        ApiKey::new(KeyId::parse(id).unwrap(), "owner"),
        None,
    ))
}

/// A store that cannot answer.
#[derive(Debug, thiserror::Error)]
#[error("store down")]
pub(super) struct Down;

/// A cache with the default configuration.
pub(super) fn cache() -> Arc<KeyCache> {
    Arc::new(KeyCache::new(CacheConfig::default()))
}

/// Returns once `cache` has a load in flight; panics if none starts.
pub(super) async fn until_a_load_is_in_flight(cache: &KeyCache) {
    for _ in 0..1000 {
        if !cache.flights().is_empty() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("no load in flight");
}
