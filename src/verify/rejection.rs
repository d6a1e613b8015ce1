//! [`Rejection`]: why a request was refused, with the status, code and
//! message every surface answers it with.

use std::sync::Arc;

use http::StatusCode;

use super::error::InvalidReason;
use crate::limit::LimitState;
use crate::scope::Requirement;

/// Why a request was refused.
///
/// # Example
///
/// ```
/// use keygate::{InvalidReason, Rejection};
///
/// let rejection = Rejection::InvalidToken(InvalidReason::Expired);
/// assert_eq!(rejection.status(), 401);
/// assert_eq!(rejection.code(), "invalid_token");
/// // The cause is for logs only: the message is the same for every cause.
/// assert_eq!(rejection.to_string(), "The API key is invalid, expired or revoked.");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No credential in any source (401).
    MissingToken,
    /// Credentials in two sources, or a malformed credential header (400).
    InvalidRequest,
    /// The gateway refused the request's path before any rule: one that
    /// servers read differently (an encoded `/`, a `;`, double encoding…),
    /// or forward-auth headers that disagree about it (400, code
    /// `invalid_request`).
    InvalidPath,
    /// The token is not valid; the reason is for logs only (401).
    InvalidToken(InvalidReason),
    /// The client address is outside the key's IP lists (403).
    IpNotAllowed,
    /// The key's scopes do not satisfy the route's requirement (403).
    InsufficientScope(Arc<Requirement>),
    /// The store cannot be reached and the key is not cached (503).
    Unavailable,
    /// One of the key's rate limits has no budget for the request (429);
    /// checked after the IP lists and the scopes, and a refusal takes
    /// nothing from the key's other limits.
    RateLimited {
        /// The state of the limit that refused: its name is the body's
        /// `limit`, and it fills the `RateLimit-Policy` and `RateLimit`
        /// headers. (Boxed: a refusal stays small.)
        limit: Box<LimitState>,
        /// Whole seconds until the request would pass, at least 1 (the
        /// `Retry-After` header).
        retry_after_secs: u64,
    },
    /// The key's credits are short of the request's cost (429); checked
    /// after the IP lists and the scopes, and with the rate limits all or
    /// nothing (a refusal by one takes nothing from the other).
    CreditsExhausted {
        /// Whole seconds until the next refill, at least 1 (the
        /// `Retry-After` header); `None` when none is scheduled.
        retry_after_secs: Option<u64>,
    },
}

impl Rejection {
    /// The HTTP status.
    ///
    /// ```
    /// use http::StatusCode;
    /// use keygate::Rejection;
    ///
    /// assert_eq!(Rejection::MissingToken.status(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(Rejection::IpNotAllowed.status(), StatusCode::FORBIDDEN);
    /// assert_eq!(Rejection::Unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingToken | Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::InvalidRequest | Rejection::InvalidPath => StatusCode::BAD_REQUEST,
            Rejection::IpNotAllowed | Rejection::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::RateLimited { .. } | Rejection::CreditsExhausted { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// The gRPC status code a gRPC request is refused with: 16
    /// `UNAUTHENTICATED` (missing_token, invalid_request, invalid_token),
    /// 7 `PERMISSION_DENIED` (ip_not_allowed, insufficient_scope), 8
    /// `RESOURCE_EXHAUSTED` (rate_limited, credits_exhausted), 14
    /// `UNAVAILABLE` (unavailable).
    ///
    /// ```
    /// use keygate::{InvalidReason, Rejection};
    ///
    /// assert_eq!(Rejection::InvalidToken(InvalidReason::Revoked).grpc_status(), 16);
    /// assert_eq!(Rejection::IpNotAllowed.grpc_status(), 7);
    /// assert_eq!(Rejection::Unavailable.grpc_status(), 14);
    /// ```
    ///
    /// ```
    /// use keygate::Rejection;
    ///
    /// assert_eq!(Rejection::MissingToken.grpc_status(), 16); // UNAUTHENTICATED
    /// assert_eq!(Rejection::IpNotAllowed.grpc_status(), 7); // PERMISSION_DENIED
    /// assert_eq!(Rejection::Unavailable.grpc_status(), 14); // UNAVAILABLE
    /// ```
    pub fn grpc_status(&self) -> u8 {
        match self {
            Rejection::MissingToken
            | Rejection::InvalidRequest
            | Rejection::InvalidPath
            | Rejection::InvalidToken(_) => 16,
            Rejection::IpNotAllowed | Rejection::InsufficientScope(_) => 7,
            Rejection::RateLimited { .. } | Rejection::CreditsExhausted { .. } => 8,
            Rejection::Unavailable => 14,
        }
    }

    /// The `error` code of the body.
    ///
    /// ```
    /// use keygate::{InvalidReason, Rejection};
    ///
    /// assert_eq!(Rejection::MissingToken.code(), "missing_token");
    /// // Every invalid token has one code, whatever the reason.
    /// assert_eq!(Rejection::InvalidToken(InvalidReason::Revoked).code(), "invalid_token");
    /// assert_eq!(Rejection::InvalidToken(InvalidReason::UnknownId).code(), "invalid_token");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::InvalidRequest | Rejection::InvalidPath => "invalid_request",
            Rejection::InvalidToken(_) => "invalid_token",
            Rejection::IpNotAllowed => "ip_not_allowed",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            Rejection::Unavailable => "unavailable",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::CreditsExhausted { .. } => "credits_exhausted",
        }
    }

    /// The one-sentence `message` of the body.
    ///
    /// ```
    /// use keygate::Rejection;
    ///
    /// assert_eq!(Rejection::MissingToken.message(), "An API key is required.");
    /// ```
    pub fn message(&self) -> &'static str {
        match self {
            Rejection::MissingToken => "An API key is required.",
            Rejection::InvalidRequest => {
                "The request must carry exactly one well-formed credential."
            }
            Rejection::InvalidPath => {
                "The request path or method is malformed or ambiguous and is refused."
            }
            Rejection::InvalidToken(_) => "The API key is invalid, expired or revoked.",
            Rejection::IpNotAllowed => "This API key may not be used from this address.",
            Rejection::InsufficientScope(_) => {
                "The API key lacks the scopes this request requires."
            }
            Rejection::Unavailable => "Authentication is temporarily unavailable.",
            Rejection::RateLimited { .. } => {
                "The API key's rate limit is exhausted; retry after the time given."
            }
            Rejection::CreditsExhausted { .. } => {
                "The API key has no credits left for this request."
            }
        }
    }
}

impl std::fmt::Display for Rejection {
    /// The [`message`](Rejection::message): never the precise cause of an
    /// `invalid_token`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Rejection {}
