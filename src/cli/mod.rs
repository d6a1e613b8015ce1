//! The `keygate` command line. The binary is a thin shell over `run`. It
//! is hidden from the docs: its API may change between releases.
//!
//! - Exit status 0 on success, 1 on a refused operation or an invalid key,
//!   2 on bad usage; `--json` prints machine-readable output.
//! - Only `init` and `serve` create a database ([`Create`]); the other
//!   commands refuse one that does not exist and create no file.
//! - The pepper is checked against the database at every start (a check
//!   value in `keygate_meta`, see [`open`]).
//! - Commands taking a key accept its id, display prefix or whole token, and
//!   never print a token they were given.
//! - `serve --config FILE` reads any `serve` flag from a TOML file
//!   ([`parse_from`]: flag > environment > file > default).
//! - With `--api-url` (`KEYGATE_API_URL`) and `KEYGATE_TOKEN`, `keys …` and
//!   `verify` act through a running server's HTTP API instead of the
//!   database, with the same output.
//! - A closed stdout (`keygate keys list | head -1`) ends a command quietly
//!   with status 0; nothing the CLI writes can panic.

mod args;
mod audit;
mod config;
mod database;
mod metrics;
mod output;
mod redis;
mod remote;
mod run;
mod scan;
mod serve;

pub use args::ServeArgs;
pub use args::{AuditArgs, Cli, Command, CreateArgs, KeysCommand, ScanArgs, UpdateArgs};
pub use config::{config_keys, matches_from, parse, parse_from};
pub use database::{Create, Opened, PEPPER_FILE, SetupError, open};
pub use run::{run, usage_error};
