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

use time::OffsetDateTime;

use crate::key::{ApiKey, KeyStatus};
use crate::keygate::Keygate;
use crate::scope::ScopeSet;
use crate::store::StoreError;
use crate::token::{Environment, KeyId, TokenError};

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
#[derive(Clone, Debug)]
pub struct AuthenticatedKey {
    key: Arc<ApiKey>,
}

impl AuthenticatedKey {
    pub(crate) fn new(key: Arc<ApiKey>) -> AuthenticatedKey {
        AuthenticatedKey { key }
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.key.id
    }

    /// `kg_live_<id>`: safe to log.
    pub fn display_prefix(&self) -> &str {
        &self.key.display_prefix
    }

    /// The owner.
    pub fn owner(&self) -> &str {
        &self.key.owner
    }

    /// The owner's organization.
    pub fn organization(&self) -> Option<&str> {
        self.key.organization.as_deref()
    }

    /// `live` or `test`.
    pub fn environment(&self) -> Environment {
        self.key.environment
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &ScopeSet {
        &self.key.scopes
    }

    /// The key's metadata object.
    pub fn metadata(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.key.metadata
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.key.expires_at
    }

    /// The whole record as it was when the key was validated.
    pub fn record(&self) -> &ApiKey {
        &self.key
    }
}

impl Keygate {
    /// Verifies a presented token against the store.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Invalid`] with the precise reason, or
    /// [`VerifyError::Unavailable`] when the store fails.
    pub async fn verify(&self, token: &str) -> Result<AuthenticatedKey, VerifyError> {
        let inner = &self.inner;
        let parsed = inner
            .format
            .parse(token)
            .map_err(|e| VerifyError::Invalid(e.into()))?;
        let stored = inner
            .store
            .get(&parsed.id())
            .await
            .map_err(VerifyError::Unavailable)?;
        let Some(stored) = stored else {
            // Spend the same MAC as a known id would, so timing does not
            // tell unknown ids from wrong secrets.
            std::hint::black_box(inner.pepper.verify(parsed.raw(), &[0u8; 32]));
            return Err(VerifyError::Invalid(InvalidReason::UnknownId));
        };
        if !inner.pepper.verify(parsed.raw(), &stored.mac) {
            return Err(VerifyError::Invalid(InvalidReason::WrongSecret));
        }
        check_usable(&stored.key, parsed.environment(), OffsetDateTime::now_utc())
            .map_err(VerifyError::Invalid)?;
        Ok(AuthenticatedKey::new(Arc::new(stored.key)))
    }
}

/// The status checks after the secret matched.
pub(crate) fn check_usable(
    key: &ApiKey,
    presented: Environment,
    now: OffsetDateTime,
) -> Result<(), InvalidReason> {
    if key.environment != presented {
        return Err(InvalidReason::WrongEnvironment);
    }
    match key.status_at(now) {
        KeyStatus::Active => Ok(()),
        KeyStatus::Revoked => Err(InvalidReason::Revoked),
        KeyStatus::Expired => Err(InvalidReason::Expired),
    }
}
