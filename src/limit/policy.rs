//! [`RateLimit`] and [`RateLimits`]: a key's rate limits, validated.

use serde::{Deserialize, Deserializer, Serialize};

use super::name::{LimitName, LimitNameError};
use super::period::{Period, PeriodError};

/// The most rate limits one key may carry.
pub const MAX_RATE_LIMITS: usize = 8;

/// The largest `limit` of a rate limit.
pub const MAX_LIMIT_PER_PERIOD: u64 = 1_000_000_000;

/// One rate limit: at most `limit` units of cost per `period`,
/// as a token bucket of capacity `limit` refilled continuously at
/// `limit / period`.
///
/// With `shared`, the bucket belongs to the key's owner: every key of that
/// owner with a shared limit of the same name draws from it.
///
/// ```
/// use keygate::{Period, RateLimit};
///
/// let hourly = RateLimit::new("hourly".parse()?, 1000, Period::parse("1h")?)?.shared(true);
/// assert_eq!(
///     serde_json::to_string(&hourly)?,
///     r#"{"name":"hourly","limit":1000,"period":"1h","shared":true}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RateLimit {
    name: LimitName,
    limit: u64,
    period: Period,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    shared: bool,
}

impl RateLimit {
    /// A per-key limit of `limit` per `period`.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::Limit`] unless `1 <= limit <= 1_000_000_000`.
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// let burst = RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?;
    /// assert_eq!((burst.limit(), burst.period().as_secs()), (20, 1));
    /// assert!(RateLimit::new("zero".parse()?, 0, Period::parse("1s")?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: LimitName, limit: u64, period: Period) -> Result<RateLimit, RateLimitError> {
        if !(1..=MAX_LIMIT_PER_PERIOD).contains(&limit) {
            return Err(RateLimitError::Limit(limit));
        }
        Ok(RateLimit {
            name,
            limit,
            period,
            shared: false,
        })
    }

    /// Makes the bucket the owner's (`true`) or the key's (`false`, the
    /// default).
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// let per_owner = RateLimit::new("hourly".parse()?, 1000, Period::parse("1h")?)?.shared(true);
    /// assert!(per_owner.is_shared());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn shared(mut self, shared: bool) -> RateLimit {
        self.shared = shared;
        self
    }

    /// The limit's name.
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// let limit = RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?;
    /// assert_eq!(limit.name().as_str(), "burst");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> LimitName {
        self.name
    }

    /// The capacity: units of cost per period, 1 to 10⁹.
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// assert_eq!(RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?.limit(), 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// let limit = RateLimit::new("daily".parse()?, 5000, Period::parse("1d")?)?;
    /// assert_eq!(limit.period(), Period::parse("24h")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn period(&self) -> Period {
        self.period
    }

    /// Whether the bucket is the owner's rather than the key's.
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// let limit = RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?;
    /// assert!(!limit.is_shared()); // per key unless asked
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_shared(&self) -> bool {
        self.shared
    }
}

/// The JSON form, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    name: String,
    limit: u64,
    period: RawPeriod,
    #[serde(default)]
    shared: bool,
}

/// A period as text or whole seconds, validated afterwards so that the
/// error can name the field.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPeriod {
    Seconds(u64),
    Text(String),
}

impl RawRateLimit {
    fn validate(self) -> Result<RateLimit, RateLimitError> {
        let name = LimitName::parse(&self.name).map_err(RateLimitError::Name)?;
        let period = match self.period {
            RawPeriod::Seconds(secs) => Period::from_secs(secs),
            RawPeriod::Text(text) => Period::parse(&text),
        }
        .map_err(RateLimitError::Period)?;
        Ok(RateLimit::new(name, self.limit, period)?.shared(self.shared))
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RateLimit, D::Error> {
        RawRateLimit::deserialize(deserializer)?
            .validate()
            .map_err(|e| serde::de::Error::custom(format_args!("{}: {e}", e.field())))
    }
}

/// A key's rate limits: at most 8, names unique. The only way to build one
/// is [`RateLimits::new`] (or deserializing), so a limiter never re-checks.
///
/// ```
/// use keygate::RateLimits;
///
/// let limits: RateLimits = serde_json::from_str(
///     r#"[{"name": "burst", "limit": 20, "period": "1s"},
///         {"name": "hourly", "limit": 1000, "period": "1h", "shared": true}]"#,
/// )?;
/// assert_eq!(limits.len(), 2);
///
/// let error = serde_json::from_str::<RateLimits>(
///     r#"[{"name": "a", "limit": 1, "period": "1s"},
///         {"name": "b", "limit": 1, "period": "1s"},
///         {"name": "c", "limit": 1, "period": "2d"}]"#,
/// )
/// .unwrap_err();
/// assert!(error.to_string().starts_with(r#"rate_limits[2].period: "2d" is longer than 1d"#));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RateLimits(Vec<RateLimit>);

impl RateLimits {
    /// No rate limits.
    ///
    /// ```
    /// use keygate::RateLimits;
    ///
    /// assert!(RateLimits::empty().is_empty());
    /// assert_eq!(serde_json::to_string(&RateLimits::empty()).unwrap(), "[]");
    /// ```
    pub fn empty() -> RateLimits {
        RateLimits(Vec::new())
    }

    /// Checks the list's rules.
    ///
    /// # Errors
    ///
    /// [`RateLimitsError::TooMany`] past 8 limits,
    /// [`RateLimitsError::DuplicateName`] when two limits share a name.
    ///
    /// ```
    /// use keygate::{Period, RateLimit, RateLimits};
    ///
    /// let burst = RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?;
    /// assert_eq!(RateLimits::new(vec![burst])?.len(), 1);
    /// assert!(RateLimits::new(vec![burst, burst]).is_err()); // names are unique
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(limits: Vec<RateLimit>) -> Result<RateLimits, RateLimitsError> {
        if limits.len() > MAX_RATE_LIMITS {
            return Err(RateLimitsError::TooMany {
                count: limits.len(),
            });
        }
        for (index, limit) in limits.iter().enumerate() {
            if limits[..index]
                .iter()
                .any(|earlier| earlier.name == limit.name)
            {
                return Err(RateLimitsError::DuplicateName {
                    index,
                    name: limit.name,
                });
            }
        }
        Ok(RateLimits(limits))
    }

    /// The limits, in the order given.
    ///
    /// ```
    /// use keygate::RateLimits;
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 20, "period": "1s"}]"#)?;
    /// assert_eq!(limits.as_slice()[0].limit(), 20);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn as_slice(&self) -> &[RateLimit] {
        &self.0
    }

    /// How many limits there are (0 to 8).
    ///
    /// ```
    /// use keygate::RateLimits;
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 1, "period": "1s"}, {"name": "b", "limit": 9, "period": "1h"}]"#)?;
    /// assert_eq!(limits.len(), 2);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    ///
    /// ```
    /// use keygate::RateLimits;
    ///
    /// assert!(RateLimits::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The limits, in the order given.
    ///
    /// ```
    /// use keygate::RateLimits;
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 1, "period": "1s"}, {"name": "b", "limit": 9, "period": "1h"}]"#)?;
    /// assert_eq!(limits.iter().map(|l| l.limit()).sum::<u64>(), 10);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, RateLimit> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a RateLimits {
    type Item = &'a RateLimit;
    type IntoIter = std::slice::Iter<'a, RateLimit>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl TryFrom<Vec<RateLimit>> for RateLimits {
    type Error = RateLimitsError;

    fn try_from(limits: Vec<RateLimit>) -> Result<RateLimits, RateLimitsError> {
        RateLimits::new(limits)
    }
}

impl<'de> Deserialize<'de> for RateLimits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RateLimits, D::Error> {
        let raw = Vec::<RawRateLimit>::deserialize(deserializer)?;
        let mut limits = Vec::with_capacity(raw.len().min(MAX_RATE_LIMITS));
        if raw.len() > MAX_RATE_LIMITS {
            return Err(serde::de::Error::custom(RateLimitsError::TooMany {
                count: raw.len(),
            }));
        }
        for (index, item) in raw.into_iter().enumerate() {
            let limit = item.validate().map_err(|source| {
                serde::de::Error::custom(RateLimitsError::Invalid { index, source })
            })?;
            limits.push(limit);
        }
        RateLimits::new(limits).map_err(serde::de::Error::custom)
    }
}

/// Why one rate limit is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The name is not `1*32` of `a-z0-9_-`.
    #[error(transparent)]
    Name(LimitNameError),
    /// The limit is outside `1..=1_000_000_000`.
    #[error("{0} is outside 1..=1000000000")]
    Limit(u64),
    /// The period is not a period of `1s..=1d`.
    #[error(transparent)]
    Period(PeriodError),
}

impl RateLimitError {
    /// The offending field, as named in JSON: `name`, `limit` or `period`.
    ///
    /// ```
    /// use keygate::{Period, RateLimit};
    ///
    /// let error = RateLimit::new("burst".parse().unwrap(), 0, Period::parse("1s").unwrap()).unwrap_err();
    /// assert_eq!(error.field(), "limit");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            RateLimitError::Name(_) => "name",
            RateLimitError::Limit(_) => "limit",
            RateLimitError::Period(_) => "period",
        }
    }
}

/// Why a list of rate limits is invalid. The message names the field, e.g.
/// `rate_limits[2].period: "2d" is longer than 1d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitsError {
    /// More than 8 limits.
    #[error("rate_limits: {count} limits, at most 8 are allowed")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A second limit with a name already used.
    #[error("rate_limits[{index}].name: {:?} is used by an earlier limit (names are unique per key)", .name.as_str())]
    DuplicateName {
        /// The position of the second one.
        index: usize,
        /// The repeated name.
        name: LimitName,
    },
    /// One limit is invalid.
    #[error("rate_limits[{index}].{}: {source}", .source.field())]
    Invalid {
        /// Its position in the list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: RateLimitError,
    },
}

#[cfg(test)]
mod tests {
    use super::{RateLimit, RateLimitError, RateLimits, RateLimitsError};
    use crate::limit::period::Period;

    fn limit(name: &str, n: u64, period: &str) -> RateLimit {
        RateLimit::new(name.parse().unwrap(), n, Period::parse(period).unwrap()).unwrap()
    }

    #[test]
    fn limits_outside_one_to_a_billion_are_refused() {
        let period = Period::parse("1s").unwrap();
        assert_eq!(
            RateLimit::new("a".parse().unwrap(), 0, period),
            Err(RateLimitError::Limit(0))
        );
        assert!(RateLimit::new("a".parse().unwrap(), 1_000_000_001, period).is_err());
        assert!(RateLimit::new("a".parse().unwrap(), 1_000_000_000, period).is_ok());
    }

    #[test]
    fn shared_is_written_only_when_true_and_defaults_to_false() {
        let json = serde_json::to_string(&limit("burst", 20, "1s")).unwrap();
        assert_eq!(json, r#"{"name":"burst","limit":20,"period":"1s"}"#);
        let back: RateLimit = serde_json::from_str(&json).unwrap();
        assert!(!back.is_shared());
        let shared: RateLimit =
            serde_json::from_str(r#"{"name":"h","limit":5,"period":"1h","shared":true}"#).unwrap();
        assert!(shared.is_shared());
    }

    #[test]
    fn lists_refuse_more_than_eight_and_duplicate_names() {
        let nine: Vec<_> = (0..9).map(|i| limit(&format!("l{i}"), 1, "1s")).collect();
        assert_eq!(
            RateLimits::new(nine.clone()),
            Err(RateLimitsError::TooMany { count: 9 })
        );
        assert!(RateLimits::new(nine[..8].to_vec()).is_ok());
        let error = RateLimits::new(vec![
            limit("a", 1, "1s"),
            limit("b", 1, "1s"),
            limit("a", 2, "1h"),
        ])
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"rate_limits[2].name: "a" is used by an earlier limit (names are unique per key)"#
        );
    }

    #[test]
    fn json_errors_name_the_field_and_its_position() {
        let error = |json: &str| {
            serde_json::from_str::<RateLimits>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(
            error(r#"[{"name":"a","limit":0,"period":"1s"}]"#)
                .starts_with("rate_limits[0].limit: 0 is outside")
        );
        assert!(
            error(r#"[{"name":"A","limit":1,"period":"1s"}]"#)
                .starts_with("rate_limits[0].name: \"A\" is not a limit name")
        );
        assert!(
            error(r#"[{"name":"a","limit":1,"period":"1s"},{"name":"b","limit":1,"period":"1m"}]"#)
                .starts_with("rate_limits[1].period: \"1m\" is ambiguous")
        );
        assert!(error(r#"[{"name":"a","limit":1,"period":"1s","extra":1}]"#).contains("extra"));
        let nine = format!(
            "[{}]",
            [r#"{"name":"a","limit":1,"period":"1s"}"#; 9].join(",")
        );
        assert!(error(&nine).starts_with("rate_limits: 9 limits"));
    }

    #[test]
    fn lists_round_trip_through_json() {
        let limits = RateLimits::new(vec![
            limit("burst", 20, "1s"),
            limit("hourly", 1000, "1h").shared(true),
        ])
        .unwrap();
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(serde_json::from_str::<RateLimits>(&json).unwrap(), limits);
    }
}
