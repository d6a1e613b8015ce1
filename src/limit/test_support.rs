//! What the limiters' tests share.

use super::period::Period;
use super::policy::{RateLimit, RateLimits};
use crate::token::KeyId;

/// The `n`th test key id.
pub(super) fn key(n: u32) -> KeyId {
    KeyId::parse(&format!("key{n:013}")).unwrap()
}

/// Limits from `(name, limit, period, shared)`.
pub(super) fn limits(list: &[(&str, u64, &str, bool)]) -> RateLimits {
    RateLimits::new(
        list.iter()
            .map(|&(name, n, period, shared)| {
                RateLimit::new(name.parse().unwrap(), n, Period::parse(period).unwrap())
                    .unwrap()
                    .shared(shared)
            })
            .collect(),
    )
    .unwrap()
}
