//! Soak: many connections for a long time against each surface — the
//! middleware (an axum app in this process), forward auth and the
//! authenticating proxy (a real `keygate serve` process) — while keys are
//! created, revoked and rotated all along.
//!
//! ```text
//! cargo bench --bench soak -- [--seconds 60] [--connections 256] [--surface middleware|forward-auth|proxy]...
//! ```
//!
//! Every answer is judged against what the client knew when it sent the
//! request: 200 for a key that was live when the request began and still
//! was when it ended; 401 for a key revoked (or rotated away, grace 0)
//! before the request began — the mutations go through the same process
//! that answers, which promises that every request starting after the
//! call returns sees it; either for a key that changed meanwhile.
//! Anything else — another status, a dropped connection, a 200 for a key
//! already revoked — is an error, and the run exits 1. The resident memory
//! of the answering process is printed before and after each surface, and
//! a growth over 128 MiB is an error too.
//!
//! Not a `cargo test`: a full run takes over three minutes. CI runs a short
//! smoke (`--seconds 3 --connections 32`); BENCHMARKS.md records full runs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use keygate::{KeyId, Keygate, NewKey, Pepper, SqliteStore};
use tokio::net::{TcpListener, TcpStream};

const KEYGATE_BIN: &str = env!("CARGO_BIN_EXE_keygate");
/// Keys live at the start of each surface.
const INITIAL_KEYS: usize = 200;
/// One key change every this often.
const MUTATION_EVERY: Duration = Duration::from_millis(20);
/// Resident memory may grow by at most this much over a surface's run.
const RSS_GROWTH_LIMIT_KB: u64 = 128 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Surface {
    Middleware,
    ForwardAuth,
    Proxy,
}

impl Surface {
    fn name(self) -> &'static str {
        match self {
            Surface::Middleware => "middleware",
            Surface::ForwardAuth => "forward-auth",
            Surface::Proxy => "proxy",
        }
    }
}

struct Options {
    seconds: u64,
    connections: usize,
    surfaces: Vec<Surface>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 60,
        connections: 256,
        surfaces: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = value("--seconds").parse().expect("--seconds N"),
            "--connections" => {
                options.connections = value("--connections").parse().expect("--connections N")
            }
            "--surface" => options.surfaces.push(match value("--surface").as_str() {
                "middleware" => Surface::Middleware,
                "forward-auth" => Surface::ForwardAuth,
                "proxy" => Surface::Proxy,
                other => panic!("unknown surface {other}"),
            }),
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if options.surfaces.is_empty() {
        options.surfaces = vec![Surface::Middleware, Surface::ForwardAuth, Surface::Proxy];
    }
    options
}

// ---------------------------------------------------------------------------

/// What the clients know of a key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Live,
    /// A revocation or rotation is on its way: either answer is right.
    Changing,
    /// Revoked (or rotated away) by a call that has returned.
    Dead,
}

struct PoolKey {
    token: String,
    /// Its key id, to revoke or rotate it.
    id: String,
    state: State,
}

/// Every key of a run, and which are live or dead.
#[derive(Default)]
struct Pool {
    keys: Vec<PoolKey>,
    live: Vec<usize>,
    dead: Vec<usize>,
}

impl Pool {
    fn add(&mut self, (token, id): (String, String)) {
        self.live.push(self.keys.len());
        self.keys.push(PoolKey {
            token,
            id,
            state: State::Live,
        });
    }
}

/// How keys are changed: through the library handle (middleware) or the
/// HTTP API of the `serve` that answers (forward auth, proxy).
#[derive(Clone)]
enum Admin {
    Library(Keygate),
    Http { addr: SocketAddr, token: String },
}

impl Admin {
    async fn create(&self, n: usize) -> (String, String) {
        match self {
            Admin::Library(keygate) => {
                let created = keygate
                    .keys()
                    .create(NewKey::new("soak", format!("k{n}")).scopes(["items:read"]))
                    .await
                    .expect("create");
                (
                    created.token.expose().to_owned(),
                    created.key.id.to_string(),
                )
            }
            Admin::Http { addr, token } => {
                let body = format!(r#"{{"owner":"soak","name":"k{n}","scopes":["items:read"]}}"#);
                let json = admin_call(*addr, token, "/v1/keys", body, 201).await;
                (
                    json["key"].as_str().unwrap().to_owned(),
                    json["api_key"]["id"].as_str().unwrap().to_owned(),
                )
            }
        }
    }

    async fn revoke(&self, id: &str) {
        match self {
            Admin::Library(keygate) => {
                let id: KeyId = id.parse().unwrap();
                keygate
                    .keys()
                    .revoke(&id, Some("soak"))
                    .await
                    .expect("revoke");
            }
            Admin::Http { addr, token } => {
                let path = format!("/v1/keys/{id}/revoke");
                admin_call(*addr, token, &path, r#"{"reason":"soak"}"#.into(), 200).await;
            }
        }
    }

    async fn rotate(&self, id: &str) -> (String, String) {
        match self {
            Admin::Library(keygate) => {
                let id: KeyId = id.parse().unwrap();
                let created = keygate
                    .keys()
                    .rotate(&id, time::Duration::ZERO)
                    .await
                    .expect("rotate");
                (
                    created.token.expose().to_owned(),
                    created.key.id.to_string(),
                )
            }
            Admin::Http { addr, token } => {
                let path = format!("/v1/keys/{id}/rotate");
                let json = admin_call(*addr, token, &path, "{}".into(), 201).await;
                (
                    json["key"].as_str().unwrap().to_owned(),
                    json["api_key"]["id"].as_str().unwrap().to_owned(),
                )
            }
        }
    }
}

async fn admin_call(
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: String,
    expect: u16,
) -> serde_json::Value {
    let stream = TcpStream::connect(addr).await.expect("connect to the API");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::post(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.expect("an API answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        expect,
        "POST {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("JSON")
}

/// Changes keys until `stop`: creates, revocations and rotations in turn.
async fn mutate(pool: Arc<RwLock<Pool>>, admin: Admin, stop: Arc<AtomicBool>) -> [u64; 3] {
    let mut counts = [0u64; 3];
    let mut n = INITIAL_KEYS;
    let mut tick = tokio::time::interval(MUTATION_EVERY);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let op = counts.iter().sum::<u64>() % 3;
        if op == 0 {
            let created = admin.create(n).await;
            n += 1;
            pool.write().unwrap().add(created);
            counts[0] += 1;
            continue;
        }
        // Take a live key out of the live set before changing it.
        let (index, id) = {
            let mut pool = pool.write().unwrap();
            if pool.live.len() < 10 {
                continue;
            }
            let at = (next(&mut rng) as usize) % pool.live.len();
            let index = pool.live.swap_remove(at);
            pool.keys[index].state = State::Changing;
            (index, pool.keys[index].id.clone())
        };
        if op == 1 {
            admin.revoke(&id).await;
            counts[1] += 1;
        } else {
            let created = admin.rotate(&id).await;
            n += 1;
            pool.write().unwrap().add(created);
            counts[2] += 1;
        }
        let mut pool = pool.write().unwrap();
        pool.keys[index].state = State::Dead;
        pool.dead.push(index);
    }
    counts
}

fn next(state: &mut u64) -> u64 {
    // xorshift64*: the load's choices need no more than this.
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    requests: u64,
    ok: u64,
    refused: u64,
    errors: u64,
    /// 200 for a key revoked before the request began.
    late: u64,
    first_errors: Vec<String>,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.refused += other.refused;
        self.errors += other.errors;
        self.late += other.late;
        for e in other.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// One connection sending requests back to back until `stop`.
async fn client(
    addr: SocketAddr,
    path: &'static str,
    pool: Arc<RwLock<Pool>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Tally {
    let mut tally = Tally::default();
    let mut rng = seed | 1;
    let mut sender = None;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                        Ok((s, conn)) => {
                            tokio::spawn(conn);
                            sender = Some(s);
                        }
                        Err(e) => {
                            tally.error(format!("handshake: {e}"));
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tally.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>> =
            sender.as_mut().unwrap();
        // Nine requests in ten with a live key, one with a dead one.
        let (index, token, before) = {
            let pool = pool.read().unwrap();
            let roll = next(&mut rng);
            let set = if roll.is_multiple_of(10) && !pool.dead.is_empty() {
                &pool.dead
            } else {
                &pool.live
            };
            if set.is_empty() {
                continue;
            }
            let index = set[(roll >> 8) as usize % set.len()];
            let key = &pool.keys[index];
            (index, key.token.clone(), key.state)
        };
        let request = http::Request::get(path)
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::new())
            .unwrap();
        let started = Instant::now();
        let outcome = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        }
        .await;
        let elapsed = started.elapsed();
        tally.requests += 1;
        tally
            .latencies_us
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
        let after = pool.read().unwrap().keys[index].state;
        match outcome {
            Err(e) => {
                tally.error(format!("request: {e}"));
                sender = None;
            }
            Ok(200) if before == State::Dead => {
                tally.late += 1;
                tally.error(format!("200 for key #{index}, revoked before the request"));
            }
            Ok(200) => tally.ok += 1,
            Ok(401) if before == State::Live && after == State::Live => {
                tally.error(format!("401 for key #{index}, live all along"));
            }
            Ok(401) => tally.refused += 1,
            Ok(status) => tally.error(format!("status {status} for key #{index} ({before:?})")),
        }
    }
    tally
}

// ---------------------------------------------------------------------------

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `keygate serve` with the proxy in front of `upstream`, on SQLite in `dir`.
struct Serve {
    child: Child,
    api: SocketAddr,
    proxy: SocketAddr,
    admin: String,
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Serve {
    fn start(dir: &Path, upstream: SocketAddr) -> Serve {
        let (api, proxy) = (free_addr(), free_addr());
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = Command::new(KEYGATE_BIN)
            .current_dir(dir)
            .env_remove("KEYGATE_PEPPER")
            .env_remove("KEYGATE_DATABASE_URL")
            .env_remove("KEYGATE_CONFIG")
            // Warnings and errors only: the access log of every decision
            // would be the largest cost of the run.
            .env("RUST_LOG", "warn")
            .args(["serve", "--listen", &api.to_string()])
            .args(["--proxy-listen", &proxy.to_string()])
            .args(["--upstream", &format!("http://{upstream}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn keygate serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let admin = first.trim().to_owned();
        assert!(admin.starts_with("kg_"), "no bootstrap token: {first:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(api).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve {
            child,
            api,
            proxy,
            admin,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

struct Report {
    surface: Surface,
    tally: Tally,
    seconds: f64,
    mutations: [u64; 3],
    rss_before: u64,
    rss_after: u64,
    measured: &'static str,
}

async fn run_surface(
    surface: Surface,
    options: &Options,
    addr: SocketAddr,
    path: &'static str,
    admin: Admin,
    pid: u32,
    measured: &'static str,
) -> Report {
    let pool = Arc::new(RwLock::new(Pool::default()));
    for n in 0..INITIAL_KEYS {
        let created = admin.create(n).await;
        pool.write().unwrap().add(created);
    }
    let rss_before = rss_kb(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mutator = tokio::spawn(mutate(pool.clone(), admin, stop.clone()));
    let seed = AtomicU64::new(0x5eed);
    let clients: Vec<_> = (0..options.connections)
        .map(|_| {
            let seed = seed.fetch_add(0x9e37_79b9, Ordering::Relaxed);
            tokio::spawn(client(addr, path, pool.clone(), stop.clone(), seed))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for c in clients {
        tally.merge(c.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    let mutations = mutator.await.unwrap();
    let rss_after = rss_kb(pid);
    Report {
        surface,
        tally,
        seconds,
        mutations,
        rss_before,
        rss_after,
        measured,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let reports = runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // The upstream of the proxy, and the app of the middleware.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let app = Router::new().route("/items", get(|| async { "items\n" }));
            axum::serve(upstream, app).await.unwrap();
        });
        let mut reports = Vec::new();
        for &surface in &options.surfaces {
            let report = match surface {
                Surface::Middleware => {
                    let url = format!("sqlite://{}", dir.path().join("middleware.db").display());
                    let store = SqliteStore::open(&url).await.unwrap();
                    let keygate = Keygate::builder(store)
                        .pepper(Pepper::insecure_fixed_for_tests())
                        .build()
                        .unwrap();
                    let app = Router::new()
                        .route(
                            "/items",
                            get(|| async { "items\n" })
                                .route_layer(keygate.require("items:read").unwrap()),
                        )
                        .layer(keygate.layer());
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
                    run_surface(
                        surface,
                        &options,
                        addr,
                        "/items",
                        Admin::Library(keygate),
                        std::process::id(),
                        "this process (app and load)",
                    )
                    .await
                }
                Surface::ForwardAuth | Surface::Proxy => {
                    let sub = dir.path().join(surface.name());
                    std::fs::create_dir_all(&sub).unwrap();
                    let serve = Serve::start(&sub, upstream_addr);
                    let admin = Admin::Http {
                        addr: serve.api,
                        token: serve.admin.clone(),
                    };
                    let (addr, path) = match surface {
                        Surface::ForwardAuth => (serve.api, "/v1/forward-auth"),
                        _ => (serve.proxy, "/items"),
                    };
                    let report = run_surface(
                        surface,
                        &options,
                        addr,
                        path,
                        admin,
                        serve.child.id(),
                        "keygate serve",
                    )
                    .await;
                    drop(serve);
                    let log = std::fs::read_to_string(sub.join("serve.log")).unwrap_or_default();
                    let lines: Vec<&str> = log
                        .lines()
                        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                        .collect();
                    if !lines.is_empty() {
                        println!(
                            "{}: serve logged {} warning/error lines, e.g.:",
                            surface.name(),
                            lines.len()
                        );
                        for line in lines.iter().take(5) {
                            println!("  {line}");
                        }
                    }
                    report
                }
            };
            reports.push(report);
        }
        reports
    });

    println!(
        "\n{:<13} {:>4} {:>5} {:>9} {:>8} {:>9} {:>7} {:>6} {:>4} {:>7} {:>7} {:>7}  {:<17} RSS before -> after (MiB)",
        "surface",
        "s",
        "conns",
        "requests",
        "rps",
        "200",
        "401",
        "errors",
        "late",
        "p50 ms",
        "p99 ms",
        "max ms",
        "create/revoke/rot",
    );
    let mut failed = false;
    for mut r in reports {
        r.tally.latencies_us.sort_unstable();
        let l = &r.tally.latencies_us;
        let growth = r.rss_after.saturating_sub(r.rss_before);
        println!(
            "{:<13} {:>4.0} {:>5} {:>9} {:>8.0} {:>9} {:>7} {:>6} {:>4} {:>7.2} {:>7.2} {:>7.1}  {:<17} {:.1} -> {:.1} ({})",
            r.surface.name(),
            r.seconds,
            options.connections,
            r.tally.requests,
            r.tally.requests as f64 / r.seconds,
            r.tally.ok,
            r.tally.refused,
            r.tally.errors,
            r.tally.late,
            percentile(l, 0.50),
            percentile(l, 0.99),
            percentile(l, 1.0),
            format!("{}/{}/{}", r.mutations[0], r.mutations[1], r.mutations[2]),
            r.rss_before as f64 / 1024.0,
            r.rss_after as f64 / 1024.0,
            r.measured
        );
        for e in &r.tally.first_errors {
            println!("  error: {e}");
        }
        if r.tally.errors > 0 || r.tally.ok == 0 || r.tally.refused == 0 {
            failed = true;
        }
        if growth > RSS_GROWTH_LIMIT_KB {
            println!("  error: resident memory grew by {} MiB", growth / 1024);
            failed = true;
        }
    }
    if failed {
        println!("\nsoak FAILED");
        std::process::exit(1);
    }
    println!("\nsoak passed");
}
