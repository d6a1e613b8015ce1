//! End-to-end tests of the `keygate` binary (SPEC §1, §2, §5 and §8).
//!
//! Every test runs the real binary in its own temporary directory, with its
//! own SQLite database, and with `KEYGATE_PEPPER` / `KEYGATE_DATABASE_URL`
//! removed from the environment so nothing from the host can leak in. The
//! tests only look at what a user sees: exit status, stdout, stderr, the
//! JSON of `--json`, and the files left on disk.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::forge::{BASE62, checksum, with_checksum};
use common::records::RECORD_FIELDS;
use serde_json::Value;
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// A 32-byte pepper, as 64 hex characters.
const HEX_PEPPER_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// Another 32-byte pepper.
const HEX_PEPPER_B: &str = "f0e0d0c0b0a090807060504030201000ffeeddccbbaa99887766554433221100";

/// The outcome of one run of the binary.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout parsed as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} (stderr: {:?})",
                self.stdout, self.stderr
            )
        })
    }
}

/// A temporary directory holding one keygate database, and the environment
/// the binary runs with.
struct Kg {
    dir: TempDir,
    /// `KEYGATE_PEPPER` to pass, if any.
    pepper: Option<String>,
}

impl Kg {
    /// A directory with no database yet.
    fn bare() -> Kg {
        Kg {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            pepper: None,
        }
    }

    /// A directory holding an empty database (and its pepper file): `init`,
    /// then the bootstrap key deleted. Only `init` and `serve` create a
    /// database (SPEC §8a).
    fn new() -> Kg {
        Kg::bare().initialized()
    }

    /// An empty database set up with `KEYGATE_PEPPER=pepper` (no pepper file).
    fn with_pepper(pepper: &str) -> Kg {
        let mut kg = Kg::bare();
        kg.pepper = Some(pepper.into());
        kg.initialized()
    }

    fn initialized(self) -> Kg {
        let token = self.init();
        let (_, id, _, _) = split_token(&token);
        let run = self.run(&["keys", "delete", id]);
        assert_eq!(run.status, 0, "deleting the bootstrap key failed: {run:?}");
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn db_url(&self) -> String {
        format!("sqlite://{}", self.path().join("keygate.db").display())
    }

    fn pepper_file(&self) -> PathBuf {
        self.path().join("keygate.pepper")
    }

    /// The binary, run inside the temporary directory with a clean
    /// environment; no arguments yet.
    fn bare_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        cmd.current_dir(self.path())
            .env_remove("KEYGATE_PEPPER")
            .env_remove("KEYGATE_DATABASE_URL")
            .env_remove("RUST_LOG");
        if let Some(pepper) = &self.pepper {
            cmd.env("KEYGATE_PEPPER", pepper);
        }
        cmd
    }

    /// Runs a prepared command and collects its outcome.
    fn finish(mut cmd: Command) -> Run {
        let out = cmd.output().expect("run the keygate binary");
        Run {
            status: out.status.code().expect("keygate was killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// `keygate --database-url <this db> ARGS...`
    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let mut cmd = self.bare_command();
        cmd.arg("--database-url").arg(self.db_url()).args(args);
        Kg::finish(cmd)
    }

    /// `keygate --database-url <this db> --json ARGS...`, stdout parsed.
    fn run_json<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, Value) {
        let mut cmd = self.bare_command();
        cmd.arg("--database-url")
            .arg(self.db_url())
            .arg("--json")
            .args(args);
        let run = Kg::finish(cmd);
        let json = run.json();
        (run.status, json)
    }

    /// `keygate init`, returning the bootstrap token.
    fn init(&self) -> String {
        let run = self.run(&["init"]);
        assert_eq!(run.status, 0, "init failed: {run:?}");
        run.stdout.trim().to_owned()
    }

    /// Creates a key with `--json`; returns the token and the record.
    fn create(&self, owner: &str, name: &str, extra: &[&str]) -> (String, Value) {
        let mut args = vec!["keys", "create", "--owner", owner, "--name", name];
        args.extend_from_slice(extra);
        let (status, body) = self.run_json(&args);
        assert_eq!(status, 0, "keys create {args:?} failed: {body}");
        let token = body["key"].as_str().expect("key is a string").to_owned();
        (token, body["api_key"].clone())
    }

    /// Every key, revoked ones included.
    fn list_all(&self) -> Vec<Value> {
        self.list(&["--include-revoked"])
    }

    /// `keys list EXTRA... --json`, returning the records.
    fn list(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["keys", "list"];
        args.extend_from_slice(extra);
        let (status, body) = self.run_json(&args);
        assert_eq!(status, 0, "keys list failed: {body}");
        body["keys"].as_array().expect("keys is an array").clone()
    }

    /// How many keys the database holds, revoked ones included.
    fn count(&self) -> usize {
        self.list_all().len()
    }

    /// `keys show ID --json`.
    fn show(&self, id: &str) -> (i32, Value) {
        self.run_json(&["keys", "show", id])
    }

    /// `verify TOKEN [--require EXPR] --json`: exit status and `code`.
    fn verify(&self, token: &str, require: Option<&str>) -> (i32, String) {
        let mut args = vec!["verify", token];
        if let Some(req) = require {
            args.extend(["--require", req]);
        }
        let (status, body) = self.run_json(&args);
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        (status, code)
    }

    /// Asserts that `keys create ARGS` is refused with exit 1: a one-line
    /// stderr message naming `field` (plain), an `{"error": code, "field"}`
    /// body (`--json`), and no key written.
    fn assert_refused(&self, args: &[&str], code: &str, field: &str) {
        let before = self.count();

        let plain = self.run(args);
        assert_eq!(plain.status, 1, "{args:?} should be refused: {plain:?}");
        assert!(
            plain.stdout.is_empty(),
            "{args:?} printed {:?}",
            plain.stdout
        );
        let message = plain.stderr.trim_end();
        assert_eq!(
            message.lines().count(),
            1,
            "{args:?}: expected a one-line message, got {message:?}"
        );
        assert!(
            mentions_field(message, field),
            "{args:?}: message {message:?} does not name {field}"
        );

        let (status, body) = self.run_json(args);
        assert_eq!(status, 1, "{args:?} --json should be refused: {body}");
        assert_eq!(body["error"], code, "{args:?}: {body}");
        assert_eq!(body["field"], field, "{args:?}: {body}");
        let text = body["message"].as_str().expect("message is a string");
        assert!(!text.is_empty() && !text.contains('\n'), "{args:?}: {body}");

        assert_eq!(self.count(), before, "{args:?} wrote a key");
    }

    /// Asserts that `ARGS` is a usage error (exit 2) that writes nothing.
    fn assert_usage_error(&self, args: &[&str], mentions: &str) {
        let before = self.count();
        let run = self.run(args);
        assert_eq!(run.status, 2, "{args:?} should be a usage error: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?} printed {:?}", run.stdout);
        assert!(
            run.stderr.contains(mentions),
            "{args:?}: stderr {:?} does not mention {mentions}",
            run.stderr
        );
        assert_eq!(self.count(), before, "{args:?} wrote a key");
    }
}

/// `chmod 600 path`.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Whether a message names a field, as JSON (`ip_allow`) or as a flag (`ip-allow`).
fn mentions_field(message: &str, field: &str) -> bool {
    message.contains(field) || message.contains(&field.replace('_', "-"))
}

/// `FLAG VALUE` pairs for each value, for building argument lists.
fn flags<'a>(flag: &'a str, values: &'a [String]) -> Vec<&'a str> {
    values.iter().flat_map(|v| [flag, v.as_str()]).collect()
}

/// Splits a token into (`kg_<env>_`, id, secret, checksum), asserting the
/// SPEC §1 shape on the way.
fn split_token(token: &str) -> (&str, &str, &str, &str) {
    let body_start = token.rfind('_').expect("token has '_'") + 1;
    let (head, body) = token.split_at(body_start);
    assert_eq!(body.len(), 54, "token body of {token:?} is not 54 chars");
    assert!(body.bytes().all(|b| BASE62.contains(&b)), "{token:?}");
    (head, &body[..16], &body[16..48], &body[48..])
}

/// A base62 string of `len` characters that is different on every call.
fn random_base62(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(out.len());
        let mut n = h.finish();
        for _ in 0..10 {
            out.push(char::from(BASE62[(n % 62) as usize]));
            n /= 62;
        }
    }
    out.truncate(len);
    out
}

/// Parses an RFC 3339 timestamp from a record, asserting it is in UTC.
fn timestamp(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    assert!(text.ends_with('Z'), "{text} is not UTC");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Sleeps until `instant` (no-op when it has passed).
fn sleep_until(instant: OffsetDateTime) {
    let wait = instant - OffsetDateTime::now_utc();
    if wait > Duration::ZERO {
        std::thread::sleep(wait.try_into().expect("positive duration"));
    }
}

/// Every file under `dir`, recursively, with its bytes.
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_in(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read file");
            out.push((path, bytes));
        }
    }
    out
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn ids(keys: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = keys
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("id").to_owned()
}

// ---------------------------------------------------------------------------
// 1. init
// ---------------------------------------------------------------------------

#[test]
fn init_prints_a_well_formed_bootstrap_token_once() {
    let kg = Kg::new();
    let run = kg.run(&["init"]);
    assert_eq!(run.status, 0, "{run:?}");

    // stdout is the token alone, on one line.
    let token = run.stdout.strip_suffix('\n').expect("newline-terminated");
    assert!(!token.contains('\n'), "{:?}", run.stdout);
    assert_eq!(token.len(), 62, "{token}");
    assert!(token.starts_with("kg_live_"), "{token}");
    let (head, id, _secret, check) = split_token(token);
    assert_eq!(head, "kg_live_");
    assert_eq!(check, checksum(&token[..56]), "checksum of {token}");
    assert!(!run.stderr.contains(token), "the token leaked to stderr");

    // The bootstrap key: owner admin, scopes *:*, and it verifies.
    let keys = kg.list_all();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["id"], id);
    assert_eq!(keys[0]["owner"], "admin");
    assert_eq!(keys[0]["scopes"], serde_json::json!(["*:*"]));
    assert_eq!(keys[0]["status"], "active");
    assert_eq!(
        kg.verify(token, Some("anything:at_all")),
        (0, "valid".into())
    );

    // A second init is refused and creates nothing.
    let again = kg.run(&["init"]);
    assert_eq!(again.status, 1, "{again:?}");
    assert!(
        again.stdout.is_empty(),
        "second init printed {:?}",
        again.stdout
    );
    assert_eq!(kg.count(), 1);

    // The pepper file: beside the database, 32 bytes, mode 0600.
    let pepper = kg.pepper_file();
    let meta = std::fs::metadata(&pepper).expect("keygate.pepper exists");
    assert_eq!(meta.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn checksum_helper_is_crc32_in_padded_base62() {
    // Guards the independent encoder used by the other tests: the CRC-32 of
    // "" is 0, which must be six zeros, and decoding the six digits (most
    // significant first) gives back the CRC-32.
    assert_eq!(checksum(""), "000000");
    for text in ["kg_live_", "a", "kg_test_0000000000000000"] {
        let digits = checksum(text);
        assert_eq!(digits.len(), 6);
        let decoded = digits.bytes().fold(0u64, |acc, b| {
            acc * 62 + BASE62.iter().position(|&c| c == b).unwrap() as u64
        });
        assert_eq!(
            decoded,
            u64::from(crc32fast::hash(text.as_bytes())),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. keys create output
// ---------------------------------------------------------------------------

#[test]
fn create_prints_the_token_alone_and_a_reminder_on_stderr() {
    let kg = Kg::new();
    let run = kg.run(&[
        "keys",
        "create",
        "--owner",
        "alice",
        "--name",
        "ci",
        "--scope",
        "workspaces:read",
    ]);
    assert_eq!(run.status, 0, "{run:?}");
    let token = run.stdout.strip_suffix('\n').expect("newline-terminated");
    assert!(
        !token.contains('\n') && !token.contains(' '),
        "{:?}",
        run.stdout
    );
    let (head, _, _, check) = split_token(token);
    assert_eq!(head, "kg_live_");
    assert_eq!(check, checksum(&token[..56]));

    let reminder = run.stderr.trim_end();
    assert_eq!(reminder.lines().count(), 1, "{reminder:?}");
    assert!(reminder.contains("again"), "{reminder:?}");
    assert!(!run.stderr.contains(token), "the token leaked to stderr");

    assert_eq!(
        kg.verify(token, Some("workspaces:read")),
        (0, "valid".into())
    );
}

#[test]
fn create_json_returns_the_key_and_a_complete_record() {
    let kg = Kg::new();
    let before = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let (status, body) = kg.run_json(&[
        "keys",
        "create",
        "--owner",
        "alice",
        "--name",
        "ci",
        "--scope",
        "workspaces:read",
        "--scope",
        "templates:*",
        "--description",
        "CI pipeline",
        "--organization",
        "acme",
        "--ip-allow",
        "10.0.0.0/8",
        "--ip-deny",
        "10.1.0.0/16",
        "--metadata",
        r#"{"team":"build"}"#,
    ]);
    assert_eq!(status, 0, "{body}");
    let obj = body.as_object().expect("object");
    assert_eq!(
        sorted(obj.keys().cloned().collect()),
        vec!["api_key", "key"],
        "{body}"
    );
    let token = body["key"].as_str().expect("key");
    let (_, id, secret, _) = split_token(token);
    let record = &body["api_key"];

    for field in RECORD_FIELDS {
        assert!(
            record.get(field).is_some(),
            "record lacks {field}: {record}"
        );
    }
    assert_eq!(record["id"], id);
    assert_eq!(record["display_prefix"], format!("kg_live_{id}"));
    assert_eq!(record["name"], "ci");
    assert_eq!(record["description"], "CI pipeline");
    assert_eq!(record["owner"], "alice");
    assert_eq!(record["organization"], "acme");
    assert_eq!(record["environment"], "live");
    assert_eq!(
        sorted(serde_json::from_value(record["scopes"].clone()).unwrap()),
        vec!["templates:*", "workspaces:read"]
    );
    assert_eq!(record["ip_allow"], serde_json::json!(["10.0.0.0/8"]));
    assert_eq!(record["ip_deny"], serde_json::json!(["10.1.0.0/16"]));
    assert_eq!(record["metadata"], serde_json::json!({"team": "build"}));
    assert_eq!(record["status"], "active");
    for never_set in [
        "last_used_at",
        "last_used_ip",
        "revoked_at",
        "revoked_reason",
        "superseded_by",
    ] {
        assert!(record[never_set].is_null(), "{never_set}: {record}");
    }

    // Timestamps are RFC 3339 UTC; the default lifetime is 90 days.
    let created = timestamp(&record["created_at"]);
    let after = OffsetDateTime::now_utc();
    assert!(
        before <= created && created <= after,
        "created_at {created}"
    );
    timestamp(&record["updated_at"]);
    let expires = timestamp(&record["expires_at"]);
    assert_eq!(expires - created, Duration::days(90));

    // The record never contains the token or its secret.
    let text = record.to_string();
    assert!(!text.contains(token) && !text.contains(secret), "{text}");
}

#[test]
fn create_with_env_test_gives_a_test_token() {
    let kg = Kg::new();
    let (token, record) = kg.create("alice", "sandbox", &["--env", "test"]);
    let (head, id, _, check) = split_token(&token);
    assert_eq!(head, "kg_test_");
    assert_eq!(token.len(), 62);
    assert_eq!(check, checksum(&token[..56]));
    assert_eq!(record["environment"], "test");
    assert_eq!(record["display_prefix"], format!("kg_test_{id}"));
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));

    // The same key presented as a live token (checksum fixed up) is refused.
    let as_live = with_checksum(&format!("kg_live_{}", &token[8..56]));
    assert_eq!(kg.verify(&as_live, None), (1, "invalid_token".into()));

    // Only live and test exist.
    kg.assert_usage_error(
        &[
            "keys", "create", "--owner", "a", "--name", "n", "--env", "staging",
        ],
        "staging",
    );
}

// ---------------------------------------------------------------------------
// 3. Secrets at rest
// ---------------------------------------------------------------------------

#[test]
fn no_token_secret_or_pepper_is_stored_in_any_file() {
    let kg = Kg::new();
    let mut tokens = vec![kg.init()];
    let mut rotated_id = String::new();
    for (owner, name) in [("alice", "one"), ("alice", "two"), ("bob", "one")] {
        let (token, record) = kg.create(owner, name, &["--scope", "workspaces:read"]);
        tokens.push(token);
        rotated_id = id_of(&record);
    }
    tokens.push(kg.create("carol", "t", &["--env", "test"]).0);
    // Rotate one key (with grace, so both old and new are live secrets).
    let rotate = kg.run(&["keys", "rotate", &rotated_id, "--grace", "1h"]);
    assert_eq!(rotate.status, 0, "{rotate:?}");
    tokens.push(rotate.stdout.trim().to_owned());
    for token in &tokens {
        assert_eq!(kg.verify(token, None).0, 0, "{token} should be valid");
    }

    let pepper = std::fs::read(kg.pepper_file()).expect("pepper file");
    assert_eq!(pepper.len(), 32);
    let files = files_in(kg.path());
    let db_files: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.file_name() != Some(OsStr::new("keygate.pepper")))
        .collect();
    assert!(
        db_files
            .iter()
            .any(|(p, _)| p.file_name() == Some(OsStr::new("keygate.db"))),
        "no database file in {files:?}"
    );

    // Sanity: the search can see what the database does store (the ids).
    for token in &tokens {
        let (_, id, _, _) = split_token(token);
        assert!(
            db_files
                .iter()
                .any(|(_, b)| contains_bytes(b, id.as_bytes())),
            "key id {id} not found on disk: the byte search is not looking at the data"
        );
    }
    for (path, bytes) in &files {
        for token in &tokens {
            let (_, _, secret, _) = split_token(token);
            assert!(
                !contains_bytes(bytes, token.as_bytes()),
                "a full token is stored in {}",
                path.display()
            );
            assert!(
                !contains_bytes(bytes, secret.as_bytes()),
                "a token secret is stored in {}",
                path.display()
            );
        }
    }
    for (path, bytes) in &db_files {
        assert!(
            !contains_bytes(bytes, &pepper),
            "the pepper is stored in {}",
            path.display()
        );
        assert!(
            !contains_bytes(bytes, hex_lower(&pepper).as_bytes()),
            "the pepper (hex) is stored in {}",
            path.display()
        );
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn trace_logs_never_contain_a_secret() {
    let kg = Kg::new();
    // Runs with every log line of every crate (sqlx included) on stderr.
    let traced = |args: &[&str]| {
        let mut cmd = kg.bare_command();
        cmd.env("RUST_LOG", "trace")
            .arg("--database-url")
            .arg(kg.db_url())
            .args(args);
        Kg::finish(cmd)
    };
    let mut tokens = Vec::new();
    let mut logs = String::new();

    let init = traced(&["init"]);
    assert_eq!(init.status, 0, "{init:?}");
    assert!(
        !init.stderr.is_empty(),
        "RUST_LOG=trace produced no log at all"
    );
    tokens.push(init.stdout.trim().to_owned());
    logs.push_str(&init.stderr);

    let create = traced(&["keys", "create", "--owner", "alice", "--name", "ci"]);
    assert_eq!(create.status, 0, "{create:?}");
    tokens.push(create.stdout.trim().to_owned());
    logs.push_str(&create.stderr);

    let (_, id, _, _) = split_token(&tokens[1]);
    let rotate = traced(&["keys", "rotate", id, "--grace", "1h"]);
    assert_eq!(rotate.status, 0, "{rotate:?}");
    tokens.push(rotate.stdout.trim().to_owned());
    logs.push_str(&rotate.stderr);

    for token in tokens.clone() {
        let ok = traced(&["verify", &token]);
        assert_eq!(ok.status, 0, "{ok:?}");
        logs.push_str(&ok.stderr);
        // A wrong secret with a valid checksum reaches the MAC check.
        let (_, id, secret, _) = split_token(&token);
        let swapped = if secret.starts_with('a') { "b" } else { "a" };
        let wrong = with_checksum(&format!("{}{id}{swapped}{}", &token[..8], &secret[1..]));
        let bad = traced(&["verify", &wrong]);
        assert_eq!(bad.status, 1, "{bad:?}");
        logs.push_str(&bad.stderr);
        tokens.push(wrong);
    }

    for token in &tokens {
        let (_, _, secret, _) = split_token(token);
        assert!(!logs.contains(token.as_str()), "a token was logged");
        assert!(!logs.contains(secret), "a token secret was logged");
    }
    let pepper = std::fs::read(kg.pepper_file()).expect("pepper file");
    assert!(!logs.contains(&hex_lower(&pepper)), "the pepper was logged");
}

// ---------------------------------------------------------------------------
// 4. Refusals
// ---------------------------------------------------------------------------

/// `keys create --owner OWNER --name NAME EXTRA...`
fn create_args<'a>(owner: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["keys", "create", "--owner", owner, "--name", name];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_names_and_owners_are_refused_naming_the_field() {
    let kg = Kg::new();
    kg.create("alice", "existing", &[]);

    let long = "n".repeat(129);
    for bad in ["", "bad\u{1b}name", "tab\there", long.as_str()] {
        kg.assert_refused(&create_args("alice", bad, &[]), "bad_request", "name");
    }
    for bad in ["", "ali\u{7}ce", long.as_str()] {
        kg.assert_refused(&create_args(bad, "ci", &[]), "bad_request", "owner");
    }

    // The limits are inclusive: 128 characters are fine for both.
    let max = "é".repeat(128);
    kg.create(&max, &max, &[]);
    assert_eq!(kg.count(), 2);
}

#[test]
fn bad_scopes_are_refused_naming_the_field() {
    let kg = Kg::new();
    for bad in [
        "Work:read",
        "a:b:c",
        "workspaces",
        ":read",
        "work spaces:read",
    ] {
        kg.assert_refused(
            &create_args("alice", "ci", &["--scope", bad]),
            "bad_request",
            "scopes",
        );
    }

    let many: Vec<String> = (0..65).map(|i| format!("r{i}:read")).collect();
    let mut extra = flags("--scope", &many);
    kg.assert_refused(&create_args("alice", "ci", &extra), "bad_request", "scopes");

    // 64 scopes are allowed.
    extra.truncate(2 * 64);
    let (_, record) = kg.create("alice", "ci", &extra);
    assert_eq!(record["scopes"].as_array().unwrap().len(), 64);
}

#[test]
fn bad_ip_lists_are_refused_naming_the_field() {
    let kg = Kg::new();
    for field in ["ip_allow", "ip_deny"] {
        let flag = format!("--{}", field.replace('_', "-"));
        for bad in ["10.0.0.0/33", "example.com", "300.1.1.1", "::g"] {
            kg.assert_refused(
                &create_args("alice", "ci", &[&flag, bad]),
                "bad_request",
                field,
            );
        }
        let many: Vec<String> = (0..65).map(|i| format!("10.0.{i}.0/24")).collect();
        let extra = flags(&flag, &many);
        kg.assert_refused(&create_args("alice", "ci", &extra), "bad_request", field);
    }

    // 64 entries, IPv4 and IPv6 mixed, are allowed.
    let mut ok: Vec<String> = (0..63).map(|i| format!("10.0.{i}.0/24")).collect();
    ok.push("2001:db8::/32".into());
    let extra = flags("--ip-allow", &ok);
    let (_, record) = kg.create("alice", "ci", &extra);
    assert_eq!(record["ip_allow"].as_array().unwrap().len(), 64);
}

#[test]
fn bad_lifetimes_are_refused_naming_the_field() {
    let kg = Kg::new();
    // `--flag=value` so that "-1d" is a value, not an unknown flag.
    for bad in ["5q", "0s", "0", "-1d", "d", "30"] {
        let arg = format!("--expires-in={bad}");
        kg.assert_refused(
            &create_args("alice", "ci", &[&arg]),
            "bad_request",
            "expires_in",
        );
    }
    let past = (OffsetDateTime::now_utc() - Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    for bad in [
        past.as_str(),
        "2020-01-01T00:00:00Z",
        "tomorrow",
        "2030-13-01T00:00:00Z",
    ] {
        kg.assert_refused(
            &create_args("alice", "ci", &["--expires-at", bad]),
            "bad_request",
            "expires_at",
        );
    }

    // Both at once is bad usage.
    kg.assert_usage_error(
        &create_args(
            "alice",
            "ci",
            &["--expires-in", "1d", "--expires-at", "2099-01-01T00:00:00Z"],
        ),
        "expires",
    );

    // A bare `m` is ambiguous (minutes or months): refused (SPEC §5a).
    kg.assert_refused(
        &create_args("alice", "ambiguous", &["--expires-in", "30m"]),
        "bad_request",
        "expires_in",
    );

    // The documented forms work, including never.
    for (i, ok) in ["30min", "12h", "30d", "1w", "1mo", "1y", "never"]
        .iter()
        .enumerate()
    {
        let (_, record) = kg.create("alice", &format!("k{i}"), &["--expires-in", ok]);
        if *ok == "never" {
            assert!(record["expires_at"].is_null(), "{record}");
        } else {
            timestamp(&record["expires_at"]);
        }
    }
}

#[test]
fn bad_metadata_and_description_are_refused_naming_the_field() {
    let kg = Kg::new();
    for bad in ["{not json", "[1,2]", "\"text\"", "42"] {
        kg.assert_refused(
            &create_args("alice", "ci", &["--metadata", bad]),
            "bad_request",
            "metadata",
        );
    }
    // {"x":"yyy…"}: 8 bytes of framing, so 4088 y's make exactly 4096 bytes.
    let at_limit = format!(r#"{{"x":"{}"}}"#, "y".repeat(4088));
    assert_eq!(at_limit.len(), 4096);
    let over = format!(r#"{{"x":"{}"}}"#, "y".repeat(4089));
    kg.assert_refused(
        &create_args("alice", "ci", &["--metadata", &over]),
        "bad_request",
        "metadata",
    );

    let long = "d".repeat(1025);
    kg.assert_refused(
        &create_args("alice", "ci", &["--description", &long]),
        "bad_request",
        "description",
    );

    // The limits are inclusive.
    let (_, record) = kg.create(
        "alice",
        "ci",
        &["--metadata", &at_limit, "--description", &"d".repeat(1024)],
    );
    assert_eq!(record["metadata"]["x"].as_str().unwrap().len(), 4088);
    assert_eq!(record["description"].as_str().unwrap().len(), 1024);
}

#[test]
fn duplicate_name_for_the_same_owner_is_a_conflict() {
    let kg = Kg::new();
    let (_, first) = kg.create("alice", "ci", &[]);
    kg.assert_refused(&create_args("alice", "ci", &[]), "conflict", "name");

    // The same name for another owner is fine.
    kg.create("bob", "ci", &[]);
    assert_eq!(kg.count(), 2);

    // Uniqueness is among active keys: once revoked, the name is free again.
    let revoke = kg.run(&["keys", "revoke", &id_of(&first)]);
    assert_eq!(revoke.status, 0, "{revoke:?}");
    kg.create("alice", "ci", &[]);
    assert_eq!(kg.count(), 3);
}

// ---------------------------------------------------------------------------
// 5. verify and scopes
// ---------------------------------------------------------------------------

#[test]
fn verify_honours_scope_requirements() {
    let kg = Kg::new();
    let (token, _) = kg.create(
        "alice",
        "ci",
        &["--scope", "workspaces:read", "--scope", "templates:*"],
    );

    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
    for ok in [
        "workspaces:read",
        "templates:use",
        "templates:*",
        "workspaces:read and templates:use",
        "workspaces:write or templates:use",
        "workspaces:read AND (billing:read Or templates:delete)",
        "(workspaces:write and billing:read) or workspaces:read",
    ] {
        assert_eq!(kg.verify(&token, Some(ok)), (0, "valid".into()), "{ok}");
    }
    for refused in [
        "workspaces:write",
        "workspaces:*",
        "*:read",
        "*:*",
        "workspaces:read and billing:read",
        "workspaces:read and (billing:read or workspaces:write)",
        "billing:read or workspaces:delete",
    ] {
        assert_eq!(
            kg.verify(&token, Some(refused)),
            (1, "insufficient_scope".into()),
            "{refused}"
        );
    }

    // The plain (non-JSON) form has the same exit statuses.
    let plain = kg.run(&["verify", &token, "--require", "workspaces:*"]);
    assert_eq!(plain.status, 1, "{plain:?}");
    let plain = kg.run(&["verify", &token, "--require", "templates:use"]);
    assert_eq!(plain.status, 0, "{plain:?}");

    // A *:* grant satisfies a required wildcard.
    let (admin, _) = kg.create("root", "root", &["--scope", "*:*"]);
    assert_eq!(kg.verify(&admin, Some("workspaces:*")), (0, "valid".into()));
}

#[test]
fn malformed_requirement_is_bad_usage() {
    let kg = Kg::new();
    let (token, _) = kg.create("alice", "ci", &["--scope", "workspaces:read"]);
    for bad in [
        "",
        "workspaces:read and",
        "(workspaces:read",
        "workspaces:read)",
        "Workspaces:read",
        "workspaces:read workspaces:write",
        "and",
        "()",
    ] {
        let run = kg.run(&["verify", &token, "--require", bad]);
        assert_eq!(run.status, 2, "--require {bad:?}: {run:?}");
    }
}

#[test]
fn usage_errors_are_json_with_json_and_clap_text_without() {
    let kg = Kg::new();
    let cases: [&[&str]; 4] = [
        &["keys", "create", "--name", "ci"],
        &[
            "keys", "create", "--owner", "alice", "--name", "ci", "--bogus",
        ],
        &["keys", "frobnicate"],
        &["verify"],
    ];
    for args in cases {
        let (status, body) = kg.run_json(args);
        assert_eq!(status, 2, "{args:?}: {body}");
        assert_eq!(body["error"], "bad_usage", "{args:?}: {body}");
        let message = body["message"].as_str().expect("a message");
        assert!(
            !message.is_empty() && !message.starts_with("error:"),
            "{message:?}"
        );

        let plain = kg.run(args);
        assert_eq!(plain.status, 2, "{args:?}: {plain:?}");
        assert!(plain.stdout.is_empty(), "{plain:?}");
        assert!(plain.stderr.starts_with("error:"), "{plain:?}");
    }
    // The JSON names what was wrong, as clap's text does.
    let (_, body) = kg.run_json(&[
        "keys", "create", "--owner", "alice", "--name", "ci", "--bogus",
    ]);
    assert!(
        body["message"].as_str().unwrap().contains("--bogus"),
        "{body}"
    );
    let (_, body) = kg.run_json(&["keys", "create", "--name", "ci"]);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--owner <OWNER>"),
        "{body}"
    );
    // Help is not an error, with or without --json.
    for args in [&["--help"][..], &["--json", "keys", "--help"][..]] {
        let help = kg.run(args);
        assert_eq!(help.status, 0, "{help:?}");
        assert!(help.stdout.contains("Usage:"), "{help:?}");
    }
}

// ---------------------------------------------------------------------------
// 6. Revocation, rotation, expiry
// ---------------------------------------------------------------------------

#[test]
fn revoked_key_is_refused_and_shows_why() {
    let kg = Kg::new();
    let (token, record) = kg.create("alice", "ci", &[]);
    let id = id_of(&record);
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));

    let (status, revoked) = kg.run_json(&["keys", "revoke", &id, "--reason", "leaked in CI logs"]);
    assert_eq!(status, 0, "{revoked}");
    assert_eq!(kg.verify(&token, None), (1, "invalid_token".into()));
    let plain = kg.run(&["verify", &token]);
    assert_eq!(plain.status, 1, "{plain:?}");

    let (status, shown) = kg.show(&id);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revoked_reason"], "leaked in CI logs");
    timestamp(&shown["revoked_at"]);
}

#[test]
fn rotation_without_grace_replaces_the_key_at_once() {
    let kg = Kg::new();
    let (old_token, old) = kg.create(
        "alice",
        "ci",
        &[
            "--scope",
            "workspaces:read",
            "--scope",
            "templates:use",
            "--metadata",
            r#"{"team":"build"}"#,
            "--description",
            "pipeline",
        ],
    );
    let old_id = id_of(&old);

    let run = kg.run(&["keys", "rotate", &old_id]);
    assert_eq!(run.status, 0, "{run:?}");
    let new_token = run.stdout.strip_suffix('\n').expect("newline-terminated");
    assert!(!new_token.contains('\n'), "{:?}", run.stdout);
    let (_, new_id, _, check) = split_token(new_token);
    assert_eq!(check, checksum(&new_token[..56]));
    assert_ne!(new_id, old_id);
    assert!(
        !run.stderr.contains(new_token),
        "the token leaked to stderr"
    );

    assert_eq!(kg.verify(&old_token, None), (1, "invalid_token".into()));
    assert_eq!(kg.verify(new_token, None), (0, "valid".into()));

    let (_, old_now) = kg.show(&old_id);
    assert_eq!(old_now["superseded_by"], new_id);
    let (status, new) = kg.show(new_id);
    assert_eq!(status, 0, "{new}");
    for same in [
        "name",
        "owner",
        "scopes",
        "metadata",
        "description",
        "environment",
    ] {
        assert_eq!(new[same], old[same], "{same} differs after rotation");
    }
    assert_eq!(new["status"], "active");
    assert!(new["superseded_by"].is_null());

    // A malformed grace is refused, naming it.
    let (_, other) = kg.create("alice", "other", &[]);
    let (status, body) = kg.run_json(&["keys", "rotate", &id_of(&other), "--grace", "5q"]);
    assert_eq!(status, 1, "{body}");
    assert_eq!(body["field"], "grace", "{body}");
    let (_, other_now) = kg.show(&id_of(&other));
    assert!(other_now["superseded_by"].is_null(), "{other_now}");

    // A rotated key cannot be rotated again.
    let again = kg.run(&["keys", "rotate", &old_id]);
    assert_eq!(again.status, 1, "{again:?}");
}

#[test]
fn rotation_with_grace_keeps_both_keys_valid() {
    let kg = Kg::new();
    let (old_token, old) = kg.create("alice", "ci", &["--scope", "workspaces:read"]);
    let old_id = id_of(&old);

    let before = OffsetDateTime::now_utc();
    let (status, body) = kg.run_json(&["keys", "rotate", &old_id, "--grace", "1h"]);
    assert_eq!(status, 0, "{body}");
    let new_token = body["key"].as_str().expect("key");
    assert_eq!(body["api_key"]["name"], "ci");

    assert_eq!(
        kg.verify(&old_token, Some("workspaces:read")),
        (0, "valid".into())
    );
    assert_eq!(
        kg.verify(new_token, Some("workspaces:read")),
        (0, "valid".into())
    );

    // The old key now expires at now + grace (earlier than its 90 days).
    let (_, old_now) = kg.show(&old_id);
    let expires = timestamp(&old_now["expires_at"]);
    let expected = before + Duration::hours(1);
    assert!(
        (expires - expected).abs() < Duration::seconds(5),
        "old key expires at {expires}, expected about {expected}"
    );
    assert_eq!(old_now["superseded_by"], body["api_key"]["id"]);
}

#[test]
fn key_expires_at_the_exact_second_given() {
    let kg = Kg::new();
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + Duration::seconds(3);
    let at_text = at.format(&Rfc3339).unwrap();
    assert!(
        at_text.ends_with('Z') && !at_text.contains('.'),
        "{at_text}"
    );
    let (token, record) = kg.create("alice", "short", &["--expires-at", &at_text]);
    assert_eq!(record["expires_at"], at_text.as_str());

    // Before that second: valid.
    let (status, code) = kg.verify(&token, None);
    assert!(
        OffsetDateTime::now_utc() < at,
        "machine too slow for this test"
    );
    assert_eq!((status, code.as_str()), (0, "valid"));

    // Half a second before: still valid (no early expiry), if the check
    // itself finishes before the deadline.
    sleep_until(at - Duration::milliseconds(500));
    let (status, code) = kg.verify(&token, None);
    if OffsetDateTime::now_utc() < at {
        assert_eq!((status, code.as_str()), (0, "valid"), "expired early");
    }

    // From that second on: refused.
    sleep_until(at + Duration::milliseconds(50));
    assert_eq!(kg.verify(&token, None), (1, "invalid_token".into()));
    let (_, shown) = kg.show(&id_of(&record));
    assert_eq!(shown["status"], "expired");
}

#[test]
fn key_with_short_expires_in_stops_working() {
    let kg = Kg::new();
    let (token, record) = kg.create("alice", "short", &["--expires-in", "2s"]);
    let created = timestamp(&record["created_at"]);
    let expires = timestamp(&record["expires_at"]);
    assert_eq!(expires - created, Duration::seconds(2));

    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
    sleep_until(expires + Duration::milliseconds(50));
    assert_eq!(kg.verify(&token, None), (1, "invalid_token".into()));
}

// ---------------------------------------------------------------------------
// 7. Tampered and unknown tokens
// ---------------------------------------------------------------------------

#[test]
fn tampered_unknown_and_oversized_tokens_are_refused_alike() {
    let kg = Kg::new();
    let (token, _) = kg.create("alice", "ci", &["--scope", "workspaces:read"]);
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));

    // One character changed, in the id, the secret and the checksum.
    let flip = |i: usize| {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        String::from_utf8(bytes).unwrap()
    };
    let mut bad = vec![flip(10), flip(30), flip(60)];
    // A changed secret with a recomputed checksum: passes the offline
    // checks, fails the MAC.
    bad.push(with_checksum(&flip(40)[..56]));
    // A well-formed token with a valid checksum and an id nobody holds.
    bad.push(with_checksum(&format!(
        "kg_live_{}{}",
        random_base62(16),
        random_base62(32)
    )));
    // Too long (only legal characters), and other garbage.
    bad.push(format!("kg_live_{}", "a".repeat(300)));
    bad.push(token[..61].to_owned());
    bad.push(format!("{token}0"));
    bad.push(token.replace("kg_", "xx_"));
    bad.push(format!("{}-{}", &token[..30], &token[31..]));

    let reference = {
        let (status, body) = kg.run_json(&["verify", &bad[0]]);
        assert_eq!(status, 1);
        body
    };
    assert_eq!(reference["code"], "invalid_token");
    assert_eq!(reference["valid"], false);
    for candidate in &bad {
        assert_ne!(candidate, &token);
        let (status, body) = kg.run_json(&["verify", candidate]);
        assert_eq!(status, 1, "{candidate} accepted: {body}");
        // Every cause gives the same answer: the cause is not disclosed.
        assert_eq!(body, reference, "{candidate}");
        let plain = kg.run(&["verify", candidate]);
        assert_eq!(plain.status, 1, "{candidate}: {plain:?}");
    }
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
}

// ---------------------------------------------------------------------------
// 8. delete
// ---------------------------------------------------------------------------

#[test]
fn delete_removes_the_record() {
    let kg = Kg::new();
    let (token, record) = kg.create("alice", "ci", &[]);
    let (_, keep) = kg.create("alice", "other", &[]);
    let id = id_of(&record);

    let run = kg.run(&["keys", "delete", &id]);
    assert_eq!(run.status, 0, "{run:?}");

    let (status, body) = kg.show(&id);
    assert_eq!(status, 1, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(ids(&kg.list_all()), vec![id_of(&keep)]);
    assert_eq!(kg.verify(&token, None), (1, "invalid_token".into()));

    let (status, body) = kg.run_json(&["keys", "delete", &id]);
    assert_eq!(status, 1, "{body}");
    assert_eq!(body["error"], "not_found");
    let plain = kg.run(&["keys", "delete", &id]);
    assert_eq!(plain.status, 1, "{plain:?}");
}

#[test]
fn commands_on_unknown_ids_are_not_found() {
    let kg = Kg::new();
    kg.create("alice", "ci", &[]);
    let unknown = random_base62(16);
    for cmd in ["show", "revoke", "rotate", "delete"] {
        let (status, body) = kg.run_json(&["keys", cmd, &unknown]);
        assert_eq!(status, 1, "keys {cmd}: {body}");
        assert_eq!(body["error"], "not_found", "keys {cmd}: {body}");
    }
    assert_eq!(kg.count(), 1);
}

// ---------------------------------------------------------------------------
// 9. list
// ---------------------------------------------------------------------------

#[test]
fn list_hides_revoked_keys_and_filters_by_owner() {
    let kg = Kg::new();
    let a = id_of(&kg.create("alice", "a", &["--organization", "acme"]).1);
    let b = id_of(&kg.create("alice", "b", &[]).1);
    let c = id_of(&kg.create("bob", "c", &["--organization", "acme"]).1);
    assert_eq!(kg.run(&["keys", "revoke", &b]).status, 0);

    assert_eq!(ids(&kg.list(&[])), sorted(vec![a.clone(), c.clone()]));
    assert_eq!(
        ids(&kg.list(&["--include-revoked"])),
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(ids(&kg.list(&["--owner", "alice"])), vec![a.clone()]);
    assert_eq!(
        ids(&kg.list(&["--owner", "alice", "--include-revoked"])),
        sorted(vec![a.clone(), b.clone()])
    );
    assert!(kg.list(&["--owner", "nobody"]).is_empty());
    assert_eq!(
        ids(&kg.list(&["--organization", "acme"])),
        sorted(vec![a.clone(), c.clone()])
    );
    for key in kg.list_all() {
        for field in RECORD_FIELDS {
            assert!(key.get(field).is_some(), "listed record lacks {field}");
        }
    }

    // The human-readable listing agrees.
    let plain = kg.run(&["keys", "list"]);
    assert_eq!(plain.status, 0, "{plain:?}");
    assert!(plain.stdout.contains(&a) && plain.stdout.contains(&c));
    assert!(!plain.stdout.contains(&b), "{}", plain.stdout);
}

// ---------------------------------------------------------------------------
// 10. Pepper handling
// ---------------------------------------------------------------------------

#[test]
fn pepper_from_env_is_used_and_no_file_is_created() {
    let mut kg = Kg::with_pepper(HEX_PEPPER_A);
    let (token, _) = kg.create("alice", "ci", &[]);
    assert!(!kg.pepper_file().exists(), "a pepper file was created");
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));

    // Base64 of the same 32 bytes is the same pepper.
    kg.pepper = Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));

    // Another pepper is refused outright (SPEC §8a), rather than making
    // every token invalid.
    kg.pepper = Some(HEX_PEPPER_B.into());
    let run = kg.run(&["verify", &token]);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.contains("pepper does not match"), "{run:?}");

    // No pepper at all: the database holds keys, so no new pepper is minted.
    kg.pepper = None;
    let run = kg.run(&["verify", &token]);
    assert_ne!(run.status, 0, "{run:?}");
    assert!(run.stderr.to_lowercase().contains("pepper"), "{run:?}");
    assert!(!kg.pepper_file().exists(), "a pepper file was minted");
}

#[test]
fn missing_pepper_file_is_refused_not_silently_replaced() {
    let kg = Kg::new();
    let (token, _) = kg.create("alice", "ci", &[]);
    let pepper = std::fs::read(kg.pepper_file()).expect("pepper file");
    std::fs::remove_file(kg.pepper_file()).unwrap();

    let commands: [&[&str]; 3] = [
        &["verify", &token],
        &["keys", "list"],
        &["keys", "create", "--owner", "bob", "--name", "x"],
    ];
    for args in commands {
        let run = kg.run(args);
        assert_ne!(run.status, 0, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(
            run.stderr.to_lowercase().contains("pepper"),
            "{args:?}: {run:?}"
        );
        assert!(!kg.pepper_file().exists(), "{args:?} minted a new pepper");
    }

    // A truncated pepper file is refused too, and left as it is.
    std::fs::write(kg.pepper_file(), &pepper[..31]).unwrap();
    let run = kg.run(&["verify", &token]);
    assert_ne!(run.status, 0, "{run:?}");
    assert!(run.stderr.to_lowercase().contains("pepper"), "{run:?}");
    assert_eq!(std::fs::read(kg.pepper_file()).unwrap(), &pepper[..31]);

    // Restoring the file (private, as SPEC §8a requires) restores service,
    // and nothing was created meanwhile.
    std::fs::write(kg.pepper_file(), &pepper).unwrap();
    make_private(&kg.pepper_file());
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
    assert_eq!(kg.count(), 1);
}

#[test]
fn short_or_garbled_pepper_env_is_refused() {
    let mut kg = Kg::with_pepper(HEX_PEPPER_A);
    for bad in [
        &HEX_PEPPER_A[..62],                            // 31 bytes of hex
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", // 31 bytes of base64
        "not a pepper at all!",
    ] {
        kg.pepper = Some(bad.into());
        let run = kg.run(&["keys", "create", "--owner", "alice", "--name", "ci"]);
        assert_ne!(run.status, 0, "pepper {bad:?} accepted: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(run.stderr.contains("PEPPER"), "{run:?}");
        assert!(!kg.pepper_file().exists());
    }
    kg.pepper = Some(HEX_PEPPER_A.into());
    assert_eq!(kg.count(), 0);
}

// ---------------------------------------------------------------------------
// 11. Database URL
// ---------------------------------------------------------------------------

#[test]
fn unsupported_database_url_is_bad_usage() {
    let kg = Kg::bare();
    let mut cmd = kg.bare_command();
    cmd.args(["--database-url", "mysql://x", "keys", "list"]);
    let run = Kg::finish(cmd);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(!run.stderr.trim().is_empty(), "{run:?}");

    // The same from the environment variable.
    let mut cmd = kg.bare_command();
    cmd.env("KEYGATE_DATABASE_URL", "mysql://x").arg("init");
    let run = Kg::finish(cmd);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");

    assert!(files_in(kg.path()).is_empty(), "files were created");
}

#[test]
fn database_url_comes_from_env_then_defaults_to_keygate_db() {
    let kg = Kg::bare();

    // KEYGATE_DATABASE_URL is honoured when --database-url is absent.
    let other = kg.path().join("other.db");
    let mut cmd = kg.bare_command();
    cmd.env(
        "KEYGATE_DATABASE_URL",
        format!("sqlite://{}", other.display()),
    )
    .arg("init");
    let run = Kg::finish(cmd);
    assert_eq!(run.status, 0, "{run:?}");
    assert!(other.exists());
    assert!(!kg.path().join("keygate.db").exists());

    // With neither, keygate.db in the working directory.
    let mut cmd = kg.bare_command();
    cmd.arg("init");
    let run = Kg::finish(cmd);
    assert_eq!(run.status, 0, "{run:?}");
    assert!(kg.path().join("keygate.db").exists());
    let token = run.stdout.trim();
    assert_eq!(kg.verify(token, None), (0, "valid".into()));
}

#[test]
fn json_flag_is_accepted_after_the_subcommand() {
    let kg = Kg::new();
    let run = kg.run(&["keys", "create", "--owner", "a", "--name", "n", "--json"]);
    assert_eq!(run.status, 0, "{run:?}");
    let body = run.json();
    assert!(
        body["key"].is_string() && body["api_key"].is_object(),
        "{body}"
    );
}

// ---------------------------------------------------------------------------
// 12. The hardened binary (SPEC §8a)
// ---------------------------------------------------------------------------

/// Every command but `init` (and `serve`), with placeholder key arguments.
fn non_creating_commands() -> Vec<Vec<String>> {
    let id = random_base62(16);
    let token = with_checksum(&format!("kg_live_{id}{}", random_base62(32)));
    [
        vec!["keys", "list"],
        vec!["keys", "create", "--owner", "alice", "--name", "ci"],
        vec!["keys", "show", &id],
        vec!["keys", "revoke", &id],
        vec!["keys", "rotate", &id],
        vec!["keys", "delete", &id],
        vec!["verify", &token],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(str::to_owned).collect())
    .collect()
}

#[test]
fn commands_other_than_init_refuse_a_missing_database_and_create_no_file() {
    let kg = Kg::bare();
    let db = kg.path().join("keygate.db");
    for args in non_creating_commands() {
        let run = kg.run(&args);
        assert_eq!(run.status, 1, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        let message = run.stderr.trim_end();
        assert_eq!(
            message.lines().count(),
            1,
            "{args:?}: one line: {message:?}"
        );
        assert!(
            message.contains(&db.display().to_string()),
            "{args:?}: the message names the database it looked for: {message:?}"
        );
        assert!(message.contains("keygate init"), "{args:?}: {message:?}");

        let (status, body) = kg.run_json(&args);
        assert_eq!(status, 1, "{args:?}: {body}");
        assert_eq!(body["error"], "not_found", "{args:?}: {body}");

        assert!(
            files_in(kg.path()).is_empty(),
            "{args:?} created {:?}",
            files_in(kg.path())
        );
    }
    // With a pepper in the environment, no more.
    let mut kg = kg;
    kg.pepper = Some(HEX_PEPPER_A.into());
    assert_eq!(kg.run(&["keys", "list"]).status, 1);
    assert!(files_in(kg.path()).is_empty());

    // init creates it; then the same commands work.
    kg.pepper = None;
    kg.init();
    assert_eq!(kg.count(), 1);
}

#[test]
fn another_pepper_is_refused_at_start_not_key_by_key() {
    let kg = Kg::new();
    let (token, record) = kg.create("alice", "ci", &[]);
    let original = std::fs::read(kg.pepper_file()).unwrap();

    // Another pepper file of the right shape: refused by every command,
    // which says so, and changes nothing.
    std::fs::write(kg.pepper_file(), [0x5au8; 32]).unwrap();
    make_private(&kg.pepper_file());
    for args in [
        vec!["keys", "list"],
        vec!["verify", &token],
        vec!["keys", "create", "--owner", "bob", "--name", "x"],
        vec!["init"],
    ] {
        let run = kg.run(&args);
        assert_eq!(run.status, 1, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        let message = run.stderr.trim_end();
        assert_eq!(message.lines().count(), 1, "{message:?}");
        assert!(message.contains("pepper does not match"), "{message:?}");
        assert!(!message.contains(&hex_lower(&original)), "{message:?}");
    }

    // Through the environment too.
    let mut env = Kg::new();
    env.pepper = Some(HEX_PEPPER_B.into());
    let run = env.run(&["keys", "list"]);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("pepper does not match"), "{run:?}");

    // The right pepper again: everything as before.
    std::fs::write(kg.pepper_file(), &original).unwrap();
    make_private(&kg.pepper_file());
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
    assert_eq!(ids(&kg.list_all()), vec![id_of(&record)]);
}

#[test]
fn a_lost_pepper_file_is_not_replaced_even_on_a_database_without_keys() {
    // init, then the only key deleted: the database holds no key, but it
    // was set up with that pepper.
    let kg = Kg::new();
    std::fs::remove_file(kg.pepper_file()).unwrap();
    for args in [vec!["init"], vec!["keys", "list"]] {
        let run = kg.run(&args);
        assert_eq!(run.status, 1, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(run.stderr.contains("keygate.pepper is missing"), "{run:?}");
        assert!(!kg.pepper_file().exists(), "{args:?} minted a new pepper");
    }
}

#[test]
fn a_database_without_a_check_value_gets_one_on_first_open() {
    // A database made by an older keygate: no keygate_meta row.
    let mut kg = Kg::with_pepper(HEX_PEPPER_A);
    let (token, _) = kg.create("alice", "ci", &[]);
    let url = kg.db_url();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = keygate::SqliteStore::open(&url).await.unwrap();
            sqlx::query("DELETE FROM keygate_meta")
                .execute(store.pool())
                .await
                .unwrap();
            store.pool().close().await;
        });
    // The first open stores the current pepper's check value...
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
    // ...and from then on another pepper is refused.
    kg.pepper = Some(HEX_PEPPER_B.into());
    let run = kg.run(&["keys", "list"]);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("pepper does not match"), "{run:?}");
}

#[cfg(unix)]
#[test]
fn database_and_pepper_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let kg = Kg::new();
    kg.create("alice", "ci", &[]);
    let files = files_in(kg.path());
    let names: Vec<_> = files
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert!(names.iter().any(|n| n == "keygate.db"), "{names:?}");
    assert!(names.iter().any(|n| n == "keygate.pepper"), "{names:?}");
    for (path, _) in &files {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    }
}

#[cfg(unix)]
#[test]
fn a_pepper_file_readable_by_others_is_refused_naming_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let kg = Kg::new();
    let (token, _) = kg.create("alice", "ci", &[]);
    let pepper = std::fs::read(kg.pepper_file()).unwrap();
    for mode in [0o644, 0o640] {
        std::fs::set_permissions(kg.pepper_file(), std::fs::Permissions::from_mode(mode)).unwrap();
        for args in [vec!["keys", "list"], vec!["verify", &token], vec!["init"]] {
            let run = kg.run(&args);
            assert_eq!(run.status, 1, "{args:?} with mode {mode:o}: {run:?}");
            assert!(run.stdout.is_empty(), "{run:?}");
            let message = run.stderr.trim_end();
            assert_eq!(message.lines().count(), 1, "{message:?}");
            assert!(
                message.contains(&kg.pepper_file().display().to_string()),
                "names the file: {message:?}"
            );
            assert!(message.contains("chmod 600"), "names the fix: {message:?}");
        }
        assert_eq!(
            std::fs::read(kg.pepper_file()).unwrap(),
            pepper,
            "left alone"
        );
    }
    make_private(&kg.pepper_file());
    assert_eq!(kg.verify(&token, None), (0, "valid".into()));
}

#[test]
fn key_arguments_take_an_id_a_display_prefix_or_a_token_and_never_print_the_token() {
    let kg = Kg::new();
    let mut tokens = Vec::new();
    let mut outputs = String::new();
    let keep = |run: &Run, outputs: &mut String| {
        outputs.push_str(&run.stdout);
        outputs.push_str(&run.stderr);
    };

    // show: by token, by display prefix, by id — the same record.
    let (token, record) = kg.create("alice", "show", &[]);
    tokens.push(token.clone());
    let id = id_of(&record);
    for given in [token.clone(), format!("kg_live_{id}"), id.clone()] {
        let (status, body) = kg.show(&given);
        assert_eq!(status, 0, "{body}");
        assert_eq!(body["id"], id.as_str(), "{body}");
        let plain = kg.run(&["keys", "show", &given]);
        assert_eq!(plain.status, 0, "{plain:?}");
        keep(&plain, &mut outputs);
    }

    // revoke, rotate and delete by token.
    let (revoked, record) = kg.create("alice", "revoke", &[]);
    tokens.push(revoked.clone());
    let run = kg.run(&["keys", "revoke", &revoked, "--reason", "leaked"]);
    assert_eq!(run.status, 0, "{run:?}");
    keep(&run, &mut outputs);
    assert_eq!(kg.show(&id_of(&record)).1["status"], "revoked");

    let (rotated, _) = kg.create("alice", "rotate", &[]);
    tokens.push(rotated.clone());
    let run = kg.run(&["keys", "rotate", &rotated]);
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(kg.verify(&rotated, None).0, 1, "the old token is replaced");
    outputs.push_str(&run.stderr); // stdout is the new token, printed once by design

    let (deleted, record) = kg.create("alice", "delete", &[]);
    tokens.push(deleted.clone());
    let run = kg.run(&["keys", "delete", &deleted]);
    assert_eq!(run.status, 0, "{run:?}");
    keep(&run, &mut outputs);
    assert_eq!(kg.show(&id_of(&record)).0, 1);

    // Unknown, tampered and garbled tokens: refused, never repeated.
    let unknown = with_checksum(&format!(
        "kg_live_{}{}",
        random_base62(16),
        random_base62(32)
    ));
    let mut tampered = token.clone();
    tampered.replace_range(30..31, if &token[30..31] == "a" { "b" } else { "a" });
    let garbled = format!("{token}!");
    let given = [unknown.clone(), tampered.clone(), garbled.clone()];
    tokens.extend(given.iter().cloned());
    for bad in &given {
        for cmd in ["show", "revoke", "rotate", "delete"] {
            let run = kg.run(&["keys", cmd, bad]);
            assert_eq!(run.status, 1, "keys {cmd}: {run:?}");
            keep(&run, &mut outputs);
            let (status, body) = kg.run_json(&["keys", cmd, bad]);
            assert_eq!(status, 1, "{body}");
            assert_eq!(body["error"], "not_found", "{body}");
            outputs.push_str(&body.to_string());
        }
        let run = kg.run(&["verify", bad]);
        assert_eq!(run.status, 1, "{run:?}");
        keep(&run, &mut outputs);
        let run = kg.run(&["--json", "verify", bad]);
        keep(&run, &mut outputs);
    }
    // A live token given to verify is not repeated either.
    let (live, _) = kg.create("bob", "live", &[]);
    tokens.push(live.clone());
    for args in [vec!["verify", &live], vec!["--json", "verify", &live]] {
        let run = kg.run(&args);
        assert_eq!(run.status, 0, "{run:?}");
        keep(&run, &mut outputs);
    }
    // Nor by a usage error that quotes an argument.
    for args in [
        vec!["keys", "show", &live, &live],
        vec!["verify", &live, "--bogus"],
        vec!["--json", "keys", "show", &live, &live],
        vec!["keys", "show", &tampered, &tampered],
    ] {
        let run = kg.run(&args);
        assert_eq!(run.status, 2, "{run:?}");
        keep(&run, &mut outputs);
    }

    for token in &tokens {
        let secret = &token[24..56];
        assert!(
            !outputs.contains(token.as_str()),
            "a token was printed back"
        );
        assert!(!outputs.contains(secret), "a token secret was printed back");
    }
}

/// Runs `keygate ARGS` with stdout a pipe whose reading end is closed
/// before the command writes: the situation of `keygate keys list | head -1`
/// once `head` has exited.
fn run_with_closed_stdout(kg: &Kg, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut cmd = kg.bare_command();
    cmd.arg("--database-url")
        .arg(kg.db_url())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn keygate");
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().expect("wait for keygate");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let kg = Kg::new();
    let (token, record) = kg.create("alice", "ci", &[]);
    kg.create("bob", "ci", &[]);
    let id = id_of(&record);
    for args in [
        vec!["keys", "list"],
        vec!["--json", "keys", "list"],
        vec!["keys", "show", &id],
        vec!["verify", &token],
        vec!["--json", "verify", &token],
        vec!["keys", "show", "nonexistent"],
        vec!["--json", "keys", "show", "nonexistent"],
    ] {
        let (status, stderr) = run_with_closed_stdout(&kg, &args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            status.code().is_some(),
            "{args:?}: killed by a signal: {status}"
        );
        let expected = if args.contains(&"nonexistent") { 1 } else { 0 };
        assert_eq!(status.code(), Some(expected), "{args:?}: {stderr}");
    }

    // A new token nobody could see is a failure naming the key to revoke.
    let before = kg.count();
    let (status, stderr) =
        run_with_closed_stdout(&kg, &["keys", "create", "--owner", "carol", "--name", "x"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("keygate keys revoke"), "{stderr}");
    assert_eq!(kg.count(), before + 1);
}

// ---------------------------------------------------------------------------
// Rate limits (SPEC §11)
// ---------------------------------------------------------------------------

#[test]
fn create_takes_rate_limits_and_show_and_list_display_them() {
    let kg = Kg::new();
    let (_, record) = kg.create(
        "alice",
        "limited",
        &[
            "--rate-limit",
            "burst=20/1s",
            "--rate-limit",
            "hourly=1000/1h,shared",
        ],
    );
    let expected = serde_json::json!([
        {"name": "burst", "limit": 20, "period": "1s"},
        {"name": "hourly", "limit": 1000, "period": "1h", "shared": true},
    ]);
    assert_eq!(record["rate_limits"], expected, "{record}");
    let id = id_of(&record);
    let (status, shown) = kg.show(&id);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["rate_limits"], expected);
    let listed = kg.list(&[]);
    assert_eq!(listed[0]["rate_limits"], expected);

    let (_, plain_record) = kg.create("alice", "plain", &[]);
    assert_eq!(plain_record["rate_limits"], serde_json::json!([]));

    // Text: in the syntax of the flag.
    let plain = kg.run(&["keys", "show", &id]);
    assert_eq!(plain.status, 0, "{plain:?}");
    let line = plain
        .stdout
        .lines()
        .find(|l| l.starts_with("rate_limits"))
        .unwrap_or_else(|| panic!("no rate_limits line: {}", plain.stdout));
    assert!(
        line.ends_with("burst=20/1s hourly=1000/1h,shared"),
        "{line:?}"
    );
    let table = kg.run(&["keys", "list"]);
    assert_eq!(table.status, 0, "{table:?}");
    assert!(
        table
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains("RATE LIMITS")
    );
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("no row for {id}: {}", table.stdout));
    assert!(row.contains("burst=20/1s hourly=1000/1h,shared"), "{row:?}");
}

#[test]
fn bad_rate_limit_flags_are_usage_errors_naming_the_flag() {
    let kg = Kg::new();
    for bad in [
        "burst",
        "burst=20",
        "Burst=20/1s",
        "burst=0/1s",
        "burst=20/2d",
        "burst=20/1m",
        "burst=20/1s,private",
    ] {
        kg.assert_usage_error(
            &create_args("alice", "n", &["--rate-limit", bad]),
            "--rate-limit",
        );
    }
    kg.assert_usage_error(
        &create_args(
            "alice",
            "n",
            &["--rate-limit", "a=1/1s", "--rate-limit", "a=2/1h"],
        ),
        "--rate-limit",
    );
    let nine: Vec<String> = (0..9).map(|i| format!("l{i}=1/1s")).collect();
    let mut args = create_args("alice", "n", &[]);
    for limit in &nine {
        args.extend(["--rate-limit", limit.as_str()]);
    }
    kg.assert_usage_error(&args, "--rate-limit");
    // With --json, the same refusal is the JSON error object.
    let (status, body) = kg.run_json(&create_args("alice", "n", &["--rate-limit", "burst=0/1s"]));
    assert_eq!(status, 2, "{body}");
    assert_eq!(body["error"], "bad_usage", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("--rate-limit")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------
// Credits
// ---------------------------------------------------------------------------

#[test]
fn create_takes_credits_and_a_refill_and_show_and_list_display_them() {
    let kg = Kg::new();
    let (_, record) = kg.create(
        "alice",
        "metered",
        &["--credits", "5000", "--refill", "5000/month"],
    );
    let expected =
        serde_json::json!({"remaining": 5000, "refill": {"amount": 5000, "every": "month"}});
    assert_eq!(record["credits"], expected, "{record}");
    let id = id_of(&record);
    let (status, shown) = kg.show(&id);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["credits"], expected);
    assert_eq!(kg.list(&[])[0]["credits"], expected);

    let (_, plain_record) = kg.create("alice", "plain", &[]);
    assert_eq!(plain_record["credits"], Value::Null, "unlimited");
    let (_, once) = kg.create("alice", "once", &["--credits", "0"]);
    assert_eq!(
        once["credits"],
        serde_json::json!({"remaining": 0, "refill": null})
    );

    let plain = kg.run(&["keys", "show", &id]);
    assert_eq!(plain.status, 0, "{plain:?}");
    let line = plain
        .stdout
        .lines()
        .find(|l| l.starts_with("credits"))
        .unwrap_or_else(|| panic!("no credits line: {}", plain.stdout));
    assert!(line.ends_with("5000 refill 5000/month"), "{line:?}");
    let table = kg.run(&["keys", "list"]);
    assert_eq!(table.status, 0, "{table:?}");
    assert!(
        table
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains("CREDITS")
    );
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("no row for {id}: {}", table.stdout));
    assert!(row.contains("5000 refill 5000/month"), "{row:?}");
}

#[test]
fn keys_credits_adds_or_sets_exactly_one() {
    let kg = Kg::new();
    let (_, record) = kg.create("alice", "metered", &["--credits", "10"]);
    let id = id_of(&record);
    let (status, body) = kg.run_json(&["keys", "credits", &id, "--add", "5"]);
    assert_eq!(status, 0, "{body}");
    assert_eq!(body["credits"]["remaining"], 15, "{body}");
    let (status, body) = kg.run_json(&["keys", "credits", &id, "--set", "3"]);
    assert_eq!(status, 0, "{body}");
    assert_eq!(body["credits"]["remaining"], 3, "{body}");
    let (_, shown) = kg.show(&id);
    assert_eq!(shown["credits"]["remaining"], 3);
    let text = kg.run(&["keys", "credits", &id, "--add", "1"]);
    assert_eq!(text.status, 0, "{text:?}");
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("credits") && l.ends_with(" 4")),
        "{}",
        text.stdout
    );

    kg.assert_usage_error(&["keys", "credits", &id], "--add");
    kg.assert_usage_error(
        &["keys", "credits", &id, "--add", "1", "--set", "2"],
        "--set",
    );
    kg.assert_usage_error(&["keys", "credits", &id, "--add", "-1"], "--add");
    kg.assert_usage_error(&["keys", "credits", &id, "--set", "1000000000001"], "--set");

    // Adding to an unlimited key is refused, naming credits; setting gives it a balance.
    let (_, plain) = kg.create("alice", "plain", &[]);
    let plain = id_of(&plain);
    kg.assert_refused(
        &["keys", "credits", &plain, "--add", "1"],
        "bad_request",
        "credits",
    );
    let (status, body) = kg.run_json(&["keys", "credits", &plain, "--set", "2"]);
    assert_eq!(status, 0, "{body}");
    assert_eq!(
        body["credits"],
        serde_json::json!({"remaining": 2, "refill": null})
    );
}

#[test]
fn bad_credit_flags_are_usage_errors_naming_the_flag() {
    let kg = Kg::new();
    let before = kg.count();
    kg.assert_usage_error(
        &create_args("alice", "n", &["--refill", "5/day"]),
        "--credits",
    );
    for bad in ["-1", "x", "1000000000001"] {
        kg.assert_usage_error(&create_args("alice", "n", &["--credits", bad]), "--credits");
    }
    for bad in ["5", "5/hour", "0/day", "x/week", "1000000000001/month"] {
        kg.assert_usage_error(
            &create_args("alice", "n", &["--credits", "5", "--refill", bad]),
            "--refill",
        );
    }
    assert_eq!(kg.count(), before, "nothing created");
}
