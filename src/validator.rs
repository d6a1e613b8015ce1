//! Verification: from a presented token to an [`AuthenticatedKey`].
//!
//! [`Keygate::verify`] runs every offline check of SPEC §1 first, then one
//! store read by id, one HMAC compared in constant time (spent even when the
//! id is unknown, so both failures cost the same), and the status checks.
//! Callers see one coarse [`VerifyError::Invalid`]; the precise
//! [`InvalidReason`] is for tracing, next to the key id, never the token.
//!
//! # Example
//!
//! ```
//! use keygate::{InvalidReason, Keygate, MemoryStore, Pepper, VerifyError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()
//!     .unwrap();
//! let err = keygate.verify("kg_live_nope").await.unwrap_err();
//! assert!(matches!(err, VerifyError::Invalid(InvalidReason::Malformed)));
//! # }
//! ```

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use time::OffsetDateTime;

use crate::cache::{CacheKey, Entry, LoadError, Record};
use crate::key::ApiKey;
use crate::keygate::Keygate;
use crate::scope::ScopeSet;
use crate::store::StoreError;
use crate::token::{Environment, KeyId, Token, TokenError};

/// Why a token was refused. All of these are one `invalid_token` to the
/// client; the distinction is for logs and, opt-in, for development.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Longer than 255 bytes.
    TooLong,
    /// Wrong characters, structure or length.
    Malformed,
    /// Not this deployment's prefix.
    UnknownPrefix,
    /// Neither `live` nor `test`.
    UnknownEnvironment,
    /// The checksum does not match.
    BadChecksum,
    /// No key has this id.
    UnknownId,
    /// The id exists but the secret is wrong.
    WrongSecret,
    /// The key is revoked.
    Revoked,
    /// The key is past its expiry.
    Expired,
    /// The token's environment is not the key's.
    WrongEnvironment,
}

impl InvalidReason {
    /// A stable snake_case name, for logs and the opt-in `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::TooLong => "too_long",
            InvalidReason::Malformed => "malformed",
            InvalidReason::UnknownPrefix => "unknown_prefix",
            InvalidReason::UnknownEnvironment => "unknown_environment",
            InvalidReason::BadChecksum => "bad_checksum",
            InvalidReason::UnknownId => "unknown_id",
            InvalidReason::WrongSecret => "wrong_secret",
            InvalidReason::Revoked => "revoked",
            InvalidReason::Expired => "expired",
            InvalidReason::WrongEnvironment => "wrong_environment",
        }
    }
}

impl From<TokenError> for InvalidReason {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::TooLong => InvalidReason::TooLong,
            TokenError::UnknownPrefix => InvalidReason::UnknownPrefix,
            TokenError::UnknownEnvironment => InvalidReason::UnknownEnvironment,
            TokenError::BadChecksum => InvalidReason::BadChecksum,
            _ => InvalidReason::Malformed,
        }
    }
}

/// Why verification did not produce a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not valid (SPEC §3 `invalid_token`).
    #[error("invalid token")]
    Invalid(InvalidReason),
    /// The store could not be asked (SPEC §3 `unavailable`).
    #[error("the key store is unavailable")]
    Unavailable(#[source] StoreError),
}

/// A key that presented a valid token. Cheap to clone.
///
/// The middleware puts it in the request extensions.
#[derive(Clone)]
pub struct AuthenticatedKey {
    record: Arc<Record>,
}

impl std::fmt::Debug for AuthenticatedKey {
    /// The key record only: never the stored MAC behind it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatedKey")
            .field("key", &self.record.key)
            .finish()
    }
}

impl AuthenticatedKey {
    pub(crate) fn new(record: Arc<Record>) -> AuthenticatedKey {
        AuthenticatedKey { record }
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
    pub fn id(&self) -> KeyId {
        self.record.key.id
    }

    /// `kg_live_<id>`: safe to log.
    pub fn display_prefix(&self) -> &str {
        &self.record.key.display_prefix
    }

    /// The owner.
    pub fn owner(&self) -> &str {
        &self.record.key.owner
    }

    /// The owner's organization.
    pub fn organization(&self) -> Option<&str> {
        self.record.key.organization.as_deref()
    }

    /// `live` or `test`.
    pub fn environment(&self) -> Environment {
        self.record.key.environment
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.key.scopes
    }

    /// The key's metadata object.
    pub fn metadata(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.record.key.metadata
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.record.key.expires_at
    }

    /// The whole record as it was when the key was validated.
    pub fn record(&self) -> &ApiKey {
        &self.record.key
    }
}

/// The pluggable source of keys: any async function from a presented
/// token to the key it belongs to.
///
/// The built-in validator looks tokens up in the [`KeyStore`](crate::KeyStore);
/// set another with [`KeygateBuilder::validator`](crate::KeygateBuilder::validator).
/// A custom validator sees the token as presented (at most 255 bytes of
/// visible ASCII) and returns `Ok(None)` when it is not valid. Its answers
/// share keygate's cache, keyed by the token's MAC and invalidated by key id;
/// revocation, expiry and environment in the returned record are enforced as
/// for stored keys. Closures
/// `Fn(String) -> impl Future<Output = Result<Option<ApiKey>, E>>` implement it.
///
/// # Example
///
/// ```
/// use keygate::{ApiKey, KeyId, Keygate, MemoryStore, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .validator(|token: String| async move {
///         Ok::<_, std::convert::Infallible>((token == "let-me-in").then(|| {
///             ApiKey::new(KeyId::parse("legacy0000000001").unwrap(), "legacy-client")
///         }))
///     })
///     .build()
///     .unwrap();
/// assert_eq!(keygate.verify("let-me-in").await.unwrap().owner(), "legacy-client");
/// assert!(keygate.verify("wrong").await.is_err());
/// # }
/// ```
#[async_trait::async_trait]
pub trait KeyValidator: Send + Sync + 'static {
    /// The key `token` belongs to, or `None`.
    ///
    /// # Errors
    ///
    /// Any error means "cannot tell now" and becomes a 503 `unavailable`.
    async fn validate(&self, token: &str) -> Result<Option<ApiKey>, ValidatorError>;
}

/// An error from a [`KeyValidator`]: the validator could not answer.
pub type ValidatorError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait::async_trait]
impl<F, Fut, E> KeyValidator for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<ApiKey>, E>> + Send,
    E: Into<ValidatorError>,
{
    async fn validate(&self, token: &str) -> Result<Option<ApiKey>, ValidatorError> {
        self(token.to_owned()).await.map_err(Into::into)
    }
}

/// A presented token after the offline checks: what its cache entry is
/// found under and what the entry is compared with.
enum Presented<'a> {
    /// A keygate token, for the store validator.
    Stored(Token<'a>),
    /// An opaque token, for a custom validator (its digest is the cache key).
    Custom(&'a str),
}

impl Keygate {
    /// Verifies a presented token: offline checks, then the cache, then (on
    /// a miss) the store or the custom validator.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Invalid`] with the precise reason, or
    /// [`VerifyError::Unavailable`] when the store fails and the key is not
    /// cached.
    pub async fn verify(&self, token: &str) -> Result<AuthenticatedKey, VerifyError> {
        let (cache_key, presented) = self.present(token)?;
        // This thread's memo or moka, before anything that may wait.
        let entry = match self.inner.cache.lookup(&cache_key, Instant::now()) {
            Some(entry) => entry,
            None => self.load(cache_key, &presented).await?,
        };
        self.judge(&presented, entry).map(AuthenticatedKey::new)
    }

    /// [`verify`](Keygate::verify) for a token that
    /// [`verify_cached`](Keygate::verify_cached) just could not answer:
    /// straight to the load (which still finds an entry another request
    /// cached meanwhile).
    pub(crate) async fn verify_missed(&self, token: &str) -> Result<AuthenticatedKey, VerifyError> {
        let (cache_key, presented) = self.present(token)?;
        let entry = self.load(cache_key, &presented).await?;
        self.judge(&presented, entry).map(AuthenticatedKey::new)
    }

    /// [`verify`](Keygate::verify) without waiting: `None` when the answer
    /// needs the store or the validator. Offline refusals and cached keys
    /// are answered here, so the middleware needs no future for them.
    pub(crate) fn verify_cached(
        &self,
        token: &str,
        now: Instant,
    ) -> Option<Result<AuthenticatedKey, VerifyError>> {
        let (cache_key, presented) = match self.present(token) {
            Ok(presented) => presented,
            Err(e) => return Some(Err(e)),
        };
        let entry = self.inner.cache.lookup(&cache_key, now)?;
        Some(self.judge(&presented, entry).map(AuthenticatedKey::new))
    }

    /// The offline checks: a keygate token's structure, prefix, environment
    /// and checksum, or a custom validator's length and characters.
    fn present<'a>(&self, token: &'a str) -> Result<(CacheKey, Presented<'a>), VerifyError> {
        let inner = &self.inner;
        if inner.validator.is_none() {
            let parsed = inner
                .format
                .parse(token)
                .map_err(|e| VerifyError::Invalid(e.into()))?;
            return Ok((CacheKey::Id(parsed.id()), Presented::Stored(parsed)));
        }
        if token.len() > crate::token::MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid(InvalidReason::TooLong));
        }
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(VerifyError::Invalid(InvalidReason::Malformed));
        }
        Ok((
            CacheKey::Digest(inner.pepper.mac(token)),
            Presented::Custom(token),
        ))
    }

    /// The cache entry: from the cache, or after asking the store or the
    /// validator (one load shared by concurrent misses of the same entry).
    async fn load(
        &self,
        cache_key: CacheKey,
        presented: &Presented<'_>,
    ) -> Result<Entry, VerifyError> {
        let inner = &self.inner;
        let loaded = match (presented, &inner.validator) {
            (Presented::Stored(token), _) => {
                let id = token.id();
                inner
                    .cache
                    .get_or_load(cache_key, || async move {
                        let stored = inner.store.get(&id).await?;
                        Ok::<_, StoreError>(
                            stored
                                .map(|stored| Arc::new(Record::new(stored.key, Some(stored.mac)))),
                        )
                    })
                    .await
            }
            (Presented::Custom(token), Some(validator)) => {
                inner
                    .cache
                    .get_or_load(cache_key, || async move {
                        let key = validator.validate(token).await.map_err(ValidatorFailure)?;
                        Ok::<_, ValidatorFailure>(key.map(|key| Arc::new(Record::new(key, None))))
                    })
                    .await
            }
            (Presented::Custom(_), None) => {
                unreachable!("opaque tokens are presented only with a custom validator")
            }
        };
        loaded.map_err(|e| {
            VerifyError::Unavailable(StoreError::Unavailable(Box::new(SharedError(e))))
        })
    }

    /// The verdict on a presented token given its cache entry: the MAC in
    /// constant time, the environment, revocation and expiry.
    fn judge(&self, presented: &Presented<'_>, entry: Entry) -> Result<Arc<Record>, VerifyError> {
        let inner = &self.inner;
        let Some(record) = entry.record else {
            if let Presented::Stored(token) = presented {
                // Spend the same MAC as a known id would, so timing does not
                // tell unknown ids from wrong secrets.
                std::hint::black_box(inner.pepper.verify(token.raw(), &[0u8; 32]));
            }
            return Err(VerifyError::Invalid(InvalidReason::UnknownId));
        };
        if let Presented::Stored(token) = presented {
            let mac = record.mac.unwrap_or([0u8; 32]);
            if !inner.pepper.verify(token.raw(), &mac) {
                return Err(VerifyError::Invalid(InvalidReason::WrongSecret));
            }
            if record.key.environment != token.environment() {
                return Err(VerifyError::Invalid(InvalidReason::WrongEnvironment));
            }
        }
        self.check_usable(&record)?;
        Ok(record)
    }

    /// Environment, revocation and expiry, at the current instant (never
    /// trusting how long the record has been cached): what
    /// [`ApiKey::status_at`] decides, with the expiry already converted to
    /// the system clock's type so that the check costs one read of the
    /// system clock (none for a key that never expires) and no calendar
    /// arithmetic.
    fn check_usable(&self, record: &Record) -> Result<(), VerifyError> {
        let key = &record.key;
        if !self.inner.environments.contains(&key.environment) {
            return Err(VerifyError::Invalid(InvalidReason::WrongEnvironment));
        }
        if key.revoked_at.is_some() {
            return Err(VerifyError::Invalid(InvalidReason::Revoked));
        }
        // A key that cannot expire needs no clock.
        match record.expiry {
            Some(expiry) if SystemTime::now() >= expiry => {
                Err(VerifyError::Invalid(InvalidReason::Expired))
            }
            _ => Ok(()),
        }
    }
}

/// A custom validator's error, as a concrete error type.
#[derive(Debug, thiserror::Error)]
#[error("the key validator failed")]
struct ValidatorFailure(#[source] ValidatorError);

/// An error shared between every waiter of one cache load.
#[derive(Debug)]
struct SharedError(LoadError);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
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
