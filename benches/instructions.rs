//! What the middleware adds per request, counted in instructions rather
//! than timed: run under callgrind, which counts the same total for the same
//! binary and input whatever else the machine is doing. On a shared 2-core
//! machine, where timings of the same code move by ±20 % between runs, this
//! is the measure that can tell a 0.1 µs change apart.
//!
//! ```sh
//! cargo bench --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     --toggle-collect='instructions::drive_*' target/release/deps/instructions-<hash>
//! callgrind_annotate /tmp/cg.out | grep -E 'drive_|PROGRAM TOTALS'
//! ```
//!
//! (`--toggle-collect` counts only inside the two `drive_*` functions: the
//! requests are built and the cache warmed outside them.) Without valgrind
//! the binary just runs the requests and checks every answer. Divide each
//! `drive_*` total by [`REQUESTS`]: `drive_keygate` − `drive_no_auth` is
//! keygate's cost per request on a cached valid key, usage tracking on, as
//! in the `middleware` group of `benches/auth.rs`; `drive_many_keys` −
//! `drive_no_auth` the same with 1 000 cached keys taking turns;
//! `drive_limited` − `drive_keygate` what one in-process rate limit (and
//! its two response headers) adds. Note that
//! valgrind's CPU hides SHA-NI, so SHA-256 runs in software there
//! (`sha2::sha256::compress256`, ~10 400 of the instructions): subtract it
//! to compare with real hardware. Results: BENCHMARKS.md.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use http::{Request, Response, StatusCode};
use keygate::{Keygate, MemoryStore, NewKey, Pepper};
use tower::{Layer as _, Service, ServiceExt as _};

/// Requests per variant.
const REQUESTS: usize = 20_000;

/// Keys taking turns in the `many` variant: more than any per-thread memo
/// holds, so every request goes through moka.
const MANY_KEYS: usize = 1_000;

/// `n` requests, presenting `tokens` in turn.
fn requests(tokens: &[String], n: usize) -> Vec<Request<()>> {
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    (0..n)
        .map(|i| {
            let token = &tokens[i % tokens.len()];
            let mut request = Request::builder()
                .uri("/")
                .header("host", "127.0.0.1")
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .expect("request");
            // As axum's `into_make_service_with_connect_info` hands it over.
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        })
        .collect()
}

/// Runs every request through a clone of `service` (as axum clones a route
/// per request) and counts the 200s.
fn drive<S, B>(runtime: &tokio::runtime::Runtime, service: &S, requests: Vec<Request<()>>) -> usize
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let mut ok = 0;
        for request in requests {
            let response = service.clone().oneshot(request).await.expect("infallible");
            ok += usize::from(response.status() == StatusCode::OK);
        }
        ok
    })
}

/// The toggles for callgrind: one function per variant, each only running
/// [`drive`] (after a distinct no-op, so that the compiler cannot merge
/// them into one symbol).
macro_rules! toggles {
    ($($name:ident: $doc:literal,)*) => {$(
        #[doc = $doc]
        #[inline(never)]
        fn $name<S, B>(
            runtime: &tokio::runtime::Runtime,
            service: &S,
            requests: Vec<Request<()>>,
        ) -> usize
        where
            S: Service<Request<()>, Response = Response<B>> + Clone,
            S::Error: std::fmt::Debug,
        {
            std::hint::black_box(stringify!($name));
            drive(runtime, service, requests)
        }
    )*};
}

toggles! {
    drive_no_auth: "The requests without authentication.",
    drive_keygate: "The requests through keygate, one key.",
    drive_many_keys: "The requests through keygate, [`MANY_KEYS`] keys in turn.",
    drive_limited: "The requests through keygate, one key with one rate limit (in process).",
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keygate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .expect("keygate");
    let tokens: Vec<String> = runtime.block_on(async {
        let mut tokens = Vec::with_capacity(MANY_KEYS);
        for i in 0..MANY_KEYS {
            let created = keygate
                .keys()
                .create(NewKey::new(format!("bench{}", i % 100), format!("key {i}")))
                .await
                .expect("create");
            let token = created.token.expose().to_owned();
            keygate.verify(&token).await.expect("warm the cache");
            tokens.push(token);
        }
        tokens
    });
    let handler = tower::service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
    });
    let layered = keygate.layer().layer(handler);

    // A few requests first, so that one-time setup (the usage task, moka's
    // first maintenance) is not counted.
    assert_eq!(
        drive(&runtime, &layered, requests(&tokens, 2 * MANY_KEYS)),
        2 * MANY_KEYS
    );

    let wide = serde_json::from_str(r#"[{"name": "wide", "limit": 1000000000, "period": "1s"}]"#)
        .expect("limits");
    let limited = runtime.block_on(async {
        let created = keygate
            .keys()
            .create(NewKey::new("bench-limited", "limited").rate_limits(wide))
            .await
            .expect("create");
        let token = created.token.expose().to_owned();
        keygate.verify(&token).await.expect("warm the cache");
        token
    });
    let limited = std::slice::from_ref(&limited);
    assert_eq!(drive(&runtime, &layered, requests(limited, 100)), 100);

    let one = &tokens[..1];
    let bare = drive_no_auth(&runtime, &handler, requests(one, REQUESTS));
    let authenticated = drive_keygate(&runtime, &layered, requests(one, REQUESTS));
    let many = drive_many_keys(&runtime, &layered, requests(&tokens, REQUESTS));
    let counted = drive_limited(&runtime, &layered, requests(limited, REQUESTS));
    assert_eq!(
        (bare, authenticated, many, counted),
        (REQUESTS, REQUESTS, REQUESTS, REQUESTS),
        "every request answered 200"
    );
    println!("{REQUESTS} requests per variant, every one answered 200");
}
