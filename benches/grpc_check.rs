//! Envoy `Check` RPCs per second against `/v1/forward-auth` over HTTP/1.1,
//! on one server core, same keys, same run.
//!
//! One process: the server — `keygate::admin::router_with_gateway` (the
//! HTTP API with `/v1/forward-auth`) and `keygate::serve_check` (the gRPC
//! `Authorization/Check`), deciding with one `Gateway` over a
//! `MemoryStore` holding one key, on 127.0.0.1 — runs on its own thread in
//! a current-thread tokio runtime: one core. The load client runs in a
//! second runtime with one worker: `--concurrency` requests in flight
//! (HTTP/1.1: that many keep-alive connections, one request at a time each,
//! written and parsed by hand; gRPC: one HTTP/2 connection, that many
//! streams, tonic's client), `--requests` requests per round and
//! surface, both surfaces alternating for `--rounds` rounds (each round
//! starting with the other surface). Every answer is checked (200 with the
//! key's id; gRPC status OK) so that a refusal can never count as speed.
//! The key is cached after the first request: this measures the surfaces,
//! not the store.
//!
//! Run (bounded: 3 × 2 × 20 000 requests by default, a few seconds):
//!
//! ```sh
//! cargo bench --bench grpc_check -- --requests 20000 --rounds 3 --concurrency 16
//! ```
//!
//! It prints requests/s per round and surface and the median ratio
//! `check / forward_auth`. Only the ratio means much: other work on the
//! machine moves both numbers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use keygate::gateway::{Gateway, Rules};
use keygate::{Keygate, ListenerLimits, MemoryStore, NewKey, Pepper, serve_check, serve_router};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Options {
    requests: usize,
    rounds: usize,
    concurrency: usize,
}

fn options() -> Options {
    let mut options = Options {
        requests: 20_000,
        rounds: 3,
        concurrency: 16,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match args[i].as_str() {
            "--requests" => options.requests = value().expect("--requests N"),
            "--rounds" => options.rounds = value().expect("--rounds N"),
            "--concurrency" => options.concurrency = value().expect("--concurrency N"),
            // cargo bench passes --bench.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options.requests = options.requests.clamp(100, 1_000_000);
    options.rounds = options.rounds.clamp(1, 20);
    options.concurrency = options.concurrency.clamp(1, 256);
    options
}

/// Starts both servers on one core; returns (HTTP address, gRPC address,
/// the token, the key id).
fn start_server() -> (SocketAddr, SocketAddr, String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let keygate = Keygate::builder(MemoryStore::new())
                .pepper(Pepper::insecure_fixed_for_tests())
                .build()
                .unwrap();
            let created = keygate
                .keys()
                .create(NewKey::new("bench", "bench").scopes(["bench:read"]))
                .await
                .unwrap();
            let gateway = Gateway::new(keygate, Rules::default());
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((
                http.local_addr().unwrap(),
                grpc.local_addr().unwrap(),
                created.token.expose().to_owned(),
                created.key.id.to_string(),
            ))
            .unwrap();
            let app = keygate::admin::router_with_gateway(gateway.clone());
            let limits = ListenerLimits::default().max_connections(1024);
            let never = std::future::pending::<()>;
            let (a, b) = tokio::join!(
                serve_router(http, limits, app, never()),
                serve_check(grpc, gateway, limits, never()),
            );
            a.unwrap();
            b.unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn forward_auth_round(
    addr: SocketAddr,
    token: &str,
    id: &str,
    requests: usize,
    concurrency: usize,
) -> f64 {
    let request = format!(
        "GET /v1/forward-auth/api/things HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let per_connection = requests / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let request = request.clone();
        let id = id.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buffer = Vec::with_capacity(1024);
            for _ in 0..per_connection {
                stream.write_all(request.as_bytes()).await.unwrap();
                buffer.clear();
                // The answer to forward auth has no body: read the head.
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the server closed the connection");
                    buffer.extend_from_slice(&chunk[..n]);
                    if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buffer).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                assert!(head.contains(&id.to_ascii_lowercase()), "{head}");
                assert!(head.contains("content-length: 0"), "{head}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (per_connection * concurrency) as f64 / start.elapsed().as_secs_f64()
}

async fn check_round(
    client: &AuthorizationClient<tonic::transport::Channel>,
    token: &str,
    requests: usize,
    concurrency: usize,
) -> f64 {
    let mut http = HttpRequest {
        method: "GET".into(),
        path: "/api/things".into(),
        ..HttpRequest::default()
    };
    http.headers
        .insert("authorization".into(), format!("Bearer {token}"));
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(http),
            }),
            ..AttributeContext::default()
        }),
    };
    let per_task = requests / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut client = client.clone();
        let check = check.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let answer = client.check(check.clone()).await.unwrap().into_inner();
                assert_eq!(answer.status.unwrap().code, 0);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (per_task * concurrency) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let options = options();
    let (http, grpc, token, id) = start_server();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        let client = AuthorizationClient::new(channel);
        // Warm-up: the key cached, connections open.
        check_round(&client, &token, 200, 4).await;
        forward_auth_round(http, &token, &id, 200, 4).await;
        println!(
            "requests per round and surface: {}, in flight: {}, server: 1 core (current-thread runtime)",
            options.requests, options.concurrency
        );
        let (mut checks, mut forwards, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..options.rounds {
            let (check, forward) = if round % 2 == 0 {
                let c = check_round(&client, &token, options.requests, options.concurrency).await;
                let f = forward_auth_round(http, &token, &id, options.requests, options.concurrency).await;
                (c, f)
            } else {
                let f = forward_auth_round(http, &token, &id, options.requests, options.concurrency).await;
                let c = check_round(&client, &token, options.requests, options.concurrency).await;
                (c, f)
            };
            println!(
                "round {}: Check (gRPC) {check:.0} req/s, /v1/forward-auth (HTTP/1.1) {forward:.0} req/s, ratio {:.2}",
                round + 1,
                check / forward
            );
            checks.push(check);
            forwards.push(forward);
            ratios.push(check / forward);
        }
        println!(
            "median: Check (gRPC) {:.0} req/s, /v1/forward-auth (HTTP/1.1) {:.0} req/s, ratio check/forward_auth {:.2}",
            median(checks),
            median(forwards),
            median(ratios)
        );
    });
}
