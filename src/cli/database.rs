//! Opening the store named by a database URL, and finding its pepper.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::secret::{PEPPER_ENV, Pepper};
use crate::store::{KeyStore, ListQuery};

/// The file the binary keeps its pepper in, beside an SQLite database.
pub const PEPPER_FILE: &str = "keygate.pepper";

/// Why the database or pepper could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL names no backend this build supports.
    #[error(
        "unsupported database URL (expected sqlite://FILE, sqlite::memory: or, \
         with the postgres feature, postgres://USER@HOST/DB)"
    )]
    UnsupportedUrl,
    /// The store failed to open or migrate.
    #[error("cannot open the database: {0}")]
    Store(#[source] crate::store::StoreError),
    /// The pepper could not be loaded or created.
    #[error("{0}")]
    Pepper(String),
}

/// An open store and the pepper that goes with it.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn KeyStore>,
    /// The pepper.
    pub pepper: Pepper,
}

/// The SQLite database file a URL names, or `None` for in-memory databases.
#[cfg(feature = "sqlite")]
fn sqlite_file(url: &str) -> Option<PathBuf> {
    use std::str::FromStr as _;
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Opens the store at `url` and obtains its pepper: `KEYGATE_PEPPER` when
/// set; else, for an SQLite file, `keygate.pepper` beside it (created with
/// the database, mode 0600). A database that already holds keys never gets
/// a fresh pepper: that would silently invalidate every key.
///
/// # Errors
///
/// [`SetupError`] saying what is wrong.
pub async fn open(url: &str) -> Result<Opened, SetupError> {
    let env_pepper = match std::env::var(PEPPER_ENV) {
        Ok(text) => Some(
            Pepper::parse(&text).map_err(|e| SetupError::Pepper(format!("{PEPPER_ENV}: {e}")))?,
        ),
        Err(_) => None,
    };
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return open_sqlite(url, env_pepper).await;
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return open_postgres(url, env_pepper).await;
    }
    Err(SetupError::UnsupportedUrl)
}

/// PostgreSQL: the pepper must come from `KEYGATE_PEPPER` — there is no
/// file beside the database to keep one in, and every instance sharing the
/// database needs the same one. Checked before connecting.
#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, env_pepper: Option<Pepper>) -> Result<Opened, SetupError> {
    let pepper = env_pepper.ok_or_else(|| {
        SetupError::Pepper(format!(
            "{PEPPER_ENV} must be set for a PostgreSQL database (every instance sharing \
             the database needs the same pepper; generate one with `openssl rand -hex 32`)"
        ))
    })?;
    let store: Arc<dyn KeyStore> = Arc::new(
        crate::store::PostgresStore::connect(url)
            .await
            .map_err(SetupError::Store)?,
    );
    Ok(Opened { store, pepper })
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, env_pepper: Option<Pepper>) -> Result<Opened, SetupError> {
    let file = sqlite_file(url);
    let existed = file.as_deref().is_some_and(Path::exists);
    let store: Arc<dyn KeyStore> = Arc::new(
        crate::store::SqliteStore::open(url)
            .await
            .map_err(SetupError::Store)?,
    );
    let pepper = match (env_pepper, file) {
        (Some(pepper), _) => pepper,
        (None, None) => {
            // An in-memory database dies with the process; so may its pepper.
            Pepper::random().map_err(|e| SetupError::Pepper(e.to_string()))?
        }
        (None, Some(db)) => {
            let path = pepper_path(&db);
            if existed && !path.exists() && has_keys(&*store).await? {
                return Err(SetupError::Pepper(format!(
                    "{} is missing but the database holds keys; restore it or set {PEPPER_ENV}",
                    path.display()
                )));
            }
            Pepper::load_or_create(&path)
                .map_err(|e| SetupError::Pepper(format!("{}: {e}", path.display())))?
        }
    };
    Ok(Opened { store, pepper })
}

fn pepper_path(db: &Path) -> PathBuf {
    match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(PEPPER_FILE),
        _ => PathBuf::from(PEPPER_FILE),
    }
}

async fn has_keys(store: &dyn KeyStore) -> Result<bool, SetupError> {
    let page = store
        .list(&ListQuery {
            include_revoked: true,
            limit: 1,
            ..ListQuery::default()
        })
        .await
        .map_err(SetupError::Store)?;
    Ok(!page.keys.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pepper_sits_beside_the_database() {
        assert_eq!(
            pepper_path(Path::new("keygate.db")),
            PathBuf::from("keygate.pepper")
        );
        assert_eq!(
            pepper_path(Path::new("/var/lib/kg/keys.db")),
            PathBuf::from("/var/lib/kg/keygate.pepper")
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://keygate.db"),
            Some(PathBuf::from("keygate.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x.db"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
