//! `keygate serve --config FILE`: a TOML file holding any `serve` flag (and
//! the global `--database-url`), each under its long name
//! (`header-timeout = "5s"`, `trusted-proxy = ["10.0.0.0/8"]`,
//! `limits-fail-closed = true`).
//!
//! Precedence: a flag on the command line, then its `KEYGATE_…`
//! environment variable, then the file, then the built-in default. The
//! accepted keys are read from clap's own definition of `serve`, so a flag
//! added there is a key of the file without more code: each value of the
//! file becomes that argument's default, and clap's usual order (command
//! line > environment > default) does the rest. Every value is checked by
//! the flag's own parser before anything runs; an unknown key or a bad
//! value is a usage error naming the key and the file, which never repeats
//! the value (it may be a password in a URL).
//!
//! # Example
//!
//! ```
//! use keygate::cli::{Command, parse_from};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let file = dir.path().join("keygate.toml");
//! std::fs::write(&file, "listen = \"127.0.0.1:9090\"\nmax-connections = 64\n").unwrap();
//! let config = file.to_str().unwrap();
//!
//! let cli = parse_from(["keygate", "serve", "--config", config]).unwrap();
//! let Command::Serve(args) = cli.command else { panic!("not serve") };
//! assert_eq!((args.listen.as_str(), args.max_connections), ("127.0.0.1:9090", 64));
//!
//! // A flag wins over the file.
//! let cli = parse_from(["keygate", "serve", "--config", config, "--max-connections", "8"]).unwrap();
//! let Command::Serve(args) = cli.command else { panic!("not serve") };
//! assert_eq!(args.max_connections, 8);
//!
//! // An unknown key is refused, naming the key and the file.
//! std::fs::write(&file, "listne = \"127.0.0.1:9090\"\n").unwrap();
//! let error = parse_from(["keygate", "serve", "--config", config]).unwrap_err();
//! assert!(error.to_string().contains("unknown key `listne`"));
//! assert!(error.to_string().contains("keygate.toml"));
//! ```

use std::ffi::OsString;
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgMatches, CommandFactory as _, FromArgMatches as _};

use super::args::Cli;

/// The `serve` subcommand's name in clap.
const SERVE: &str = "serve";
/// The id of the global `--database-url` argument, a key of the file too.
const DATABASE_URL: &str = "database_url";
/// The id of `serve --config` itself, never a key of the file.
const CONFIG: &str = "config";
/// The largest configuration file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Parses the process's command line (see [`parse_from`]).
///
/// # Errors
///
/// As [`parse_from`].
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

/// Parses a command line, reading `serve --config FILE` (or
/// `KEYGATE_CONFIG`) when given: its values sit below the command line and
/// the environment, above the defaults.
///
/// # Errors
///
/// clap's usage errors, and a configuration file that cannot be read, is
/// not TOML, or holds an unknown key or a value its flag refuses (a
/// [`clap::Error`] of kind `InvalidValue` or `UnknownArgument` naming the
/// key and the file, exit status 2).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let matches = matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// What [`parse_from`] parses before it builds the [`Cli`]: clap's matches
/// with the configuration file applied (a value from the file reports
/// [`clap::parser::ValueSource::DefaultValue`]).
///
/// # Errors
///
/// As [`parse_from`].
pub fn matches_from<I, T>(args: I) -> Result<ArgMatches, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(&args)?;
    let file = match matches.subcommand() {
        Some((SERVE, serve)) => serve.get_one::<std::path::PathBuf>(CONFIG).cloned(),
        _ => None,
    };
    match file {
        None => Ok(matches),
        Some(file) => with_file(command, &file)?.try_get_matches_from(&args),
    }
}

/// The keys a configuration file accepts: the long name of every `serve`
/// argument (but `--config` and `--help`) and `database-url`.
pub fn config_keys() -> Vec<String> {
    let command = Cli::command();
    settable(&command)
        .into_iter()
        .map(|(key, _, _)| key)
        .collect()
}

/// Where an argument is defined.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Serve,
}

/// Every argument the file may set: (key, level, id).
fn settable(command: &clap::Command) -> Vec<(String, Level, String)> {
    let mut keys = Vec::new();
    for arg in command.get_arguments() {
        if arg.get_id() == DATABASE_URL
            && let Some(long) = arg.get_long()
        {
            keys.push((long.to_owned(), Level::Root, arg.get_id().to_string()));
        }
    }
    if let Some(serve) = command.find_subcommand(SERVE) {
        for arg in serve.get_arguments() {
            let id = arg.get_id().as_str();
            if id == CONFIG || id == "help" || id == "version" || arg.is_global_set() {
                continue;
            }
            if let Some(long) = arg.get_long() {
                keys.push((long.to_owned(), Level::Serve, id.to_owned()));
            }
        }
    }
    keys
}

/// A configuration error: clap's error type, so that it is reported (and
/// its exit status chosen) as every other usage error.
fn refuse(command: &mut clap::Command, kind: ErrorKind, text: String) -> clap::Error {
    command.error(kind, text)
}

/// `command` with every value of `file` set as its argument's default.
fn with_file(mut command: clap::Command, file: &Path) -> Result<clap::Command, clap::Error> {
    let shown = file.display().to_string();
    let text = read(file).map_err(|e| {
        refuse(
            &mut command,
            ErrorKind::Io,
            format!("cannot read the configuration file {shown}: {e}"),
        )
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        // toml's own rendering quotes the offending line, which may hold a
        // password: only the position and the message.
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        let message = e.message().trim_end().replace('\n', "; ");
        refuse(
            &mut command,
            ErrorKind::InvalidValue,
            format!("{shown}: not a valid TOML file{at}: {message}"),
        )
    })?;
    let keys = settable(&command);
    // Each value is checked by parsing `keygate serve` with it as its
    // argument's only default and no environment at all: any error is
    // this value's.
    let probe = command
        .clone()
        .mut_args(|a| a.env(None))
        .mut_subcommand(SERVE, |s| s.mut_args(|a| a.env(None)));
    let mut defaults = Vec::new();
    for (key, value) in &table {
        let Some((_, level, id)) = keys.iter().find(|(k, _, _)| k == key) else {
            let shown_key: String = key.chars().take(64).collect();
            let known: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
            return Err(refuse(
                &mut command,
                ErrorKind::UnknownArgument,
                format!(
                    "{shown}: unknown key `{shown_key}` (the keys are: {})",
                    known.join(", ")
                ),
            ));
        };
        let arg = find(&command, *level, id);
        let values = values(&arg, value).and_then(|values| {
            let probe = set_defaults(probe.clone(), *level, id, values.clone());
            match probe.try_get_matches_from(["keygate", SERVE]) {
                Ok(_) => Ok(values),
                Err(e) => Err(reason(&e)),
            }
        });
        match values {
            Ok(values) => defaults.push((*level, id.clone(), values)),
            Err(why) => {
                return Err(refuse(
                    &mut command,
                    ErrorKind::InvalidValue,
                    format!("{shown}: key `{key}`: {why}"),
                ));
            }
        }
    }
    for (level, id, values) in defaults {
        command = set_defaults(command, level, &id, values);
    }
    Ok(command)
}

/// `command` with `values` as the defaults of the argument `id`.
fn set_defaults(
    command: clap::Command,
    level: Level,
    id: &str,
    values: Vec<String>,
) -> clap::Command {
    match level {
        Level::Root => command.mut_arg(id, |a| a.default_values(values)),
        Level::Serve => {
            command.mut_subcommand(SERVE, |s| s.mut_arg(id, |a| a.default_values(values)))
        }
    }
}

/// The file's text, at most [`MAX_FILE_BYTES`].
fn read(file: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(file)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(text)
}

fn find(command: &clap::Command, level: Level, id: &str) -> Arg {
    let owner = match level {
        Level::Root => Some(command),
        Level::Serve => command.find_subcommand(SERVE),
    };
    owner
        .and_then(|c| c.get_arguments().find(|a| a.get_id() == id))
        .cloned()
        .unwrap_or_else(|| unreachable!("settable() lists only existing arguments"))
}

/// Whether the argument is a switch (`--limits-fail-closed`), taking no value.
fn is_switch(arg: &Arg) -> bool {
    !arg.get_action().takes_values()
}

/// Whether the argument may be given more than once (`--trusted-proxy`).
fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::Append)
        || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// The command-line values a TOML value stands for. The messages never
/// hold the value.
fn values(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    use toml::Value as V;
    let scalar = |v: &V| match v {
        V::String(s) => Ok(s.clone()),
        V::Integer(n) => Ok(n.to_string()),
        V::Float(f) => Ok(f.to_string()),
        V::Datetime(d) => Ok(d.to_string()),
        V::Boolean(_) => Err("expected a string or a number, not true or false".to_string()),
        V::Array(_) => Err("expected one value, not a list".to_string()),
        V::Table(_) => Err("expected a value, not a table".to_string()),
    };
    if is_switch(arg) {
        return match value {
            V::Boolean(b) => Ok(vec![b.to_string()]),
            _ => Err("expected true or false".into()),
        };
    }
    match value {
        V::Array(items) if is_list(arg) => items.iter().map(scalar).collect(),
        V::Array(_) => Err("expected one value, not a list".into()),
        other if is_list(arg) => scalar(other)
            .map(|v| vec![v])
            .map_err(|_| "expected a value or a list of values".into()),
        other => scalar(other).map(|v| vec![v]),
    }
}

/// Why clap refused a value, in words that never repeat the value.
fn reason(e: &clap::Error) -> String {
    match e.kind() {
        ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => {
                format!("expected one of: {}", valid.join(", "))
            }
            _ => "not a valid value".into(),
        },
        ErrorKind::ValueValidation => std::error::Error::source(e)
            .map_or_else(|| "not a valid value".into(), ToString::to_string),
        ErrorKind::InvalidUtf8 => "not valid UTF-8".into(),
        _ => "not a valid value".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use clap::parser::ValueSource;
    use proptest::prelude::*;

    use super::{config_keys, matches_from, parse_from};
    use crate::cli::Command;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn serve_with(text: &str, extra: &[&str]) -> Result<crate::cli::ServeArgs, String> {
        let f = file(text);
        let path = f.path().to_str().unwrap().to_owned();
        let args = [&["keygate", "serve", "--config", &path], extra].concat();
        match parse_from(args) {
            Ok(cli) => match cli.command {
                Command::Serve(args) => Ok(*args),
                _ => panic!("not serve"),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_file_sets_switches_lists_and_durations() {
        let args = serve_with(
            "limits-fail-closed = true\ntrusted-proxy = [\"10.0.0.0/8\", \"::1/128\"]\nheader-timeout = \"5s\"\n",
            &[],
        )
        .unwrap();
        assert!(args.limits_fail_closed);
        assert_eq!(args.trusted_proxies.len(), 2);
        assert_eq!(args.header_timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_the_key_and_the_file_and_never_the_value() {
        for (text, key, says) in [
            ("header-timeout = \"5m\"", "header-timeout", "ambiguous"),
            ("max-connections = 0", "max-connections", "not in"),
            (
                "forward-auth = \"caddy\"",
                "forward-auth",
                "expected one of",
            ),
            (
                "limits-fail-closed = \"yes\"",
                "limits-fail-closed",
                "true or false",
            ),
            ("listen = true", "listen", "string or a number"),
            ("listen = [\"a\", \"b\"]", "listen", "not a list"),
            (
                "trusted-proxy = [\"secret-not-a-net\"]",
                "trusted-proxy",
                "invalid",
            ),
        ] {
            let error = serve_with(text, &[]).unwrap_err();
            assert!(error.contains(&format!("key `{key}`")), "{text}: {error}");
            assert!(error.contains(".toml"), "{text}: {error}");
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains("secret-not-a-net"), "{text}: {error}");
        }
    }

    #[test]
    fn a_toml_syntax_error_never_quotes_the_line() {
        let error = serve_with("redis-url = \"redis://:hunter2@cache:6379\n", &[]).unwrap_err();
        assert!(error.contains("not a valid TOML file at line 1"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let f = file("listen = \"127.0.0.1:9999\"\nlog-format = \"json\"\n");
        let path = f.path().to_str().unwrap();
        let matches = matches_from([
            "keygate",
            "serve",
            "--config",
            path,
            "--listen",
            "127.0.0.1:1",
        ])
        .unwrap();
        let serve = matches.subcommand_matches("serve").unwrap();
        assert_eq!(serve.get_one::<String>("listen").unwrap(), "127.0.0.1:1");
        assert_eq!(serve.value_source("listen"), Some(ValueSource::CommandLine));
        assert_eq!(serve.get_one::<String>("log_format").unwrap(), "json");
        assert_eq!(
            serve.value_source("log_format"),
            Some(ValueSource::DefaultValue)
        );
        assert_eq!(serve.get_one::<String>("forward_auth").unwrap(), "auto");
    }

    #[test]
    fn the_keys_are_the_serve_flags_and_database_url() {
        let keys = config_keys();
        for key in [
            "database-url",
            "listen",
            "trusted-proxy",
            "redis-url",
            "limits-fail-closed",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing: {keys:?}");
        }
        for key in ["config", "help", "json"] {
            assert!(!keys.iter().any(|k| k == key), "{key} is a key: {keys:?}");
        }
    }

    proptest! {
        /// Whatever the file holds, loading it answers (a command line or
        /// an error) and never panics.
        #[test]
        fn any_file_loads_or_is_refused(text in "[ -~\n]{0,200}") {
            let _ = serve_with(&text, &[]);
        }

        /// Any string under a known key is checked by its flag's parser:
        /// accepted or refused naming the key, never echoed when refused.
        #[test]
        fn any_value_is_judged_by_its_flag(value in "[a-zA-Z0-9:./ _-]{1,40}") {
            let text = format!("header-timeout = {:?}\n", value);
            if let Err(error) = serve_with(&text, &[]) {
                prop_assert!(error.contains("key `header-timeout`"));
            }
        }
    }
}
