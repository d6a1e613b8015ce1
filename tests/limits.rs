//! Rate limits end to end (SPEC §11), over real sockets against real
//! `keygate serve` processes: exact counts through the proxy, rule costs
//! through forward auth, shared per-owner buckets, all or nothing,
//! `/v1/verify` with `cost`; then `--redis-url`: two instances on one Redis
//! admit exactly the limit together, Redis stopped and started again under
//! running instances (fail open, `--limits-fail-closed`), and a start
//! without Redis. Each test that stops Redis runs a `redis-server` of its
//! own ([`RedisServer`]).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{Serve, ServeOptions, Upstream, http, run_keygate, run_keygate_env};
use serde_json::{Value, json};
use tempfile::TempDir;

const FORWARD_AUTH: &str = "/v1/forward-auth";

/// Route rules: `/expensive/**` costs 2, `/free/**` is not counted, the
/// rest costs 1.
const RULES: &str = r#"
[[rule]]
path = "/expensive/**"
cost = 2

[[rule]]
path = "/free/**"
cost = 0

[[rule]]
path = "/**"
"#;

/// How long a recovered Redis may take to count again.
const RECOVERY: Duration = Duration::from_secs(10);

/// Where the buckets are kept.
#[derive(Clone, Copy)]
enum Counters<'a> {
    /// In the process (no `--redis-url`).
    Local,
    /// In this Redis.
    Redis(&'a RedisServer),
}

/// `keygate serve --rules RULES --forward-auth nginx` in `dir` (its
/// `keygate.db` and pepper: several instances in one directory share
/// both), with `counters`, `extra` arguments and optionally the proxy.
fn serve(dir: &Path, counters: Counters<'_>, extra: &[&str], upstream: Option<&Upstream>) -> Serve {
    let rules = dir.join("rules.toml");
    if !rules.exists() {
        std::fs::write(&rules, RULES).unwrap();
    }
    let mut options = ServeOptions::new()
        .args([
            "--rules",
            rules.to_str().unwrap(),
            "--forward-auth",
            "nginx",
        ])
        .args(extra.iter().copied());
    if let Counters::Redis(redis) = counters {
        options = options.args(["--redis-url".to_owned(), redis.url()]);
    }
    if let Some(upstream) = upstream {
        options = options.upstream(&upstream.url());
    }
    Serve::start(dir, options)
}

/// One instance and its admin token.
struct Gate {
    serve: Serve,
    admin: String,
    _dir: TempDir,
}

fn gate(counters: Counters<'_>, upstream: Option<&Upstream>) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), counters, &[], upstream);
    let admin = serve.bootstrap_token();
    Gate {
        serve,
        admin,
        _dir: dir,
    }
}

/// Creates a key of `owner` with these `rate_limits`; returns its token.
fn key(serve: &Serve, admin: &str, owner: &str, name: &str, rate_limits: Value) -> String {
    let mut body = json!({"owner": owner, "name": name, "scopes": ["workspaces:read"]});
    if !rate_limits.is_null() {
        body["rate_limits"] = rate_limits;
    }
    serve.create_key(admin, body).0
}

/// Forward auth of `GET uri` with `token`.
fn ask(serve: &Serve, token: &str, uri: &str) -> http::Response {
    let bearer = format!("Bearer {token}");
    http::get(
        serve.addr,
        FORWARD_AUTH,
        &[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", uri),
            ("Authorization", &bearer),
        ],
    )
}

/// `POST /v1/verify` of `token` with this `cost` (none: the default).
fn verify(serve: &Serve, admin: &str, token: &str, cost: Option<Value>) -> http::Response {
    let mut body = json!({"key": token});
    if let Some(cost) = cost {
        body["cost"] = cost;
    }
    serve.call("POST", "/v1/verify", admin, &body.to_string())
}

/// The `r=` and `t=` of a `RateLimit: "<name>";r=R;t=T` header, checking
/// its name.
fn ratelimit(response: &http::Response, name: &str) -> (u64, u64) {
    let value = response
        .header("ratelimit")
        .unwrap_or_else(|| panic!("no RateLimit header: {response:?}"));
    let rest = value
        .strip_prefix(&format!("\"{name}\";"))
        .unwrap_or_else(|| panic!("RateLimit {value:?} is not for {name}"));
    let mut r = None;
    let mut t = None;
    for param in rest.split(';') {
        match param.split_once('=') {
            Some(("r", v)) => r = v.parse().ok(),
            Some(("t", v)) => t = v.parse().ok(),
            _ => panic!("RateLimit {value:?}: unexpected {param:?}"),
        }
    }
    (r.expect("r="), t.expect("t="))
}

/// `remaining` and `reset` of the limit `name` in a `/v1/verify` answer.
fn reported(answer: &Value, name: &str) -> (u64, u64) {
    let limit = answer["rate_limits"]
        .as_array()
        .unwrap_or_else(|| panic!("no rate_limits in {answer}"))
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no limit {name} in {answer}"));
    (
        limit["remaining"].as_u64().unwrap(),
        limit["reset"].as_u64().unwrap(),
    )
}

fn assert_no_ratelimit_headers(response: &http::Response, what: &str) {
    assert_eq!(response.header("ratelimit"), None, "{what}: {response:?}");
    assert_eq!(
        response.header("ratelimit-policy"),
        None,
        "{what}: {response:?}"
    );
}

fn assert_rate_limited(response: &http::Response, name: &str) -> u64 {
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.json()["error"], "rate_limited");
    assert_eq!(response.json()["limit"], name);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let wait: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After: {wait}");
    wait
}

// a. Exact counts through the proxy.

fn the_proxy_passes_exactly_the_limit(counters: Counters<'_>) {
    let upstream = Upstream::start();
    let gate = gate(counters, Some(&upstream));
    let token = key(
        &gate.serve,
        &gate.admin,
        "alice",
        "hourly",
        json!([{"name": "hourly", "limit": 5, "period": "1h"}]),
    );
    let proxy = gate.serve.proxy_addr.unwrap();
    let bearer = format!("Bearer {token}");
    let responses: Vec<_> = (0..8)
        .map(|_| http::get(proxy, "/api/items", &[("Authorization", &bearer)]))
        .collect();
    for (i, response) in responses[..5].iter().enumerate() {
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"hourly\";q=5;w=3600"),
            "request {i}"
        );
        let (r, t) = ratelimit(response, "hourly");
        assert_eq!(r, 4 - i as u64, "request {i}: {response:?}");
        // 720 s per unit; whole seconds until the bucket is full again.
        let full = 720 * (i as u64 + 1);
        assert!((full - 2..=full).contains(&t), "request {i}: t={t}");
    }
    for response in &responses[5..] {
        let wait = assert_rate_limited(response, "hourly");
        assert!((700..=720).contains(&wait), "Retry-After: {wait}");
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"hourly\";q=5;w=3600")
        );
        assert_eq!(ratelimit(response, "hourly").0, 0);
    }
    assert_eq!(upstream.count(), 5, "the upstream saw only the admitted");
}

#[test]
fn the_proxy_passes_exactly_the_limit_counted_in_process() {
    the_proxy_passes_exactly_the_limit(Counters::Local);
}

#[test]
fn the_proxy_passes_exactly_the_limit_counted_in_redis() {
    let redis = RedisServer::start();
    the_proxy_passes_exactly_the_limit(Counters::Redis(&redis));
}

// b. Rule costs through forward auth.

fn rule_costs_are_charged_and_cost_zero_is_not_counted(counters: Counters<'_>) {
    let gate = gate(counters, None);
    let token = key(
        &gate.serve,
        &gate.admin,
        "alice",
        "costly",
        json!([{"name": "hourly", "limit": 10, "period": "1h"}]),
    );
    let serve = &gate.serve;
    let response = ask(serve, &token, "/expensive/report");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(ratelimit(&response, "hourly").0, 8, "cost 2");
    for _ in 0..5 {
        let response = ask(serve, &token, "/free/ping");
        assert_eq!(response.status, 200, "{response:?}");
        assert_no_ratelimit_headers(&response, "cost 0");
    }
    let response = ask(serve, &token, "/items");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(ratelimit(&response, "hourly").0, 7, "cost 0 took nothing");
    for left in [5, 3, 1] {
        let response = ask(serve, &token, "/expensive/report");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(ratelimit(&response, "hourly").0, left);
    }
    // One unit left: a cost of 2 is refused and takes nothing ...
    assert_rate_limited(&ask(serve, &token, "/expensive/report"), "hourly");
    // ... so a cost of 1 still passes; cost 0 passes whatever the bucket.
    let response = ask(serve, &token, "/items");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(ratelimit(&response, "hourly").0, 0);
    assert_rate_limited(&ask(serve, &token, "/items"), "hourly");
    let response = ask(serve, &token, "/free/ping");
    assert_eq!(response.status, 200, "{response:?}");
    assert_no_ratelimit_headers(&response, "cost 0 on a spent bucket");
}

#[test]
fn rule_costs_are_charged_and_cost_zero_is_not_counted_in_process() {
    rule_costs_are_charged_and_cost_zero_is_not_counted(Counters::Local);
}

#[test]
fn rule_costs_are_charged_and_cost_zero_is_not_counted_in_redis() {
    let redis = RedisServer::start();
    rule_costs_are_charged_and_cost_zero_is_not_counted(Counters::Redis(&redis));
}

// c. Shared per-owner buckets.

fn a_shared_limit_is_one_bucket_per_owner(counters: Counters<'_>) {
    let gate = gate(counters, None);
    let (serve, admin) = (&gate.serve, gate.admin.as_str());
    let team = json!([{"name": "team", "limit": 3, "period": "1h", "shared": true}]);
    let first = key(serve, admin, "alice", "first", team.clone());
    let second = key(serve, admin, "alice", "second", team.clone());
    let other = key(serve, admin, "bob", "other", team);
    for (token, left) in [(&first, 2), (&second, 1), (&first, 0)] {
        let response = ask(serve, token, "/items");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(ratelimit(&response, "team").0, left);
    }
    assert_rate_limited(&ask(serve, &second, "/items"), "team");
    assert_rate_limited(&ask(serve, &first, "/items"), "team");
    // Another owner's key has its own bucket.
    for left in [2, 1, 0] {
        let response = ask(serve, &other, "/items");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(ratelimit(&response, "team").0, left);
    }
    assert_rate_limited(&ask(serve, &other, "/items"), "team");
}

#[test]
fn a_shared_limit_is_one_bucket_per_owner_in_process() {
    a_shared_limit_is_one_bucket_per_owner(Counters::Local);
}

#[test]
fn a_shared_limit_is_one_bucket_per_owner_in_redis() {
    let redis = RedisServer::start();
    a_shared_limit_is_one_bucket_per_owner(Counters::Redis(&redis));
}

// d. All or nothing.

fn a_request_refused_by_one_limit_takes_nothing_from_the_others(counters: Counters<'_>) {
    let gate = gate(counters, None);
    let (serve, admin) = (&gate.serve, gate.admin.as_str());
    let token = key(
        serve,
        admin,
        "alice",
        "two",
        json!([{"name": "burst", "limit": 2, "period": "1h"},
               {"name": "daily", "limit": 3, "period": "1d"}]),
    );
    let answer = verify(serve, admin, &token, None).json();
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(
        (reported(&answer, "burst").0, reported(&answer, "daily").0),
        (1, 2)
    );
    let response = ask(serve, &token, "/items");
    assert_eq!(response.status, 200, "{response:?}");
    // Burst is spent: every refusal leaves daily where it was.
    for _ in 0..3 {
        assert_rate_limited(&ask(serve, &token, "/items"), "burst");
    }
    for _ in 0..2 {
        let answer = verify(serve, admin, &token, None).json();
        assert_eq!(
            (answer["valid"].clone(), answer["code"].clone()),
            (json!(false), json!("rate_limited"))
        );
        assert_eq!(reported(&answer, "burst").0, 0, "{answer}");
        assert_eq!(
            reported(&answer, "daily").0,
            1,
            "daily took nothing: {answer}"
        );
    }
}

#[test]
fn a_request_refused_by_one_limit_takes_nothing_from_the_others_in_process() {
    a_request_refused_by_one_limit_takes_nothing_from_the_others(Counters::Local);
}

#[test]
fn a_request_refused_by_one_limit_takes_nothing_from_the_others_in_redis() {
    let redis = RedisServer::start();
    a_request_refused_by_one_limit_takes_nothing_from_the_others(Counters::Redis(&redis));
}

// e. `/v1/verify` with `cost`.

#[test]
fn verify_consumes_its_cost_and_reports_and_refuses_a_bad_cost() {
    let gate = gate(Counters::Local, None);
    let (serve, admin) = (&gate.serve, gate.admin.as_str());
    let token = key(
        serve,
        admin,
        "alice",
        "hourly",
        json!([{"name": "hourly", "limit": 10, "period": "1h"}]),
    );
    let answer = verify(serve, admin, &token, Some(json!(3))).json();
    assert_eq!(answer["valid"], true, "{answer}");
    let (remaining, reset) = reported(&answer, "hourly");
    assert_eq!(remaining, 7, "{answer}");
    // 360 s per unit: full again in 3 × 360 s.
    assert!((1_078..=1_080).contains(&reset), "reset {reset}");
    let limit = &answer["rate_limits"][0];
    assert_eq!(limit["limit"], 10, "{answer}");
    // Not counted: valid, no report, nothing taken.
    let answer = verify(serve, admin, &token, Some(json!(0))).json();
    assert_eq!(answer["valid"], true, "{answer}");
    assert!(answer.get("rate_limits").is_none(), "{answer}");
    let answer = verify(serve, admin, &token, None).json();
    assert_eq!(
        reported(&answer, "hourly").0,
        6,
        "the default cost is 1: {answer}"
    );
    // More than is left: refused, nothing taken.
    let answer = verify(serve, admin, &token, Some(json!(7))).json();
    assert_eq!(answer["code"], "rate_limited", "{answer}");
    assert_eq!(reported(&answer, "hourly").0, 6, "{answer}");
    let answer = verify(serve, admin, &token, Some(json!(6))).json();
    assert_eq!(
        (answer["valid"].clone(), reported(&answer, "hourly").0),
        (json!(true), 0)
    );
    for bad in [
        json!(-1),
        json!(1.5),
        json!("x"),
        json!(2_000_000_000),
        json!(null),
    ] {
        let response = verify(serve, admin, &token, Some(bad.clone()));
        if bad.is_null() {
            // `"cost": null` is the default (1): refused by the spent bucket.
            assert_eq!(response.status, 200, "{response:?}");
            continue;
        }
        assert_eq!(response.status, 400, "cost {bad}: {response:?}");
        assert_eq!(response.json()["error"], "bad_request", "cost {bad}");
        assert_eq!(response.json()["field"], "cost", "cost {bad}");
    }
}

// f. Two instances on one Redis.

/// 60 requests from 6 threads over `first` and `second` against a key
/// with 20/1h: exactly 20 pass.
fn two_instances_admit_exactly_the_limit_together(first: &Serve, second: &Serve, admin: &str) {
    let token = key(
        first,
        admin,
        "alice",
        "shared",
        json!([{"name": "hourly", "limit": 20, "period": "1h"}]),
    );
    let instances = [first, second];
    let admitted = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    thread::scope(|scope| {
        for worker in 0..6 {
            let (instances, token, admitted, refused) = (&instances, &token, &admitted, &refused);
            scope.spawn(move || {
                for i in 0..10 {
                    let serve = instances[(worker + i) % 2];
                    let response = ask(serve, token, "/items");
                    match response.status {
                        200 => admitted.fetch_add(1, Ordering::SeqCst),
                        429 => refused.fetch_add(1, Ordering::SeqCst),
                        _ => panic!("{response:?}"),
                    };
                }
            });
        }
    });
    assert_eq!(
        (admitted.into_inner(), refused.into_inner()),
        (20, 40),
        "60 requests over two instances, limit 20"
    );
    for serve in instances {
        assert_rate_limited(&ask(serve, &token, "/items"), "hourly");
    }
}

#[test]
fn two_instances_on_one_redis_and_one_sqlite_file_admit_exactly_the_limit_together() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path(), Counters::Redis(&redis), &[], None);
    let admin = first.bootstrap_token();
    let second = serve(dir.path(), Counters::Redis(&redis), &[], None);
    two_instances_admit_exactly_the_limit_together(&first, &second, &admin);
}

#[cfg(feature = "postgres")]
#[test]
fn two_instances_on_one_redis_and_one_postgres_database_admit_exactly_the_limit_together() {
    const PEPPER: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(common::postgres::TestDb::create());
    let redis = RedisServer::start();
    // Two directories: nothing is shared but the database and the pepper.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let start = |dir: &TempDir| {
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, RULES).unwrap();
        let options = ServeOptions::new()
            .args([
                "--rules",
                rules.to_str().unwrap(),
                "--forward-auth",
                "nginx",
            ])
            .args(["--redis-url".to_owned(), redis.url()])
            .env("KEYGATE_DATABASE_URL", &db.url)
            .env("KEYGATE_PEPPER", PEPPER);
        Serve::start(dir.path(), options)
    };
    let first = start(&dirs[0]);
    let admin = first.bootstrap_token();
    let second = start(&dirs[1]);
    two_instances_admit_exactly_the_limit_together(&first, &second, &admin);
}

// g. Redis stopped under running instances, and started again.

/// Asks `serve` until `done` holds for the answer, at most [`RECOVERY`].
fn poll(serve: &Serve, token: &str, done: impl Fn(&http::Response) -> bool) -> http::Response {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let response = ask(serve, token, "/items");
        if done(&response) {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered within {RECOVERY:?}: {response:?}\nstderr:\n{}",
            serve.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_redis_limited_keys_fail_open_or_closed_and_both_recover_with_it() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let open = serve(dir.path(), Counters::Redis(&redis), &[], None);
    let admin = open.bootstrap_token();
    let closed = serve(
        dir.path(),
        Counters::Redis(&redis),
        &["--limits-fail-closed"],
        None,
    );
    let limited = key(
        &open,
        &admin,
        "alice",
        "limited",
        json!([{"name": "hourly", "limit": 100, "period": "1h"}]),
    );
    let plain = key(&open, &admin, "alice", "plain", Value::Null);
    for (serve, left) in [(&open, 99), (&closed, 98)] {
        let response = ask(serve, &limited, "/items");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(ratelimit(&response, "hourly").0, left, "counted in Redis");
    }

    redis.kill();
    for _ in 0..3 {
        let response = ask(&open, &limited, "/items");
        assert_eq!(response.status, 200, "fail open: {response:?}");
        assert_no_ratelimit_headers(&response, "admitted uncounted");
        let response = ask(&closed, &limited, "/items");
        assert_eq!(response.status, 503, "fail closed: {response:?}");
        assert_eq!(response.json()["error"], "unavailable");
        assert_eq!(response.header("retry-after"), Some("1"));
        for serve in [&open, &closed] {
            let response = ask(serve, &plain, "/items");
            assert_eq!(response.status, 200, "a key without limits: {response:?}");
            assert_no_ratelimit_headers(&response, "a key without limits");
        }
    }

    // Warned once each, not per request.
    assert_logged_once(
        &open,
        "rate limiter unreachable: requests are admitted uncounted",
    );
    assert_logged_once(&closed, "rate limiter unreachable: requests are refused");

    // Started again, empty: both count again without a restart.
    redis.restart();
    let response = poll(&open, &limited, |r| r.header("ratelimit").is_some());
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(ratelimit(&response, "hourly").0, 99, "a fresh bucket");
    let response = poll(&closed, &limited, |r| r.status != 503);
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        ratelimit(&response, "hourly").0 < 99,
        "counted in the same bucket"
    );
    let response = ask(&closed, &plain, "/items");
    assert_eq!(response.status, 200, "{response:?}");
    for serve in [&open, &closed] {
        assert_logged_once(serve, "rate limiter reachable again");
    }
}

/// `line` appears exactly once in `serve`'s stderr (waiting a little for
/// the pipe reader).
fn assert_logged_once(serve: &Serve, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stderr = serve.stderr();
        let times = stderr.matches(line).count();
        if times >= 1 {
            assert_eq!(times, 1, "{line:?} logged {times} times:\n{stderr}");
            return;
        }
        assert!(Instant::now() < deadline, "{line:?} not logged:\n{stderr}");
        thread::sleep(Duration::from_millis(20));
    }
}

// h. Starting with Redis, or without it.

#[test]
fn serve_with_an_unreachable_redis_exits_naming_it_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "redis://:secretpw@127.0.0.1:1";
    for output in [
        run_keygate(
            dir.path(),
            &["serve", "--listen", "127.0.0.1:0", "--redis-url", url],
        ),
        run_keygate_env(
            dir.path(),
            &[
                ("KEYGATE_REDIS_URL", url),
                ("KEYGATE_LIMITS_FAIL_CLOSED", "true"),
            ],
            &["serve", "--listen", "127.0.0.1:0"],
        ),
    ] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("redis://:[redacted]@127.0.0.1:1"),
            "the URL, redacted: {stderr}"
        );
        assert!(stderr.contains("cannot be reached"), "{stderr}");
        assert!(
            !stderr.contains("secretpw"),
            "the password leaked: {stderr}"
        );
        assert!(output.stdout.is_empty(), "no bootstrap key printed");
    }
    assert!(
        !dir.path().join("keygate.db").exists(),
        "checked before the database is created"
    );
}

#[test]
fn serve_logs_which_limiter_counts_and_never_the_redis_password() {
    let redis = RedisServer::start_with_password("s3cret-redis-pw");
    let gate = gate(Counters::Redis(&redis), None);
    let token = key(
        &gate.serve,
        &gate.admin,
        "alice",
        "hourly",
        json!([{"name": "hourly", "limit": 5, "period": "1h"}]),
    );
    let response = ask(&gate.serve, &token, "/items");
    assert_eq!(ratelimit(&response, "hourly").0, 4, "counted in Redis");
    let stderr = gate.serve.stderr();
    assert!(stderr.contains("limiter=\"redis\""), "{stderr}");
    assert!(
        stderr.contains(&format!("redis://:[redacted]@127.0.0.1:{}", redis.port)),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-redis-pw"), "{stderr}");

    let local = gate_with(&["--limits-fail-closed"]);
    let stderr = local.serve.stderr();
    assert!(stderr.contains("limiter=\"local\""), "{stderr}");
    assert!(
        stderr.contains("--limits-fail-closed has no effect"),
        "{stderr}"
    );
}

/// One instance counting in process, with `extra` arguments.
fn gate_with(extra: &[&str]) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), Counters::Local, extra, None);
    let admin = serve.bootstrap_token();
    Gate {
        serve,
        admin,
        _dir: dir,
    }
}
