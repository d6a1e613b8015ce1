//! What a scan reports: [`Finding`]s at [`Location`]s, [`ScanStats`],
//! and [`ScanError`].

use std::fmt;

use crate::secret::SecretToken;
use crate::token::{Environment, KeyId, TokenFormat};

/// Where a token was found.
///
/// ```
/// use keygate::scan::Scanner;
/// use keygate::{Environment, TokenFormat};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let token = TokenFormat::default().generate(Environment::Live);
/// std::fs::write(dir.path().join("a.env"), format!("\nKEY={}\n", token.expose()))?;
/// let mut found = Vec::new();
/// Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
/// let location = &found[0].location;
/// assert_eq!((location.line, location.column), (2, 5));
/// assert!(location.commit.is_none());
/// assert!(location.to_string().ends_with("a.env:2:5"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file: its path as found under the scanned path (a leading
    /// `./` removed), or for history its path in the commit's tree, with
    /// `/` separators.
    pub path: String,
    /// For history: the full id of a commit whose tree holds the file.
    pub commit: Option<String>,
    /// The line, from 1.
    pub line: u64,
    /// The column, from 1, in Unicode characters.
    pub column: u64,
}

impl fmt::Display for Location {
    /// `path:line:column`, or `commit:path:line:column` for history.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(commit) = &self.commit {
            write!(f, "{commit}:")?;
        }
        write!(f, "{}:{}:{}", self.path, self.line, self.column)
    }
}

/// A checksum-valid token of the scanned format, and where it was.
///
/// Its `Debug` shows the key id, never the token.
///
/// ```
/// use keygate::scan::Scanner;
/// use keygate::{Environment, TokenFormat};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let token = TokenFormat::default().generate(Environment::Test);
/// std::fs::write(dir.path().join("ci.yml"), format!("token: {}\n", token.expose()))?;
/// let mut found = Vec::new();
/// Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
/// let finding = &found[0];
/// assert!(!format!("{finding:?}").contains(token.expose()));
/// assert!(format!("{finding:?}").contains(finding.display_prefix()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Finding {
    /// Where it was.
    pub location: Location,
    token: SecretToken,
    id: KeyId,
    environment: Environment,
    display_prefix: String,
}

impl Finding {
    /// A finding of `token`, a token `format` parses.
    pub(crate) fn new(format: &TokenFormat, token: String, location: Location) -> Option<Finding> {
        let parsed = format.parse(&token).ok()?;
        let (id, environment) = (parsed.id(), parsed.environment());
        Some(Finding {
            location,
            display_prefix: format.display_prefix(environment, id),
            token: SecretToken::new(token),
            id,
            environment,
        })
    }

    /// The whole token: to check or revoke it, never to print.
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::{Environment, TokenFormat};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let token = TokenFormat::default().generate(Environment::Test);
    /// std::fs::write(dir.path().join("ci.yml"), format!("token: {}\n", token.expose()))?;
    /// let mut found = Vec::new();
    /// Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
    /// let finding = &found[0];
    /// assert_eq!(finding.token().expose(), token.expose());
    /// # Ok(())
    /// # }
    /// ```
    pub fn token(&self) -> &SecretToken {
        &self.token
    }

    /// The key id the token names.
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::{Environment, TokenFormat};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let token = TokenFormat::default().generate(Environment::Test);
    /// std::fs::write(dir.path().join("ci.yml"), format!("token: {}\n", token.expose()))?;
    /// let mut found = Vec::new();
    /// Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
    /// let finding = &found[0];
    /// let id = TokenFormat::default().parse(token.expose())?.id();
    /// assert_eq!(finding.key_id(), id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// The environment the token names.
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::{Environment, TokenFormat};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let token = TokenFormat::default().generate(Environment::Test);
    /// std::fs::write(dir.path().join("ci.yml"), format!("token: {}\n", token.expose()))?;
    /// let mut found = Vec::new();
    /// Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
    /// let finding = &found[0];
    /// assert_eq!(finding.environment(), Environment::Test);
    /// # Ok(())
    /// # }
    /// ```
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// What may be shown of the token: `kg_live_<id>`.
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::{Environment, TokenFormat};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let token = TokenFormat::default().generate(Environment::Test);
    /// std::fs::write(dir.path().join("ci.yml"), format!("token: {}\n", token.expose()))?;
    /// let mut found = Vec::new();
    /// Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
    /// let finding = &found[0];
    /// assert_eq!(finding.display_prefix(), format!("kg_test_{}", finding.key_id()));
    /// assert!(token.expose().starts_with(finding.display_prefix()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn display_prefix(&self) -> &str {
        &self.display_prefix
    }
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("location", &self.location)
            .field("display_prefix", &self.display_prefix)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// What a scan went through.
///
/// ```
/// use keygate::scan::Scanner;
/// use keygate::TokenFormat;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), "no token here\n")?;
/// std::fs::write(dir.path().join("b.bin"), b"\0\x01\x02")?;
/// let stats = Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |_| {})?;
/// assert_eq!((stats.files, stats.binary), (1, 1));
/// assert!(stats.unreadable.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanStats {
    /// Files (or, for history, distinct blobs) read.
    pub files: u64,
    /// Bytes read from them.
    pub bytes: u64,
    /// Files skipped as binary (a NUL byte in their first 8000 bytes, as git judges).
    pub binary: u64,
    /// Commits walked (history only).
    pub commits: u64,
    /// Files or directories that could not be read: `(path, error)`.
    /// They were not scanned.
    pub unreadable: Vec<(String, String)>,
}

impl ScanStats {
    /// Adds the figures of another scan to these (several paths, several
    /// repositories).
    ///
    /// ```
    /// use keygate::scan::{ScanStats, Scanner};
    /// use keygate::TokenFormat;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    /// std::fs::write(a.path().join("x"), "12345")?;
    /// std::fs::write(b.path().join("y"), "123")?;
    /// let scanner = Scanner::new(TokenFormat::default());
    /// let mut total = ScanStats::default();
    /// for dir in [&a, &b] {
    ///     total.add(scanner.scan_paths([dir.path()], |_| {})?);
    /// }
    /// assert_eq!((total.files, total.bytes), (2, 8));
    /// # Ok(())
    /// # }
    /// ```
    pub fn add(&mut self, other: ScanStats) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.binary += other.binary;
        self.commits += other.commits;
        self.unreadable.extend(other.unreadable);
    }
}

/// Why a scan could not be made.
///
/// ```
/// use keygate::scan::{ScanError, Scanner};
/// use keygate::TokenFormat;
///
/// let scanner = Scanner::new(TokenFormat::default());
/// let error = scanner
///     .scan_paths(["/nonexistent/keygate-scan"], |_| {})
///     .unwrap_err();
/// assert!(matches!(error, ScanError::Io { .. }));
/// assert!(error.to_string().starts_with("/nonexistent/keygate-scan: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A path given to scan cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The repository cannot be opened or its history read.
    #[error("{path}: {message}")]
    Git {
        /// The path given.
        path: String,
        /// What went wrong.
        message: String,
    },
}
