//! `keygate serve --config FILE`, `keygate completions` and `keygate man`:
//! every `serve` flag is a key of the file; over a real server process, a
//! flag beats the environment, which beats the file, which beats the
//! default; bad files are refused before anything is created; the shipped
//! `contrib/keygate.toml` loads; completions and man pages are generated.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory as _;
use clap::parser::ValueSource;
use common::{Serve, ServeOptions, free_port, run_keygate, run_keygate_env};
use keygate::cli::{Cli, config_keys, matches_from};

/// A value for every key of the file, different from its default, and the
/// command-line values it stands for. A `serve` flag added without a line
/// here fails `every_serve_flag_is_a_key_of_the_config_file`: add one (and
/// the key to `contrib/keygate.toml`).
const SAMPLES: &[(&str, &str, &[&str])] = &[
    (
        "database-url",
        "\"sqlite://other.db\"",
        &["sqlite://other.db"],
    ),
    ("listen", "\"127.0.0.1:9999\"", &["127.0.0.1:9999"]),
    (
        "upstream",
        "\"http://127.0.0.1:3000\"",
        &["http://127.0.0.1:3000"],
    ),
    ("proxy-listen", "\"127.0.0.1:9998\"", &["127.0.0.1:9998"]),
    (
        "rules",
        "\"/etc/keygate/rules.toml\"",
        &["/etc/keygate/rules.toml"],
    ),
    ("forward-auth", "\"nginx\"", &["nginx"]),
    (
        "trusted-proxy",
        "[\"10.0.0.0/8\", \"fd00::/8\"]",
        &["10.0.0.0/8", "fd00::/8"],
    ),
    ("log-format", "\"json\"", &["json"]),
    ("header-timeout", "\"5s\"", &["5s"]),
    ("idle-timeout", "\"2min\"", &["2min"]),
    ("max-connections", "64", &["64"]),
    (
        "redis-url",
        "\"redis://127.0.0.1:6379/3\"",
        &["redis://127.0.0.1:6379/3"],
    ),
    ("limits-fail-closed", "true", &["true"]),
    // Flags of the operations and gRPC work, merged separately: harmless
    // until the flag exists.
    ("grpc-listen", "\"127.0.0.1:9090\"", &["127.0.0.1:9090"]),
    ("audit-retention", "\"90d\"", &["90d"]),
    ("metrics-public", "true", &["true"]),
    (
        "github-keys",
        "\"/etc/keygate/github-keys.json\"",
        &["/etc/keygate/github-keys.json"],
    ),
];

/// `contrib/keygate.toml`.
fn example_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/keygate.toml")
}

/// The long names of the `serve` subcommand's own arguments, from clap's
/// definition (so that a flag added later is listed), and `database-url`.
fn serve_flags() -> Vec<(String, String)> {
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve subcommand");
    let mut flags = vec![("database-url".to_owned(), "database_url".to_owned())];
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if ["config", "help", "version"].contains(&id) || arg.is_global_set() {
            continue;
        }
        let long = arg.get_long().expect("every serve argument is a --flag");
        flags.push((long.to_owned(), id.to_owned()));
    }
    flags
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_serve_flag_is_a_key_of_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let flags = serve_flags();
    assert!(flags.len() >= 13, "{flags:?}");
    let mut keys = config_keys();
    keys.sort();
    let mut expected: Vec<String> = flags.iter().map(|(long, _)| long.clone()).collect();
    expected.sort();
    assert_eq!(keys, expected);
    for (long, id) in &flags {
        let Some((_, literal, raw)) = SAMPLES.iter().find(|(key, _, _)| key == long) else {
            panic!("serve flag --{long} has no sample value in tests/config.rs SAMPLES: add one");
        };
        let file = write(dir.path(), "one.toml", &format!("{long} = {literal}\n"));
        let matches = matches_from(["keygate", "serve", "--config", file.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{long} = {literal} refused: {e}"));
        let level = if id == "database_url" {
            &matches
        } else {
            matches.subcommand_matches("serve").unwrap()
        };
        let got: Vec<String> = level
            .get_raw(id)
            .unwrap_or_else(|| panic!("{long}: no value"))
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, raw.to_vec(), "{long}");
        assert_eq!(
            level.value_source(id),
            Some(ValueSource::DefaultValue),
            "{long}"
        );
        // And the typed command line builds from it.
        keygate::cli::parse_from(["keygate", "serve", "--config", file.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{long}: {e}"));
    }
}

#[test]
fn the_example_file_names_every_key_and_loads_as_shipped_and_uncommented() {
    let text = std::fs::read_to_string(example_file()).expect("contrib/keygate.toml");
    for key in config_keys() {
        let prefix = format!("# {key} = ");
        assert!(
            text.lines().any(|line| line.starts_with(&prefix)),
            "contrib/keygate.toml does not show `{prefix}…`"
        );
    }
    let shipped = example_file();
    keygate::cli::parse_from(["keygate", "serve", "--config", shipped.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("contrib/keygate.toml as shipped: {e}"));
    // Every `# key = value` line made live: still a valid file.
    let keys = config_keys();
    let live: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(&format!("{k} = "))) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "live.toml", &live);
    let matches = matches_from(["keygate", "serve", "--config", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("contrib/keygate.toml uncommented: {e}"));
    let serve = matches.subcommand_matches("serve").unwrap();
    for (long, id) in serve_flags().iter().skip(1) {
        assert_eq!(
            serve.value_source(id),
            Some(ValueSource::DefaultValue),
            "{long}"
        );
    }
}

/// Whether `keygate serve` answers `/healthz` on `addr`.
fn answers(addr: SocketAddr) -> bool {
    common::http::try_request(addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
}

fn loopback() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

#[test]
fn serve_reads_the_file_and_flag_beats_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) = (loopback(), loopback(), loopback());
    let config = write(
        dir.path(),
        "keygate.toml",
        &format!(
            "# the server of this test\nlisten = \"{from_file}\"\ndatabase-url = \"sqlite://from-file.db\"\nlog-format = \"json\"\nmax-connections = 16\n"
        ),
    );
    let config = config.to_str().unwrap();

    // The file alone: its address, its database, JSON logs.
    let mut serve = Serve::start(
        dir.path(),
        ServeOptions::new()
            .args(["--config", config])
            .expect_at(from_file),
    );
    assert!(dir.path().join("from-file.db").exists());
    assert!(!dir.path().join("keygate.db").exists());
    serve.stop();
    let first_line = serve.stderr().lines().next().unwrap_or_default().to_owned();
    assert!(first_line.starts_with('{'), "not JSON logs: {first_line}");

    // KEYGATE_CONFIG names the file too; the environment wins over it.
    let mut serve = Serve::start(
        dir.path(),
        ServeOptions::new()
            .env("KEYGATE_CONFIG", config)
            .env("KEYGATE_LISTEN", &from_env.to_string()),
    );
    assert!(!answers(from_file));
    serve.stop();

    // A flag wins over both.
    let mut serve = Serve::start(
        dir.path(),
        ServeOptions::new()
            .env("KEYGATE_CONFIG", config)
            .env("KEYGATE_LISTEN", &from_env.to_string())
            .args(["--listen", &from_flag.to_string()])
            .expect_at(from_flag),
    );
    assert!(!answers(from_env) && !answers(from_file));
    serve.stop();
}

#[test]
fn a_bad_file_stops_serve_before_anything_is_created_and_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2-s3cret";
    for (name, text, says) in [
        (
            "unknown.toml",
            format!("redis-url = \"redis://:{secret}@127.0.0.1:1\"\nlisten-address = \"x\"\n"),
            "unknown.toml: unknown key `listen-address`",
        ),
        (
            "value.toml",
            format!("database-url = \"postgres://u:{secret}@db/k\"\nidle-timeout = \"5m\"\n"),
            "value.toml: key `idle-timeout`: \"m\" is ambiguous",
        ),
        (
            "type.toml",
            format!("redis-url = \"redis://:{secret}@h\"\nmax-connections = \"many\"\n"),
            "type.toml: key `max-connections`: invalid digit",
        ),
        (
            "syntax.toml",
            format!("redis-url = \"redis://:{secret}@h\nlisten = \"127.0.0.1:1\"\n"),
            "syntax.toml: not a valid TOML file at line 1",
        ),
        (
            "pepper.toml",
            format!("pepper = \"{secret}\"\n"),
            "pepper.toml: unknown key `pepper`",
        ),
    ] {
        let file = write(dir.path(), name, &text);
        let run = run_keygate(dir.path(), &["serve", "--config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(!stderr.contains(secret), "{name}: {stderr}");
        assert!(run.stdout.is_empty(), "{name}");
        assert!(
            !dir.path().join("keygate.db").exists(),
            "{name}: a database was created"
        );
        // The same refusal with --json: the JSON error object on stdout.
        let run = run_keygate(
            dir.path(),
            &["--json", "serve", "--config", file.to_str().unwrap()],
        );
        let body: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(body["error"], "bad_usage", "{name}");
        assert!(!body.to_string().contains(secret), "{name}");
    }
    // A file that does not exist.
    let run = run_keygate_env(
        dir.path(),
        &[("KEYGATE_CONFIG", "missing.toml")],
        &["serve"],
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("cannot read the configuration file missing.toml")
    );
}

fn stdout_of(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let run = run_keygate(dir.path(), args);
    assert!(run.status.success(), "{args:?}: {run:?}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "{args:?} created a file"
    );
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn completions_name_the_commands_and_flags_and_bash_parses_them() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 2000, "{shell}: {} bytes", script.len());
        for word in [
            "keygate",
            "rotate",
            "update",
            "api-url",
            "config",
            "trusted-proxy",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bash = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "keygate.bash", &bash);
    let status = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("bash");
    assert!(status.success(), "bash -n refused the completion script");
    // Loaded into a shell, it completes `keygate keys up` to `update`.
    let probe = format!(
        "source {}; COMP_WORDS=(keygate keys up); COMP_CWORD=2; _keygate keygate up keys; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash")
        .args(["-c", &probe])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "update",
        "{out:?}"
    );
    let bad = run_keygate(dir.path(), &["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_man_page_names_every_command_and_renders() {
    let page = stdout_of(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH keygate 1"),
        "{page:.200}"
    );
    for word in [
        "keygate",
        "serve",
        "keys",
        "verify",
        "completions",
        "api\\-url",
        "database\\-url",
    ] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    // One page per command with --out.
    let dir = tempfile::tempdir().unwrap();
    // The directory is created when missing.
    let out = dir.path().join("share/man/man1");
    let run = run_keygate(dir.path(), &["man", "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{run:?}");
    for page in [
        "keygate.1",
        "keygate-serve.1",
        "keygate-keys-update.1",
        "keygate-keys-create.1",
    ] {
        let text =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let serve = std::fs::read_to_string(out.join("keygate-serve.1")).unwrap();
    assert!(serve.contains("\\-\\-config") && serve.contains("max\\-connections"));
    // Rendered by groff when it is installed, UTF-8 input through preconv
    // (-k), as man-db's `man -l` does.
    if let Ok(render) = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .arg(out.join("keygate-serve.1"))
        .output()
    {
        assert!(render.status.success(), "groff: {render:?}");
        assert!(
            String::from_utf8_lossy(&render.stderr).trim().is_empty(),
            "groff warned: {}",
            String::from_utf8_lossy(&render.stderr)
        );
    }
}

#[test]
fn the_configuration_files_of_the_operations_guide_load() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
    let text = std::fs::read_to_string(guide).expect("docs/operations.md");
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect();
    assert!(!blocks.is_empty(), "no TOML block in docs/operations.md");
    let dir = tempfile::tempdir().unwrap();
    for block in blocks {
        let file = write(dir.path(), "guide.toml", block);
        let cli =
            keygate::cli::parse_from(["keygate", "serve", "--config", file.to_str().unwrap()])
                .unwrap_or_else(|e| panic!("docs/operations.md:\n{block}\n{e}"));
        let keygate::cli::Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        if block.contains("listen = \"0.0.0.0:8080\"") {
            assert_eq!(args.listen, "0.0.0.0:8080");
            assert_eq!(args.trusted_proxies.len(), 2);
            assert!(args.limits_fail_closed);
            assert_eq!(cli.database_url, "postgres://keygate@db.internal/keygate");
        }
    }
}
