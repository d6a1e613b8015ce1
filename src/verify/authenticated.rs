//! [`AuthenticatedKey`]: what a valid token proves, as the middleware puts
//! it in the request extensions.

use std::sync::Arc;

use time::OffsetDateTime;

use super::cache::Record;
use crate::key::ApiKey;
use crate::limit::LimitState;
use crate::scope::ScopeSet;
use crate::token::{Environment, KeyId};

/// A key that presented a valid token. Cheap to clone.
///
/// The middleware puts it in the request extensions. When the request was
/// counted against the key's rate limits, [`rate_limit`](Self::rate_limit)
/// tells where the tightest one stands.
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::Request;
/// use keygate::{AuthenticatedKey, Keygate, MemoryStore, NewKey, Pepper};
/// use tower::ServiceExt as _;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let token = keygate.keys().create(NewKey::new("alice", "ci")).await?.token;
/// let app = Router::new()
///     .route("/", get(|key: AuthenticatedKey| async move { key.owner().to_owned() }))
///     .layer(keygate.layer());
/// let request = Request::get("/").header("x-api-key", token.expose()).body(Body::empty())?;
/// let body = axum::body::to_bytes(app.oneshot(request).await?.into_body(), 64).await?;
/// assert_eq!(&body[..], b"alice");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AuthenticatedKey {
    record: Arc<Record>,
    /// The tightest rate limit after this request, when it was counted.
    limit: Option<LimitState>,
}

impl std::fmt::Debug for AuthenticatedKey {
    /// The key record only: never the stored MAC behind it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatedKey")
            .field("key", &self.record.key)
            .field("rate_limit", &self.limit)
            .finish()
    }
}

impl AuthenticatedKey {
    pub(crate) fn new(record: Arc<Record>) -> AuthenticatedKey {
        AuthenticatedKey {
            record,
            limit: None,
        }
    }

    /// The key, with the state of the tightest limit its request was
    /// counted against.
    pub(crate) fn with_limit(mut self, limit: Option<LimitState>) -> AuthenticatedKey {
        self.limit = limit;
        self
    }

    /// A key that was not looked up through the cache (tests, decisions).
    #[cfg(all(test, feature = "gateway"))]
    pub(crate) fn from_key(key: ApiKey) -> AuthenticatedKey {
        AuthenticatedKey::new(Arc::new(Record::new(key, None)))
    }

    /// The cache record behind this key (for usage tracking).
    pub(crate) fn cached(&self) -> &Record {
        &self.record
    }

    /// The key's public id.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let key = keygate.verify(created.token.expose()).await?;
    /// assert_eq!(key.id(), created.key.id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn id(&self) -> KeyId {
        self.record.key.id
    }

    /// `kg_live_<id>`: safe to log.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let key = keygate.verify(created.token.expose()).await?;
    /// assert_eq!(key.display_prefix(), &created.token.expose()[..24]); // kg_live_<id>, never the secret
    /// # Ok(())
    /// # }
    /// ```
    pub fn display_prefix(&self) -> &str {
        &self.record.key.display_prefix
    }

    /// The owner.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// assert_eq!(keygate.verify(created.token.expose()).await?.owner(), "alice");
    /// # Ok(())
    /// # }
    /// ```
    pub fn owner(&self) -> &str {
        &self.record.key.owner
    }

    /// The owner's organization.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").organization("acme")).await?;
    /// assert_eq!(keygate.verify(created.token.expose()).await?.organization(), Some("acme"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn organization(&self) -> Option<&str> {
        self.record.key.organization.as_deref()
    }

    /// `live` or `test`.
    ///
    /// ```
    /// # use keygate::{Environment, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// assert_eq!(keygate.verify(created.token.expose()).await?.environment(), Environment::Live);
    /// # Ok(())
    /// # }
    /// ```
    pub fn environment(&self) -> Environment {
        self.record.key.environment
    }

    /// The granted scopes.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper, Requirement};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").scopes(["reports:*"])).await?;
    /// let key = keygate.verify(created.token.expose()).await?;
    /// assert!(key.scopes().satisfies(&Requirement::parse("reports:read")?));
    /// # Ok(())
    /// # }
    /// ```
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.key.scopes
    }

    /// The key's metadata object.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").metadata(serde_json::json!({"plan": "pro"}))).await?;
    /// assert_eq!(keygate.verify(created.token.expose()).await?.metadata()["plan"], "pro");
    /// # Ok(())
    /// # }
    /// ```
    pub fn metadata(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.record.key.metadata
    }

    /// When the key expires, if ever.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").expires_in("never")).await?;
    /// assert_eq!(keygate.verify(created.token.expose()).await?.expires_at(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.record.key.expires_at
    }

    /// The whole record as it was when the key was validated.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").description("CI")).await?;
    /// let key = keygate.verify(created.token.expose()).await?;
    /// assert_eq!(key.record().description.as_deref(), Some("CI"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn record(&self) -> &ApiKey {
        &self.record.key
    }

    /// The `RateLimit-Policy` and `RateLimit` header values of the request's
    /// tightest limit, when it was counted (the policy from the cache, only
    /// the remainder written).
    pub(crate) fn rate_limit_headers(&self) -> Option<LimitHeaders> {
        let state = self.limit.as_ref()?;
        let position = self
            .record
            .key
            .rate_limits
            .iter()
            .position(|l| l.name() == state.name);
        let policy = match position.and_then(|i| self.record.policies.get(i)) {
            Some(policy) => policy.clone(),
            None => crate::limit::policy_value(state.name, state.limit, state.period)?,
        };
        Some(LimitHeaders {
            policy,
            rate: state.rate_value()?,
        })
    }

    /// Where the key's tightest rate limit stands after this request (the
    /// one the `RateLimit-Policy` and `RateLimit` headers describe); `None`
    /// when the request was not counted: the key has no rate limits, the
    /// cost was 0, or the check was an inspection.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Period, RateLimit, RateLimits};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let limit = RateLimit::new("burst".parse()?, 10, Period::parse("1h")?)?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").rate_limits(RateLimits::new(vec![limit])?)).await?;
    /// let client = Origin::Client("192.0.2.1".parse()?);
    /// let key = keygate.verifier().authorize(created.token.expose(), client, None).await?;
    /// assert_eq!(key.rate_limit().map(|s| s.remaining), Some(9));
    /// assert!(keygate.verify(created.token.expose()).await?.rate_limit().is_none()); // not counted
    /// # Ok(())
    /// # }
    /// ```
    pub fn rate_limit(&self) -> Option<&LimitState> {
        self.limit.as_ref()
    }
}

/// The two rate-limit header values of a counted response.
#[derive(Debug, Clone)]
pub(crate) struct LimitHeaders {
    policy: http::HeaderValue,
    rate: http::HeaderValue,
}

impl LimitHeaders {
    /// Sets them on a response, replacing any already there.
    pub(crate) fn insert(self, headers: &mut http::HeaderMap) {
        // One growth of the map, not one per header.
        headers.reserve(2);
        headers.insert(crate::limit::RATELIMIT_POLICY, self.policy);
        headers.insert(crate::limit::RATELIMIT, self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_an_authenticated_key_never_shows_the_stored_mac() {
        let key = ApiKey::new(KeyId::parse("aaaaaaaaaaaaaaa1").unwrap(), "alice");
        let key = AuthenticatedKey::new(Arc::new(Record::new(key, Some([0xab; 32]))));
        for shown in [format!("{key:?}"), format!("{:?}", key.cached())] {
            assert!(shown.contains("alice"), "{shown}");
            // 0xab = 171, as an array or in hex; a lone "171" may be in a timestamp.
            assert!(
                !shown.contains("171, 171") && !shown.to_lowercase().contains("abab"),
                "the MAC's bytes: {shown}"
            );
        }
    }
}
