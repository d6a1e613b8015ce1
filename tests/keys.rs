//! Key management through `keygate.keys()` and verification, on every
//! backend: the rules of SPEC §5 and the checks of §1/§2.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use keygate::{
    Ceiling, Environment, InvalidReason, KeyError, KeyStatus, KeyUpdate, Keygate, KeygateBuilder,
    MemoryStore, NewKey, Pepper, RateLimits, ScopeCatalog, ScopeSet, SqliteStore, VerifyError,
};
use time::{Duration, OffsetDateTime};

struct Backend {
    name: &'static str,
    builder: KeygateBuilder,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let sqlite = SqliteStore::open(&url).await.unwrap();
    vec![
        Backend {
            name: "memory",
            builder: Keygate::builder(MemoryStore::new())
                .pepper(Pepper::insecure_fixed_for_tests()),
            _dir: None,
        },
        Backend {
            name: "sqlite",
            builder: Keygate::builder(sqlite).pepper(Pepper::insecure_fixed_for_tests()),
            _dir: Some(dir),
        },
    ]
}

async fn gates() -> Vec<(&'static str, Keygate, Option<tempfile::TempDir>)> {
    backends()
        .await
        .into_iter()
        .map(|b| (b.name, b.builder.build().unwrap(), b._dir))
        .collect()
}

fn invalid(err: VerifyError) -> InvalidReason {
    match err {
        VerifyError::Invalid(reason) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

async fn count_all(gate: &Keygate) -> usize {
    gate.keys()
        .list(&keygate::ListQuery {
            include_revoked: true,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .keys
        .len()
}

#[tokio::test]
async fn created_key_verifies_and_carries_its_attributes() {
    for (backend, gate, _dir) in gates().await {
        let created = gate
            .keys()
            .create(
                NewKey::new("alice", "ci")
                    .scopes(["workspaces:read", "templates:*"])
                    .organization("acme")
                    .description("pipeline")
                    .environment(Environment::Test)
                    .metadata(serde_json::json!({"team": "ci"}))
                    .ip_allow(["10.0.0.0/8"])
                    .expires_in("30d"),
            )
            .await
            .unwrap();
        let token = created.token.expose();
        assert!(token.starts_with("kg_test_"), "{backend}");
        assert_eq!(
            created.key.display_prefix,
            format!("kg_test_{}", created.key.id)
        );
        assert_eq!(&token[..24], created.key.display_prefix, "{backend}");
        let key = gate.verify(token).await.unwrap();
        assert_eq!(key.owner(), "alice");
        assert_eq!(key.organization(), Some("acme"));
        assert_eq!(key.environment(), Environment::Test);
        assert_eq!(key.metadata()["team"], "ci");
        assert_eq!(
            key.scopes(),
            &ScopeSet::parse(["templates:*", "workspaces:read"]).unwrap()
        );
        let expires = key.expires_at().unwrap();
        let expected = OffsetDateTime::now_utc() + Duration::days(30);
        assert!(
            (expires - expected).abs() < Duration::seconds(3),
            "{backend}: {expires}"
        );
        assert_eq!(
            gate.keys().get(&key.id()).await.unwrap(),
            created.key,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn default_lifetime_is_ninety_days_and_configurable() {
    for b in backends().await {
        let gate = b.builder.default_lifetime(None).build().unwrap();
        let k = gate
            .keys()
            .create(NewKey::new("a", "forever"))
            .await
            .unwrap();
        assert_eq!(k.key.expires_at, None, "{}", b.name);
    }
    for (backend, gate, _dir) in gates().await {
        let k = gate
            .keys()
            .create(NewKey::new("a", "default"))
            .await
            .unwrap();
        let lifetime = k.key.expires_at.unwrap() - k.key.created_at;
        assert_eq!(lifetime, Duration::days(90), "{backend}");
    }
}

#[tokio::test]
async fn every_offline_and_store_failure_is_an_invalid_token() {
    for (backend, gate, _dir) in gates().await {
        let created = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        let token = created.token.expose().to_owned();
        let mut wrong_checksum = token.clone().into_bytes();
        let last = wrong_checksum.len() - 1;
        wrong_checksum[last] = if wrong_checksum[last] == b'0' {
            b'1'
        } else {
            b'0'
        };
        let wrong_checksum = String::from_utf8(wrong_checksum).unwrap();
        // Same id, different secret, valid checksum: a forged token.
        let forged = {
            let signed = format!("{}{}", &token[..24], "A".repeat(32));
            let crc = crc32fast::hash(signed.as_bytes());
            format!("{signed}{}", base62_6(crc))
        };
        // A well-formed token for an id nobody holds.
        let unknown = gate.token_format().generate(Environment::Live);
        let cases: Vec<(String, InvalidReason)> = vec![
            ("a".repeat(300), InvalidReason::TooLong),
            ("kg_live_short".into(), InvalidReason::Malformed),
            (token.replace("kg_", "zz_"), InvalidReason::UnknownPrefix),
            (wrong_checksum, InvalidReason::BadChecksum),
            (forged, InvalidReason::WrongSecret),
            (unknown.expose().to_owned(), InvalidReason::UnknownId),
            (format!("{token} "), InvalidReason::Malformed),
        ];
        for (presented, expected) in cases {
            assert_eq!(
                invalid(gate.verify(&presented).await.unwrap_err()),
                expected,
                "{backend}"
            );
        }
        assert!(gate.verify(&token).await.is_ok());
    }
}

fn base62_6(mut n: u32) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = A[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_different_pepper_invalidates_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store = Arc::new(SqliteStore::open(&url).await.unwrap());
    let a = Keygate::builder(store.clone())
        .pepper(Pepper::from_bytes(&[1; 32]).unwrap())
        .build()
        .unwrap();
    let b = Keygate::builder(store)
        .pepper(Pepper::from_bytes(&[2; 32]).unwrap())
        .build()
        .unwrap();
    let created = a.keys().create(NewKey::new("alice", "ci")).await.unwrap();
    assert!(a.verify(created.token.expose()).await.is_ok());
    assert_eq!(
        invalid(b.verify(created.token.expose()).await.unwrap_err()),
        InvalidReason::WrongSecret
    );
}

#[tokio::test]
async fn revoked_key_is_refused_and_keeps_its_reason() {
    for (backend, gate, _dir) in gates().await {
        let created = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        let id = created.key.id;
        let revoked = gate
            .keys()
            .revoke(&id, Some("leaked in a log"))
            .await
            .unwrap();
        assert_eq!(
            revoked.status_at(OffsetDateTime::now_utc()),
            KeyStatus::Revoked
        );
        assert_eq!(revoked.revoked_reason.as_deref(), Some("leaked in a log"));
        assert_eq!(
            invalid(gate.verify(created.token.expose()).await.unwrap_err()),
            InvalidReason::Revoked,
            "{backend}"
        );
        // Revoking again changes nothing.
        let again = gate.keys().revoke(&id, Some("other")).await.unwrap();
        assert_eq!(again.revoked_at, revoked.revoked_at);
        assert_eq!(again.revoked_reason.as_deref(), Some("leaked in a log"));
        // The name is free again.
        gate.keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn key_is_refused_from_the_exact_second_it_expires() {
    for (backend, gate, _dir) in gates().await {
        let now = OffsetDateTime::now_utc();
        let at = (now + Duration::seconds(2)).replace_nanosecond(0).unwrap();
        let created = gate
            .keys()
            .create(NewKey::new("alice", "short").expires_at(at))
            .await
            .unwrap();
        assert_eq!(created.key.expires_at, Some(at));
        assert!(
            gate.verify(created.token.expose()).await.is_ok(),
            "{backend}"
        );
        let wait = at - OffsetDateTime::now_utc();
        tokio::time::sleep(StdDuration::try_from(wait).unwrap() + StdDuration::from_millis(5))
            .await;
        assert_eq!(
            invalid(gate.verify(created.token.expose()).await.unwrap_err()),
            InvalidReason::Expired,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn rotation_without_grace_retires_the_old_token_at_once() {
    for (backend, gate, _dir) in gates().await {
        let old = gate
            .keys()
            .create(
                NewKey::new("alice", "ci")
                    .scopes(["workspaces:read"])
                    .expires_in("10d"),
            )
            .await
            .unwrap();
        let new = gate
            .keys()
            .rotate(&old.key.id, Duration::ZERO)
            .await
            .unwrap();
        assert_ne!(new.key.id, old.key.id);
        assert_eq!(new.key.name, "ci");
        assert_eq!(new.key.scopes, old.key.scopes);
        assert_eq!(
            new.key.expires_at.unwrap() - new.key.created_at,
            Duration::days(10)
        );
        assert_eq!(
            invalid(gate.verify(old.token.expose()).await.unwrap_err()),
            InvalidReason::Expired,
            "{backend}"
        );
        assert!(gate.verify(new.token.expose()).await.is_ok());
        let old_record = gate.keys().get(&old.key.id).await.unwrap();
        assert_eq!(old_record.superseded_by, Some(new.key.id));
        // Rotating the superseded key again is refused.
        let err = gate
            .keys()
            .rotate(&old.key.id, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyError::Conflict { field: "id", .. }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn rotation_with_grace_keeps_both_tokens_until_the_grace_ends() {
    for (backend, gate, _dir) in gates().await {
        let old = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        let new = gate
            .keys()
            .rotate(&old.key.id, Duration::hours(1))
            .await
            .unwrap();
        assert!(gate.verify(old.token.expose()).await.is_ok(), "{backend}");
        assert!(gate.verify(new.token.expose()).await.is_ok(), "{backend}");
        let old_record = gate.keys().get(&old.key.id).await.unwrap();
        let grace_end = old_record.expires_at.unwrap() - OffsetDateTime::now_utc();
        assert!(grace_end <= Duration::hours(1) && grace_end > Duration::minutes(59));
        // A grace beyond the old expiry does not extend it.
        let short = gate
            .keys()
            .create(NewKey::new("alice", "short").expires_in("1h"))
            .await
            .unwrap();
        gate.keys()
            .rotate(&short.key.id, Duration::days(7))
            .await
            .unwrap();
        let short_record = gate.keys().get(&short.key.id).await.unwrap();
        assert_eq!(short_record.expires_at, short.key.expires_at);
    }
}

#[tokio::test]
async fn revoked_or_expired_keys_cannot_be_rotated() {
    for (_backend, gate, _dir) in gates().await {
        let k = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        gate.keys().revoke(&k.key.id, None).await.unwrap();
        let err = gate
            .keys()
            .rotate(&k.key.id, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, KeyError::Conflict { .. }), "{err:?}");
        let err = gate
            .keys()
            .rotate(&k.key.id, Duration::seconds(-1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyError::Invalid { field: "grace", .. }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn update_narrows_scopes_but_never_widens() {
    for (backend, gate, _dir) in gates().await {
        let k = gate
            .keys()
            .create(NewKey::new("alice", "ci").scopes(["workspaces:*", "templates:use"]))
            .await
            .unwrap();
        let narrowed = gate
            .keys()
            .update(&k.key.id, KeyUpdate::default().scopes(["workspaces:read"]))
            .await
            .unwrap();
        assert_eq!(
            narrowed.scopes,
            ScopeSet::parse(["workspaces:read"]).unwrap(),
            "{backend}"
        );
        let err = gate
            .keys()
            .update(&k.key.id, KeyUpdate::default().scopes(["workspaces:*"]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Invalid {
                    field: "scopes",
                    ..
                }
            ),
            "{err:?}"
        );
        let verified = gate.verify(k.token.expose()).await.unwrap();
        assert_eq!(
            verified.scopes(),
            &ScopeSet::parse(["workspaces:read"]).unwrap()
        );
    }
}

#[tokio::test]
async fn update_changes_name_description_metadata_and_ip_lists() {
    for (backend, gate, _dir) in gates().await {
        let k = gate
            .keys()
            .create(NewKey::new("alice", "ci").description("old"))
            .await
            .unwrap();
        gate.keys()
            .create(NewKey::new("alice", "taken"))
            .await
            .unwrap();
        let updated = gate
            .keys()
            .update(
                &k.key.id,
                KeyUpdate::default()
                    .name("deploy")
                    .description("")
                    .metadata(serde_json::json!({"v": 2}))
                    .ip_allow(["192.0.2.0/24"])
                    .ip_deny(["192.0.2.7"]),
            )
            .await
            .unwrap();
        assert_eq!(updated.name, "deploy", "{backend}");
        assert_eq!(updated.description, None);
        assert_eq!(updated.metadata["v"], 2);
        assert!(updated.allows_ip("192.0.2.8".parse().unwrap()));
        assert!(!updated.allows_ip("192.0.2.7".parse().unwrap()));
        assert!(updated.updated_at >= k.key.updated_at);
        let err = gate
            .keys()
            .update(&k.key.id, KeyUpdate::default().name("taken"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyError::Conflict { field: "name", .. }),
            "{err:?}"
        );
        let err = gate
            .keys()
            .update(&k.key.id, KeyUpdate::default().ip_allow(["nope"]))
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("ip_allow"));
        assert_eq!(gate.keys().get(&k.key.id).await.unwrap().name, "deploy");
    }
}

#[tokio::test]
async fn refusals_name_the_field_and_write_nothing() {
    for (backend, gate, _dir) in gates().await {
        let past = OffsetDateTime::now_utc() - Duration::hours(1);
        let cases: Vec<(NewKey, &str)> = vec![
            (NewKey::new("", "ci"), "owner"),
            (NewKey::new("a\u{1}", "ci"), "owner"),
            (NewKey::new("x".repeat(129), "ci"), "owner"),
            (NewKey::new("alice", ""), "name"),
            (NewKey::new("alice", "tab\there"), "name"),
            (NewKey::new("alice", "n".repeat(129)), "name"),
            (
                NewKey::new("alice", "ci").scopes(["Workspaces:read"]),
                "scopes",
            ),
            (
                NewKey::new("alice", "ci").scopes((0..65).map(|i| format!("r{i}:a"))),
                "scopes",
            ),
            (
                NewKey::new("alice", "ci").ip_allow(["300.0.0.1"]),
                "ip_allow",
            ),
            (
                NewKey::new("alice", "ci").ip_deny(["10.0.0.0/99"]),
                "ip_deny",
            ),
            (
                NewKey::new("alice", "ci").ip_allow((0..65).map(|i| format!("10.0.0.{i}"))),
                "ip_allow",
            ),
            (NewKey::new("alice", "ci").expires_in("5q"), "expires_in"),
            (NewKey::new("alice", "ci").expires_at(past), "expires_at"),
            (
                NewKey::new("alice", "ci").expires_at_text("next tuesday"),
                "expires_at",
            ),
            (
                NewKey::new("alice", "ci").metadata(serde_json::json!("string")),
                "metadata",
            ),
            (
                NewKey::new("alice", "ci").metadata(serde_json::json!({"x": "y".repeat(5000)})),
                "metadata",
            ),
            (
                NewKey::new("alice", "ci").description("d".repeat(1025)),
                "description",
            ),
            (NewKey::new("alice", "ci").organization(""), "organization"),
        ];
        for (new, field) in cases {
            let err = gate.keys().create(new).await.unwrap_err();
            assert!(
                matches!(err, KeyError::Invalid { .. }),
                "{backend}: {err:?}"
            );
            assert_eq!(err.field(), Some(field), "{backend}: {err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
        assert_eq!(
            count_all(&gate).await,
            0,
            "{backend}: a refusal wrote something"
        );
    }
}

#[tokio::test]
async fn catalog_limits_scopes_but_keeps_management_scopes() {
    for b in backends().await {
        let catalog = ScopeCatalog::new()
            .with("workspaces:read", "Read workspaces")
            .unwrap()
            .with("templates:use", "Use templates")
            .unwrap();
        let gate = b.builder.catalog(catalog).build().unwrap();
        for ok in [
            vec!["workspaces:read"],
            vec!["workspaces:*"],
            vec!["*:use"],
            vec!["keys:*", "*:*", "keys:read"],
        ] {
            let name = ok.join(",");
            gate.keys()
                .create(NewKey::new("alice", name).scopes(ok))
                .await
                .unwrap();
        }
        for bad in ["workspaces:write", "billing:*", "*:write"] {
            let err = gate
                .keys()
                .create(NewKey::new("alice", bad).scopes([bad]))
                .await
                .unwrap_err();
            assert_eq!(err.field(), Some("scopes"), "{}: {bad}", b.name);
        }
    }
}

#[tokio::test]
async fn a_key_can_never_mint_a_scope_it_does_not_hold() {
    for (_backend, gate, _dir) in gates().await {
        let caller = gate
            .keys()
            .create(NewKey::new("alice", "caller").scopes(["workspaces:*", "templates:use"]))
            .await
            .unwrap()
            .key;
        let ceiling = Ceiling::of_record(&caller);
        for ok in [
            vec!["workspaces:read"],
            vec!["workspaces:*", "templates:use"],
            vec![],
        ] {
            let name = format!("ok{}", ok.join(","));
            gate.keys()
                .create_as(&ceiling, NewKey::new("alice", name).scopes(ok))
                .await
                .unwrap();
        }
        for bad in ["*:*", "*:read", "templates:*", "billing:read"] {
            let err = gate
                .keys()
                .create_as(
                    &ceiling,
                    NewKey::new("alice", bad).scopes(["workspaces:read", bad]),
                )
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    KeyError::Forbidden {
                        field: "scopes",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
        // Rotation hands out a token, so it obeys the same ceiling.
        let admin = gate
            .keys()
            .create(NewKey::new("alice", "admin").scopes(["*:*"]))
            .await
            .unwrap();
        let err = gate
            .keys()
            .rotate_as(&ceiling, &admin.key.id, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Forbidden {
                    field: "scopes",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(gate.verify(admin.token.expose()).await.is_ok());
    }
}

/// Every limit of SPEC §4a, through the library on every backend: the
/// caller's ceiling bounds create, rotate and update; nothing is written
/// on a refusal; the operator's methods are unbounded.
#[tokio::test]
async fn the_mint_ceiling_bounds_every_attribute_on_every_backend() {
    for (backend, gate, _dir) in gates().await {
        let caller = gate
            .keys()
            .create(
                NewKey::new("alice", "caller")
                    .scopes(["keys:create", "keys:update", "workspaces:read"])
                    .expires_in("1h")
                    .environment(Environment::Test)
                    .organization("acme")
                    .ip_allow(["10.0.0.0/8"])
                    .ip_deny(["10.9.0.0/16"]),
            )
            .await
            .unwrap()
            .key;
        let ceiling = Ceiling::of_record(&caller);
        let within = || {
            NewKey::new("alice", "within")
                .environment(Environment::Test)
                .organization("acme")
                .ip_allow(["10.1.0.0/16"])
                .ip_deny(["10.9.0.0/16"])
        };
        let before = count_all(&gate).await;
        for (new, field) in [
            (within().expires_in("never"), "expires_at"),
            (within().expires_in("2h"), "expires_at"),
            (within().environment(Environment::Live), "environment"),
            (within().organization("other"), "organization"),
            (within().ip_allow(Vec::<String>::new()), "ip_allow"),
            (within().ip_allow(["11.0.0.0/8"]), "ip_allow"),
            (within().ip_deny(Vec::<String>::new()), "ip_deny"),
            (within().scopes(["keys:delete"]), "scopes"),
        ] {
            let err = gate.keys().create_as(&ceiling, new).await.unwrap_err();
            assert!(
                matches!(err, KeyError::Forbidden { field: f, .. } if f == field),
                "{backend}: {field}: {err:?}"
            );
            assert_eq!(err.code(), "forbidden");
        }
        assert_eq!(count_all(&gate).await, before, "{backend}: nothing written");

        // Within the ceiling; environment, organization and lifetime come
        // from the caller when left out.
        let made = gate
            .keys()
            .create_as(
                &ceiling,
                NewKey::new("alice", "inherits")
                    .ip_allow(["10.1.0.0/16"])
                    .ip_deny(["10.9.0.0/16"]),
            )
            .await
            .unwrap()
            .key;
        assert_eq!(made.environment, Environment::Test, "{backend}");
        assert_eq!(made.organization.as_deref(), Some("acme"), "{backend}");
        assert_eq!(made.expires_at, caller.expires_at, "{backend}: default cut");

        // Update: no widening of the IP lists.
        for (update, field) in [
            (
                KeyUpdate::default().ip_allow(Vec::<String>::new()),
                "ip_allow",
            ),
            (KeyUpdate::default().ip_deny(["10.8.0.0/16"]), "ip_deny"),
        ] {
            let err = gate
                .keys()
                .update_as(&ceiling, &made.id, update)
                .await
                .unwrap_err();
            assert_eq!(err.field(), Some(field), "{backend}: {err:?}");
            assert_eq!(err.code(), "forbidden");
        }
        assert_eq!(gate.keys().get(&made.id).await.unwrap(), made);

        // Rotation: a key beyond the ceiling is refused; the operator may.
        let never = gate
            .keys()
            .create(
                NewKey::new("alice", "forever")
                    .expires_in("never")
                    .environment(Environment::Test)
                    .organization("acme")
                    .ip_allow(["10.1.0.0/16"])
                    .ip_deny(["10.9.0.0/16"]),
            )
            .await
            .unwrap();
        let err = gate
            .keys()
            .rotate_as(&ceiling, &never.key.id, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("expires_at"), "{backend}: {err:?}");
        assert!(gate.verify(never.token.expose()).await.is_ok());
        let rotated = gate
            .keys()
            .rotate(&never.key.id, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            rotated.key.expires_at, None,
            "{backend}: the operator is unbounded"
        );
        // A key within the ceiling rotates, never outliving the caller.
        let renewed = gate
            .keys()
            .rotate_as(&ceiling, &made.id, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(renewed.key.expires_at, caller.expires_at, "{backend}");
    }
}

#[tokio::test]
async fn maximum_lifetime_refuses_never_and_longer_lifetimes() {
    for b in backends().await {
        let gate = b
            .builder
            .max_lifetime(StdDuration::from_secs(30 * 86_400))
            .default_lifetime(Some(StdDuration::from_secs(7 * 86_400)))
            .build()
            .unwrap();
        for (new, field) in [
            (NewKey::new("a", "1").expires_in("never"), "expires_in"),
            (NewKey::new("a", "2").expires_in("31d"), "expires_in"),
            (
                NewKey::new("a", "3").expires_at(OffsetDateTime::now_utc() + Duration::days(40)),
                "expires_at",
            ),
        ] {
            assert_eq!(
                gate.keys().create(new).await.unwrap_err().field(),
                Some(field),
                "{}",
                b.name
            );
        }
        let k = gate.keys().create(NewKey::new("a", "ok")).await.unwrap();
        assert_eq!(
            k.key.expires_at.unwrap() - k.key.created_at,
            Duration::days(7)
        );
    }
}

#[tokio::test]
async fn per_owner_limit_is_a_key_limit_error() {
    for b in backends().await {
        let gate = b.builder.max_keys_per_owner(2).build().unwrap();
        gate.keys().create(NewKey::new("alice", "1")).await.unwrap();
        let second = gate.keys().create(NewKey::new("alice", "2")).await.unwrap();
        let err = gate
            .keys()
            .create(NewKey::new("alice", "3"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyError::KeyLimitReached { limit: 2 }),
            "{err:?}"
        );
        assert_eq!(err.code(), "key_limit_reached");
        // Rotation does not count twice; revocation frees a slot.
        gate.keys()
            .rotate(&second.key.id, Duration::hours(1))
            .await
            .unwrap();
        gate.keys().revoke(&second.key.id, None).await.unwrap();
        assert_eq!(gate.keys().count_active("alice").await.unwrap(), 2);
        gate.keys().create(NewKey::new("bob", "1")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_of_one_name_admit_exactly_one() {
    for (backend, gate, _dir) in gates().await {
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.keys().create(NewKey::new("alice", "race")).await })
            })
            .collect();
        let mut ok = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(KeyError::Conflict { field: "name", .. }) => conflicts += 1,
                Err(e) => panic!("{backend}: unexpected {e:?}"),
            }
        }
        assert_eq!((ok, conflicts), (1, 19), "{backend}");
        assert_eq!(count_all(&gate).await, 1, "{backend}");
    }
}

#[tokio::test]
async fn delete_removes_the_record_and_the_token_stops_working() {
    for (_backend, gate, _dir) in gates().await {
        let k = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        gate.keys().delete(&k.key.id).await.unwrap();
        assert!(matches!(
            gate.keys().get(&k.key.id).await,
            Err(KeyError::NotFound)
        ));
        assert!(matches!(
            gate.keys().delete(&k.key.id).await,
            Err(KeyError::NotFound)
        ));
        assert_eq!(
            invalid(gate.verify(k.token.expose()).await.unwrap_err()),
            InvalidReason::UnknownId
        );
    }
}

#[tokio::test]
async fn records_and_errors_never_contain_the_secret() {
    for (_backend, gate, _dir) in gates().await {
        let k = gate
            .keys()
            .create(NewKey::new("alice", "ci"))
            .await
            .unwrap();
        let token = k.token.expose();
        let secret = &token[24..56];
        let json = serde_json::to_string(&k.key).unwrap();
        let debug = format!("{k:?} {:?}", gate.verify(token).await.unwrap());
        for text in [json, debug] {
            assert!(!text.contains(secret), "{text}");
        }
        let mut forged = token.to_owned();
        forged.replace_range(30..31, if &token[30..31] == "a" { "b" } else { "a" });
        let err = gate.verify(&forged).await.unwrap_err();
        assert!(!format!("{err:?} {err}").contains(&forged[24..56]));
    }
}

fn limits(json: &str) -> RateLimits {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn rate_limits_are_set_replaced_removed_and_copied_by_rotation() {
    for (backend, gate, _dir) in gates().await {
        let keys = gate.keys();
        let two = limits(
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 1000, "period": "1h", "shared": true}]"#,
        );
        let created = keys
            .create(NewKey::new("alice", "ci").rate_limits(two.clone()))
            .await
            .unwrap();
        assert_eq!(created.key.rate_limits, two, "{backend}");
        assert_eq!(keys.get(&created.key.id).await.unwrap().rate_limits, two);

        let plain = keys.create(NewKey::new("alice", "plain")).await.unwrap();
        assert!(
            plain.key.rate_limits.is_empty(),
            "{backend}: none by default"
        );

        let one = limits(r#"[{"name": "daily", "limit": 5, "period": "1d"}]"#);
        let updated = keys
            .update(
                &created.key.id,
                KeyUpdate::default().rate_limits(one.clone()),
            )
            .await
            .unwrap();
        assert_eq!(updated.rate_limits, one, "{backend}: the list is replaced");
        let renamed = keys
            .update(&created.key.id, KeyUpdate::default().name("ci-2"))
            .await
            .unwrap();
        assert_eq!(
            renamed.rate_limits, one,
            "{backend}: left alone when not given"
        );

        let rotated = keys.rotate(&created.key.id, Duration::ZERO).await.unwrap();
        assert_eq!(
            rotated.key.rate_limits, one,
            "{backend}: rotation copies them"
        );
        assert_eq!(keys.get(&rotated.key.id).await.unwrap().rate_limits, one);

        let cleared = keys
            .update(
                &rotated.key.id,
                KeyUpdate::default().rate_limits(RateLimits::empty()),
            )
            .await
            .unwrap();
        assert!(cleared.rate_limits.is_empty(), "{backend}: [] removes them");
        assert!(
            keys.get(&rotated.key.id)
                .await
                .unwrap()
                .rate_limits
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_limited_caller_never_mints_looser_rate_limits() {
    for (backend, gate, _dir) in gates().await {
        let keys = gate.keys();
        let caller = keys
            .create(
                NewKey::new("alice", "caller")
                    .scopes(["keys:create", "keys:update"])
                    .rate_limits(limits(
                        r#"[{"name": "burst", "limit": 20, "period": "1s"}]"#,
                    )),
            )
            .await
            .unwrap();
        let ceiling = Ceiling::of_record(&caller.key);
        let before = count_all(&gate).await;
        for looser in [
            "[]",
            r#"[{"name": "burst", "limit": 21, "period": "1s"}]"#,
            r#"[{"name": "burst", "limit": 20, "period": "1s"}, {"name": "x", "limit": 1, "period": "1s"}]"#,
        ] {
            let result = keys
                .create_as(
                    &ceiling,
                    NewKey::new("alice", "child").rate_limits(limits(looser)),
                )
                .await;
            if looser.contains("\"x\"") {
                // Extra limits of other names only narrow the key.
                let child = result.unwrap();
                keys.delete(&child.key.id).await.unwrap();
                continue;
            }
            let err = result.unwrap_err();
            assert!(
                matches!(
                    err,
                    KeyError::Forbidden {
                        field: "rate_limits",
                        ..
                    }
                ),
                "{backend}: {looser}: {err:?}"
            );
        }
        assert_eq!(count_all(&gate).await, before, "{backend}: nothing written");

        let tight = limits(r#"[{"name": "burst", "limit": 10, "period": "1s", "shared": true}]"#);
        let child = keys
            .create_as(
                &ceiling,
                NewKey::new("alice", "child").rate_limits(tight.clone()),
            )
            .await
            .unwrap();
        let err = keys
            .update_as(
                &ceiling,
                &child.key.id,
                KeyUpdate::default().rate_limits(RateLimits::empty()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("rate_limits"), "{backend}");
        assert_eq!(keys.get(&child.key.id).await.unwrap().rate_limits, tight);

        // A key without the caller's limit cannot be rotated by it either.
        let free = keys.create(NewKey::new("alice", "free")).await.unwrap();
        let err = keys
            .rotate_as(&ceiling, &free.key.id, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("rate_limits"), "{backend}");
        assert!(
            keys.rotate_as(&ceiling, &child.key.id, Duration::ZERO)
                .await
                .is_ok()
        );
    }
}

#[tokio::test]
async fn credits_are_created_updated_adjusted_and_continued_by_rotation() {
    use keygate::{CreditChange, Credits, Refill, RefillEvery, Reservation};
    for (name, gate, _dir) in gates().await {
        let keys = gate.keys();
        let monthly = Credits::new(10)
            .unwrap()
            .with_refill(Refill::new(10, RefillEvery::Month).unwrap());
        let created = keys
            .create(NewKey::new("alice", "metered").credits(monthly))
            .await
            .unwrap();
        let id = created.key.id;
        assert_eq!(created.key.credits, Some(monthly), "{name}");
        assert_eq!(
            keys.get(&id).await.unwrap().credits,
            Some(monthly),
            "{name}"
        );

        let store = gate.store().credits().expect("credits");
        let Reservation::Counted(grant) = store
            .reserve(&id, 1, 4, OffsetDateTime::now_utc())
            .await
            .unwrap()
        else {
            panic!("{name}: counted")
        };
        assert_eq!(grant.remaining, 6, "{name}");
        // An update of another field leaves the balance alone.
        let renamed = keys
            .update(&id, KeyUpdate::default().name("metered-2"))
            .await
            .unwrap();
        assert_eq!(renamed.credits.map(|c| c.remaining()), Some(6), "{name}");

        let rotated = keys.rotate(&id, Duration::hours(1)).await.unwrap();
        assert_eq!(
            rotated.key.credits.map(|c| c.remaining()),
            Some(6),
            "{name}: the new key continues the balance"
        );
        assert_eq!(
            keys.get(&id).await.unwrap().credits,
            Some(Credits::new(0).unwrap()),
            "{name}"
        );
        let err = keys
            .adjust_credits(&id, CreditChange::Add(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyError::Conflict { field: "id", .. }),
            "{name}: {err:?}"
        );
        let err = keys
            .update(&id, KeyUpdate::default().credits(None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyError::Conflict { field: "id", .. }),
            "{name}: {err:?}"
        );

        let new_id = rotated.key.id;
        let key = keys
            .adjust_credits(&new_id, CreditChange::Add(4))
            .await
            .unwrap();
        assert_eq!(key.credits.map(|c| c.remaining()), Some(10), "{name}");
        let key = keys
            .update(&new_id, KeyUpdate::default().credits(None))
            .await
            .unwrap();
        assert_eq!(key.credits, None, "{name}: None removes them");
        let err = keys
            .adjust_credits(&new_id, CreditChange::Add(1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Invalid {
                    field: "credits",
                    ..
                }
            ),
            "{name}: {err:?}"
        );
        let key = keys
            .update(
                &new_id,
                KeyUpdate::default().credits(Some(Credits::new(2).unwrap())),
            )
            .await
            .unwrap();
        assert_eq!(key.credits, Some(Credits::new(2).unwrap()), "{name}");
    }
}
