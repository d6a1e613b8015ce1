//! A real nginx in front of a service, asking `keygate serve` about every
//! request with `auth_request` (SPEC §10), configured from
//! `tests/fixtures/nginx.conf.template` (the README quotes it).
//!
//! Needs `/usr/sbin/nginx`; when it is missing the tests first run
//! `.ci/install-nginx` (Debian's `nginx-light`; needs root and the Debian
//! archive). Without nginx these tests FAIL: they never skip.
//!
//! Each test runs its own keygate (with `tests/fixtures/rules.toml`), its
//! own recording upstream and its own nginx, all on free loopback ports,
//! all stopped by guards even when an assertion fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::proxies::{EdgeProxy, ProxyStack, bearer};
use common::{fixture, free_port, http};
use serde_json::json;

const NGINX: &str = "/usr/sbin/nginx";

type Nginx = EdgeProxy;

fn require_nginx() {
    // Like .ci/run, install what the test needs on a fresh machine (the
    // script is idempotent and serialized by a lock, since tests run in
    // parallel); fail, never skip, if that is impossible.
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if !Path::new(NGINX).is_file() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install-nginx");
            let status = std::process::Command::new("bash").arg(&script).status();
            eprintln!("{} exited with {status:?}", script.display());
        }
    });
    assert!(
        Path::new(NGINX).is_file(),
        "{NGINX} is missing: these tests need a real nginx with auth_request. \
         Install it with `.ci/install-nginx` (Debian's nginx-light) and run them again; \
         they never skip."
    );
}

/// Writes the config from the template into `prefix` and starts nginx.
fn start_nginx(prefix: &Path, keygate: SocketAddr, upstream: SocketAddr) -> Nginx {
    require_nginx();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let template = std::fs::read_to_string(fixture("nginx.conf.template")).unwrap();
    let config = template
        .replace("{{PREFIX}}", prefix.to_str().unwrap())
        .replace("{{LISTEN}}", &addr.to_string())
        .replace("{{KEYGATE}}", &keygate.to_string())
        .replace("{{UPSTREAM}}", &upstream.to_string());
    assert!(!config.contains("{{"), "every placeholder replaced");
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let args = |test: bool| {
        let mut args = vec![
            "-p".to_owned(),
            format!("{}/", prefix.display()),
            "-c".to_owned(),
            conf.display().to_string(),
            "-e".to_owned(),
            prefix.join("error.log").display().to_string(),
        ];
        if test {
            args.push("-t".to_owned());
        }
        args
    };

    let check = Command::new(NGINX).args(args(true)).output().unwrap();
    assert!(
        check.status.success(),
        "nginx -t refused the config:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut command = Command::new(NGINX);
    command.args(args(false));
    let mut nginx = EdgeProxy::spawn("nginx", command, addr, prefix.join("error.log"));
    nginx.wait_ready(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "listen",
        |addr| std::net::TcpStream::connect(addr).is_ok(),
    );
    nginx
}

/// The [`ProxyStack`] with nginx in front, and a second key besides
/// `reader`: `other` (owner bob, things:read).
struct Stack {
    base: ProxyStack,
    other: String,
}

impl Stack {
    fn start() -> Stack {
        Stack::start_with(&[])
    }

    /// With extra `keygate serve` arguments.
    fn start_with(args: &[&str]) -> Stack {
        require_nginx();
        let base = ProxyStack::start(args, start_nginx);
        let (other, _) = base.keygate.create_key(
            &base.admin,
            json!({"owner": "bob", "name": "other", "scopes": ["things:read"]}),
        );
        Stack { base, other }
    }
}

impl std::ops::Deref for Stack {
    type Target = ProxyStack;

    fn deref(&self) -> &ProxyStack {
        &self.base
    }
}

#[test]
fn nginx_is_installed_with_auth_request() {
    require_nginx();
    let out = Command::new(NGINX).arg("-V").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("http_auth_request_module"),
        "this nginx lacks auth_request: {text}"
    );
}

#[test]
fn nginx_forwards_an_allowed_request_with_the_identity_and_without_the_token() {
    let stack = Stack::start();
    let auth = bearer(&stack.reader);
    let response = stack.get(
        "/api/workspaces/1?view=full",
        &[
            ("Authorization", &auth),
            ("X-Keygate-Owner", "mallory"),
            ("X-Keygate-Scopes", "*:*"),
        ],
    );
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());
    assert_eq!(response.header("x-upstream"), Some("echo"), "{response:?}");
    assert_eq!(
        response.header("www-authenticate"),
        None,
        "no challenge on success"
    );

    let seen = stack.upstream.received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let got = &seen[0];
    assert!(
        got.request_line
            .starts_with("GET /api/workspaces/1?view=full HTTP/1."),
        "{got:?}"
    );
    assert_eq!(
        got.headers("x-keygate-owner"),
        vec!["alice"],
        "the key's owner, not the forged one: {got:?}"
    );
    assert_eq!(
        got.headers("x-keygate-key-id"),
        vec![stack.reader_id.as_str()]
    );
    assert_eq!(got.headers("x-keygate-scopes"), vec!["workspaces:read"]);
    assert_eq!(got.headers("x-keygate-environment"), vec!["live"]);
    assert_eq!(got.header("authorization"), None, "{got:?}");
    assert!(
        !got.head.contains(&stack.reader),
        "the token reached the upstream"
    );

    // HEAD is covered by the same rule.
    let response = http::request(
        stack.proxy.addr,
        "HEAD",
        "/api/workspaces/2",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(response.status, 200, "{response:?}");

    // A method outside the rule's list needs only a valid key.
    let auth_other = bearer(&stack.other);
    let response = http::request(
        stack.proxy.addr,
        "POST",
        "/api/workspaces/1",
        &[("Authorization", &auth_other)],
        b"{}",
    );
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());
    let got = stack.upstream.received().pop().unwrap();
    assert!(
        got.request_line.starts_with("POST /api/workspaces/1 "),
        "{got:?}"
    );
    assert_eq!(got.header("x-keygate-owner"), Some("bob"));
    assert_eq!(got.body, b"{}", "the body reaches the upstream");

    // The X-API-Key source works, and is removed too.
    let response = stack.get("/api/workspaces/3", &[("X-API-Key", &stack.reader)]);
    assert_eq!(response.status, 200, "{response:?}");
    let got = stack.upstream.received().pop().unwrap();
    assert_eq!(got.header("x-api-key"), None, "{got:?}");
    assert_eq!(got.header("x-keygate-owner"), Some("alice"));
}

#[test]
fn nginx_answers_401_with_the_challenge_without_or_with_a_bad_key() {
    let stack = Stack::start();
    let before = stack.upstream.count();

    let response = stack.get("/api/workspaces/1", &[]);
    assert_eq!(response.status, 401, "{response:?}\n{}", stack.logs());
    assert_eq!(
        response.headers("www-authenticate"),
        vec![r#"Bearer realm="keygate""#],
        "exactly one challenge: {response:?}"
    );

    // Any path without a rule needs a key too.
    let response = stack.get("/other", &[]);
    assert_eq!(response.status, 401, "{response:?}");

    // A wrong secret under a real id, and garbage.
    let mut bad = stack.reader.clone();
    bad.replace_range(24..56, &"W".repeat(32));
    for token in [bad.as_str(), "kg_live_nonsense", "not-a-token"] {
        let auth = bearer(token);
        let response = stack.get("/api/workspaces/1", &[("Authorization", &auth)]);
        assert_eq!(response.status, 401, "{token}: {response:?}");
        assert_eq!(
            response.headers("www-authenticate"),
            vec![r#"Bearer realm="keygate", error="invalid_token""#],
            "{token}: {response:?}"
        );
    }

    // A revoked key, from the next request on.
    let revoke = stack.keygate.call(
        "POST",
        &format!("/v1/keys/{}/revoke", stack.reader_id),
        &stack.admin,
        "{}",
    );
    assert_eq!(revoke.status, 200, "{revoke:?}");
    let auth = bearer(&stack.reader);
    let response = stack.get("/api/workspaces/1", &[("Authorization", &auth)]);
    assert_eq!(response.status, 401, "revoked: {response:?}");

    // Dot segments do not escape into a public rule's shadow.
    for target in [
        "/public/../api/workspaces/1",
        "/public/%2e%2e/api/workspaces/1",
    ] {
        let response = stack.get(target, &[]);
        assert_eq!(response.status, 401, "{target}: {response:?}");
    }
    stack.assert_upstream_untouched(before);
}

#[test]
fn nginx_answers_403_for_a_key_without_the_scope() {
    let stack = Stack::start();
    let before = stack.upstream.count();
    let auth = bearer(&stack.other);
    for method in ["GET", "HEAD"] {
        let response = http::request(
            stack.proxy.addr,
            method,
            "/api/workspaces/1",
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(
            response.status,
            403,
            "{method}: {response:?}\n{}",
            stack.logs()
        );
        assert_eq!(
            response.headers("www-authenticate"),
            vec![r#"Bearer realm="keygate", error="insufficient_scope", scope="workspaces:read""#],
            "{method}: {response:?}"
        );
    }
    stack.assert_upstream_untouched(before);
}

#[test]
fn nginx_lets_public_paths_through_without_a_key() {
    let stack = Stack::start();
    let response = stack.get("/public/x", &[]);
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());
    assert_eq!(response.header("www-authenticate"), None);
    let seen = stack.upstream.received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let got = &seen[0];
    assert!(
        got.request_line.starts_with("GET /public/x HTTP/1."),
        "{got:?}"
    );
    // A public rule sends the identity headers empty: nginx drops them, and
    // client-sent copies are replaced all the same.
    let response = stack.get("/public/deep/er", &[("X-Keygate-Owner", "mallory")]);
    assert_eq!(response.status, 200, "{response:?}");
    let got = stack.upstream.received().pop().unwrap();
    assert_eq!(
        got.header("x-keygate-owner").unwrap_or(""),
        "",
        "a forged owner on a public path: {got:?}"
    );
}

#[test]
fn nginx_passes_the_client_address_for_ip_lists() {
    let stack = Stack::start();
    let (local, _) = stack.keygate.create_key(
        &stack.admin,
        json!({"owner": "carol", "name": "local", "scopes": ["workspaces:read"], "ip_allow": ["127.0.0.1"]}),
    );
    let (remote, _) = stack.keygate.create_key(
        &stack.admin,
        json!({"owner": "dave", "name": "remote", "scopes": ["workspaces:read"], "ip_allow": ["10.0.0.0/8"]}),
    );
    let auth = bearer(&local);
    let response = stack.get("/api/workspaces/1", &[("Authorization", &auth)]);
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());

    let before = stack.upstream.count();
    let auth = bearer(&remote);
    // The forged X-Forwarded-For is replaced by nginx with the real peer.
    let response = stack.get(
        "/api/workspaces/1",
        &[("Authorization", &auth), ("X-Forwarded-For", "10.1.2.3")],
    );
    assert_eq!(response.status, 403, "{response:?}\n{}", stack.logs());
    stack.assert_upstream_untouched(before);
}

// ---------------------------------------------------------------------------
// Hardening (SPEC §10a)
// ---------------------------------------------------------------------------

/// nginx answers 500 when the auth subrequest answers anything but 2xx,
/// 401 or 403 (here keygate's 400 `invalid_request`).
fn assert_refused_by_nginx(stack: &Stack, response: &http::Response, what: &str) {
    assert_eq!(
        response.status,
        500,
        "{what}: {response:?}\n{}",
        stack.logs()
    );
    assert!(
        stack
            .proxy
            .log()
            .contains("auth request unexpected status: 400"),
        "{what}: keygate answered 400\n{}",
        stack.logs()
    );
}

#[test]
fn nginx_a_client_sent_x_forwarded_uri_cannot_choose_the_judged_path() {
    // auto (the default): nginx sets X-Original-URI, the client's
    // X-Forwarded-Uri reaches keygate too, and they disagree.
    let stack = Stack::start();
    let before = stack.upstream.count();
    let spoof = [
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Method", "GET"),
    ];
    let response = stack.get("/admin/users", &spoof);
    assert_refused_by_nginx(&stack, &response, "auto");
    stack.assert_upstream_untouched(before);

    // nginx mode: the client's header is not even read.
    let stack = Stack::start_with(&["--forward-auth", "nginx"]);
    let before = stack.upstream.count();
    let response = stack.get("/admin/users", &spoof);
    assert_eq!(response.status, 401, "{response:?}\n{}", stack.logs());
    assert_eq!(
        response.headers("www-authenticate"),
        vec![r#"Bearer realm="keygate""#]
    );
    stack.assert_upstream_untouched(before);
    // And the proxy's own header still works.
    let response = stack.get("/public/x", &[("X-Forwarded-Uri", "/admin/users")]);
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());
}

#[test]
fn nginx_paths_servers_read_differently_never_reach_the_upstream() {
    let stack = Stack::start();
    let before = stack.upstream.count();
    // `reader` holds workspaces:read, not admin:read.
    let auth = bearer(&stack.reader);
    for target in [
        "/public/..%2fadmin/x",
        "/public/..%2Fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..;/admin/x",
        "/admin;jsessionid=1/x",
        "/public/%252e%252e/admin/x",
        "/admin./x",
        "/admin%20/x",
    ] {
        let response = stack.get(target, &[("Authorization", &auth)]);
        assert_refused_by_nginx(&stack, &response, target);
    }
    for target in ["/ADMIN/x", "/Admin/users"] {
        let response = stack.get(target, &[("Authorization", &auth)]);
        assert_eq!(
            response.status,
            403,
            "{target}: {response:?}\n{}",
            stack.logs()
        );
    }
    stack.assert_upstream_untouched(before);
}
