//! What a cached keygate request costs in a real HTTP server, counted in
//! instructions: callgrind counts the same total for the same binary and
//! input whatever else the machine is doing, so this tells apart changes
//! that wrk's timings on a shared 2-core machine cannot.
//!
//! ```sh
//! apt-get install -y valgrind
//! cargo bench --bench http_instructions
//! cargo bench --bench http_instructions -- --requests 4000,24000 --variants plain,keygate
//! ```
//!
//! For each variant the bench starts itself as an axum server (tokio's
//! current-thread runtime, `axum::serve` with
//! `into_make_service_with_connect_info`, as the README shows) under
//! `valgrind --tool=callgrind`, and sends it, from this process and over one
//! keep-alive loopback connection, `GET /orders` with the key as a Bearer
//! token, one request after another, checking every answer is a 200. The
//! whole server process is counted: accepting, hyper's parsing and
//! writing, axum's routing, keygate, the handler. Each variant runs twice,
//! with N₁ and N₂ requests; (total₂ − total₁) / (N₂ − N₁) is the cost per
//! request with the start-up (valgrind, runtime, building keygate, creating
//! and caching the key) cancelled out. The variants:
//!
//! - `plain`: `Router::new().route("/orders", get(handler))`;
//! - `keygate`: the same route with
//!   `.route_layer(keygate.layer().require("orders:read"))`: one cached key
//!   holding `orders:read`, usage tracking on (the default), a
//!   [`MemoryStore`] (a cached request never reads the store);
//! - `tower_http_bearer`: tower-http's `ValidateRequestHeaderLayer::bearer`
//!   as the route layer (a plain comparison with one static token), the
//!   usual hand-written baseline.
//!
//! Every variant gets the same request bytes (the plain one ignores the
//! header). Valgrind's virtual CPU has no SHA-NI, so SHA-256 runs in
//! software there (`sha2`'s `compress256`, 3 481 instructions a block);
//! the report shows the total as counted, the software SHA-256 part
//! (callgrind's inclusive count of `compress256`), and the total with
//! that part replaced by the same blocks at SHA-NI's cost: [`SHANI_BLOCK`]
//! instructions a block, counted in `sha2`'s SHA-NI loop (see its doc).
//! Results: BENCHMARKS.md.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use keygate::{Keygate, MemoryStore, NewKey, Pepper};

/// Instructions of one 64-byte block in `sha2`'s SHA-NI compression
/// (`sha2::sha256::x86::digest_blocks`, sha2 0.10.9, the version keygate's
/// `hmac` uses), one block a call as HMAC calls it: the 164 instructions of
/// its per-block loop plus the 24 that load and store the state, counted
/// in a release build's disassembly (`objdump -d --no-show-raw-insn`, from
/// the loop's head to its backward jump, and the entry and exit around it).
/// `compress256`'s feature check before it is left out (a few
/// instructions), so the adjusted figure errs low by at most a dozen
/// instructions a request.
const SHANI_BLOCK: u64 = 188;

/// The 64-byte blocks one HMAC-SHA256 of a token compresses: the pepper's
/// keyed state is prepared once, so each token costs its inner hash (a
/// token of 60–70 bytes plus padding: 2 blocks) and the outer hash (the
/// 32-byte inner digest plus padding: 1 block).
const HMAC_BLOCKS: u64 = 3;

/// The variants, in the order they run.
const VARIANTS: [&str; 3] = ["plain", "keygate", "tower_http_bearer"];

/// The static token of the `tower_http_bearer` variant.
const STATIC_TOKEN: &str = "kg_live_static0token0for0the0tower0http0baseline0000000000";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let variant = args.get(i + 1).expect("--serve VARIANT");
        let requests: usize = value(&args, "--requests")
            .expect("--requests N")
            .parse()
            .expect("a number");
        serve(variant, requests);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` (as cargo's test runner asks).
        return;
    }
    let counts: Vec<usize> = value(&args, "--requests")
        .unwrap_or("2000,12000")
        .split(',')
        .map(|n| n.parse().expect("--requests N1,N2"))
        .collect();
    assert!(
        counts.len() == 2 && counts[0] < counts[1],
        "--requests N1,N2 with N1 < N2"
    );
    let variants: Vec<String> = value(&args, "--variants")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| VARIANTS.iter().map(|v| (*v).to_owned()).collect());
    let out = tempdir();

    println!(
        "per request, from {} and {} requests; SHA-256 at SHA-NI cost: {SHANI_BLOCK} instructions a block",
        counts[0], counts[1]
    );
    println!(
        "{:<18} {:>12} {:>14} {:>12} {:>14}",
        "variant", "counted", "SHA-256 (soft)", "SHA blocks", "with SHA-NI"
    );
    let mut plain = None;
    for variant in &variants {
        let first = count(&out, variant, counts[0]);
        let second = count(&out, variant, counts[1]);
        let n = (counts[1] - counts[0]) as f64;
        let total = (second.total as f64 - first.total as f64) / n;
        let sha = (second.sha as f64 - first.sha as f64) / n;
        let blocks = (second.blocks as f64 - first.blocks as f64) / n;
        let adjusted = total - sha + blocks * SHANI_BLOCK as f64;
        println!("{variant:<18} {total:>12.0} {sha:>14.0} {blocks:>12.2} {adjusted:>14.0}");
        if variant == "keygate" && (blocks - HMAC_BLOCKS as f64).abs() > 0.05 {
            println!("  (expected {HMAC_BLOCKS} SHA-256 blocks a request: the HMAC of the token)");
        }
        if variant == "plain" {
            plain = Some(adjusted);
        } else if let Some(plain) = plain {
            println!(
                "{:<18} {:>+57.0}",
                format!("  {variant} − plain"),
                adjusted - plain
            );
        }
    }
}

/// What callgrind counted for one server run.
struct Counted {
    /// Every instruction of the process.
    total: u64,
    /// Inclusive instructions of software SHA-256 compression.
    sha: u64,
    /// 64-byte blocks compressed (calls × blocks per call are not visible
    /// to callgrind; derived from `sha` and the per-block cost).
    blocks: u64,
}

/// Runs the server for `variant` under callgrind for `requests` requests.
fn count(out: &std::path::Path, variant: &str, requests: usize) -> Counted {
    let file = out.join(format!("callgrind.{variant}.{requests}"));
    let me = std::env::current_exe().expect("own path");
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(me)
        .args(["--serve", variant, "--requests", &requests.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("valgrind on PATH (apt-get install -y valgrind)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    lines.read_line(&mut line).expect("the server's first line");
    let mut words = line.split_whitespace();
    let addr: SocketAddr = words
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the server printed {line:?}"));
    let token = words.next().expect("the token").to_owned();
    drive(addr, &token, requests);
    let status = child.wait().expect("the server");
    assert!(status.success(), "the server exited with {status}");
    callgrind_totals(&file)
}

/// Sends `requests` requests over one keep-alive connection, each after
/// the previous answer, and checks each answer is a 200 with its body.
fn drive(addr: SocketAddr, token: &str, requests: usize) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let request = format!(
        "GET /orders HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\naccept: */*\r\n\r\n"
    );
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for i in 0..requests {
        stream.write_all(request.as_bytes()).expect("write");
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "request {i}: {status:?}"
        );
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        assert_eq!(body, b"ok");
    }
}

/// The process total and the software SHA-256 part of a callgrind file.
fn callgrind_totals(file: &std::path::Path) -> Counted {
    let text = std::fs::read_to_string(file).expect("callgrind output");
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("a total in the callgrind output");
    let annotated = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(file)
        .output()
        .expect("callgrind_annotate");
    let annotated = String::from_utf8_lossy(&annotated.stdout);
    // `compress256` is `sha2`'s entry: every block goes through it once.
    let sha = annotated
        .lines()
        .filter(|l| l.contains("sha2::sha256::compress256"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .replace(',', "")
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    Counted {
        total,
        sha,
        blocks: sha / SOFT_BLOCK,
    }
}

/// Instructions of one block in `sha2`'s software compression as callgrind
/// counts `compress256` called with one block (the loop is straight-line
/// code: every block costs the same): 3 481, measured by callgrind on a
/// loop of 1 000 such calls (3 428 a block when 1 000 go in one call). The
/// keygate variant shows 3.00 blocks a request, as [`HMAC_BLOCKS`] says.
const SOFT_BLOCK: u64 = 3_481;

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

fn tempdir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("keygate-http-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// The server: answers `requests` requests, then shuts down gracefully
/// (the last answer is written before the connection closes).
fn serve(variant: &str, requests: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let answered = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(tokio::sync::Notify::new());
        let handler = {
            let answered = answered.clone();
            let done = done.clone();
            move || async move {
                if answered.fetch_add(1, Ordering::Relaxed) + 1 == requests {
                    done.notify_one();
                }
                "ok"
            }
        };
        let routes = Router::new().route("/orders", get(handler));
        let (app, token, _keygate) = match variant {
            "plain" => (routes, STATIC_TOKEN.to_owned(), None),
            "tower_http_bearer" => {
                #[allow(deprecated)]
                let layer =
                    tower_http::validate_request::ValidateRequestHeaderLayer::bearer(STATIC_TOKEN);
                (routes.route_layer(layer), STATIC_TOKEN.to_owned(), None)
            }
            "keygate" => {
                let keygate = Keygate::builder(MemoryStore::new())
                    .pepper(Pepper::insecure_fixed_for_tests())
                    .build()
                    .expect("keygate");
                let created = keygate
                    .keys()
                    .create(NewKey::new("bench", "orders").scopes(["orders:read"]))
                    .await
                    .expect("create");
                let token = created.token.expose().to_owned();
                keygate.verify(&token).await.expect("warm the cache");
                let layer = keygate.layer().require("orders:read").expect("requirement");
                (routes.route_layer(layer), token, Some(keygate))
            }
            other => panic!("unknown variant {other:?} (one of {VARIANTS:?})"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        println!("{addr} {token}");
        std::io::stdout().flush().expect("flush");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { done.notified().await })
        .await
        .expect("serve");
    });
}
