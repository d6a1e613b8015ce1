//! HTTP load benchmark: keygate's middleware against what people compare it
//! with, over real sockets, measured with `wrk`.
//!
//! One process serves four variants of the same axum app (`GET /` answering
//! a short fixed body), each on its own `127.0.0.1` port, in one tokio
//! multi-thread runtime with 2 workers (`--runtime current`: one
//! current-thread runtime on a thread of its own):
//!
//! 1. `no_auth` — no middleware;
//! 2. `keygate` — `.route_layer(keygate.layer().require("workspaces:read"))`
//!    over an [`SqliteStore`] (temporary file) holding one valid key with
//!    that scope, the cache warmed first so every request is a cache hit,
//!    usage tracking on (the default): production configuration, a scope
//!    requirement on the route as an application would set it;
//! 3. `tower_http_bearer` — tower-http's `ValidateRequestHeaderLayer::bearer`
//!    (a plain `==` on the header; the usual baseline);
//! 4. `sqlite_per_request` — what people write without keygate: a
//!    `from_fn_with_state` middleware hashing the Bearer token with SHA-256
//!    and running `SELECT owner, revoked FROM api_keys WHERE hash = ?` on an
//!    sqlx `SqlitePool` (the same file, WAL, 1000 rows, index on `hash`) for
//!    every request.
//!
//! Every app is served with `into_make_service_with_connect_info`, as the
//! README shows for keygate, so the only difference is the middleware.
//! `wrk -t1 -c32 -d<secs>s --latency` then hits each variant in turn,
//! round-robin (each round starting one variant later, so no variant always
//! runs first), for R rounds, after a 1 s warm-up per variant. The tables
//! show per variant the median over rounds of requests/s, mean latency, p50,
//! p99 and the server's CPU time (user + system, every thread of this
//! process, from `/proc/self/stat`) per request; then the throughput ratios
//! of keygate to the other three — of the medians and per round (runs
//! seconds apart) — next to two references: `no_auth / sqlite_per_request`,
//! the most any middleware could score against the SQLite one here, and
//! `tower_http_bearer / no_auth`, which should be about 1 and so shows the
//! noise. Only ratios measured in the same run mean anything: other work on
//! the machine moves the absolute numbers, and on a 2-core machine wrk and
//! the server share the cores, so CPU per request is the steadier measure of
//! what a middleware costs.
//!
//! Run (needs `wrk` on `PATH`; traffic only ever goes to 127.0.0.1):
//!
//! ```sh
//! cargo bench --bench http_load -- --seconds 5 --rounds 3
//! cargo bench --bench http_load -- --seconds 5 --rounds 3 --runtime current
//! ```
//!
//! `-- --only keygate` loads one variant alone (to profile the server, e.g.
//! `perf record -p <pid>` while it runs); `-- --no-usage` turns usage
//! tracking off in the keygate variant (a diagnostic, not production).
//!
//! Results: `benches/results/load.md`.

use std::net::SocketAddr;
use std::process::Command;
use std::str::FromStr as _;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header::AUTHORIZATION};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use keygate::{Keygate, NewKey, Pepper, SqliteStore};
use sha2::{Digest as _, Sha256};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The variants, in round-robin order.
const VARIANTS: [&str; 4] = [
    "no_auth",
    "keygate",
    "tower_http_bearer",
    "sqlite_per_request",
];

/// wrk's settings, fixed by the benchmark's definition.
const WRK_THREADS: u32 = 1;
const WRK_CONNECTIONS: u32 = 32;

/// Rows in the `sqlite_per_request` table (one of them the benchmark key).
const SQLITE_ROWS: usize = 1000;

/// The handler every variant serves.
async fn hello() -> &'static str {
    "hello, world\n"
}

fn app() -> Router {
    Router::new().route("/", get(hello))
}

/// The hand-written middleware: SHA-256 of the Bearer token, one SQLite
/// query per request, 401 on a miss or a revoked key.
async fn sqlite_auth(State(pool): State<SqlitePool>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let hash = Sha256::digest(token.as_bytes());
    let row: Result<Option<(String, bool)>, sqlx::Error> =
        sqlx::query_as("SELECT owner, revoked FROM api_keys WHERE hash = ?")
            .bind(&hash[..])
            .fetch_optional(&pool)
            .await;
    match row {
        Ok(Some((_owner, false))) => next.run(request).await,
        Ok(_) => StatusCode::UNAUTHORIZED.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Command-line settings (after `cargo bench --bench http_load --`).
struct Args {
    seconds: u32,
    rounds: u32,
    /// `--only <variant>`: load that variant alone (for profiling).
    only: Option<usize>,
    /// `--no-usage`: the keygate variant without usage tracking (to see
    /// what tracking costs; not the production configuration).
    no_usage: bool,
    /// `--runtime current`: serve on tokio's current-thread runtime (one
    /// thread) instead of the multi-thread runtime with 2 workers.
    current_thread: bool,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            seconds: 5,
            rounds: 3,
            only: None,
            no_usage: false,
            current_thread: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> u32 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&v| v > 0)
                    .unwrap_or_else(|| panic!("{name} needs a positive integer"))
            };
            match arg.as_str() {
                "--seconds" => args.seconds = value("--seconds"),
                "--rounds" => args.rounds = value("--rounds"),
                "--no-usage" => args.no_usage = true,
                "--runtime" => match it.next().as_deref() {
                    Some("current") => args.current_thread = true,
                    Some("multi") => args.current_thread = false,
                    other => panic!("--runtime current|multi, not {other:?}"),
                },
                "--only" => {
                    let name = it.next().unwrap_or_default();
                    let v = VARIANTS.iter().position(|v| *v == name);
                    args.only = Some(v.unwrap_or_else(|| panic!("unknown variant {name:?}")));
                }
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                other => panic!(
                    "unknown argument {other:?}; use --seconds N --rounds N [--only VARIANT] [--no-usage] [--runtime current|multi]"
                ),
            }
        }
        assert!(
            args.seconds * args.rounds * VARIANTS.len() as u32 <= 240,
            "keep the whole run under ~4 minutes"
        );
        args
    }
}

/// What one wrk run reported.
#[derive(Clone, Debug, Default)]
struct WrkResult {
    requests_per_sec: f64,
    avg_us: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: String,
    /// CPU time (user + system, every thread) this process — the server —
    /// spent per request during the run.
    server_cpu_us: f64,
}

/// A wrk duration (`412.00us`, `1.20ms`, `2.00s`) in microseconds.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(number * factor)
}

fn parse_wrk(output: &str) -> Option<WrkResult> {
    let mut result = WrkResult::default();
    let mut got_rps = false;
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", avg, _stdev, _max, _within] => result.avg_us = micros(avg)?,
            ["50%", value] => result.p50_us = micros(value)?,
            ["99%", value] => result.p99_us = micros(value)?,
            ["Requests/sec:", value] => {
                result.requests_per_sec = value.parse().ok()?;
                got_rps = true;
            }
            [n, "requests", "in", ..] => result.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => result.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", ..] => result.socket_errors = words[2..].join(" "),
            _ => {}
        }
    }
    got_rps.then_some(result)
}

/// The wrk command line against `port` (the token is a fresh throwaway key).
fn wrk_command(port: u16, seconds: u32, token: &str) -> Command {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{port}/"));
    command
}

/// CPU seconds (user + system, all threads) this process has used, from
/// `/proc/self/stat` (clock ticks of 1/100 s).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after "pid (comm) ": state is the first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / CLOCK_TICKS
}

/// `getconf CLK_TCK` on Linux.
const CLOCK_TICKS: f64 = 100.0;

fn run_wrk(port: u16, seconds: u32, token: &str) -> WrkResult {
    let cpu_before = process_cpu_secs();
    let output = wrk_command(port, seconds, token)
        .output()
        .expect("cannot run wrk: install it with `apt-get install -y wrk`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cpu = process_cpu_secs() - cpu_before;
    let mut result =
        parse_wrk(&stdout).unwrap_or_else(|| panic!("cannot parse wrk output:\n{stdout}"));
    result.server_cpu_us = cpu * 1e6 / result.requests.max(1) as f64;
    result
}

/// The status code of one `GET /` over a fresh connection.
async fn status_of(port: u16, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Serves `app` on a fresh 127.0.0.1 port.
async fn serve(app: Router) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    port
}

/// Opens the `sqlite_per_request` pool on `path` and fills its table:
/// `SQLITE_ROWS - 1` random hashes plus the SHA-256 of `token`.
async fn sqlite_table(path: &std::path::Path, token: &str) -> SqlitePool {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, hash BLOB NOT NULL, \
         owner TEXT NOT NULL, revoked BOOLEAN NOT NULL DEFAULT 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash)")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..SQLITE_ROWS {
        let hash = if i == SQLITE_ROWS / 2 {
            Sha256::digest(token.as_bytes())
        } else {
            Sha256::digest(format!("other-key-{i}").as_bytes())
        };
        sqlx::query("INSERT INTO api_keys (hash, owner) VALUES (?, ?)")
            .bind(&hash[..])
            .bind(format!("owner{i}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    pool
}

/// Starts the four variants; returns the token and each variant's port.
async fn start(dir: &std::path::Path, no_usage: bool) -> (String, Vec<u16>) {
    let path = dir.join("bench.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mut builder = Keygate::builder(store).pepper(Pepper::random().unwrap());
    if no_usage {
        builder = builder.usage_flush_interval(None);
    }
    let keygate = builder.build().unwrap();
    let token = keygate
        .keys()
        .create(NewKey::new("bench", "http-load").scopes(["workspaces:read"]))
        .await
        .unwrap()
        .token
        .expose()
        .to_owned();
    // Warm the cache: every benchmark request is a hit.
    keygate.verify(&token).await.unwrap();
    let pool = sqlite_table(&path, &token).await;

    #[allow(deprecated)] // tower-http 0.6.7 deprecated it as "too basic"; it is the baseline.
    let bearer = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(&token);
    let ports = vec![
        serve(app()).await,
        serve(app().route_layer(keygate.layer().require("workspaces:read").unwrap())).await,
        serve(app().layer(bearer)).await,
        serve(app().layer(from_fn_with_state(pool, sqlite_auth))).await,
    ];
    // Each variant answers the token with 200 and (except no_auth) its
    // absence with 401.
    for (name, &port) in VARIANTS.iter().zip(&ports) {
        assert_eq!(
            status_of(port, Some(&token)).await,
            200,
            "{name} with token"
        );
        let without = status_of(port, None).await;
        let expected = if *name == "no_auth" { 200 } else { 401 };
        assert_eq!(without, expected, "{name} without token");
    }
    (token, ports)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn shell(command: &str, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({command}: {e})"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Indices into [`VARIANTS`].
const NO_AUTH: usize = 0;
const KEYGATE: usize = 1;
const BEARER: usize = 2;
const SQLITE: usize = 3;

/// Prints the medians, the throughput ratios and the CPU per request.
fn report(results: &[Vec<WrkResult>], rounds: u32) {
    // Medians over rounds.
    let med = |v: usize, f: fn(&WrkResult) -> f64| -> f64 {
        median(&mut results[v].iter().map(f).collect::<Vec<_>>())
    };
    println!("## Medians over {rounds} rounds");
    println!();
    println!("| variant | req/s | avg | p50 | p99 | server CPU / req | req/s per round |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (v, name) in VARIANTS.iter().enumerate() {
        let per_round = results[v]
            .iter()
            .map(|r| format!("{:.0}", r.requests_per_sec))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {name} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.1} µs | {per_round} |",
            med(v, |r| r.requests_per_sec),
            med(v, |r| r.avg_us),
            med(v, |r| r.p50_us),
            med(v, |r| r.p99_us),
            med(v, |r| r.server_cpu_us),
        );
    }
    println!();

    // Ratios: of the medians, and per round (runs seconds apart).
    let ratios: [(usize, usize, Option<f64>, &str); 5] = [
        (KEYGATE, NO_AUTH, Some(0.95), ""),
        (KEYGATE, BEARER, None, ""),
        (KEYGATE, SQLITE, Some(5.0), ""),
        (
            NO_AUTH,
            SQLITE,
            None,
            "the most any middleware could reach against sqlite_per_request here",
        ),
        (BEARER, NO_AUTH, None, "noise check: should be about 1"),
    ];
    println!("## Throughput ratios");
    println!();
    println!("| ratio | of medians | median of per-round | per round | target |");
    println!("|---|---:|---:|---|---|");
    for (num, den, target, note) in ratios {
        let of_medians = med(num, |r| r.requests_per_sec) / med(den, |r| r.requests_per_sec);
        let mut per_round: Vec<f64> = results[num]
            .iter()
            .zip(&results[den])
            .map(|(n, d)| n.requests_per_sec / d.requests_per_sec)
            .collect();
        let listed = per_round
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ");
        let of_rounds = median(&mut per_round);
        let target = match target {
            Some(t) if of_medians >= t && of_rounds >= t => format!(">= {t} (met)"),
            Some(t) => format!(">= {t} (MISSED)"),
            None => note.to_owned(),
        };
        println!(
            "| {} / {} | {of_medians:.3} | {of_rounds:.3} | {listed} | {target} |",
            VARIANTS[num], VARIANTS[den]
        );
    }
    println!();

    // Server CPU per request: less sensitive than throughput to what else
    // runs on the machine.
    println!("## Server CPU per request (user + system, all server threads)");
    println!();
    println!("| variant | median | minus no_auth | ratio to no_auth | per round |");
    println!("|---|---:|---:|---:|---|");
    let base = med(NO_AUTH, |r| r.server_cpu_us);
    for (v, name) in VARIANTS.iter().enumerate() {
        let cpu = med(v, |r| r.server_cpu_us);
        let listed = results[v]
            .iter()
            .map(|r| format!("{:.1}", r.server_cpu_us))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {name} | {cpu:.1} µs | {:+.1} µs | {:.3} | {listed} |",
            cpu - base,
            cpu / base
        );
    }
}

fn main() {
    let args = Args::parse();
    println!("# http_load");
    println!(
        "command: cargo bench --bench http_load -- --seconds {} --rounds {}{}",
        args.seconds,
        args.rounds,
        args.only
            .map(|v| format!(" --only {}", VARIANTS[v]))
            .unwrap_or_default()
            + if args.no_usage { " --no-usage" } else { "" }
            + if args.current_thread {
                " --runtime current"
            } else {
                ""
            }
    );
    println!(
        "machine: nproc {}, kernel {}, {}, {}",
        shell("nproc", &[]),
        shell("uname", &["-r"]),
        shell("rustc", &["--version"]),
        shell("wrk", &["--version"])
            .lines()
            .next()
            .unwrap_or("wrk ?")
            .split(" [")
            .next()
            .unwrap_or_default(),
    );
    println!("load average before: {}", loadavg());
    println!(
        "server: one process, tokio {}; \
         wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} --latency, {}s per run, {} rounds, \
         1 s warm-up per variant",
        if args.current_thread {
            "current-thread runtime (one thread)"
        } else {
            "multi-thread runtime with 2 workers"
        },
        args.seconds,
        args.rounds
    );

    let dir = tempfile::tempdir().unwrap();
    let (token, ports, runtime) = if args.current_thread {
        // A current-thread runtime runs its tasks only inside `block_on`:
        // it gets a thread of its own, serving until the process ends.
        let (sender, started) = std::sync::mpsc::channel();
        let path = dir.path().to_owned();
        let no_usage = args.no_usage;
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                sender.send(start(&path, no_usage).await).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let (token, ports) = started.recv().unwrap();
        (token, ports, None)
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (token, ports) = runtime.block_on(start(dir.path(), args.no_usage));
        (token, ports, Some(runtime))
    };
    println!(
        "wrk command per variant: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{}s --latency \
         -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:<port>/",
        args.seconds
    );
    println!();

    for &port in &ports {
        run_wrk(port, 1, &token);
    }
    if let Some(v) = args.only {
        println!("pid {}; loading {} alone", std::process::id(), VARIANTS[v]);
        for round in 1..=args.rounds {
            let r = run_wrk(ports[v], args.seconds, &token);
            println!(
                "round {round}: {:.0} req/s, avg {:.0} µs, p50 {:.0} µs, p99 {:.0} µs, \
                 server CPU {:.1} µs/req",
                r.requests_per_sec, r.avg_us, r.p50_us, r.p99_us, r.server_cpu_us
            );
        }
        return;
    }

    let mut results: Vec<Vec<WrkResult>> = vec![Vec::new(); VARIANTS.len()];
    println!(
        "| round | variant | req/s | avg | p50 | p99 | server CPU / req | requests | non-2xx | socket errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for round in 0..args.rounds as usize {
        for step in 0..VARIANTS.len() {
            let v = (round + step) % VARIANTS.len();
            let r = run_wrk(ports[v], args.seconds, &token);
            println!(
                "| {} | {} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.1} µs | {} | {} | {} |",
                round + 1,
                VARIANTS[v],
                r.requests_per_sec,
                r.avg_us,
                r.p50_us,
                r.p99_us,
                r.server_cpu_us,
                r.requests,
                r.non_2xx,
                if r.socket_errors.is_empty() {
                    "none"
                } else {
                    &r.socket_errors
                },
            );
            assert_eq!(r.non_2xx, 0, "{} answered non-2xx", VARIANTS[v]);
            results[v].push(r);
        }
    }
    println!();
    println!("load average after: {}", loadavg());
    println!();

    report(&results, args.rounds);
    drop(runtime);
}
