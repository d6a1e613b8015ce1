//! Secrets: the server-side [`Pepper`], the MAC stored in place of a token,
//! and [`SecretToken`], the one-time view of a freshly minted token.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Minimum pepper length, in bytes.
pub const MIN_PEPPER_LEN: usize = 32;

/// The environment variable [`Pepper::from_env`] reads.
pub const PEPPER_ENV: &str = "KEYGATE_PEPPER";

/// The label whose HMAC under the pepper is the pepper check value
/// ([`Pepper::check_value`]). Not a token: tokens have no spaces.
pub const PEPPER_CHECK_LABEL: &str = "keygate pepper check v1";

/// The HMAC-SHA256 of a token under the pepper: what stores keep.
pub type TokenMac = [u8; 32];

/// The server-side secret keying the HMAC of every token.
///
/// It is never stored in the database. Keep it in `KEYGATE_PEPPER` or a file
/// readable only by the service.
///
/// Neither type prints its contents in `Debug` or `Display`; the only way to
/// the bytes is a method named `expose`.
///
/// # Example
///
/// ```
/// use keygate::Pepper;
///
/// let pepper = Pepper::from_hex(&"ab".repeat(32)).unwrap();
/// assert_eq!(format!("{pepper:?}"), "Pepper([redacted])");
/// assert!(Pepper::from_hex("abcd").is_err()); // shorter than 32 bytes
/// ```
#[derive(Clone)]
pub struct Pepper {
    // The keyed HMAC state, ready to clone for each token.
    mac: Hmac<Sha256>,
}

impl Pepper {
    /// A pepper from raw bytes.
    ///
    /// # Errors
    ///
    /// [`PepperError::TooShort`] for fewer than 32 bytes.
    ///
    /// ```
    /// use keygate::{Pepper, PepperError};
    ///
    /// assert!(Pepper::from_bytes(&[7; 32]).is_ok());
    /// assert!(matches!(Pepper::from_bytes(&[7; 16]), Err(PepperError::TooShort)));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Pepper, PepperError> {
        if bytes.len() < MIN_PEPPER_LEN {
            return Err(PepperError::TooShort);
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).map_err(|_| PepperError::TooShort)?;
        Ok(Pepper { mac })
    }

    /// A pepper of any length, for the RFC 4231 test vectors (whose keys are
    /// mostly shorter than [`MIN_PEPPER_LEN`]).
    #[cfg(test)]
    fn from_any_bytes(bytes: &[u8]) -> Pepper {
        let mac = Hmac::<Sha256>::new_from_slice(bytes).expect("HMAC takes a key of any length");
        Pepper { mac }
    }

    /// A pepper from hex text (surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`PepperError::Encoding`] for bad hex, [`PepperError::TooShort`] for
    /// fewer than 32 bytes.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    /// let pepper = Pepper::from_hex(hex)?;
    /// assert_eq!(pepper.mac("t"), Pepper::from_bytes(&hex::decode(hex).unwrap())?.mac("t"));
    /// # Ok::<(), keygate::PepperError>(())
    /// ```
    pub fn from_hex(text: &str) -> Result<Pepper, PepperError> {
        let bytes = hex::decode(text.trim()).map_err(|_| PepperError::Encoding)?;
        Pepper::from_bytes(&bytes)
    }

    /// A pepper from hex or base64 (standard or URL-safe, padded or not) text.
    ///
    /// # Errors
    ///
    /// [`PepperError::Encoding`] when the text is neither, [`PepperError::TooShort`]
    /// for fewer than 32 bytes.
    ///
    /// ```
    /// use keygate::{Pepper, PepperError};
    ///
    /// let hex = Pepper::parse(&"ab".repeat(32))?;
    /// let base64 = Pepper::parse("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=")?; // the same 32 bytes
    /// assert_eq!(hex.mac("token"), base64.mac("token"));
    /// assert!(matches!(Pepper::parse("not a pepper"), Err(PepperError::Encoding)));
    /// # Ok::<(), PepperError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Pepper, PepperError> {
        let text = text.trim();
        if let Ok(bytes) = hex::decode(text) {
            return Pepper::from_bytes(&bytes);
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text) {
                return Pepper::from_bytes(&bytes);
            }
        }
        Err(PepperError::Encoding)
    }

    /// The pepper in `KEYGATE_PEPPER` (hex or base64, at least 32 bytes).
    ///
    /// # Errors
    ///
    /// [`PepperError::Missing`] when the variable is unset, or the errors of
    /// [`Pepper::parse`].
    ///
    /// ```
    /// use keygate::{PEPPER_ENV, Pepper, PepperError};
    ///
    /// // Missing exactly when KEYGATE_PEPPER is unset.
    /// let unset = std::env::var_os(PEPPER_ENV).is_none();
    /// assert_eq!(matches!(Pepper::from_env(), Err(PepperError::Missing)), unset);
    /// ```
    pub fn from_env() -> Result<Pepper, PepperError> {
        match std::env::var(PEPPER_ENV) {
            Ok(text) => Pepper::parse(&text),
            Err(_) => Err(PepperError::Missing),
        }
    }

    /// Reads the pepper file at `path`, or creates it with 32 random bytes
    /// (mode 0600 on Unix) when it does not exist.
    ///
    /// The file holds the raw bytes. An existing file that is not readable,
    /// or shorter than 32 bytes, is an error: it is never overwritten. On
    /// Unix an existing file that its group or others may read or write is
    /// refused too (fix it with `chmod 600`).
    ///
    /// # Errors
    ///
    /// [`PepperError::Io`] on a file-system error, [`PepperError::TooShort`]
    /// for a truncated file, [`PepperError::Exposed`] for a file readable by
    /// others.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("keygate.pepper");
    /// let created = Pepper::load_or_create(&path)?; // 32 random bytes, mode 0600
    /// let again = Pepper::load_or_create(&path)?; // the same file, read back
    /// assert_eq!(created.mac("token"), again.mac("token"));
    /// # #[cfg(unix)]
    /// # {
    /// use std::os::unix::fs::PermissionsExt as _;
    /// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    /// # }
    /// # Ok::<(), keygate::PepperError>(())
    /// ```
    pub fn load_or_create(path: &Path) -> Result<Pepper, PepperError> {
        match Pepper::load(path) {
            Err(PepperError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; MIN_PEPPER_LEN];
                getrandom::fill(&mut bytes).map_err(|_| PepperError::Random)?;
                write_new_private_file(path, &bytes).map_err(PepperError::Io)?;
                Pepper::from_bytes(&bytes)
            }
            other => other,
        }
    }

    /// Reads the pepper file at `path` (see [`Pepper::load_or_create`]),
    /// never creating it.
    ///
    /// # Errors
    ///
    /// [`PepperError::Io`] on a file-system error (`NotFound` when the file
    /// is missing), [`PepperError::TooShort`] for a truncated file,
    /// [`PepperError::Exposed`] for a file readable by others.
    ///
    /// ```
    /// use keygate::{Pepper, PepperError};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("keygate.pepper");
    /// assert!(matches!(Pepper::load(&path), Err(PepperError::Io(_)))); // never created
    /// Pepper::load_or_create(&path)?;
    /// assert!(Pepper::load(&path).is_ok());
    /// # Ok::<(), PepperError>(())
    /// ```
    pub fn load(path: &Path) -> Result<Pepper, PepperError> {
        let file = std::fs::File::open(path).map_err(PepperError::Io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = file
                .metadata()
                .map_err(PepperError::Io)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(PepperError::Exposed { mode: mode & 0o777 });
            }
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(PepperError::Io)?;
        Pepper::from_bytes(&bytes)
    }

    /// A fresh random pepper from the OS CSPRNG, for stores that live no
    /// longer than the process (in-memory databases, examples). Tokens
    /// minted under it stop working when it is gone.
    ///
    /// # Errors
    ///
    /// [`PepperError::Random`] when the OS random number generator fails.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let (a, b) = (Pepper::random()?, Pepper::random()?);
    /// assert_ne!(a.mac("token"), b.mac("token"));
    /// assert_eq!(format!("{a:?}"), "Pepper([redacted])");
    /// # Ok::<(), keygate::PepperError>(())
    /// ```
    pub fn random() -> Result<Pepper, PepperError> {
        let mut bytes = [0u8; MIN_PEPPER_LEN];
        getrandom::fill(&mut bytes).map_err(|_| PepperError::Random)?;
        Pepper::from_bytes(&bytes)
    }

    /// A fixed, publicly known pepper. **Insecure: for tests only.**
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// // The same bytes every time: tests and examples only.
    /// assert_eq!(
    ///     Pepper::insecure_fixed_for_tests().mac("token"),
    ///     Pepper::insecure_fixed_for_tests().mac("token")
    /// );
    /// ```
    pub fn insecure_fixed_for_tests() -> Pepper {
        Pepper::from_bytes(b"keygate-insecure-test-pepper-do-not-use-in-production")
            .unwrap_or_else(|_| unreachable!("the fixed test pepper is longer than 32 bytes"))
    }

    /// The check value stored beside the keys so that a wrong pepper is
    /// noticed at start: HMAC-SHA256 of the fixed label
    /// [`PEPPER_CHECK_LABEL`] under this pepper. It reveals nothing of the
    /// pepper.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let pepper = Pepper::insecure_fixed_for_tests();
    /// let stored = pepper.check_value(); // keep this beside the keys
    /// assert!(pepper.matches_check(&stored));
    /// assert!(!Pepper::random()?.matches_check(&stored));
    /// # Ok::<(), keygate::PepperError>(())
    /// ```
    pub fn check_value(&self) -> TokenMac {
        let mut mac = self.mac.clone();
        mac.update(PEPPER_CHECK_LABEL.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `stored` is this pepper's [check value](Pepper::check_value),
    /// compared in constant time.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let pepper = Pepper::insecure_fixed_for_tests();
    /// assert!(pepper.matches_check(&pepper.check_value()));
    /// assert!(!pepper.matches_check(b"short"));
    /// ```
    pub fn matches_check(&self, stored: &[u8]) -> bool {
        stored.len() == MIN_PEPPER_LEN && bool::from(self.check_value().ct_eq(stored))
    }

    /// HMAC-SHA256 of `token` under this pepper.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let pepper = Pepper::insecure_fixed_for_tests();
    /// assert_eq!(pepper.mac("kg_live_x").len(), 32);
    /// assert_ne!(pepper.mac("kg_live_x"), pepper.mac("kg_live_y"));
    /// ```
    pub fn mac(&self, token: &str) -> TokenMac {
        self.mac_bytes(token.as_bytes())
    }

    /// HMAC-SHA256 of `data` under this pepper.
    fn mac_bytes(&self, data: &[u8]) -> TokenMac {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `token` has the MAC `expected`, compared in constant time.
    ///
    /// ```
    /// use keygate::Pepper;
    ///
    /// let pepper = Pepper::insecure_fixed_for_tests();
    /// let stored = pepper.mac("kg_live_x");
    /// assert!(pepper.verify("kg_live_x", &stored));
    /// assert!(!pepper.verify("kg_live_y", &stored));
    /// ```
    pub fn verify(&self, token: &str, expected: &TokenMac) -> bool {
        macs_equal(&self.mac(token), expected)
    }
}

/// Whether two MACs are equal, in constant time: the differences of all
/// 32 bytes are folded together eight bytes at a time, with no branch on
/// any of them, and the folded word is compared by `subtle` (behind its
/// optimization barrier). Equivalent to `a.ct_eq(b)` on the bytes, which
/// costs a barrier per byte.
fn macs_equal(a: &TokenMac, b: &TokenMac) -> bool {
    let diff = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(0u64, |diff, (x, y)| {
            let x = u64::from_ne_bytes(x.try_into().unwrap_or_default());
            let y = u64::from_ne_bytes(y.try_into().unwrap_or_default());
            diff | (x ^ y)
        });
    std::hint::black_box(diff).ct_eq(&0).into()
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

#[cfg(unix)]
fn write_new_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_new_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Why a pepper could not be obtained.
///
/// ```
/// use keygate::{Pepper, PepperError};
///
/// assert!(matches!(Pepper::parse("abcd"), Err(PepperError::TooShort)));
/// // Messages never contain the pepper.
/// let error = Pepper::parse(&"!".repeat(64)).unwrap_err();
/// assert!(matches!(error, PepperError::Encoding));
/// assert!(!error.to_string().contains("!!!!"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    /// `KEYGATE_PEPPER` is not set.
    #[error("KEYGATE_PEPPER is not set")]
    Missing,
    /// The text is neither hex nor base64.
    #[error("the pepper is neither hex nor base64")]
    Encoding,
    /// Fewer than 32 bytes.
    #[error("the pepper must be at least 32 bytes")]
    TooShort,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// The pepper file may be read or written by its group or others.
    #[error(
        "the pepper file is accessible to group or others (mode {mode:o}); restrict it with chmod 600"
    )]
    Exposed {
        /// The file's permission bits.
        mode: u32,
    },
    /// Reading or writing the pepper file failed.
    #[error("cannot read or create the pepper file")]
    Io(#[source] std::io::Error),
}

/// A full token, shown exactly once: when a key is created or rotated.
///
/// `Debug` and `Display` print `[redacted]`; call [`SecretToken::expose`] to
/// hand it to the user. It deliberately implements no `Serialize`, and no
/// `PartialEq` either: compare with [`SecretToken::ct_eq`], in constant time.
///
/// ```compile_fail
/// fn same(a: &keygate::SecretToken, b: &keygate::SecretToken) -> bool {
///     a == b // no `==` on a secret
/// }
/// ```
#[derive(Clone)]
pub struct SecretToken(Box<str>);

impl SecretToken {
    pub(crate) fn new(token: String) -> SecretToken {
        SecretToken(token.into_boxed_str())
    }

    /// The token itself. Show it to its owner once; never log it.
    ///
    /// ```
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let token = TokenFormat::default().generate(Environment::Live);
    /// assert!(token.expose().starts_with("kg_live_"));
    /// assert!(!format!("{token:?}").contains(token.expose()));
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this token, compared in constant time (only the
    /// length may show).
    ///
    /// ```
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let token = TokenFormat::default().generate(Environment::Live);
    /// let copy = token.expose().to_owned();
    /// assert!(token.ct_eq(&copy));
    /// assert!(!token.ct_eq("kg_live_other"));
    /// ```
    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken([redacted])")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn macs_are_equal_exactly_when_every_byte_is(
            a in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            flip in proptest::option::of((0usize..32, 0u8..8)),
        ) {
            let mut b = a;
            if let Some((byte, bit)) = flip {
                b[byte] ^= 1 << bit;
            }
            proptest::prop_assert_eq!(macs_equal(&a, &b), a == b);
            proptest::prop_assert!(macs_equal(&a, &a));
        }
    }

    #[test]
    fn pepper_accepts_hex_and_base64_of_32_bytes() {
        let bytes = [7u8; 32];
        let hex_text = hex::encode(bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 40]);
        let a = Pepper::parse(&hex_text).unwrap();
        let b = Pepper::parse(&format!(" {b64}\n")).unwrap();
        assert_eq!(a.mac("x"), b.mac("x"));
        assert!(Pepper::parse(&b64url).is_ok());
    }

    #[test]
    fn short_or_garbled_peppers_are_refused() {
        assert!(matches!(
            Pepper::parse(&hex::encode([1u8; 31])),
            Err(PepperError::TooShort)
        ));
        assert!(matches!(
            Pepper::parse("not a pepper!"),
            Err(PepperError::Encoding)
        ));
        assert!(matches!(
            Pepper::from_bytes(&[]),
            Err(PepperError::TooShort)
        ));
    }

    /// RFC 4231 §4: HMAC-SHA256 test cases 1–4, 6 and 7 (5 is a truncated
    /// output), as key, data, expected MAC.
    fn rfc_4231_cases() -> [(Vec<u8>, Vec<u8>, &'static str); 6] {
        [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                (0x01..=0x19).collect(),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger \
                  than block-size data. The key needs to be hashed before being \
                  used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ]
    }

    #[test]
    fn mac_matches_the_rfc_4231_hmac_sha256_vectors() {
        for (n, (key, data, expected)) in rfc_4231_cases().into_iter().enumerate() {
            let pepper = Pepper::from_any_bytes(&key);
            assert_eq!(hex::encode(pepper.mac_bytes(&data)), expected, "case {n}");
            // Text data goes through the public MAC too.
            if let Ok(text) = std::str::from_utf8(&data) {
                assert_eq!(hex::encode(pepper.mac(text)), expected, "case {n}");
                let expected: TokenMac = hex::decode(expected).unwrap().try_into().unwrap();
                assert!(pepper.verify(text, &expected));
            }
            // Keys of at least 32 bytes are peppers through the public door.
            if key.len() >= MIN_PEPPER_LEN {
                let public = Pepper::from_bytes(&key).unwrap();
                assert_eq!(hex::encode(public.mac_bytes(&data)), expected, "case {n}");
            } else {
                assert!(matches!(
                    Pepper::from_bytes(&key),
                    Err(PepperError::TooShort)
                ));
            }
        }
    }

    #[test]
    fn mac_is_hmac_sha256_and_depends_on_the_pepper() {
        let key = [0x0bu8; 32];
        let pepper = Pepper::from_bytes(&key).unwrap();
        let mut reference = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        reference.update(b"kg_live_token");
        let expected: TokenMac = reference.finalize().into_bytes().into();
        assert_eq!(pepper.mac("kg_live_token"), expected);
        assert!(pepper.verify("kg_live_token", &expected));
        assert!(!pepper.verify("kg_live_tokem", &expected));
        let other = Pepper::from_bytes(&[0x0cu8; 32]).unwrap();
        assert_ne!(other.mac("kg_live_token"), expected);
    }

    #[test]
    fn pepper_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.pepper");
        let first = Pepper::load_or_create(&path).unwrap();
        let second = Pepper::load_or_create(&path).unwrap();
        assert_eq!(first.mac("t"), second.mac("t"));
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn truncated_pepper_file_is_an_error_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.pepper");
        std::fs::write(&path, [1u8; 5]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            Pepper::load_or_create(&path),
            Err(PepperError::TooShort)
        ));
        assert_eq!(std::fs::read(&path).unwrap(), [1u8; 5]);
    }

    #[cfg(unix)]
    #[test]
    fn pepper_file_readable_by_others_is_refused_and_left_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.pepper");
        std::fs::write(&path, [9u8; 32]).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                matches!(Pepper::load_or_create(&path), Err(PepperError::Exposed { mode: m }) if m == mode),
                "mode {mode:o} accepted"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Pepper::load_or_create(&path).is_ok());
        assert_eq!(std::fs::read(&path).unwrap(), [9u8; 32]);
    }

    #[test]
    fn check_value_is_the_mac_of_the_label_and_tells_peppers_apart() {
        let a = Pepper::from_bytes(&[1u8; 32]).unwrap();
        let b = Pepper::from_bytes(&[2u8; 32]).unwrap();
        assert_eq!(a.check_value(), a.mac(PEPPER_CHECK_LABEL));
        assert!(a.matches_check(&a.check_value()));
        assert!(!a.matches_check(&b.check_value()));
        assert!(!a.matches_check(&a.check_value()[..31]));
        assert!(!a.matches_check(&[]));
        assert_ne!(&a.check_value()[..], &[1u8; 32][..]);
    }

    #[test]
    fn secret_tokens_compare_in_constant_time() {
        let token = SecretToken::new("kg_live_supersecret".into());
        assert!(token.ct_eq("kg_live_supersecret"));
        assert!(!token.ct_eq("kg_live_supersecreu"));
        assert!(!token.ct_eq("kg_live_supersecre"));
        assert!(!token.ct_eq(""));
    }

    #[test]
    fn debug_and_display_redact() {
        let token = SecretToken::new("kg_live_supersecret".into());
        assert_eq!(format!("{token:?}"), "SecretToken([redacted])");
        assert_eq!(token.to_string(), "[redacted]");
        let pepper = Pepper::insecure_fixed_for_tests();
        assert_eq!(format!("{pepper:?}"), "Pepper([redacted])");
        assert_eq!(format!("{:?}", Some(pepper)), "Some(Pepper([redacted]))");
    }
}
