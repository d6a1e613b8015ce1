//! [`KeyValidator`]: the pluggable source of keys for tokens that are not
//! keygate's own.

use crate::key::ApiKey;

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

/// A custom validator's error, as a concrete error type.
#[derive(Debug, thiserror::Error)]
#[error("the key validator failed")]
pub(crate) struct ValidatorFailure(#[source] pub(crate) ValidatorError);
