//! PostgreSQL test databases: a fresh database per test, created from the
//! server named by `KEYGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the
//! guard goes away. A server that cannot be reached fails the test with a
//! message saying so: these tests never skip silently.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection as _, Executor as _};

/// Where the test server is, unless `KEYGATE_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server URL the tests use.
pub fn base_url() -> String {
    std::env::var("KEYGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `url` with its database name replaced by `database` (query kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[authority_start..].find('/') {
        Some(slash) => &main[..authority_start + slash],
        None => main,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// `url` with its user replaced by `user` (and no password).
pub fn with_user(url: &str, user: &str) -> String {
    let scheme_end = url.find("://").expect("a URL with a scheme") + 3;
    let rest = &url[scheme_end..];
    let host_part = match rest.rfind('@') {
        Some(at) if rest[..at].find('/').is_none() => &rest[at + 1..],
        _ => rest,
    };
    format!("{}{user}@{host_part}", &url[..scheme_end])
}

/// An administrative connection to the test server, or a panic that says
/// how to get one.
pub async fn admin() -> PgConnection {
    let url = base_url();
    let options: PgConnectOptions = url.parse().unwrap_or_else(|e| {
        panic!(
            "KEYGATE_TEST_POSTGRES_URL {:?} is invalid: {e}",
            redacted(&url)
        )
    });
    match tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "cannot reach the PostgreSQL test server at {}: {e}. Start it (see .ci/run) or set \
             KEYGATE_TEST_POSTGRES_URL",
            redacted(&url)
        ),
        Err(_) => panic!(
            "timed out connecting to the PostgreSQL test server at {}. Start it (see .ci/run) \
             or set KEYGATE_TEST_POSTGRES_URL",
            redacted(&url)
        ),
    }
}

/// Runs one administrative statement (identifiers already quoted).
pub async fn admin_exec(sql: &str) {
    let mut conn = admin().await;
    conn.execute(AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test (and, optionally, extra login roles),
/// dropped with the guard.
#[derive(Debug)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// A URL for it, as the base URL's user.
    pub url: String,
    roles: Vec<String>,
}

impl TestDb {
    /// Creates a fresh, empty database on the test server. Its name starts
    /// with the base database's name, so a CI run can drop leftovers.
    pub async fn create() -> TestDb {
        let base = base_url();
        let options: PgConnectOptions = base.parse().expect("a valid test URL");
        let prefix: String = options
            .get_database()
            .unwrap_or("postgres")
            .chars()
            .take(40)
            .collect();
        let name = format!(
            "{prefix}_kgt_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin_exec(&format!("CREATE DATABASE {}", quote(&name))).await;
        TestDb {
            url: with_database(&base, &name),
            name,
            roles: Vec::new(),
        }
    }

    /// Creates a superuser login role for this test; returns its name and a
    /// URL to this database as that role. Dropped with the guard.
    pub async fn create_role(&mut self, suffix: &str) -> (String, String) {
        let role = format!("{}_{suffix}", self.name);
        admin_exec(&format!("CREATE ROLE {} LOGIN SUPERUSER", quote(&role))).await;
        self.roles.push(role.clone());
        let url = with_user(&self.url, &role);
        (role, url)
    }

    /// Terminates the sessions of this database that match `filter` (an SQL
    /// condition over `pg_stat_activity`); returns how many.
    pub async fn terminate(&self, filter: &str) -> i64 {
        let mut conn = admin().await;
        let sql = format!(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND ({filter})"
        );
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await
            .expect("terminate sessions");
        let _ = conn.close().await;
        n
    }

    /// Sessions of this database matching `filter`.
    pub async fn sessions(&self, filter: &str) -> i64 {
        let mut conn = admin().await;
        let sql =
            format!("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND ({filter})");
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await
            .expect("count sessions");
        let _ = conn.close().await;
        n
    }

    /// Listener sessions (keygate's `LISTEN` connections) on this database,
    /// optionally only those of `role`.
    pub async fn listeners(&self, role: Option<&str>) -> i64 {
        let filter = match role {
            Some(role) => format!(
                "application_name = 'keygate-listener' AND usename = '{}'",
                role.replace('\'', "''")
            ),
            None => "application_name = 'keygate-listener'".to_owned(),
        };
        self.sessions(&filter).await
    }

    /// Waits (up to `within`) until `n` listeners (of `role`, if given)
    /// are connected; panics otherwise.
    pub async fn wait_for_listeners(&self, role: Option<&str>, n: i64, within: Duration) {
        let started = std::time::Instant::now();
        loop {
            let found = self.listeners(role).await;
            if found >= n {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{found} of {n} keygate listeners connected after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Refuses (or again allows) new connections to this database.
    pub async fn allow_connections(&self, allow: bool) {
        admin_exec(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            quote(&self.name)
        ))
        .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let roles = std::mem::take(&mut self.roles);
        // Drop runs inside the test's runtime: do the async work on a thread
        // of its own.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut conn = admin().await;
                let _ = conn
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote(&name)
                    )))
                    .await;
                for role in roles {
                    let _ = conn
                        .execute(AssertSqlSafe(format!(
                            "DROP ROLE IF EXISTS {}",
                            quote(&role)
                        )))
                        .await;
                }
                let _ = conn.close().await;
            });
        });
        let _ = done.join();
    }
}

/// A quoted SQL identifier.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `url` pointing at `addr` (`host:port`) instead of its own server.
pub fn with_address(url: &str, addr: &str) -> String {
    let scheme_end = url.find("://").expect("a URL with a scheme") + 3;
    let rest = &url[scheme_end..];
    let host_start = match rest.find('@') {
        Some(at) if rest[..at].find('/').is_none() => at + 1,
        _ => 0,
    };
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_start + i);
    format!(
        "{}{}{addr}{}",
        &url[..scheme_end],
        &rest[..host_start],
        &rest[host_end..]
    )
}

/// A TCP proxy in front of the test server that can be frozen: while
/// frozen, every connection through it stays open but carries nothing in
/// either direction, as when a NAT or firewall silently drops a flow.
pub struct FreezableProxy {
    /// Where the proxy listens.
    pub addr: std::net::SocketAddr,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    /// Starts a proxy to the server of [`base_url`].
    pub async fn start() -> FreezableProxy {
        let options: PgConnectOptions = base_url().parse().expect("a valid test URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, flag.clone()));
                tokio::spawn(pipe(server_read, client_write, flag.clone()));
            }
        });
        FreezableProxy { addr, frozen, task }
    }

    /// Stops (`true`) or resumes (`false`) all traffic.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
