//! `POST /v1/secret-scanning/github` on a real `keygate serve`: the test
//! plays GitHub with a P-256 key pair of its own, published in a key file
//! of GitHub's shape.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::http::{self, Response};
use common::{Serve, ServeOptions, run_keygate};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const KEY_ID: &str = "0123abcd-test-key";
const ROUTE: &str = "/v1/secret-scanning/github";

/// A P-256 signing key from a seed (a valid scalar: a SHA-256 digest is
/// below the group order but for a 2^-32 chance, not this one).
fn signing_key(seed: &str) -> SigningKey {
    SigningKey::from_slice(&Sha256::digest(seed.as_bytes())).expect("a valid P-256 scalar")
}

/// GitHub's key JSON publishing `key` as `KEY_ID` (and an older key).
fn key_file(dir: &Path, key: &SigningKey) -> PathBuf {
    let pem = |k: &SigningKey| k.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    let json = json!({"public_keys": [
        {"key_identifier": "older-key", "key": pem(&signing_key("older")), "is_current": false},
        {"key_identifier": KEY_ID, "key": pem(key), "is_current": true},
    ]});
    let path = dir.join("github-keys.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

fn post(server: &Serve, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http::request(server.addr, "POST", ROUTE, &all, body)
}

fn report(token: &str, url: &str) -> Vec<u8> {
    json!([
        {"token": token, "type": "keygate_api_key", "url": url, "source": "content"},
        {"token": "kg_live_not-a-token-at-all", "type": "keygate_api_key", "url": url, "source": "content"},
    ])
    .to_string()
    .into_bytes()
}

/// The key's revoke records in the audit log.
fn revocations(server: &Serve, admin: &str, id: &str) -> Vec<Value> {
    let audit = server.call(
        "GET",
        &format!("/v1/audit?key_id={id}&action=key.revoke"),
        admin,
        "",
    );
    assert_eq!(audit.status, 200, "{audit:?}");
    audit.json()["records"].as_array().unwrap().clone()
}

#[test]
fn a_signed_report_revokes_the_key_and_a_forged_one_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let github = signing_key("github");
    let keys = key_file(dir.path(), &github);
    let server = Serve::start(
        dir.path(),
        ServeOptions::new().args(["--github-keys", keys.to_str().unwrap()]),
    );
    let admin = server.bootstrap_token();
    let (token, record) = server.create_key(&admin, json!({"owner": "alice", "name": "leaky"}));
    let id = record["id"].as_str().unwrap().to_owned();
    let url = "https://github.com/octo/app/blob/5bd1e4a/config/.env";
    let body = report(&token, url);
    let still_valid = |server: &Serve| server.call("GET", "/v1/scopes", &token, "").status == 200;
    assert!(still_valid(&server));

    // Forged, missing, tampered, unknown key, garbage: 401, nothing revoked, nothing echoed.
    let forger = signing_key("forger");
    let tampered = report(&token, "https://github.com/octo/app/blob/0000000/other");
    let good = sign(&github, &body);
    let forged = sign(&forger, &body);
    let older = sign(&signing_key("older"), &body);
    for (headers, sent) in [
        (
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", forged.as_str()),
            ],
            &body,
        ),
        (vec![], &body),
        (vec![("Github-Public-Key-Identifier", KEY_ID)], &body),
        (vec![("Github-Public-Key-Signature", good.as_str())], &body),
        (
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", good.as_str()),
            ],
            &tampered,
        ),
        (
            vec![
                ("Github-Public-Key-Identifier", "no-such-key"),
                ("Github-Public-Key-Signature", good.as_str()),
            ],
            &body,
        ),
        // Signed by the older key but named as the current one.
        (
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", older.as_str()),
            ],
            &body,
        ),
        (
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", "%%%not base64"),
            ],
            &body,
        ),
        (
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", "AAAA"),
            ],
            &body,
        ),
    ] {
        let answer = post(&server, &headers, sent);
        assert_eq!(answer.status, 401, "{headers:?}: {answer:?}");
        assert_eq!(answer.json()["error"], "invalid_signature");
        assert!(answer.header("www-authenticate").is_some());
        assert!(!answer.text().contains(&token), "the token was echoed");
    }
    assert!(still_valid(&server), "a forged report revoked the key");
    assert!(revocations(&server, &admin, &id).is_empty());

    // Signed by GitHub: revoked, labelled.
    let headers = [
        ("Github-Public-Key-Identifier", KEY_ID),
        ("Github-Public-Key-Signature", good.as_str()),
    ];
    let answer = post(&server, &headers, &body);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.header("x-request-id").is_some(), "{answer:?}");
    let labels = json!([
        {"token_raw": token, "token_type": "keygate_api_key", "label": "true_positive"},
        {"token_raw": "kg_live_not-a-token-at-all", "token_type": "keygate_api_key", "label": "false_positive"},
    ]);
    assert_eq!(answer.json(), labels);
    assert!(!still_valid(&server), "the reported key still works");
    let records = revocations(&server, &admin, &id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["actor"],
        json!({"operator": "github-secret-scanning"})
    );
    assert_eq!(
        records[0]["changes"]["revoked_reason"]["to"],
        format!("leaked: {url}")
    );
    let shown = server
        .call("GET", &format!("/v1/keys/{id}"), &admin, "")
        .json();
    assert_eq!(shown["status"], "revoked");

    // Replayed: the same answer, no second record.
    let again = post(&server, &headers, &body);
    assert_eq!((again.status, again.json()), (200, labels));
    assert_eq!(revocations(&server, &admin, &id).len(), 1);

    // A signed report that is not a report: 400, nothing done.
    let odd = br#"{"token": "x"}"#;
    let signature = sign(&github, odd);
    let answer = post(
        &server,
        &[
            ("Github-Public-Key-Identifier", KEY_ID),
            ("Github-Public-Key-Signature", signature.as_str()),
        ],
        odd,
    );
    assert_eq!(answer.status, 400, "{answer:?}");

    // The older key still signs for itself (GitHub rotates by publishing both).
    let (other, _) = server.create_key(&admin, json!({"owner": "bob", "name": "old"}));
    let body = report(&other, url);
    let signature = sign(&signing_key("older"), &body);
    let answer = post(
        &server,
        &[
            ("Github-Public-Key-Identifier", "older-key"),
            ("Github-Public-Key-Signature", signature.as_str()),
        ],
        &body,
    );
    assert_eq!(answer.json()[0]["label"], "true_positive");

    // An oversized report is refused unread.
    let huge = vec![b' '; (1 << 20) + 1];
    let signature = sign(&github, &huge);
    let answer = post(
        &server,
        &[
            ("Github-Public-Key-Identifier", KEY_ID),
            ("Github-Public-Key-Signature", signature.as_str()),
        ],
        &huge,
    );
    assert_eq!(answer.status, 413);

    let logs = format!("{}{}", server.stdout(), server.stderr());
    for secret in [&token, &other] {
        assert!(
            !logs.contains(&secret[24..]),
            "a reported token is in the logs:\n{logs}"
        );
    }
}

#[test]
fn without_github_keys_there_is_no_route_and_a_bad_key_file_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), ServeOptions::new());
    let answer = post(&server, &[], b"[]");
    assert_eq!(answer.status, 404, "{answer:?}");
    drop(server);

    let other = tempfile::tempdir().unwrap();
    let bad = other.path().join("keys.json");
    std::fs::write(
        &bad,
        r#"{"public_keys": [{"key_identifier": "k", "key": "not a key"}]}"#,
    )
    .unwrap();
    let output = run_keygate(
        other.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--github-keys",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--github-keys") && stderr.contains("keys.json"),
        "{stderr}"
    );
    // Checked before anything is created: no bootstrap key printed.
    assert!(output.stdout.is_empty(), "{output:?}");
}
