//! What a rate-limit check answers: [`LimitOutcome`], [`LimitState`], and the
//! `RateLimit-Policy` / `RateLimit` header values.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::name::LimitName;
use super::period::Period;
use super::policy::MAX_RATE_LIMITS;

/// Where one limit stands after a check: what `/v1/verify` reports per limit
/// and what the `RateLimit-Policy` and `RateLimit` headers carry
/// (draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitState {
    /// The limit's name.
    pub name: LimitName,
    /// Its capacity per period (the header's `q`).
    pub limit: u64,
    /// Whole units of cost a request could take right now (the header's
    /// `r`): after this request when it was admitted, as it stands when it
    /// was refused.
    pub remaining: u64,
    /// Whole seconds, rounded up, until the bucket is full again (the
    /// header's `t`, `/v1/verify`'s `reset`); 0 when it is full.
    pub reset_secs: u64,
    /// The limit's period (the header's `w`, in seconds).
    pub period: Period,
}

impl LimitState {
    /// The `RateLimit-Policy` header value for this limit, e.g.
    /// `"burst";q=20;w=1`.
    ///
    /// ```
    /// use keygate::{LimitRequest, LocalLimiter, Period, RateLimit, RateLimits};
    /// # let key = keygate::KeyId::parse("AAAAAAAAAAAAAAAA")?;
    /// let limits = RateLimits::new(vec![RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?])?;
    /// let limiter = LocalLimiter::new();
    /// let outcome =
    ///     limiter.check(&LimitRequest::new(key, "alice", &limits), std::time::Instant::now());
    /// let tightest = outcome.header_state().expect("a fresh bucket admits");
    /// assert_eq!(tightest.policy_header(), r#""burst";q=20;w=1"#);
    /// assert_eq!(tightest.header(), r#""burst";r=19;t=1"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.name,
            self.limit,
            self.period.as_secs()
        )
    }

    /// The `RateLimit` header value for this limit, e.g. `"burst";r=7;t=1`.
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 20, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let outcome = LocalLimiter::new().check(&request, std::time::Instant::now());
    /// assert_eq!(outcome.header_state().unwrap().header(), r#""burst";r=19;t=1"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.name, self.remaining, self.reset_secs
        )
    }

    /// Sets the [`RATELIMIT_POLICY`] and [`RATELIMIT`] headers of a response
    /// to this limit's, replacing any already there (an upstream's own
    /// values would describe another limit).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use keygate::{LimitOutcome, LimitRequest, LocalLimiter, RateLimits};
    /// # let key = keygate::KeyId::parse("AAAAAAAAAAAAAAAA")?;
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "hourly", "limit": 100, "period": "1h"}]"#)?;
    /// let outcome = LocalLimiter::new().check(&LimitRequest::new(key, "alice", &limits), std::time::Instant::now());
    /// let mut headers = HeaderMap::new();
    /// outcome.header_state().expect("counted").insert_headers(&mut headers);
    /// assert_eq!(headers["ratelimit-policy"], r#""hourly";q=100;w=3600"#);
    /// assert_eq!(headers["ratelimit"], r#""hourly";r=99;t=36"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert_headers(&self, headers: &mut HeaderMap) {
        if let Some(value) = policy_value(self.name, self.limit, self.period) {
            headers.insert(RATELIMIT_POLICY, value);
        }
        if let Some(value) = self.rate_value() {
            headers.insert(RATELIMIT, value);
        }
    }

    /// The `RateLimit` header value (see [`header`](LimitState::header)).
    pub(crate) fn rate_value(&self) -> Option<HeaderValue> {
        // Written by hand into the stack: `format!` costs several times
        // more, on every counted request.
        let mut buffer = HeaderText::new(self.name.as_bytes());
        buffer.parameter(b"r", self.remaining);
        buffer.parameter(b"t", self.reset_secs);
        // Names are `a-z0-9_-` and the rest digits: always a valid value.
        HeaderValue::from_bytes(buffer.as_bytes()).ok()
    }
}

/// The `RateLimit-Policy` header value of a limit (see
/// [`LimitState::policy_header`]); it never changes, so the verifier's
/// cache keeps it with the key.
pub(crate) fn policy_value(name: LimitName, limit: u64, period: Period) -> Option<HeaderValue> {
    let mut buffer = HeaderText::new(name.as_bytes());
    buffer.parameter(b"q", limit);
    buffer.parameter(b"w", period.as_secs());
    HeaderValue::from_bytes(buffer.as_bytes()).ok()
}

/// A header value being written: `"<name>"` then `;k=<u64>` parameters.
struct HeaderText {
    bytes: [u8; HeaderText::CAPACITY],
    len: usize,
}

impl HeaderText {
    /// The quoted name (at most 32 bytes) and two parameters of at most 20
    /// digits each fit.
    const CAPACITY: usize = 2 + super::name::MAX_LIMIT_NAME_LEN + 2 * (3 + 20);

    fn new(name: &[u8]) -> HeaderText {
        let mut text = HeaderText {
            bytes: [0; HeaderText::CAPACITY],
            len: 0,
        };
        text.push(b"\"");
        text.push(name);
        text.push(b"\"");
        text
    }

    /// Appends `bytes`, cut at the capacity (never reached: it fits the
    /// longest name and values).
    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(HeaderText::CAPACITY);
        let taken = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&bytes[..taken]);
        self.len = end;
    }

    /// Appends `;key=value`.
    fn parameter(&mut self, key: &[u8; 1], value: u64) {
        self.push(&[b';', key[0], b'=']);
        self.push(itoa::Buffer::new().format(value).as_bytes());
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Every limit's state after a check, in the key's order (at most 8).
///
/// A key with one limit — the common case — keeps its state inline; more
/// are kept on the heap. The outcome of every counted request carries
/// this, so it stays small: a few words to move, not eight states.
#[derive(Clone, PartialEq, Eq)]
pub struct LimitStates(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Empty,
    One(LimitState),
    Many(Box<[LimitState]>),
}

impl LimitStates {
    pub(crate) const EMPTY: LimitStates = LimitStates(Repr::Empty);

    /// The states `states` yields, in order; past 8 they are dropped (a
    /// [`RateLimits`] never holds more).
    ///
    /// [`RateLimits`]: crate::RateLimits
    pub(crate) fn collect(states: impl ExactSizeIterator<Item = LimitState>) -> LimitStates {
        let mut states = states.take(MAX_RATE_LIMITS);
        match states.len() {
            0 => LimitStates::EMPTY,
            1 => states
                .next()
                .map_or(LimitStates::EMPTY, |state| LimitStates(Repr::One(state))),
            _ => LimitStates(Repr::Many(states.collect())),
        }
    }

    /// The states, in the order of the key's limits.
    ///
    /// ```
    /// use keygate::{KeyId, LimitOutcome, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 5, "period": "1s"}, {"name": "b", "limit": 9, "period": "1h"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let LimitOutcome::Admitted { states, .. } = LocalLimiter::new().check(&request, std::time::Instant::now()) else {
    ///     panic!("a fresh bucket admits")
    /// };
    /// let names: Vec<&str> = states.as_slice().iter().map(|s| s.name.as_str()).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// assert_eq!(states.len(), 2);
    /// assert!(!states.is_empty());
    /// assert_eq!(states.iter().map(|s| s.remaining).sum::<u64>(), 4 + 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_slice(&self) -> &[LimitState] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::One(state) => std::slice::from_ref(state),
            Repr::Many(states) => states,
        }
    }

    /// The states, in the order of the key's limits.
    ///
    /// ```
    /// use keygate::{KeyId, LimitOutcome, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 5, "period": "1s"}, {"name": "b", "limit": 9, "period": "1h"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let LimitOutcome::Admitted { states, .. } = LocalLimiter::new().check(&request, std::time::Instant::now()) else { panic!() };
    /// assert_eq!(states.iter().map(|s| s.limit).collect::<Vec<_>>(), [5, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, LimitState> {
        self.as_slice().iter()
    }

    /// How many states there are.
    ///
    /// ```
    /// use keygate::{KeyId, LimitOutcome, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 5, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let LimitOutcome::Admitted { states, .. } = LocalLimiter::new().check(&request, std::time::Instant::now()) else { panic!() };
    /// assert_eq!(states.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are none.
    ///
    /// ```
    /// use keygate::{KeyId, LimitOutcome, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "a", "limit": 5, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let LimitOutcome::Admitted { states, .. } = LocalLimiter::new().check(&request, std::time::Instant::now()) else { panic!() };
    /// assert!(!states.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

impl std::ops::Index<usize> for LimitStates {
    type Output = LimitState;

    /// The state of the key's `index`-th limit.
    ///
    /// # Panics
    ///
    /// When `index` is not below [`len`](LimitStates::len).
    fn index(&self, index: usize) -> &LimitState {
        &self.as_slice()[index]
    }
}

impl std::fmt::Debug for LimitStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> IntoIterator for &'a LimitStates {
    type Item = &'a LimitState;
    type IntoIter = std::slice::Iter<'a, LimitState>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The answer to a rate-limit check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitOutcome {
    /// The request was not counted: its cost is 0 or the key has no rate
    /// limits. No bucket was touched; a response carries no rate-limit
    /// headers.
    NotCounted,
    /// Every limit had budget; the cost was taken from each bucket.
    Admitted {
        /// Which of `states` has the fewest remaining after this request
        /// (ties: the shorter period, then the earlier in the key's list):
        /// the one the headers describe, [`LimitOutcome::header_state`].
        tightest: usize,
        /// Every limit's state, in the key's order.
        states: LimitStates,
    },
    /// At least one limit lacked budget; **no bucket changed**.
    Refused {
        /// The limit that refused (of several, the one with the longest
        /// wait).
        limit: LimitName,
        /// Whole seconds, rounded up and at least 1, until this request
        /// (same cost) would pass every limit, if nothing else is counted
        /// meanwhile. When `cost_exceeds_limit`, it can never pass and
        /// this is the refusing limit's period, a back-off for a client
        /// that retries anyway.
        retry_after_secs: u64,
        /// The cost is greater than `limit`'s capacity: the request can
        /// never pass, however long the client waits.
        cost_exceeds_limit: bool,
        /// Which of `states` is `limit`'s: the one the headers describe,
        /// [`LimitOutcome::header_state`].
        refusing: usize,
        /// Every limit's state, in the key's order, unchanged by this
        /// request.
        states: LimitStates,
    },
}

impl LimitOutcome {
    /// Whether the request may go on (admitted or not counted).
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "once", "limit": 1, "period": "1h"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let limiter = LocalLimiter::new();
    /// let now = std::time::Instant::now();
    /// assert!(limiter.check(&request, now).is_allowed());
    /// assert!(!limiter.check(&request, now).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_allowed(&self) -> bool {
        !matches!(self, LimitOutcome::Refused { .. })
    }

    /// The state the response headers describe: the tightest limit when
    /// admitted, the refusing one when refused; `None` when not counted.
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "hourly", "limit": 100, "period": "1h"}, {"name": "burst", "limit": 2, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let outcome = LocalLimiter::new().check(&request, std::time::Instant::now());
    /// assert_eq!(outcome.header_state().unwrap().name.as_str(), "burst"); // the fewest remaining
    /// assert!(LocalLimiter::new().check(&request.cost(0), std::time::Instant::now()).header_state().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header_state(&self) -> Option<&LimitState> {
        match self {
            LimitOutcome::NotCounted => None,
            LimitOutcome::Admitted { tightest, states }
            | LimitOutcome::Refused {
                refusing: tightest,
                states,
                ..
            } => states.as_slice().get(*tightest),
        }
    }

    /// Every limit's state (empty when not counted).
    ///
    /// ```
    /// use keygate::{KeyId, LimitRequest, LocalLimiter, RateLimits};
    ///
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 3, "period": "1s"}]"#)?;
    /// let request = LimitRequest::new(KeyId::parse("AAAAAAAAAAAAAAAA")?, "alice", &limits);
    /// let outcome = LocalLimiter::new().check(&request, std::time::Instant::now());
    /// assert_eq!(outcome.states()[0].limit, 3);
    /// assert_eq!(outcome.states()[0].remaining, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn states(&self) -> &[LimitState] {
        match self {
            LimitOutcome::NotCounted => &[],
            LimitOutcome::Admitted { states, .. } | LimitOutcome::Refused { states, .. } => {
                states.as_slice()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LimitState;
    use crate::limit::period::Period;

    fn state(name: &str, limit: u64, remaining: u64, reset_secs: u64, period: &str) -> LimitState {
        LimitState {
            name: name.parse().unwrap(),
            limit,
            remaining,
            reset_secs,
            period: Period::parse(period).unwrap(),
        }
    }

    proptest::proptest! {
        #[test]
        fn the_headers_inserted_are_the_formatted_values(
            name in "[a-z0-9_-]{1,32}",
            limit in proptest::prelude::any::<u64>(),
            remaining in proptest::prelude::any::<u64>(),
            reset_secs in proptest::prelude::any::<u64>(),
            period in 1u64..=86_400,
        ) {
            let state = LimitState {
                name: name.parse().unwrap(),
                limit,
                remaining,
                reset_secs,
                period: Period::parse(&format!("{period}s")).unwrap(),
            };
            let mut headers = http::HeaderMap::new();
            state.insert_headers(&mut headers);
            proptest::prop_assert_eq!(headers["ratelimit-policy"].to_str().unwrap(), state.policy_header());
            proptest::prop_assert_eq!(headers["ratelimit"].to_str().unwrap(), state.header());
        }
    }

    #[test]
    fn header_values_are_the_drafts_exact_strings() {
        let burst = state("burst", 20, 7, 1, "1s");
        assert_eq!(burst.policy_header(), r#""burst";q=20;w=1"#);
        assert_eq!(burst.header(), r#""burst";r=7;t=1"#);
        let hourly = state("per-hour_1", 1000, 0, 3600, "1h");
        assert_eq!(hourly.policy_header(), r#""per-hour_1";q=1000;w=3600"#);
        assert_eq!(hourly.header(), r#""per-hour_1";r=0;t=3600"#);
    }
}
