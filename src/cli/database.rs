//! Opening the store named by a database URL, and finding its pepper.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::secret::{PEPPER_ENV, Pepper};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::store::StoreMeta;
use crate::store::{KeyStore, ListQuery};

/// The file the binary keeps its pepper in, beside an SQLite database.
pub const PEPPER_FILE: &str = "keygate.pepper";

/// The name under which the pepper check value is kept in `keygate_meta`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const PEPPER_CHECK: &str = "pepper_check";

/// Whether [`open`] may create a database that does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Create the database (and, for SQLite, its pepper file): `init` and `serve`.
    IfMissing,
    /// Refuse a database that does not exist, and create no file: every
    /// other command.
    Never,
}

/// Why the database or pepper could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL names no backend this build supports.
    #[error(
        "unsupported database URL (expected sqlite://FILE, sqlite::memory: or, \
         with the postgres feature, postgres://USER@HOST/DB)"
    )]
    UnsupportedUrl,
    /// The database does not exist and this command does not create one.
    #[error("no keygate database at {0}; create it with `keygate init` (or `keygate serve`)")]
    Missing(String),
    /// The store failed to open or migrate.
    #[error("cannot open the database: {0}")]
    Store(#[source] crate::store::StoreError),
    /// The pepper could not be loaded or created.
    #[error("{0}")]
    Pepper(String),
    /// The pepper is not the one the database was set up with.
    #[error(
        "the pepper does not match this database (it was set up with another one); \
         set {PEPPER_ENV} or restore {PEPPER_FILE} to the pepper it was created with"
    )]
    PepperMismatch,
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
/// With [`Create::Never`] a database that does not exist is refused and no
/// file is created. With [`Create::IfMissing`] a new SQLite file is created
/// mode 0600 (SQLite gives its `-wal` and `-shm` files the same mode).
///
/// The pepper is then checked against the database: the first open stores
/// its check value ([`Pepper::check_value`]) in `keygate_meta`, and a later
/// open with another pepper is refused with [`SetupError::PepperMismatch`].
/// A database made by an older keygate, without a check value, gets the
/// current pepper's on its first open.
///
/// # Errors
///
/// [`SetupError`] saying what is wrong.
pub async fn open(url: &str, create: Create) -> Result<Opened, SetupError> {
    let env_pepper = match std::env::var(PEPPER_ENV) {
        Ok(text) => Some(
            Pepper::parse(&text).map_err(|e| SetupError::Pepper(format!("{PEPPER_ENV}: {e}")))?,
        ),
        Err(_) => None,
    };
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return open_sqlite(url, env_pepper, create).await;
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return open_postgres(url, env_pepper, create).await;
    }
    #[cfg(not(all(feature = "sqlite", feature = "postgres")))]
    let _ = (env_pepper, create);
    Err(SetupError::UnsupportedUrl)
}

/// Stores the pepper's check value unless one is there, and refuses a
/// pepper that does not match the stored one.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn check_pepper(store: &dyn StoreMeta, pepper: &Pepper) -> Result<(), SetupError> {
    let stored = store
        .meta_get_or_insert(PEPPER_CHECK, &pepper.check_value())
        .await
        .map_err(SetupError::Store)?;
    if pepper.matches_check(&stored) {
        Ok(())
    } else {
        Err(SetupError::PepperMismatch)
    }
}

/// PostgreSQL: the pepper must come from `KEYGATE_PEPPER` — there is no
/// file beside the database to keep one in, and every instance sharing the
/// database needs the same one. Checked before connecting. With
/// [`Create::Never`], a database without the keygate schema is refused
/// before any migration runs.
#[cfg(feature = "postgres")]
async fn open_postgres(
    url: &str,
    env_pepper: Option<Pepper>,
    create: Create,
) -> Result<Opened, SetupError> {
    let pepper = env_pepper.ok_or_else(|| {
        SetupError::Pepper(format!(
            "{PEPPER_ENV} must be set for a PostgreSQL database (every instance sharing \
             the database needs the same pepper; generate one with `openssl rand -hex 32`)"
        ))
    })?;
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| SetupError::Store(crate::store::StoreError::Backend(Box::new(e))))?;
    let pool = crate::store::PostgresStore::pool_options()
        .connect_with(options.clone())
        .await
        .map_err(|e| SetupError::Store(crate::store::StoreError::Unavailable(Box::new(e))))?;
    if create == Create::Never {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('keygate_keys') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .map_err(|e| SetupError::Store(crate::store::StoreError::Unavailable(Box::new(e))))?;
        if !exists {
            // Named without the password.
            return Err(SetupError::Missing(format!(
                "postgres://{}:{}/{} (no keygate tables)",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            )));
        }
    }
    let store = crate::store::PostgresStore::from_pool(pool)
        .await
        .map_err(SetupError::Store)?;
    check_pepper(&store, &pepper).await?;
    Ok(Opened {
        store: Arc::new(store),
        pepper,
    })
}

/// Creates an empty SQLite database file, mode 0600, unless it exists.
#[cfg(feature = "sqlite")]
fn create_private_file(path: &Path) -> Result<(), SetupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SetupError::Store(crate::store::StoreError::Unavailable(
            Box::new(std::io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", path.display()),
            )),
        ))),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(
    url: &str,
    env_pepper: Option<Pepper>,
    create: Create,
) -> Result<Opened, SetupError> {
    let file = sqlite_file(url);
    let existed = file.as_deref().is_some_and(Path::exists);
    if let Some(db) = &file
        && !existed
    {
        match create {
            Create::Never => return Err(SetupError::Missing(db.display().to_string())),
            Create::IfMissing => create_private_file(db)?,
        }
    }
    let store = match create {
        Create::IfMissing => crate::store::SqliteStore::open(url).await,
        Create::Never => crate::store::SqliteStore::open_existing(url).await,
    }
    .map_err(SetupError::Store)?;
    let pepper = match (env_pepper, &file) {
        (Some(pepper), _) => pepper,
        (None, None) => {
            // An in-memory database dies with the process; so may its pepper.
            Pepper::random().map_err(|e| SetupError::Pepper(e.to_string()))?
        }
        (None, Some(db)) => {
            let path = pepper_path(db);
            let pepper_error = |e: crate::secret::PepperError| match e {
                crate::secret::PepperError::Exposed { mode } => SetupError::Pepper(format!(
                    "{} is accessible to group or others (mode {mode:o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                )),
                e => SetupError::Pepper(format!("{}: {e}", path.display())),
            };
            if !path.exists() {
                if create == Create::Never {
                    return Err(SetupError::Pepper(format!(
                        "{} is missing; restore it or set {PEPPER_ENV}",
                        path.display()
                    )));
                }
                let checked = store
                    .meta_get(PEPPER_CHECK)
                    .await
                    .map_err(SetupError::Store)?
                    .is_some();
                if existed && (checked || has_keys(&store).await?) {
                    return Err(SetupError::Pepper(format!(
                        "{} is missing but the database was set up with a pepper; \
                         restore it or set {PEPPER_ENV}",
                        path.display()
                    )));
                }
                Pepper::load_or_create(&path).map_err(pepper_error)?
            } else {
                Pepper::load(&path).map_err(pepper_error)?
            }
        }
    };
    check_pepper(&store, &pepper).await?;
    Ok(Opened {
        store: Arc::new(store),
        pepper,
    })
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
