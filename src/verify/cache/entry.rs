//! What the cache holds: the key an entry is found under, the validated
//! record, the entry with its load epoch and deadline, how far a hit can be
//! trusted, and moka's per-entry expiry.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use time::OffsetDateTime;

use crate::key::ApiKey;
use crate::secret::TokenMac;
use crate::token::KeyId;
use crate::verify::UsageMark;

use super::config::CacheConfig;

/// What a cache entry is found under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    /// The store validator: the key id.
    Id(KeyId),
    /// A custom validator: the token's MAC under the pepper.
    Digest(TokenMac),
}

/// How far a cache hit can be trusted.
pub(super) enum Freshness {
    /// As loaded.
    Fresh,
    /// Its key changed after the load began: never serve it.
    Invalidated,
    /// Loaded before a wholesale clear: reload, serve only if the store is
    /// unreachable.
    Cleared,
}

/// A validated record: the key and, for store entries, the MAC to compare.
pub(crate) struct Record {
    pub key: ApiKey,
    /// `Some` for store entries (compared on every request); `None` for
    /// custom-validator entries, whose key already matched the token digest.
    pub mac: Option<TokenMac>,
    /// The last use noted for usage tracking.
    pub noted: UsageMark,
    /// `key.expires_at` on the system clock (taken when the record is made).
    pub expiry: Option<SystemTime>,
    /// The `RateLimit-Policy` value of each of the key's rate limits, in
    /// their order: the same for every request, written once.
    pub policies: Box<[http::HeaderValue]>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("mac", &self.mac.map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Record {
    pub(crate) fn new(key: ApiKey, mac: Option<TokenMac>) -> Record {
        let policies = key
            .rate_limits
            .iter()
            .filter_map(|l| crate::limit::policy_value(l.name(), l.limit(), l.period()))
            .collect();
        Record {
            expiry: key.expires_at.map(system_time),
            key,
            mac,
            noted: UsageMark::default(),
            policies,
        }
    }
}

/// `at` on the system clock. An instant the platform's clock cannot hold
/// (none on 64-bit Unix) becomes the epoch: such a key counts as expired.
fn system_time(at: OffsetDateTime) -> SystemTime {
    let since = at - OffsetDateTime::UNIX_EPOCH;
    let converted = if since.is_negative() {
        SystemTime::UNIX_EPOCH.checked_sub(since.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH.checked_add(since.unsigned_abs())
    };
    converted.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A cache entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// `None`: no key for this id or token (a negative entry).
    pub record: Option<Arc<Record>>,
    /// The invalidation epoch when the load that produced it began.
    pub(super) epoch: u64,
    /// When it stops being served from the cache: the TTL of its kind after
    /// the load, and never past the key's `expires_at`.
    pub(super) deadline: Instant,
}

impl Entry {
    /// The outcome of a load that began at `epoch`, to be cached as of now.
    pub(super) fn loaded(record: Option<Arc<Record>>, epoch: u64, config: &CacheConfig) -> Entry {
        let ttl = match &record {
            None => config.negative_ttl,
            Some(record) => match record.key.expires_at {
                None => config.positive_ttl,
                Some(expires_at) => {
                    let left = expires_at - OffsetDateTime::now_utc();
                    Duration::try_from(left)
                        .map(|left| left.min(config.positive_ttl))
                        .unwrap_or(Duration::ZERO)
                }
            },
        };
        let now = Instant::now();
        Entry {
            record,
            epoch,
            deadline: now.checked_add(ttl).unwrap_or(now),
        }
    }
}

/// Per-entry lifetimes for moka: each entry's own deadline, whether it
/// was inserted for a new key or replaced an older entry; a read changes
/// nothing.
pub(super) struct Expiry;

impl moka::Expiry<CacheKey, Entry> for Expiry {
    fn expire_after_create(&self, _key: &CacheKey, value: &Entry, at: Instant) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(at))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Entry,
        at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(at))
    }

    fn expire_after_read(
        &self,
        _key: &CacheKey,
        _value: &Entry,
        _at: Instant,
        current: Option<Duration>,
        _modified: Instant,
    ) -> Option<Duration> {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::cache::test_support::record;

    #[test]
    fn a_replaced_entry_gets_its_own_deadline() {
        use moka::Expiry as _;
        let now = Instant::now();
        let id = KeyId::parse("aaaaaaaaaaaaaac3").unwrap();
        let entry = |ttl| Entry {
            record: Some(record("aaaaaaaaaaaaaac3")),
            epoch: 0,
            deadline: now + ttl,
        };
        let key = CacheKey::Id(id);
        let (long, short) = (Duration::from_secs(30), Duration::from_secs(2));
        assert_eq!(
            Expiry.expire_after_create(&key, &entry(long), now),
            Some(long)
        );
        // Re-inserted with a shorter deadline (the key now expires sooner).
        assert_eq!(
            Expiry.expire_after_update(&key, &entry(short), now, Some(long)),
            Some(short)
        );
        // And with a longer one (a reload after the TTL was nearly spent).
        assert_eq!(
            Expiry.expire_after_update(&key, &entry(long), now, Some(short)),
            Some(long)
        );
        // A read keeps the deadline.
        assert_eq!(
            Expiry.expire_after_read(&key, &entry(long), now, Some(short), now),
            Some(short)
        );
    }

    #[test]
    fn expiries_convert_to_the_system_clock_exactly() {
        let now = OffsetDateTime::now_utc();
        for at in [
            now,
            now + Duration::from_secs(90 * 86_400),
            now - Duration::from_nanos(1),
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH - Duration::from_secs(86_400 * 3650),
            time::macros::datetime!(9999-12-31 23:59:59.999_999_999 UTC),
        ] {
            assert_eq!(system_time(at), SystemTime::from(at), "{at}");
            let record = Record::new(
                {
                    let mut key = ApiKey::new(KeyId::parse("aaaaaaaaaaaaaab6").unwrap(), "o");
                    key.expires_at = Some(at);
                    key
                },
                None,
            );
            assert_eq!(record.expiry, Some(SystemTime::from(at)));
        }
    }
}
