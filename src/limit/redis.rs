//! [`RedisLimiter`]: the buckets in Redis, shared exactly by every instance.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script};
use sha2::{Digest, Sha256};

use super::gcra::{Spec, Tat, evaluate};
use super::outcome::LimitOutcome;
use super::policy::MAX_RATE_LIMITS;
use super::request::LimitRequest;

/// The default prefix of every bucket key.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "keygate:rl";

/// Microseconds: Redis `TIME`'s resolution, the unit of its buckets.
const MICROS_PER_SEC: u64 = 1_000_000;

/// How long a connection attempt, or an answer, may take.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The whole check, atomic inside Redis.
///
/// `KEYS`: the request's buckets. `ARGV[1]`: their count; `ARGV[2]`: `1`
/// to refuse whatever the buckets hold (a cost above a limit); then per
/// bucket its limit, its period in µs and the request's increment
/// `cost · period / limit` as whole µs and a remainder over the limit.
/// A bucket is a hash: its TAT `w + f / l` µs and the limit `l` it is
/// counted in. Time is Redis's `TIME`, so instances with skewed clocks
/// agree. Numbers stay below 2^53 (µs since 1970 plus a day), exact in
/// Lua's doubles; `%d` writes them without exponent.
///
/// Answers `{admitted, now, w1, f1, w2, f2, …}`: each bucket's TAT before
/// the request (at least `now`), from which the caller computes the same
/// decision and the states. Admitted only if every bucket has room; then
/// each TAT moves and the key expires when the bucket is full again.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local ok = ARGV[2] == '0'
local out = {0, now}
local nw, nf = {}, {}
for i = 1, n do
  local a = 2 + (i - 1) * 4
  local limit = tonumber(ARGV[a + 1])
  local period = tonumber(ARGV[a + 2])
  local s = redis.call('HMGET', KEYS[i], 'w', 'f', 'l')
  local w, f = now, 0
  if s[1] then
    w = tonumber(s[1])
    f = tonumber(s[2]) or 0
    if tonumber(s[3]) ~= limit and f > 0 then
      w = w + 1
      f = 0
    end
    if w < now then
      w = now
      f = 0
    end
  end
  out[1 + 2 * i] = w
  out[2 + 2 * i] = f
  local w2 = w + tonumber(ARGV[a + 3])
  local f2 = f + tonumber(ARGV[a + 4])
  if f2 >= limit then
    f2 = f2 - limit
    w2 = w2 + 1
  end
  if w2 > now + period or (w2 == now + period and f2 > 0) then
    ok = false
  end
  nw[i] = w2
  nf[i] = f2
end
if ok then
  for i = 1, n do
    local a = 2 + (i - 1) * 4
    redis.call('HSET', KEYS[i], 'w', string.format('%d', nw[i]), 'f', string.format('%d', nf[i]), 'l', ARGV[a + 1])
    local left = nw[i] - now
    if nf[i] > 0 then
      left = left + 1
    end
    redis.call('PEXPIRE', KEYS[i], math.floor(left / 1000) + 1)
  end
  out[1] = 1
end
return out
";

/// Rate-limit buckets in Redis: every instance pointed at one Redis shares
/// them exactly.
///
/// Each [`check`](RedisLimiter::check) is one atomic Lua script (sent by
/// `EVALSHA`, loaded on `NOSCRIPT`) carrying every bucket of the request,
/// all or nothing, with time from Redis's `TIME`. Keys are Redis Cluster
/// safe: all keys of one request share a hash tag, a hash of the owner,
/// who never appears in a key raw —
/// `keygate:rl:{<hex>}:k:<key id>:<limit>` for a key's bucket,
/// `keygate:rl:{<hex>}:o:<limit>` for the owner's. A key expires when its
/// bucket would be full again, so idle buckets vanish.
///
/// Errors are returned, never decided: failing open or closed is the
/// caller's policy. Cloning is cheap and clones share the connection.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    prefix: Arc<str>,
    script: Arc<Script>,
}

impl RedisLimiter {
    /// Connects to the Redis at `url` (`redis://host:port/db`), with keys
    /// under [`DEFAULT_REDIS_KEY_PREFIX`]. A connection attempt and each answer
    /// time out after one second.
    ///
    /// # Errors
    ///
    /// [`RedisLimitError::InvalidUrl`] or [`RedisLimitError::Unreachable`].
    pub async fn connect(url: &str) -> Result<RedisLimiter, RedisLimitError> {
        RedisLimiter::connect_with_prefix(url, DEFAULT_REDIS_KEY_PREFIX).await
    }

    /// As [`connect`](RedisLimiter::connect), with keys under `prefix`
    /// (1 to 64 printable ASCII characters, no `{`, `}` or space).
    ///
    /// # Errors
    ///
    /// [`RedisLimitError::InvalidPrefix`], [`RedisLimitError::InvalidUrl`]
    /// or [`RedisLimitError::Unreachable`].
    pub async fn connect_with_prefix(
        url: &str,
        prefix: &str,
    ) -> Result<RedisLimiter, RedisLimitError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if !valid {
            return Err(RedisLimitError::InvalidPrefix);
        }
        let client = Client::open(url).map_err(RedisLimitError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(TIMEOUT);
        let connect = ConnectionManager::new_with_config(client, config);
        let connection = match tokio::time::timeout(TIMEOUT * 3, connect).await {
            Ok(connection) => connection.map_err(RedisLimitError::Unreachable)?,
            Err(_) => return Err(RedisLimitError::TimedOut),
        };
        Ok(RedisLimiter {
            connection,
            prefix: prefix.into(),
            script: Arc::new(Script::new(SCRIPT)),
        })
    }

    /// Counts `request` (see [`LocalLimiter::check`]: the same semantics)
    /// in one round trip.
    ///
    /// # Errors
    ///
    /// [`RedisLimitError`] when Redis cannot be reached, times out or the
    /// script fails; nothing is counted then, or the request's cost was
    /// taken from every bucket (a reply lost after the script ran).
    ///
    /// [`LocalLimiter::check`]: crate::LocalLimiter::check
    pub async fn check(&self, request: &LimitRequest<'_>) -> Result<LimitOutcome, RedisLimitError> {
        if !request.is_counted() {
            return Ok(LimitOutcome::NotCounted);
        }
        let limits = &request.limits()[..request.limits().len().min(MAX_RATE_LIMITS)];
        let cost = request.cost;
        let tag = owner_tag(request.owner);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(limits.len())
            .arg(u8::from(limits.iter().any(|l| cost > l.limit())));
        for limit in limits {
            invocation.key(self.bucket_key(
                &tag,
                request,
                limit.name().as_str(),
                limit.is_shared(),
            ));
            let spec = Spec::new(limit, MICROS_PER_SEC);
            let increment = spec.increment(cost);
            invocation
                .arg(spec.limit)
                .arg(spec.period)
                .arg(increment.whole)
                .arg(increment.frac);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<u64> =
            match tokio::time::timeout(TIMEOUT * 2, invocation.invoke_async(&mut connection)).await
            {
                Ok(reply) => reply.map_err(classify)?,
                Err(_) => return Err(RedisLimitError::TimedOut),
            };
        let (admitted, now, tats) = match reply.as_slice() {
            [admitted, now, tats @ ..] if tats.len() == 2 * limits.len() => {
                (*admitted == 1, *now, tats)
            }
            _ => return Err(RedisLimitError::BadReply),
        };
        let mut current = [Tat::at(0); MAX_RATE_LIMITS];
        for (slot, pair) in current.iter_mut().zip(tats.chunks_exact(2)) {
            *slot = Tat {
                whole: pair[0],
                frac: pair[1],
            };
        }
        let outcome = evaluate(
            limits,
            &mut current[..limits.len()],
            now,
            cost,
            MICROS_PER_SEC,
        );
        // The script and `evaluate` compute the same decision.
        if outcome.is_allowed() != admitted {
            return Err(RedisLimitError::BadReply);
        }
        Ok(outcome)
    }

    fn bucket_key(
        &self,
        tag: &str,
        request: &LimitRequest<'_>,
        name: &str,
        shared: bool,
    ) -> String {
        let mut key = String::with_capacity(self.prefix.len() + tag.len() + 56);
        let _ = match shared {
            true => write!(key, "{}:{{{tag}}}:o:{name}", self.prefix),
            false => write!(key, "{}:{{{tag}}}:k:{}:{name}", self.prefix, request.key),
        };
        key
    }
}

/// The hash tag of an owner's buckets: 128 bits of SHA-256 of the owner,
/// in hex. Stable across instances; the owner does not appear.
fn owner_tag(owner: &str) -> String {
    hex::encode(&Sha256::digest(owner.as_bytes())[..16])
}

fn classify(error: RedisError) -> RedisLimitError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        RedisLimitError::Unreachable(error)
    } else {
        RedisLimitError::Script(error)
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection's URL may hold a password: not shown.
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why a [`RedisLimiter`] could not decide. The caller chooses to fail open
/// or closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimitError {
    /// The URL is not a Redis URL.
    #[error("the Redis URL is invalid")]
    InvalidUrl(#[source] RedisError),
    /// The key prefix is empty, too long, or holds `{`, `}` or a space.
    #[error("the Redis key prefix must be 1 to 64 printable ASCII characters without braces")]
    InvalidPrefix,
    /// Redis refused the connection or dropped it.
    #[error("Redis cannot be reached")]
    Unreachable(#[source] RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer in time")]
    TimedOut,
    /// Redis answered with an error (the script failed).
    #[error("the Redis rate-limit script failed")]
    Script(#[source] RedisError),
    /// Redis's answer is not what the script returns.
    #[error("Redis answered the rate-limit script unexpectedly")]
    BadReply,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::{RedisLimitError, RedisLimiter, owner_tag};
    use crate::limit::outcome::LimitOutcome;
    use crate::limit::request::LimitRequest;
    use crate::limit::test_support::{key, limits};

    fn url() -> String {
        std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A prefix of this test's own, and a limiter under it.
    async fn limiter(test: &str) -> (RedisLimiter, String) {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!(
            "keygate-test:{}-{nanos}-{}-{test}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let limiter = RedisLimiter::connect_with_prefix(&url(), &prefix).await.unwrap_or_else(|e| {
            panic!(
                "Redis is needed at {} (start it: redis-server --daemonize yes; CI starts it): {e}",
                url()
            )
        });
        (limiter, prefix)
    }

    async fn raw(prefix: &str) -> ::redis::aio::MultiplexedConnection {
        let _ = prefix;
        let client = ::redis::Client::open(url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    async fn keys(prefix: &str) -> Vec<String> {
        let mut connection = raw(prefix).await;
        ::redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    async fn clean_up(prefix: &str) {
        let found = keys(prefix).await;
        if !found.is_empty() {
            let mut connection = raw(prefix).await;
            let _: () = ::redis::cmd("DEL")
                .arg(&found)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_under_100_concurrent_requests_admit_exactly_the_limit() {
        let (first, prefix) = limiter("exact").await;
        let second = RedisLimiter::connect_with_prefix(&url(), &prefix)
            .await
            .unwrap();
        let twenty = limits(&[("burst", 20, "1h", false), ("team", 1000, "1h", true)]);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let limiter = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let twenty = twenty.clone();
            tasks.spawn(async move {
                limiter
                    .check(&LimitRequest::new(key(1), "alice", &twenty))
                    .await
                    .unwrap()
                    .is_allowed()
            });
        }
        let admitted = tasks
            .join_all()
            .await
            .into_iter()
            .filter(|&allowed| allowed)
            .count();
        assert_eq!(admitted, 20);
        let outcome = first
            .check(&LimitRequest::new(key(2), "alice", &twenty))
            .await
            .unwrap();
        let team = outcome
            .states()
            .iter()
            .find(|s| s.name.as_str() == "team")
            .unwrap();
        assert_eq!(
            team.remaining,
            1000 - 21,
            "the shared bucket took the 20 admitted and this one"
        );
        clean_up(&prefix).await;
    }

    #[tokio::test]
    async fn a_refusal_by_one_limit_takes_nothing_from_the_others() {
        let (limiter, prefix) = limiter("all-or-nothing").await;
        let both = limits(&[("big", 100, "1h", false), ("small", 2, "1h", false)]);
        let request = LimitRequest::new(key(1), "alice", &both);
        assert!(limiter.check(&request.cost(2)).await.unwrap().is_allowed());
        let refused = limiter.check(&request).await.unwrap();
        let LimitOutcome::Refused {
            limit,
            retry_after_secs,
            ..
        } = refused
        else {
            panic!("admitted: {refused:?}")
        };
        assert_eq!(limit.as_str(), "small");
        assert!(
            (1..=1_800).contains(&retry_after_secs),
            "{retry_after_secs}"
        );
        let big_only = limits(&[("big", 100, "1h", false)]);
        let later = limiter
            .check(&LimitRequest::new(key(1), "alice", &big_only))
            .await
            .unwrap();
        assert_eq!(later.states()[0].remaining, 97);
        // A cost above a limit is refused for good and takes nothing.
        let LimitOutcome::Refused {
            cost_exceeds_limit, ..
        } = limiter.check(&request.cost(3)).await.unwrap()
        else {
            panic!("admitted a cost above the limit")
        };
        assert!(cost_exceeds_limit);
        let again = limiter
            .check(&LimitRequest::new(key(1), "alice", &big_only))
            .await
            .unwrap();
        assert_eq!(again.states()[0].remaining, 96);
        clean_up(&prefix).await;
    }

    #[tokio::test]
    async fn shared_buckets_are_the_owners_and_keys_expire_when_full_again() {
        let (limiter, prefix) = limiter("shared").await;
        let shared = limits(&[("team", 3, "1min", true), ("own", 5, "10s", false)]);
        assert!(
            limiter
                .check(&LimitRequest::new(key(1), "alice", &shared).cost(2))
                .await
                .unwrap()
                .is_allowed()
        );
        assert!(
            limiter
                .check(&LimitRequest::new(key(2), "alice", &shared))
                .await
                .unwrap()
                .is_allowed()
        );
        assert!(
            !limiter
                .check(&LimitRequest::new(key(3), "alice", &shared))
                .await
                .unwrap()
                .is_allowed()
        );
        assert!(
            limiter
                .check(&LimitRequest::new(key(3), "bob", &shared))
                .await
                .unwrap()
                .is_allowed()
        );

        let mut found = keys(&prefix).await;
        found.sort();
        let alice = owner_tag("alice");
        assert!(
            found.contains(&format!("{prefix}:{{{alice}}}:o:team")),
            "{found:?}"
        );
        assert!(
            found.contains(&format!("{prefix}:{{{alice}}}:k:{}:own", key(1))),
            "{found:?}"
        );
        assert_eq!(
            found.len(),
            5,
            "alice's team, her two keys' own, bob's team and own: {found:?}"
        );
        assert!(
            found
                .iter()
                .all(|k| !k.contains("alice") && !k.contains("bob")),
            "{found:?}"
        );
        let mut connection = raw(&prefix).await;
        for name in &found {
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(name)
                .query_async(&mut connection)
                .await
                .unwrap();
            let most = if name.ends_with(":team") {
                60_001
            } else {
                10_001
            };
            assert!((1..=most).contains(&ttl), "{name}: {ttl} ms");
        }
        // Alice's team bucket is empty: 60 s until full, 20 s until one unit.
        let team: i64 = ::redis::cmd("PTTL")
            .arg(format!("{prefix}:{{{alice}}}:o:team"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(team > 55_000, "{team}");
        clean_up(&prefix).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_typed_error_quickly() {
        let started = Instant::now();
        let error = RedisLimiter::connect("redis://127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                RedisLimitError::Unreachable(_) | RedisLimitError::TimedOut
            ),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(
            RedisLimiter::connect("not a url").await,
            Err(RedisLimitError::InvalidUrl(_))
        ));
        assert!(matches!(
            RedisLimiter::connect_with_prefix(&url(), "a{b}").await,
            Err(RedisLimitError::InvalidPrefix)
        ));
    }
}
