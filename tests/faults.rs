//! Faults on the embedded SQLite store, with a real `keygate serve`:
//!
//! - SIGKILL in the middle of 1 000 concurrent creates: every create that
//!   answered 201 is there after a restart, whole, with its audit record;
//!   no key is half-written; the database passes `PRAGMA integrity_check`.
//! - A full disk: creates fail with a clear error (503 `unavailable`, the
//!   cause in the log), reads and authentication go on, nothing answered is
//!   lost, the database is not corrupt, and once there is room again
//!   creates succeed without a restart.
//!
//! The full-disk test mounts a small tmpfs, which needs root (or
//! CAP_SYS_ADMIN). Without it the test says so and passes, unless
//! `KEYGATE_REQUIRE_FAULTS=1` (set by `.ci/run`), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use common::faults::{self, OWNER};
use common::process::{Serve, ServeOptions};

/// `PRAGMA integrity_check` of the SQLite database at `path`, read-only.
fn integrity_check(path: &Path) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::{ConnectOptions as _, Row as _};
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let mut conn = options.connect().await.expect("open the database");
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .expect("PRAGMA integrity_check");
        rows.iter().map(|row| row.get::<String, _>(0)).collect()
    })
}

#[test]
fn kill_9_during_a_thousand_creates_loses_no_answered_key_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();

    let cut = faults::creates_cut_by_kill_9(&mut serve, &admin, 1000, 300);

    let mut again = Serve::start(dir.path(), ServeOptions::new());
    faults::assert_answered_creates_survived(&again, &admin, &cut);
    let stored = faults::all_keys(&again, &admin).len();
    eprintln!(
        "kill -9 on SQLite: {} creates answered 201, {} 503, {} unanswered, {stored} keys after the restart",
        cut.answered.len(),
        cut.refused.len(),
        cut.unanswered
    );
    again.stop();
    assert_eq!(integrity_check(&dir.path().join("keygate.db")), ["ok"]);
}

/// A tmpfs of a given size mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .ok()?;
        if !output.status.success() {
            eprintln!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount to {size}: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Whether the log says the disk is full, in SQLite's words or the
/// system's (which one depends on the write that hit the limit).
fn names_the_cause(log: &str) -> bool {
    [
        "database or disk is full",
        "disk I/O error",
        "No space left on device",
    ]
    .iter()
    .any(|cause| log.contains(cause))
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_corrupt_database_on_sqlite() {
    let Some(disk) = Tmpfs::mount("1m") else {
        assert!(
            std::env::var_os("KEYGATE_REQUIRE_FAULTS").is_none(),
            "KEYGATE_REQUIRE_FAULTS is set but a tmpfs cannot be mounted (run as root)"
        );
        eprintln!("skipped: the full-disk test needs root to mount a tmpfs");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let database: PathBuf = disk.path().join("keygate.db");
    let url = format!("sqlite://{}", database.display());
    let options = || ServeOptions::new().args(["--database-url", url.as_str()]);
    let mut serve = Serve::start(work.path(), options());
    let admin = serve.bootstrap_token();

    // Fill the disk with creates: each writes a key and its audit record.
    let mut answered = Vec::new();
    let refusal = loop {
        assert!(answered.len() < 20_000, "1 MiB never filled up");
        let body = json!({
            "owner": OWNER,
            "name": format!("k{:04}", answered.len()),
            "scopes": ["items:read", "items:write"],
            "metadata": {"n": answered.len(), "pad": "x".repeat(200)},
        });
        let response = serve.call("POST", "/v1/keys", &admin, &body.to_string());
        if response.status != 201 {
            break response;
        }
        let json = response.json();
        answered.push((
            json["key"].as_str().unwrap().to_owned(),
            json["api_key"].clone(),
        ));
    };
    assert!(!answered.is_empty(), "the disk was full before any create");
    assert_eq!(refusal.status, 503, "{refusal:?}");
    assert_eq!(refusal.json()["error"], "unavailable", "{refusal:?}");
    assert_eq!(refusal.header("retry-after"), Some("1"), "{refusal:?}");
    // The log line may reach the pipe's reader a moment after the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = serve.stderr();
        if names_the_cause(&log) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        names_the_cause(&log),
        "the log does not name the cause:\n{log}"
    );
    assert!(!log.contains(&admin), "the log holds a token");

    // Reads and authentication go on while the disk is full.
    let (token, record) = &answered[0];
    let shown = serve.call(
        "GET",
        &format!("/v1/keys/{}", record["id"].as_str().unwrap()),
        &admin,
        "",
    );
    assert_eq!(shown.status, 200, "{shown:?}");
    let check = serve.call(
        "POST",
        "/v1/verify",
        &admin,
        &json!({"key": token}).to_string(),
    );
    assert_eq!(check.json()["valid"], true, "{check:?}");

    // Room again: the next create succeeds, with no restart.
    disk.resize("16m");
    let body = json!({"owner": OWNER, "name": "after", "scopes": ["items:read"]});
    let after = serve.call("POST", "/v1/keys", &admin, &body.to_string());
    assert_eq!(
        after.status,
        201,
        "no recovery once the disk has room: {after:?}\n{}",
        serve.stderr()
    );

    serve.stop();
    assert_eq!(integrity_check(&database), ["ok"]);
    let again = Serve::start(work.path(), options());
    let keys = faults::all_keys(&again, &admin);
    for (_, record) in &answered {
        let id = record["id"].as_str().unwrap();
        let mut stored = keys
            .get(id)
            .unwrap_or_else(|| panic!("key {id} answered 201 and is gone"))
            .clone();
        // The verification above was recorded as a use; nothing else changed.
        stored["last_used_at"] = record["last_used_at"].clone();
        stored["last_used_ip"] = record["last_used_ip"].clone();
        assert_eq!(&stored, record, "key {id} changed");
    }
    eprintln!(
        "full disk: {} creates fitted in 1 MiB, then 503; {} keys after the restart",
        answered.len(),
        keys.len()
    );
}
