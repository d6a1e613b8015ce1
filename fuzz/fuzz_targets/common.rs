//! What several targets share: the token format of SPEC §1, written
//! independently of keygate's parser (the reference the targets compare
//! keygate with).

#![allow(dead_code)]

/// The base62 alphabet of §1, in order.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The checksum of §1: CRC-32 (IEEE) of `signed`, base62, left-padded
/// with "0" to 6 characters.
pub fn checksum(signed: &[u8]) -> String {
    let mut n = crc32fast::hash(signed);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

/// A well-formed token of `prefix` and `env` around `body` (54 base62
/// characters are expected; the checksum is appended).
pub fn token(prefix: &str, env: &str, id_and_secret: &str) -> String {
    let signed = format!("{prefix}_{env}_{id_and_secret}");
    let sum = checksum(signed.as_bytes());
    format!("{signed}{sum}")
}

/// A fixed token, planted where a target's input says `TOKEN`.
pub const PLANTED_ID: &str = "Pl4nt3dId0000001";
/// The planted token's secret: it must never come back in an error.
pub const PLANTED_SECRET: &str = "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tZz";

/// The planted token.
pub fn planted() -> String {
    token("kg", "live", &format!("{PLANTED_ID}{PLANTED_SECRET}"))
}

/// Whether `haystack` holds any 8 consecutive characters of the planted
/// secret (8 base62 characters are ~47 bits: not by accident).
pub fn holds_secret_fragment(haystack: &[u8]) -> bool {
    let secret = PLANTED_SECRET.as_bytes();
    secret
        .windows(8)
        .any(|w| haystack.windows(8).any(|h| h == w))
}

/// `input` with every `TOKEN` replaced by the planted token.
pub fn plant(input: &[u8]) -> Vec<u8> {
    let token = planted();
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"TOKEN") {
            out.extend_from_slice(token.as_bytes());
            i += 5;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}
