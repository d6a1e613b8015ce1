//! `keygate audit` (the audit log read from the database), the actor the
//! CLI is recorded as (`{"cli": "<os user>"}`), and `serve
//! --audit-retention` (a background task deleting older records).

use std::time::Duration as StdDuration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::args::AuditArgs;
use super::output::out;
use crate::audit::{Actor, AuditAction, AuditQuery, AuditRecord};
use crate::keygate::Keygate;
use crate::keys::parse_duration;
use crate::store::MAX_PAGE_SIZE;
use crate::token::KeyId;

/// The operating-system user running this process: the name of the real
/// user id in `/etc/passwd` where there is one, else `$USER` / `$LOGNAME`
/// / `$USERNAME`, else `unknown`.
pub(crate) fn os_user() -> String {
    passwd_name()
        .or_else(|| {
            ["USER", "LOGNAME", "USERNAME"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn passwd_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// Why `keygate audit` failed; the command line turns it into its exit
/// status and message.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage (exit status 2).
    Usage(String),
    /// A refusal (exit status 1) with its error code.
    Refused(&'static str, String),
    /// Writing to stdout failed.
    Io(std::io::Error),
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }

    fn refused(code: &'static str, message: impl Into<String>) -> Failure {
        Failure::Refused(code, message.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// The actor of every change the command line makes.
pub(crate) fn cli_actor() -> Actor {
    Actor::cli(os_user())
}

/// A `--since` / `--until` value: an RFC 3339 time, or a duration back
/// from now (`90min`, `24h`, `7d`, `1mo`).
fn moment(flag: &str, text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, Failure> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let ago = parse_duration(text).map_err(|e| {
        Failure::usage(format!(
            "{flag}: expected an RFC 3339 time or a duration back from now (e.g. 24h): {e}"
        ))
    })?;
    now.checked_sub(ago)
        .ok_or_else(|| Failure::usage(format!("{flag}: too far back")))
}

/// `keygate audit …`: one page of the log, newest first.
pub(crate) async fn audit(
    gate: &Keygate,
    args: AuditArgs,
    key: Option<KeyId>,
    json: bool,
) -> Result<(), Failure> {
    let now = OffsetDateTime::now_utc();
    let query = AuditQuery {
        owner: args.owner,
        key_id: key,
        action: args
            .action
            .as_deref()
            .map(str::parse::<AuditAction>)
            .transpose()
            .map_err(|e| Failure::usage(format!("--action: {e}")))?,
        since: args
            .since
            .as_deref()
            .map(|t| moment("--since", t, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| moment("--until", t, now))
            .transpose()?,
        limit: args.limit.min(MAX_PAGE_SIZE),
        cursor: None,
    };
    let store = gate.store();
    let log = store
        .audit_log()
        .ok_or_else(|| Failure::refused("bad_request", "this database keeps no audit log"))?;
    let page = log
        .audit_records(&query)
        .await
        .map_err(|e| Failure::refused("unavailable", format!("cannot read the audit log: {e}")))?;
    if json {
        out(json!({
            "records": page.records,
            "next_cursor": page.next_cursor.map(|c| c.to_string()),
        }))?;
        return Ok(());
    }
    for record in &page.records {
        out(line(record))?;
    }
    Ok(())
}

/// One record as a line of text: time, action, target, actor, the fields
/// changed, the client and the request id.
fn line(record: &AuditRecord) -> String {
    let at = record.at.format(&Rfc3339).unwrap_or_default();
    let actor = match &record.actor {
        Actor::Key { key_id, owner } => format!("key {key_id} ({owner})"),
        Actor::Cli { cli } => format!("cli {cli}"),
        Actor::Operator { operator } => format!("operator {operator}"),
    };
    let fields: Vec<&str> = record.changes.keys().map(String::as_str).collect();
    let mut text = format!(
        "{at} {} {} ({}) by {actor}",
        record.action, record.target.key_id, record.target.owner
    );
    if !fields.is_empty() {
        text.push_str(&format!(" changed {}", fields.join(",")));
    }
    if let Some(ip) = record.client_ip {
        text.push_str(&format!(" from {ip}"));
    }
    if let Some(id) = &record.request_id {
        text.push_str(&format!(" request {id}"));
    }
    text
}

/// `--audit-retention`: `None` to keep every record (`never`, the
/// default), else how long records are kept.
pub(crate) fn retention(text: Option<&str>) -> Result<Option<StdDuration>, String> {
    let Some(text) = text.map(str::trim) else {
        return Ok(None);
    };
    if text == "never" {
        return Ok(None);
    }
    let span = parse_duration(text).map_err(|e| format!("--audit-retention: {e}"))?;
    match StdDuration::try_from(span) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        _ => {
            Err("--audit-retention: must be longer than 0 (or never, to keep every record)".into())
        }
    }
}

/// Deletes the records older than `retention` now, then again every
/// `retention / 2` (at least every second, at most every hour), until the
/// process ends. A failed run is warned about and retried at the next.
pub(crate) fn spawn_retention(keygate: Keygate, retention: StdDuration) {
    let every = (retention / 2).clamp(StdDuration::from_secs(1), StdDuration::from_secs(3600));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(log) = keygate.store().audit_log() else {
                return;
            };
            let cutoff = OffsetDateTime::now_utc() - retention;
            match log.prune_audit(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "audit records past the retention deleted"),
                Err(error) => {
                    tracing::warn!(error = %error.with_causes(), "could not delete old audit records")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_a_positive_duration_or_never() {
        assert_eq!(retention(None), Ok(None));
        assert_eq!(retention(Some("never")), Ok(None));
        assert_eq!(
            retention(Some("90d")),
            Ok(Some(StdDuration::from_secs(90 * 86_400)))
        );
        for bad in ["0", "0s", "5m", "soon", "-1d"] {
            assert!(retention(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn since_reads_times_and_durations_back() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            moment("--since", "24h", now).ok(),
            Some(now - time::Duration::hours(24))
        );
        assert_eq!(
            moment("--since", "2026-12-04T00:00:00Z", now)
                .ok()
                .map(|t| t.unix_timestamp()),
            Some(1_796_342_400)
        );
        assert!(moment("--since", "yesterday", now).is_err());
    }

    #[test]
    fn the_os_user_is_never_empty() {
        assert!(!os_user().is_empty());
    }
}
