//! How fast a revocation reaches another instance over PostgreSQL
//! `LISTEN`/`NOTIFY`: two keygates (separate caches) share one database;
//! 100 keys are cached by both, revoked one at a time through A, and B is
//! polled every millisecond until it refuses each one.
//!
//! Run it with `cargo run --release --features postgres --example pg_propagation`
//! against a running server; `KEYGATE_DATABASE_URL` names the database
//! (default `postgres://postgres@127.0.0.1:5432/keygate_propagation`,
//! created if missing). It prints the median, p90 and worst latency, both
//! from the moment `revoke` returned on A and from the moment it was called.

use std::time::{Duration, Instant};

use keygate::{Keygate, NewKey, Pepper, PostgresStore};
use sqlx::migrate::MigrateDatabase as _;

const ROUNDS: usize = 100;
const POLL: Duration = Duration::from_millis(1);
const GIVE_UP: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("KEYGATE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/keygate_propagation".to_owned());
    if !sqlx::Postgres::database_exists(&url).await? {
        sqlx::Postgres::create_database(&url).await?;
    }

    // Two instances: same database and pepper, separate caches. A long
    // cache TTL, so that only a pushed invalidation can explain B refusing.
    let pepper = Pepper::random()?;
    let instance = |store: PostgresStore| {
        Keygate::builder(store)
            .pepper(pepper.clone())
            .cache_ttl(Duration::from_secs(600))
            .usage_flush_interval(None)
            .build()
    };
    let a = instance(PostgresStore::connect(&url).await?)?;
    let b = instance(PostgresStore::connect(&url).await?)?;
    // Let both listeners subscribe (they clear the cache when they do).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let owner = format!("propagation-{}", std::process::id());
    let mut keys = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let created = a
            .keys()
            .create(NewKey::new(owner.as_str(), format!("key-{i}")))
            .await?;
        a.verify(created.token.expose()).await?;
        b.verify(created.token.expose()).await?;
        keys.push(created);
    }

    let mut after_return = Vec::with_capacity(ROUNDS);
    let mut after_call = Vec::with_capacity(ROUNDS);
    for created in &keys {
        let called = Instant::now();
        a.keys().revoke(&created.key.id, None).await?;
        let returned = Instant::now();
        loop {
            match b.verify(created.token.expose()).await {
                Ok(_) if returned.elapsed() > GIVE_UP => {
                    return Err(
                        format!("B still accepts a key {GIVE_UP:?} after its revocation").into(),
                    );
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(keygate::VerifyError::Invalid(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        after_return.push(returned.elapsed());
        after_call.push(called.elapsed());
    }

    for created in &keys {
        a.keys().delete(&created.key.id).await?;
    }

    report("from revoke() returning on A", &mut after_return);
    report("from revoke() being called on A", &mut after_call);
    Ok(())
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label}: n={} median={:.2} ms p90={:.2} ms worst={:.2} ms",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(samples[samples.len() - 1]),
    );
}
