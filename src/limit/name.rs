//! [`LimitName`]: the name of a rate limit, unique per key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest limit name, in bytes.
pub const MAX_LIMIT_NAME_LEN: usize = 32;

/// The name of a rate limit: 1 to 32 characters of `a-z`, `0-9`, `_` and
/// `-`. Unique among one key's limits.
///
/// Stored inline (no heap), so copying a name, or a
/// [`LimitState`](crate::LimitState) holding one, never allocates.
///
/// ```
/// use keygate::LimitName;
///
/// let name: LimitName = "burst".parse()?;
/// assert_eq!(name.as_str(), "burst");
/// assert!("Burst".parse::<LimitName>().is_err());
/// # Ok::<(), keygate::LimitNameError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LimitName {
    len: u8,
    bytes: [u8; MAX_LIMIT_NAME_LEN],
}

/// Hashes the name's bytes only, not the unused tail of the array (equal
/// names have equal bytes, so this agrees with `Eq`): a bucket's key is
/// hashed on every counted request.
impl std::hash::Hash for LimitName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u8(self.len);
        state.write(self.as_bytes());
    }
}

impl LimitName {
    /// Parses a limit name.
    ///
    /// # Errors
    ///
    /// [`LimitNameError`] when `text` is empty, longer than 32 bytes or
    /// holds a character outside `a-z0-9_-`.
    ///
    /// ```
    /// use keygate::LimitName;
    ///
    /// assert_eq!(LimitName::parse("burst-1")?.as_str(), "burst-1");
    /// assert!(LimitName::parse("Burst").is_err());
    /// assert!(LimitName::parse(&"a".repeat(33)).is_err());
    /// # Ok::<(), keygate::LimitNameError>(())
    /// ```
    pub fn parse(text: &str) -> Result<LimitName, LimitNameError> {
        let raw = text.as_bytes();
        let allowed =
            |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-';
        if raw.is_empty() || raw.len() > MAX_LIMIT_NAME_LEN || !raw.iter().all(allowed) {
            return Err(LimitNameError {
                shown: text.chars().take(32).collect(),
            });
        }
        let mut bytes = [0u8; MAX_LIMIT_NAME_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(LimitName {
            // At most 32, checked above.
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The name as a string slice.
    ///
    /// ```
    /// use keygate::LimitName;
    ///
    /// let name: LimitName = "hourly".parse()?;
    /// assert_eq!(name.as_str(), "hourly");
    /// # Ok::<(), keygate::LimitNameError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        // Built only from ASCII, so always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The name's bytes (ASCII), without the UTF-8 check of
    /// [`as_str`](LimitName::as_str).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A filler for fixed-size arrays of states; never shown to a user.
    pub(crate) const PLACEHOLDER: LimitName = LimitName {
        len: 0,
        bytes: [0u8; MAX_LIMIT_NAME_LEN],
    };
}

impl fmt::Display for LimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for LimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LimitName({:?})", self.as_str())
    }
}

impl FromStr for LimitName {
    type Err = LimitNameError;

    fn from_str(s: &str) -> Result<LimitName, LimitNameError> {
        LimitName::parse(s)
    }
}

impl AsRef<str> for LimitName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for LimitName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LimitName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LimitName, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        LimitName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a text is not a [`LimitName`]; names the text, cut to 32 characters.
///
/// ```
/// use keygate::LimitName;
///
/// let error = LimitName::parse("Hourly").unwrap_err();
/// assert!(error.to_string().contains("Hourly"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} is not a limit name (1 to 32 characters of a-z, 0-9, _ and -)")]
pub struct LimitNameError {
    shown: String,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::LimitName;

    #[test]
    fn names_take_lowercase_digits_underscore_and_dash_only() {
        for good in ["a", "burst", "per-hour_2", &"x".repeat(32)] {
            assert_eq!(
                LimitName::parse(good).map(|n| n.to_string()).as_deref(),
                Ok(good)
            );
        }
        for bad in ["", "Burst", "a b", "é", "a.b", &"x".repeat(33)] {
            assert!(LimitName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn errors_name_the_text_cut_to_32_characters() {
        let long = "Y".repeat(100);
        let message = LimitName::parse(&long).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{:?} is not", "Y".repeat(32))),
            "{message}"
        );
    }

    #[test]
    fn serde_validates_and_round_trips() {
        let name: LimitName = serde_json::from_str("\"hourly\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"hourly\"");
        assert!(serde_json::from_str::<LimitName>("\"NOPE\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = LimitName::parse(&text);
        }

        #[test]
        fn format_then_parse_round_trips(text in "[a-z0-9_-]{1,32}") {
            let name = LimitName::parse(&text).unwrap();
            let shown = name.to_string();
            prop_assert_eq!(LimitName::parse(&shown), Ok(name));
        }
    }
}
