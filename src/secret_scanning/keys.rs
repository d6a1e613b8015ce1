//! [`GithubKeys`]: GitHub's secret scanning public keys, and the check of a
//! report's signature.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;

/// Longest key identifier or signature header read, in bytes.
const MAX_HEADER_LEN: usize = 512;

/// The public keys GitHub signs secret scanning reports with: the JSON of
/// <https://api.github.com/meta/public_keys/secret_scanning>,
/// `{"public_keys": [{"key_identifier", "key", "is_current"}]}` with each
/// `key` a PEM `PUBLIC KEY` (ECDSA P-256).
///
/// Every key of the file is accepted, current or not: GitHub names the key
/// it signed with, and rotates by publishing the new key beside the old.
/// `Debug` shows the identifiers.
///
/// # Example
///
/// ```
/// use keygate::secret_scanning::GithubKeys;
///
/// // The example GitHub's partner documentation verifies.
/// let keys = GithubKeys::from_json(r#"{"public_keys": [{
///     "key_identifier": "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a",
///     "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----\n",
///     "is_current": true}]}"#).unwrap();
/// let body = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;
/// let signature = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";
/// let id = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
/// assert!(keys.verify(id, signature, body));
/// assert!(!keys.verify(id, signature, b"[]"));
/// assert!(!keys.verify("another-key", signature, body));
/// ```
#[derive(Clone)]
pub struct GithubKeys {
    keys: Vec<(String, VerifyingKey)>,
}

/// Why a GitHub key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GithubKeysError {
    /// The file cannot be read.
    #[error("cannot read it: {0}")]
    Io(#[source] std::io::Error),
    /// It is not `{"public_keys": [...]}`.
    #[error("not GitHub's public key JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A key is not a PEM P-256 public key.
    #[error("key {0:?} is not a PEM ECDSA P-256 public key")]
    Key(String),
    /// The file holds no key.
    #[error("it holds no public key")]
    Empty,
}

#[derive(Deserialize)]
struct File {
    public_keys: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key_identifier: String,
    key: String,
}

impl GithubKeys {
    /// Parses GitHub's public key JSON.
    ///
    /// # Errors
    ///
    /// [`GithubKeysError`] when it is not that JSON, a key is not a PEM
    /// P-256 public key, or there is no key.
    pub fn from_json(text: &str) -> Result<GithubKeys, GithubKeysError> {
        let file: File = serde_json::from_str(text).map_err(GithubKeysError::Json)?;
        let mut keys = Vec::with_capacity(file.public_keys.len());
        for entry in file.public_keys {
            let shown: String = entry.key_identifier.chars().take(80).collect();
            let key = VerifyingKey::from_public_key_pem(entry.key.trim())
                .map_err(|_| GithubKeysError::Key(shown))?;
            keys.push((entry.key_identifier, key));
        }
        if keys.is_empty() {
            return Err(GithubKeysError::Empty);
        }
        Ok(GithubKeys { keys })
    }

    /// Reads and parses a key file.
    ///
    /// # Errors
    ///
    /// As [`from_json`](GithubKeys::from_json), and
    /// [`GithubKeysError::Io`] when it cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<GithubKeys, GithubKeysError> {
        let text = std::fs::read_to_string(path).map_err(GithubKeysError::Io)?;
        GithubKeys::from_json(&text)
    }

    /// The key identifiers, in file order.
    pub fn identifiers(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Whether `signature` (base64 of an ASN.1 DER ECDSA signature, as in
    /// `Github-Public-Key-Signature`) is the signature of `body` by the
    /// key named `key_id` (`Github-Public-Key-Identifier`): ECDSA P-256
    /// over SHA-256 of the raw body. An unknown key, bad base64 or DER,
    /// or an oversized header is `false`.
    pub fn verify(&self, key_id: &str, signature: &str, body: &[u8]) -> bool {
        if key_id.len() > MAX_HEADER_LEN || signature.len() > MAX_HEADER_LEN {
            return false;
        }
        let Some((_, key)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return false;
        };
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(signature) = Signature::from_der(&der) else {
            return false;
        };
        key.verify(body, &signature).is_ok()
    }
}

impl fmt::Debug for GithubKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubKeys")
            .field("identifiers", &self.identifiers().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{GithubKeys, GithubKeysError};

    #[test]
    fn files_that_are_not_githubs_keys_are_refused() {
        for (text, says) in [
            ("", "not GitHub's public key JSON"),
            ("{}", "not GitHub's public key JSON"),
            (r#"{"public_keys": []}"#, "no public key"),
            (
                r#"{"public_keys": [{"key_identifier": "k", "key": "not pem"}]}"#,
                "\"k\" is not a PEM",
            ),
        ] {
            let error: GithubKeysError = GithubKeys::from_json(text).unwrap_err();
            assert!(error.to_string().contains(says), "{text}: {error}");
        }
    }
}
