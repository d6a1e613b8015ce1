//! Token parsing (SPEC §1): `TokenFormat::parse` against a reference
//! parser written from the grammar.
//!
//! Checked, for any string and each of three prefixes:
//! - keygate accepts exactly what the reference accepts (length ≤ 255,
//!   `prefix "_" env "_"` + 54 base62 characters, this prefix, `live` or
//!   `test`, a matching CRC-32 checksum), and for an accepted token both
//!   agree on the environment and the id;
//! - an accepted token is rebuilt exactly from its parts: display prefix
//!   (`prefix_env_id`) + the rest of the text, and the id re-parses
//!   (`KeyId::parse`) to itself;
//! - changing any one character of an accepted token's body to another
//!   base62 character makes it rejected (the checksum catches it).
//!
//! Half of the runs build a token around the input with a correct
//! checksum, so the accepting path is exercised as much as the refusals.

#![no_main]

#[path = "common.rs"]
mod common;

use keygate::{Environment, KeyId, TokenFormat};
use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 3] = ["kg", "acme2", "abcdefghijklmnop"];

/// The reference: `Some((env, id))` when `raw` is a token of `prefix`.
fn reference<'a>(prefix: &str, raw: &'a str) -> Option<(&'a str, &'a str)> {
    if raw.len() > 255 {
        return None;
    }
    let rest = raw.strip_prefix(prefix)?.strip_prefix('_')?;
    let env = if rest.starts_with("live_") {
        "live"
    } else if rest.starts_with("test_") {
        "test"
    } else {
        return None;
    };
    let body = &rest[5..];
    if body.len() != 54 || !body.bytes().all(|b| common::BASE62.contains(&b)) {
        return None;
    }
    let (signed, sum) = raw.split_at(raw.len() - 6);
    if common::checksum(signed.as_bytes()) != sum {
        return None;
    }
    Some((env, &body[..16]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let prefix = PREFIXES[usize::from(control % 3)];
    let format = TokenFormat::new(prefix).expect("a valid prefix");
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let raw = if control & 0x80 != 0 {
        // Build a well-formed token around the input's characters.
        let env = if control & 0x40 != 0 { "live" } else { "test" };
        let body: String = text
            .bytes()
            .map(|b| char::from(common::BASE62[usize::from(b) % 62]))
            .chain(std::iter::repeat('0'))
            .take(54)
            .collect();
        common::token(prefix, env, &body)
    } else {
        text.to_owned()
    };

    let parsed = format.parse(&raw);
    let expected = reference(prefix, &raw);
    match (&parsed, expected) {
        (Ok(token), Some((env, id))) => {
            assert_eq!(token.environment().as_str(), env);
            assert_eq!(token.id().as_str(), id);
            let display = format.display_prefix(token.environment(), token.id());
            assert!(
                raw.starts_with(&display),
                "the display prefix starts the token"
            );
            assert_eq!(
                display.len() + 38,
                raw.len(),
                "secret and checksum follow it"
            );
            assert_eq!(KeyId::parse(id).ok(), Some(token.id()));
            assert_eq!(id.parse::<KeyId>().ok(), Some(token.id()));
            assert_eq!(env.parse::<Environment>().ok(), Some(token.environment()));
            // One character changed anywhere in the body: refused.
            let at = raw.len() - 54 + rest.len() % 54;
            let old = raw.as_bytes()[at];
            let new = common::BASE62[(common::BASE62.iter().position(|&b| b == old).unwrap()
                + 1
                + usize::from(control) % 61)
                % 62];
            assert_ne!(old, new);
            let mut changed = raw.clone().into_bytes();
            changed[at] = new;
            let changed = String::from_utf8(changed).unwrap();
            assert!(
                format.parse(&changed).is_err(),
                "a changed token is refused"
            );
        }
        (Err(_), None) => {}
        (parsed, expected) => {
            panic!("keygate and the reference disagree on {raw:?}: {parsed:?} vs {expected:?}")
        }
    }
    // Debug never shows the secret.
    if let Ok(token) = &parsed {
        let debug = format!("{token:?}");
        assert!(!debug.contains(&raw[raw.len() - 38..raw.len() - 6]));
    }
});
