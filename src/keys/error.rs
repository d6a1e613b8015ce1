//! [`KeyError`]: why a management operation was refused.

use crate::store::StoreError;

/// Why a key-management call was refused or failed. Nothing is written when
/// an error is returned.
///
/// ```
/// # use keygate::{KeyError, Keygate, MemoryStore, NewKey, Pepper};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let error = keygate.keys().create(NewKey::new("alice", "x").scopes(["bad scope"])).await.unwrap_err();
/// assert!(matches!(error, KeyError::Invalid { field: "scopes", .. }));
/// assert!(error.to_string().starts_with("scopes: "));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A field breaks its rule, e.g. a name longer than 128 characters
    /// (HTTP 400 `bad_request`).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, as named in JSON.
        field: &'static str,
        /// One sentence saying what is wrong.
        message: String,
    },
    /// The operation conflicts with existing state, e.g. a duplicate name
    /// (HTTP 409 `conflict`).
    #[error("{field}: {message}")]
    Conflict {
        /// The offending field, as named in JSON.
        field: &'static str,
        /// One sentence saying what is wrong.
        message: String,
    },
    /// The key would be more powerful than the calling key allows: outside
    /// its [`Ceiling`](crate::Ceiling) (HTTP 403 `forbidden`).
    #[error("{field}: {message}")]
    Forbidden {
        /// The offending field, as named in JSON.
        field: &'static str,
        /// One sentence saying what is wrong.
        message: String,
    },
    /// The owner already holds the maximum number of active keys
    /// (HTTP 409 `key_limit_reached`).
    #[error("owner already has the maximum of {limit} active keys")]
    KeyLimitReached {
        /// The configured maximum.
        limit: u32,
    },
    /// No such key (HTTP 404 `not_found`).
    #[error("no such key")]
    NotFound,
    /// The store failed or cannot be reached.
    #[error("the key store failed")]
    Store(#[source] StoreError),
}

impl KeyError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> KeyError {
        KeyError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(field: &'static str, message: impl Into<String>) -> KeyError {
        KeyError::Conflict {
            field,
            message: message.into(),
        }
    }

    /// The JSON field this error is about, when it is about one.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let error = keygate.keys().create(NewKey::new("", "ci")).await.unwrap_err();
    /// assert_eq!(error.field(), Some("owner"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn field(&self) -> Option<&'static str> {
        match self {
            KeyError::Invalid { field, .. }
            | KeyError::Conflict { field, .. }
            | KeyError::Forbidden { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The machine-readable code, the `error` field of the HTTP API's
    /// error object: `bad_request`, `forbidden`,
    /// `conflict`, `key_limit_reached`, `not_found` or `unavailable`.
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let duplicate = keygate.keys().create(NewKey::new("alice", "ci")).await.unwrap_err();
    /// assert_eq!(duplicate.code(), "conflict");
    /// assert_eq!(keygate.keys().create(NewKey::new("", "x")).await.unwrap_err().code(), "bad_request");
    /// # Ok(())
    /// # }
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Invalid { .. } => "bad_request",
            KeyError::Forbidden { .. } => "forbidden",
            KeyError::Conflict { .. } => "conflict",
            KeyError::KeyLimitReached { .. } => "key_limit_reached",
            KeyError::NotFound => "not_found",
            KeyError::Store(_) => "unavailable",
        }
    }
}
