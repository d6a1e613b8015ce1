//! The command-line arguments of `keygate`: its commands, their flags and
//! the `KEYGATE_…` environment variables that stand in for flags.

use clap::{Args, Parser, Subcommand};

use crate::credits::{MAX_CREDITS, Refill, RefillEvery};
use crate::limit::{LimitName, Period, RateLimit};

/// API-key authentication: manage keys and verify tokens.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, about, propagate_version = true)]
pub struct Cli {
    /// Database URL: `sqlite://FILE` or `sqlite::memory:` (or, with the
    /// postgres feature, `postgres://…`). Only `init` and `serve` create a
    /// database that does not exist.
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

    /// Act through the HTTP API of a running `keygate serve` at this
    /// http:// URL instead of opening the database (`keys …` and
    /// `verify`). The key to act with is read from the environment
    /// variable KEYGATE_TOKEN only, never from a flag.
    #[arg(long, global = true, env = "KEYGATE_API_URL", value_name = "URL")]
    pub api_url: Option<String>,

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
    Serve(Box<ServeArgs>),
    /// Show the audit log of key changes, newest first.
    Audit(Box<AuditArgs>),
    /// Verify a token: exit 0 when valid (and allowed by --require), 1 otherwise.
    Verify {
        /// The token to check.
        token: String,
        /// A requirement expression, e.g. "workspaces:read and templates:use".
        #[arg(long)]
        require: Option<String>,
    },
    /// Find leaked keys: checksum-valid tokens in files (or, with --git,
    /// in a repository's history), shown by display prefix, never whole.
    /// Exit 0 when none is found, 1 when any is, 2 on bad usage or when
    /// something could not be read.
    Scan(Box<ScanArgs>),
    /// Print a shell completion script on stdout, e.g.
    /// `keygate completions bash > /etc/bash_completion.d/keygate`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page keygate(1) on stdout, or with --out write one
    /// page per command (keygate.1, keygate-keys-create.1, …) into DIR.
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
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
        /// The key: its id, its display prefix (`kg_live_<id>`) or the whole token.
        id: String,
    },
    /// Revoke a key.
    Revoke {
        /// The key: its id, its display prefix or the whole token.
        id: String,
        /// Why (kept in the record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change a key: name, description, metadata, IP lists, rate limits,
    /// credits, or narrower scopes (what PATCH /v1/keys/{id} does).
    Update(Box<UpdateArgs>),
    /// Replace a key by a new one with the same attributes; print the new token once.
    Rotate {
        /// The key: its id, its display prefix or the whole token.
        id: String,
        /// How long the old key keeps working, e.g. 10min or 1d. Default: 0.
        #[arg(long, default_value = "0")]
        grace: String,
    },
    /// Add to a key's credits or set them (exactly one of --add and --set).
    Credits {
        /// The key: its id, its display prefix or the whole token.
        id: String,
        /// Credits to add to the balance (the key must have credits; the
        /// result is at most 1000000000000).
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            required_unless_present = "set",
            conflicts_with = "set",
            value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS)
        )]
        add: Option<u64>,
        /// The new balance (the refill is kept; a key without credits gets
        /// this balance and no refill).
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS)
        )]
        set: Option<u64>,
    },
    /// Delete a key's record.
    Delete {
        /// The key: its id, its display prefix or the whole token.
        id: String,
    },
}

/// `keygate scan …`
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan (default: the current directory);
    /// with --git, git repositories (or paths inside them).
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
    /// Scan the history of the git repositories instead of the files:
    /// every blob of every commit reachable from HEAD and every reference.
    #[arg(long)]
    pub git: bool,
    /// Output: text (one line per finding), json, or sarif (SARIF 2.1.0,
    /// for GitHub code scanning). --json means --format json.
    #[arg(long, value_parser = ["text", "json", "sarif"], default_value = "text")]
    pub format: String,
    /// Revoke every token found that is a live key of the database.
    #[arg(long)]
    pub revoke: bool,
    /// The revocation reason (default: "leaked: found by keygate scan at
    /// LOCATION").
    #[arg(long, requires = "revoke")]
    pub reason: Option<String>,
    /// The token prefix searched for (1 to 16 of a-z, 0-9).
    #[arg(long, env = "KEYGATE_PREFIX", default_value = "kg")]
    pub prefix: String,
}

/// `keygate audit …`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes of this owner's keys.
    #[arg(long)]
    pub owner: Option<String>,
    /// Only changes of this key: its id, its display prefix or the whole token.
    #[arg(long)]
    pub key: Option<String>,
    /// Only changes made at or after this time: RFC 3339, or a duration
    /// back from now (24h, 7d, 1mo).
    #[arg(long)]
    pub since: Option<String>,
    /// Only changes made before this time: RFC 3339, or a duration back from now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this action: key.create, key.update, key.revoke, key.rotate,
    /// key.delete or key.credits.
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many records (1 to 1000).
    #[arg(long, default_value = "100", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// `keygate keys create …`
#[derive(Clone, Debug, Args)]
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
    /// A rate limit: LIMIT requests per PERIOD (1s to 1d, units s, min, h,
    /// d), e.g. burst=20/1s or hourly=1000/1h,shared (one bucket for every
    /// key of the owner); repeat for more (at most 8, names unique).
    #[arg(
        long = "rate-limit",
        value_name = "NAME=LIMIT/PERIOD[,shared]",
        value_parser = parse_rate_limit
    )]
    pub rate_limits: Vec<RateLimit>,
    /// Credits: a balance of N (0 to 1000000000000) that each request
    /// spends. Without it the key is unlimited.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS)
    )]
    pub credits: Option<u64>,
    /// Refill the credits: set the balance to N at 00:00 UTC every day,
    /// week (Monday) or month (the 1st), e.g. 5000/month. Needs --credits.
    #[arg(
        long,
        value_name = "N/EVERY",
        requires = "credits",
        value_parser = parse_refill
    )]
    pub refill: Option<Refill>,
}

/// `keygate keys update …`: only what is given changes.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .multiple(true)
        .required(true)
        .args([
            "name", "description", "scopes", "metadata", "ip_allow", "no_ip_allow",
            "ip_deny", "no_ip_deny", "rate_limits", "no_rate_limits", "credits", "no_credits",
        ])
))]
pub struct UpdateArgs {
    /// The key: its id, its display prefix or the whole token.
    pub id: String,
    /// A new name, unique per owner among active keys.
    #[arg(long)]
    pub name: Option<String>,
    /// A new description; an empty one clears it.
    #[arg(long)]
    pub description: Option<String>,
    /// The new scopes, each already granted to the key (scopes may only
    /// narrow); repeat for more. They replace the key's scopes.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// New metadata, a JSON object of at most 4 KiB, replacing the old one.
    #[arg(long)]
    pub metadata: Option<String>,
    /// An allowed address or CIDR range; repeat for more. They replace
    /// the allow list.
    #[arg(long = "ip-allow", conflicts_with = "no_ip_allow")]
    pub ip_allow: Vec<String>,
    /// Empty the allow list (every address is allowed).
    #[arg(long)]
    pub no_ip_allow: bool,
    /// A denied address or CIDR range; repeat for more. They replace the
    /// deny list.
    #[arg(long = "ip-deny", conflicts_with = "no_ip_deny")]
    pub ip_deny: Vec<String>,
    /// Empty the deny list.
    #[arg(long)]
    pub no_ip_deny: bool,
    /// A rate limit as for `keys create`; repeat for more. They replace
    /// the key's rate limits.
    #[arg(
        long = "rate-limit",
        value_name = "NAME=LIMIT/PERIOD[,shared]",
        value_parser = parse_rate_limit,
        conflicts_with = "no_rate_limits"
    )]
    pub rate_limits: Vec<RateLimit>,
    /// Remove every rate limit.
    #[arg(long)]
    pub no_rate_limits: bool,
    /// New credits: the balance and (with --refill) the refill are
    /// replaced. To add to the balance, see `keys credits`.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS),
        conflicts_with = "no_credits"
    )]
    pub credits: Option<u64>,
    /// Refill the new credits: N at 00:00 UTC every day, week or month.
    /// Needs --credits.
    #[arg(long, value_name = "N/EVERY", requires = "credits", value_parser = parse_refill)]
    pub refill: Option<Refill>,
    /// Remove the credits: the key becomes unlimited.
    #[arg(long)]
    pub no_credits: bool,
}

/// `keygate serve …`. Every flag can also be set by the environment
/// variable named in its help (a flag wins over its variable).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read any of these flags (and --database-url) from a TOML file, each
    /// under its long name (`max-connections = 64`); a flag or its
    /// variable wins over the file.
    #[arg(long, env = "KEYGATE_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address of the HTTP API.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Forward authenticated requests to this http:// URL.
    #[arg(long, env = "KEYGATE_UPSTREAM")]
    pub upstream: Option<String>,
    /// Address of the proxy listener (with --upstream).
    #[arg(
        long,
        env = "KEYGATE_PROXY_LISTEN",
        default_value = "127.0.0.1:8000",
        requires = "upstream"
    )]
    pub proxy_listen: String,
    /// Also serve Envoy's external authorization API over gRPC
    /// (envoy.service.auth.v3.Authorization/Check, with grpc.health.v1) on
    /// this address: the same rules, trusted proxies and limits as
    /// /v1/forward-auth.
    #[arg(long, env = "KEYGATE_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// Route rules (TOML) for forward auth and the proxy.
    #[arg(long, env = "KEYGATE_RULES")]
    pub rules: Option<std::path::PathBuf>,
    /// Where forward auth reads the original request: nginx (X-Original-*), traefik (X-Forwarded-*),
    /// envoy (the request itself), or auto (every convention present; disagreeing ones are a 400).
    #[arg(long, env = "KEYGATE_FORWARD_AUTH", default_value = "auto",
          value_parser = ["nginx", "traefik", "envoy", "auto"])]
    pub forward_auth: String,
    /// A proxy whose X-Forwarded-* / X-Original-* headers are believed; repeat
    /// for more (comma-separated in the variable). Default: loopback.
    #[arg(
        long = "trusted-proxy",
        env = "KEYGATE_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Log format on stderr.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
    /// How long a request head may take to arrive on any listener
    /// (`500ms`, `10s`, `1min`); a slower connection is closed.
    #[arg(long, env = "KEYGATE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: std::time::Duration,
    /// How long a kept-alive connection may stay idle before it is closed.
    #[arg(long, env = "KEYGATE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: std::time::Duration,
    /// Most connections open at once on each listener; further ones wait
    /// in the listen backlog until one closes.
    #[arg(
        long,
        env = "KEYGATE_MAX_CONNECTIONS",
        default_value = "1024",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub max_connections: u32,
    /// Count rate limits in this Redis (`redis://[:PASSWORD@]HOST[:PORT][/DB]`,
    /// `rediss://` for TLS) so that every `serve` pointed at it shares the
    /// buckets exactly. Without it, limits are counted in this process.
    /// Redis must answer at start, else `serve` exits; a password in the
    /// URL is never printed.
    #[arg(long, env = "KEYGATE_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// With --redis-url: refuse a request counted against rate limits with
    /// 503 `unavailable` (Retry-After: 1) while Redis cannot be reached.
    /// Default: fail open (admitted uncounted, warned in the logs). Keys
    /// without limits are never affected; without --redis-url it has no
    /// effect (the in-process limiter never fails). In the variable: true
    /// or false.
    #[arg(long, env = "KEYGATE_LIMITS_FAIL_CLOSED")]
    pub limits_fail_closed: bool,
    /// Serve `GET /metrics` (Prometheus text format) to anyone who can
    /// reach the API listener. Default: only to a key with the
    /// `metrics:read` scope. In the variable: true or false.
    #[arg(long, env = "KEYGATE_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// How long audit records are kept (90d, 1y, …; units as everywhere:
    /// s, min, h, d, w, mo, y); older ones are deleted in the background.
    /// Default: never (every record is kept).
    #[arg(long, env = "KEYGATE_AUDIT_RETENTION", value_name = "DURATION")]
    pub audit_retention: Option<String>,
    /// Serve GitHub's secret scanning partner endpoint, POST
    /// /v1/secret-scanning/github, verifying reports with the public keys
    /// in FILE (the JSON of
    /// <https://api.github.com/meta/public_keys/secret_scanning>); reported
    /// live keys are revoked. Without it the route does not exist.
    #[arg(long, env = "KEYGATE_GITHUB_KEYS", value_name = "FILE")]
    pub github_keys: Option<std::path::PathBuf>,
}

impl ServeArgs {
    /// The listener bounds these flags set.
    pub fn limits(&self) -> crate::listener::ListenerLimits {
        crate::listener::ListenerLimits::default()
            .header_timeout(self.header_timeout)
            .idle_timeout(self.idle_timeout)
            .max_connections(usize::try_from(self.max_connections).unwrap_or(usize::MAX))
    }
}

/// `NAME=LIMIT/PERIOD[,shared]`, the syntax of `--rate-limit`.
fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    const SYNTAX: &str = "expected NAME=LIMIT/PERIOD[,shared], e.g. burst=20/1s";
    let (name, rest) = text.split_once('=').ok_or(SYNTAX)?;
    let (rate, shared) = match rest.split_once(',') {
        None => (rest, false),
        Some((rate, "shared")) => (rate, true),
        Some((_, flag)) => {
            let shown: String = flag.chars().take(32).collect();
            return Err(format!(
                "{shown:?} is not a flag of a rate limit (only shared is)"
            ));
        }
    };
    let (limit, period) = rate.split_once('/').ok_or(SYNTAX)?;
    let name = LimitName::parse(name).map_err(|e| format!("name: {e}"))?;
    let limit: u64 = limit
        .parse()
        .map_err(|_| "limit: expected a whole number from 1 to 1000000000".to_string())?;
    let period = Period::parse(period).map_err(|e| format!("period: {e}"))?;
    let limit = RateLimit::new(name, limit, period).map_err(|e| format!("limit: {e}"))?;
    Ok(limit.shared(shared))
}

/// `N/EVERY`, the syntax of `--refill`: an amount from 1 to 10^12 and
/// `day`, `week` or `month`.
fn parse_refill(text: &str) -> Result<Refill, String> {
    const SYNTAX: &str = "expected N/EVERY, e.g. 5000/month (EVERY: day, week or month)";
    let (amount, every) = text.split_once('/').ok_or(SYNTAX)?;
    let amount: u64 = amount
        .parse()
        .map_err(|_| format!("amount: expected a whole number from 1 to {MAX_CREDITS}"))?;
    let every = every
        .parse::<RefillEvery>()
        .map_err(|e| format!("every: {e}"))?;
    Refill::new(amount, every).map_err(|e| format!("amount: {e}"))
}

/// A listener timeout: a positive whole number of `ms`, `s` or `min`, at
/// most one day. A bare `m` is refused as ambiguous (minutes to some
/// tools, months to others), with a message naming `min`.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a number and a unit: ms, s or min (e.g. 10s)".to_string())?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "min" => Duration::from_secs(n.saturating_mul(60)),
        "m" => return Err("\"m\" is ambiguous: write min (minutes)".into()),
        _ => return Err("the unit must be ms, s or min (e.g. 10s)".into()),
    };
    if duration.is_zero() || duration > Duration::from_secs(86_400) {
        return Err("must be more than 0 and at most 1 day".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::{Cli, Command, ServeArgs, parse_rate_limit, parse_refill, parse_timeout};
    use crate::credits::RefillEvery;

    fn serve(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["keygate", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => *args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn serve_takes_a_redis_url_and_fails_open_unless_told_otherwise() {
        let args = serve(&["--redis-url", "redis://127.0.0.1:6379/2"]);
        assert_eq!(args.redis_url.as_deref(), Some("redis://127.0.0.1:6379/2"));
        assert!(!args.limits_fail_closed);
        let args = serve(&["--redis-url", "redis://cache:6379", "--limits-fail-closed"]);
        assert!(args.limits_fail_closed);
        // Harmless without Redis: accepted, and the in-process limiter never fails.
        let args = serve(&["--limits-fail-closed"]);
        assert!(args.limits_fail_closed);
        assert_eq!(args.redis_url, None);
        // A flag, not an option taking a value.
        assert!(Cli::try_parse_from(["keygate", "serve", "--limits-fail-closed=yes"]).is_err());
    }

    #[test]
    fn refills_take_an_amount_and_a_period() {
        let refill = parse_refill("5000/month").unwrap();
        assert_eq!(
            (refill.amount(), refill.every()),
            (5000, RefillEvery::Month)
        );
        assert_eq!(parse_refill("1/day").unwrap().every(), RefillEvery::Day);
        for (bad, says) in [
            ("5000", "expected N/EVERY"),
            ("5000/monthly", "every:"),
            ("5000/1mo", "every:"),
            ("x/day", "amount:"),
            ("0/day", "amount:"),
            ("-1/day", "amount:"),
            ("1000000000001/week", "amount:"),
        ] {
            let error = parse_refill(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn rate_limits_take_name_limit_period_and_an_optional_shared() {
        let burst = parse_rate_limit("burst=20/1s").unwrap();
        assert_eq!(
            (
                burst.name().as_str(),
                burst.limit(),
                burst.period().as_secs()
            ),
            ("burst", 20, 1)
        );
        assert!(!burst.is_shared());
        let hourly = parse_rate_limit("hourly=1000/1h,shared").unwrap();
        assert!(hourly.is_shared());
        assert_eq!(hourly.period().as_secs(), 3600);
        for (bad, says) in [
            ("burst", "expected NAME=LIMIT/PERIOD"),
            ("burst=20", "expected NAME=LIMIT/PERIOD"),
            ("Burst=20/1s", "name:"),
            ("=20/1s", "name:"),
            ("burst=x/1s", "limit:"),
            ("burst=-1/1s", "limit:"),
            ("burst=0/1s", "limit:"),
            ("burst=1000000001/1s", "limit:"),
            ("burst=20/2d", "period:"),
            ("burst=20/1m", "period:"),
            ("burst=20/1s,private", "only shared"),
            ("burst=20/1s,shared,shared", "only shared"),
        ] {
            let error = parse_rate_limit(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn timeouts_take_ms_s_and_min_and_refuse_the_rest() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2min"), Ok(Duration::from_secs(120)));
        for bad in [
            "",
            "10",
            "s",
            "0s",
            "1m",
            "-1s",
            "1.5s",
            "2d",
            "1h",
            "99999999999999999999s",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_timeout("1441min").is_err());
    }
}
