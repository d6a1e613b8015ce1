//! The `keygate` command line (SPEC §8, §8a). The binary is a thin shell
//! over `run`. It is hidden from the docs: its API may change between
//! releases.
//!
//! - Only `init` and `serve` create a database ([`Create`]); the other
//!   commands refuse one that does not exist and create no file.
//! - The pepper is checked against the database at every start (a check
//!   value in `keygate_meta`, see [`open`]).
//! - Commands taking a key accept its id, display prefix or whole token, and
//!   never print a token they were given.
//! - A closed stdout (`keygate keys list | head -1`) ends a command quietly
//!   with status 0; nothing the CLI writes can panic.

mod args;
mod audit;
mod database;
mod output;
mod redis;
mod run;
mod serve;

pub use args::ServeArgs;
pub use args::{AuditArgs, Cli, Command, CreateArgs, KeysCommand};
pub use database::{Create, Opened, PEPPER_FILE, SetupError, open};
pub use run::{run, usage_error};
