//! Carrying out a parsed command line.

use std::borrow::Cow;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;

use super::args::{Cli, Command, CreateArgs, KeysCommand, UpdateArgs};
use super::database::{self, Create, SetupError};
use super::output::{bootstrap, note, out};
use super::remote::{Api, RemoteError, TOKEN_VARIABLE, query_value};
use crate::credits::{CreditChange, Credits};
use crate::keygate::Keygate;
use crate::keys::{KeyError, KeyUpdate, NewKey, parse_duration};
use crate::limit::RateLimits;
use crate::scope::Requirement;
use crate::store::ListQuery;
use crate::token::{Environment, KeyId, TokenFormat};
use crate::verify::{Origin, Rejection};

/// The reminder printed on stderr next to a new token.
const SHOWN_ONCE: &str = "Store this key now: it will not be shown again.";

/// A failed command: its exit status and what to say.
struct Failure {
    status: u8,
    code: Cow<'static, str>,
    message: String,
    field: Option<Cow<'static, str>>,
}

impl Failure {
    fn refused(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Failure {
        Failure {
            status: 1,
            code: code.into(),
            message: message.into(),
            field: None,
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            status: 2,
            code: "bad_usage".into(),
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
            code: e.code().into(),
            field: e.field().map(Cow::Borrowed),
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
            code: code.into(),
            message: error_chain(&e),
            field: None,
        }
    }
}

/// A refusal of the server behind `--api-url`, in plain words: a refused
/// operation is status 1 (as the same refusal from the database), an
/// unusable `--api-url` or `KEYGATE_TOKEN` is status 2.
impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Failure {
        match e {
            RemoteError::Usage(message) => Failure::usage(message),
            RemoteError::Transport(message) => Failure::refused("unavailable", message),
            RemoteError::Api {
                status,
                code,
                message,
                field,
                required,
            } => {
                let message = match code.as_str() {
                    "missing_token" | "invalid_token" | "invalid_request" if status < 403 => {
                        format!("the server refused the key in {TOKEN_VARIABLE}: {message}")
                    }
                    "insufficient_scope" => format!(
                        "the key in {TOKEN_VARIABLE} may not do this: it needs {}",
                        required.as_deref().unwrap_or("another scope")
                    ),
                    "ip_not_allowed" => format!(
                        "the key in {TOKEN_VARIABLE} may not be used from this address: {message}"
                    ),
                    _ => message,
                };
                Failure {
                    status: 1,
                    code: code.into(),
                    message,
                    field: field.map(Cow::Owned),
                }
            }
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

/// Where `keys …` and `verify` act: the database, or (with `--api-url`)
/// a running server's HTTP API.
enum Target {
    Database(Keygate),
    Api(Box<Api>),
}

impl Target {
    async fn open(cli: &Cli) -> Result<Target, Failure> {
        match &cli.api_url {
            Some(url) => Ok(Target::Api(Box::new(Api::new(
                url,
                std::env::var(TOKEN_VARIABLE).ok(),
            )?))),
            None => Ok(Target::Database(
                keygate(&cli.database_url, Create::Never).await?,
            )),
        }
    }

    /// The token format of the keys named on the command line.
    fn format(&self) -> TokenFormat {
        match self {
            Target::Database(gate) => gate.token_format().clone(),
            Target::Api(_) => TokenFormat::default(),
        }
    }
}

/// The key a command names: its id, its display prefix (`kg_live_<id>`) or
/// a whole token (checked by the token parser, checksum included; only its
/// id is used). The text is never repeated in a message: it may be a token.
fn key_id(format: &TokenFormat, text: &str) -> Result<KeyId, Failure> {
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
    let through_api = |what: &str| {
        Failure::usage(format!(
            "{what} works on the database: --api-url (KEYGATE_API_URL) is for `keys …` and `verify`"
        ))
    };
    match cli.command {
        Command::Init if cli.api_url.is_some() => Err(through_api("init")),
        Command::Serve(_) if cli.api_url.is_some() => Err(through_api("serve")),
        Command::Init => init(&keygate(&cli.database_url, Create::IfMissing).await?, json).await,
        Command::Keys(ref command) => {
            let target = Target::open(&cli).await?;
            keys(&target, command, json).await
        }
        Command::Audit(args) => {
            let gate = keygate(&cli.database_url, Create::Never).await?;
            let key = args
                .key
                .as_deref()
                .map(|k| key_id(gate.verifier().token_format(), k))
                .transpose()?;
            Ok(super::audit::audit(&gate, *args, key, json).await?)
        }
        Command::Scan(args) => match super::scan::scan(&cli.database_url, *args, json).await {
            Ok(super::scan::Outcome::Clean) => Ok(()),
            // Reported already: a quiet exit status.
            Ok(super::scan::Outcome::Found) => Err(Failure::refused("found", String::new())),
            Ok(super::scan::Outcome::Incomplete) => {
                Err(Failure::refused("incomplete", String::new()).with_status(2))
            }
            Err(message) => Err(Failure::refused("unavailable", message).with_status(2)),
        },
        Command::Serve(args) => super::serve::serve(&cli.database_url, *args)
            .await
            .map_err(|e| Failure::refused("unavailable", e)),
        Command::Verify {
            ref token,
            ref require,
        } => {
            let requirement = require
                .as_deref()
                .map(Requirement::parse)
                .transpose()
                .map_err(|e| Failure::usage(format!("--require: {e}")))?;
            let target = Target::open(&cli).await?;
            verify(&target, token, require.as_deref(), requirement, json).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "keygate", &mut script);
            std::io::stdout().lock().write_all(&script)?;
            Ok(())
        }
        Command::Man { out: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page)?;
            std::io::stdout().lock().write_all(&page)?;
            Ok(())
        }
        Command::Man { out: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
                })
                .map_err(|e| {
                    Failure::refused(
                        "unavailable",
                        format!("cannot write into {}: {e}", dir.display()),
                    )
                })?;
            if json {
                out(json!({"written": dir}))?;
            } else {
                note(format_args!("man pages written into {}", dir.display()));
            }
            Ok(())
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
    print_created(created.token.expose(), &json!(created.key), json)
}

/// Prints a new token once. If stdout is closed or fails, the key exists
/// but nobody saw its token: that is a failure (status 1) naming the key,
/// so that it can be revoked — unlike a closed stdout elsewhere.
fn print_created(token: &str, key: &serde_json::Value, json: bool) -> Result<(), Failure> {
    let written = if json {
        out(json!({"key": token, "api_key": key}))
    } else {
        out(token)
    };
    if let Err(e) = written {
        let field = |name: &str| {
            key.get(name)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        };
        return Err(Failure::refused(
            "unavailable",
            format!(
                "key {} was created but its token could not be printed ({e}); \
                 revoke it with `keygate keys revoke {}`",
                field("display_prefix"),
                field("id")
            ),
        ));
    }
    note(SHOWN_ONCE);
    Ok(())
}

/// `--metadata`: a JSON value (the key manager checks it is an object).
fn metadata(text: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure {
        status: 1,
        code: "bad_request".into(),
        message: format!("metadata: not valid JSON ({e})"),
        field: Some("metadata".into()),
    })
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
        new = new.metadata(metadata(&m)?);
    }
    if !args.rate_limits.is_empty() {
        new = new.rate_limits(rate_limits(args.rate_limits)?);
    }
    if let Some(remaining) = args.credits {
        new = new.credits(credits(remaining, args.refill)?);
    }
    Ok(new)
}

/// `--rate-limit`s: each was checked by clap; the list's own rules (at
/// most 8, names unique) are a usage error too.
fn rate_limits(limits: Vec<crate::limit::RateLimit>) -> Result<RateLimits, Failure> {
    RateLimits::new(limits).map_err(|e| Failure::usage(format!("--rate-limit: {e}")))
}

/// `--credits` and `--refill`: bounded by clap (the refill needs credits).
fn credits(remaining: u64, refill: Option<crate::credits::Refill>) -> Result<Credits, Failure> {
    Ok(Credits::new(remaining)
        .map_err(|e| Failure::usage(format!("--credits: {e}")))?
        .with_refill(refill))
}

/// The body of `POST /v1/keys` for `keys create` through the API: the
/// fields given, checked as the database mode checks them first.
fn create_body(args: &CreateArgs) -> Result<serde_json::Value, Failure> {
    let mut body = json!({"owner": args.owner, "name": args.name, "scopes": args.scopes});
    let mut set = |field: &str, value: serde_json::Value| body[field] = value;
    for (field, value) in [
        ("expires_in", &args.expires_in),
        ("expires_at", &args.expires_at),
        ("environment", &args.environment),
        ("description", &args.description),
        ("organization", &args.organization),
    ] {
        if let Some(v) = value {
            set(field, json!(v));
        }
    }
    if !args.ip_allow.is_empty() {
        set("ip_allow", json!(args.ip_allow));
    }
    if !args.ip_deny.is_empty() {
        set("ip_deny", json!(args.ip_deny));
    }
    if let Some(m) = &args.metadata {
        set("metadata", metadata(m)?);
    }
    if !args.rate_limits.is_empty() {
        set("rate_limits", json!(rate_limits(args.rate_limits.clone())?));
    }
    if let Some(remaining) = args.credits {
        set("credits", json!(credits(remaining, args.refill)?));
    }
    Ok(body)
}

/// The body of `PATCH /v1/keys/{id}` for `keys update`: only what is
/// given. The database mode reads the same body as a [`KeyUpdate`], so
/// both modes do exactly what the API's PATCH does.
fn update_body(args: &UpdateArgs) -> Result<serde_json::Value, Failure> {
    let mut body = json!({});
    if let Some(name) = &args.name {
        body["name"] = json!(name);
    }
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    if !args.scopes.is_empty() {
        body["scopes"] = json!(args.scopes);
    }
    if let Some(m) = &args.metadata {
        body["metadata"] = metadata(m)?;
    }
    if !args.ip_allow.is_empty() || args.no_ip_allow {
        body["ip_allow"] = json!(args.ip_allow);
    }
    if !args.ip_deny.is_empty() || args.no_ip_deny {
        body["ip_deny"] = json!(args.ip_deny);
    }
    if !args.rate_limits.is_empty() || args.no_rate_limits {
        body["rate_limits"] = json!(rate_limits(args.rate_limits.clone())?);
    }
    if let Some(remaining) = args.credits {
        body["credits"] = json!(credits(remaining, args.refill)?);
    } else if args.no_credits {
        body["credits"] = serde_json::Value::Null;
    }
    Ok(body)
}

/// `keys list` through the API: every page, then `--organization`
/// (which the API does not filter on) applied here.
async fn list_remote(
    api: &Api,
    owner: Option<&str>,
    organization: Option<&str>,
    include_revoked: bool,
) -> Result<Vec<serde_json::Value>, Failure> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/keys?limit=1000&include_revoked={include_revoked}");
        if let Some(o) = owner {
            path.push_str(&format!("&owner={}", query_value(o)));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", query_value(c)));
        }
        let page = api
            .call(http::Method::GET, &path, None)
            .await?
            .unwrap_or_default();
        if let Some(keys) = page.get("keys").and_then(serde_json::Value::as_array) {
            all.extend(keys.iter().cloned());
        }
        match page.get("next_cursor").and_then(serde_json::Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    if let Some(org) = organization {
        all.retain(|k| k.get("organization").and_then(serde_json::Value::as_str) == Some(org));
    }
    Ok(all)
}

/// The record a 2xx answer of the API holds.
fn record(answer: Option<serde_json::Value>, api: &Api) -> Result<serde_json::Value, Failure> {
    answer.ok_or_else(|| {
        Failure::refused(
            "unavailable",
            format!("the API at {} answered without a body", api.base()),
        )
    })
}

/// A new key as the API answers it: `{"key", "api_key"}`.
fn print_created_answer(
    answer: Option<serde_json::Value>,
    api: &Api,
    json: bool,
) -> Result<(), Failure> {
    let answer = record(answer, api)?;
    let token = answer.get("key").and_then(serde_json::Value::as_str);
    match (token, answer.get("api_key")) {
        (Some(token), Some(key)) => print_created(token, key, json),
        _ => Err(Failure::refused(
            "unavailable",
            format!("the API at {} answered without the new key", api.base()),
        )),
    }
}

async fn keys(target: &Target, command: &KeysCommand, json: bool) -> Result<(), Failure> {
    use http::Method;
    let format = target.format();
    match (target, command) {
        (Target::Database(gate), KeysCommand::Create(args)) => {
            let created = gate.keys().create(new_key((**args).clone())?).await?;
            print_created(created.token.expose(), &json!(created.key), json)?;
        }
        (Target::Api(api), KeysCommand::Create(args)) => {
            let body = create_body(args)?;
            let answer = api.call(Method::POST, "/v1/keys", Some(&body)).await?;
            print_created_answer(answer, api, json)?;
        }
        (
            target,
            KeysCommand::List {
                owner,
                organization,
                include_revoked,
            },
        ) => {
            let all = match target {
                Target::Database(gate) => {
                    let mut query = ListQuery {
                        owner: owner.clone(),
                        organization: organization.clone(),
                        include_revoked: *include_revoked,
                        ..ListQuery::default()
                    };
                    let mut all = Vec::new();
                    loop {
                        let page = gate.keys().list(&query).await?;
                        all.extend(page.keys.iter().map(|k| json!(k)));
                        match page.next_cursor {
                            Some(cursor) => query.cursor = Some(cursor),
                            None => break,
                        }
                    }
                    all
                }
                Target::Api(api) => {
                    list_remote(
                        api,
                        owner.as_deref(),
                        organization.as_deref(),
                        *include_revoked,
                    )
                    .await?
                }
            };
            if json {
                out(json!({"keys": all, "next_cursor": null}))?;
            } else {
                print_table(&all)?;
            }
        }
        (target, KeysCommand::Show { id }) => {
            let id = key_id(&format, id)?;
            let key = match target {
                Target::Database(gate) => json!(gate.keys().get(&id).await?),
                Target::Api(api) => record(
                    api.call(Method::GET, &format!("/v1/keys/{id}"), None)
                        .await?,
                    api,
                )?,
            };
            print_key(&key, json)?;
        }
        (target, KeysCommand::Update(args)) => {
            let body = update_body(args)?;
            let id = key_id(&format, &args.id)?;
            let key = match target {
                Target::Database(gate) => {
                    let update: KeyUpdate = serde_json::from_value(body)
                        .map_err(|e| Failure::usage(format!("keys update: {e}")))?;
                    json!(gate.keys().update(&id, update).await?)
                }
                Target::Api(api) => record(
                    api.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&body))
                        .await?,
                    api,
                )?,
            };
            print_key(&key, json)?;
        }
        (target, KeysCommand::Revoke { id, reason }) => {
            let id = key_id(&format, id)?;
            let key = match target {
                Target::Database(gate) => json!(gate.keys().revoke(&id, reason.as_deref()).await?),
                Target::Api(api) => {
                    let body = json!({"reason": reason});
                    let path = format!("/v1/keys/{id}/revoke");
                    record(api.call(Method::POST, &path, Some(&body)).await?, api)?
                }
            };
            if json {
                out(&key)?;
            } else {
                let shown = key
                    .get("display_prefix")
                    .and_then(serde_json::Value::as_str);
                out(format_args!("revoked {}", shown.unwrap_or("-")))?;
            }
        }
        (target, KeysCommand::Rotate { id, grace }) => {
            let grace = parse_duration(grace).map_err(|m| Failure {
                status: 1,
                code: "bad_request".into(),
                message: format!("grace: {m}"),
                field: Some("grace".into()),
            })?;
            let id = key_id(&format, id)?;
            match target {
                Target::Database(gate) => {
                    let created = gate.keys().rotate(&id, grace).await?;
                    print_created(created.token.expose(), &json!(created.key), json)?;
                }
                Target::Api(api) => {
                    // Whole seconds: exactly the grace the database mode uses.
                    let body = json!({"grace": grace.whole_seconds().max(0)});
                    let path = format!("/v1/keys/{id}/rotate");
                    let answer = api.call(Method::POST, &path, Some(&body)).await?;
                    print_created_answer(answer, api, json)?;
                }
            }
        }
        (target, KeysCommand::Credits { id, add, set }) => {
            let (change, body) = match (add, set) {
                (Some(n), None) => (CreditChange::Add(*n), json!({"add": n})),
                (None, Some(n)) => (CreditChange::Set(*n), json!({"set": n})),
                _ => return Err(Failure::usage("give exactly one of --add and --set")),
            };
            let id = key_id(&format, id)?;
            let key = match target {
                Target::Database(gate) => json!(gate.keys().adjust_credits(&id, change).await?),
                Target::Api(api) => {
                    let path = format!("/v1/keys/{id}/credits");
                    record(api.call(Method::POST, &path, Some(&body)).await?, api)?
                }
            };
            print_key(&key, json)?;
        }
        (target, KeysCommand::Delete { id }) => {
            let id = key_id(&format, id)?;
            match target {
                Target::Database(gate) => gate.keys().delete(&id).await?,
                Target::Api(api) => {
                    api.call(Method::DELETE, &format!("/v1/keys/{id}"), None)
                        .await?;
                }
            }
            if json {
                out(json!({"deleted": id}))?;
            } else {
                out(format_args!("deleted {id}"))?;
            }
        }
    }
    Ok(())
}

fn text_of<'a>(key: &'a serde_json::Value, field: &str) -> &'a str {
    key.get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("-")
}

/// The rate limits of a key record (its JSON form).
fn limits_of(key: &serde_json::Value) -> RateLimits {
    key.get("rate_limits")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The credits of a key record (its JSON form); `None`: unlimited.
fn credits_of(key: &serde_json::Value) -> Option<Credits> {
    key.get("credits")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Keys as a table, from their JSON records (the same whether they were
/// read from the database or the API).
fn print_table(keys: &[serde_json::Value]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16}  {:<8}  {:<20}  {:<20}  {:<20}  {:<24}  {:<20}  SCOPES",
        "ID", "STATUS", "OWNER", "NAME", "EXPIRES", "RATE LIMITS", "CREDITS"
    )?;
    for k in keys {
        let scopes: Vec<&str> = k
            .get("scopes")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        writeln!(
            out,
            "{:<16}  {:<8}  {:<20}  {:<20}  {:<20}  {:<24}  {:<20}  {}",
            text_of(k, "id"),
            text_of(k, "status"),
            text_of(k, "owner"),
            text_of(k, "name"),
            text_of(k, "expires_at"),
            limits_text(&limits_of(k)),
            credits_text(credits_of(k).as_ref()),
            scopes.join(" ")
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

/// One key, field by field, from its JSON record (the same whether it was
/// read from the database or the API).
fn print_key(key: &serde_json::Value, json: bool) -> std::io::Result<()> {
    if json {
        return out(key);
    }
    let mut out = std::io::stdout().lock();
    if let Some(map) = key.as_object() {
        for (field, v) in map {
            let text = match v {
                _ if field == "rate_limits" => limits_text(&limits_of(key)),
                _ if field == "credits" => credits_text(credits_of(key).as_ref()),
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            writeln!(out, "{field:<15} {text}")?;
        }
    }
    Ok(())
}

/// `verify` against the database: an operator inspecting a token, so no
/// client address (no IP lists) and no use recorded.
async fn verify_local(
    gate: &Keygate,
    token: &str,
    requirement: Option<Requirement>,
) -> Result<(Cow<'static, str>, Option<serde_json::Value>), Failure> {
    let requirement = requirement.map(Arc::new);
    let authorized = gate
        .verifier()
        .authorize(token, Origin::Inspection, requirement.as_ref())
        .await;
    match authorized {
        Ok(key) => Ok(("valid".into(), Some(json!(key.record())))),
        Err(refusal) => match refusal.rejection() {
            Rejection::Unavailable => {
                let cause = refusal
                    .store_error()
                    .map_or_else(|| refusal.to_string(), |e| error_chain(e));
                Err(Failure::refused(
                    "unavailable",
                    format!("the key store is unavailable: {cause}"),
                ))
            }
            rejection => {
                if let Rejection::InvalidToken(reason) = rejection {
                    tracing::debug!(reason = reason.as_str(), "token refused");
                }
                let key = refusal.key().map(|k| json!(k.record()));
                Ok((rejection.code().into(), key))
            }
        },
    }
}

/// `verify` through `POST /v1/verify` (scope `keys:verify`), at cost 0 so
/// that checking a key spends none of its rate limits or credits. The
/// server judges the key's IP lists against the address it sees the CLI
/// call from.
async fn verify_remote(
    api: &Api,
    token: &str,
    require: Option<&str>,
) -> Result<(Cow<'static, str>, Option<serde_json::Value>), Failure> {
    let body = json!({"key": token, "require": require, "cost": 0});
    let answer = record(
        api.call(http::Method::POST, "/v1/verify", Some(&body))
            .await?,
        api,
    )?;
    let code = answer
        .get("code")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            Failure::refused(
                "unavailable",
                format!("the API at {} answered without a code", api.base()),
            )
        })?
        .to_owned();
    Ok((code.into(), answer.get("api_key").cloned()))
}

async fn verify(
    target: &Target,
    token: &str,
    require: Option<&str>,
    requirement: Option<Requirement>,
    json: bool,
) -> Result<(), Failure> {
    let (code, key) = match target {
        Target::Database(gate) => verify_local(gate, token, requirement).await?,
        Target::Api(api) => verify_remote(api, token, require).await?,
    };
    let valid = code == "valid";
    if json {
        let mut body = json!({"valid": valid, "code": code});
        if let Some(key) = &key {
            body["api_key"] = key.clone();
        }
        out(body)?;
    } else if let Some(key) = &key {
        out(format_args!(
            "{code}: {} (owner {})",
            text_of(key, "display_prefix"),
            text_of(key, "owner")
        ))?;
    } else {
        out(&code)?;
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
