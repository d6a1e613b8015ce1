//! The hardened management API (SPEC §4a, §5a) end to end through a real
//! `keygate serve` process on a loopback socket: management scopes, the
//! mint ceiling, strict bodies, JSON errors for every status, durations.

mod common;

use common::{Serve, ServeOptions, http, token_id};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A running `keygate serve` and its bootstrap admin token.
struct Api {
    serve: Serve,
    admin: String,
    _dir: TempDir,
}

impl Api {
    fn start() -> Api {
        let dir = tempfile::tempdir().expect("temporary directory");
        let serve = Serve::start(dir.path(), ServeOptions::new());
        let admin = serve.bootstrap_token();
        Api {
            serve,
            admin,
            _dir: dir,
        }
    }

    /// Creates a key as the bootstrap admin: its token.
    fn key(&self, body: Value) -> String {
        self.serve.create_key(&self.admin, body).0
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Value) -> http::Response {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.serve.call(method, path, token, &body)
    }
}

/// A JSON error of SPEC §9: status, code and (when given) field.
#[track_caller]
fn assert_error(response: &http::Response, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    let body = response.json();
    assert_eq!(body["error"], code, "{response:?}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{response:?}");
    }
}

#[test]
fn serve_enforces_management_scopes_and_the_mint_ceiling() {
    let api = Api::start();
    let alice = api.key(json!({"owner": "alice", "name": "victim", "scopes": ["workspaces:read"]}));
    let alice_id = token_id(&alice);
    let bob =
        api.key(json!({"owner": "bob", "name": "wild", "scopes": ["keys:*", "workspaces:*"]}));

    // keys:* of bob does not reach alice's keys.
    let listed = api.call("GET", "/v1/keys?owner=alice", &bob, Value::Null);
    assert_error(&listed, 403, "forbidden", None);
    for (method, path) in [
        ("GET", format!("/v1/keys/{alice_id}")),
        ("POST", format!("/v1/keys/{alice_id}/revoke")),
        ("DELETE", format!("/v1/keys/{alice_id}")),
    ] {
        let response = api.call(method, &path, &bob, Value::Null);
        assert_error(&response, 404, "not_found", None);
    }
    assert_eq!(
        api.call("GET", "/v1/scopes", &alice, Value::Null).status,
        200
    );

    // admin:keys does.
    let ops = api.key(json!({"owner": "ops", "name": "ops", "scopes": ["keys:*", "admin:keys"]}));
    let shown = api.call("GET", &format!("/v1/keys/{alice_id}"), &ops, Value::Null);
    assert_eq!(shown.status, 200, "{shown:?}");

    // The ceiling: IP allow list, expiry, environment, each a 403 naming the field.
    let fenced = api.key(json!({
        "owner": "carol", "name": "fenced", "scopes": ["keys:create"], "ip_allow": ["127.0.0.1/32"],
    }));
    let response = api.call("POST", "/v1/keys", &fenced, json!({"name": "free"}));
    assert_error(&response, 403, "forbidden", Some("ip_allow"));
    let short = api.key(json!({
        "owner": "carol", "name": "short", "scopes": ["keys:create"], "expires_in": "30min",
    }));
    let response = api.call(
        "POST",
        "/v1/keys",
        &short,
        json!({"name": "forever", "expires_in": "never"}),
    );
    assert_error(&response, 403, "forbidden", Some("expires_at"));
    let tester = api.key(json!({
        "owner": "carol", "name": "tester", "scopes": ["keys:create"], "environment": "test",
    }));
    let response = api.call(
        "POST",
        "/v1/keys",
        &tester,
        json!({"name": "live", "environment": "live"}),
    );
    assert_error(&response, 403, "forbidden", Some("environment"));
    // Nothing was written for carol beyond the three callers.
    let listed = api.call("GET", "/v1/keys?owner=carol", &api.admin, Value::Null);
    assert_eq!(
        listed.json()["keys"].as_array().map(Vec::len),
        Some(3),
        "{listed:?}"
    );
}

#[test]
fn serve_answers_every_error_in_json_and_reads_durations_strictly() {
    let api = Api::start();
    // An array body is not an object.
    let response = api.call("POST", "/v1/keys", &api.admin, json!(["x", "y"]));
    assert_error(&response, 400, "bad_request", None);
    // Unknown route, wrong method, oversized body.
    let response = api.call("GET", "/v1/nothing-here", &api.admin, Value::Null);
    assert_error(&response, 404, "not_found", None);
    let response = api.call("PUT", "/v1/keys", &api.admin, Value::Null);
    assert_error(&response, 405, "method_not_allowed", None);
    assert!(response.header("allow").is_some_and(|a| a.contains("POST")));
    let big = json!({"name": "big", "description": "x".repeat(100 * 1024)});
    let response = api.call("POST", "/v1/keys", &api.admin, big);
    assert_error(&response, 413, "payload_too_large", None);
    let response = http::request(
        api.serve.addr,
        "POST",
        "/v1/keys",
        &[
            ("Authorization", &format!("Bearer {}", api.admin)),
            ("Content-Type", "text/plain"),
        ],
        br#"{"name": "plain"}"#,
    );
    assert_error(&response, 415, "unsupported_media_type", None);
    // A bare `m` is ambiguous; `min` and `mo` work.
    let response = api.call(
        "POST",
        "/v1/keys",
        &api.admin,
        json!({"name": "m", "expires_in": "30m"}),
    );
    assert_error(&response, 400, "bad_request", Some("expires_in"));
    let message = response.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("min") && message.contains("mo"),
        "{message}"
    );
    for ok in ["30min", "1mo"] {
        let response = api.call(
            "POST",
            "/v1/keys",
            &api.admin,
            json!({"name": ok, "expires_in": ok}),
        );
        assert_eq!(response.status, 201, "{ok}: {response:?}");
    }
}
