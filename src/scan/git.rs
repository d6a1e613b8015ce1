//! Scanning a git repository's history with gix: every commit reachable
//! from `HEAD` and from every reference, every tree and blob of theirs,
//! each distinct tree and blob read once.

use std::collections::HashSet;
use std::path::Path;

use gix::ObjectId;

use super::files::is_binary;
use super::finder::{Scanner, locate};
use super::found::{Finding, Location, ScanError, ScanStats};

impl Scanner {
    /// Scans the history of the git repository at (or above) `path`:
    /// the blobs of every commit reachable from `HEAD` and from every
    /// branch, tag and other reference — each distinct blob once, binary
    /// blobs skipped, symbolic links and submodules not followed. A
    /// finding names the blob's path and a commit that holds it (the
    /// first met walking from the newest). The working tree, the index
    /// and unreachable objects are not read: scan the files for those.
    ///
    /// # Errors
    ///
    /// [`ScanError::Git`] when there is no repository at `path` or its
    /// objects cannot be read.
    pub fn scan_git(
        &self,
        path: impl AsRef<Path>,
        mut found: impl FnMut(Finding),
    ) -> Result<ScanStats, ScanError> {
        let path = path.as_ref();
        let error = |message: String| ScanError::Git {
            path: path.display().to_string(),
            message,
        };
        let mut repo =
            gix::discover(path).map_err(|e| error(format!("not a git repository: {e}")))?;
        repo.object_cache_size_if_unset(16 << 20);
        let tips = tips(&repo).map_err(|e| error(format!("cannot read its references: {e}")))?;
        let mut stats = ScanStats::default();
        if tips.is_empty() {
            return Ok(stats);
        }
        let walk = repo
            .rev_walk(tips)
            .all()
            .map_err(|e| error(format!("cannot walk its history: {e}")))?;
        let mut seen_trees: HashSet<ObjectId> = HashSet::new();
        let mut seen_blobs: HashSet<ObjectId> = HashSet::new();
        for info in walk {
            let info = info.map_err(|e| error(format!("cannot walk its history: {e}")))?;
            stats.commits += 1;
            let commit = info.id.to_string();
            let tree = repo
                .find_commit(info.id)
                .and_then(|c| c.tree_id().map(gix::Id::detach))
                .map_err(|e| error(format!("commit {commit}: {e}")))?;
            // Depth first; each tree once, whichever commit it is met in.
            let mut stack = vec![(tree, String::new())];
            while let Some((tree_id, dir)) = stack.pop() {
                if !seen_trees.insert(tree_id) {
                    continue;
                }
                let tree = repo
                    .find_tree(tree_id)
                    .map_err(|e| error(format!("tree {tree_id}: {e}")))?;
                let mut blobs = Vec::new();
                for entry in tree.iter() {
                    let entry = entry.map_err(|e| error(format!("tree {tree_id}: {e}")))?;
                    let entry = entry.inner;
                    let name = format!("{dir}{}", entry.filename);
                    if entry.mode.is_tree() {
                        stack.push((entry.oid.to_owned(), format!("{name}/")));
                    } else if entry.mode.is_blob() {
                        blobs.push((entry.oid.to_owned(), name));
                    }
                }
                for (blob_id, name) in blobs {
                    if !seen_blobs.insert(blob_id) {
                        continue;
                    }
                    let blob = repo
                        .find_blob(blob_id)
                        .map_err(|e| error(format!("blob {blob_id} ({name}): {e}")))?;
                    if is_binary(&blob.data) {
                        stats.binary += 1;
                        continue;
                    }
                    stats.files += 1;
                    stats.bytes += blob.data.len() as u64;
                    self.report_blob(&blob.data, &name, &commit, &mut found);
                }
            }
        }
        Ok(stats)
    }

    fn report_blob(&self, data: &[u8], path: &str, commit: &str, found: &mut impl FnMut(Finding)) {
        let offsets: Vec<usize> = self.offsets(data).collect();
        if offsets.is_empty() {
            return;
        }
        for (offset, (line, column)) in offsets.iter().zip(locate(data, &offsets)) {
            let token = &data[*offset..*offset + self.token_len()];
            let Ok(token) = std::str::from_utf8(token) else {
                continue;
            };
            let location = Location {
                path: path.to_owned(),
                commit: Some(commit.to_owned()),
                line,
                column,
            };
            if let Some(finding) = Finding::new(self.format(), token.to_owned(), location) {
                found(finding);
            }
        }
    }
}

/// The commits `HEAD` and every reference point at (annotated tags
/// peeled; references to anything else skipped), without repeats.
fn tips(repo: &gix::Repository) -> Result<Vec<ObjectId>, String> {
    let mut tips = Vec::new();
    if let Ok(mut head) = repo.head()
        && let Ok(commit) = head.peel_to_commit()
    {
        tips.push(commit.id);
    }
    let platform = repo.references().map_err(|e| e.to_string())?;
    for reference in platform.all().map_err(|e| e.to_string())? {
        let Ok(mut reference) = reference else {
            continue;
        };
        if let Ok(commit) = reference.peel_to_commit() {
            tips.push(commit.id);
        }
    }
    tips.sort_unstable();
    tips.dedup();
    Ok(tips)
}
