//! Request and response bodies of the HTTP API; the OpenAPI schemas are
//! generated from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::key::ApiKey;

/// `{"key", "api_key"}`: a new key and its token, shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedBody {
    /// The full token. It is never shown again.
    pub key: String,
    /// The new key's record.
    pub api_key: ApiKey,
}

/// A page of keys.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyListBody {
    /// Keys in creation order.
    pub keys: Vec<ApiKey>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A page of audit records.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditListBody {
    /// Records, newest first.
    pub records: Vec<crate::audit::AuditRecord>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/keys/{id}/revoke` body (optional).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    /// Why the key is revoked (kept in the record): at most 1024
    /// characters, no control character but newline and tab.
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub reason: Option<String>,
}

/// A grace period: `"1h"`-style text (units `s`, `min`, `h`, `d`, `w`,
/// `mo`, `y`; a bare `m` is refused as ambiguous) or whole seconds.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Grace {
    /// Whole seconds, at most 1000 years.
    Seconds(u64),
    /// `30min`, `12h`, `1d`, `1mo`, `1y`, …
    Text(String),
}

/// `POST /v1/keys/{id}/credits` body: exactly one of `add` and `set`, e.g.
/// `{"add": 1000}` or `{"set": 5000}` (so the schema is a `oneOf`). Schema
/// only: the handler reads the JSON object itself, so that a refusal names
/// the field.
#[derive(ToSchema, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum CreditsBody {
    /// Add to the balance.
    Add {
        /// Credits to add to the balance (the result at most 10^12). A key
        /// without credits (unlimited) has no balance to add to: 400 naming
        /// `credits`.
        #[schema(minimum = 0, maximum = 1_000_000_000_000_u64, example = 1000)]
        add: u64,
    },
    /// Set the balance.
    Set {
        /// The new balance, keeping the refill; a key without credits gets
        /// this balance and no refill. Credits reserved before and returned
        /// after are dropped.
        #[schema(minimum = 0, maximum = 1_000_000_000_000_u64, example = 5000)]
        set: u64,
    },
}

/// `POST /v1/keys/{id}/rotate` body (optional).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    /// How long the old key keeps working. Default: 0.
    pub grace: Option<Grace>,
}

/// One catalog scope.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScopeEntry {
    /// `resource:action`.
    pub name: String,
    /// What it allows.
    pub description: String,
}

/// `GET /v1/scopes` response.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScopesBody {
    /// Every scope the application defines, including keygate's own.
    pub scopes: Vec<ScopeEntry>,
}

/// `POST /v1/authcheck` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthcheckBody {
    /// Named requirement expressions to evaluate for the calling key: at
    /// most 100, each at most 4096 bytes, 256 scopes and 32 levels of
    /// parentheses.
    pub checks: BTreeMap<String, String>,
}

/// `POST /v1/verify` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    /// The token to verify.
    pub key: String,
    /// A requirement expression the key must satisfy (at most 4096 bytes,
    /// 256 scopes, 32 levels of parentheses).
    #[schema(max_length = 4096)]
    pub require: Option<String>,
    /// The address the key is used from, for its IP lists. Default: the
    /// caller's address.
    pub ip: Option<String>,
    /// What the check costs against the key's rate limits, taken from every
    /// limit or from none (0: not counted). Default: 1.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 1_000_000_000)]
    pub cost: Option<serde_json::Value>,
}

/// Where one of the key's rate limits stands after a `POST /v1/verify`.
#[derive(Serialize, ToSchema)]
pub(crate) struct LimitReport {
    /// The limit's name.
    pub name: String,
    /// Its capacity per period.
    pub limit: u64,
    /// Units a request could still take now.
    pub remaining: u64,
    /// Whole seconds until the bucket is full again (0: full).
    pub reset: u64,
}

impl From<&crate::limit::LimitState> for LimitReport {
    fn from(state: &crate::limit::LimitState) -> LimitReport {
        LimitReport {
            name: state.name.as_str().to_owned(),
            limit: state.limit,
            remaining: state.remaining,
            reset: state.reset_secs,
        }
    }
}

/// `POST /v1/verify` response.
#[derive(Serialize, ToSchema)]
pub(crate) struct VerifyResult {
    /// Whether the key is valid and allowed.
    pub valid: bool,
    /// `valid`, `invalid_token`, `ip_not_allowed`, `insufficient_scope`,
    /// `rate_limited` or `credits_exhausted`.
    pub code: &'static str,
    /// The key's record, when the token is a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKey>,
    /// Every rate limit of the key as it stands after the check (taken
    /// from when `valid`, unchanged when `rate_limited`); absent when the
    /// check was not counted (no limits, cost 0) or refused before them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<LimitReport>,
    /// The key's credits left after the check, as this instance knows them
    /// (the store's balance and what it holds in reserve); absent when the
    /// check spent none (no credits, cost 0, or refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits_remaining: Option<u64>,
}

/// A management error.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// `bad_request`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `conflict`, `key_limit_reached`, `payload_too_large`,
    /// `unsupported_media_type`, `unavailable`, or an authentication or
    /// limit code: `missing_token`, `invalid_request`, `invalid_token`,
    /// `ip_not_allowed`, `insufficient_scope`, `rate_limited`,
    /// `credits_exhausted`.
    pub error: String,
    /// One sentence.
    pub message: String,
    /// The field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `/healthz` and `/readyz` response.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatusBody {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
}
