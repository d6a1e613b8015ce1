//! `GET /metrics` of a real `keygate serve` over a loopback socket: the
//! figures move with the requests made, the route needs `metrics:read`
//! unless `--metrics-public`, and no label or line holds a key id, an
//! owner or a token.

mod common;

use common::{Serve, ServeOptions, http, token_id};
use serde_json::json;
use tempfile::TempDir;

/// The value of the series `name{labels}` in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

#[test]
fn the_page_counts_outcomes_and_needs_metrics_read() {
    let dir = TempDir::new().unwrap();
    let server = Serve::start(dir.path(), ServeOptions::new());
    let admin = server.bootstrap_token();
    let (reader, _) = server.create_key(
        &admin,
        json!({"owner": "ops-team", "name": "scraper", "scopes": ["metrics:read"]}),
    );
    let (other, _) = server.create_key(
        &admin,
        json!({"owner": "ops-team", "name": "other", "scopes": ["keys:read"]}),
    );

    let (limited, _) = server.create_key(
        &admin,
        json!({"owner": "ops-team", "name": "limited",
               "rate_limits": [{"name": "hourly", "limit": 1, "period": "1h"}]}),
    );
    let bearer = format!("Bearer {limited}");
    let first = http::get(
        server.addr,
        "/v1/forward-auth",
        &[("Authorization", &bearer)],
    );
    let second = http::get(
        server.addr,
        "/v1/forward-auth",
        &[("Authorization", &bearer)],
    );
    assert_eq!((first.status, second.status), (200, 429));

    // One admitted check, one invalid token, one missing, through forward auth.
    let ok = http::get(
        server.addr,
        "/v1/forward-auth",
        &[("Authorization", &format!("Bearer {other}"))],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    // The last character changed (to one it is not): the checksum fails.
    let last = if other.ends_with('x') { "y" } else { "x" };
    let forged = format!("{}{last}", &other[..other.len() - 1]);
    let invalid = http::get(
        server.addr,
        "/v1/forward-auth",
        &[("Authorization", &format!("Bearer {forged}"))],
    );
    assert_eq!(invalid.status, 401);
    let missing = http::get(server.addr, "/v1/forward-auth", &[]);
    assert_eq!(missing.status, 401);

    // The page needs a key with metrics:read.
    let anonymous = http::get(server.addr, "/metrics", &[]);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("x-request-id").is_some(), "{anonymous:?}");
    let refused = server.call("GET", "/metrics", &other, "");
    assert_eq!(refused.status, 403, "keys:read is not metrics:read");
    let page = server.call("GET", "/metrics", &reader, "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.header("x-request-id").is_some(), "{page:?}");
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{page:?}"
    );
    let text = page.text();
    let count = |outcome: &str| {
        sample(
            &text,
            &format!("keygate_requests_total{{outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0.0)
    };
    // The admitted checks: forward auth's, the two key creations', and
    // the scrape's own; refusals: the forged token, the missing one, the
    // anonymous and the keys:read scrapes.
    assert!(count("ok") >= 4.0, "ok = {}\n{text}", count("ok"));
    assert!(count("invalid_token") >= 1.0, "{text}");
    assert!(count("missing_token") >= 2.0, "{text}");
    assert!(count("insufficient_scope") >= 1.0, "{text}");
    assert_eq!(count("rate_limited"), 1.0, "{text}");
    for (decision, expected) in [
        ("admitted", 1.0),
        ("refused", 1.0),
        ("unreachable_admitted", 0.0),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!("keygate_limiter_decisions_total{{decision=\"{decision}\"}}")
            ),
            Some(expected),
            "{decision}:\n{text}"
        );
    }
    let hits = sample(&text, "keygate_cache_lookups_total{result=\"hit\"}").unwrap_or(0.0);
    let misses = sample(&text, "keygate_cache_lookups_total{result=\"miss\"}").unwrap_or(0.0);
    assert!(misses >= 1.0 && hits + misses >= 4.0, "{text}");
    assert!(
        sample(
            &text,
            "keygate_store_operation_seconds_count{operation=\"insert\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "the three creations were timed:\n{text}"
    );
    assert!(
        text.contains("keygate_store_operation_seconds_bucket{operation=\"get\""),
        "the store's latency is a histogram by operation:\n{text}"
    );
    assert_eq!(
        sample(&text, "keygate_change_feed_connected"),
        Some(1.0),
        "SQLite's change feed is being read:\n{text}"
    );

    // Nothing that names a key, an owner or a secret.
    for secret in [&admin, &reader, &other, &forged, &limited] {
        assert!(!text.contains(secret.as_str()), "a token in the page");
        assert!(!text.contains(token_id(secret)), "a key id in the page");
    }
    for owner in ["ops-team", "admin\""] {
        assert!(!text.contains(owner), "an owner in the page: {owner}");
    }
    let scraped_again = server.call("GET", "/metrics", &reader, "").text();
    assert!(
        sample(&scraped_again, "keygate_requests_total{outcome=\"ok\"}").unwrap_or(0.0)
            > count("ok"),
        "a scrape is itself a counted check"
    );
}

#[test]
fn metrics_public_serves_the_page_without_a_key() {
    let dir = TempDir::new().unwrap();
    let server = Serve::start(dir.path(), ServeOptions::new().args(["--metrics-public"]));
    let page = http::get(server.addr, "/metrics", &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.text()
            .contains("keygate_requests_total{outcome=\"ok\"}"),
        "every outcome's series is registered from the start:\n{}",
        page.text()
    );
}
