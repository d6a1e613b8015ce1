//! GitHub's secret scanning partner program (feature `secret-scanning`):
//! GitHub finds tokens of your format in public repositories, npm
//! packages and other public content, and reports them to an endpoint of
//! yours, signed; this module is that endpoint.
//!
//! [`GithubKeys`] holds GitHub's public keys (the JSON of
//! <https://api.github.com/meta/public_keys/secret_scanning>) and checks
//! a report's ECDSA P-256 / SHA-256 signature; [`router`] is `POST
//! /v1/secret-scanning/github`, which revokes every reported live key with
//! reason `leaked: <url>` and an audit record, and labels each token
//! `true_positive` or `false_positive`. `keygate serve --github-keys FILE`
//! mounts it; without the flag the route does not exist (404).
//!
//! See `docs/leaked-keys.md` for registering the token pattern with
//! GitHub.

mod keys;
mod route;

pub use keys::{GithubKeys, GithubKeysError};
pub use route::{ACTOR, MAX_REPORT_BYTES, PATH, router};
