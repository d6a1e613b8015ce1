//! The offline checks of a presented token, and what they leave behind.

use crate::secret::{Pepper, TokenMac};
use crate::token::{Environment, KeyId, MAX_TOKEN_LEN, TokenFormat};

use super::cache::CacheKey;
use super::error::InvalidReason;

/// A presented token after the offline checks: what its cache entry is
/// found under, and what the entry is then compared with. It borrows
/// nothing, so the one parse of a request's token travels with the request
/// into the future that asks the store on a cache miss.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// A keygate token, for the store: its id and environment.
    Stored { id: KeyId, environment: Environment },
    /// An opaque token, for a custom validator: its MAC under the pepper
    /// (the cache key).
    Custom { digest: TokenMac },
}

impl std::fmt::Debug for Presented {
    /// The id and environment of a keygate token; never a digest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Stored { id, environment } => f
                .debug_struct("Stored")
                .field("id", id)
                .field("environment", environment)
                .finish(),
            Presented::Custom { .. } => f.write_str("Custom([redacted])"),
        }
    }
}

impl Presented {
    /// Checks `token` offline: a keygate token's structure, prefix,
    /// environment and checksum (`format`), or, for a custom validator
    /// (`custom`), its length and characters (and its MAC is taken once).
    pub(crate) fn check(
        token: &str,
        format: &TokenFormat,
        pepper: &Pepper,
        custom: bool,
    ) -> Result<Presented, InvalidReason> {
        if !custom {
            let parsed = format.parse(token)?;
            return Ok(Presented::Stored {
                id: parsed.id(),
                environment: parsed.environment(),
            });
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvalidReason::TooLong);
        }
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidReason::Malformed);
        }
        Ok(Presented::Custom {
            digest: pepper.mac(token),
        })
    }

    /// What the cache entry is found under.
    pub(crate) fn cache_key(&self) -> CacheKey {
        match self {
            Presented::Stored { id, .. } => CacheKey::Id(*id),
            Presented::Custom { digest } => CacheKey::Digest(*digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper() -> Pepper {
        Pepper::insecure_fixed_for_tests()
    }

    #[test]
    fn a_keygate_token_is_presented_by_its_id_and_environment() {
        let format = TokenFormat::default();
        let token = format.generate(Environment::Test);
        let presented = Presented::check(token.expose(), &format, &pepper(), false).unwrap();
        let parsed = format.parse(token.expose()).unwrap();
        assert_eq!(
            presented,
            Presented::Stored {
                id: parsed.id(),
                environment: Environment::Test
            }
        );
        assert_eq!(presented.cache_key(), CacheKey::Id(parsed.id()));
        assert!(!format!("{presented:?}").contains(token.expose()));
    }

    #[test]
    fn offline_refusals_name_their_reason() {
        let format = TokenFormat::default();
        let check = |token: &str, custom| Presented::check(token, &format, &pepper(), custom);
        assert_eq!(check("kg_live_nope", false), Err(InvalidReason::Malformed));
        assert_eq!(check(&"a".repeat(256), false), Err(InvalidReason::TooLong));
        assert_eq!(check(&"a".repeat(256), true), Err(InvalidReason::TooLong));
        assert_eq!(check("", true), Err(InvalidReason::Malformed));
        assert_eq!(check("two words", true), Err(InvalidReason::Malformed));
    }

    #[test]
    fn an_opaque_token_is_presented_by_its_mac_which_debug_never_shows() {
        let format = TokenFormat::default();
        let presented = Presented::check("let-me-in", &format, &pepper(), true).unwrap();
        assert_eq!(
            presented.cache_key(),
            CacheKey::Digest(pepper().mac("let-me-in"))
        );
        assert_eq!(format!("{presented:?}"), "Custom([redacted])");
    }
}
