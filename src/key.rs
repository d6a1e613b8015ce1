//! The key record: everything known about a key except its secret.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::credits::Credits;
use crate::limit::RateLimits;
use crate::scope::ScopeSet;
use crate::secret::TokenMac;
use crate::token::{Environment, KeyId};

/// Whether a key can be used now.
///
/// ```
/// use keygate::KeyStatus;
///
/// assert_eq!(serde_json::to_string(&KeyStatus::Expired).unwrap(), r#""expired""#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Neither revoked nor expired.
    Active,
    /// Past its `expires_at`.
    Expired,
    /// Revoked (revocation wins over expiry).
    Revoked,
}

impl KeyStatus {
    /// The lowercase name used in JSON.
    ///
    /// ```
    /// use keygate::KeyStatus;
    ///
    /// assert_eq!(KeyStatus::Revoked.as_str(), "revoked");
    /// assert_eq!(serde_json::to_string(&KeyStatus::Active).unwrap(), r#""active""#);
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

/// A key's record. It never holds the token or its MAC.
///
/// Serialized with the field names below, a computed `status` field
/// (`active`, `expired` or `revoked`) and RFC 3339 UTC timestamps.
///
/// Fields may be added in a minor release, so outside keygate a record is
/// made with [`ApiKey::new`], then its public fields are set:
///
/// ```
/// use keygate::{ApiKey, KeyId, ScopeSet};
///
/// let mut key = ApiKey::new(KeyId::parse("legacy0000000001").unwrap(), "alice");
/// key.scopes = ScopeSet::parse(["reports:read"]).unwrap();
/// assert_eq!(key.owner, "alice");
/// ```
///
/// ```compile_fail
/// # use keygate::{ApiKey, KeyId};
/// let key = ApiKey::new(KeyId::parse("legacy0000000001").unwrap(), "alice");
/// let copy = ApiKey { owner: "bob".into(), ..key }; // no struct literal
/// ```
///
/// # Example
///
/// ```
/// use keygate::{ApiKey, KeyStatus};
/// use time::OffsetDateTime;
///
/// # fn check(key: &ApiKey) {
/// if key.status_at(OffsetDateTime::now_utc()) == KeyStatus::Active {
///     println!("{} may be used", key.display_prefix);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ApiKey {
    /// Public, unique id: the lookup key.
    pub id: KeyId,
    /// `kg_live_<id>`: what listings and logs show.
    pub display_prefix: String,
    /// Human name, unique per owner among active keys.
    pub name: String,
    /// Free text, at most 1024 characters.
    pub description: Option<String>,
    /// Who the key belongs to.
    pub owner: String,
    /// Optional organization of the owner.
    pub organization: Option<String>,
    /// `live` or `test`.
    pub environment: Environment,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Addresses allowed to use the key; empty allows every address.
    pub ip_allow: Vec<IpNet>,
    /// Addresses refused; deny wins over allow.
    pub ip_deny: Vec<IpNet>,
    /// A JSON object of at most 4 KiB.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change to the record (usage tracking does not count).
    pub updated_at: OffsetDateTime,
    /// The first second at which the key is refused; `None` never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Last authenticated use, written in the background.
    pub last_used_at: Option<OffsetDateTime>,
    /// Client address of the last use.
    pub last_used_ip: Option<IpAddr>,
    /// When the key was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// The key that replaced this one in a rotation.
    pub superseded_by: Option<KeyId>,
    /// Rate limits checked on every authorized request after the IP lists
    /// and the route's scopes; empty: none.
    pub rate_limits: RateLimits,
    /// The key's credits: a balance each authorized request spends, with
    /// an optional refill; `None`: unlimited. As read from a store, the
    /// balance as the store holds it, with a refill that fell due applied.
    pub credits: Option<Credits>,
}

impl ApiKey {
    /// A record for `owner` with every other field empty: no scopes, the
    /// `live` environment, no expiry, created now. For custom
    /// [`KeyValidator`](crate::KeyValidator)s, which then set the public
    /// fields they need.
    ///
    /// ```
    /// use keygate::{ApiKey, KeyId, KeyStatus};
    ///
    /// let key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// assert_eq!(key.id.as_str(), "0000000000000001");
    /// assert_eq!(key.owner, "alice");
    /// assert!(key.scopes.is_empty());
    /// assert_eq!(key.status_at(time::OffsetDateTime::now_utc()), KeyStatus::Active);
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn new(id: KeyId, owner: impl Into<String>) -> ApiKey {
        let now = OffsetDateTime::now_utc();
        ApiKey {
            id,
            display_prefix: id.to_string(),
            name: String::new(),
            description: None,
            owner: owner.into(),
            organization: None,
            environment: Environment::Live,
            scopes: ScopeSet::default(),
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
            metadata: serde_json::Map::new(),
            created_at: now,
            updated_at: now,
            expires_at: None,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            revoked_reason: None,
            superseded_by: None,
            rate_limits: RateLimits::empty(),
            credits: None,
        }
    }

    /// The key's status at `now`.
    ///
    /// ```
    /// use keygate::{ApiKey, KeyId, KeyStatus};
    /// use time::{Duration, OffsetDateTime};
    ///
    /// let now = OffsetDateTime::now_utc();
    /// let mut key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// key.expires_at = Some(now + Duration::hours(1));
    /// assert_eq!(key.status_at(now), KeyStatus::Active);
    /// assert_eq!(key.status_at(now + Duration::hours(1)), KeyStatus::Expired); // at the exact second
    /// key.revoked_at = Some(now);
    /// assert_eq!(key.status_at(now), KeyStatus::Revoked);
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn status_at(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| now >= at) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Whether `ip` may use this key: not in a deny range, and inside an
    /// allow range when the allow list is not empty.
    ///
    /// ```
    /// use keygate::{ApiKey, KeyId};
    ///
    /// let mut key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// assert!(key.allows_ip("203.0.113.9".parse()?)); // no lists: everyone
    /// key.ip_allow = vec!["10.0.0.0/8".parse()?];
    /// key.ip_deny = vec!["10.0.0.13/32".parse()?];
    /// assert!(key.allows_ip("10.1.2.3".parse()?));
    /// assert!(!key.allows_ip("10.0.0.13".parse()?));
    /// assert!(!key.allows_ip("203.0.113.9".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if self.ip_deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.ip_allow.is_empty() || self.ip_allow.iter().any(|net| net.contains(&ip))
    }

    /// Whether the key counts against name uniqueness and the per-owner
    /// limit: active and not superseded by a rotation.
    ///
    /// ```
    /// use keygate::{ApiKey, KeyId};
    ///
    /// let now = time::OffsetDateTime::now_utc();
    /// let mut key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// assert!(key.is_current(now));
    /// key.superseded_by = Some(KeyId::parse("0000000000000002")?); // rotated
    /// assert!(!key.is_current(now));
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.status_at(now) == KeyStatus::Active && self.superseded_by.is_none()
    }
}

/// The current time, truncated to whole seconds (the resolution of every
/// stored timestamp).
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is matched as IPv4.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A record as stores keep it: the public record, the token's MAC and a
/// revision counter for optimistic concurrency.
#[derive(Clone, PartialEq)]
pub struct StoredKey {
    /// The public record.
    pub key: ApiKey,
    /// HMAC-SHA256 of the token under the pepper.
    pub mac: TokenMac,
    /// Bumped by every change except usage tracking.
    pub revision: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("key", &self.key)
            .field("mac", &"[redacted]")
            .field("revision", &self.revision)
            .finish()
    }
}

/// The JSON form of a key record; it never holds the token or its MAC.
/// The OpenAPI schema `ApiKey` is generated from this struct.
#[derive(Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema), schema(as = ApiKey))]
struct ApiKeyJson<'a> {
    /// Public, unique id (16 base62 characters).
    #[cfg_attr(feature = "admin", schema(value_type = String, example = "3xk2Hq9ZL0aBcDeF"))]
    id: &'a KeyId,
    /// `kg_live_<id>`: safe to show and log.
    #[cfg_attr(feature = "admin", schema(value_type = String))]
    display_prefix: &'a str,
    /// Unique per owner among active keys.
    #[cfg_attr(feature = "admin", schema(value_type = String))]
    name: &'a str,
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    description: &'a Option<String>,
    #[cfg_attr(feature = "admin", schema(value_type = String))]
    owner: &'a str,
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    organization: &'a Option<String>,
    environment: Environment,
    /// Granted `resource:action` scopes.
    #[cfg_attr(feature = "admin", schema(value_type = Vec<String>))]
    scopes: &'a ScopeSet,
    /// Allowed addresses or CIDR ranges; empty allows all.
    #[cfg_attr(feature = "admin", schema(value_type = Vec<String>))]
    ip_allow: &'a [IpNet],
    /// Denied addresses or CIDR ranges; deny wins.
    #[cfg_attr(feature = "admin", schema(value_type = Vec<String>))]
    ip_deny: &'a [IpNet],
    /// A JSON object of at most 4 KiB.
    #[cfg_attr(feature = "admin", schema(value_type = Object))]
    metadata: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    last_used_ip: Option<IpAddr>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    revoked_reason: &'a Option<String>,
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    superseded_by: &'a Option<KeyId>,
    /// The key's rate limits (`[]`: none): at most 8, names unique.
    #[cfg_attr(feature = "admin", schema(value_type = Vec<RateLimitSchema>, max_items = 8))]
    rate_limits: &'a RateLimits,
    /// The key's credits: `remaining` as the store holds it, and the
    /// refill; `null`: unlimited.
    #[cfg_attr(feature = "admin", schema(value_type = Option<Credits>))]
    credits: Option<Credits>,
    status: KeyStatus,
}

/// The OpenAPI schema `RateLimit`: one rate limit of a key, a
/// token bucket of capacity `limit` refilled continuously at
/// `limit / period`. Schema only: the value is a [`RateLimit`](crate::RateLimit).
#[cfg(feature = "admin")]
#[derive(utoipa::ToSchema)]
#[schema(as = RateLimit)]
#[allow(dead_code)]
pub(crate) struct RateLimitSchema {
    /// Unique among the key's limits: 1 to 32 of `a-z`, `0-9`, `_`, `-`.
    #[schema(
        pattern = "^[a-z0-9_-]{1,32}$",
        min_length = 1,
        max_length = 32,
        example = "burst"
    )]
    name: String,
    /// Units of cost per period, the bucket's capacity.
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 20)]
    limit: u64,
    /// `1s` to `1d`, a whole number and a unit `s`, `min`, `h` or `d`
    /// (a bare `m` is refused as ambiguous). Requests may also give whole
    /// seconds (1 to 86400); records always show text.
    #[schema(pattern = "^[0-9]+(s|min|h|d)$", example = "1s")]
    period: String,
    /// Whether the bucket is the owner's, shared by every key of the owner
    /// with a limit of this name. Default: false (records omit it then).
    #[schema(default = false)]
    shared: Option<bool>,
}

#[cfg(feature = "admin")]
impl utoipa::PartialSchema for ApiKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <ApiKeyJson<'static> as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "admin")]
impl utoipa::ToSchema for ApiKey {
    fn name() -> std::borrow::Cow<'static, str> {
        "ApiKey".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ApiKeyJson<'static> as utoipa::ToSchema>::schemas(schemas);
    }
}

impl Serialize for ApiKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ApiKeyJson {
            id: &self.id,
            display_prefix: &self.display_prefix,
            name: &self.name,
            description: &self.description,
            owner: &self.owner,
            organization: &self.organization,
            environment: self.environment,
            scopes: &self.scopes,
            ip_allow: &self.ip_allow,
            ip_deny: &self.ip_deny,
            metadata: &self.metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            last_used_ip: self.last_used_ip,
            revoked_at: self.revoked_at,
            revoked_reason: &self.revoked_reason,
            superseded_by: &self.superseded_by,
            rate_limits: &self.rate_limits,
            credits: self.credits,
            status: self.status_at(OffsetDateTime::now_utc()),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::Duration;

    pub(crate) fn sample(now: OffsetDateTime) -> ApiKey {
        let id = KeyId::parse("0123456789abcdef").unwrap();
        ApiKey {
            id,
            display_prefix: format!("kg_live_{id}"),
            name: "ci".into(),
            description: None,
            owner: "alice".into(),
            organization: None,
            environment: Environment::Live,
            scopes: ScopeSet::parse(["workspaces:read"]).unwrap(),
            ip_allow: vec![],
            ip_deny: vec![],
            metadata: serde_json::Map::new(),
            created_at: now,
            updated_at: now,
            expires_at: None,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            revoked_reason: None,
            superseded_by: None,
            rate_limits: RateLimits::empty(),
            credits: None,
        }
    }

    #[test]
    fn key_expires_at_the_exact_second() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut key = sample(now);
        key.expires_at = Some(now + Duration::seconds(10));
        assert_eq!(
            key.status_at(now + Duration::milliseconds(9_999)),
            KeyStatus::Active
        );
        assert_eq!(
            key.status_at(now + Duration::seconds(10)),
            KeyStatus::Expired
        );
        key.revoked_at = Some(now);
        assert_eq!(key.status_at(now), KeyStatus::Revoked);
    }

    #[test]
    fn deny_wins_over_allow_and_empty_allow_allows_all() {
        let now = OffsetDateTime::now_utc();
        let mut key = sample(now);
        assert!(key.allows_ip("203.0.113.9".parse().unwrap()));
        key.ip_allow = vec!["10.0.0.0/8".parse().unwrap()];
        key.ip_deny = vec!["10.1.0.0/16".parse().unwrap()];
        assert!(key.allows_ip("10.2.3.4".parse().unwrap()));
        assert!(!key.allows_ip("10.1.3.4".parse().unwrap()));
        assert!(!key.allows_ip("192.168.0.1".parse().unwrap()));
        assert!(key.allows_ip("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!key.allows_ip("::ffff:10.1.3.4".parse().unwrap()));
    }

    #[test]
    fn json_has_spec_fields_rfc3339_and_status() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let key = sample(now);
        let json = serde_json::to_value(&key).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for f in [
            "id",
            "display_prefix",
            "name",
            "description",
            "owner",
            "organization",
            "environment",
            "scopes",
            "ip_allow",
            "ip_deny",
            "metadata",
            "created_at",
            "updated_at",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
            "revoked_reason",
            "superseded_by",
            "rate_limits",
            "credits",
            "status",
        ] {
            assert!(fields.contains(&f), "missing {f}");
        }
        assert_eq!(fields.len(), 22);
        assert_eq!(json["rate_limits"], serde_json::json!([]));
        assert_eq!(json["credits"], serde_json::Value::Null);
        assert_eq!(json["created_at"], "2027-01-15T08:00:00Z");
        assert_eq!(json["status"], "active");
        assert_eq!(json["scopes"], serde_json::json!(["workspaces:read"]));
    }
}
