//! The JSON request bodies of the HTTP API (SPEC §9, §4a, §11): read and
//! parsed exactly as the handlers do before touching a store (`POST
//! /v1/keys`, `PATCH /v1/keys/{id}`, revoke, rotate with its grace,
//! credits with its change, authcheck, verify).
//!
//! The input picks the body kind and the `Content-Type`; every `TOKEN` in
//! it becomes a fixed valid token. Checked:
//! - a refusal is one of the statuses a body can cause (400, 413, 415),
//!   and its body is the JSON error object of §9: `error` and `message`
//!   strings, `field` a string when present, nothing else;
//! - no refusal ever holds 8 consecutive characters of the planted
//!   token's secret, wherever in the body the token was put (§2: no
//!   secret in any error message) — inputs that spell out part of the
//!   secret themselves are skipped;
//! - a body that is not a JSON object is never accepted.

#![no_main]

#[path = "common.rs"]
mod common;

use http::HeaderValue;
use keygate::fuzz::{AdminBody, admin_body};
use libfuzzer_sys::fuzz_target;

const KINDS: [AdminBody; 7] = [
    AdminBody::CreateKey,
    AdminBody::UpdateKey,
    AdminBody::Revoke,
    AdminBody::Rotate,
    AdminBody::Credits,
    AdminBody::Authcheck,
    AdminBody::Verify,
];
const TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/merge-patch+json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("text/plain"),
    Some("APPLICATION/JSON"),
];

fuzz_target!(|data: &[u8]| {
    let [kind, content_type, rest @ ..] = data else {
        return;
    };
    if common::holds_secret_fragment(rest) {
        return;
    }
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let content_type = TYPES[usize::from(*content_type) % TYPES.len()];
    let body = common::plant(rest);
    let result = admin_body(kind, content_type.map(HeaderValue::from_static), &body);
    match result {
        Ok(()) => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            let optional = matches!(kind, AdminBody::Revoke | AdminBody::Rotate);
            assert!(
                first == Some(&b'{') || (optional && first.is_none()),
                "accepted a body that is no JSON object: {:?}",
                String::from_utf8_lossy(&body)
            );
        }
        Err((status, bytes)) => {
            assert!(
                [400, 413, 415].contains(&status.as_u16()),
                "status {status} for {:?}",
                String::from_utf8_lossy(&body)
            );
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).expect("an error body is JSON");
            let object = value.as_object().expect("an error body is an object");
            assert!(object.get("error").is_some_and(|v| v.is_string()));
            assert!(object.get("message").is_some_and(|v| v.is_string()));
            assert!(object.get("field").is_none_or(|v| v.is_string()));
            assert!(
                object
                    .keys()
                    .all(|k| ["error", "message", "field"].contains(&k.as_str()))
            );
            assert!(
                !common::holds_secret_fragment(&bytes),
                "the error echoes the token's secret: {}\nfor the body {}",
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&body)
            );
        }
    }
});
