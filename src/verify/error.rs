//! What verification reports when it produces no key: [`VerifyError`]
//! and the precise [`InvalidReason`] behind every `invalid_token`.

use crate::store::StoreError;
use crate::token::TokenError;

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
    /// The token is not valid (`invalid_token`).
    #[error("invalid token")]
    Invalid(InvalidReason),
    /// The store could not be asked (`unavailable`).
    #[error("the key store is unavailable")]
    Unavailable(#[source] StoreError),
}
