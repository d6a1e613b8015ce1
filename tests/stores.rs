//! Every store backend against the one conformance suite.

mod common;

conformance_suite!(memory, async { (keygate::MemoryStore::new(), ()) });

#[cfg(feature = "sqlite")]
conformance_suite!(sqlite, async {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    (keygate::SqliteStore::open(&url).await.unwrap(), dir)
});

#[cfg(feature = "sqlite")]
conformance_suite!(sqlite_in_memory, async {
    (
        keygate::SqliteStore::open("sqlite::memory:").await.unwrap(),
        (),
    )
});
