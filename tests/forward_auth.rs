//! Forward auth hardened (SPEC §10a), over real sockets against a real
//! `keygate serve`: the configured `--forward-auth` mode, refused paths,
//! deny by default, and the client address. Through real proxies:
//! `tests/nginx.rs` and `tests/traefik.rs`.

mod common;

use common::{Serve, ServeOptions, fixture, free_port, http, run_keygate};
use serde_json::json;
use tempfile::TempDir;

const FORWARD_AUTH: &str = "/v1/forward-auth";

/// `keygate serve --rules tests/fixtures/rules.toml` plus `args`, a key
/// `reader` (workspaces:read) and the admin token.
struct Server {
    serve: Serve,
    admin: String,
    reader: String,
    _dir: TempDir,
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let rules = fixture("rules.toml");
    let mut options = ServeOptions::new()
        .args(["--rules", rules.to_str().unwrap()])
        .args(args.iter().copied());
    for (name, value) in env {
        options = options.env(name, value);
    }
    let serve = Serve::start(dir.path(), options);
    let admin = serve.bootstrap_token();
    let (reader, _) = serve.create_key(
        &admin,
        json!({"owner": "alice", "name": "reader", "scopes": ["workspaces:read"]}),
    );
    Server {
        serve,
        admin,
        reader,
        _dir: dir,
    }
}

impl Server {
    fn ask(&self, headers: &[(&str, &str)]) -> http::Response {
        http::get(self.serve.addr, FORWARD_AUTH, headers)
    }
}

fn assert_invalid_request(response: &http::Response, what: &str) {
    assert_eq!(response.status, 400, "{what}: {response:?}");
    assert_eq!(response.json()["error"], "invalid_request", "{what}");
    assert_eq!(response.header("cache-control"), Some("no-store"), "{what}");
}

/// `keygate serve --rules FILE` with `rules` written to FILE, in a fresh
/// temporary directory (kept alive by the returned guard).
fn serve_with_rules(rules: &str) -> (TempDir, Serve) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let serve = Serve::start(
        &data,
        ServeOptions::new().args(["--rules", path.to_str().unwrap()]),
    );
    (dir, serve)
}

#[test]
fn auto_refuses_a_client_sent_convention_that_disagrees_with_the_proxy() {
    let server = start(&[], &[]);
    // Traefik sets X-Forwarded-Uri to what it routes (/admin/...); the
    // client added X-Original-URI naming a public path.
    let response = server.ask(&[
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/admin/users"),
        ("X-Original-URI", "/public/x"),
    ]);
    assert_invalid_request(&response, "nginx vs traefik URI");
    // The same URI with another method disagrees too.
    let response = server.ask(&[
        ("X-Forwarded-Method", "DELETE"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/public/x"),
    ]);
    assert_invalid_request(&response, "nginx vs traefik method");
    // A header convention against the Envoy form.
    let response = http::get(
        server.serve.addr,
        "/v1/forward-auth/admin/users",
        &[("X-Original-URI", "/public/x")],
    );
    assert_invalid_request(&response, "nginx vs envoy");
    // The same header twice is ambiguous.
    let response = server.ask(&[
        ("X-Original-URI", "/admin/users"),
        ("X-Original-URI", "/public/x"),
    ]);
    assert_invalid_request(&response, "a repeated header");

    // Conventions that agree are judged as usual.
    let response = server.ask(&[
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/public/x"),
    ]);
    assert_eq!(response.status, 200, "{response:?}");
    let response = server.ask(&[("X-Original-URI", "/admin/users")]);
    assert_eq!(response.status, 401, "{response:?}");
}

#[test]
fn nginx_mode_reads_only_the_x_original_headers() {
    let server = start(&["--forward-auth", "nginx"], &[]);
    let response = server.ask(&[
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/admin/users"),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/public/x"),
    ]);
    assert_eq!(response.status, 401, "judged as /admin/users: {response:?}");
    assert_eq!(response.json()["error"], "missing_token");
    // Without them there is nothing to judge; the Envoy form is not read.
    let response = server.ask(&[("X-Forwarded-Uri", "/public/x")]);
    assert_invalid_request(&response, "no X-Original-URI");
    let response = http::get(server.serve.addr, "/v1/forward-auth/public/x", &[]);
    assert_invalid_request(&response, "the Envoy form in nginx mode");
    let response = server.ask(&[("X-Original-URI", "/public/x")]);
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn traefik_mode_from_the_environment_reads_only_the_x_forwarded_headers() {
    let server = start(&[], &[("KEYGATE_FORWARD_AUTH", "traefik")]);
    let response = server.ask(&[
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/admin/users"),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/public/x"),
    ]);
    assert_eq!(response.status, 401, "judged as /admin/users: {response:?}");
    let response = server.ask(&[("X-Original-URI", "/public/x")]);
    assert_invalid_request(&response, "no X-Forwarded-Uri");
    let response = server.ask(&[
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/public/x"),
    ]);
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn envoy_mode_reads_only_the_request_itself() {
    let server = start(&["--forward-auth", "envoy"], &[]);
    let response = http::get(
        server.serve.addr,
        "/v1/forward-auth/admin/users",
        &[
            ("X-Original-URI", "/public/x"),
            ("X-Forwarded-Uri", "/public/x"),
        ],
    );
    assert_eq!(response.status, 401, "judged as /admin/users: {response:?}");
    let response = http::get(
        server.serve.addr,
        "/v1/forward-auth/public/x",
        &[("X-Original-URI", "/admin/users")],
    );
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn an_unknown_forward_auth_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run_keygate(
        dir.path(),
        &["serve", "--listen", &listen, "--forward-auth", "haproxy"],
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("haproxy"), "{stderr}");
    assert!(out.stdout.is_empty(), "no bootstrap key printed: {out:?}");
}

#[test]
fn forward_auth_refuses_ambiguous_paths_and_matches_case_insensitively() {
    let server = start(&[], &[]);
    let auth = format!("Bearer {}", server.reader);
    // `reader` lacks admin:read: none of these may be judged as public or
    // as anything but /admin/**.
    for uri in [
        "/public/..%2fadmin/x",
        "/public/..%5Cadmin/x",
        "/public/..;/admin/x",
        "/public/%252e%252e/admin/x",
        "/admin./x",
        "/admin%20/x",
        "/public/a%00",
        "/public/%c3",
    ] {
        let response = server.ask(&[("Authorization", &auth), ("X-Original-URI", uri)]);
        assert_invalid_request(&response, uri);
    }
    for uri in ["/ADMIN/x", "/Admin/x", "/public/../admin/x"] {
        let response = server.ask(&[("Authorization", &auth), ("X-Original-URI", uri)]);
        assert_eq!(response.status, 403, "{uri}: {response:?}");
        assert_eq!(response.json()["error"], "insufficient_scope", "{uri}");
    }
    // CONNECT and TRACE as the original method.
    for method in ["TRACE", "CONNECT"] {
        let response = server.ask(&[
            ("Authorization", &auth),
            ("X-Original-Method", method),
            ("X-Original-URI", "/public/x"),
        ]);
        assert_eq!(response.status, 405, "{method}: {response:?}");
        assert_eq!(response.json()["error"], "method_not_allowed");
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
}

#[test]
fn with_a_rules_file_a_request_no_rule_allows_is_forbidden() {
    let (dir, serve) = serve_with_rules(
        "[[rule]]\npath = \"/public/**\"\npublic = true\n\n[[rule]]\npath = \"/api/**\"\nrequire = \"workspaces:read\"\n",
    );
    let rules = dir.path().join("rules.toml");
    let admin = serve.bootstrap_token();
    let auth = format!("Bearer {admin}");
    for headers in [vec![], vec![("Authorization", auth.as_str())]] {
        let mut headers = headers;
        headers.push(("X-Original-URI", "/elsewhere"));
        let response = http::get(serve.addr, FORWARD_AUTH, &headers);
        assert_eq!(response.status, 403, "{response:?}");
        assert_eq!(
            response.json(),
            json!({"error": "forbidden", "message": "no rule allows this request"})
        );
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }

    // `default = "key"` restores "any valid key".
    let lenient = dir.path().join("lenient.toml");
    std::fs::write(
        &lenient,
        format!(
            "default = \"key\"\n{}",
            std::fs::read_to_string(&rules).unwrap()
        ),
    )
    .unwrap();
    let data = dir.path().join("data2");
    std::fs::create_dir(&data).unwrap();
    let serve = Serve::start(
        &data,
        ServeOptions::new().args(["--rules", lenient.to_str().unwrap()]),
    );
    let admin = serve.bootstrap_token();
    let auth = format!("Bearer {admin}");
    let response = http::get(
        serve.addr,
        FORWARD_AUTH,
        &[("X-Original-URI", "/elsewhere")],
    );
    assert_eq!(response.status, 401, "{response:?}");
    let response = http::get(
        serve.addr,
        FORWARD_AUTH,
        &[("Authorization", &auth), ("X-Original-URI", "/elsewhere")],
    );
    assert_eq!(response.status, 200, "{response:?}");

    // Any other default is refused at start, naming it.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "default = \"public\"\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run_keygate(
        dir.path(),
        &[
            "serve",
            "--listen",
            &listen,
            "--rules",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"public\""), "{stderr}");
}

#[test]
fn an_unparseable_forwarded_for_hop_refuses_keys_with_ip_lists() {
    let server = start(&[], &[]);
    let (local, _) = server.serve.create_key(
        &server.admin,
        json!({"owner": "carol", "name": "local", "scopes": ["workspaces:read"], "ip_allow": ["127.0.0.1"]}),
    );
    let local = format!("Bearer {local}");
    let reader = format!("Bearer {}", server.reader);
    let base = [("X-Original-URI", "/api/workspaces/1")];
    let response = server.ask(&[base[0], ("Authorization", &local)]);
    assert_eq!(response.status, 200, "from loopback itself: {response:?}");
    for chain in ["garbage", "10.0.0.1, nonsense", "203.0.113.9:5555"] {
        let response = server.ask(&[
            base[0],
            ("Authorization", &local),
            ("X-Forwarded-For", chain),
        ]);
        assert_eq!(response.status, 403, "{chain}: {response:?}");
        assert_eq!(response.json()["error"], "ip_not_allowed", "{chain}");
        let response = server.ask(&[
            base[0],
            ("Authorization", &reader),
            ("X-Forwarded-For", chain),
        ]);
        assert_eq!(response.status, 200, "no IP lists: {chain}: {response:?}");
    }
}

#[test]
fn a_pathological_pattern_meets_no_deep_path() {
    // Several `**` and a path that almost matches used to cost seconds of
    // CPU per unauthenticated request (backtracking). Now paths have at
    // most 128 segments, and matching is bounded by pattern × path steps
    // (counted in the unit tests; no timing here).
    let (_dir, serve) =
        serve_with_rules("[[rule]]\npath = \"/**/a/**/b/**/c/**/d\"\npublic = true\n");
    let deep = "/a/b/c".repeat(400);
    let response = http::get(serve.addr, FORWARD_AUTH, &[("X-Original-URI", &deep)]);
    assert_invalid_request(&response, "1 200 segments");
    let response = http::get(serve.addr, &format!("{FORWARD_AUTH}{deep}"), &[]);
    assert_invalid_request(&response, "1 200 segments, Envoy form");

    let near_miss = format!("{}/x", "/a/b/c".repeat(42));
    assert_eq!(near_miss.matches('/').count(), 127);
    let response = http::get(serve.addr, FORWARD_AUTH, &[("X-Original-URI", &near_miss)]);
    assert_eq!(response.status, 403, "no rule: {response:?}");
    let hit = format!("{}/d", "/a/b/c".repeat(42));
    let response = http::get(serve.addr, FORWARD_AUTH, &[("X-Original-URI", &hit)]);
    assert_eq!(response.status, 200, "public: {response:?}");
}

#[test]
fn a_rate_limited_key_is_refused_429_once_spent_and_refusals_before_the_limit_take_nothing() {
    let server = start(&["--forward-auth", "nginx"], &[]);
    let (limited, _) = server.serve.create_key(
        &server.admin,
        json!({
            "owner": "alice",
            "name": "limited",
            "scopes": ["workspaces:read"],
            "rate_limits": [{"name": "burst", "limit": 2, "period": "1h"}],
        }),
    );
    let bearer = format!("Bearer {limited}");
    let ask = |uri: &str| {
        server.ask(&[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", uri),
            ("Authorization", &bearer),
        ])
    };
    // Refused for its scopes (the rule wants admin:read): nothing taken.
    for _ in 0..3 {
        let response = ask("/admin/users");
        assert_eq!(response.status, 403, "{response:?}");
        assert_eq!(response.json()["error"], "insufficient_scope");
    }
    for _ in 0..2 {
        let response = ask("/api/workspaces/1");
        assert_eq!(response.status, 200, "{response:?}");
    }
    let response = ask("/api/workspaces/1");
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.json()["error"], "rate_limited");
    assert_eq!(response.json()["limit"], "burst");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    // Half an hour per unit: the wait is whole seconds, at most 1 800.
    let wait: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1_700..=1_800).contains(&wait), "Retry-After: {wait}");
    // Another key of the same owner has its own bucket.
    let response = server.ask(&[
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/api/workspaces/1"),
        ("Authorization", &format!("Bearer {}", server.reader)),
    ]);
    assert_eq!(response.status, 200, "{response:?}");
}
