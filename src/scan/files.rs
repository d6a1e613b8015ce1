//! Scanning files and directories: a walk that skips `.git`, symbolic
//! links and binaries, and a streaming read in fixed blocks, so a file of
//! any size takes the same memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::finder::{Locator, Scanner};
use super::found::{Finding, Location, ScanError, ScanStats};

/// Bytes read at a time.
const BLOCK: usize = 1 << 20;
/// A file with a NUL byte among its first this many bytes is binary (git's rule).
pub(crate) const BINARY_PROBE: usize = 8000;

/// Whether `data` (a file's start) looks binary.
pub(crate) fn is_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(BINARY_PROBE)]).is_some()
}

/// `path` as shown: without a leading `./`.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    match text.strip_prefix("./") {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => text,
    }
}

impl Scanner {
    /// Scans files and directories (recursively, in name order), giving
    /// each token found to `found`. Directories named `.git`, symbolic
    /// links met in directories, other special files and binary files
    /// are skipped; a file or directory inside that cannot be read is
    /// listed in [`ScanStats::unreadable`] and the scan goes on.
    ///
    /// # Example
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::{Environment, TokenFormat};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let token = TokenFormat::default().generate(Environment::Live);
    /// std::fs::write(dir.path().join(".env"), format!("\nKEY={}\n", token.expose()))?;
    ///
    /// let mut found = Vec::new();
    /// let stats = Scanner::new(TokenFormat::default()).scan_paths([dir.path()], |f| found.push(f))?;
    /// assert_eq!(stats.files, 1);
    /// assert_eq!((found[0].location.line, found[0].location.column), (2, 5));
    /// assert!(!format!("{found:?}").contains(token.expose()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScanError::Io`] when a path given cannot be read at all.
    pub fn scan_paths<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
        mut found: impl FnMut(Finding),
    ) -> Result<ScanStats, ScanError> {
        let mut stats = ScanStats::default();
        let mut buffer = vec![0u8; BLOCK + self.token_len() + 1];
        for root in paths {
            let root = root.as_ref();
            let meta = std::fs::metadata(root).map_err(|source| ScanError::Io {
                path: shown(root),
                source,
            })?;
            if meta.is_file() {
                self.scan_one(root, &mut buffer, &mut stats, &mut found);
                continue;
            }
            if !meta.is_dir() {
                continue;
            }
            // Depth first, in name order: children pushed in reverse.
            let mut stack: Vec<(PathBuf, bool)> = vec![(root.to_path_buf(), true)];
            while let Some((path, is_dir)) = stack.pop() {
                if !is_dir {
                    self.scan_one(&path, &mut buffer, &mut stats, &mut found);
                    continue;
                }
                let entries = match std::fs::read_dir(&path) {
                    Ok(entries) => entries,
                    Err(e) => {
                        stats.unreadable.push((shown(&path), e.to_string()));
                        continue;
                    }
                };
                let mut children = Vec::new();
                for entry in entries {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(e) => {
                            stats.unreadable.push((shown(&path), e.to_string()));
                            continue;
                        }
                    };
                    if entry.file_name() == ".git" {
                        continue;
                    }
                    // Not followed: a link's target is scanned where it lives.
                    match entry.file_type() {
                        Ok(kind) if kind.is_dir() => children.push((entry.path(), true)),
                        Ok(kind) if kind.is_file() => children.push((entry.path(), false)),
                        Ok(_) => {}
                        Err(e) => stats.unreadable.push((shown(&entry.path()), e.to_string())),
                    }
                }
                children.sort_unstable_by(|a, b| b.0.cmp(&a.0));
                stack.extend(children);
            }
        }
        Ok(stats)
    }

    fn scan_one(
        &self,
        path: &Path,
        buffer: &mut [u8],
        stats: &mut ScanStats,
        found: &mut impl FnMut(Finding),
    ) {
        if let Err(e) = self.scan_file(path, buffer, stats, found) {
            stats.unreadable.push((shown(path), e.to_string()));
        }
    }

    /// One file: a first pass in blocks finds the tokens' offsets; only
    /// a file with tokens is read a second time, for their lines and
    /// columns.
    fn scan_file(
        &self,
        path: &Path,
        buffer: &mut [u8],
        stats: &mut ScanStats,
        found: &mut impl FnMut(Finding),
    ) -> std::io::Result<()> {
        let mut file = File::open(path)?;
        let mut offsets: Vec<u64> = Vec::new();
        let (mut len, mut base, mut from) = (0usize, 0u64, 0usize);
        let mut first = true;
        loop {
            let at_end = fill(&mut file, buffer, &mut len)?;
            if first {
                first = false;
                if is_binary(&buffer[..len]) {
                    stats.binary += 1;
                    return Ok(());
                }
            }
            let resume = self.scan_block(&buffer[..len], from, at_end, |offset| {
                offsets.push(base + offset as u64);
            });
            if at_end {
                stats.files += 1;
                stats.bytes += base + len as u64;
                break;
            }
            // Keep the byte before the first occurrence not judged: it
            // judges that occurrence's boundary.
            let keep = resume.saturating_sub(1);
            buffer.copy_within(keep..len, 0);
            len -= keep;
            base += keep as u64;
            from = resume - keep;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        self.locate_in_file(path, &offsets, found)
    }

    /// The second pass over a file with tokens at `offsets`.
    fn locate_in_file(
        &self,
        path: &Path,
        offsets: &[u64],
        found: &mut impl FnMut(Finding),
    ) -> std::io::Result<()> {
        let mut reader = BufReader::with_capacity(BLOCK, File::open(path)?);
        let mut locator = Locator::new();
        let shown = shown(path);
        for &offset in offsets {
            while locator.pos() < offset {
                let available = reader.fill_buf()?;
                if available.is_empty() {
                    // The file shrank since the first pass.
                    return Ok(());
                }
                let step = usize::try_from(offset - locator.pos())
                    .unwrap_or(usize::MAX)
                    .min(available.len());
                locator.feed(&available[..step]);
                reader.consume(step);
            }
            let (line, column) = locator.here();
            let mut token = vec![0u8; self.token_len()];
            if reader.read_exact(&mut token).is_err() {
                return Ok(());
            }
            locator.feed(&token);
            // The file may have changed since the first pass: only what
            // still parses is reported.
            if let Ok(token) = String::from_utf8(token) {
                let location = Location {
                    path: shown.clone(),
                    commit: None,
                    line,
                    column,
                };
                if let Some(finding) = Finding::new(self.format(), token, location) {
                    found(finding);
                }
            }
        }
        Ok(())
    }
}

/// Reads into `buffer[*len..]` until it is full or the input ends;
/// returns whether it ended.
fn fill(reader: &mut impl Read, buffer: &mut [u8], len: &mut usize) -> std::io::Result<bool> {
    while *len < buffer.len() {
        match reader.read(&mut buffer[*len..]) {
            Ok(0) => return Ok(true),
            Ok(n) => *len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, Scanner, is_binary};
    use crate::token::{Environment, TokenFormat};

    #[test]
    fn a_token_across_the_read_block_is_found_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let token = TokenFormat::default().generate(Environment::Live);
        // The token straddles the first block's end; lines before it.
        let mut text = "line\n".repeat(1000);
        text.push_str(&" ".repeat(BLOCK - text.len() - 20));
        text.push_str(token.expose());
        text.push('\n');
        std::fs::write(dir.path().join("big.txt"), &text).unwrap();
        let mut found = Vec::new();
        let stats = Scanner::new(TokenFormat::default())
            .scan_paths([dir.path()], |f| found.push(f))
            .unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(stats.bytes, text.len() as u64);
        assert_eq!(found.len(), 1);
        let column = BLOCK - 5000 - 20 + 1;
        assert_eq!(found[0].location.line, 1001);
        assert_eq!(found[0].location.column, column as u64);
        assert_eq!(found[0].token().expose(), token.expose());
    }

    #[test]
    fn binaries_git_directories_and_links_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let token = TokenFormat::default().generate(Environment::Live);
        let line = format!("{}\n", token.expose());
        std::fs::write(dir.path().join("bin"), [b"\0", line.as_bytes()].concat()).unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), &line).unwrap();
        std::fs::write(dir.path().join("text"), &line).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("text"), dir.path().join("link")).unwrap();
        let mut found = Vec::new();
        let stats = Scanner::new(TokenFormat::default())
            .scan_paths([dir.path()], |f| found.push(f))
            .unwrap();
        assert_eq!((stats.files, stats.binary), (1, 1));
        assert_eq!(found.len(), 1);
        assert!(found[0].location.path.ends_with("text"));
        assert!(is_binary(b"a\0b") && !is_binary("é".as_bytes()));
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let error = Scanner::new(TokenFormat::default())
            .scan_paths(["/nonexistent/keygate-scan"], |_| {})
            .unwrap_err();
        assert!(error.to_string().starts_with("/nonexistent/keygate-scan: "));
    }
}
