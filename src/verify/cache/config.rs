//! The cache's sizes and lifetimes.

use std::time::Duration;

/// Cache sizes and lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheConfig {
    pub capacity: u64,
    pub negative_capacity: u64,
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 100_000,
            negative_capacity: 10_000,
            positive_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
        }
    }
}
