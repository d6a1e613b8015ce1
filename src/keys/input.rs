//! What callers send to create or change a key: [`NewKey`] and [`KeyUpdate`].
//!
//! Both hold the caller's raw values; every rule is checked when the
//! manager applies them, so a refusal can name the JSON field at fault.
//! Both deserialize strictly (unknown fields are an error) for the HTTP API.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::credits::{CreditsInput, present};
use super::limits::LimitsInput;
use crate::credits::Credits;
use crate::limit::RateLimits;
use crate::token::Environment;

/// The fields of a key to create. Each is checked at creation: a value
/// that breaks its rule is refused naming the field, and nothing is written.
///
/// # Example
///
/// ```
/// use keygate::NewKey;
///
/// let new = NewKey::new("alice", "ci")
///     .scopes(["workspaces:read"])
///     .expires_in("30d")
///     .description("CI pipeline");
/// # let _ = new;
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Who the key belongs to (the HTTP API defaults it to the caller's owner).
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) owner: Option<String>,
    /// 1–128 characters, unique per owner among active keys.
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) name: Option<String>,
    /// At most 1024 characters.
    #[cfg_attr(feature = "admin", schema(max_length = 1024))]
    pub(crate) description: Option<String>,
    /// The owner's organization, 1–128 characters. The HTTP API defaults it
    /// to the caller's (unless the caller holds `admin:keys`).
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) organization: Option<String>,
    /// `live` (default) or `test`. The HTTP API defaults it to the caller's
    /// (unless the caller holds `admin:keys`).
    pub(crate) environment: Option<Environment>,
    /// At most 64 `resource:action` scopes, each at most 128 characters.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) scopes: Vec<String>,
    /// `90s`, `30min`, `12h`, `30d`, `1w`, `3mo` (calendar months), `1y`
    /// (calendar years) or `never`; a bare `m` is refused as ambiguous.
    pub(crate) expires_in: Option<String>,
    /// RFC 3339, in the future.
    pub(crate) expires_at: Option<String>,
    /// At most 64 addresses or CIDR ranges.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_allow: Vec<String>,
    /// At most 64 addresses or CIDR ranges; deny wins over allow.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_deny: Vec<String>,
    /// A JSON object of at most 4 KiB (4096 bytes) serialized.
    #[cfg_attr(feature = "admin", schema(value_type = Option<Object>))]
    pub(crate) metadata: Option<serde_json::Value>,
    /// At most 8 rate limits, names unique; none by default.
    #[serde(default)]
    #[cfg_attr(
        feature = "admin",
        schema(value_type = Option<Vec<crate::key::RateLimitSchema>>, max_items = 8)
    )]
    pub(crate) rate_limits: Option<LimitsInput>,
    /// The key's credits: a balance of 0 to 10^12 that each request
    /// spends, with an optional refill that sets it back to `amount` at
    /// 00:00 UTC each day, Monday (`week`) or 1st (`month`). Absent or
    /// `null`: unlimited.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(value_type = Option<Credits>))]
    pub(crate) credits: Option<CreditsInput>,
}

impl NewKey {
    /// A key named `name` for `owner`, with no scopes, the `live`
    /// environment and the default lifetime (90 days unless configured).
    ///
    /// ```
    /// use keygate::NewKey;
    ///
    /// let new = NewKey::new("alice", "ci");
    /// assert_eq!(new.owner_name(), Some("alice"));
    /// ```
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> NewKey {
        NewKey {
            owner: Some(owner.into()),
            name: Some(name.into()),
            ..NewKey::default()
        }
    }

    /// Sets the owner (the HTTP API defaults it to the caller's owner).
    ///
    /// ```
    /// use keygate::NewKey;
    ///
    /// assert_eq!(NewKey::new("alice", "ci").owner("bob").owner_name(), Some("bob"));
    /// ```
    pub fn owner(mut self, owner: impl Into<String>) -> NewKey {
        self.owner = Some(owner.into());
        self
    }

    /// Whether an owner was given.
    ///
    /// ```
    /// use keygate::NewKey;
    ///
    /// assert!(NewKey::new("alice", "ci").has_owner());
    /// // A create body of the HTTP API may leave the owner out (the caller's is used).
    /// let body: NewKey = serde_json::from_str(r#"{"name": "ci"}"#)?;
    /// assert!(!body.has_owner());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn has_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// The owner given, if any.
    ///
    /// ```
    /// use keygate::NewKey;
    ///
    /// assert_eq!(NewKey::new("alice", "ci").owner_name(), Some("alice"));
    /// ```
    pub fn owner_name(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Free text, at most 1024 characters.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let new = NewKey::new("alice", "ci").description("the CI runner");
    /// let key = keygate.keys().create(new).await?.key;
    /// assert_eq!(key.description.as_deref(), Some("the CI runner"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn description(mut self, description: impl Into<String>) -> NewKey {
        self.description = Some(description.into());
        self
    }

    /// The owner's organization.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "ci").organization("acme")).await?.key;
    /// assert_eq!(key.organization.as_deref(), Some("acme"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn organization(mut self, organization: impl Into<String>) -> NewKey {
        self.organization = Some(organization.into());
        self
    }

    /// `live` (default) or `test`.
    ///
    /// ```
    /// # use keygate::{Environment, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").environment(Environment::Test)).await?;
    /// assert!(created.token.expose().starts_with("kg_test_"));
    /// assert_eq!(created.key.environment, Environment::Test);
    /// # Ok(())
    /// # }
    /// ```
    pub fn environment(mut self, environment: Environment) -> NewKey {
        self.environment = Some(environment);
        self
    }

    /// Replaces the scopes (at most 64, `resource:action`).
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "ci").scopes(["b:read", "a:*"])).await?.key;
    /// assert_eq!(key.scopes.to_string(), "a:* b:read"); // sorted
    /// let bad = keygate.keys().create(NewKey::new("alice", "bad").scopes(["no-colon"])).await;
    /// assert_eq!(bad.unwrap_err().field(), Some("scopes"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> NewKey
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Lifetime from now: `90s`, `30min`, `12h`, `30d`, `1w`, `3mo`, `1y`
    /// or `never` (`mo` and `y` are calendar months and years; a bare `m`
    /// is refused as ambiguous).
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "day").expires_in("24h")).await?.key;
    /// assert_eq!((key.expires_at.unwrap() - key.created_at).whole_hours(), 24);
    /// let never = keygate.keys().create(NewKey::new("alice", "forever").expires_in("never")).await?.key;
    /// assert_eq!(never.expires_at, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expires_in(mut self, lifetime: impl Into<String>) -> NewKey {
        self.expires_in = Some(lifetime.into());
        self.expires_at = None;
        self
    }

    /// Absolute expiry; must be in the future.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let at = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    /// let key = keygate.keys().create(NewKey::new("alice", "week").expires_at(at)).await?.key;
    /// assert_eq!(key.expires_at.map(|t| t.unix_timestamp()), Some(at.unix_timestamp()));
    /// let past = NewKey::new("alice", "past").expires_at(time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(keygate.keys().create(past).await.unwrap_err().field(), Some("expires_at"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn expires_at(mut self, at: OffsetDateTime) -> NewKey {
        self.expires_at = at.format(&Rfc3339).ok();
        self.expires_in = None;
        self
    }

    /// Absolute expiry as RFC 3339 text (checked at creation).
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "ci").expires_at_text("2999-01-01T00:00:00Z")).await?.key;
    /// assert_eq!(key.expires_at.unwrap().year(), 2999);
    /// let bad = keygate.keys().create(NewKey::new("alice", "bad").expires_at_text("tomorrow")).await;
    /// assert_eq!(bad.unwrap_err().field(), Some("expires_at"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn expires_at_text(mut self, at: impl Into<String>) -> NewKey {
        self.expires_at = Some(at.into());
        self.expires_in = None;
        self
    }

    /// Addresses or CIDR ranges allowed to use the key (at most 64).
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "office").ip_allow(["192.0.2.0/24", "2001:db8::1"])).await?.key;
    /// assert!(key.allows_ip("192.0.2.9".parse()?));
    /// assert!(!key.allows_ip("198.51.100.1".parse()?));
    /// # Ok(())
    /// # }
    /// ```
    pub fn ip_allow<I, S>(mut self, nets: I) -> NewKey
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_allow = nets.into_iter().map(Into::into).collect();
        self
    }

    /// Addresses or CIDR ranges refused (at most 64); deny wins over allow.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let new = NewKey::new("alice", "ci").ip_allow(["10.0.0.0/8"]).ip_deny(["10.0.0.13"]);
    /// let key = keygate.keys().create(new).await?.key;
    /// assert!(key.allows_ip("10.0.0.12".parse()?));
    /// assert!(!key.allows_ip("10.0.0.13".parse()?)); // deny wins
    /// # Ok(())
    /// # }
    /// ```
    pub fn ip_deny<I, S>(mut self, nets: I) -> NewKey
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_deny = nets.into_iter().map(Into::into).collect();
        self
    }

    /// A JSON object of at most 4 KiB.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "ci").metadata(serde_json::json!({"team": "web"}))).await?.key;
    /// assert_eq!(key.metadata["team"], "web");
    /// let array = keygate.keys().create(NewKey::new("alice", "x").metadata(serde_json::json!([1]))).await;
    /// assert_eq!(array.unwrap_err().field(), Some("metadata")); // an object only
    /// # Ok(())
    /// # }
    /// ```
    pub fn metadata(mut self, metadata: serde_json::Value) -> NewKey {
        self.metadata = Some(metadata);
        self
    }

    /// The key's rate limits (at most 8, names unique); none by default.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper, Period, RateLimit, RateLimits};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let burst = RateLimit::new("burst".parse()?, 20, Period::parse("1s")?)?;
    /// let key = keygate.keys().create(NewKey::new("alice", "ci").rate_limits(RateLimits::new(vec![burst])?)).await?.key;
    /// assert_eq!(key.rate_limits.as_slice(), [burst]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn rate_limits(mut self, limits: RateLimits) -> NewKey {
        self.rate_limits = Some(LimitsInput::Checked(limits));
        self
    }

    /// The key's credits; unlimited by default. The store must keep
    /// credits (every store of keygate does; see
    /// [`KeyStore::credits`](crate::KeyStore::credits)).
    ///
    /// ```
    /// use keygate::{Credits, NewKey, Refill, RefillEvery};
    ///
    /// let monthly = Credits::new(5000)?.with_refill(Refill::new(5000, RefillEvery::Month)?);
    /// let new = NewKey::new("alice", "metered").credits(monthly);
    /// # let _ = new;
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn credits(mut self, credits: Credits) -> NewKey {
        self.credits = Some(CreditsInput::Checked(Some(credits)));
        self
    }
}

/// Changes to an existing key. Absent fields are left as they are.
///
/// Scopes may only narrow: each new scope must be allowed by the current ones.
///
/// # Example
///
/// ```
/// use keygate::KeyUpdate;
///
/// let update = KeyUpdate::default().name("ci-2").scopes(["workspaces:read"]);
/// # let _ = update;
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    /// A new name, 1–128 characters.
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) name: Option<String>,
    /// A new description, at most 1024 characters; empty clears it.
    #[cfg_attr(feature = "admin", schema(max_length = 1024))]
    pub(crate) description: Option<String>,
    /// New metadata, replacing the old object: at most 4 KiB serialized.
    #[cfg_attr(feature = "admin", schema(value_type = Option<Object>))]
    pub(crate) metadata: Option<serde_json::Value>,
    /// A new allow list, at most 64 entries.
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_allow: Option<Vec<String>>,
    /// A new deny list, at most 64 entries.
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_deny: Option<Vec<String>>,
    /// Narrower scopes, at most 64.
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) scopes: Option<Vec<String>>,
    /// New rate limits, replacing the whole list (at most 8); `[]` removes
    /// them.
    #[serde(default)]
    #[cfg_attr(
        feature = "admin",
        schema(value_type = Option<Vec<crate::key::RateLimitSchema>>, max_items = 8)
    )]
    pub(crate) rate_limits: Option<LimitsInput>,
    /// New credits, replacing the balance and the refill (the refill
    /// schedule starts from the current period); `null` removes them (the
    /// key becomes unlimited).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<Credits>))]
    pub(crate) credits: Option<CreditsInput>,
}

impl KeyUpdate {
    /// A new name (unique per owner among active keys).
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().name("ci-2")).await?;
    /// assert_eq!(key.name, "ci-2");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> KeyUpdate {
        self.name = Some(name.into());
        self
    }

    /// A new description; an empty string clears it.
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().description("rotated monthly")).await?;
    /// assert_eq!(key.description.as_deref(), Some("rotated monthly"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn description(mut self, description: impl Into<String>) -> KeyUpdate {
        self.description = Some(description.into());
        self
    }

    /// New metadata, replacing the old object.
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().metadata(serde_json::json!({"tier": 2}))).await?;
    /// assert_eq!(key.metadata["tier"], 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn metadata(mut self, metadata: serde_json::Value) -> KeyUpdate {
        self.metadata = Some(metadata);
        self
    }

    /// A new allow list, replacing the old one.
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().ip_allow(["10.0.0.0/8"])).await?;
    /// assert!(!key.allows_ip("192.0.2.1".parse()?));
    /// let open = keygate.keys().update(&id, KeyUpdate::default().ip_allow(Vec::<String>::new())).await?;
    /// assert!(open.allows_ip("192.0.2.1".parse()?)); // an empty list allows everyone
    /// # Ok(())
    /// # }
    /// ```
    pub fn ip_allow<I, S>(mut self, nets: I) -> KeyUpdate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_allow = Some(nets.into_iter().map(Into::into).collect());
        self
    }

    /// A new deny list, replacing the old one.
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().ip_deny(["192.0.2.0/24"])).await?;
    /// assert!(!key.allows_ip("192.0.2.1".parse()?));
    /// assert!(key.allows_ip("198.51.100.1".parse()?));
    /// # Ok(())
    /// # }
    /// ```
    pub fn ip_deny<I, S>(mut self, nets: I) -> KeyUpdate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_deny = Some(nets.into_iter().map(Into::into).collect());
        self
    }

    /// Narrower scopes: each must be allowed by the key's current scopes.
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci").scopes(["reports:*"])).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().scopes(["reports:read"])).await?;
    /// assert_eq!(key.scopes.to_string(), "reports:read");
    /// let wider = keygate.keys().update(&id, KeyUpdate::default().scopes(["reports:*"])).await;
    /// assert_eq!(wider.unwrap_err().field(), Some("scopes")); // scopes only narrow
    /// # Ok(())
    /// # }
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> KeyUpdate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// New rate limits, replacing the whole list; an empty list removes
    /// them.
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper, RateLimits};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let limits: RateLimits = serde_json::from_str(r#"[{"name": "burst", "limit": 5, "period": "1s"}]"#)?;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().rate_limits(limits)).await?;
    /// assert_eq!(key.rate_limits.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn rate_limits(mut self, limits: RateLimits) -> KeyUpdate {
        self.rate_limits = Some(LimitsInput::Checked(limits));
        self
    }

    /// New credits, replacing the balance and the refill; `None` removes
    /// them (unlimited). Credits reserved before and returned after are
    /// dropped. To add to the balance or set it while keeping the refill,
    /// use [`Keys::adjust_credits`](crate::Keys::adjust_credits).
    ///
    /// ```
    /// # use keygate::{Credits, KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// let key = keygate.keys().update(&id, KeyUpdate::default().credits(Some(Credits::new(100)?))).await?;
    /// assert_eq!(key.credits.map(|c| c.remaining()), Some(100));
    /// let unlimited = keygate.keys().update(&id, KeyUpdate::default().credits(None)).await?;
    /// assert_eq!(unlimited.credits, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn credits(mut self, credits: Option<Credits>) -> KeyUpdate {
        self.credits = Some(CreditsInput::Checked(credits));
        self
    }
}
