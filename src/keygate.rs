//! [`Keygate`], the handle everything hangs off, and its builder.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::keys::{KeyPolicy, Keys};
use crate::scope::ScopeCatalog;
use crate::secret::Pepper;
use crate::store::KeyStore;
use crate::token::{InvalidPrefix, TokenFormat};

/// The keygate engine: a store, the pepper, the token format and the key
/// policy. Cheap to clone (an `Arc` inside).
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn KeyStore>,
    pub(crate) pepper: Pepper,
    pub(crate) format: TokenFormat,
    pub(crate) policy: KeyPolicy,
}

impl std::fmt::Debug for Keygate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keygate")
            .field("pepper", &self.inner.pepper)
            .field("format", &self.inner.format)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Keygate {
    /// Starts configuring a keygate over `store`.
    pub fn builder(store: impl KeyStore) -> KeygateBuilder {
        KeygateBuilder {
            store: Arc::new(store),
            pepper: None,
            prefix: crate::token::DEFAULT_PREFIX.to_owned(),
            max_lifetime: None,
            default_lifetime: Some(std::time::Duration::from_secs(90 * 86_400)),
            max_keys_per_owner: 0,
            catalog: None,
        }
    }

    /// Key management: create, list, update, revoke, rotate, delete.
    pub fn keys(&self) -> Keys<'_> {
        Keys::new(self)
    }

    /// The store behind this keygate.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The token format (prefix) in use.
    pub fn token_format(&self) -> &TokenFormat {
        &self.inner.format
    }

    /// The scope catalog, when one is configured.
    pub fn catalog(&self) -> Option<&ScopeCatalog> {
        self.inner.policy.catalog.as_ref()
    }

    /// The current time, truncated to whole seconds (the resolution of
    /// every stored timestamp).
    pub(crate) fn now() -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// Configures a [`Keygate`]. Every setting has a secure default except the
/// pepper, which must be given.
#[must_use]
pub struct KeygateBuilder {
    store: Arc<dyn KeyStore>,
    pepper: Option<Pepper>,
    prefix: String,
    max_lifetime: Option<std::time::Duration>,
    default_lifetime: Option<std::time::Duration>,
    max_keys_per_owner: u32,
    catalog: Option<ScopeCatalog>,
}

impl std::fmt::Debug for KeygateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeygateBuilder")
            .field("pepper", &self.pepper)
            .field("prefix", &self.prefix)
            .field("max_lifetime", &self.max_lifetime)
            .field("default_lifetime", &self.default_lifetime)
            .field("max_keys_per_owner", &self.max_keys_per_owner)
            .finish_non_exhaustive()
    }
}

impl KeygateBuilder {
    /// The server-side secret keying every token's MAC. Required.
    pub fn pepper(mut self, pepper: Pepper) -> Self {
        self.pepper = Some(pepper);
        self
    }

    /// The token prefix: 1–16 characters of `a-z0-9`. Default: `kg`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest lifetime a key may be given. Default: none (unlimited,
    /// and `never` is allowed).
    pub fn max_lifetime(mut self, max: std::time::Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// The lifetime of keys created without `expires_in`/`expires_at`;
    /// `None` means they never expire. Default: 90 days.
    pub fn default_lifetime(mut self, lifetime: Option<std::time::Duration>) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The most active keys one owner may hold; 0 is unlimited. Default: 0.
    pub fn max_keys_per_owner(mut self, max: u32) -> Self {
        self.max_keys_per_owner = max;
        self
    }

    /// The application's scope catalog. Default: none (any well-formed
    /// scope is accepted).
    pub fn catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Checks the configuration and builds the keygate.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the pepper is missing, the prefix is invalid, or
    /// the default lifetime is `never` or longer than the maximum.
    pub fn build(self) -> Result<Keygate, ConfigError> {
        let pepper = self.pepper.ok_or(ConfigError::MissingPepper)?;
        let format = TokenFormat::new(&self.prefix)?;
        let to_time = |d: std::time::Duration| {
            Duration::try_from(d).map_err(|_| ConfigError::Lifetime("lifetime is too large"))
        };
        let max_lifetime = self.max_lifetime.map(to_time).transpose()?;
        let default_lifetime = self.default_lifetime.map(to_time).transpose()?;
        match (default_lifetime, max_lifetime) {
            (None, Some(_)) => {
                return Err(ConfigError::Lifetime(
                    "a default lifetime of never is not allowed with a maximum lifetime",
                ));
            }
            (Some(d), Some(max)) if d > max => {
                return Err(ConfigError::Lifetime(
                    "the default lifetime exceeds the maximum lifetime",
                ));
            }
            (Some(d), _) if d < Duration::SECOND => {
                return Err(ConfigError::Lifetime(
                    "the default lifetime must be at least one second",
                ));
            }
            _ => {}
        }
        Ok(Keygate {
            inner: Arc::new(Inner {
                store: self.store,
                pepper,
                format,
                policy: KeyPolicy {
                    max_lifetime,
                    default_lifetime,
                    max_keys_per_owner: self.max_keys_per_owner,
                    catalog: self.catalog,
                },
            }),
        })
    }
}

/// An invalid [`KeygateBuilder`] configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No pepper was given.
    #[error("a pepper is required (see Pepper::from_env)")]
    MissingPepper,
    /// The token prefix is invalid.
    #[error(transparent)]
    Prefix(#[from] InvalidPrefix),
    /// The lifetimes contradict each other.
    #[error("{0}")]
    Lifetime(&'static str),
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
        let day = std::time::Duration::from_secs(86_400);
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
                .default_lifetime(Some(std::time::Duration::ZERO))
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_does_not_show_the_pepper() {
        let gate = builder().build().unwrap();
        let debug = format!("{gate:?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains("insecure"), "{debug}");
    }
}
