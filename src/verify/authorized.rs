//! [`Authorized`]: a key that passed the whole chain, with what its request
//! was charged.

use super::authenticated::AuthenticatedKey;
use crate::limit::LimitOutcome;

/// What [`Verifier::authorize_charged`](crate::Verifier::authorize_charged)
/// answers: the key, and where every one of its rate limits stands after
/// the request.
///
/// # Example
///
/// ```
/// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let limits = serde_json::from_str(r#"[{"name": "daily", "limit": 10, "period": "1d"}]"#)?;
/// let created = keygate
///     .keys()
///     .create(NewKey::new("alice", "ci").rate_limits(limits))
///     .await?;
/// let origin = Origin::Client("192.0.2.1".parse()?);
///
/// let authorized = keygate
///     .verifier()
///     .authorize_charged(created.token.expose(), origin, None, 4)
///     .await?;
/// let daily = &authorized.limits().states()[0];
/// assert_eq!((daily.limit, daily.remaining), (10, 6));
/// assert_eq!(authorized.key().rate_limit(), Some(daily));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Authorized {
    key: AuthenticatedKey,
    limits: LimitOutcome,
    credits_remaining: Option<u64>,
}

impl Authorized {
    /// The key, carrying the tightest limit's state.
    pub(crate) fn new(
        key: AuthenticatedKey,
        limits: LimitOutcome,
        credits_remaining: Option<u64>,
    ) -> Authorized {
        let tightest = limits.header_state().copied();
        Authorized {
            key: key.with_limit(tightest),
            limits,
            credits_remaining,
        }
    }

    /// The key.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let authorized = keygate.verifier().authorize_charged(created.token.expose(), Origin::Inspection, None, 1).await?;
    /// assert_eq!(authorized.key().owner(), "alice");
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(&self) -> &AuthenticatedKey {
        &self.key
    }

    /// The key, without the limits' states.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let authorized = keygate.verifier().authorize_charged(created.token.expose(), Origin::Inspection, None, 1).await?;
    /// assert_eq!(authorized.into_key().id(), created.key.id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_key(self) -> AuthenticatedKey {
        self.key
    }

    /// How the request was counted against the key's rate limits:
    /// [`LimitOutcome::Admitted`] with every limit's state, or
    /// [`LimitOutcome::NotCounted`] (no limits, cost 0, an inspection, or a
    /// limiter that could not be reached while failing open).
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?; // no rate limits
    /// let authorized = keygate.verifier().authorize_charged(created.token.expose(), Origin::Inspection, None, 1).await?;
    /// assert!(authorized.limits().is_allowed());
    /// assert!(authorized.limits().states().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn limits(&self) -> &LimitOutcome {
        &self.limits
    }

    /// The key's credits left after this request, as this process knows
    /// them (the store's balance plus what this process holds); `None` when
    /// the request spent none (the key has no credits, cost 0, an
    /// inspection).
    ///
    /// ```
    /// # use keygate::{Credits, Keygate, MemoryStore, NewKey, Origin, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(10)?)).await?;
    /// let client = Origin::Client("192.0.2.1".parse()?);
    /// let authorized = keygate.verifier().authorize_charged(created.token.expose(), client, None, 3).await?;
    /// assert_eq!(authorized.credits_remaining(), Some(7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn credits_remaining(&self) -> Option<u64> {
        self.credits_remaining
    }
}
