//! [`KeygateBuilder`]: every setting of a [`Keygate`], checked once.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ipnet::IpNet;
use time::Duration;

use super::handle::Keygate;
use crate::audit::{Actor, AuditContext};
use crate::keys::KeyPolicy;
use crate::limit::Limiter;
use crate::middleware::{DefaultResponder, Guard, InvalidRealm, RejectionResponder};
use crate::request::{CredentialSource, Reader};
use crate::scope::ScopeCatalog;
use crate::secret::Pepper;
use crate::store::{Changes, KeyStore};
use crate::token::{Environment, InvalidPrefix, TokenFormat};
use crate::verify::feed;
use crate::verify::{CacheConfig, KeyValidator, Settings, Verifier};

impl Keygate {
    /// Starts configuring a keygate over `store`.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()) // or SqliteStore, PostgresStore, your own
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .build()?;
    /// assert_eq!(keygate.token_format().prefix(), "kg");
    /// # Ok::<(), keygate::ConfigError>(())
    /// ```
    pub fn builder(store: impl KeyStore) -> KeygateBuilder {
        KeygateBuilder::new(Arc::new(store))
    }
}

/// Configures a [`Keygate`]. Every setting has a secure default except the
/// pepper, which must be given.
///
/// ```
/// use std::time::Duration;
///
/// use keygate::{Keygate, MemoryStore, Pepper};
///
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests()) // Pepper::from_env()? in production
///     .prefix("acme")
///     .cache_ttl(Duration::from_secs(10))
///     .max_keys_per_owner(100)
///     .build()?;
/// assert_eq!(keygate.token_format().prefix(), "acme");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct KeygateBuilder {
    store: Arc<dyn KeyStore>,
    pepper: Option<Pepper>,
    prefix: String,
    max_lifetime: Option<StdDuration>,
    default_lifetime: Option<StdDuration>,
    max_keys_per_owner: u32,
    catalog: Option<ScopeCatalog>,
    cache: CacheConfig,
    validator: Option<Arc<dyn KeyValidator>>,
    environments: Vec<Environment>,
    sources: Vec<CredentialSource>,
    trusted_proxies: Vec<IpNet>,
    realm: String,
    expose_reason: bool,
    responder: Option<Arc<dyn RejectionResponder>>,
    usage_interval: Option<StdDuration>,
    changes: feed::Source,
    limiter: Limiter,
    limits_fail_closed: bool,
    clock: crate::verify::Clock,
    audit_actor: Actor,
}

impl std::fmt::Debug for KeygateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeygateBuilder")
            .field("pepper", &self.pepper)
            .field("prefix", &self.prefix)
            .field("max_lifetime", &self.max_lifetime)
            .field("default_lifetime", &self.default_lifetime)
            .field("max_keys_per_owner", &self.max_keys_per_owner)
            .field("cache", &self.cache)
            .field("environments", &self.environments)
            .field("sources", &self.sources)
            .field("realm", &self.realm)
            .field("limiter", &self.limiter)
            .field("limits_fail_closed", &self.limits_fail_closed)
            .finish_non_exhaustive()
    }
}

impl KeygateBuilder {
    /// The defaults, over `store`.
    fn new(store: Arc<dyn KeyStore>) -> KeygateBuilder {
        KeygateBuilder {
            store,
            pepper: None,
            prefix: crate::token::DEFAULT_PREFIX.to_owned(),
            max_lifetime: None,
            default_lifetime: Some(StdDuration::from_secs(90 * 86_400)),
            max_keys_per_owner: 0,
            catalog: None,
            cache: CacheConfig::default(),
            validator: None,
            environments: vec![Environment::Live, Environment::Test],
            sources: CredentialSource::defaults(),
            trusted_proxies: Vec::new(),
            realm: "keygate".to_owned(),
            expose_reason: false,
            responder: None,
            usage_interval: Some(StdDuration::from_secs(30)),
            changes: feed::Source::Store,
            limiter: Limiter::default(),
            limits_fail_closed: false,
            clock: Arc::new(time::OffsetDateTime::now_utc),
            audit_actor: Actor::default(),
        }
    }

    /// Who the audit log names for changes made through
    /// [`Keygate::keys`] without [`Keys::acting`](crate::Keys::acting).
    /// Default: [`Actor::operator`]`("library")`. The `keygate` command
    /// line sets [`Actor::cli`] with the operating-system user.
    ///
    /// ```
    /// use keygate::{Actor, AuditQuery, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .audit_actor(Actor::operator("provisioning"))
    ///     .build()?;
    /// keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let log = keygate.store().audit_log().expect("MemoryStore keeps an audit log");
    /// let page = log.audit_records(&AuditQuery::default()).await?;
    /// assert_eq!(page.records[0].actor, Actor::operator("provisioning"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn audit_actor(mut self, actor: Actor) -> Self {
        self.audit_actor = actor;
        self
    }

    /// The server-side secret keying every token's MAC. Required.
    ///
    /// ```
    /// use keygate::{ConfigError, Keygate, MemoryStore, Pepper};
    ///
    /// assert!(matches!(
    ///     Keygate::builder(MemoryStore::new()).build(),
    ///     Err(ConfigError::MissingPepper)
    /// ));
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests()) // Pepper::from_env()? in production
    ///     .build();
    /// assert!(keygate.is_ok());
    /// ```
    pub fn pepper(mut self, pepper: Pepper) -> Self {
        self.pepper = Some(pepper);
        self
    }

    /// The token prefix: 1–16 characters of `a-z0-9`. Default: `kg`.
    ///
    /// ```
    /// use keygate::{ConfigError, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .prefix("acme")
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// assert!(created.token.expose().starts_with("acme_live_"));
    ///
    /// let bad = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .prefix("Acme!")
    ///     .build();
    /// assert!(matches!(bad, Err(ConfigError::Prefix(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest lifetime a key may be given. Default: none (unlimited,
    /// and `never` is allowed).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .max_lifetime(Duration::from_secs(30 * 24 * 3600))
    ///     // The default lifetime (90 days) must fit within the maximum.
    ///     .default_lifetime(Some(Duration::from_secs(7 * 24 * 3600)))
    ///     .build()?;
    /// assert!(keygate.keys().create(NewKey::new("alice", "month").expires_in("30d")).await.is_ok());
    /// let year = keygate.keys().create(NewKey::new("alice", "year").expires_in("1y")).await;
    /// assert_eq!(year.unwrap_err().field(), Some("expires_in"));
    /// let never = keygate.keys().create(NewKey::new("alice", "never").expires_in("never")).await;
    /// assert!(never.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_lifetime(mut self, max: StdDuration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// The lifetime of keys created without `expires_in`/`expires_at`;
    /// `None` means they never expire. Default: 90 days.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .default_lifetime(Some(Duration::from_secs(3600)))
    ///     .build()?;
    /// let key = keygate.keys().create(NewKey::new("alice", "ci")).await?.key;
    /// let lifetime = key.expires_at.expect("an expiry") - key.created_at;
    /// assert_eq!(lifetime.whole_seconds(), 3600);
    /// # Ok(())
    /// # }
    /// ```
    pub fn default_lifetime(mut self, lifetime: Option<StdDuration>) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The most active keys one owner may hold; 0 is unlimited. Default: 0.
    ///
    /// ```
    /// use keygate::{KeyError, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .max_keys_per_owner(1)
    ///     .build()?;
    /// keygate.keys().create(NewKey::new("alice", "one")).await?;
    /// let two = keygate.keys().create(NewKey::new("alice", "two")).await;
    /// assert!(matches!(two, Err(KeyError::KeyLimitReached { .. })));
    /// assert!(keygate.keys().create(NewKey::new("bob", "one")).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_keys_per_owner(mut self, max: u32) -> Self {
        self.max_keys_per_owner = max;
        self
    }

    /// The application's scope catalog. Default: none (any well-formed
    /// scope is accepted).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper, ScopeCatalog};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let catalog = ScopeCatalog::new().with("workspaces:read", "List and read workspaces")?;
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .catalog(catalog)
    ///     .build()?;
    /// assert!(keygate.keys().create(NewKey::new("a", "ok").scopes(["workspaces:read"])).await.is_ok());
    /// let unknown = keygate.keys().create(NewKey::new("a", "no").scopes(["billing:read"])).await;
    /// assert_eq!(unknown.unwrap_err().field(), Some("scopes"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Most valid keys in the validation cache. Default: 100 000. The
    /// cache counts entries, not bytes: each holds one key record (its
    /// metadata is at most 4 KiB). Besides, each thread that authenticates
    /// remembers up to 16 keys it keeps serving (a key evicted from the
    /// cache may be served from there until its TTL ends; any invalidation
    /// makes every such memo stale at once).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .cache_capacity(10_000)
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// assert_eq!(keygate.cached_entries().await, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache.capacity = entries;
        self
    }

    /// Most unknown key ids remembered, in a cache of their own so that a
    /// flood of forged tokens cannot evict valid keys. Default: 10 000.
    ///
    /// ```
    /// use keygate::{InvalidReason, Keygate, MemoryStore, NewKey, Pepper, VerifyError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .negative_cache_capacity(1_000)
    ///     .build()?;
    /// // A well-formed token of no key: its id is remembered as unknown.
    /// let forged = keygate.token_format().generate(keygate::Environment::Live);
    /// assert!(matches!(
    ///     keygate.verify(forged.expose()).await,
    ///     Err(VerifyError::Invalid(InvalidReason::UnknownId))
    /// ));
    /// assert_eq!(keygate.cached_entries().await, 1); // remembered as unknown
    /// # Ok(())
    /// # }
    /// ```
    pub fn negative_cache_capacity(mut self, entries: u64) -> Self {
        self.cache.negative_capacity = entries;
        self
    }

    /// How long a validated key is cached; never past its `expires_at`.
    /// Default: 30 s. Revocations through this process take effect at once
    /// regardless, and those made elsewhere as soon as the
    /// [change feed](KeygateBuilder::change_feed) reports them; this bounds
    /// how long a change made elsewhere can go unseen should the feed miss
    /// it (or without a feed).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Arc::new(MemoryStore::new());
    /// let other = Keygate::builder(store.clone()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let keygate = Keygate::builder(store)
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .change_feed(None)
    ///     .cache_ttl(Duration::from_millis(50))
    ///     .build()?;
    /// let created = other.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?; // cached
    /// other.keys().revoke(&created.key.id, None).await?; // elsewhere, unseen
    /// assert!(keygate.verify(created.token.expose()).await.is_ok());
    /// tokio::time::sleep(Duration::from_millis(100)).await; // past the TTL
    /// assert!(keygate.verify(created.token.expose()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn cache_ttl(mut self, ttl: StdDuration) -> Self {
        self.cache.positive_ttl = ttl;
        self
    }

    /// How long an unknown key id is remembered as unknown. Default: 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .negative_cache_ttl(Duration::from_secs(1))
    ///     .build();
    /// assert!(keygate.is_ok());
    /// ```
    pub fn negative_cache_ttl(mut self, ttl: StdDuration) -> Self {
        self.cache.negative_ttl = ttl;
        self
    }

    /// Validate tokens with `validator` instead of the store. Default: the
    /// store. Management through [`Keygate::keys`] still uses the store.
    ///
    /// ```
    /// use std::convert::Infallible;
    ///
    /// use keygate::{ApiKey, KeyId, Keygate, MemoryStore, Pepper};
    ///
    /// async fn lookup(token: String) -> Result<Option<ApiKey>, Infallible> {
    ///     Ok((token == "legacy-secret").then(|| {
    ///         ApiKey::new(KeyId::parse("legacy0000000001").expect("an id"), "alice")
    ///     }))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .validator(lookup)
    ///     .build()?;
    /// assert_eq!(keygate.verify("legacy-secret").await?.owner(), "alice");
    /// assert!(keygate.verify("wrong").await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn validator(mut self, validator: impl KeyValidator) -> Self {
        self.validator = Some(Arc::new(validator));
        self
    }

    /// The environments accepted on requests; keys of others are
    /// `invalid_token`. Default: `live` and `test`.
    ///
    /// ```
    /// use keygate::{Environment, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .environments([Environment::Live]) // a production deployment
    ///     .build()?;
    /// let test = keygate.keys().create(NewKey::new("alice", "t").environment(Environment::Test)).await?;
    /// assert!(test.token.expose().starts_with("kg_test_"));
    /// assert!(keygate.verify(test.token.expose()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn environments(mut self, environments: impl IntoIterator<Item = Environment>) -> Self {
        self.environments = environments.into_iter().collect();
        self
    }

    /// Where credentials are looked for. Default: Bearer, then `X-API-Key`.
    ///
    /// ```
    /// use keygate::{CredentialSource, Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .credential_sources([CredentialSource::Bearer]) // no X-API-Key
    ///     .build()?;
    /// assert_eq!(keygate.credential_sources(), [CredentialSource::Bearer]);
    /// # Ok::<(), keygate::ConfigError>(())
    /// ```
    pub fn credential_sources(
        mut self,
        sources: impl IntoIterator<Item = CredentialSource>,
    ) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// Proxies whose `X-Forwarded-For` is believed. Default: none — the TCP
    /// peer is the client.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .trusted_proxies(["10.0.0.0/8".parse()?])
    ///     .build()?;
    /// assert_eq!(keygate.trusted_proxies(), ["10.0.0.0/8".parse::<ipnet::IpNet>()?]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// The realm in `WWW-Authenticate`. Default: `keygate`.
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::Request;
    /// use keygate::{Keygate, MemoryStore, Pepper};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .realm("acme")
    ///     .build()?;
    /// let app = Router::new().route("/", get(|| async { "hi" })).layer(keygate.layer());
    /// let response = app.oneshot(Request::get("/").body(Body::empty())?).await?;
    /// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="acme""#);
    /// # Ok(())
    /// # }
    /// ```
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Adds the precise cause (`expired`, `revoked`, …) to `invalid_token`
    /// bodies. Default: off. **Development only**: it tells callers which
    /// key ids exist.
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::Request;
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .expose_reason(true) // development only
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.keys().revoke(&created.key.id, None).await?;
    /// let app = Router::new().route("/", get(|| async { "hi" })).layer(keygate.layer());
    /// let request = Request::get("/").header("x-api-key", created.token.expose()).body(Body::empty())?;
    /// let body = axum::body::to_bytes(app.oneshot(request).await?.into_body(), 1024).await?;
    /// let json: serde_json::Value = serde_json::from_slice(&body)?;
    /// assert_eq!(json["reason"], "revoked");
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose_reason(mut self, expose: bool) -> Self {
        self.expose_reason = expose;
        self
    }

    /// Replaces the rejection responses. Default: [`DefaultResponder`];
    /// `realm` and `expose_reason` then have no effect.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use keygate::{Keygate, MemoryStore, Pepper, Rejection};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .responder(|rejection: &Rejection| {
    ///         Response::builder().status(rejection.status()).body(Bytes::from_static(b"no")).unwrap()
    ///     })
    ///     .build()?;
    /// assert_eq!(keygate.responder().respond(&Rejection::MissingToken).body(), "no");
    /// # Ok::<(), keygate::ConfigError>(())
    /// ```
    pub fn responder(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }

    /// How often usage (`last_used_at`/`last_used_ip`) is written; `None`
    /// turns usage tracking off. Default: 30 s.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .usage_flush_interval(None) // no usage tracking
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let client = Origin::Client(IpAddr::V4(Ipv4Addr::LOCALHOST));
    /// keygate.verifier().authorize(created.token.expose(), client, None).await?;
    /// assert_eq!(keygate.flush_usage().await, 0);
    /// assert_eq!(keygate.keys().get(&created.key.id).await?.last_used_at, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn usage_flush_interval(mut self, interval: Option<StdDuration>) -> Self {
        self.usage_interval = interval;
        self
    }

    /// Where the keygate hears about changes made by other processes
    /// sharing the store (another `keygate serve`, the `keygate` CLI): for
    /// each changed key it drops what its cache holds, and on a
    /// [`Change::Resync`](crate::Change::Resync) it distrusts the
    /// whole cache.
    ///
    /// Default: a subscription to the store's own
    /// [`ChangeFeed`](crate::ChangeFeed), found through
    /// [`KeyStore::change_feed`] (so also behind an `Arc<dyn KeyStore>`) and
    /// taken by [`build`](KeygateBuilder::build): `LISTEN`/`NOTIFY` with
    /// PostgreSQL, polling of `keygate_changes` (every 200 ms) with an
    /// SQLite file, none with [`MemoryStore`](crate::MemoryStore). `Some`
    /// follows the given subscription instead (a feed of your own, or a
    /// store wrapper that does not forward `change_feed`); `None` follows
    /// nothing, and changes made elsewhere are then seen only when cache
    /// entries expire ([`cache_ttl`](KeygateBuilder::cache_ttl)).
    ///
    /// Following needs a tokio runtime when `build` is called (without
    /// one, a warning says changes are not followed). It stops, and the
    /// subscription is dropped, with the keygate's last clone.
    ///
    /// ```
    /// use keygate::{Change, Changes, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (sender, changes) = Changes::channel(16); // a feed of your own
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .change_feed(Some(changes))
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// assert!(sender.send(Change::Key(created.key.id)).await); // followed while the keygate lives
    /// drop(keygate);
    /// sender.closed().await; // the last clone dropped the subscription
    /// # Ok(())
    /// # }
    /// ```
    pub fn change_feed(mut self, changes: Option<Changes>) -> Self {
        self.changes = match changes {
            Some(changes) => feed::Source::Given(changes),
            None => feed::Source::Off,
        };
        self
    }

    /// Where the buckets of the keys' rate limits are kept. Default: a
    /// [`LocalLimiter`](crate::LocalLimiter) in this process (exact for one
    /// instance); a [`RedisLimiter`](crate::RedisLimiter) (feature `redis`)
    /// shares them exactly between every instance on one Redis.
    ///
    /// ```
    /// use keygate::{Keygate, LocalLimiter, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .limiter(LocalLimiter::with_max_buckets(10_000))
    ///     .build();
    /// assert!(keygate.is_ok());
    /// ```
    pub fn limiter(mut self, limiter: impl Into<Limiter>) -> Self {
        self.limiter = limiter.into();
        self
    }

    /// What a request counted against rate limits gets when the limiter
    /// cannot be reached (Redis down or too slow: it answers within one
    /// second or is deemed unreachable). `false` (the default) admits it
    /// uncounted — failing open, warned about once per outage in the logs
    /// and counted by [`Verifier::limiter_failures`]; `true` refuses it 503
    /// `unavailable` with `Retry-After: 1`. Keys without rate limits are
    /// never affected, and the in-process limiter never fails.
    ///
    /// ```
    /// use keygate::{Keygate, LocalLimiter, MemoryStore, Pepper};
    ///
    /// // The in-process limiter never fails: the setting matters with Redis.
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .limiter(LocalLimiter::new())
    ///     .limits_fail_closed(true)
    ///     .build()?;
    /// assert_eq!(keygate.verifier().limiter_failures(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limits_fail_closed(mut self, fail_closed: bool) -> Self {
        self.limits_fail_closed = fail_closed;
        self
    }

    /// The wall clock that credit refills are judged by (a refill falls due
    /// at 00:00 UTC of its day, Monday or 1st), and the time the store is
    /// given when key management writes (a new balance's refill schedule
    /// starts from it, and it decides which keys count against the
    /// per-owner maximum). Record timestamps and expiry keep the system
    /// clock. Default: the system clock, `OffsetDateTime::now_utc`. For
    /// tests that cross a refill boundary without waiting for it; every
    /// process sharing a store should agree with the others' clocks.
    pub fn clock(
        mut self,
        clock: impl Fn() -> time::OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the keygate.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the pepper is missing, the prefix or realm is
    /// invalid, the lifetimes contradict each other, or a size or interval
    /// is zero.
    ///
    /// ```
    /// use keygate::{ConfigError, Keygate, MemoryStore, Pepper};
    ///
    /// let missing = Keygate::builder(MemoryStore::new()).build();
    /// assert!(matches!(missing, Err(ConfigError::MissingPepper)));
    /// let bad_realm = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .realm("a \"quoted\" realm")
    ///     .build();
    /// assert!(matches!(bad_realm, Err(ConfigError::Realm(_))));
    /// ```
    pub fn build(self) -> Result<Keygate, ConfigError> {
        let pepper = self.pepper.ok_or(ConfigError::MissingPepper)?;
        let format = TokenFormat::new(&self.prefix)?;
        let to_time = |d: StdDuration| {
            Duration::try_from(d).map_err(|_| ConfigError::Invalid("lifetime is too large"))
        };
        let max_lifetime = self.max_lifetime.map(to_time).transpose()?;
        let default_lifetime = self.default_lifetime.map(to_time).transpose()?;
        match (default_lifetime, max_lifetime) {
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "a default lifetime of never is not allowed with a maximum lifetime",
                ));
            }
            (Some(d), Some(max)) if d > max => {
                return Err(ConfigError::Invalid(
                    "the default lifetime exceeds the maximum lifetime",
                ));
            }
            (Some(d), _) if d < Duration::SECOND => {
                return Err(ConfigError::Invalid(
                    "the default lifetime must be at least one second",
                ));
            }
            _ => {}
        }
        if self.cache.capacity == 0 {
            return Err(ConfigError::Invalid(
                "the cache capacity must be at least 1",
            ));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one credential source is needed",
            ));
        }
        if self.environments.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one environment must be accepted",
            ));
        }
        if self.usage_interval.is_some_and(|i| i.is_zero()) {
            return Err(ConfigError::Invalid(
                "the usage flush interval must not be zero",
            ));
        }
        let responder = match self.responder {
            Some(responder) => responder,
            None => Arc::new(DefaultResponder::new(&self.realm)?.expose_reason(self.expose_reason)),
        };
        if self.store.audit_log().is_none() {
            tracing::warn!(
                "this key store keeps no audit log (it does not implement AuditLog): \
                 key changes are written without audit records"
            );
        }
        let verifier = Verifier::new(Settings {
            store: self.store,
            pepper,
            format,
            cache: self.cache,
            validator: self.validator,
            environments: self.environments,
            usage_interval: self.usage_interval,
            changes: self.changes,
            limiter: self.limiter,
            limits_fail_closed: self.limits_fail_closed,
            clock: self.clock,
        });
        let guard = Guard {
            verifier,
            reader: Reader::new(self.sources, self.trusted_proxies),
            responder,
        };
        let policy = KeyPolicy {
            max_lifetime,
            default_lifetime,
            max_keys_per_owner: self.max_keys_per_owner,
            catalog: self.catalog,
        };
        Ok(Keygate::new(
            guard,
            policy,
            AuditContext::new(self.audit_actor),
        ))
    }
}

/// An invalid [`KeygateBuilder`] configuration.
///
/// ```
/// use keygate::{ConfigError, Keygate, MemoryStore};
///
/// let error = Keygate::builder(MemoryStore::new()).build().unwrap_err();
/// assert!(matches!(error, ConfigError::MissingPepper));
/// assert_eq!(error.to_string(), "a pepper is required (see Pepper::from_env)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No pepper was given.
    #[error("a pepper is required (see Pepper::from_env)")]
    MissingPepper,
    /// The token prefix is invalid.
    #[error(transparent)]
    Prefix(#[from] InvalidPrefix),
    /// The realm cannot be used in a header.
    #[error(transparent)]
    Realm(#[from] InvalidRealm),
    /// Settings that contradict each other or are out of range.
    #[error("{0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn builder() -> KeygateBuilder {
        Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests())
    }

    #[test]
    fn build_requires_a_pepper() {
        assert!(matches!(
            Keygate::builder(MemoryStore::new()).build(),
            Err(ConfigError::MissingPepper)
        ));
        assert!(builder().build().is_ok());
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        assert!(matches!(
            builder().prefix("Bad!").build(),
            Err(ConfigError::Prefix(_))
        ));
        assert!(matches!(
            builder().realm("a\"b").build(),
            Err(ConfigError::Realm(_))
        ));
        let day = StdDuration::from_secs(86_400);
        assert!(
            builder().max_lifetime(day).build().is_err(),
            "90d default > 1d max"
        );
        assert!(
            builder()
                .max_lifetime(day)
                .default_lifetime(None)
                .build()
                .is_err()
        );
        assert!(builder().max_lifetime(day * 100).build().is_ok());
        assert!(
            builder()
                .default_lifetime(Some(StdDuration::ZERO))
                .build()
                .is_err()
        );
        assert!(builder().cache_capacity(0).build().is_err());
        assert!(builder().credential_sources([]).build().is_err());
        assert!(builder().environments([]).build().is_err());
        assert!(
            builder()
                .usage_flush_interval(Some(StdDuration::ZERO))
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_does_not_show_the_pepper() {
        let gate = builder().build().unwrap();
        let debug = format!("{gate:?}");
        assert!(
            debug
                .starts_with("Keygate { verifier: Verifier { pepper: Pepper([redacted]), format: "),
            "{debug}"
        );
        let debug = format!("{:?}", builder());
        assert!(
            debug.starts_with("KeygateBuilder { pepper: Some(Pepper([redacted])), prefix: "),
            "{debug}"
        );
    }
}
