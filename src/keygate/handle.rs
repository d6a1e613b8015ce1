//! [`Keygate`], the handle everything hangs off.

use std::sync::Arc;

use crate::audit::AuditContext;
use crate::keys::{KeyPolicy, Keys};
use crate::middleware::{ApiKeyLayer, Guard, RejectionResponder, RequireScopeLayer};
use crate::request::CredentialSource;
use crate::scope::{Requirement, RequirementError, ScopeCatalog};
use crate::store::KeyStore;
use crate::token::{KeyId, TokenFormat};
use crate::verify::{AuthenticatedKey, Verifier, VerifyError};

/// The keygate handle: the [`Verifier`] (the engine), the request-side
/// settings, the rejection responses and the key policy. It hands out the
/// middleware ([`layer`](Keygate::layer), [`require`](Keygate::require))
/// and key management ([`keys`](Keygate::keys)). Cheap to clone (an `Arc`
/// inside); clones share the cache.
///
/// # Example
///
/// ```
/// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let created = keygate.keys().create(NewKey::new("alice", "ci").scopes(["workspaces:read"])).await?;
/// let key = keygate.verify(created.token.expose()).await?;
/// assert_eq!(key.owner(), "alice");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Keygate {
    inner: Arc<Inner>,
}

struct Inner {
    guard: Arc<Guard>,
    policy: KeyPolicy,
    /// Who changes made through [`Keygate::keys`] are recorded as made by.
    audit: AuditContext,
}

impl std::fmt::Debug for Keygate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Keygate")
            .field("verifier", &inner.guard.verifier)
            .field("policy", &inner.policy)
            .field("reader", &inner.guard.reader)
            .finish_non_exhaustive()
    }
}

impl Keygate {
    /// The handle over `guard`, with `policy` for key management.
    pub(super) fn new(guard: Guard, policy: KeyPolicy, audit: AuditContext) -> Keygate {
        Keygate {
            inner: Arc::new(Inner {
                guard: Arc::new(guard),
                policy,
                audit,
            }),
        }
    }

    /// The engine: every check from a token to an [`AuthenticatedKey`].
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let key = keygate.verifier().authorize(created.token.expose(), Origin::Inspection, None).await?;
    /// assert_eq!(key.owner(), "alice");
    /// # Ok(())
    /// # }
    /// ```
    pub fn verifier(&self) -> &Verifier {
        &self.inner.guard.verifier
    }

    /// What the middleware and the gateway share.
    #[cfg(feature = "gateway")]
    pub(crate) fn guard(&self) -> &Arc<Guard> {
        &self.inner.guard
    }

    /// Key management: create, list, update, revoke, rotate, delete.
    /// Each change is recorded in the store's audit log (when it keeps
    /// one) as made by the [default actor](crate::KeygateBuilder::audit_actor),
    /// or by whom [`Keys::acting`] names.
    ///
    /// ```
    /// use keygate::{Keygate, ListQuery, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// assert_eq!(keygate.keys().list(&ListQuery::default()).await?.keys.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn keys(&self) -> Keys<'_> {
        Keys::new(self.verifier(), &self.inner.policy, &self.inner.audit)
    }

    /// The middleware authenticating every request.
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{Request, StatusCode};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let app = Router::new().route("/", get(|| async { "hi" })).layer(keygate.layer());
    /// let response = app.oneshot(Request::get("/").body(Body::empty())?).await?;
    /// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer(&self) -> ApiKeyLayer {
        ApiKeyLayer::new(self.inner.guard.clone())
    }

    /// A route layer refusing keys whose scopes do not satisfy `expr`
    /// (403 `insufficient_scope`). Put it inside [`Keygate::layer`].
    ///
    /// # Errors
    ///
    /// [`RequirementError`] when `expr` does not parse.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let layer = keygate.require("workspaces:read and (templates:use or templates:*)")?;
    /// assert_eq!(layer.requirement().to_string(), "workspaces:read and (templates:use or templates:*)");
    /// assert!(keygate.require("workspaces:read and").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn require(&self, expr: &str) -> Result<RequireScopeLayer, RequirementError> {
        let requirement = Requirement::parse(expr)?;
        Ok(RequireScopeLayer::new(
            Arc::new(requirement),
            self.inner.guard.responder.clone(),
        ))
    }

    /// Verifies a presented token: offline checks, then the cache, then (on
    /// a miss) the store or the custom validator. IP lists, scopes and
    /// usage are [`Verifier::authorize`]'s.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Invalid`] with the precise reason, or
    /// [`VerifyError::Unavailable`] when the store fails and the key is not
    /// cached.
    ///
    /// ```
    /// use keygate::{InvalidReason, Keygate, MemoryStore, NewKey, Pepper, VerifyError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// assert_eq!(keygate.verify(created.token.expose()).await?.id(), created.key.id);
    /// assert!(matches!(
    ///     keygate.verify("kg_live_not-a-token").await,
    ///     Err(VerifyError::Invalid(InvalidReason::Malformed))
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify(&self, token: &str) -> Result<AuthenticatedKey, VerifyError> {
        self.verifier().verify(token).await
    }

    /// The store behind this keygate.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let stored = keygate.store().get(&created.key.id).await?.expect("stored");
    /// assert_eq!(stored.key.owner, "alice");
    /// assert_eq!(stored.mac, Pepper::insecure_fixed_for_tests().mac(created.token.expose()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        self.verifier().store()
    }

    /// The token format (prefix) in use.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert_eq!(keygate.token_format().prefix(), "kg");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token_format(&self) -> &TokenFormat {
        self.verifier().token_format()
    }

    /// The scope catalog, when one is configured.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper, ScopeCatalog};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .catalog(ScopeCatalog::new().with("reports:read", "Read reports")?)
    ///     .build()?;
    /// assert!(keygate.catalog().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn catalog(&self) -> Option<&ScopeCatalog> {
        self.inner.policy.catalog.as_ref()
    }

    /// The response builder for rejections.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper, Rejection};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let response = keygate.responder().respond(&Rejection::IpNotAllowed);
    /// assert_eq!(response.status(), 403);
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// # Ok::<(), keygate::ConfigError>(())
    /// ```
    pub fn responder(&self) -> &Arc<dyn RejectionResponder> {
        &self.inner.guard.responder
    }

    /// Where credentials are looked for.
    ///
    /// ```
    /// use keygate::{CredentialSource, Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert_eq!(keygate.credential_sources(), CredentialSource::defaults());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn credential_sources(&self) -> &[CredentialSource] {
        self.inner.guard.reader.sources()
    }

    /// The proxies whose `X-Forwarded-For` is believed.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert!(keygate.trusted_proxies().is_empty()); // the default: the TCP peer is the client
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        self.inner.guard.reader.trusted_proxies()
    }

    /// Drops the cached entries of key `id` at once. [`Keygate::keys`] calls
    /// it on every change; call it yourself when keys change behind
    /// keygate's back.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// assert_eq!(keygate.cached_entries().await, 1);
    /// keygate.invalidate(created.key.id).await;
    /// assert_eq!(keygate.cached_entries().await, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invalidate(&self, id: KeyId) {
        self.verifier().invalidate(id);
    }

    /// Distrusts every cached entry: each is read from the store again on
    /// its next use. While the store cannot answer, an entry is still served
    /// until its TTL runs out (entries invalidated by id never are).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = std::sync::Arc::new(MemoryStore::new());
    /// let other = Keygate::builder(store.clone()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let keygate = Keygate::builder(store)
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .change_feed(None)
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?; // cached
    /// other.keys().revoke(&created.key.id, None).await?; // elsewhere, unseen
    /// assert!(keygate.verify(created.token.expose()).await.is_ok());
    /// keygate.invalidate_all(); // every entry is read from the store again
    /// assert!(keygate.verify(created.token.expose()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn invalidate_all(&self) {
        self.verifier().invalidate_all();
    }

    /// Writes pending usage (`last_used_at` / `last_used_ip`) now. Call it
    /// on graceful shutdown; returns how many keys were written.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let client = Origin::Client(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    /// keygate.verifier().authorize(created.token.expose(), client, None).await?;
    /// assert_eq!(keygate.flush_usage().await, 1);
    /// let record = keygate.keys().get(&created.key.id).await?;
    /// assert_eq!(record.last_used_ip, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush_usage(&self) -> usize {
        self.verifier().flush_usage().await
    }

    /// Entries in the validation cache (after pending maintenance).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert_eq!(keygate.cached_entries().await, 0);
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// assert_eq!(keygate.cached_entries().await, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cached_entries(&self) -> u64 {
        self.verifier().cached_entries()
    }
}
