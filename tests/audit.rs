//! The audit log, request ids and the access log, end to end: the real
//! `keygate` binary on real loopback sockets, over SQLite and (with the
//! `postgres` feature) PostgreSQL.
//!
//! - every key change through the HTTP API and the CLI writes one record
//!   naming the actor, the client address and the request id; no record
//!   ever holds a token or a MAC; deleting a key keeps its records;
//! - `GET /v1/audit` is owner-isolated, filtered and paged; `keygate audit`
//!   reads the same log; `--audit-retention` deletes older records;
//! - a failing audit insert (a trigger raising in the database) fails the
//!   change and leaves the key as it was;
//! - every answer carries `X-Request-Id`; the proxy forwards it upstream;
//!   forward auth and the proxy write one access-log line per decision,
//!   never with the token.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Serve, ServeOptions, Upstream, http, run_keygate_env};
use keygate::Pepper;
use serde_json::{Value, json};

/// The pepper every process of these tests uses, so that the tests can
/// compute the MACs that must never appear.
const PEPPER: &str = "6b657967617465206175646974207465737420706570706572206f6e6c792121";

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn serve(dir: &Path, options: ServeOptions) -> Serve {
    Serve::start(dir, options.env("KEYGATE_PEPPER", PEPPER))
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    run_keygate_env(dir, &[("KEYGATE_PEPPER", PEPPER)], args)
}

/// `keygate ARGS --json`, which must succeed; its JSON.
fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(dir, &all);
    assert!(
        out.status.success(),
        "keygate {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `METHOD PATH` with a bearer token and an `X-Request-Id`.
fn call_with_id(
    serve: &Serve,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    request_id: &str,
) -> http::Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("X-Request-Id", request_id),
    ];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    http::request(serve.addr, method, path, &headers, body.as_bytes())
}

fn records(response: &http::Response) -> Vec<Value> {
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["records"].as_array().unwrap().clone()
}

/// Every way a secret could show up in a record: the token, its MAC in hex
/// and in base64, the pepper.
fn secrets_of(tokens: &[&str]) -> Vec<String> {
    use base64::Engine as _;
    let pepper = Pepper::from_hex(PEPPER).unwrap();
    let mut secrets = vec![PEPPER.to_owned()];
    for token in tokens {
        let mac = pepper.mac(token);
        secrets.push((*token).to_owned());
        secrets.push(token[token.len() - 38..].to_owned()); // secret + checksum
        secrets.push(hex::encode(mac));
        secrets.push(base64::engine::general_purpose::STANDARD.encode(mac));
    }
    secrets
}

fn assert_no_secret(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "a secret leaked: {text}");
    }
}

/// Polls `check` for up to `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the whole lifecycle through the API and checks its records;
/// returns every token involved.
fn every_change_through_the_api_is_recorded(serve: &Serve) -> Vec<String> {
    let admin = serve.bootstrap_token();
    let admin_id = common::token_id(&admin);
    let created = call_with_id(
        serve,
        "POST",
        "/v1/keys",
        &admin,
        &json!({"owner": "alice", "name": "ci", "scopes": ["workspaces:read", "workspaces:write"], "credits": {"remaining": 10}}).to_string(),
        "req-create-1",
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("x-request-id"), Some("req-create-1"));
    let token = created.json()["key"].as_str().unwrap().to_owned();
    let id = created.json()["api_key"]["id"].as_str().unwrap().to_owned();

    let path = format!("/v1/keys/{id}");
    let steps: [(&str, String, &str, &str); 4] = [
        (
            "PATCH",
            path.clone(),
            r#"{"name": "ci-2", "scopes": ["workspaces:read"]}"#,
            "req-update",
        ),
        (
            "POST",
            format!("{path}/credits"),
            r#"{"add": 5}"#,
            "req-credits",
        ),
        (
            "POST",
            format!("{path}/revoke"),
            r#"{"reason": "leaked"}"#,
            "req-revoke",
        ),
        ("DELETE", path.clone(), "", "req-delete"),
    ];
    for (method, target, body, request_id) in &steps {
        let response = call_with_id(serve, method, target, &admin, body, request_id);
        assert!(response.status < 300, "{method} {target}: {response:?}");
        assert_eq!(response.header("x-request-id"), Some(*request_id));
    }
    let (other, other_key) = serve.create_key(&admin, json!({"owner": "bob", "name": "rotated"}));
    let other_id = other_key["id"].as_str().unwrap();
    let rotated = call_with_id(
        serve,
        "POST",
        &format!("/v1/keys/{other_id}/rotate"),
        &admin,
        "",
        "req-rotate",
    );
    assert_eq!(rotated.status, 201, "{rotated:?}");
    let new_token = rotated.json()["key"].as_str().unwrap().to_owned();

    let response = serve.call("GET", &format!("/v1/audit?key_id={id}"), &admin, "");
    let log = records(&response);
    let actions: Vec<&str> = log.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "key.delete",
            "key.revoke",
            "key.credits",
            "key.update",
            "key.create"
        ],
        "one record per change, newest first, kept after the delete"
    );
    for record in &log {
        assert_eq!(
            record["actor"],
            json!({"key_id": admin_id, "owner": "admin"})
        );
        assert_eq!(record["target"], json!({"key_id": id, "owner": "alice"}));
        assert_eq!(record["client_ip"], "127.0.0.1");
        assert!(record["at"].as_str().unwrap().ends_with('Z'), "{record}");
        assert!(uuid_v7(record["id"].as_str().unwrap()), "{record}");
    }
    let by_action = |action: &str| log.iter().find(|r| r["action"] == action).unwrap();
    assert_eq!(by_action("key.create")["request_id"], "req-create-1");
    assert_eq!(by_action("key.update")["request_id"], "req-update");
    assert_eq!(
        by_action("key.update")["changes"],
        json!({
            "name": {"from": "ci", "to": "ci-2"},
            "scopes": {"from": ["workspaces:read", "workspaces:write"], "to": ["workspaces:read"]},
        })
    );
    assert_eq!(
        by_action("key.credits")["changes"]["credits"],
        json!({"from": {"remaining": 10, "refill": null}, "to": {"remaining": 15, "refill": null}})
    );
    assert_eq!(
        by_action("key.revoke")["changes"]["revoked_reason"]["to"],
        "leaked"
    );
    assert_eq!(
        by_action("key.delete")["changes"]["owner"],
        json!({"from": "alice", "to": null})
    );

    let rotation = records(&serve.call(
        "GET",
        &format!("/v1/audit?key_id={other_id}&action=key.rotate"),
        &admin,
        "",
    ));
    assert_eq!(rotation.len(), 1);
    assert_eq!(rotation[0]["request_id"], "req-rotate");
    let successor = rotation[0]["changes"]["superseded_by"]["to"]
        .as_str()
        .unwrap();
    assert_eq!(successor, common::token_id(&new_token));

    let everything = serve.call("GET", "/v1/audit?limit=1000", &admin, "").text();
    assert_no_secret(
        &everything,
        &secrets_of(&[&admin, &token, &other, &new_token]),
    );
    vec![admin, token, other, new_token]
}

fn uuid_v7(text: &str) -> bool {
    text.len() == 36 && text.as_bytes()[14] == b'7'
}

#[test]
fn every_change_through_the_api_is_recorded_on_sqlite_and_no_record_holds_a_secret() {
    let dir = temp();
    let serve = serve(dir.path(), ServeOptions::new());
    let tokens = every_change_through_the_api_is_recorded(&serve);
    // Nor do the raw rows of the database.
    let rows = raw_sqlite_audit(dir.path());
    assert!(rows.len() >= 8, "{rows:?}");
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert_no_secret(&rows.join("\n"), &secrets_of(&tokens));
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("keygate.db").display())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every audit row of the SQLite database in `dir`, as text.
fn raw_sqlite_audit(dir: &Path) -> Vec<String> {
    runtime().block_on(async {
        let store = keygate::SqliteStore::open_existing(&sqlite_url(dir))
            .await
            .unwrap();
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, actor, changes FROM keygate_audit")
                .fetch_all(store.pool())
                .await
                .unwrap();
        rows.into_iter()
            .map(|(a, b, c)| format!("{a} {b} {c}"))
            .collect()
    })
}

/// Runs `sql` on the SQLite database in `dir`.
fn sqlite_exec(dir: &Path, sql: &'static str) {
    runtime().block_on(async {
        let store = keygate::SqliteStore::open_existing(&sqlite_url(dir))
            .await
            .unwrap();
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    });
}

/// With the audit insert failing, no change goes through and the key is as
/// it was; once it works again, so do the changes.
fn a_failing_audit_insert_changes_nothing(
    serve: &Serve,
    break_audit: &dyn Fn(),
    fix_audit: &dyn Fn(),
) {
    let admin = serve.bootstrap_token();
    let (token, key) = serve.create_key(
        &admin,
        json!({"owner": "alice", "name": "kept", "credits": {"remaining": 3}}),
    );
    let id = key["id"].as_str().unwrap();
    let before = serve
        .call("GET", &format!("/v1/keys/{id}"), &admin, "")
        .json();
    let count =
        |serve: &Serve| records(&serve.call("GET", "/v1/audit?limit=1000", &admin, "")).len();
    let records_before = count(serve);

    break_audit();
    let attempts = [
        (
            "POST",
            format!("/v1/keys/{id}/revoke"),
            r#"{"reason": "x"}"#,
        ),
        ("PATCH", format!("/v1/keys/{id}"), r#"{"name": "changed"}"#),
        ("POST", format!("/v1/keys/{id}/credits"), r#"{"set": 99}"#),
        ("POST", format!("/v1/keys/{id}/rotate"), ""),
        ("DELETE", format!("/v1/keys/{id}"), ""),
        (
            "POST",
            "/v1/keys".to_owned(),
            r#"{"owner": "alice", "name": "new"}"#,
        ),
    ];
    for (method, path, body) in &attempts {
        let response = serve.call(method, path, &admin, body);
        assert_eq!(
            response.status, 503,
            "{method} {path} with the audit failing: {response:?}"
        );
    }
    let after = serve
        .call("GET", &format!("/v1/keys/{id}"), &admin, "")
        .json();
    let without_usage = |mut v: Value| {
        v["last_used_at"] = Value::Null;
        v["last_used_ip"] = Value::Null;
        v
    };
    assert_eq!(
        without_usage(after),
        without_usage(before.clone()),
        "the key is unchanged"
    );
    let listed = serve
        .call(
            "GET",
            "/v1/keys?owner=alice&include_revoked=true",
            &admin,
            "",
        )
        .json();
    assert_eq!(
        listed["keys"].as_array().unwrap().len(),
        1,
        "no key was created: {listed}"
    );
    let allowed = http::request(
        serve.addr,
        "GET",
        "/v1/forward-auth/anything",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(allowed.status, 200, "the key still works: {allowed:?}");

    fix_audit();
    assert_eq!(
        count(serve),
        records_before,
        "no record of a change that did not happen"
    );
    let revoked = serve.call("POST", &format!("/v1/keys/{id}/revoke"), &admin, "");
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(count(serve), records_before + 1);
}

#[test]
fn a_failing_audit_insert_leaves_the_key_unchanged_on_sqlite() {
    let dir = temp();
    let serve = serve(dir.path(), ServeOptions::new());
    let path = dir.path().to_owned();
    a_failing_audit_insert_changes_nothing(
        &serve,
        &|| {
            sqlite_exec(
                &path,
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON keygate_audit \
                 BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END",
            )
        },
        &|| sqlite_exec(&path, "DROP TRIGGER refuse_audit"),
    );
    assert!(
        serve.stderr().contains("key store failed"),
        "the failure is logged: {}",
        serve.stderr()
    );
}

#[test]
fn the_audit_log_is_owner_isolated_filtered_and_paged() {
    let dir = temp();
    let serve = serve(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    let (alice, _) = serve.create_key(
        &admin,
        json!({"owner": "alice", "name": "auditor", "scopes": ["keys:*", "audit:read"]}),
    );
    let (blind, _) = serve.create_key(
        &admin,
        json!({"owner": "alice", "name": "blind", "scopes": ["keys:*"]}),
    );
    for i in 0..3 {
        serve.create_key(&alice, json!({"name": format!("a{i}")}));
        serve.create_key(&admin, json!({"owner": "bob", "name": format!("b{i}")}));
    }

    let own = records(&serve.call("GET", "/v1/audit", &alice, ""));
    assert_eq!(own.len(), 5, "alice's two keys made by admin and her three");
    assert!(
        own.iter().all(|r| r["target"]["owner"] == "alice"),
        "{own:?}"
    );
    let forbidden = serve.call("GET", "/v1/audit?owner=bob", &alice, "");
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.json()["error"], "forbidden");
    let no_scope = serve.call("GET", "/v1/audit", &blind, "");
    assert_eq!(no_scope.status, 403, "{no_scope:?}");
    assert_eq!(no_scope.json()["error"], "insufficient_scope");
    assert_eq!(no_scope.header("x-request-id").map(str::len), Some(36));

    let all = records(&serve.call("GET", "/v1/audit?limit=1000", &admin, ""));
    assert_eq!(
        all.len(),
        1 + 2 + 3 + 3,
        "the bootstrap key and every other"
    );
    let bob = records(&serve.call("GET", "/v1/audit?owner=bob", &admin, ""));
    assert_eq!(bob.len(), 3);
    let created = records(&serve.call(
        "GET",
        "/v1/audit?action=key.create&until=2000-01-01T00:00:00Z",
        &admin,
        "",
    ));
    assert!(created.is_empty());
    let recent = records(&serve.call(
        "GET",
        "/v1/audit?since=2000-01-01T00:00:00Z&action=key.create",
        &admin,
        "",
    ));
    assert_eq!(recent.len(), all.len());

    let mut seen = Vec::new();
    let mut next = Some(String::new());
    while let Some(cursor) = next {
        let target = match cursor.as_str() {
            "" => "/v1/audit?limit=4".to_owned(),
            c => format!("/v1/audit?limit=4&cursor={c}"),
        };
        let page = serve.call("GET", &target, &admin, "").json();
        let got = page["records"].as_array().unwrap();
        assert!(got.len() <= 4);
        seen.extend(got.iter().map(|r| r["id"].clone()));
        next = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen,
        all.iter().map(|r| r["id"].clone()).collect::<Vec<_>>()
    );

    for (query, field) in [
        ("key_id=short", "key_id"),
        ("action=key.explode", "action"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=nonsense", "cursor"),
    ] {
        let response = serve.call("GET", &format!("/v1/audit?{query}"), &admin, "");
        assert_eq!(response.status, 400, "{query}: {response:?}");
        assert_eq!(response.json()["field"], field, "{query}");
    }
}

#[test]
fn cli_changes_are_recorded_as_the_os_user_and_keygate_audit_reads_the_log() {
    let dir = temp();
    let init = cli(dir.path(), &["init"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let created = cli_json(
        dir.path(),
        &[
            "keys",
            "create",
            "--owner",
            "alice",
            "--name",
            "ci",
            "--credits",
            "4",
        ],
    );
    let token = created["key"].as_str().unwrap();
    let id = created["api_key"]["id"].as_str().unwrap();
    cli_json(dir.path(), &["keys", "credits", id, "--set", "9"]);
    cli_json(dir.path(), &["keys", "revoke", token, "--reason", "done"]);

    let log = cli_json(dir.path(), &["audit", "--key", token]);
    let log = log["records"].as_array().unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.revoke", "key.credits", "key.create"]);
    let user = log[0]["actor"]["cli"].as_str().expect("a CLI actor");
    assert!(!user.is_empty());
    assert!(
        log.iter()
            .all(|r| r["client_ip"].is_null() && r["request_id"].is_null())
    );

    let only = cli_json(
        dir.path(),
        &[
            "audit",
            "--owner",
            "alice",
            "--action",
            "key.credits",
            "--since",
            "1h",
        ],
    );
    assert_eq!(only["records"].as_array().unwrap().len(), 1);
    let admin_only = cli_json(dir.path(), &["audit", "--owner", "admin"]);
    assert_eq!(
        admin_only["records"][0]["action"], "key.create",
        "init's bootstrap key"
    );

    let text = cli(dir.path(), &["audit", "--owner", "alice"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("key.revoke")
            && first.contains(id)
            && first.contains(&format!("by cli {user}")),
        "{first}"
    );
    assert_no_secret(&text, &secrets_of(&[token]));

    let bad = cli(dir.path(), &["audit", "--action", "key.explode"]);
    assert_eq!(bad.status.code(), Some(2), "bad usage");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--action"));
    let missing = run_keygate_env(
        dir.path(),
        &[("KEYGATE_PEPPER", PEPPER)],
        &["--database-url", "sqlite://nowhere.db", "audit"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        !dir.path().join("nowhere.db").exists(),
        "audit creates no database"
    );
}

#[test]
fn audit_retention_deletes_older_records_in_the_background() {
    let dir = temp();
    let init = cli(dir.path(), &["init"]);
    assert!(init.status.success());
    cli_json(
        dir.path(),
        &["keys", "create", "--owner", "alice", "--name", "old"],
    );
    let count = || {
        cli_json(dir.path(), &["audit"])["records"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(), 2);

    let bad = cli(dir.path(), &["serve", "--audit-retention", "5m"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--audit-retention"),
        "{bad:?}"
    );

    std::thread::sleep(Duration::from_millis(2100));
    let serve = serve(
        dir.path(),
        ServeOptions::new().args(["--audit-retention", "1s"]),
    );
    assert!(
        eventually(Duration::from_secs(5), || count() == 0),
        "the old records go"
    );
    let admin_token = {
        // The API still records, and the new record goes in its turn.
        let out = cli_json(
            dir.path(),
            &[
                "keys", "create", "--owner", "admin", "--name", "fresh", "--scope", "*:*",
            ],
        );
        out["key"].as_str().unwrap().to_owned()
    };
    let response = serve.call("POST", "/v1/keys", &admin_token, r#"{"name": "via-api"}"#);
    assert_eq!(response.status, 201);
    assert!(count() >= 1);
    assert!(
        eventually(Duration::from_secs(5), || count() == 0),
        "and so do the new ones"
    );
}

#[test]
fn every_answer_carries_a_request_id_taken_only_from_trusted_proxies() {
    let dir = temp();
    let serve = serve(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    let auth = format!("Bearer {admin}");
    for (method, path, headers) in [
        ("GET", "/healthz", vec![]),
        ("GET", "/v1/openapi.json", vec![]),
        ("GET", "/no/such/route", vec![]),
        (
            "DELETE",
            "/v1/scopes",
            vec![("Authorization", auth.as_str())],
        ),
        ("GET", "/v1/keys", vec![]),
        (
            "GET",
            "/v1/keys",
            vec![("Authorization", "Bearer kg_live_nonsense")],
        ),
        ("GET", "/v1/forward-auth/x", vec![]),
        ("GET", "/v1/keys", vec![("Authorization", auth.as_str())]),
    ] {
        let response = http::request(serve.addr, method, path, &headers, b"");
        let id = response
            .header("x-request-id")
            .unwrap_or_else(|| panic!("{method} {path}: {response:?}"));
        assert!(
            uuid_v7(id),
            "{method} {path}: a generated UUID v7, got {id}"
        );
    }
    // Loopback is a trusted proxy by default: its id is kept, if acceptable.
    let kept = http::request(
        serve.addr,
        "GET",
        "/healthz",
        &[("X-Request-Id", "edge-42")],
        b"",
    );
    assert_eq!(kept.header("x-request-id"), Some("edge-42"));
    let long = "x".repeat(129);
    for bad in [long.as_str(), "has space"] {
        let replaced = http::request(serve.addr, "GET", "/healthz", &[("X-Request-Id", bad)], b"");
        assert!(
            uuid_v7(replaced.header("x-request-id").unwrap()),
            "{bad:?} is replaced"
        );
    }

    // Where loopback is not trusted, a client's id is never taken.
    let dir = temp();
    let untrusting = self::serve(
        dir.path(),
        ServeOptions::new().args(["--trusted-proxy", "10.0.0.0/8"]),
    );
    let replaced = http::request(
        untrusting.addr,
        "GET",
        "/healthz",
        &[("X-Request-Id", "chosen-by-client")],
        b"",
    );
    assert!(
        uuid_v7(replaced.header("x-request-id").unwrap()),
        "{replaced:?}"
    );
}

#[test]
fn forward_auth_and_the_proxy_log_one_access_line_per_decision_never_the_token() {
    let dir = temp();
    let upstream = Upstream::start();
    let serve = serve(dir.path(), ServeOptions::new().upstream(&upstream.url()));
    let admin = serve.bootstrap_token();
    let (token, key) = serve.create_key(
        &admin,
        json!({"owner": "alice", "name": "caller", "scopes": ["app:read"]}),
    );
    let id = key["id"].as_str().unwrap();
    let proxy = serve.proxy_addr.unwrap();
    let auth = format!("Bearer {token}");

    let through = http::request(
        proxy,
        "GET",
        "/items?page=2",
        &[("Authorization", &auth), ("X-Request-Id", "proxied-1")],
        b"",
    );
    assert_eq!(through.status, 200, "{through:?}");
    assert_eq!(through.header("x-request-id"), Some("proxied-1"));
    let received = upstream.received();
    assert_eq!(
        received.last().unwrap().header("x-request-id"),
        Some("proxied-1"),
        "forwarded upstream"
    );
    let refused = http::request(proxy, "GET", "/items", &[], b"");
    assert_eq!(refused.status, 401);
    let refused_id = refused.header("x-request-id").unwrap().to_owned();

    let swapped = if &token[20..21] == "A" { "B" } else { "A" };
    let wrong = format!("{}{swapped}{}", &token[..20], &token[21..]);
    let denied = http::request(
        serve.addr,
        "GET",
        "/v1/forward-auth/api/x",
        &[
            ("Authorization", &format!("Bearer {wrong}")),
            ("X-Request-Id", "fa-denied"),
        ],
        b"",
    );
    assert_eq!(denied.status, 401);
    let allowed = http::request(
        serve.addr,
        "POST",
        "/v1/forward-auth/api/y?token=none",
        &[("Authorization", &auth), ("X-Request-Id", "fa-allowed")],
        b"",
    );
    assert_eq!(allowed.status, 200);

    let log = |needle: &str| -> Option<String> {
        let mut found = None;
        eventually(Duration::from_secs(3), || {
            found = serve
                .stderr()
                .lines()
                .find(|l| l.contains("keygate::access") && l.contains(needle))
                .map(str::to_owned);
            found.is_some()
        });
        found
    };
    let line = log("proxied-1").expect("an access line for the proxied request");
    for part in [
        "surface=\"proxy\"",
        "method=GET",
        "path=\"/items\"",
        "status=200",
        "outcome=\"valid\"",
        id,
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!line.contains("page=2"), "never the query: {line}");
    let line = log(&refused_id).expect("an access line for the refusal");
    assert!(
        line.contains("status=401") && line.contains("outcome=\"missing_token\""),
        "{line}"
    );
    let line = log("fa-denied").expect("forward auth's refusal");
    assert!(
        line.contains("surface=\"forward_auth\"")
            && line.contains("outcome=\"invalid_token\"")
            && line.contains("path=\"/api/x\""),
        "{line}"
    );
    let line = log("fa-allowed").expect("forward auth's allowance");
    assert!(
        line.contains("method=POST") && line.contains("status=200") && line.contains(id),
        "{line}"
    );

    // Every log line of a request names its id: the key's creation too.
    let create = call_with_id(
        &serve,
        "POST",
        "/v1/keys",
        &admin,
        r#"{"owner": "bob", "name": "logged"}"#,
        "create-logged",
    );
    assert_eq!(create.status, 201);
    assert!(
        eventually(Duration::from_secs(3), || serve
            .stderr()
            .lines()
            .any(|l| l.contains("key created") && l.contains("create-logged"))),
        "{}",
        serve.stderr()
    );
    assert_no_secret(&serve.stderr(), &secrets_of(&[&token, &wrong, &admin]));
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::postgres::TestDb;

    fn serve_on(db: &TestDb) -> (Serve, tempfile::TempDir) {
        let dir = temp();
        let serve = Serve::start(
            dir.path(),
            ServeOptions::new()
                .env("KEYGATE_PEPPER", PEPPER)
                .env("KEYGATE_DATABASE_URL", &db.url),
        );
        (serve, dir)
    }

    fn exec(url: &str, sql: &'static str) {
        let url = url.to_owned();
        runtime().block_on(async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        });
    }

    #[test]
    fn every_change_through_the_api_is_recorded_on_postgres() {
        let db = runtime().block_on(TestDb::create());
        let (serve, _dir) = serve_on(&db);
        every_change_through_the_api_is_recorded(&serve);
    }

    #[test]
    fn a_failing_audit_insert_leaves_the_key_unchanged_on_postgres() {
        let db = runtime().block_on(TestDb::create());
        let (serve, _dir) = serve_on(&db);
        let url = db.url.clone();
        a_failing_audit_insert_changes_nothing(
            &serve,
            &|| {
                exec(
                    &url,
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$; \
                     CREATE TRIGGER refuse_audit BEFORE INSERT ON keygate_audit \
                     FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
                )
            },
            &|| exec(&url, "DROP TRIGGER refuse_audit ON keygate_audit"),
        );
    }
}

/// The library side: a PATCH of credits alone is one record, not an empty
/// update and then the credits; a custom store without an audit log keeps
/// working, unaudited.
mod library {
    use keygate::{
        AuditAction, AuditQuery, Credits, KeyStore, KeyUpdate, Keygate, MemoryStore, NewKey, Pepper,
    };

    #[tokio::test]
    async fn an_update_of_credits_alone_is_one_record_with_the_balance() {
        let keygate = Keygate::builder(MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap();
        let key = keygate
            .keys()
            .create(NewKey::new("alice", "paid").credits(Credits::new(5).unwrap()))
            .await
            .unwrap()
            .key;
        let update: KeyUpdate =
            serde_json::from_value(serde_json::json!({"credits": {"remaining": 8}})).unwrap();
        keygate.keys().update(&key.id, update).await.unwrap();
        let log = keygate.store().audit_log().unwrap();
        let page = log.audit_records(&AuditQuery::default()).await.unwrap();
        let actions: Vec<_> = page.records.iter().map(|r| r.action).collect();
        assert_eq!(actions, [AuditAction::Update, AuditAction::Create]);
        let change = &page.records[0].changes;
        assert_eq!(change.keys().collect::<Vec<_>>(), ["credits"]);
        assert_eq!(change["credits"].to["remaining"], 8);
    }

    #[tokio::test]
    async fn a_store_without_an_audit_log_keeps_working() {
        let store = super::common::counting::CountingStore::new();
        assert!(store.audit_log().is_none());
        let keygate = Keygate::builder(store)
            .pepper(Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap();
        let created = keygate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        keygate.keys().revoke(&created.key.id, None).await.unwrap();
        keygate.keys().delete(&created.key.id).await.unwrap();
        assert!(
            keygate
                .store()
                .get(&created.key.id)
                .await
                .unwrap()
                .is_none()
        );
    }
}
