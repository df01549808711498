//! What `ingest` leaves out: restic's `--exclude`, `--exclude-file`,
//! `--exclude-if-present`, `--exclude-caches`, `--one-file-system` and
//! `--exclude-larger-than`. (The repository's own folders and this
//! machine's cache are always left out, by `Walker::own`.)

use std::ffi::OsString;
use std::fs::Metadata;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::globs::PathGlobs;

/// The file `--exclude-caches` looks for, and how it must begin
/// (<https://bford.info/cachedir/>).
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Rules for leaving entries out of a snapshot. Nothing is excluded by
/// default.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    /// Globs against absolute paths (see [`Exclusions::add_pattern`]).
    patterns: PathGlobs,
    /// Folders holding one of these files (with this beginning, if given)
    /// are left out.
    markers: Vec<(OsString, Option<Vec<u8>>)>,
    /// Folders on another file system than the paths given are stored
    /// empty (the mount point stays, its contents do not).
    pub one_file_system: bool,
    /// Files larger than this many bytes are left out.
    pub larger_than: Option<u64>,
}

impl Exclusions {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
            && self.markers.is_empty()
            && !self.one_file_system
            && self.larger_than.is_none()
    }

    /// Leaves out every entry whose absolute path matches `glob` (read as
    /// `PathGlobs` reads globs), and all below it.
    pub fn add_pattern(&mut self, glob: &str) -> Result<()> {
        self.patterns.add(glob, "exclude pattern")
    }

    /// Adds the patterns of a file: one a line; blank lines and lines
    /// starting with `#` are skipped.
    pub fn add_pattern_file(&mut self, file: &Path) -> Result<()> {
        let text = std::fs::read_to_string(file).at(file)?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add_pattern(line)
                .map_err(|e| Error::invalid("exclude file", format!("{}: {e}", file.display())))?;
        }
        Ok(())
    }

    /// Leaves out every folder that holds a file named `name`.
    pub fn add_marker(&mut self, name: &str) {
        self.markers.push((OsString::from(name), None));
    }

    /// Leaves out every folder holding a valid `CACHEDIR.TAG`.
    pub fn exclude_caches(&mut self) {
        self.markers.push((
            OsString::from(CACHEDIR_TAG),
            Some(CACHEDIR_SIGNATURE.to_vec()),
        ));
    }

    /// Why the entry at `path` (absolute; reached at `access`) is left out,
    /// if it is.
    pub(super) fn reason(
        &self,
        path: &Path,
        access: &Path,
        meta: &Metadata,
    ) -> Option<&'static str> {
        if let Some(limit) = self.larger_than {
            if meta.is_file() && meta.len() > limit {
                return Some("larger than --exclude-larger-than");
            }
        }
        if self.patterns.matches(path) {
            return Some("matches --exclude");
        }
        if meta.is_dir() && self.marked(access) {
            return Some("holds an --exclude-if-present file");
        }
        None
    }

    /// Whether the folder at `dir` holds one of the marker files.
    fn marked(&self, dir: &Path) -> bool {
        self.markers.iter().any(|(name, signature)| {
            let file = dir.join(name);
            match signature {
                None => file.symlink_metadata().is_ok(),
                Some(want) => {
                    let mut head = vec![0; want.len()];
                    std::fs::File::open(&file)
                        .and_then(|mut f| f.read_exact(&mut head))
                        .is_ok_and(|()| head == *want)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_and_files_are_errors() {
        let mut ex = Exclusions::default();
        assert!(ex.add_pattern("[").is_err());
        assert!(ex.add_pattern("  ").is_err());
        assert!(ex.add_pattern_file(Path::new("/no/such/file")).is_err());
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("excludes");
        std::fs::write(&file, "# comment\n\n*.tmp\n  /var/cache  \n").unwrap();
        ex.add_pattern_file(&file).unwrap();
        assert_eq!(ex.patterns.len(), 2);
    }

    #[test]
    fn markers_and_cache_tags_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let meta = std::fs::metadata(dir).unwrap();
        let mut ex = Exclusions::default();
        ex.exclude_caches();
        std::fs::write(dir.join(CACHEDIR_TAG), b"not the signature").unwrap();
        assert!(ex.reason(dir, dir, &meta).is_none());
        let mut tag = CACHEDIR_SIGNATURE.to_vec();
        tag.extend_from_slice(b"\n# a cache\n");
        std::fs::write(dir.join(CACHEDIR_TAG), tag).unwrap();
        assert!(ex.reason(dir, dir, &meta).is_some());
        let mut by_name = Exclusions::default();
        by_name.add_marker(".nobackup");
        assert!(by_name.reason(dir, dir, &meta).is_none());
        std::fs::write(dir.join(".nobackup"), b"").unwrap();
        assert!(by_name.reason(dir, dir, &meta).is_some());
    }
}
