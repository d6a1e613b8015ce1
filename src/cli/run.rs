//! Carrying out a parsed command line.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::args::{Cli, Command, CreateArgs, KeysCommand};
use super::database::{self, Create, SetupError};
use super::output::{bootstrap, note, out};
use crate::credits::{CreditChange, Credits};
use crate::key::ApiKey;
use crate::keygate::Keygate;
use crate::keys::{CreatedKey, KeyError, NewKey, parse_duration};
use crate::limit::RateLimits;
use crate::scope::Requirement;
use crate::store::ListQuery;
use crate::token::{Environment, KeyId};
use crate::verify::{Origin, Rejection};

/// The reminder printed on stderr next to a new token.
const SHOWN_ONCE: &str = "Store this key now: it will not be shown again.";

/// A failed command: its exit status and what to say.
struct Failure {
    status: u8,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl Failure {
    fn refused(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status: 1,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            status: 2,
            code: "bad_usage",
            message: message.into(),
            field: None,
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Failure {
        let message = match &e {
            KeyError::Store(inner) => format!("{e}: {}", error_chain(inner)),
            _ => e.to_string(),
        };
        Failure {
            status: 1,
            code: e.code(),
            field: e.field(),
            message,
        }
    }
}

impl From<super::audit::Failure> for Failure {
    fn from(e: super::audit::Failure) -> Failure {
        match e {
            super::audit::Failure::Usage(message) => Failure::usage(message),
            super::audit::Failure::Refused(code, message) => Failure::refused(code, message),
            super::audit::Failure::Io(e) => Failure::from(e),
        }
    }
}

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Failure {
        let status = if matches!(e, SetupError::UnsupportedUrl) {
            2
        } else {
            1
        };
        let code = match e {
            SetupError::Missing(_) => "not_found",
            _ => "unavailable",
        };
        Failure {
            status,
            code,
            message: error_chain(&e),
            field: None,
        }
    }
}

/// A write to stdout that failed. A closed pipe (`keygate keys list |
/// head -1`) ends the command quietly with status 0, as the reader asked
/// for no more; any other write error is reported with status 1. (A new
/// token that cannot be printed is a failure: see `print_created`.)
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure::refused("closed", String::new()).with_status(0);
        }
        Failure::refused("unavailable", format!("cannot write to stdout: {e}"))
    }
}

impl Failure {
    fn with_status(mut self, status: u8) -> Failure {
        self.status = status;
        self
    }
}

/// `error: cause: cause`, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sets up logging on stderr: `RUST_LOG`, else `info` for `serve` and
/// `warn` for the other commands; JSON lines with `serve --log-format json`.
fn init_logging(cli: &Cli) {
    let (default, json) = match &cli.command {
        Command::Serve(args) => ("info", args.log_format == "json"),
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the command line and returns the process exit status.
pub async fn run(cli: Cli) -> ExitCode {
    init_logging(&cli);
    let json = cli.json;
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.message.is_empty() => ExitCode::from(f.status),
        Err(f) => {
            if json {
                let mut body = json!({"error": f.code, "message": f.message});
                if let Some(field) = f.field {
                    body["field"] = json!(field);
                }
                let _ = out(body);
            } else {
                note(format_args!("error: {}", f.message));
            }
            ExitCode::from(f.status)
        }
    }
}

/// Reports a command line clap refused. With `--json` anywhere among the
/// arguments, a usage error is the JSON error object of every other
/// failure (`{"error": "bad_usage", "message": …}` on stdout); otherwise,
/// and for `--help` and `--version`, clap prints as usual. Exit status 2
/// for usage errors, 0 for help and version.
pub fn usage_error(error: &clap::Error) -> ExitCode {
    let json = std::env::args_os().skip(1).any(|arg| arg == "--json");
    let status = ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    if !error.use_stderr() {
        // Help or version: clap's own rendering.
        let _ = error.print();
        return status;
    }
    // clap may quote an argument (`unexpected argument '…'`): never a token.
    let text = redact_tokens(&error.render().to_string());
    if !json {
        let _ = write!(std::io::stderr().lock(), "{text}");
        return status;
    }
    // The error and its details, up to the usage lines that follow.
    let message = text
        .lines()
        .take_while(|line| !line.trim().is_empty() && !line.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let _ = out(json!({"error": "bad_usage", "message": message}));
    ExitCode::from(2)
}

/// `text` with every command-line argument that holds a token — or
/// anything shaped like one: a mistyped token is nearly a secret too —
/// replaced by what may be shown (`kg_live_<id>[redacted]`).
fn redact_tokens(text: &str) -> String {
    let mut text = text.to_owned();
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        for word in arg.split(|c: char| c == '=' || c.is_whitespace()) {
            if let Some(shown) = token_like(word)
                && text.contains(word)
            {
                text = text.replace(word, &format!("{shown}[redacted]"));
            }
        }
    }
    text
}

/// For a word shaped like a token (`prefix_env_` and more than an id of
/// alphanumerics after it), the part that may be shown: up to the id.
fn token_like(word: &str) -> Option<&str> {
    let mut parts = word.splitn(3, '_');
    let (prefix, env, body) = (parts.next()?, parts.next()?, parts.next()?);
    let shaped = crate::token::TokenFormat::new(prefix).is_ok()
        && env.parse::<Environment>().is_ok()
        && body.len() > 16
        && body.bytes().all(|b| b.is_ascii_alphanumeric());
    shaped.then(|| &word[..prefix.len() + env.len() + 2 + 16])
}

async fn keygate(url: &str, create: Create) -> Result<Keygate, Failure> {
    let opened = database::open(url, create).await?;
    Keygate::builder(opened.store)
        .pepper(opened.pepper)
        .audit_actor(super::audit::cli_actor())
        // A one-shot command caches nothing worth keeping fresh: no
        // listener or poller connection for changes made elsewhere.
        .change_feed(None)
        .build()
        .map_err(|e| Failure::refused("bad_request", e.to_string()))
}

/// The key a command names: its id, its display prefix (`kg_live_<id>`) or
/// a whole token (checked by the token parser, checksum included; only its
/// id is used). The text is never repeated in a message: it may be a token.
fn key_id(gate: &Keygate, text: &str) -> Result<KeyId, Failure> {
    let format = gate.token_format();
    if let Ok(id) = KeyId::parse(text) {
        return Ok(id);
    }
    if let Ok(token) = format.parse(text) {
        return Ok(token.id());
    }
    let display = text
        .strip_prefix(format.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.split_once('_'))
        .filter(|(env, _)| env.parse::<Environment>().is_ok())
        .and_then(|(_, id)| KeyId::parse(id).ok());
    display.ok_or_else(|| {
        Failure::refused(
            "not_found",
            "no such key: expected a key id, a display prefix (kg_live_<id>) or a whole token",
        )
    })
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    match cli.command {
        Command::Init => init(&keygate(&cli.database_url, Create::IfMissing).await?, json).await,
        Command::Keys(command) => {
            keys(
                &keygate(&cli.database_url, Create::Never).await?,
                command,
                json,
            )
            .await
        }
        Command::Audit(args) => {
            let gate = keygate(&cli.database_url, Create::Never).await?;
            let key = args.key.as_deref().map(|k| key_id(&gate, k)).transpose()?;
            Ok(super::audit::audit(&gate, *args, key, json).await?)
        }
        Command::Serve(args) => super::serve::serve(&cli.database_url, *args)
            .await
            .map_err(|e| Failure::refused("unavailable", e)),
        Command::Verify { token, require } => {
            let requirement = require
                .as_deref()
                .map(Requirement::parse)
                .transpose()
                .map_err(|e| Failure::usage(format!("--require: {e}")))?;
            verify(
                &keygate(&cli.database_url, Create::Never).await?,
                &token,
                requirement,
                json,
            )
            .await
        }
    }
}

async fn init(gate: &Keygate, json: bool) -> Result<(), Failure> {
    let any = gate
        .keys()
        .list(&ListQuery {
            include_revoked: true,
            limit: 1,
            ..ListQuery::default()
        })
        .await?;
    if !any.keys.is_empty() {
        return Err(Failure::refused(
            "conflict",
            "the database already holds keys; init only bootstraps an empty database",
        ));
    }
    let created = bootstrap(gate).await?;
    print_created(&created, json)
}

/// Prints a new token once. If stdout is closed or fails, the key exists
/// but nobody saw its token: that is a failure (status 1) naming the key,
/// so that it can be revoked — unlike a closed stdout elsewhere.
fn print_created(created: &CreatedKey, json: bool) -> Result<(), Failure> {
    let written = if json {
        out(json!({"key": created.token.expose(), "api_key": created.key}))
    } else {
        out(created.token.expose())
    };
    if let Err(e) = written {
        return Err(Failure::refused(
            "unavailable",
            format!(
                "key {} was created but its token could not be printed ({e}); \
                 revoke it with `keygate keys revoke {}`",
                created.key.display_prefix, created.key.id
            ),
        ));
    }
    note(SHOWN_ONCE);
    Ok(())
}

fn new_key(args: CreateArgs) -> Result<NewKey, Failure> {
    let mut new = NewKey::new(args.owner, args.name)
        .scopes(args.scopes)
        .ip_allow(args.ip_allow)
        .ip_deny(args.ip_deny);
    if let Some(env) = args.environment {
        let env = if env == "test" {
            Environment::Test
        } else {
            Environment::Live
        };
        new = new.environment(env);
    }
    if let Some(d) = args.description {
        new = new.description(d);
    }
    if let Some(o) = args.organization {
        new = new.organization(o);
    }
    if let Some(e) = args.expires_in {
        new = new.expires_in(e);
    }
    if let Some(e) = args.expires_at {
        new = new.expires_at_text(e);
    }
    if let Some(m) = args.metadata {
        let value: serde_json::Value = serde_json::from_str(&m).map_err(|e| Failure {
            status: 1,
            code: "bad_request",
            message: format!("metadata: not valid JSON ({e})"),
            field: Some("metadata"),
        })?;
        new = new.metadata(value);
    }
    if !args.rate_limits.is_empty() {
        // Each flag was checked by clap; the list's own rules (at most 8,
        // names unique) are a usage error too.
        let limits = RateLimits::new(args.rate_limits)
            .map_err(|e| Failure::usage(format!("--rate-limit: {e}")))?;
        new = new.rate_limits(limits);
    }
    if let Some(remaining) = args.credits {
        // Bounded by clap; the refill (which needs --credits) was checked too.
        let credits = Credits::new(remaining)
            .map_err(|e| Failure::usage(format!("--credits: {e}")))?
            .with_refill(args.refill);
        new = new.credits(credits);
    }
    Ok(new)
}

async fn keys(gate: &Keygate, command: KeysCommand, json: bool) -> Result<(), Failure> {
    let keys = gate.keys();
    match command {
        KeysCommand::Create(args) => {
            let created = keys.create(new_key(*args)?).await?;
            print_created(&created, json)?;
        }
        KeysCommand::List {
            owner,
            organization,
            include_revoked,
        } => {
            let mut query = ListQuery {
                owner,
                organization,
                include_revoked,
                ..ListQuery::default()
            };
            let mut all = Vec::new();
            loop {
                let page = keys.list(&query).await?;
                all.extend(page.keys);
                match page.next_cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => break,
                }
            }
            if json {
                out(json!({"keys": all, "next_cursor": null}))?;
            } else {
                print_table(&all)?;
            }
        }
        KeysCommand::Show { id } => {
            let key = keys.get(&key_id(gate, &id)?).await?;
            print_key(&key, json)?;
        }
        KeysCommand::Revoke { id, reason } => {
            let key = keys.revoke(&key_id(gate, &id)?, reason.as_deref()).await?;
            if json {
                out(json!(key))?;
            } else {
                out(format_args!("revoked {}", key.display_prefix))?;
            }
        }
        KeysCommand::Rotate { id, grace } => {
            let grace = parse_duration(&grace).map_err(|m| Failure {
                status: 1,
                code: "bad_request",
                message: format!("grace: {m}"),
                field: Some("grace"),
            })?;
            let created = keys.rotate(&key_id(gate, &id)?, grace).await?;
            print_created(&created, json)?;
        }
        KeysCommand::Credits { id, add, set } => {
            let change = match (add, set) {
                (Some(n), None) => CreditChange::Add(n),
                (None, Some(n)) => CreditChange::Set(n),
                _ => return Err(Failure::usage("give exactly one of --add and --set")),
            };
            let key = keys.adjust_credits(&key_id(gate, &id)?, change).await?;
            print_key(&key, json)?;
        }
        KeysCommand::Delete { id } => {
            let id = key_id(gate, &id)?;
            keys.delete(&id).await?;
            if json {
                out(json!({"deleted": id}))?;
            } else {
                out(format_args!("deleted {id}"))?;
            }
        }
    }
    Ok(())
}

fn time_text(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

fn print_table(keys: &[ApiKey]) -> std::io::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16}  {:<8}  {:<20}  {:<20}  {:<20}  {:<24}  {:<20}  SCOPES",
        "ID", "STATUS", "OWNER", "NAME", "EXPIRES", "RATE LIMITS", "CREDITS"
    )?;
    for k in keys {
        writeln!(
            out,
            "{:<16}  {:<8}  {:<20}  {:<20}  {:<20}  {:<24}  {:<20}  {}",
            k.id,
            k.status_at(now).as_str(),
            k.owner,
            k.name,
            time_text(k.expires_at),
            limits_text(&k.rate_limits),
            credits_text(k.credits.as_ref()),
            k.scopes
        )?;
    }
    Ok(())
}

/// Rate limits as `--rate-limit` takes them, space-separated
/// (`burst=20/1s hourly=1000/1h,shared`); `-` for none.
fn limits_text(limits: &RateLimits) -> String {
    if limits.is_empty() {
        return "-".into();
    }
    limits
        .iter()
        .map(|l| {
            let shared = if l.is_shared() { ",shared" } else { "" };
            format!("{}={}/{}{shared}", l.name(), l.limit(), l.period())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Credits as `--credits N [--refill N/EVERY]` takes them: `5000` or
/// `5000 refill 5000/month`; `-` for unlimited.
fn credits_text(credits: Option<&Credits>) -> String {
    match credits {
        None => "-".into(),
        Some(c) => match c.refill() {
            None => c.remaining().to_string(),
            Some(r) => format!("{} refill {}/{}", c.remaining(), r.amount(), r.every()),
        },
    }
}

fn print_key(key: &ApiKey, json: bool) -> std::io::Result<()> {
    if json {
        return out(json!(key));
    }
    let value = json!(key);
    let mut out = std::io::stdout().lock();
    if let Some(map) = value.as_object() {
        for (field, v) in map {
            let text = match v {
                _ if field == "rate_limits" => limits_text(&key.rate_limits),
                _ if field == "credits" => credits_text(key.credits.as_ref()),
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            writeln!(out, "{field:<15} {text}")?;
        }
    }
    Ok(())
}

async fn verify(
    gate: &Keygate,
    token: &str,
    requirement: Option<Requirement>,
    json: bool,
) -> Result<(), Failure> {
    let requirement = requirement.map(Arc::new);
    // An operator inspecting a token: no client, so no IP lists, and no use
    // is recorded.
    let authorized = gate
        .verifier()
        .authorize(token, Origin::Inspection, requirement.as_ref())
        .await;
    let (code, key) = match authorized {
        Ok(key) => ("valid", Some(key)),
        Err(refusal) => match refusal.rejection() {
            Rejection::Unavailable => {
                let cause = refusal
                    .store_error()
                    .map_or_else(|| refusal.to_string(), |e| error_chain(e));
                return Err(Failure::refused(
                    "unavailable",
                    format!("the key store is unavailable: {cause}"),
                ));
            }
            rejection => {
                if let Rejection::InvalidToken(reason) = rejection {
                    tracing::debug!(reason = reason.as_str(), "token refused");
                }
                (rejection.code(), refusal.key().cloned())
            }
        },
    };
    let valid = code == "valid";
    if json {
        let mut body = json!({"valid": valid, "code": code});
        if let Some(key) = &key {
            body["api_key"] = json!(key.record());
        }
        out(body)?;
    } else if let Some(key) = &key {
        out(format_args!(
            "{code}: {} (owner {})",
            key.display_prefix(),
            key.owner()
        ))?;
    } else {
        out(code)?;
    }
    if valid {
        Ok(())
    } else {
        // Already reported on stdout: exit 1 without a second message.
        Err(Failure::refused(code, String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::token_like;

    #[test]
    fn token_shaped_words_keep_only_their_display_prefix() {
        let token = format!("kg_live_{}{}", "A".repeat(16), "b".repeat(38));
        assert_eq!(token_like(&token), Some(&token[..24]));
        let mistyped = format!("kg_test_{}x", "A".repeat(30));
        assert_eq!(token_like(&mistyped), Some(&mistyped[..24]));
        for word in [
            "kg_live_ABC",
            "--bogus",
            "alice",
            "kg_prod_AAAAAAAAAAAAAAAAAAAA",
            "Kg_live_AAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(token_like(word), None, "{word}");
        }
    }
}
