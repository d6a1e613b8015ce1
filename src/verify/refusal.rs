//! [`Refusal`]: why [`Verifier::authorize`](crate::Verifier::authorize)
//! produced no key, with what a surface may need to answer it.

use super::authenticated::AuthenticatedKey;
use super::rejection::Rejection;
use crate::limit::{LimitState, LimitStates};
use crate::store::StoreError;

/// Why a credential was not authorized: the [`Rejection`] every surface
/// answers with, plus the key when the token itself was valid (refused for
/// its IP lists, scopes or rate limits), the store's error behind an
/// `unavailable`, and every limit's state behind a `rate_limited`.
///
/// # Example
///
/// ```
/// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Requirement};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let token = keygate.keys().create(NewKey::new("alice", "ci").scopes(["a:read"])).await?.token;
/// let write = Arc::new(Requirement::parse("a:write")?);
/// let refusal = keygate
///     .verifier()
///     .authorize(token.expose(), Origin::Unknown, Some(&write))
///     .await
///     .unwrap_err();
/// assert_eq!(refusal.rejection().code(), "insufficient_scope");
/// assert_eq!(refusal.key().unwrap().owner(), "alice");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Refusal {
    rejection: Rejection,
    key: Option<AuthenticatedKey>,
    cause: Option<Box<StoreError>>,
    /// Every rate limit's state, unchanged, when one refused.
    limits: Option<Box<LimitStates>>,
}

impl Refusal {
    /// A refusal of a credential that proved no key.
    pub(crate) fn new(rejection: Rejection) -> Refusal {
        Refusal {
            rejection,
            key: None,
            cause: None,
            limits: None,
        }
    }

    /// A refusal of `key`, whose token was valid.
    pub(crate) fn of_key(rejection: Rejection, key: AuthenticatedKey) -> Refusal {
        Refusal {
            rejection,
            key: Some(key),
            cause: None,
            limits: None,
        }
    }

    /// The same refusal, with every rate limit's state.
    pub(crate) fn with_limits(mut self, limits: Box<LimitStates>) -> Refusal {
        self.limits = Some(limits);
        self
    }

    /// `unavailable`, because of `error`.
    pub(crate) fn unavailable(error: StoreError) -> Refusal {
        Refusal {
            rejection: Rejection::Unavailable,
            key: None,
            cause: Some(Box::new(error)),
            limits: None,
        }
    }

    /// The rejection to answer with.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Rejection, Requirement};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let needs = Arc::new(Requirement::parse("reports:read")?);
    /// let refusal = keygate.verifier().authorize(created.token.expose(), Origin::Inspection, Some(&needs)).await.unwrap_err();
    /// assert!(matches!(refusal.rejection(), Rejection::InsufficientScope(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }

    /// The rejection, dropping the rest.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, Origin, Pepper, Rejection};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let refusal = keygate.verifier().authorize("kg_live_garbage", Origin::Inspection, None).await.unwrap_err();
    /// assert!(matches!(refusal.into_rejection(), Rejection::InvalidToken(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_rejection(self) -> Rejection {
        self.rejection
    }

    /// The key, when its token was valid but it may not be used here
    /// (`ip_not_allowed`, `insufficient_scope`, `rate_limited`).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Requirement};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let needs = Arc::new(Requirement::parse("reports:read")?);
    /// let refusal = keygate.verifier().authorize(created.token.expose(), Origin::Inspection, Some(&needs)).await.unwrap_err();
    /// assert_eq!(refusal.key().map(|k| k.owner()), Some("alice")); // a valid key, short of a scope
    /// let invalid = keygate.verifier().authorize("kg_live_garbage", Origin::Inspection, None).await.unwrap_err();
    /// assert!(invalid.key().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(&self) -> Option<&AuthenticatedKey> {
        self.key.as_ref()
    }

    /// The store's error behind an `unavailable`.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, Origin, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let refusal = keygate.verifier().authorize("kg_live_garbage", Origin::Inspection, None).await.unwrap_err();
    /// assert!(refusal.store_error().is_none()); // refused before any store was asked
    /// # Ok(())
    /// # }
    /// ```
    pub fn store_error(&self) -> Option<&StoreError> {
        self.cause.as_deref()
    }

    /// Every one of the key's rate limits as it stands (unchanged: a
    /// refused request takes nothing), when one of them refused; empty
    /// otherwise.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Period, RateLimit, RateLimits};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let limit = RateLimit::new("hourly".parse()?, 1, Period::parse("1h")?)?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").rate_limits(RateLimits::new(vec![limit])?)).await?;
    /// let client = Origin::Client("192.0.2.1".parse()?);
    /// keygate.verifier().authorize_charged(created.token.expose(), client, None, 1).await?;
    /// let refusal = keygate.verifier().authorize_charged(created.token.expose(), client, None, 1).await.unwrap_err();
    /// assert_eq!(refusal.limits()[0].remaining, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn limits(&self) -> &[LimitState] {
        self.limits.as_deref().map_or(&[], LimitStates::as_slice)
    }
}

impl From<Refusal> for Rejection {
    fn from(refusal: Refusal) -> Rejection {
        refusal.rejection
    }
}

impl std::fmt::Display for Refusal {
    /// The rejection's message (never the precise cause of an
    /// `invalid_token`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.rejection.fmt(f)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}
