//! Rate limits: the policy types, an exact GCRA, and the
//! limiters that keep the buckets — in this process ([`LocalLimiter`]) or,
//! shared by every instance, in Redis (`RedisLimiter`, feature `redis`).
//!
//! # Example
//!
//! ```
//! use std::time::Instant;
//!
//! use keygate::{KeyId, LimitRequest, LocalLimiter, LimitOutcome, RateLimits};
//!
//! let limits: RateLimits = serde_json::from_str(
//!     r#"[{"name": "burst", "limit": 2, "period": "1s"},
//!         {"name": "hourly", "limit": 1000, "period": "1h", "shared": true}]"#,
//! )?;
//! let key = KeyId::parse("AAAAAAAAAAAAAAAA")?;
//! let limiter = LocalLimiter::new();
//! let now = Instant::now();
//! let request = LimitRequest::new(key, "alice", &limits);
//!
//! assert!(limiter.check(&request, now).is_allowed());
//! assert!(limiter.check(&request, now).is_allowed());
//! let LimitOutcome::Refused { limit, retry_after_secs, .. } = limiter.check(&request, now) else {
//!     panic!("a third request within the second passed");
//! };
//! assert_eq!((limit.as_str(), retry_after_secs), ("burst", 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod gcra;
mod limiter;
mod local;
mod name;
mod outcome;
mod period;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod request;
#[cfg(test)]
mod test_support;

pub use self::limiter::{Limiter, LimiterError};
pub use self::local::{DEFAULT_MAX_BUCKETS, LocalLimiter};
pub use self::name::{LimitName, LimitNameError, MAX_LIMIT_NAME_LEN};
pub(crate) use self::outcome::policy_value;
pub use self::outcome::{LimitOutcome, LimitState, LimitStates, RATELIMIT, RATELIMIT_POLICY};
pub use self::period::{MAX_PERIOD_SECS, Period, PeriodError};
pub use self::policy::{
    MAX_LIMIT_PER_PERIOD, MAX_RATE_LIMITS, RateLimit, RateLimitError, RateLimits, RateLimitsError,
};
#[cfg(feature = "redis")]
pub use self::redis::{DEFAULT_REDIS_KEY_PREFIX, RedisLimitError, RedisLimiter};
pub use self::request::LimitRequest;
