//! What verification reports when it produces no key: [`VerifyError`]
//! and the precise [`InvalidReason`] behind every `invalid_token`.

use crate::store::StoreError;
use crate::token::TokenError;

/// Why a token was refused. All of these are one `invalid_token` to the
/// client; the distinction is for logs and, opt-in, for development.
///
/// ```
/// use keygate::{InvalidReason, Keygate, MemoryStore, Pepper, VerifyError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let unknown = keygate.token_format().generate(keygate::Environment::Live);
/// assert!(matches!(
///     keygate.verify(unknown.expose()).await,
///     Err(VerifyError::Invalid(InvalidReason::UnknownId))
/// ));
/// # Ok(())
/// # }
/// ```
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
    ///
    /// ```
    /// use keygate::InvalidReason;
    ///
    /// assert_eq!(InvalidReason::WrongSecret.as_str(), "wrong_secret");
    /// assert_eq!(InvalidReason::BadChecksum.as_str(), "bad_checksum");
    /// ```
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
///
/// ```
/// use keygate::{Keygate, MemoryStore, Pepper, VerifyError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let error = keygate.verify("garbage").await.unwrap_err();
/// assert!(matches!(error, VerifyError::Invalid(_)));
/// assert_eq!(error.to_string(), "invalid token"); // the reason is for logs only
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not valid (`invalid_token`).
    #[error("invalid token")]
    Invalid(InvalidReason),
    /// The store could not be asked (`unavailable`).
    #[error("the key store is unavailable")]
    Unavailable(#[source] StoreError),
}
