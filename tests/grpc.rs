//! gRPC over real loopback sockets: the layer in front of a tonic service
//! (statuses, metadata, the key in the handler's extensions, rules per
//! method, a store outage), and `keygate serve --grpc-listen` answering
//! Envoy's `Authorization/Check` with a tonic client (every verdict, each
//! deny code, byte-identical invalid_token, health, graceful stop).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use common::counting::CountingStore;
use common::forge;
use common::greeter::{self, Greeter};
use common::process::{Serve, ServeOptions, free_port};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::config::core::v3::{Address as EnvoyAddress, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use keygate::gateway::{Gateway, Rules};
use keygate::{Environment, Keygate, MemoryStore, NewKey, Pepper, RulesLayer, serve_check};
use tonic::Code;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;

const RULES: &str = r#"
[[rule]]
path = "/demo.Greeter/SayHello"
require = "greeter:read"

[[rule]]
path = "/demo.Greeter/*"
require = "greeter:write"

[[rule]]
path = "/public/**"
public = true

[[rule]]
path = "/api/**"
"#;

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

/// Serves `Greeter` behind `layer` on a fresh loopback port; evaluates to
/// its address.
macro_rules! serve_greeter {
    ($layer:expr) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer($layer)
                .add_service(Greeter)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        addr
    }};
}

fn keygate_on(store: impl keygate::KeyStore) -> Keygate {
    Keygate::builder(store)
        .pepper(Pepper::insecure_fixed_for_tests())
        .build()
        .unwrap()
}

async fn token(keygate: &Keygate, key: NewKey) -> String {
    keygate
        .keys()
        .create(key)
        .await
        .unwrap()
        .token
        .expose()
        .to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A refusal's code, message and metadata, without `date` (the second it
/// was sent).
fn refusal(status: &tonic::Status) -> (Code, String, http::HeaderMap) {
    let mut headers = status.metadata().clone().into_headers();
    headers.remove("date");
    (status.code(), status.message().to_owned(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_protects_a_tonic_service_and_answers_grpc_statuses() {
    let keygate = keygate_on(MemoryStore::new());
    let alice = token(
        &keygate,
        NewKey::new("alice", "reader").scopes(["greeter:read"]),
    )
    .await;
    let addr = serve_greeter!(keygate.layer());
    let chan = channel(addr).await;

    // The key reaches the handler, from either metadata.
    let auth = bearer(&alice);
    let reply = greeter::call(chan.clone(), "SayHello", "bob", &[("authorization", &auth)])
        .await
        .expect("a valid key passes");
    assert_eq!(reply.get_ref().message, "hello bob, from alice");
    let reply = greeter::call(chan.clone(), "SayHello", "bob", &[("x-api-key", &alice)])
        .await
        .expect("x-api-key passes");
    assert_eq!(reply.get_ref().message, "hello bob, from alice");

    // No credential: UNAUTHENTICATED with the message of missing_token.
    let missing = greeter::call(chan.clone(), "SayHello", "bob", &[])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(missing.message(), "An API key is required.");
    assert_eq!(
        missing.metadata().get("www-authenticate").unwrap(),
        "Bearer realm=\"keygate\""
    );

    // Two credentials: invalid_request, UNAUTHENTICATED.
    let two = greeter::call(
        chan.clone(),
        "SayHello",
        "bob",
        &[("authorization", &auth), ("x-api-key", &alice)],
    )
    .await
    .unwrap_err();
    assert_eq!(two.code(), Code::Unauthenticated);
    assert_eq!(
        two.message(),
        "The request must carry exactly one well-formed credential."
    );

    // Every invalid_token cause answers the same, byte for byte.
    let created = keygate
        .keys()
        .create(NewKey::new("carol", "revoked"))
        .await
        .unwrap();
    let revoked = created.token.expose().to_owned();
    keygate.keys().revoke(&created.key.id, None).await.unwrap();
    let unknown = keygate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();
    let causes = [
        "kg_live_short".to_owned(),
        forge::with_bad_checksum(&alice),
        forge::with_secret(&alice, &"x".repeat(32)),
        unknown,
        revoked,
    ];
    let mut answers = Vec::new();
    for bad in &causes {
        let auth = bearer(bad);
        let status = greeter::call(chan.clone(), "SayHello", "bob", &[("authorization", &auth)])
            .await
            .unwrap_err();
        answers.push(refusal(&status));
    }
    let first = &answers[0];
    assert_eq!(first.0, Code::Unauthenticated);
    assert_eq!(first.1, "The API key is invalid, expired or revoked.");
    assert_eq!(
        first.2["www-authenticate"],
        "Bearer realm=\"keygate\", error=\"invalid_token\""
    );
    for (cause, answer) in causes.iter().zip(&answers) {
        assert_eq!(answer, first, "the answer to {:?} differs", &cause[..8]);
    }

    // A requirement on the layer: PERMISSION_DENIED.
    let addr = serve_greeter!(keygate.layer().require("greeter:write").unwrap());
    let denied = greeter::call(
        channel(addr).await,
        "SayHello",
        "bob",
        &[("authorization", &auth)],
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "The API key lacks the scopes this request requires."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_store_outages_have_their_grpc_statuses() {
    let store = CountingStore::new();
    let keygate = keygate_on(store.clone());
    let limited = token(
        &keygate,
        NewKey::new("alice", "limited").rate_limits(
            keygate::RateLimits::new(vec![
                keygate::RateLimit::new(
                    "burst".parse().unwrap(),
                    1,
                    keygate::Period::parse("1h").unwrap(),
                )
                .unwrap(),
            ])
            .unwrap(),
        ),
    )
    .await;
    let addr = serve_greeter!(keygate.layer());
    let chan = channel(addr).await;
    let auth = bearer(&limited);
    let first = greeter::call(chan.clone(), "SayHello", "a", &[("authorization", &auth)])
        .await
        .expect("the first request has budget");
    assert_eq!(
        first.metadata().get("ratelimit-policy").unwrap(),
        "\"burst\";q=1;w=3600"
    );
    let second = greeter::call(chan.clone(), "SayHello", "a", &[("authorization", &auth)])
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::ResourceExhausted);
    assert!(second.metadata().get("retry-after").is_some());

    // A key the cache has never seen, while the store is down.
    let uncached = keygate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();
    store.down.store(true, Ordering::SeqCst);
    let auth = bearer(&uncached);
    let unavailable = greeter::call(chan, "SayHello", "a", &[("authorization", &auth)])
        .await
        .unwrap_err();
    assert_eq!(unavailable.code(), Code::Unavailable);
    assert_eq!(
        unavailable.message(),
        "Authentication is temporarily unavailable."
    );
    assert_eq!(unavailable.metadata().get("retry-after").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_give_each_grpc_method_its_requirement() {
    let keygate = keygate_on(MemoryStore::new());
    let reader = token(
        &keygate,
        NewKey::new("rita", "reader").scopes(["greeter:read"]),
    )
    .await;
    let writer = token(
        &keygate,
        NewKey::new("will", "writer").scopes(["greeter:*"]),
    )
    .await;
    let gateway = Gateway::new(keygate, Rules::parse_toml(RULES).unwrap());
    let addr = serve_greeter!(RulesLayer::new(gateway));
    let chan = channel(addr).await;
    let (reader, writer) = (bearer(&reader), bearer(&writer));

    let hello = greeter::call(chan.clone(), "SayHello", "x", &[("authorization", &reader)])
        .await
        .expect("SayHello needs greeter:read");
    assert_eq!(hello.get_ref().message, "hello x, from rita");
    let goodbye = greeter::call(
        chan.clone(),
        "SayGoodbye",
        "x",
        &[("authorization", &reader)],
    )
    .await
    .unwrap_err();
    assert_eq!(goodbye.code(), Code::PermissionDenied);
    let goodbye = greeter::call(
        chan.clone(),
        "SayGoodbye",
        "x",
        &[("authorization", &writer)],
    )
    .await
    .expect("greeter:* covers greeter:write");
    assert_eq!(goodbye.get_ref().message, "goodbye x, from will");
    let missing = greeter::call(chan, "SayGoodbye", "x", &[])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
}

fn check_request(method: &str, path: &str, headers: &[(&str, &str)], source: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(EnvoyAddress {
                    address: Some(Address::SocketAddress(SocketAddress {
                        address: source.to_owned(),
                        ..SocketAddress::default()
                    })),
                }),
                ..Peer::default()
            }),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..HttpRequest::default()
                }),
            }),
            ..AttributeContext::default()
        }),
    }
}

async fn check(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> CheckResponse {
    client
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

fn ok(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an ok_response, got {other:?}"),
    }
}

fn denied(response: &CheckResponse, code: i32) -> &DeniedHttpResponse {
    assert_eq!(response.status.as_ref().unwrap().code, code, "{response:?}");
    match &response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => denied,
        other => panic!("expected a denied_response, got {other:?}"),
    }
}

fn set_headers(ok: &OkHttpResponse) -> HashMap<String, String> {
    ok.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

fn denied_headers(denied: &DeniedHttpResponse) -> HashMap<String, String> {
    denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

/// `denied` says exactly what `/v1/forward-auth` answers the same request.
fn same_as_forward_auth(
    serve: &Serve,
    denied: &DeniedHttpResponse,
    path: &str,
    headers: &[(&str, &str)],
) {
    let target = format!("/v1/forward-auth{path}");
    let http = common::http::request(serve.addr, "GET", &target, headers, b"");
    assert_eq!(
        denied.status.as_ref().unwrap().code,
        i32::from(http.status),
        "{path}"
    );
    assert_eq!(denied.body.as_bytes(), &http.body[..], "{path}");
    let grpc = denied_headers(denied);
    for name in [
        "content-type",
        "cache-control",
        "www-authenticate",
        "retry-after",
    ] {
        assert_eq!(
            grpc.get(name).map(String::as_str),
            http.header(name),
            "{name} for {path}"
        );
    }
}

#[test]
fn serve_grpc_listen_answers_envoy_check() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut serve = Serve::start(
        dir.path(),
        ServeOptions::new()
            .args(["--rules", rules.to_str().unwrap()])
            .env("KEYGATE_GRPC_LISTEN", &grpc_addr.to_string()),
    );
    let admin = serve.bootstrap_token();
    let (reader, reader_record) = serve.create_key(
        &admin,
        serde_json::json!({"name": "reader", "scopes": ["greeter:read"]}),
    );
    let (locked, _) = serve.create_key(
        &admin,
        serde_json::json!({"name": "locked", "scopes": ["greeter:read"], "ip_allow": ["10.0.0.0/8"]}),
    );
    let (limited, _) = serve.create_key(
        &admin,
        serde_json::json!({"name": "limited", "rate_limits": [{"name": "burst", "limit": 1, "period": "1h"}]}),
    );
    let (broke, _) = serve.create_key(
        &admin,
        serde_json::json!({"name": "broke", "credits": {"remaining": 0}}),
    );
    let (revoked, revoked_record) =
        serve.create_key(&admin, serde_json::json!({"name": "revoked"}));
    let revoke = serve.call(
        "POST",
        &format!("/v1/keys/{}/revoke", revoked_record["id"].as_str().unwrap()),
        &admin,
        "{}",
    );
    assert_eq!(revoke.status, 200);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = AuthorizationClient::new(channel(grpc_addr).await);
        let source = "203.0.113.5";

        // Allowed: the identity headers set, the credential removed.
        let auth = bearer(&reader);
        let answer = check(
            &mut client,
            check_request(
                "POST",
                "/demo.Greeter/SayHello",
                &[("authorization", &auth)],
                source,
            ),
        )
        .await;
        let allowed = ok(&answer);
        let set = set_headers(allowed);
        assert_eq!(
            set["x-keygate-key-id"],
            reader_record["id"].as_str().unwrap()
        );
        assert_eq!(set["x-keygate-owner"], "admin");
        assert_eq!(set["x-keygate-scopes"], "greeter:read");
        assert_eq!(set["x-keygate-environment"], "live");
        assert_eq!(allowed.headers_to_remove, ["authorization"]);
        let answer = check(
            &mut client,
            check_request("GET", "/api/things?x=1", &[("x-api-key", &reader)], source),
        )
        .await;
        assert_eq!(ok(&answer).headers_to_remove, ["x-api-key"]);

        // A public rule: OK with the four headers empty, kept.
        let answer = check(&mut client, check_request("GET", "/public/a", &[], source)).await;
        let public = ok(&answer);
        assert_eq!(public.headers.len(), 4);
        assert!(
            public
                .headers
                .iter()
                .all(|h| h.keep_empty_value && h.header.as_ref().unwrap().value.is_empty())
        );

        // Rules per method: greeter:read does not reach SayGoodbye.
        let answer = check(
            &mut client,
            check_request(
                "POST",
                "/demo.Greeter/SayGoodbye",
                &[("authorization", &auth)],
                source,
            ),
        )
        .await;
        let scope = denied(&answer, 7);
        assert_eq!(scope.status.as_ref().unwrap().code, 403);
        assert_eq!(
            denied_headers(scope)["www-authenticate"],
            "Bearer realm=\"keygate\", error=\"insufficient_scope\", scope=\"greeter:write\""
        );
        same_as_forward_auth(
            &serve,
            scope,
            "/demo.Greeter/SayGoodbye",
            &[("Authorization", &auth)],
        );

        // No credential: 16 and 401 missing_token.
        let answer = check(&mut client, check_request("GET", "/api/x", &[], source)).await;
        let missing = denied(&answer, 16);
        assert_eq!(missing.status.as_ref().unwrap().code, 401);
        let body: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
        assert_eq!(body["error"], "missing_token");
        same_as_forward_auth(&serve, missing, "/api/x", &[]);

        // Every invalid_token cause: one answer, byte for byte.
        let unknown =
            forge::with_checksum(&format!("kg_live_{}{}", "Z".repeat(16), "a".repeat(32)));
        let causes = [
            "kg_live_short".to_owned(),
            forge::with_bad_checksum(&reader),
            forge::with_secret(&reader, &"x".repeat(32)),
            unknown,
            revoked,
        ];
        let mut answers = Vec::new();
        for bad in &causes {
            let auth = bearer(bad);
            answers.push(
                check(
                    &mut client,
                    check_request("GET", "/api/x", &[("authorization", &auth)], source),
                )
                .await,
            );
        }
        let invalid = denied(&answers[0], 16);
        assert_eq!(invalid.status.as_ref().unwrap().code, 401);
        assert_eq!(
            answers[0].status.as_ref().unwrap().message,
            "The API key is invalid, expired or revoked."
        );
        for answer in &answers {
            assert_eq!(answer, &answers[0]);
        }
        same_as_forward_auth(
            &serve,
            invalid,
            "/api/x",
            &[("Authorization", &bearer(&causes[1]))],
        );

        // The source address is the client: outside the key's allow list.
        let auth = bearer(&locked);
        let answer = check(
            &mut client,
            check_request(
                "POST",
                "/demo.Greeter/SayHello",
                &[("authorization", &auth)],
                source,
            ),
        )
        .await;
        let ip = denied(&answer, 7);
        assert_eq!(ip.status.as_ref().unwrap().code, 403);
        assert!(ip.body.contains("ip_not_allowed"), "{}", ip.body);
        let answer = check(
            &mut client,
            check_request(
                "POST",
                "/demo.Greeter/SayHello",
                &[("authorization", &auth)],
                "10.1.2.3",
            ),
        )
        .await;
        ok(&answer);

        // Limits: the first request counted (RateLimit headers for the
        // client), the second refused 8 / 429.
        let auth = bearer(&limited);
        let answer = check(
            &mut client,
            check_request("GET", "/api/x", &[("authorization", &auth)], source),
        )
        .await;
        let counted = ok(&answer);
        let added: HashMap<_, _> = counted
            .response_headers_to_add
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(added["ratelimit-policy"], "\"burst\";q=1;w=3600");
        let answer = check(
            &mut client,
            check_request("GET", "/api/x", &[("authorization", &auth)], source),
        )
        .await;
        let limited_answer = denied(&answer, 8);
        assert_eq!(limited_answer.status.as_ref().unwrap().code, 429);
        assert!(denied_headers(limited_answer).contains_key("retry-after"));
        assert!(
            limited_answer.body.contains("\"limit\":\"burst\""),
            "{}",
            limited_answer.body
        );

        let auth = bearer(&broke);
        let answer = check(
            &mut client,
            check_request("GET", "/api/x", &[("authorization", &auth)], source),
        )
        .await;
        let credits = denied(&answer, 8);
        assert_eq!(credits.status.as_ref().unwrap().code, 429);
        assert!(
            credits.body.contains("credits_exhausted"),
            "{}",
            credits.body
        );

        // No rule, and a path servers read differently.
        let auth = bearer(&reader);
        let answer = check(
            &mut client,
            check_request("GET", "/other", &[("authorization", &auth)], source),
        )
        .await;
        assert_eq!(denied(&answer, 7).status.as_ref().unwrap().code, 403);
        let answer = check(
            &mut client,
            check_request("GET", "/api/a%2fb", &[("authorization", &auth)], source),
        )
        .await;
        assert_eq!(denied(&answer, 16).status.as_ref().unwrap().code, 400);

        // Health on the same listener.
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(channel(grpc_addr).await);
        for service in ["", "envoy.service.auth.v3.Authorization"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health answers")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service:?}"
            );
        }
    });
    drop(runtime);
    let status = serve.stop();
    assert!(status.success(), "serve stops cleanly on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_unavailable_when_the_store_is_down() {
    let store = CountingStore::new();
    let keygate = keygate_on(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(keygate.clone(), Rules::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_check(
        listener,
        gateway,
        keygate::ListenerLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = AuthorizationClient::new(channel(addr).await);
    let uncached = keygate
        .token_format()
        .generate(Environment::Live)
        .expose()
        .to_owned();
    store.down.store(true, Ordering::SeqCst);
    let auth = bearer(&uncached);
    let answer = check(
        &mut client,
        check_request("GET", "/api/x", &[("authorization", &auth)], "127.0.0.1"),
    )
    .await;
    let unavailable = denied(&answer, 14);
    assert_eq!(unavailable.status.as_ref().unwrap().code, 503);
    assert_eq!(denied_headers(unavailable)["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_str(&unavailable.body).unwrap();
    assert_eq!(body["error"], "unavailable");
    stop.send(()).unwrap();
    server.await.unwrap().expect("the server stops cleanly");
}

/// Whether `python3` can import grpcio and envoy-data-plane; `Err` with
/// the reason otherwise.
fn python_grpc() -> Result<(), String> {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import grpc, betterproto2, envoy_data_plane"])
        .output()
        .map_err(|e| format!("python3 cannot be run: {e}"))?;
    if probe.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 lacks grpcio / envoy-data-plane (pip install -r tests/grpc_python/requirements.txt): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ))
    }
}

/// The wire format checked by someone else's code: Python grpcio with the
/// published Envoy messages drives `Check` against `keygate serve`.
#[test]
fn an_independent_python_client_checks_the_wire_format() {
    if let Err(reason) = python_grpc() {
        assert!(
            std::env::var("KEYGATE_REQUIRE_PYTHON_GRPC").as_deref() != Ok("1"),
            "KEYGATE_REQUIRE_PYTHON_GRPC=1 but {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let serve = Serve::start(
        dir.path(),
        ServeOptions::new().args([
            "--rules",
            rules.to_str().unwrap(),
            "--grpc-listen",
            &grpc_addr.to_string(),
        ]),
    );
    let admin = serve.bootstrap_token();
    let (reader, record) = serve.create_key(
        &admin,
        serde_json::json!({"name": "reader", "scopes": ["greeter:read"]}),
    );
    let unknown = forge::with_checksum(&format!("kg_live_{}{}", "Z".repeat(16), "a".repeat(32)));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("grpc_python")
        .join("check_client.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(grpc_addr.to_string())
        .arg(&reader)
        .args([
            "kg_live_short".to_owned(),
            forge::with_bad_checksum(&reader),
            forge::with_secret(&reader, &"x".repeat(32)),
            unknown,
        ])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "the Python client failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(seen["allow"]["code"], 0);
    assert_eq!(seen["allow"]["set"]["x-keygate-key-id"], record["id"]);
    assert_eq!(seen["allow"]["set"]["x-keygate-scopes"], "greeter:read");
    assert_eq!(
        seen["allow"]["remove"],
        serde_json::json!(["authorization"])
    );
    assert_eq!(seen["scope"]["code"], 7);
    assert_eq!(seen["scope"]["body"]["required"], "greeter:write");
    assert_eq!(seen["missing"]["code"], 16);
    assert_eq!(seen["invalid"]["http"], 401);
    assert_eq!(
        seen["invalid"]["message"],
        "The API key is invalid, expired or revoked."
    );
    // The Python client read the same HTTP answer as forward auth gives.
    let http = common::http::request(
        serve.addr,
        "GET",
        "/v1/forward-auth/api/x",
        &[("Authorization", "Bearer kg_live_short")],
        b"",
    );
    assert_eq!(seen["invalid"]["body"], http.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_listener_closes_silent_connections_after_the_header_timeout() {
    let keygate = keygate_on(MemoryStore::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits =
        keygate::ListenerLimits::default().header_timeout(std::time::Duration::from_millis(300));
    tokio::spawn(serve_check(
        listener,
        Gateway::new(keygate, Rules::default()),
        limits,
        std::future::pending(),
    ));
    let closed = tokio::task::spawn_blocking(move || {
        let mut silent = std::net::TcpStream::connect(addr).unwrap();
        common::http::closed_within(&mut silent, std::time::Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(closed, "a client that sends nothing is disconnected");
}
