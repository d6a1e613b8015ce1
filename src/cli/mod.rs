//! The `keygate` command line (SPEC §8). The binary is a thin shell over
//! `run`. It is hidden from the docs: its API may change between releases.

mod args;
mod database;
mod run;
#[cfg(feature = "axum")]
mod serve;

#[cfg(feature = "axum")]
pub use args::ServeArgs;
pub use args::{Cli, Command, CreateArgs, KeysCommand};
pub use database::{Create, Opened, PEPPER_FILE, SetupError, open};
pub use run::{run, usage_error};
