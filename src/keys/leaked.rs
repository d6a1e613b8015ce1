//! Leaked tokens: which key a token found in the wild belongs to, and its
//! revocation ([`Keys::find_token`], [`Keys::revoke_leaked`]).

use super::KeyError;
use super::manager::Keys;
use super::rules::MAX_DESCRIPTION_CHARS;
use crate::key::{ApiKey, KeyStatus, now};

/// What [`Keys::revoke_leaked`] did with a token.
///
/// ```
/// use keygate::{Keygate, Leaked, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// let token = created.token.expose();
///
/// let first = keygate.keys().revoke_leaked(token, "leaked: https://example.test/1").await?;
/// assert!(matches!(first, Leaked::Revoked(_)));
/// assert_eq!(first.key().map(|k| k.id), Some(created.key.id));
/// // Reported again: nothing more is written.
/// let again = keygate.keys().revoke_leaked(token, "leaked: https://example.test/1").await?;
/// assert!(matches!(again, Leaked::AlreadyRevoked(_)) && again.is_key());
/// let noise = keygate.keys().revoke_leaked("kg_live_not-a-token", "leaked").await?;
/// assert!(!noise.is_key() && noise.key().is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Leaked {
    /// The token is not a key of this store: malformed, a bad checksum,
    /// another prefix, an unknown id, or a secret that is not the key's.
    /// Nothing was written.
    NotAKey,
    /// A live key, now revoked (with its audit record).
    Revoked(ApiKey),
    /// A key that was already revoked: nothing was written, so a report
    /// repeated is answered the same without a second record.
    AlreadyRevoked(ApiKey),
    /// A key past its expiry: it cannot be used, nothing was written.
    Expired(ApiKey),
}

impl Leaked {
    /// Whether the token is a key of this store (in any state).
    ///
    /// ```
    /// use keygate::Leaked;
    ///
    /// assert!(!Leaked::NotAKey.is_key());
    /// ```
    pub fn is_key(&self) -> bool {
        !matches!(self, Leaked::NotAKey)
    }

    /// The key's record, when the token is a key of this store.
    ///
    /// ```
    /// use keygate::Leaked;
    ///
    /// assert!(Leaked::NotAKey.key().is_none());
    /// ```
    pub fn key(&self) -> Option<&ApiKey> {
        match self {
            Leaked::NotAKey => None,
            Leaked::Revoked(key) | Leaked::AlreadyRevoked(key) | Leaked::Expired(key) => Some(key),
        }
    }
}

/// `reason` made fit for a key's `revoked_reason`: control characters
/// (but newline and tab) become spaces, and it is cut to 1024 characters.
fn fit_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}

impl Keys<'_> {
    /// The key a whole token belongs to, in any state (active, expired or
    /// revoked), or `None` when it is none of this store's keys.
    ///
    /// The token is parsed offline first (format, prefix, checksum); then
    /// its id is looked up and its MAC compared in constant time, so a
    /// token with a real id and a made-up secret is `None`. Nothing is
    /// cached, counted or recorded as usage: finding a token is not using
    /// it.
    ///
    /// # Errors
    ///
    /// [`KeyError::Store`] when the store cannot be read.
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
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let found = keygate.keys().find_token(created.token.expose()).await?;
    /// assert_eq!(found.map(|k| k.id), Some(created.key.id));
    /// // The right id with a made-up secret is no key.
    /// let mut forged = created.token.expose().to_owned();
    /// let last = forged.pop().unwrap();
    /// forged.push(if last == 'A' { 'B' } else { 'A' });
    /// assert!(keygate.keys().find_token(&forged).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn find_token(&self, token: &str) -> Result<Option<ApiKey>, KeyError> {
        let core = self.verifier.core();
        let Ok(parsed) = core.format.parse(token) else {
            return Ok(None);
        };
        let stored = core
            .store
            .get(&parsed.id())
            .await
            .map_err(KeyError::Store)?;
        let Some(stored) = stored else {
            // The same MAC a known id costs.
            std::hint::black_box(core.pepper.verify(token, &[0u8; 32]));
            return Ok(None);
        };
        let matches = core.pepper.verify(token, &stored.mac);
        Ok((matches && stored.key.environment == parsed.environment()).then_some(stored.key))
    }

    /// Revokes the key a leaked token belongs to, with `reason` (control
    /// characters become spaces; cut to 1024 characters), through
    /// [`Keys::revoke`]: one audit record under this [`Keys`]'s actor.
    ///
    /// A key already revoked is left as it is ([`Leaked::AlreadyRevoked`]:
    /// no second record), and so is an expired one ([`Leaked::Expired`]);
    /// a token that is none of this store's keys changes nothing
    /// ([`Leaked::NotAKey`]).
    ///
    /// # Example
    ///
    /// ```
    /// use keygate::{Keygate, Leaked, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let token = created.token.expose();
    ///
    /// let leaked = keygate.keys().revoke_leaked(token, "leaked: https://example.com/x").await?;
    /// assert!(matches!(leaked, Leaked::Revoked(_)));
    /// assert!(keygate.verify(token).await.is_err());
    /// // Reported again: the same key, nothing written.
    /// let again = keygate.keys().revoke_leaked(token, "leaked: again").await?;
    /// assert!(matches!(again, Leaked::AlreadyRevoked(ref key)
    ///     if key.revoked_reason.as_deref() == Some("leaked: https://example.com/x")));
    /// // A token of the right shape that is no key of this store.
    /// let stranger = keygate.token_format().generate(keygate::Environment::Live);
    /// assert!(matches!(keygate.keys().revoke_leaked(stranger.expose(), "x").await?, Leaked::NotAKey));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Store`] when the store fails. A key deleted between the
    /// lookup and the revocation is [`Leaked::NotAKey`].
    pub async fn revoke_leaked(&self, token: &str, reason: &str) -> Result<Leaked, KeyError> {
        let Some(key) = self.find_token(token).await? else {
            return Ok(Leaked::NotAKey);
        };
        match key.status_at(now()) {
            KeyStatus::Revoked => Ok(Leaked::AlreadyRevoked(key)),
            KeyStatus::Expired => Ok(Leaked::Expired(key)),
            KeyStatus::Active => {
                let reason = fit_reason(reason);
                match self.revoke(&key.id, Some(&reason)).await {
                    Ok(revoked) => Ok(Leaked::Revoked(revoked)),
                    Err(KeyError::NotFound) => Ok(Leaked::NotAKey),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit_reason;

    #[test]
    fn reasons_are_cut_and_lose_control_characters() {
        assert_eq!(fit_reason("leaked: a\u{0}b\r\nc"), "leaked: a b \nc");
        let long = format!("leaked: {}", "é".repeat(2000));
        assert_eq!(fit_reason(&long).chars().count(), 1024);
    }
}
