//! Command-line arguments (SPEC §8).

use clap::{Args, Parser, Subcommand};

/// API-key authentication: manage keys and verify tokens.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, about, propagate_version = true)]
pub struct Cli {
    /// Database URL: `sqlite://FILE` (created if missing) or `sqlite::memory:`.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_DATABASE_URL",
        default_value = "sqlite://keygate.db"
    )]
    pub database_url: String,

    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the schema and the bootstrap admin key (owner "admin", scope "*:*"), printed once.
    Init,
    /// Manage keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve the HTTP API (and, with --upstream, an authenticating reverse proxy).
    #[cfg(feature = "axum")]
    Serve(Box<ServeArgs>),
    /// Verify a token: exit 0 when valid (and allowed by --require), 1 otherwise.
    Verify {
        /// The token to check.
        token: String,
        /// A requirement expression, e.g. "workspaces:read and templates:use".
        #[arg(long)]
        require: Option<String>,
    },
}

/// `keygate keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its token once.
    Create(Box<CreateArgs>),
    /// List keys.
    List {
        /// Only this owner's keys.
        #[arg(long)]
        owner: Option<String>,
        /// Only this organization's keys.
        #[arg(long)]
        organization: Option<String>,
        /// Include revoked keys.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Show one key.
    Show {
        /// The key id (the 16 characters after `kg_live_`).
        id: String,
    },
    /// Revoke a key.
    Revoke {
        /// The key id.
        id: String,
        /// Why (kept in the record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace a key by a new one with the same attributes; print the new token once.
    Rotate {
        /// The key id.
        id: String,
        /// How long the old key keeps working, e.g. 10min or 1d. Default: 0.
        #[arg(long, default_value = "0")]
        grace: String,
    },
    /// Delete a key's record.
    Delete {
        /// The key id.
        id: String,
    },
}

/// `keygate keys create …`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Who the key belongs to.
    #[arg(long)]
    pub owner: String,
    /// A name, unique per owner among active keys.
    #[arg(long)]
    pub name: String,
    /// A granted scope, `resource:action`; repeat for more.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Lifetime: 30min, 12h, 30d, 1w, 1mo, 1y or never. Default: 90d.
    #[arg(long, conflicts_with = "expires_at")]
    pub expires_in: Option<String>,
    /// Expiry as an RFC 3339 timestamp in the future.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Environment: live (default) or test.
    #[arg(long = "env", value_parser = ["live", "test"])]
    pub environment: Option<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// The owner's organization.
    #[arg(long)]
    pub organization: Option<String>,
    /// An allowed address or CIDR range; repeat for more.
    #[arg(long = "ip-allow")]
    pub ip_allow: Vec<String>,
    /// A denied address or CIDR range; repeat for more.
    #[arg(long = "ip-deny")]
    pub ip_deny: Vec<String>,
    /// A JSON object of at most 4 KiB.
    #[arg(long)]
    pub metadata: Option<String>,
}

/// `keygate serve …`
#[cfg(feature = "axum")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Forward authenticated requests to this http:// URL.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Address of the proxy listener (with --upstream).
    #[arg(long, default_value = "127.0.0.1:8000", requires = "upstream")]
    pub proxy_listen: String,
    /// Route rules (TOML) for forward auth and the proxy.
    #[arg(long)]
    pub rules: Option<std::path::PathBuf>,
    /// Where forward auth reads the original request: nginx (X-Original-*), traefik (X-Forwarded-*),
    /// envoy (the request itself), or auto (every convention present; disagreeing ones are a 400).
    #[arg(long, env = "KEYGATE_FORWARD_AUTH", default_value = "auto",
          value_parser = ["nginx", "traefik", "envoy", "auto"])]
    pub forward_auth: String,
    /// A proxy whose X-Forwarded-* / X-Original-* headers are believed; repeat for more. Default: loopback.
    #[arg(long = "trusted-proxy")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Log format on stderr.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
}
