//! The CLI acting through a running `keygate serve` (`--api-url` /
//! `KEYGATE_API_URL` with `KEYGATE_TOKEN`) and `keys update`: a real server
//! process on a loopback port, the real binary against it, and the same
//! commands against the same database to compare what each prints.

mod common;

use std::path::Path;

use common::{Serve, ServeOptions, run_keygate_env};
use serde_json::{Value, json};

/// One run of the binary.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = run_keygate_env(dir, env, args);
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A server with its bootstrap admin token.
struct Fixture {
    dir: tempfile::TempDir,
    serve: Serve,
    admin: String,
    url: String,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let serve = Serve::start(dir.path(), ServeOptions::new());
        let admin = serve.bootstrap_token();
        let url = format!("http://{}", serve.addr);
        Fixture {
            dir,
            serve,
            admin,
            url,
        }
    }

    /// `keygate ARGS` through the API, acting with `token`.
    fn api_as(&self, token: &str, args: &[&str]) -> Run {
        let env = [
            ("KEYGATE_API_URL", self.url.as_str()),
            ("KEYGATE_TOKEN", token),
        ];
        let run = run(self.dir.path(), &env, args);
        assert!(
            !run.stdout.contains(token) && !run.stderr.contains(token),
            "the acting token was printed: {run:?}"
        );
        run
    }

    /// `keygate ARGS` through the API as the admin.
    fn api(&self, args: &[&str]) -> Run {
        self.api_as(&self.admin.clone(), args)
    }

    /// `keygate ARGS` on the server's database.
    fn db(&self, args: &[&str]) -> Run {
        run(self.dir.path(), &[], args)
    }
}

fn ok(run: Run) -> Run {
    assert_eq!(run.status, 0, "{run:?}");
    run
}

#[test]
fn every_keys_command_through_the_api_prints_what_the_database_mode_prints() {
    let f = Fixture::start();
    // create: the token alone on stdout, the reminder on stderr.
    let created = ok(f.api(&[
        "--json",
        "keys",
        "create",
        "--owner",
        "alice",
        "--name",
        "ci",
        "--scope",
        "workspaces:read",
        "--scope",
        "workspaces:write",
        "--rate-limit",
        "burst=20/1s",
        "--credits",
        "500",
        "--refill",
        "500/month",
        "--metadata",
        r#"{"team":"infra"}"#,
    ]))
    .json();
    let token = created["key"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["api_key"]["owner"], "alice");
    assert_eq!(created["api_key"]["credits"]["remaining"], 500);
    let text = ok(f.api(&["keys", "create", "--owner", "bob", "--name", "deploy"]));
    assert!(text.stdout.trim().starts_with("kg_live_"), "{text:?}");
    assert!(text.stderr.contains("will not be shown again"), "{text:?}");

    // show, list: byte for byte what the database mode prints, text and JSON.
    for args in [
        vec!["keys", "show", id.as_str()],
        vec!["--json", "keys", "show", id.as_str()],
        vec!["keys", "list"],
        vec!["--json", "keys", "list"],
        vec!["keys", "list", "--owner", "alice"],
        vec!["--json", "keys", "list", "--include-revoked"],
    ] {
        let remote = ok(f.api(&args));
        let local = ok(f.db(&args));
        assert_eq!(remote.stdout, local.stdout, "{args:?}");
        assert!(remote.stdout.contains("alice"), "{args:?}: {remote:?}");
    }
    // A whole token names its key, and is never repeated.
    let by_token = ok(f.api(&["keys", "show", &token]));
    assert!(by_token.stdout.contains(&id) && !by_token.stdout.contains(&token));

    // update: what PATCH does, through either mode.
    let updated = ok(f.api(&[
        "--json",
        "keys",
        "update",
        &id,
        "--name",
        "ci-2",
        "--scope",
        "workspaces:read",
        "--ip-allow",
        "10.0.0.0/8",
        "--no-rate-limits",
        "--description",
        "narrowed",
    ]))
    .json();
    assert_eq!(updated["name"], "ci-2");
    assert_eq!(updated["scopes"], json!(["workspaces:read"]));
    assert_eq!(updated["ip_allow"], json!(["10.0.0.0/8"]));
    assert_eq!(updated["rate_limits"], json!([]));
    assert_eq!(updated["description"], "narrowed");
    let again = ok(f.db(&["--json", "keys", "show", &id])).json();
    assert_eq!(again, ok(f.api(&["--json", "keys", "show", &id])).json());
    assert_eq!(again["name"], "ci-2");
    let local = ok(f.db(&[
        "--json",
        "keys",
        "update",
        &id,
        "--no-ip-allow",
        "--no-credits",
    ]))
    .json();
    assert_eq!(local["ip_allow"], json!([]));
    assert_eq!(local["credits"], Value::Null);

    // Scopes only narrow: the same refusal, status 1, naming the field, both ways.
    for refused in [
        f.api(&[
            "--json",
            "keys",
            "update",
            &id,
            "--scope",
            "workspaces:write",
        ]),
        f.db(&[
            "--json",
            "keys",
            "update",
            &id,
            "--scope",
            "workspaces:write",
        ]),
    ] {
        assert_eq!(refused.status, 1, "{refused:?}");
        assert_eq!(refused.json()["error"], "bad_request", "{refused:?}");
        assert_eq!(refused.json()["field"], "scopes", "{refused:?}");
    }

    // credits, revoke, rotate, delete.
    let credits = ok(f.api(&["--json", "keys", "credits", &id, "--set", "70"])).json();
    assert_eq!(credits["credits"]["remaining"], 70);
    let text = ok(f.api(&["keys", "credits", &id, "--add", "5"]));
    assert!(text.stdout.contains("75"), "{text:?}");
    let rotated = ok(f.api(&["--json", "keys", "rotate", &id, "--grace", "1h"])).json();
    let new_id = rotated["api_key"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(rotated["api_key"]["name"], "ci-2");
    let old = ok(f.db(&["--json", "keys", "show", &id])).json();
    assert_eq!(old["superseded_by"], new_id.as_str());
    let revoked = ok(f.api(&["keys", "revoke", &new_id, "--reason", "done"]));
    assert_eq!(revoked.stdout.trim(), format!("revoked kg_live_{new_id}"));
    assert_eq!(
        ok(f.db(&["--json", "keys", "show", &new_id])).json()["status"],
        "revoked"
    );
    let deleted = ok(f.api(&["--json", "keys", "delete", &new_id])).json();
    assert_eq!(deleted, json!({"deleted": new_id}));
    let gone = f.api(&["--json", "keys", "show", &new_id]);
    assert_eq!(gone.status, 1, "{gone:?}");
    assert_eq!(gone.json()["error"], "not_found");
    let gone_locally = f.db(&["--json", "keys", "show", &new_id]);
    assert_eq!(gone_locally.status, 1, "{gone_locally:?}");
}

#[test]
fn verify_through_the_api_answers_as_the_database_mode() {
    let f = Fixture::start();
    let (token, _) = f.serve.create_key(
        &f.admin,
        json!({"owner": "alice", "name": "v", "scopes": ["workspaces:read"],
               "rate_limits": [{"name": "tiny", "limit": 1, "period": "1d"}]}),
    );
    for args in [
        vec!["verify", token.as_str()],
        vec!["--json", "verify", token.as_str()],
        vec!["verify", token.as_str(), "--require", "workspaces:read"],
        vec![
            "--json",
            "verify",
            token.as_str(),
            "--require",
            "workspaces:write",
        ],
    ] {
        let remote = f.api(&args);
        let local = f.db(&args);
        assert_eq!(
            (remote.status, &remote.stdout),
            (local.status, &local.stdout),
            "{args:?}"
        );
        assert!(!remote.stdout.contains(&token[24..]), "{remote:?}");
    }
    // A limit of one per day: the checks above spent none of it, the
    // first request at the default cost of 1 takes it, the next is refused.
    let body = json!({"key": token}).to_string();
    let first = f.serve.call("POST", "/v1/verify", &f.admin, &body).json();
    assert_eq!(first["code"], "valid", "{first}");
    let second = f.serve.call("POST", "/v1/verify", &f.admin, &body).json();
    assert_eq!(second["code"], "rate_limited", "{second}");
    let denied = f.api(&["verify", &token, "--require", "workspaces:write"]);
    assert_eq!(denied.status, 1);
    assert!(
        denied.stdout.starts_with("insufficient_scope: kg_live_"),
        "{denied:?}"
    );
    let mut forged = token.clone();
    forged.replace_range(30..31, if &token[30..31] == "a" { "b" } else { "a" });
    let invalid = f.api(&["verify", &forged]);
    assert_eq!(
        (invalid.status, invalid.stdout.trim()),
        (1, "invalid_token"),
        "{invalid:?}"
    );
}

#[test]
fn refusals_of_the_server_are_plain_words_with_the_cli_exit_statuses() {
    let f = Fixture::start();
    let (reader, _) = f.serve.create_key(
        &f.admin,
        json!({"owner": "alice", "name": "reader", "scopes": ["keys:read"]}),
    );
    // A key without keys:create: status 1, naming what it lacks.
    let refused = f.api_as(
        &reader,
        &["keys", "create", "--owner", "alice", "--name", "x"],
    );
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("KEYGATE_TOKEN may not do this: it needs keys:create"),
        "{refused:?}"
    );
    let refused = f.api_as(
        &reader,
        &[
            "--json", "keys", "create", "--owner", "alice", "--name", "x",
        ],
    );
    assert_eq!(refused.json()["error"], "insufficient_scope", "{refused:?}");
    // Its own owner's keys only: bob's is not found.
    let listed = ok(f.api_as(&reader, &["--json", "keys", "list"])).json();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["owner"] == "alice")
    );
    // A token the server does not know.
    // The last character changed (to one it is not): the checksum fails.
    let last = if reader.ends_with('x') { "y" } else { "x" };
    let bogus = format!("{}{last}", &reader[..reader.len() - 1]);
    let refused = f.api_as(&bogus, &["keys", "list"]);
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("the server refused the key in KEYGATE_TOKEN"),
        "{refused:?}"
    );
    // No token at all, a bad URL, https: usage errors, status 2.
    let env = [("KEYGATE_API_URL", f.url.as_str())];
    let missing = run(f.dir.path(), &env, &["keys", "list"]);
    assert_eq!(missing.status, 2, "{missing:?}");
    assert!(missing.stderr.contains("KEYGATE_TOKEN"), "{missing:?}");
    for url in ["https://127.0.0.1:1", "127.0.0.1:1"] {
        let bad = run(
            f.dir.path(),
            &[("KEYGATE_TOKEN", "t")],
            &["--api-url", url, "keys", "list"],
        );
        assert_eq!(bad.status, 2, "{bad:?}");
        assert!(bad.stderr.contains("--api-url"), "{bad:?}");
    }
    // The token is read from the environment only: there is no flag for it.
    let flag = run(f.dir.path(), &env, &["--token", &reader, "keys", "list"]);
    assert_eq!(flag.status, 2, "{flag:?}");
    assert!(!flag.stderr.contains(&reader[24..]), "{flag:?}");
    // Through the API, no database is opened or created: a directory
    // without one (and without a pepper) is enough.
    let laptop = tempfile::tempdir().unwrap();
    let env = [
        ("KEYGATE_API_URL", f.url.as_str()),
        ("KEYGATE_TOKEN", f.admin.as_str()),
    ];
    let listed = run(laptop.path(), &env, &["--json", "keys", "list"]);
    assert_eq!(listed.status, 0, "{listed:?}");
    assert!(listed.json()["keys"].as_array().unwrap().len() >= 2);
    assert!(
        std::fs::read_dir(laptop.path()).unwrap().next().is_none(),
        "a file was created"
    );
    // init and serve work on the database.
    let init = f.api(&["init"]);
    assert_eq!(init.status, 2, "{init:?}");
    // Nobody listening: status 1, the URL named.
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let down = run(
        f.dir.path(),
        &[
            ("KEYGATE_API_URL", url.as_str()),
            ("KEYGATE_TOKEN", f.admin.as_str()),
        ],
        &["keys", "list"],
    );
    assert_eq!(down.status, 1, "{down:?}");
    assert!(
        down.stderr
            .contains(&format!("cannot reach the API at {url}")),
        "{down:?}"
    );
    assert!(!down.stderr.contains(&f.admin[24..]), "{down:?}");
}

#[test]
fn keys_update_needs_a_change_and_refuses_contradictions() {
    let f = Fixture::start();
    let (_, record) = f
        .serve
        .create_key(&f.admin, json!({"owner": "alice", "name": "u"}));
    let id = record["id"].as_str().unwrap();
    for args in [
        vec!["keys", "update", id],
        vec![
            "keys",
            "update",
            id,
            "--ip-allow",
            "10.0.0.1",
            "--no-ip-allow",
        ],
        vec!["keys", "update", id, "--credits", "5", "--no-credits"],
        vec!["keys", "update", id, "--refill", "5/day"],
    ] {
        let refused = f.db(&args);
        assert_eq!(refused.status, 2, "{args:?}: {refused:?}");
    }
    let bad = f.db(&["--json", "keys", "update", id, "--metadata", "[1]"]);
    assert_eq!(bad.status, 1, "{bad:?}");
    assert_eq!(bad.json()["field"], "metadata", "{bad:?}");
    let unchanged = ok(f.db(&["--json", "keys", "show", id])).json();
    assert_eq!(unchanged["name"], "u");
}
