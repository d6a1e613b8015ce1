//! `keygate scan` as a process: a tree with one real token among
//! look-alikes, `--revoke`, SARIF checked against the 2.1.0 schema, and a
//! real git repository whose token lives only in an old commit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixture, run_keygate};
use serde_json::Value;

/// A database with one live key of alice's; returns its token.
fn database(dir: &Path) -> String {
    let init = run_keygate(dir, &["init"]);
    assert!(init.status.success(), "init: {init:?}");
    let created = run_keygate(
        dir,
        &["keys", "create", "--owner", "alice", "--name", "leaky"],
    );
    assert!(created.status.success(), "keys create: {created:?}");
    String::from_utf8(created.stdout).unwrap().trim().to_owned()
}

/// `token` with its last character changed: a broken checksum.
fn broken(token: &str) -> String {
    let mut text = token.to_owned();
    let last = text.pop().unwrap();
    text.push(if last == '0' { '1' } else { '0' });
    text
}

/// `dir/tree`: the real token once, and everything that only looks like one.
fn tree(dir: &Path, token: &str) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("src/deep")).unwrap();
    std::fs::create_dir_all(tree.join(".git")).unwrap();
    let body = &token["kg_live_".len()..];
    std::fs::write(
        tree.join("src/deep/config.py"),
        format!("# settings\nname = \"svc\"\nAPI_KEY = \"{token}\"\n"),
    )
    .unwrap();
    std::fs::write(
        tree.join("look-alikes.md"),
        [
            format!("broken checksum: {}", broken(token)),
            format!("another prefix: kx_live_{body}"),
            format!("another environment: kg_prod_{body}"),
            format!("truncated: {}", &token[..token.len() - 1]),
            format!("longer: {token}A"),
            format!("inside a word: my{token}"),
            format!("glued: {token}_x"),
            "just the prefix: kg_live_ and kg_test_".to_owned(),
        ]
        .join("\n"),
    )
    .unwrap();
    // Skipped: a binary and git's own directory.
    std::fs::write(
        tree.join("blob.bin"),
        [b"\0\x01".as_slice(), token.as_bytes()].concat(),
    )
    .unwrap();
    std::fs::write(tree.join(".git/config"), token).unwrap();
    tree
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Neither stream of `output` holds `secret` (nor its secret part alone).
fn assert_no_secret(output: &Output, token: &str) {
    let secret = &token["kg_live_".len() + 16..];
    for stream in [&output.stdout, &output.stderr] {
        let stream = text(stream);
        assert!(!stream.contains(secret), "the secret was printed: {stream}");
    }
}

fn scan(dir: &Path, args: &[&str]) -> Output {
    run_keygate(dir, &[&["scan"], args].concat())
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&output.stdout)))
}

#[test]
fn one_real_token_among_look_alikes_is_one_finding_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let token = database(dir.path());
    tree(dir.path(), &token);
    let id = &token["kg_live_".len()..][..16];

    let plain = scan(dir.path(), &["tree"]);
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    assert_no_secret(&plain, &token);
    let lines: Vec<String> = text(&plain.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [format!(
            "tree/src/deep/config.py:3:12: kg_live_{id} (LIVE key)"
        )]
    );
    assert!(
        text(&plain.stderr).contains("1 token found in 2 files"),
        "{plain:?}"
    );

    let report = scan(dir.path(), &["tree", "--format", "json"]);
    assert_eq!(report.status.code(), Some(1));
    assert_no_secret(&report, &token);
    let report = json(&report);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["path"], "tree/src/deep/config.py");
    assert_eq!(
        (findings[0]["line"].as_u64(), findings[0]["column"].as_u64()),
        (Some(3), Some(12))
    );
    assert_eq!(findings[0]["display_prefix"], format!("kg_live_{id}"));
    assert_eq!(findings[0]["status"], "live");
    assert_eq!(report["binary_skipped"], 1);
    // --json is --format json.
    assert_eq!(json(&scan(dir.path(), &["--json", "tree"])), report);
}

#[test]
fn revoke_revokes_the_key_found_once_with_its_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let token = database(dir.path());
    tree(dir.path(), &token);
    let id = &token["kg_live_".len()..][..16];
    assert!(
        run_keygate(dir.path(), &["verify", &token])
            .status
            .success()
    );

    let revoked = scan(dir.path(), &["tree", "--revoke", "--json"]);
    assert_eq!(revoked.status.code(), Some(1), "{revoked:?}");
    assert_no_secret(&revoked, &token);
    assert_eq!(json(&revoked)["findings"][0]["status"], "revoked_now");
    let verify = run_keygate(dir.path(), &["verify", &token]);
    assert_eq!(
        verify.status.code(),
        Some(1),
        "the key still verifies: {verify:?}"
    );

    let shown = json(&run_keygate(dir.path(), &["keys", "show", id, "--json"]));
    assert_eq!(
        shown["revoked_reason"],
        "leaked: found by keygate scan at tree/src/deep/config.py:3:12"
    );
    // Scanned again: already revoked, no second record.
    let again = scan(
        dir.path(),
        &["tree", "--revoke", "--reason", "again", "--json"],
    );
    assert_eq!(json(&again)["findings"][0]["status"], "revoked");
    let audit = json(&run_keygate(
        dir.path(),
        &["audit", "--key", id, "--action", "key.revoke", "--json"],
    ));
    let records = audit["records"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(records.len(), 1, "{audit}");
    assert!(records[0]["actor"]["cli"].is_string(), "{audit}");
    assert!(!audit.to_string().contains(&token[24..]));
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let dir = tempfile::tempdir().unwrap();
    let token = database(dir.path());
    tree(dir.path(), &token);
    let output = scan(dir.path(), &["tree", "--format", "sarif"]);
    assert_eq!(output.status.code(), Some(1));
    assert_no_secret(&output, &token);
    let sarif = json(&output);

    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sarif-schema-2.1.0.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{sarif:#}");
    // The validator does refuse what is not SARIF.
    let mut bad = sarif.clone();
    bad["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        Value::from(0);
    assert!(!validator.is_valid(&bad));

    // What GitHub code scanning needs.
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "keygate");
    let rule = run["tool"]["driver"]["rules"][0]["id"].as_str().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["ruleId"], rule);
    let location = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(
        location["artifactLocation"]["uri"],
        "tree/src/deep/config.py"
    );
    assert_eq!(location["region"]["startLine"], 3);
    assert_eq!(location["region"]["startColumn"], 12);
    let fingerprint = results[0]["partialFingerprints"]["keygateKeyLocation/v1"]
        .as_str()
        .unwrap();
    assert_eq!(fingerprint.len(), 64);
    // Stable from one run to the next.
    let second = json(&scan(dir.path(), &["tree", "--format", "sarif"]));
    assert_eq!(
        second["runs"][0]["results"][0]["partialFingerprints"],
        results[0]["partialFingerprints"]
    );
}

fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {output:?}");
    text(&output.stdout).trim().to_owned()
}

#[test]
fn git_history_finds_a_token_only_an_old_commit_holds() {
    let dir = tempfile::tempdir().unwrap();
    let token = database(dir.path());
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::create_dir(repo.join("conf")).unwrap();
    std::fs::write(repo.join("conf/app.env"), format!("A=1\nKEY={token}\n")).unwrap();
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "add config"]);
    let leaked_in = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("conf/app.env"), "A=1\nKEY=from-the-vault\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "remove the key"]);
    // Packed objects too.
    git(&repo, &["gc", "-q"]);

    let files = scan(dir.path(), &["repo"]);
    assert_eq!(
        files.status.code(),
        Some(0),
        "the working tree is clean: {files:?}"
    );

    let history = scan(dir.path(), &["--git", "repo", "--json"]);
    assert_eq!(history.status.code(), Some(1), "{history:?}");
    assert_no_secret(&history, &token);
    let report = json(&history);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["path"], "conf/app.env");
    assert_eq!(findings[0]["commit"], leaked_in.as_str());
    assert_eq!(
        (findings[0]["line"].as_u64(), findings[0]["column"].as_u64()),
        (Some(2), Some(5))
    );
    assert_eq!(findings[0]["status"], "live");
    assert_eq!(report["commits"], 2);

    let sarif = json(&scan(dir.path(), &["--git", "repo", "--format", "sarif"]));
    let uri = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
        ["uri"];
    assert_eq!(uri, "conf/app.env");

    let not_a_repo = scan(
        dir.path(),
        &["--git", "repo/conf/../../tree-that-is-not-there"],
    );
    assert_eq!(not_a_repo.status.code(), Some(2), "{not_a_repo:?}");
}

#[test]
fn clean_trees_exit_0_bad_usage_2_and_no_database_is_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    let token = TokenOnly::mint();
    std::fs::create_dir(dir.path().join("clean")).unwrap();
    std::fs::write(dir.path().join("clean/a.txt"), "nothing here\n").unwrap();
    let clean = scan(dir.path(), &["clean"]);
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    assert!(clean.stdout.is_empty());

    // No database: found, reported, not checked.
    std::fs::write(dir.path().join("clean/b.txt"), &token.0).unwrap();
    let unchecked = scan(dir.path(), &["clean", "--json"]);
    assert_eq!(unchecked.status.code(), Some(1));
    assert_eq!(json(&unchecked)["findings"][0]["status"], "unchecked");
    assert_no_secret(&unchecked, &token.0);
    // --revoke without a database refuses, and says why.
    let refused = scan(dir.path(), &["clean", "--revoke"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("--revoke needs the database"),
        "{refused:?}"
    );

    for bad in [
        &["--format", "xml"][..],
        &["--reason", "r"],
        &["--prefix", "Not-A-Prefix", "clean"],
        &["missing-path"],
    ] {
        let output = scan(dir.path(), bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {output:?}");
    }
    // Another prefix: only its tokens.
    assert_eq!(
        scan(dir.path(), &["clean", "--prefix", "acme"])
            .status
            .code(),
        Some(0)
    );
}

/// A token of the default format that no database knows.
struct TokenOnly(String);

impl TokenOnly {
    fn mint() -> TokenOnly {
        let token = keygate::TokenFormat::default().generate(keygate::Environment::Test);
        TokenOnly(token.expose().to_owned())
    }
}
