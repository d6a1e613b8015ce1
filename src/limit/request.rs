//! [`LimitRequest`]: what a limiter is asked, and whose buckets it touches.

use crate::token::KeyId;

use super::policy::{RateLimit, RateLimits};

/// One request to count against a key's rate limits.
///
/// Each limit's bucket is the key's (its [`KeyId`] and the limit's name)
/// or, for a [shared](RateLimit::is_shared) limit, the owner's (the owner
/// and the limit's name): two keys of one owner with a shared limit of the
/// same name draw from one bucket.
#[derive(Debug, Clone, Copy)]
pub struct LimitRequest<'a> {
    pub(crate) key: KeyId,
    pub(crate) owner: &'a str,
    pub(crate) limits: &'a RateLimits,
    pub(crate) cost: u64,
}

impl<'a> LimitRequest<'a> {
    /// A request of cost 1 by `key`, owned by `owner`, against `limits`.
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 5, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let outcome = LocalLimiter::new().check(&request, std::time::Instant::now());
    /// assert_eq!(outcome.states()[0].remaining, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(key: KeyId, owner: &'a str, limits: &'a RateLimits) -> LimitRequest<'a> {
        LimitRequest {
            key,
            owner,
            limits,
            cost: 1,
        }
    }

    /// Sets the cost (default 1). A cost of 0 is not counted: no bucket is
    /// checked or touched, and the outcome is
    /// [`LimitOutcome::NotCounted`](crate::LimitOutcome::NotCounted).
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 5, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits).cost(3);
    /// let outcome = LocalLimiter::new().check(&request, std::time::Instant::now());
    /// assert_eq!(outcome.states()[0].remaining, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn cost(mut self, cost: u64) -> LimitRequest<'a> {
        self.cost = cost;
        self
    }

    /// Whether the request is counted at all.
    pub(crate) fn is_counted(&self) -> bool {
        self.cost > 0 && !self.limits.is_empty()
    }

    /// The limits, in the key's order.
    pub(crate) fn limits(&self) -> &'a [RateLimit] {
        self.limits.as_slice()
    }
}
