//! The `keygate` binary: a thin shell over [`keygate::cli`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match keygate::cli::parse() {
        Ok(cli) => keygate::cli::run(cli).await,
        Err(error) => keygate::cli::usage_error(&error),
    }
}
