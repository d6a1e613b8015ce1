//! The store conformance suite: every [`KeyStore`] backend must pass it.
//!
//! Each check is an async function over a fresh, empty store; the
//! [`conformance_suite!`] macro instantiates all of them for one backend.

#![allow(dead_code)]

use std::sync::Arc;

use keygate::{Actor, AuditAction, AuditLog, AuditQuery, AuditRecord, AuditTarget, FieldChange};
use keygate::{ApiKey, Environment, KeyId, KeyStore, RateLimits, ScopeSet, StoredKey};
use keygate::{CreditChange, CreditGrant, CreditStore, Credits, MAX_CREDITS, Refill, RefillEvery};
use keygate::{Cursor, InsertRules, ListQuery, Reservation, StoreError, Usage};
use time::{Duration, OffsetDateTime};

pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap()
}

fn rules() -> InsertRules {
    InsertRules {
        max_keys_per_owner: 0,
        now: now(),
    }
}

fn limit(max: u32) -> InsertRules {
    InsertRules {
        max_keys_per_owner: max,
        now: now(),
    }
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh id: unique across the whole test run.
pub fn fresh_id() -> KeyId {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    KeyId::parse(&format!(
        "{:08x}{:08x}",
        n as u32,
        (nanos ^ (n << 32)) as u32
    ))
    .unwrap()
}

/// Rate limits from their JSON form.
pub fn limits(json: &str) -> RateLimits {
    serde_json::from_str(json).unwrap()
}

pub fn key(owner: &str, name: &str) -> StoredKey {
    let id = fresh_id();
    let t = now();
    let mut key = ApiKey::new(id, owner);
    key.display_prefix = format!("kg_live_{id}");
    key.name = name.into();
    key.description = Some("a description".into());
    key.organization = Some("acme".into());
    key.environment = Environment::Live;
    key.scopes = ScopeSet::parse(["workspaces:read", "templates:*"]).unwrap();
    key.ip_allow = vec!["10.0.0.0/8".parse().unwrap()];
    key.ip_deny = vec![
        "10.1.0.0/16".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    key.metadata = serde_json::json!({"team": "ci", "n": 3})
        .as_object()
        .unwrap()
        .clone();
    key.created_at = t;
    key.updated_at = t;
    key.expires_at = Some(t + Duration::days(30));
    key.rate_limits = limits(
        r#"[{"name": "burst", "limit": 20, "period": "1s"},
            {"name": "hourly", "limit": 1000, "period": "1h", "shared": true}]"#,
    );
    StoredKey {
        key,
        mac: [7u8; 32],
        revision: 0,
    }
}

pub async fn insert_then_get_round_trips_every_field(store: &dyn KeyStore) {
    let mut k = key("alice", "ci");
    k.key.environment = Environment::Test;
    k.key.description = None;
    k.key.organization = None;
    k.key.expires_at = None;
    k.key.rate_limits = RateLimits::empty();
    k.mac = [0xa5; 32];
    store.insert(&k, rules()).await.unwrap();
    assert_eq!(store.get(&k.key.id).await.unwrap(), Some(k.clone()));

    let mut full = key("alice", "full");
    full.key.credits = Some(monthly(5000, 5000));
    store.insert(&full, rules()).await.unwrap();
    let got = store.get(&full.key.id).await.unwrap().unwrap();
    assert_eq!(got.key.rate_limits.len(), 2, "rate limits are stored");
    assert_eq!(got, full);
}

pub async fn get_of_unknown_id_is_none(store: &dyn KeyStore) {
    assert!(store.get(&fresh_id()).await.unwrap().is_none());
}

pub async fn duplicate_current_name_for_one_owner_is_refused(store: &dyn KeyStore) {
    store.insert(&key("alice", "ci"), rules()).await.unwrap();
    let err = store
        .insert(&key("alice", "ci"), rules())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NameConflict), "{err:?}");
    // Another owner may use the name.
    store.insert(&key("bob", "ci"), rules()).await.unwrap();
    let page = store
        .list(&ListQuery {
            include_revoked: true,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 2, "the refused insert wrote nothing");
}

pub async fn name_is_free_again_once_the_key_is_revoked_expired_or_superseded(
    store: &dyn KeyStore,
) {
    let mut revoked = key("alice", "revoked");
    revoked.key.revoked_at = Some(now());
    store.insert(&revoked, rules()).await.unwrap();
    store
        .insert(&key("alice", "revoked"), rules())
        .await
        .unwrap();

    let mut expired = key("alice", "expired");
    expired.key.expires_at = Some(now() - Duration::seconds(1));
    store.insert(&expired, rules()).await.unwrap();
    store
        .insert(&key("alice", "expired"), rules())
        .await
        .unwrap();

    let mut superseded = key("alice", "rotated");
    superseded.key.superseded_by = Some(fresh_id());
    store.insert(&superseded, rules()).await.unwrap();
    store
        .insert(&key("alice", "rotated"), rules())
        .await
        .unwrap();
}

pub async fn key_expiring_exactly_now_no_longer_counts(store: &dyn KeyStore) {
    let mut k = key("alice", "edge");
    let t = now();
    k.key.expires_at = Some(t);
    store
        .insert(
            &k,
            InsertRules {
                max_keys_per_owner: 0,
                now: t,
            },
        )
        .await
        .unwrap();
    store
        .insert(
            &key("alice", "edge"),
            InsertRules {
                max_keys_per_owner: 1,
                now: t,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.count_current("alice", t).await.unwrap(), 1);
}

pub async fn per_owner_limit_counts_only_current_keys(store: &dyn KeyStore) {
    store.insert(&key("alice", "a"), limit(2)).await.unwrap();
    store.insert(&key("alice", "b"), limit(2)).await.unwrap();
    let err = store
        .insert(&key("alice", "c"), limit(2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyLimitReached), "{err:?}");
    store.insert(&key("bob", "c"), limit(2)).await.unwrap();
    let mut revoked = key("alice", "old");
    revoked.key.revoked_at = Some(now());
    store.insert(&revoked, limit(0)).await.unwrap();
    assert_eq!(store.count_current("alice", now()).await.unwrap(), 2);
    // Unlimited when 0.
    for i in 0..5 {
        store
            .insert(&key("carol", &format!("k{i}")), limit(0))
            .await
            .unwrap();
    }
    assert_eq!(store.count_current("carol", now()).await.unwrap(), 5);
}

pub async fn list_filters_by_owner_organization_and_revocation(store: &dyn KeyStore) {
    let a = key("alice", "a");
    let mut b = key("alice", "b");
    b.key.revoked_at = Some(now());
    let mut c = key("bob", "c");
    c.key.organization = Some("globex".into());
    for k in [&a, &b, &c] {
        store.insert(k, rules()).await.unwrap();
    }
    let ids = |page: keygate::Page| {
        let mut ids: Vec<KeyId> = page.keys.into_iter().map(|k| k.key.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<KeyId>| {
        v.sort();
        v
    };
    let q = |owner: Option<&str>, org: Option<&str>, revoked: bool| ListQuery {
        owner: owner.map(Into::into),
        organization: org.map(Into::into),
        include_revoked: revoked,
        ..ListQuery::default()
    };
    assert_eq!(
        ids(store.list(&q(Some("alice"), None, false)).await.unwrap()),
        vec![a.key.id]
    );
    assert_eq!(
        ids(store.list(&q(Some("alice"), None, true)).await.unwrap()),
        sorted(vec![a.key.id, b.key.id])
    );
    assert_eq!(
        ids(store.list(&q(None, Some("globex"), true)).await.unwrap()),
        vec![c.key.id]
    );
    assert_eq!(
        ids(store.list(&q(None, None, false)).await.unwrap()),
        sorted(vec![a.key.id, c.key.id])
    );
    assert!(
        store
            .list(&q(Some("nobody"), None, true))
            .await
            .unwrap()
            .keys
            .is_empty()
    );
}

pub async fn cursor_pages_return_every_key_once_in_creation_order(store: &dyn KeyStore) {
    let base = now() - Duration::hours(1);
    let mut inserted = Vec::new();
    for i in 0..23 {
        let mut k = key("alice", &format!("k{i}"));
        // Several keys share a second, so ties are broken by id.
        k.key.created_at = base + Duration::seconds(i / 4);
        store.insert(&k, rules()).await.unwrap();
        inserted.push(Cursor::after(&k.key));
    }
    inserted.sort();
    let mut seen = Vec::new();
    let mut query = ListQuery {
        owner: Some("alice".into()),
        limit: 5,
        ..ListQuery::default()
    };
    let mut pages = 0;
    loop {
        let page = store.list(&query).await.unwrap();
        pages += 1;
        assert!(page.keys.len() <= 5);
        seen.extend(page.keys.iter().map(|k| Cursor::after(&k.key)));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, inserted);
    assert_eq!(pages, 5);
}

pub async fn replace_is_compare_and_set_on_the_revision(store: &dyn KeyStore) {
    let k = key("alice", "ci");
    store.insert(&k, rules()).await.unwrap();
    store
        .record_usage(&[Usage {
            id: k.key.id,
            at: now(),
            ip: Some("10.2.3.4".parse().unwrap()),
        }])
        .await
        .unwrap();

    let mut changed = k.clone();
    changed.key.name = "renamed".into();
    changed.key.revoked_at = Some(now());
    changed.key.revoked_reason = Some("leaked".into());
    changed.key.rate_limits = limits(r#"[{"name": "daily", "limit": 5, "period": "1d"}]"#);
    changed.mac = [9u8; 32]; // must be ignored
    store.replace(&changed, now()).await.unwrap();

    let stored = store.get(&k.key.id).await.unwrap().unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(stored.key.name, "renamed");
    assert_eq!(stored.key.revoked_reason.as_deref(), Some("leaked"));
    assert_eq!(stored.key.rate_limits, changed.key.rate_limits);
    assert_eq!(stored.mac, k.mac, "replace never changes the MAC");
    assert!(stored.key.last_used_at.is_some(), "replace keeps usage");

    // The old revision is stale now.
    let err = store.replace(&changed, now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale), "{err:?}");
    let err = store
        .replace(&key("alice", "ghost"), now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

pub async fn rename_onto_a_current_name_is_a_conflict(store: &dyn KeyStore) {
    let a = key("alice", "a");
    let b = key("alice", "b");
    store.insert(&a, rules()).await.unwrap();
    store.insert(&b, rules()).await.unwrap();
    let mut renamed = b.clone();
    renamed.key.name = "a".into();
    let err = store.replace(&renamed, now()).await.unwrap_err();
    assert!(matches!(err, StoreError::NameConflict), "{err:?}");
    assert_eq!(store.get(&b.key.id).await.unwrap().unwrap().key.name, "b");
    // Keeping its own name is not a conflict with itself.
    let mut same = b.clone();
    same.key.description = Some("new".into());
    store.replace(&same, now()).await.unwrap();
}

pub async fn rotate_supersedes_and_inserts_atomically(store: &dyn KeyStore) {
    let old = key("alice", "ci");
    store.insert(&old, limit(1)).await.unwrap();
    let mut new = key("alice", "ci");
    new.mac = [8u8; 32];
    new.key.rate_limits = limits(r#"[{"name": "minute", "limit": 60, "period": "1min"}]"#);
    let mut superseded = old.clone();
    superseded.key.superseded_by = Some(new.key.id);
    superseded.key.expires_at = Some(now() + Duration::minutes(5));
    store.rotate(&superseded, &new, now()).await.unwrap();

    let got_old = store.get(&old.key.id).await.unwrap().unwrap();
    assert_eq!(got_old.key.superseded_by, Some(new.key.id));
    assert_eq!(got_old.key.expires_at, superseded.key.expires_at);
    assert_eq!(got_old.revision, 1);
    assert_eq!(got_old.key.rate_limits, old.key.rate_limits);
    assert_eq!(store.get(&new.key.id).await.unwrap(), Some(new.clone()));
    assert_eq!(store.count_current("alice", now()).await.unwrap(), 1);

    // A second rotation of the same (now superseded) key fails and writes nothing.
    let mut again = got_old.clone();
    let other = key("alice", "ci");
    again.key.superseded_by = Some(other.key.id);
    let err = store.rotate(&again, &other, now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale), "{err:?}");
    assert!(store.get(&other.key.id).await.unwrap().is_none());
}

pub async fn delete_removes_the_record(store: &dyn KeyStore) {
    let k = key("alice", "ci");
    store.insert(&k, rules()).await.unwrap();
    assert!(store.delete(&k.key.id).await.unwrap());
    assert!(store.get(&k.key.id).await.unwrap().is_none());
    assert!(!store.delete(&k.key.id).await.unwrap());
}

pub async fn usage_keeps_the_latest_use_and_leaves_the_revision(store: &dyn KeyStore) {
    let k = key("alice", "ci");
    store.insert(&k, rules()).await.unwrap();
    let t = now();
    let batch = [
        Usage {
            id: k.key.id,
            at: t,
            ip: Some("10.0.0.2".parse().unwrap()),
        },
        Usage {
            id: k.key.id,
            at: t - Duration::seconds(10),
            ip: Some("10.0.0.1".parse().unwrap()),
        },
        Usage {
            id: fresh_id(),
            at: t,
            ip: None,
        },
    ];
    store.record_usage(&batch).await.unwrap();
    let stored = store.get(&k.key.id).await.unwrap().unwrap();
    assert_eq!(stored.key.last_used_at, Some(t));
    assert_eq!(stored.key.last_used_ip, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(stored.revision, 0);
    assert_eq!(stored.key.updated_at, k.key.updated_at);
    store.record_usage(&[]).await.unwrap();
}

pub async fn concurrent_creates_of_one_name_admit_exactly_one(store: Arc<dyn KeyStore>) {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(&key("alice", "race"), rules()).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::NameConflict) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(store.count_current("alice", now()).await.unwrap(), 1);
}

pub async fn concurrent_creates_never_exceed_the_owner_limit(store: Arc<dyn KeyStore>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert(&key("alice", &format!("k{i}")), limit(3))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::KeyLimitReached) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(store.count_current("alice", now()).await.unwrap(), 3);
}

/// Credits of `remaining`, set back to `amount` on the 1st of each month.
pub fn monthly(remaining: u64, amount: u64) -> Credits {
    Credits::new(remaining)
        .unwrap()
        .with_refill(Refill::new(amount, RefillEvery::Month).unwrap())
}

fn credit_store(store: &dyn KeyStore) -> &dyn CreditStore {
    store.credits().expect("every backend keeps credits")
}

/// A key with `credits`, inserted.
async fn with_credits(store: &dyn KeyStore, name: &str, credits: Option<Credits>) -> StoredKey {
    let mut k = key("alice", name);
    k.key.credits = credits;
    store.insert(&k, rules()).await.unwrap();
    k
}

async fn counted(
    store: &dyn KeyStore,
    id: &KeyId,
    need: u64,
    want: u64,
    at: OffsetDateTime,
) -> CreditGrant {
    match credit_store(store)
        .reserve(id, need, want, at)
        .await
        .unwrap()
    {
        Reservation::Counted(grant) => grant,
        other => panic!("expected a counted reservation, got {other:?}"),
    }
}

async fn remaining(store: &dyn KeyStore, id: &KeyId) -> Option<u64> {
    let stored = store.get(id).await.unwrap().unwrap();
    stored.key.credits.map(|c| c.remaining())
}

pub async fn credits_are_stored_and_replace_never_writes_them(store: &dyn KeyStore) {
    let k = with_credits(store, "metered", Some(monthly(10, 50))).await;
    let got = store.get(&k.key.id).await.unwrap().unwrap();
    assert_eq!(got.key.credits, Some(monthly(10, 50)));
    counted(store, &k.key.id, 1, 4, now()).await;
    // A record read before the reservation, renamed and written back,
    // does not undo it; nor does a record carrying other credits.
    let mut stale = got.clone();
    stale.key.name = "renamed".into();
    stale.key.credits = Some(monthly(999, 999));
    store.replace(&stale, now()).await.unwrap();
    let after = store.get(&k.key.id).await.unwrap().unwrap();
    assert_eq!(after.key.name, "renamed");
    assert_eq!(after.key.credits, Some(monthly(6, 50)));
    let page = store.list(&ListQuery::default()).await.unwrap();
    assert_eq!(page.keys[0].key.credits, Some(monthly(6, 50)), "listed too");
}

pub async fn reserve_grants_up_to_want_once_need_is_left(store: &dyn KeyStore) {
    let k = with_credits(store, "metered", Some(Credits::new(7).unwrap())).await;
    let id = k.key.id;
    let t = now();
    let grant = counted(store, &id, 1, 3, t).await;
    assert_eq!((grant.key, grant.granted, grant.remaining), (id, 3, 4));
    assert_eq!(grant.next_refill, None, "no refill");
    let refused = counted(store, &id, 5, 5, t).await;
    assert_eq!((refused.granted, refused.remaining), (0, 4));
    assert!(refused.is_refused(5));
    assert_eq!(
        counted(store, &id, 2, 10, t).await.granted,
        4,
        "what is left"
    );
    assert_eq!(counted(store, &id, 1, 1, t).await.granted, 0);
    assert_eq!(remaining(store, &id).await, Some(0));
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.revision, 0,
        "reservations are not changes of the record"
    );

    let unlimited = with_credits(store, "unlimited", None).await;
    let credits = credit_store(store);
    assert_eq!(
        credits.reserve(&unlimited.key.id, 1, 1, t).await.unwrap(),
        Reservation::Unlimited
    );
    let err = credits.reserve(&fresh_id(), 1, 1, t).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = credits.release(&fresh_id(), 1, 0, t).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

pub async fn releases_return_credits_unless_a_set_or_refill_came_between(store: &dyn KeyStore) {
    let k = with_credits(store, "metered", Some(monthly(7, 100))).await;
    let id = k.key.id;
    let credits = credit_store(store);
    let t = now();
    let grant = counted(store, &id, 1, 3, t).await;
    assert!(credits.release(&id, 2, grant.generation, t).await.unwrap());
    assert_eq!(remaining(store, &id).await, Some(6));

    let grant = counted(store, &id, 1, 3, t).await;
    let set = credits.adjust(&id, CreditChange::Set(10), t).await.unwrap();
    assert_eq!(
        set.key.credits,
        Some(monthly(10, 100)),
        "set keeps the refill"
    );
    assert!(
        !credits.release(&id, 3, grant.generation, t).await.unwrap(),
        "the set started a new generation"
    );
    assert_eq!(remaining(store, &id).await, Some(10));

    // Add keeps outstanding reservations valid.
    let grant = counted(store, &id, 1, 2, t).await;
    let added = credits.adjust(&id, CreditChange::Add(5), t).await.unwrap();
    assert_eq!(added.key.credits.map(|c| c.remaining()), Some(13));
    assert!(
        added.revision > k.revision,
        "adjust is a change of the record"
    );
    assert_eq!(added.key.updated_at, t);
    assert!(credits.release(&id, 2, grant.generation, t).await.unwrap());
    assert_eq!(remaining(store, &id).await, Some(15));

    let err = credits
        .adjust(&id, CreditChange::Add(MAX_CREDITS), t)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooManyCredits), "{err:?}");
    let err = credits
        .adjust(&id, CreditChange::Set(MAX_CREDITS + 1), t)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooManyCredits), "{err:?}");
    assert_eq!(
        remaining(store, &id).await,
        Some(15),
        "refusals write nothing"
    );

    let unlimited = with_credits(store, "unlimited", None).await;
    let err = credits
        .adjust(&unlimited.key.id, CreditChange::Add(1), t)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoCredits), "{err:?}");
    let set = credits
        .adjust(&unlimited.key.id, CreditChange::Set(3), t)
        .await
        .unwrap();
    assert_eq!(set.key.credits, Some(Credits::new(3).unwrap()));
    let gone = credits
        .adjust(&unlimited.key.id, CreditChange::Replace(None), t)
        .await
        .unwrap();
    assert_eq!(gone.key.credits, None);
    assert_eq!(remaining(store, &unlimited.key.id).await, None);
    let err = credits
        .adjust(&fresh_id(), CreditChange::Set(1), t)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

pub async fn a_refill_sets_the_balance_at_the_boundary(store: &dyn KeyStore) {
    let daily = Credits::new(10)
        .unwrap()
        .with_refill(Refill::new(50, RefillEvery::Day).unwrap());
    let k = with_credits(store, "daily", Some(daily)).await;
    let id = k.key.id;
    let today = RefillEvery::Day.latest_boundary_at_or_before(now());
    let tomorrow = today + Duration::days(1);
    let last_second = tomorrow - Duration::seconds(1);

    let grant = counted(store, &id, 1, 10, last_second).await;
    assert_eq!((grant.granted, grant.remaining), (10, 0));
    assert_eq!(grant.next_refill, Some(tomorrow));
    assert_eq!(counted(store, &id, 1, 1, last_second).await.granted, 0);

    let refilled = counted(store, &id, 1, 5, tomorrow).await;
    assert_eq!(
        (refilled.granted, refilled.remaining),
        (5, 45),
        "set to 50, not added"
    );
    assert_eq!(refilled.generation, grant.generation + 1);
    assert_eq!(refilled.next_refill, Some(tomorrow + Duration::days(1)));
    let credits = credit_store(store);
    assert!(
        !credits
            .release(&id, 3, grant.generation, tomorrow)
            .await
            .unwrap(),
        "credits of yesterday's balance are dropped"
    );
    assert!(
        credits
            .release(&id, 3, refilled.generation, tomorrow)
            .await
            .unwrap()
    );
    assert_eq!(counted(store, &id, 0, 0, tomorrow).await.remaining, 48);

    // Several boundaries later: one refill, to the amount.
    let later = tomorrow + Duration::days(3) + Duration::hours(5);
    let grant = counted(store, &id, 1, 1, later).await;
    assert_eq!(grant.remaining, 49);
    assert_eq!(grant.generation, refilled.generation + 1);
}

pub async fn rotation_continues_the_credits(store: &dyn KeyStore) {
    let old = with_credits(store, "metered", Some(monthly(10, 100))).await;
    let t = now();
    let before = counted(store, &old.key.id, 1, 3, t).await;
    assert_eq!(before.remaining, 7);

    let mut new = key("alice", "metered");
    // What the record handed in says is ignored: the store moves the balance.
    new.key.credits = Some(monthly(100, 100));
    let mut superseded = old.clone();
    superseded.key.superseded_by = Some(new.key.id);
    store.rotate(&superseded, &new, t).await.unwrap();

    assert_eq!(
        store.get(&new.key.id).await.unwrap().unwrap().key.credits,
        Some(monthly(7, 100)),
        "the new key continues the balance and the refill"
    );
    let got_old = store.get(&old.key.id).await.unwrap().unwrap();
    assert_eq!(
        got_old.key.credits,
        Some(Credits::new(0).unwrap()),
        "no second copy"
    );

    // The old key, still valid in its grace period, draws from its successor.
    let via_old = counted(store, &old.key.id, 1, 2, t).await;
    assert_eq!(
        (via_old.key, via_old.granted, via_old.remaining),
        (new.key.id, 2, 5)
    );
    assert_eq!(remaining(store, &old.key.id).await, Some(0));
    // A reservation made before the rotation is returned to the successor.
    let credits = credit_store(store);
    assert!(
        credits
            .release(&old.key.id, 2, before.generation, t)
            .await
            .unwrap()
    );
    assert_eq!(remaining(store, &new.key.id).await, Some(7));
    assert_eq!(remaining(store, &old.key.id).await, Some(0));

    // Unlimited keys stay unlimited through a rotation.
    let free = with_credits(store, "free", None).await;
    let next = key("alice", "free");
    let mut superseded = free.clone();
    superseded.key.superseded_by = Some(next.key.id);
    store.rotate(&superseded, &next, t).await.unwrap();
    assert_eq!(
        credits.reserve(&free.key.id, 1, 1, t).await.unwrap(),
        Reservation::Unlimited
    );
    assert_eq!(remaining(store, &next.key.id).await, None);
}

pub async fn concurrent_reservations_never_overspend(store: Arc<dyn KeyStore>) {
    let mut k = key("alice", "metered");
    k.key.credits = Some(Credits::new(7).unwrap());
    store.insert(&k, rules()).await.unwrap();
    let id = k.key.id;
    let tasks: Vec<_> = (0..40u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let credits = store.credits().unwrap();
                credits.reserve(&id, 1, 1 + i % 3, now()).await
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Reservation::Counted(grant) => {
                assert!(grant.granted == 0 || grant.granted <= 3, "{grant:?}");
                granted += grant.granted;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(granted, 7, "exactly the balance was granted");
    assert_eq!(remaining(&*store, &id).await, Some(0));
}

fn log(store: &dyn KeyStore) -> &dyn AuditLog {
    store.audit_log().expect("every backend keeps an audit log")
}

/// A record of `action` on `key` at `at`, from a client, under a request id.
pub fn record(key: &StoredKey, action: AuditAction, at: OffsetDateTime) -> AuditRecord {
    let mut changes = std::collections::BTreeMap::new();
    changes.insert(
        "name".to_owned(),
        FieldChange {
            from: serde_json::Value::Null,
            to: serde_json::json!(key.key.name),
        },
    );
    let mut record = AuditRecord::new(
        at,
        Actor::key(fresh_id(), "root"),
        action,
        AuditTarget::of(&key.key),
        changes,
    );
    record.client_ip = Some("2001:db8::7".parse().unwrap());
    record.request_id = Some(format!("req-{}", fresh_id()));
    record
}

async fn all_records(store: &dyn KeyStore, query: AuditQuery) -> Vec<AuditRecord> {
    log(store).audit_records(&query).await.unwrap().records
}

pub async fn every_audited_mutation_writes_its_record_and_delete_keeps_them(store: &dyn KeyStore) {
    let t = now();
    let mut k = key("alice", "audited");
    k.key.credits = Some(Credits::new(10).unwrap());
    let create = record(&k, AuditAction::Create, t);
    log(store)
        .insert_audited(&k, rules(), &create)
        .await
        .unwrap();

    let mut changed = store.get(&k.key.id).await.unwrap().unwrap();
    changed.key.name = "renamed".into();
    let update = record(&changed, AuditAction::Update, t);
    log(store)
        .replace_audited(&changed, t, &update)
        .await
        .unwrap();

    let credits = record(&changed, AuditAction::Credits, t);
    let after = log(store)
        .adjust_audited(&k.key.id, CreditChange::Add(5), t, &credits)
        .await
        .unwrap();
    assert_eq!(after.key.credits.map(|c| c.remaining()), Some(15));

    let old = store.get(&k.key.id).await.unwrap().unwrap();
    let new = key("alice", "renamed");
    let mut superseded = old.clone();
    superseded.key.superseded_by = Some(new.key.id);
    let rotate = record(&old, AuditAction::Rotate, t);
    log(store)
        .rotate_audited(&superseded, &new, t, &rotate)
        .await
        .unwrap();

    let delete = record(&old, AuditAction::Delete, t);
    assert!(log(store).delete_audited(&k.key.id, &delete).await.unwrap());
    assert!(store.get(&k.key.id).await.unwrap().is_none());
    let ghost = record(&old, AuditAction::Delete, t);
    assert!(
        !log(store).delete_audited(&k.key.id, &ghost).await.unwrap(),
        "a key that is gone is not deleted twice"
    );

    let records = all_records(
        store,
        AuditQuery {
            key_id: Some(k.key.id),
            ..AuditQuery::default()
        },
    )
    .await;
    let mut ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![
        create.id.as_str(),
        update.id.as_str(),
        credits.id.as_str(),
        rotate.id.as_str(),
        delete.id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "one record per change, kept after the delete"
    );
    let written = records.iter().find(|r| r.id == update.id).unwrap();
    assert_eq!(written, &update, "every field round-trips");
    let credited = records.iter().find(|r| r.id == credits.id).unwrap();
    assert_eq!(
        credited.changes["credits"],
        FieldChange {
            from: serde_json::json!({"remaining": 10, "refill": null}),
            to: serde_json::json!({"remaining": 15, "refill": null}),
        },
        "the store records the balance it changed"
    );
}

pub async fn a_refused_mutation_writes_no_record(store: &dyn KeyStore) {
    let t = now();
    let k = key("alice", "taken");
    log(store)
        .insert_audited(&k, rules(), &record(&k, AuditAction::Create, t))
        .await
        .unwrap();
    let twin = key("alice", "taken");
    let refused = record(&twin, AuditAction::Create, t);
    assert!(matches!(
        log(store).insert_audited(&twin, rules(), &refused).await,
        Err(StoreError::NameConflict)
    ));
    let stale = k.clone(); // revision 0; bump it first
    store.replace(&k, t).await.unwrap();
    let refused_update = record(&stale, AuditAction::Update, t);
    assert!(matches!(
        log(store).replace_audited(&stale, t, &refused_update).await,
        Err(StoreError::Stale)
    ));
    let refused_credits = record(&k, AuditAction::Credits, t);
    assert!(
        log(store)
            .adjust_audited(&k.key.id, CreditChange::Add(1), t, &refused_credits)
            .await
            .is_err(),
        "an unlimited key has no balance to add to"
    );
    let records = all_records(
        store,
        AuditQuery {
            owner: Some("alice".into()),
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(
        records.len(),
        1,
        "only the insert that happened: {records:?}"
    );
}

pub async fn audit_queries_filter_and_page_newest_first(store: &dyn KeyStore) {
    let t = now();
    let a = key("alice", "a");
    let b = key("bob", "b");
    log(store)
        .insert_audited(
            &a,
            rules(),
            &record(&a, AuditAction::Create, t - Duration::hours(3)),
        )
        .await
        .unwrap();
    log(store)
        .insert_audited(
            &b,
            rules(),
            &record(&b, AuditAction::Create, t - Duration::hours(2)),
        )
        .await
        .unwrap();
    for i in 0..5 {
        let current = store.get(&a.key.id).await.unwrap().unwrap();
        let at = t - Duration::minutes(50 - i);
        log(store)
            .replace_audited(&current, t, &record(&current, AuditAction::Update, at))
            .await
            .unwrap();
    }
    let all = all_records(store, AuditQuery::default()).await;
    assert_eq!(all.len(), 7);
    assert!(
        all.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first: {:?}",
        all.iter().map(|r| r.at).collect::<Vec<_>>()
    );
    let of = |query: AuditQuery| async move { all_records(store, query).await.len() };
    assert_eq!(
        of(AuditQuery {
            owner: Some("bob".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        of(AuditQuery {
            key_id: Some(a.key.id),
            ..Default::default()
        })
        .await,
        6
    );
    assert_eq!(
        of(AuditQuery {
            action: Some(AuditAction::Create),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        of(AuditQuery {
            since: Some(t - Duration::hours(1)),
            ..Default::default()
        })
        .await,
        5,
        "since is inclusive of later records only"
    );
    assert_eq!(
        of(AuditQuery {
            until: Some(t - Duration::hours(2)),
            ..Default::default()
        })
        .await,
        1,
        "until is exclusive"
    );

    let mut seen = Vec::new();
    let mut query = AuditQuery {
        limit: 3,
        ..Default::default()
    };
    loop {
        let page = log(store).audit_records(&query).await.unwrap();
        assert!(page.records.len() <= 3);
        seen.extend(page.records.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor.to_string().parse().unwrap()),
            None => break,
        }
    }
    let expected: Vec<String> = all.into_iter().map(|r| r.id).collect();
    assert_eq!(seen, expected, "every record once, in order, across pages");
}

pub async fn pruning_deletes_only_older_records(store: &dyn KeyStore) {
    let t = now();
    let k = key("alice", "old");
    log(store)
        .insert_audited(
            &k,
            rules(),
            &record(&k, AuditAction::Create, t - Duration::days(10)),
        )
        .await
        .unwrap();
    let current = store.get(&k.key.id).await.unwrap().unwrap();
    log(store)
        .replace_audited(&current, t, &record(&current, AuditAction::Update, t))
        .await
        .unwrap();
    assert_eq!(
        log(store).prune_audit(t - Duration::days(1)).await.unwrap(),
        1
    );
    let left = all_records(store, AuditQuery::default()).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].action, AuditAction::Update);
    assert!(
        store.get(&k.key.id).await.unwrap().is_some(),
        "keys are untouched"
    );
}

pub async fn ping_answers(store: &dyn KeyStore) {
    store.ping().await.unwrap();
}

/// Instantiates every conformance check for one backend. `$make` is an async
/// block yielding `(store, guard)`; the guard lives as long as the test.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            use std::sync::Arc;
            use $crate::common::conformance as c;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let (store, _guard) = $make.await;
                        c::$name(&store).await;
                    }
                };
            }
            macro_rules! check_shared {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let (store, _guard) = $make.await;
                        c::$name(Arc::new(store)).await;
                    }
                };
            }

            check!(insert_then_get_round_trips_every_field);
            check!(get_of_unknown_id_is_none);
            check!(duplicate_current_name_for_one_owner_is_refused);
            check!(name_is_free_again_once_the_key_is_revoked_expired_or_superseded);
            check!(key_expiring_exactly_now_no_longer_counts);
            check!(per_owner_limit_counts_only_current_keys);
            check!(list_filters_by_owner_organization_and_revocation);
            check!(cursor_pages_return_every_key_once_in_creation_order);
            check!(replace_is_compare_and_set_on_the_revision);
            check!(rename_onto_a_current_name_is_a_conflict);
            check!(rotate_supersedes_and_inserts_atomically);
            check!(delete_removes_the_record);
            check!(usage_keeps_the_latest_use_and_leaves_the_revision);
            check!(ping_answers);
            check!(every_audited_mutation_writes_its_record_and_delete_keeps_them);
            check!(a_refused_mutation_writes_no_record);
            check!(audit_queries_filter_and_page_newest_first);
            check!(pruning_deletes_only_older_records);
            check!(credits_are_stored_and_replace_never_writes_them);
            check!(reserve_grants_up_to_want_once_need_is_left);
            check!(releases_return_credits_unless_a_set_or_refill_came_between);
            check!(a_refill_sets_the_balance_at_the_boundary);
            check!(rotation_continues_the_credits);
            check_shared!(concurrent_reservations_never_overspend);
            check_shared!(concurrent_creates_of_one_name_admit_exactly_one);
            check_shared!(concurrent_creates_never_exceed_the_owner_limit);
        }
    };
}
