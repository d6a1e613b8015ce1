//! [`Limiter`]: the one type the verifier holds, in process or in Redis.

use std::time::Instant;

use super::local::LocalLimiter;
use super::outcome::LimitOutcome;
#[cfg(feature = "redis")]
use super::redis::{RedisLimitError, RedisLimiter};
use super::request::LimitRequest;

/// Where the rate-limit buckets are kept.
///
/// An enum rather than a trait: there are two limiters, both known here,
/// and the in-process one must answer without a future (a cached key is
/// verified synchronously), which [`Limiter::check_local`] exposes in its
/// type; an async trait would box a future per check and hide that path.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Limiter {
    /// In this process (the default): exact for one instance.
    Local(LocalLimiter),
    /// In Redis, shared exactly by every instance.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisLimiter),
}

impl Limiter {
    /// The synchronous path: the outcome when the buckets are in process,
    /// `None` when the check needs a round trip ([`Limiter::check`]).
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, Limiter, LocalLimiter, RateLimits};
    ///
    /// let limiter = Limiter::from(LocalLimiter::new());
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 3, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let outcome = limiter.check_local(&request, std::time::Instant::now());
    /// assert!(outcome.is_some_and(|o| o.is_allowed())); // in process: no round trip
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_local(&self, request: &LimitRequest<'_>, now: Instant) -> Option<LimitOutcome> {
        match self {
            Limiter::Local(local) => Some(local.check(request, now)),
            #[cfg(feature = "redis")]
            Limiter::Redis(_) => None,
        }
    }

    /// Counts `request` now, wherever the buckets are.
    ///
    /// # Errors
    ///
    /// [`LimiterError`] when the buckets cannot be reached (only Redis's
    /// can fail). Whether to admit the request then (fail open) or not is
    /// the caller's decision.
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, Limiter, LocalLimiter, RateLimits};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = Limiter::from(LocalLimiter::new());
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 1, "period": "1h"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// assert!(limiter.check(&request).await?.is_allowed());
    /// assert!(!limiter.check(&request).await?.is_allowed());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check(&self, request: &LimitRequest<'_>) -> Result<LimitOutcome, LimiterError> {
        match self {
            Limiter::Local(local) => Ok(local.check(request, Instant::now())),
            #[cfg(feature = "redis")]
            Limiter::Redis(redis) => Ok(redis.check(request).await?),
        }
    }
}

impl Default for Limiter {
    /// A [`LocalLimiter`] with its default maximum.
    fn default() -> Limiter {
        Limiter::Local(LocalLimiter::new())
    }
}

impl From<LocalLimiter> for Limiter {
    fn from(local: LocalLimiter) -> Limiter {
        Limiter::Local(local)
    }
}

#[cfg(feature = "redis")]
impl From<RedisLimiter> for Limiter {
    fn from(redis: RedisLimiter) -> Limiter {
        Limiter::Redis(redis)
    }
}

/// Why a [`Limiter`] could not decide. Without the `redis` feature there
/// is no such case.
#[derive(Debug)]
#[non_exhaustive]
pub enum LimiterError {
    /// Redis could not be reached or its script failed.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisLimitError),
}

impl std::fmt::Display for LimiterError {
    // Without `redis` there is no variant, and nothing to write.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            #[cfg(feature = "redis")]
            LimiterError::Redis(ref error) => std::fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for LimiterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match *self {
            #[cfg(feature = "redis")]
            LimiterError::Redis(ref error) => error.source(),
        }
    }
}

#[cfg(feature = "redis")]
impl From<RedisLimitError> for LimiterError {
    fn from(error: RedisLimitError) -> LimiterError {
        LimiterError::Redis(error)
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;
    use crate::limit::period::Period;
    use crate::limit::policy::{RateLimit, RateLimits};
    use crate::limit::request::LimitRequest;
    use crate::token::KeyId;

    #[tokio::test]
    async fn the_default_limiter_answers_synchronously_and_asynchronously_alike() {
        let limiter = Limiter::default();
        let one = RateLimits::new(vec![
            RateLimit::new("a".parse().unwrap(), 1, Period::ONE_DAY).unwrap(),
        ])
        .unwrap();
        let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA").unwrap(), "o", &one);
        assert!(
            limiter
                .check_local(&request, std::time::Instant::now())
                .is_some_and(|o| o.is_allowed())
        );
        assert!(!limiter.check(&request).await.unwrap().is_allowed());
    }
}
