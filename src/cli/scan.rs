//! `keygate scan`: leaked keys in files or git history, each checked
//! against the database when there is one (and with `--revoke` revoked),
//! reported as text, JSON or SARIF 2.1.0 — by display prefix, never whole.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::args::ScanArgs;
use super::database::{self, Create};
use super::output::{note, out};
use crate::keygate::Keygate;
use crate::keys::Leaked;
use crate::scan::{Finding, ScanStats, Scanner};
use crate::token::TokenFormat;

/// The SARIF rule of every finding.
const RULE_ID: &str = "keygate/leaked-key";

/// How a scan ended, for the exit status.
pub(crate) enum Outcome {
    /// Nothing found, everything read: 0.
    Clean,
    /// Tokens found: 1.
    Found,
    /// Nothing found, but something could not be read: 2.
    Incomplete,
}

/// What the database says of a token found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// No database to ask.
    Unchecked,
    /// None of the database's keys.
    Unknown,
    /// A live key.
    Live,
    /// A live key, revoked by this scan.
    RevokedNow,
    /// A key revoked before.
    Revoked,
    /// A key past its expiry.
    Expired,
}

impl Liveness {
    fn as_str(self) -> &'static str {
        match self {
            Liveness::Unchecked => "unchecked",
            Liveness::Unknown => "unknown",
            Liveness::Live => "live",
            Liveness::RevokedNow => "revoked_now",
            Liveness::Revoked => "revoked",
            Liveness::Expired => "expired",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Liveness::Unchecked => "not checked: no database",
            Liveness::Unknown => "not a key of this database",
            Liveness::Live => "LIVE key",
            Liveness::RevokedNow => "live key, revoked now",
            Liveness::Revoked => "revoked key",
            Liveness::Expired => "expired key",
        }
    }
}

/// Runs `keygate scan`.
pub(crate) async fn scan(
    database_url: &str,
    args: ScanArgs,
    json: bool,
) -> Result<Outcome, String> {
    let format = TokenFormat::new(&args.prefix)
        .map_err(|_| "--prefix: 1 to 16 characters of a-z and 0-9".to_owned())?;
    let output = if json { "json" } else { args.format.as_str() };
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    // With --revoke the database is needed before anything is read.
    let gate = match open(database_url, &format).await {
        Ok(gate) => Some(gate),
        Err(e) if args.revoke => return Err(format!("--revoke needs the database: {e}")),
        Err(_) => None,
    };

    let scanner = Scanner::new(format);
    let mut findings: Vec<Finding> = Vec::new();
    let mut stats = ScanStats::default();
    for path in &paths {
        let more = if args.git {
            scanner.scan_git(path, |f| findings.push(f))
        } else {
            scanner.scan_paths([path], |f| findings.push(f))
        }
        .map_err(|e| e.to_string())?;
        stats.add(more);
    }

    let mut judged: HashMap<String, Liveness> = HashMap::new();
    let mut liveness = Vec::with_capacity(findings.len());
    for finding in &findings {
        let token = finding.token().expose();
        let state = match (judged.get(token), &gate) {
            (Some(state), _) => *state,
            (None, None) => Liveness::Unchecked,
            (None, Some(gate)) => {
                let state = judge(gate, finding, &args).await?;
                judged.insert(token.to_owned(), state);
                state
            }
        };
        liveness.push(state);
    }

    match output {
        "json" => out(json_report(&findings, &liveness, &stats)).map_err(|e| e.to_string())?,
        "sarif" => out(sarif_report(&findings, &liveness)).map_err(|e| e.to_string())?,
        _ => {
            for (finding, state) in findings.iter().zip(&liveness) {
                out(format_args!(
                    "{}: {} ({})",
                    finding.location,
                    finding.display_prefix(),
                    state.describe()
                ))
                .map_err(|e| e.to_string())?;
            }
        }
    }
    for (path, error) in &stats.unreadable {
        note(format_args!("warning: not scanned: {path}: {error}"));
    }
    if gate.is_none() && !findings.is_empty() {
        note("note: no database reachable (see --database-url): the keys found were not checked");
    }
    note(format_args!(
        "{} found in {} {} ({} bytes{}{})",
        plural(findings.len() as u64, "token"),
        stats.files,
        if args.git { "blobs" } else { "files" },
        stats.bytes,
        if stats.binary > 0 {
            format!(", {} binary skipped", stats.binary)
        } else {
            String::new()
        },
        if args.git {
            format!(", {}", plural(stats.commits, "commit"))
        } else {
            String::new()
        },
    ));
    Ok(if !findings.is_empty() {
        Outcome::Found
    } else if !stats.unreadable.is_empty() {
        Outcome::Incomplete
    } else {
        Outcome::Clean
    })
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The database, opened without creating it, with the scanned prefix.
async fn open(url: &str, format: &TokenFormat) -> Result<Keygate, String> {
    let opened = database::open(url, Create::Never)
        .await
        .map_err(|e| e.to_string())?;
    Keygate::builder(opened.store)
        .pepper(opened.pepper)
        .prefix(format.prefix())
        .audit_actor(super::audit::cli_actor())
        .change_feed(None)
        .usage_flush_interval(None)
        .build()
        .map_err(|e| e.to_string())
}

/// The state of a finding's key; with `--revoke`, revoked if live.
async fn judge(gate: &Keygate, finding: &Finding, args: &ScanArgs) -> Result<Liveness, String> {
    let token = finding.token().expose();
    let failed = |e: crate::keys::KeyError| format!("cannot check the keys found: {e}");
    if args.revoke {
        let reason = match &args.reason {
            Some(reason) => reason.clone(),
            None => format!("leaked: found by keygate scan at {}", finding.location),
        };
        return Ok(
            match gate
                .keys()
                .revoke_leaked(token, &reason)
                .await
                .map_err(failed)?
            {
                Leaked::Revoked(_) => Liveness::RevokedNow,
                Leaked::AlreadyRevoked(_) => Liveness::Revoked,
                Leaked::Expired(_) => Liveness::Expired,
                _ => Liveness::Unknown,
            },
        );
    }
    let key = gate.keys().find_token(token).await.map_err(failed)?;
    Ok(match key.map(|k| k.status_at(crate::key::now())) {
        None => Liveness::Unknown,
        Some(crate::key::KeyStatus::Active) => Liveness::Live,
        Some(crate::key::KeyStatus::Revoked) => Liveness::Revoked,
        Some(crate::key::KeyStatus::Expired) => Liveness::Expired,
    })
}

fn json_report(findings: &[Finding], liveness: &[Liveness], stats: &ScanStats) -> Value {
    let findings: Vec<Value> = findings
        .iter()
        .zip(liveness)
        .map(|(f, state)| {
            json!({
                "path": f.location.path,
                "commit": f.location.commit,
                "line": f.location.line,
                "column": f.location.column,
                "display_prefix": f.display_prefix(),
                "key_id": f.key_id(),
                "environment": f.environment(),
                "status": state.as_str(),
            })
        })
        .collect();
    let unreadable: Vec<Value> = stats
        .unreadable
        .iter()
        .map(|(path, error)| json!({"path": path, "error": error}))
        .collect();
    json!({
        "findings": findings,
        "files": stats.files,
        "bytes": stats.bytes,
        "binary_skipped": stats.binary,
        "commits": stats.commits,
        "unreadable": unreadable,
    })
}

/// A relative URI reference for a path: every byte but unreserved ones
/// and `/` percent-encoded.
fn uri(path: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(path, KEEP).to_string()
}

/// SARIF 2.1.0 as GitHub code scanning reads it: one rule, one result per
/// finding with a relative URI, start line and column, and a partial
/// fingerprint made of the key id and the path (never of the secret).
fn sarif_report(findings: &[Finding], liveness: &[Liveness]) -> Value {
    let results: Vec<Value> = findings
        .iter()
        .zip(liveness)
        .map(|(f, state)| {
            let mut message = format!(
                "keygate API key {} ({}) in the source",
                f.display_prefix(),
                state.describe()
            );
            if let Some(commit) = &f.location.commit {
                message.push_str(&format!(" history, commit {commit}"));
            }
            message.push_str(". Revoke it (keygate keys revoke) and remove it.");
            let fingerprint = hex::encode(Sha256::digest(format!(
                "keygate-scan:v1:{}:{}",
                f.key_id(),
                f.location.path
            )));
            json!({
                "ruleId": RULE_ID,
                "ruleIndex": 0,
                "level": "error",
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.location.path)},
                        "region": {
                            "startLine": f.location.line,
                            "startColumn": f.location.column,
                            "endLine": f.location.line,
                            "endColumn": f.location.column + f.token().expose().len() as u64,
                        }
                    }
                }],
                "partialFingerprints": {"keygateKeyLocation/v1": fingerprint},
                "properties": {
                    "displayPrefix": f.display_prefix(),
                    "status": state.as_str(),
                    "commit": f.location.commit,
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keygate",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": [{
                    "id": RULE_ID,
                    "name": "LeakedKeygateKey",
                    "shortDescription": {"text": "A keygate API key in the source"},
                    "fullDescription": {"text": "A token of this keygate deployment's format, with a valid checksum, is written in a file or in the git history. Anyone who reads it can use the key."},
                    "help": {
                        "text": "Revoke the key (keygate keys revoke ID, or keygate scan --revoke), then remove the token from the file and its history. Keep keys in a secret store, not in the code.",
                    },
                    "defaultConfiguration": {"level": "error"},
                    "properties": {"tags": ["security", "secret"], "security-severity": "9.0"},
                }],
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn paths_become_relative_uris() {
        assert_eq!(uri("src/main.rs"), "src/main.rs");
        assert_eq!(uri("a dir/é#1.txt"), "a%20dir/%C3%A9%231.txt");
    }
}
