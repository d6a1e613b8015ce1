//! Token forging (SPEC §1): the parts of a token, its checksum, and tokens
//! with a changed secret or a bad checksum.

#![allow(dead_code)]

/// The 16-character id of a token: characters 8..24.
pub fn token_id(token: &str) -> &str {
    &token[8..24]
}

/// The 32-character secret of a token: characters 24..56.
pub fn token_secret(token: &str) -> &str {
    &token[24..56]
}

/// The base62 alphabet of SPEC §1: "0" = 0, "Z" = 35, "z" = 61.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SPEC §1 checksum: CRC-32 (IEEE) in base62, left-padded with "0" to 6.
/// Written here independently of the crate's own encoder.
pub fn checksum(signed: &str) -> String {
    let mut n = crc32fast::hash(signed.as_bytes());
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < 6 {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("base62 is ASCII")
}

/// A token with everything but the checksum given: appends the right checksum.
pub fn with_checksum(signed: &str) -> String {
    format!("{signed}{}", checksum(signed))
}

/// `token` with its secret replaced by `secret` and a valid checksum.
pub fn with_secret(token: &str, secret: &str) -> String {
    assert_eq!(secret.len(), 32);
    let head = &token[..token.len() - 38]; // prefix _ env _ id
    with_checksum(&format!("{head}{secret}"))
}

/// `token` with its last (checksum) character changed.
pub fn with_bad_checksum(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    let other = if last == "0" { "1" } else { "0" };
    format!("{head}{other}")
}
