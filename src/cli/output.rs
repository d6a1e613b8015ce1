//! What every command shares: writing lines that never panic on a closed
//! pipe, and the bootstrap admin key that `init` and `serve` create.

use std::io::Write as _;

use crate::keygate::Keygate;
use crate::keys::{CreatedKey, KeyError, NewKey};

/// Writes one line on stdout.
///
/// # Errors
///
/// The write error (see `From<std::io::Error> for Failure`).
pub(crate) fn out(line: impl std::fmt::Display) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")
}

/// Writes one line on stderr; a closed stderr is ignored (never a panic).
pub(crate) fn note(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Creates the bootstrap admin key: owner `admin`, scope `*:*`, no expiry.
pub(crate) async fn bootstrap(gate: &Keygate) -> Result<CreatedKey, KeyError> {
    tracing::info!("creating the bootstrap admin key");
    gate.keys()
        .create(
            NewKey::new("admin", "bootstrap")
                .scopes(["*:*"])
                .expires_in("never")
                .description("bootstrap admin key created by keygate"),
        )
        .await
}
