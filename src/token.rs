//! API-key tokens: the wire format, generation and parsing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::secret::SecretToken;

/// Longest token accepted, in bytes; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 255;
/// Length of the public key id, in base62 characters.
pub const ID_LEN: usize = 16;
/// Length of the random secret, in base62 characters.
pub const SECRET_LEN: usize = 32;
/// Length of the checksum, in base62 characters.
pub const CHECKSUM_LEN: usize = 6;
/// Longest allowed prefix.
pub const MAX_PREFIX_LEN: usize = 16;
/// The default prefix, `kg`.
pub const DEFAULT_PREFIX: &str = "kg";

pub(crate) const BODY_LEN: usize = ID_LEN + SECRET_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The environment a key belongs to: `live` or `test`.
///
/// ```
/// use keygate::Environment;
///
/// assert_eq!(Environment::default(), Environment::Live);
/// assert_eq!("test".parse::<Environment>(), Ok(Environment::Test));
/// assert!("prod".parse::<Environment>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production keys, `kg_live_…`. The default.
    #[default]
    Live,
    /// Test keys, `kg_test_…`.
    Test,
}

impl Environment {
    /// The lowercase name used in tokens and JSON.
    ///
    /// ```
    /// use keygate::Environment;
    ///
    /// assert_eq!(Environment::Test.as_str(), "test");
    /// assert_eq!("live".parse::<Environment>(), Ok(Environment::Live));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            _ => Err(TokenError::UnknownEnvironment),
        }
    }
}

/// The public, unique identifier of a key: 16 base62 characters.
///
/// It is the lookup key in every store and safe to log.
///
/// ```
/// use keygate::KeyId;
///
/// let id: KeyId = "a1B2c3D4e5F6g7H8".parse()?;
/// assert_eq!(format!("{id}"), "a1B2c3D4e5F6g7H8"); // public: safe to log
/// assert!("a1B2c3D4e5F6g7H!".parse::<KeyId>().is_err());
/// # Ok::<(), keygate::TokenError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    /// Parses a key id, refusing anything that is not exactly 16 base62 characters.
    ///
    /// # Errors
    ///
    /// [`TokenError::Malformed`] when the input is not a key id.
    ///
    /// ```
    /// use keygate::KeyId;
    ///
    /// let id = KeyId::parse("a1B2c3D4e5F6g7H8")?;
    /// assert_eq!(id.as_str(), "a1B2c3D4e5F6g7H8");
    /// assert!(KeyId::parse("too-short").is_err());
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn parse(s: &str) -> Result<KeyId, TokenError> {
        let bytes = s.as_bytes();
        if bytes.len() != ID_LEN || !bytes.iter().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenError::Malformed);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(bytes);
        Ok(KeyId(id))
    }

    /// Draws a fresh random id from the OS CSPRNG.
    pub(crate) fn generate() -> KeyId {
        let mut id = [0u8; ID_LEN];
        fill_base62(&mut id);
        KeyId(id)
    }

    /// The id's bytes (base62 ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id as a string slice.
    ///
    /// ```
    /// use keygate::KeyId;
    ///
    /// let id: KeyId = "0123456789abcdef".parse()?;
    /// assert_eq!(id.as_str(), "0123456789abcdef");
    /// assert_eq!(id.to_string(), id.as_str());
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        // Constructed only from base62 ASCII, so always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl FromStr for KeyId {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyId::parse(s)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        KeyId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a token. Deliberately coarse: the token is never echoed.
///
/// ```
/// use keygate::{TokenError, TokenFormat};
///
/// let format = TokenFormat::default();
/// assert_eq!(format.parse(&"a".repeat(300)).unwrap_err(), TokenError::TooLong);
/// assert_eq!(format.parse("kg_prod_0123456789abcdef0123456789abcdef0123456789abcdef012345").unwrap_err(), TokenError::UnknownEnvironment);
/// // The message never repeats the token.
/// assert_eq!(TokenError::BadChecksum.to_string(), "token checksum does not match");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`] bytes.
    #[error("token is longer than 255 bytes")]
    TooLong,
    /// Wrong structure, length or characters.
    #[error("token is malformed")]
    Malformed,
    /// The prefix is not the configured one.
    #[error("token has an unknown prefix")]
    UnknownPrefix,
    /// The environment is neither `live` nor `test`.
    #[error("token has an unknown environment")]
    UnknownEnvironment,
    /// The CRC-32 checksum does not match.
    #[error("token checksum does not match")]
    BadChecksum,
}

/// A token that passed every offline check (structure, prefix, environment, checksum).
///
/// Parsing copies nothing but the id; the token keeps the lifetime of the
/// string it was parsed from.
///
/// ```
/// use keygate::{Environment, TokenFormat};
///
/// let format = TokenFormat::default();
/// let secret = format.generate(Environment::Live);
/// let token = format.parse(secret.expose())?; // offline checks only
/// assert_eq!(token.environment(), Environment::Live);
/// # Ok::<(), keygate::TokenError>(())
/// ```
#[derive(Clone, Copy)]
pub struct Token<'a> {
    environment: Environment,
    id: KeyId,
    /// The string the token was parsed from.
    raw: std::marker::PhantomData<&'a str>,
}

impl<'a> Token<'a> {
    /// The public key id.
    ///
    /// ```
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let format = TokenFormat::default();
    /// let secret = format.generate(Environment::Live);
    /// let token = format.parse(secret.expose())?;
    /// assert_eq!(token.id().as_str(), &secret.expose()[8..24]); // after `kg_live_`
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The environment named in the token.
    ///
    /// ```
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let format = TokenFormat::default();
    /// let secret = format.generate(Environment::Test);
    /// assert_eq!(format.parse(secret.expose())?.environment(), Environment::Test);
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn environment(&self) -> Environment {
        self.environment
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("environment", &self.environment)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The token format in use: its prefix (default `kg`).
///
/// A token looks like `kg_live_<id><secret><checksum>`: a configurable prefix,
/// the environment, then 16 base62 characters of public id, 32 of secret and
/// a 6-character base62 CRC-32 of everything before it. Parsing checks the
/// whole structure and the checksum, so a mistyped or truncated token is
/// rejected before any store is consulted.
///
/// # Example
///
/// ```
/// use keygate::{Environment, TokenFormat};
///
/// let format = TokenFormat::default();
/// let secret = format.generate(Environment::Live);
/// let token = format.parse(secret.expose()).unwrap();
/// assert_eq!(token.environment(), Environment::Live);
/// assert_eq!(secret.expose().len(), 62);
/// assert!(format.parse("kg_live_not-a-token").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: Box<str>,
}

impl Default for TokenFormat {
    fn default() -> Self {
        TokenFormat {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl TokenFormat {
    /// A format with a custom prefix: 1 to 16 characters of `a-z` / `0-9`.
    ///
    /// # Errors
    ///
    /// [`InvalidPrefix`] when the prefix breaks that rule.
    ///
    /// ```
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let acme = TokenFormat::new("acme")?;
    /// assert!(acme.generate(Environment::Live).expose().starts_with("acme_live_"));
    /// assert!(TokenFormat::new("ACME").is_err());
    /// assert!(TokenFormat::new("a_b").is_err());
    /// # Ok::<(), keygate::InvalidPrefix>(())
    /// ```
    pub fn new(prefix: &str) -> Result<TokenFormat, InvalidPrefix> {
        let ok = (1..=MAX_PREFIX_LEN).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(TokenFormat {
                prefix: prefix.into(),
            })
        } else {
            Err(InvalidPrefix)
        }
    }

    /// The prefix, e.g. `kg`.
    ///
    /// ```
    /// use keygate::TokenFormat;
    ///
    /// assert_eq!(TokenFormat::default().prefix(), "kg");
    /// assert_eq!(TokenFormat::new("acme")?.prefix(), "acme");
    /// # Ok::<(), keygate::InvalidPrefix>(())
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The display prefix of a key, `kg_live_<id>`: safe to show and log.
    ///
    /// ```
    /// use keygate::{Environment, KeyId, TokenFormat};
    ///
    /// let id = KeyId::parse("a1B2c3D4e5F6g7H8")?;
    /// assert_eq!(TokenFormat::default().display_prefix(Environment::Live, id), "kg_live_a1B2c3D4e5F6g7H8");
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn display_prefix(&self, environment: Environment, id: KeyId) -> String {
        format!("{}_{}_{}", self.prefix, environment, id)
    }

    /// Generates a new token with a fresh random id.
    ///
    /// ```
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let format = TokenFormat::default();
    /// let a = format.generate(Environment::Live);
    /// let b = format.generate(Environment::Live);
    /// assert_eq!(a.expose().len(), 62);
    /// assert!(format.parse(a.expose()).is_ok()); // the checksum holds
    /// assert_ne!(a.expose(), b.expose());
    /// assert_eq!(format!("{a:?}"), "SecretToken([redacted])");
    /// ```
    pub fn generate(&self, environment: Environment) -> SecretToken {
        self.generate_with_id(environment, KeyId::generate())
    }

    /// Generates a new token for a given id, with a fresh random secret.
    pub(crate) fn generate_with_id(&self, environment: Environment, id: KeyId) -> SecretToken {
        let mut token = String::with_capacity(self.prefix.len() + 6 + BODY_LEN);
        token.push_str(&self.prefix);
        token.push('_');
        token.push_str(environment.as_str());
        token.push('_');
        token.push_str(id.as_str());
        let mut secret = [0u8; SECRET_LEN];
        fill_base62(&mut secret);
        // base62 bytes are ASCII.
        token.extend(secret.iter().map(|&b| char::from(b)));
        let checksum = encode_checksum(crc32fast::hash(token.as_bytes()));
        token.extend(checksum.iter().map(|&b| char::from(b)));
        SecretToken::new(token)
    }

    /// Parses a presented token, checking length, characters, structure,
    /// prefix, environment and checksum — everything that needs no store.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] naming the first check that failed.
    ///
    /// ```
    /// use keygate::{Environment, TokenError, TokenFormat};
    ///
    /// let format = TokenFormat::default();
    /// let token = format.generate(Environment::Live);
    /// assert!(format.parse(token.expose()).is_ok());
    ///
    /// // One character changed: the checksum catches it, no store is asked.
    /// let mut typo = token.expose().to_owned();
    /// let last = typo.pop().unwrap();
    /// typo.push(if last == 'a' { 'b' } else { 'a' });
    /// assert_eq!(format.parse(&typo).unwrap_err(), TokenError::BadChecksum);
    /// assert_eq!(format.parse("kg_live_short").unwrap_err(), TokenError::Malformed);
    /// assert_eq!(TokenFormat::new("acme").unwrap().parse(token.expose()).unwrap_err(), TokenError::UnknownPrefix);
    /// ```
    pub fn parse<'a>(&self, raw: &'a str) -> Result<Token<'a>, TokenError> {
        if let Some(token) = self.parse_expected_shape(raw) {
            return token;
        }
        let bytes = raw.as_bytes();
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        // One pass: the characters, and where the two separators are.
        // prefix "_" env "_" body — the prefix and env hold no "_", the body neither.
        let mut separators = [0usize; 2];
        let mut count = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'_' {
                if let Some(slot) = separators.get_mut(count) {
                    *slot = i;
                }
                count += 1;
            } else if !b.is_ascii_alphanumeric() {
                return Err(TokenError::Malformed);
            }
        }
        if count != 2 {
            return Err(TokenError::Malformed);
        }
        let [first, second] = separators;
        let (prefix, env, body) = (&raw[..first], &raw[first + 1..second], &raw[second + 1..]);
        if body.len() != BODY_LEN {
            return Err(TokenError::Malformed);
        }
        if prefix != &*self.prefix {
            return Err(TokenError::UnknownPrefix);
        }
        let environment = Environment::from_str(env)?;
        Self::checked(raw, environment)
    }

    /// The parse of a token of exactly the expected shape — this format's
    /// prefix, `_`, a known environment, `_`, 46 alphanumerics — or `None`
    /// for anything else, which the full parse then judges. For such a
    /// token the full parse would find the same characters, separators,
    /// prefix and environment, so only the checksum is left to check; the
    /// body's characters are checked without an early exit, so many at a
    /// time.
    fn parse_expected_shape<'a>(&self, raw: &'a str) -> Option<Result<Token<'a>, TokenError>> {
        let rest = raw.strip_prefix(&*self.prefix)?.strip_prefix('_')?;
        // No environment holds a `_`, so this is where the full parse
        // splits too.
        let (environment, body) = if let Some(body) = rest.strip_prefix("live_") {
            (Environment::Live, body)
        } else {
            (Environment::Test, rest.strip_prefix("test_")?)
        };
        if body.len() != BODY_LEN || !all_alphanumeric(body.as_bytes()) {
            return None;
        }
        Some(Self::checked(raw, environment))
    }

    /// The checksum check and the token, once the structure, prefix and
    /// environment are known good (so the last `BODY_LEN` bytes are
    /// alphanumeric).
    fn checked(raw: &str, environment: Environment) -> Result<Token<'_>, TokenError> {
        let (signed, checksum) = raw.split_at(raw.len() - CHECKSUM_LEN);
        let expected = encode_checksum(crc32fast::hash(signed.as_bytes()));
        // The checksum is public, so a plain comparison leaks nothing.
        if checksum.as_bytes() != expected {
            return Err(TokenError::BadChecksum);
        }
        let body = &raw.as_bytes()[raw.len() - BODY_LEN..];
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&body[..ID_LEN]);
        let id = KeyId(id);
        Ok(Token {
            environment,
            id,
            raw: std::marker::PhantomData,
        })
    }
}

/// Whether every byte is an ASCII letter or digit, eight bytes at a time.
/// For a word whose bytes are all below 0x80, `at_least(word, n)` sets the
/// high bit of exactly the bytes ≥ `n` (no carry crosses a byte); a
/// letter's byte with 0x20 set is its lower case, and no other byte
/// becomes a letter that way.
fn all_alphanumeric(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    fn at_least(word: u64, n: u8) -> u64 {
        word.wrapping_add(ONES * u64::from(0x80 - n)) & HIGH
    }
    let chunks = bytes.chunks_exact(8);
    let rest = chunks.remainder();
    let words_ok = chunks.fold(true, |ok, chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let ascii = word & HIGH == 0;
        let digit = at_least(word, b'0') & !at_least(word, b'9' + 1);
        let lower = word | (ONES * 0x20);
        let letter = at_least(lower, b'a') & !at_least(lower, b'z' + 1);
        ok & ascii & ((digit | letter) == HIGH)
    });
    words_ok
        & rest
            .iter()
            .fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
}

/// A prefix outside `[a-z0-9]{1,16}`.
///
/// ```
/// use keygate::TokenFormat;
///
/// assert!(TokenFormat::new("").is_err());
/// assert!(TokenFormat::new(&"a".repeat(17)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token prefix must be 1 to 16 characters of a-z and 0-9")]
pub struct InvalidPrefix;

/// Fills `out` with uniformly random base62 characters from the OS CSPRNG.
fn fill_base62(out: &mut [u8]) {
    let mut filled = 0;
    let mut pool = [0u8; 64];
    while filled < out.len() {
        // The OS CSPRNG failing leaves us nothing safe to do.
        getrandom::fill(&mut pool).expect("the OS random number generator failed");
        for &b in &pool {
            // Rejection sampling: 248 = 4 * 62, so b % 62 is uniform below it.
            if b < 248 && filled < out.len() {
                out[filled] = BASE62[usize::from(b % 62)];
                filled += 1;
            }
        }
    }
}

/// CRC-32 in base62, most significant digit first, left-padded with `0`.
fn encode_checksum(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn format() -> TokenFormat {
        TokenFormat::default()
    }

    #[test]
    fn generated_token_has_the_spec_shape() {
        let token = format().generate(Environment::Live);
        let s = token.expose();
        assert_eq!(s.len(), 62);
        assert!(s.starts_with("kg_live_"));
        assert!(s[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let crc = crc32fast::hash(&s.as_bytes()[..56]);
        assert_eq!(
            &s[56..],
            std::str::from_utf8(&encode_checksum(crc)).unwrap()
        );
    }

    #[test]
    fn checksum_is_base62_of_crc32_left_padded() {
        assert_eq!(&encode_checksum(0), b"000000");
        assert_eq!(&encode_checksum(61), b"00000z");
        assert_eq!(&encode_checksum(62), b"000010");
        // u32::MAX = 4294967295 = 4 * 62^5 + 42 * 62^4 + ... ; check by decoding.
        let enc = encode_checksum(u32::MAX);
        let decoded = enc.iter().fold(0u64, |acc, &c| {
            acc * 62 + BASE62.iter().position(|&d| d == c).unwrap() as u64
        });
        assert_eq!(decoded, u64::from(u32::MAX));
    }

    #[test]
    fn test_environment_and_custom_prefix_round_trip() {
        let format = TokenFormat::new("acme42").unwrap();
        let token = format.generate(Environment::Test);
        assert!(token.expose().starts_with("acme42_test_"));
        let parsed = format.parse(token.expose()).unwrap();
        assert_eq!(parsed.environment(), Environment::Test);
        assert_eq!(
            format.display_prefix(parsed.environment(), parsed.id()),
            token.expose()[..12 + ID_LEN]
        );
    }

    #[test]
    fn invalid_prefixes_are_refused() {
        for bad in ["", "KG", "k-g", "k_g", "abcdefghijklmnopq", "ké"] {
            assert_eq!(TokenFormat::new(bad), Err(InvalidPrefix), "{bad:?}");
        }
        assert!(TokenFormat::new("abcdefghijklmnop").is_ok());
    }

    #[test]
    fn each_offline_check_names_its_failure() {
        let f = format();
        let good = f.generate(Environment::Live);
        let good = good.expose();
        assert_eq!(f.parse(&"a".repeat(256)).unwrap_err(), TokenError::TooLong);
        assert_eq!(
            f.parse(&good.replace("kg_", "kg-")).unwrap_err(),
            TokenError::Malformed
        );
        assert_eq!(f.parse(&good[..61]).unwrap_err(), TokenError::Malformed);
        assert_eq!(f.parse("").unwrap_err(), TokenError::Malformed);
        assert_eq!(
            f.parse(&good.replacen("kg", "xx", 1)).unwrap_err(),
            TokenError::UnknownPrefix
        );
        assert_eq!(
            f.parse(&good.replacen("live", "prod", 1)).unwrap_err(),
            TokenError::UnknownEnvironment
        );
        let mut flipped = good.to_string().into_bytes();
        flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            f.parse(std::str::from_utf8(&flipped).unwrap()).unwrap_err(),
            TokenError::BadChecksum
        );
        assert_eq!(
            f.parse(&format!("{good}_")).unwrap_err(),
            TokenError::Malformed
        );
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let f = format();
        let secret = f.generate(Environment::Live);
        let token = f.parse(secret.expose()).unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains(&secret.expose()[24..56]), "{debug}");
        assert!(debug.contains(token.id().as_str()));
    }

    #[test]
    fn key_id_parse_and_serde() {
        let id = KeyId::generate();
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
        assert!(KeyId::parse("short").is_err());
        assert!(KeyId::parse("0123456789abcde!").is_err());
        assert!(serde_json::from_str::<KeyId>("\"0123456789abcdeé\"").is_err());
    }

    #[test]
    fn random_characters_cover_the_whole_alphabet() {
        let mut seen = [false; 256];
        for _ in 0..200 {
            let t = format().generate(Environment::Live);
            for b in t.expose()[8..56].bytes() {
                seen[usize::from(b)] = true;
            }
        }
        assert!(BASE62.iter().all(|&b| seen[usize::from(b)]));
    }

    proptest! {
        #[test]
        fn alphanumerics_are_told_eight_at_a_time_as_one_at_a_time(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), b'0'..=b'9', b'A'..=b'Z', b'a'..=b'z',
                    Just(b'/'), Just(b':'), Just(b'@'), Just(b'['), Just(b'`'), Just(b'{'), Just(0x7f), Just(0xc1)],
                0..60,
            ),
        ) {
            prop_assert_eq!(all_alphanumeric(&bytes), bytes.iter().all(u8::is_ascii_alphanumeric));
        }

        #[test]
        fn every_generated_token_parses_back(test_env in any::<bool>(), prefix in "[a-z0-9]{1,16}") {
            let env = if test_env { Environment::Test } else { Environment::Live };
            let f = TokenFormat::new(&prefix).unwrap();
            let token = f.generate(env);
            let parsed = f.parse(token.expose()).unwrap();
            prop_assert_eq!(parsed.environment(), env);
            let id = parsed.id();
            prop_assert_eq!(id.as_str(), &token.expose()[prefix.len() + 6..prefix.len() + 6 + ID_LEN]);
        }

        #[test]
        fn every_single_character_change_is_rejected(pos in 0usize..62, replacement in proptest::char::any()) {
            let f = format();
            let token = f.generate(Environment::Live);
            let original = token.expose();
            let mut chars: Vec<char> = original.chars().collect();
            prop_assume!(chars[pos] != replacement);
            chars[pos] = replacement;
            let changed: String = chars.into_iter().collect();
            prop_assert!(f.parse(&changed).is_err(), "accepted {:?}", changed);
        }

        #[test]
        fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = format().parse(&s);
            let _ = KeyId::parse(&s);
        }

        #[test]
        fn parser_never_panics_on_token_like_strings(s in "[a-z]{0,3}_(live|test|[a-z]{0,5})_[0-9A-Za-z_]{0,70}") {
            let _ = format().parse(&s);
        }

        #[test]
        fn parser_agrees_with_a_plain_reference(
            s in "(kg|k_g|[a-z]{0,3})_{0,2}(live|test|[a-z]{0,5})_{0,2}[0-9A-Za-z_ .-]{0,70}",
        ) {
            prop_assert_eq!(format().parse(&s).map(|t| t.id()), reference_parse(&s));
        }

        #[test]
        fn parser_agrees_with_the_reference_on_real_tokens_with_one_change(
            test in any::<bool>(),
            pos in 0usize..62,
            replacement in "[0-9A-Za-z_!]{0,2}",
        ) {
            // Both environments; a character replaced, dropped or doubled.
            let environment = if test { Environment::Test } else { Environment::Live };
            let token = format().generate(environment);
            let mut changed = token.expose().to_owned();
            changed.replace_range(pos..=pos, &replacement);
            prop_assert_eq!(format().parse(&changed).map(|t| t.id()), reference_parse(&changed));
        }

        #[test]
        fn parser_accepts_every_real_token_and_finds_its_id(test in any::<bool>()) {
            let environment = if test { Environment::Test } else { Environment::Live };
            let token = format().generate(environment);
            let parsed = format().parse(token.expose()).unwrap();
            prop_assert_eq!(parsed.environment(), environment);
            prop_assert_eq!(Ok(parsed.id()), reference_parse(token.expose()));
        }
    }

    /// The parser's checks written the obvious way, one after the other.
    fn reference_parse(raw: &str) -> Result<KeyId, TokenError> {
        if raw.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(TokenError::Malformed);
        }
        let parts: Vec<&str> = raw.split('_').collect();
        let [prefix, env, body] = parts[..] else {
            return Err(TokenError::Malformed);
        };
        if body.len() != BODY_LEN {
            return Err(TokenError::Malformed);
        }
        if prefix != "kg" {
            return Err(TokenError::UnknownPrefix);
        }
        let _: Environment = env.parse()?;
        let (signed, checksum) = raw.split_at(raw.len() - CHECKSUM_LEN);
        if checksum.as_bytes() != encode_checksum(crc32fast::hash(signed.as_bytes())) {
            return Err(TokenError::BadChecksum);
        }
        KeyId::parse(&body[..ID_LEN])
    }
}
