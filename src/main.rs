//! The `keygate` binary: a thin shell over [`keygate::cli`].

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    keygate::cli::run(keygate::cli::Cli::parse()).await
}
