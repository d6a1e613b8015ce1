//! Token forging: the parts of a token, for tests that take tokens apart.

#![allow(dead_code)]

/// The 16-character id of a token: characters 8..24.
pub fn token_id(token: &str) -> &str {
    &token[8..24]
}

/// The 32-character secret of a token: characters 24..56.
pub fn token_secret(token: &str) -> &str {
    &token[24..56]
}
