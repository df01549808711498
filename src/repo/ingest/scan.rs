//! Phase 1 of an ingest: walk the given paths, sorted by name, without
//! following symlinks, into a tree of [`Node`]s and the list of regular
//! files to read. Entries that cannot be stored (sockets, FIFOs, devices,
//! unreadable folders) are skipped with a warning.

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::filecache::FileStamp;
use crate::repo::Progress;
use crate::snapshot::Skipped;

/// A walked filesystem entry.
pub(super) enum Node {
    File {
        path: PathBuf,
        meta: Metadata,
    },
    Dir {
        meta: Metadata,
        children: Vec<(Vec<u8>, Node)>,
    },
    Symlink {
        meta: Metadata,
        target: Vec<u8>,
    },
}

/// The walked roots, each with its name (`None`: skipped).
pub(super) type Roots = Vec<(Vec<u8>, Option<Node>)>;

/// A regular file found by the walk.
pub(super) struct FileJob {
    pub(super) path: PathBuf,
    pub(super) stamp: FileStamp,
}

/// What the walk found: the files to read, and what it had to skip.
pub(super) struct Walk<'p> {
    pub(super) files: Vec<FileJob>,
    pub(super) skipped: Vec<Skipped>,
    progress: &'p dyn Progress,
    /// Folders never stored, by (device, inode): the repository's own.
    own: HashSet<(u64, u64)>,
}

impl<'p> Walk<'p> {
    /// Phase 1: walks every given path (by absolute path: it is also the
    /// file cache's key); returns the walk and each root with its name.
    /// A path that is missing or unreadable itself is an error; anything
    /// unreadable below it is skipped.
    /// Folders in `own` (the repository's, by device and inode) are
    /// passed over with a notice.
    pub(super) fn roots(
        paths: &[PathBuf],
        own: HashSet<(u64, u64)>,
        progress: &'p dyn Progress,
    ) -> Result<(Self, Roots)> {
        if paths.is_empty() {
            return Err(Error::invalid("ingest paths", "give at least one path"));
        }
        let mut walk = Walk {
            files: Vec::new(),
            skipped: Vec::new(),
            progress,
            own,
        };
        let mut roots = Vec::new();
        let mut names = std::collections::HashSet::new();
        for given in paths {
            let path = &std::path::absolute(given).at(given)?;
            let meta = fs::symlink_metadata(path).at(given)?;
            if meta.is_dir() {
                fs::read_dir(path).at(given)?;
            } else if meta.is_file() {
                File::open(path).at(given)?;
            }
            let name = path
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
                .or_else(|| path.file_name().map(|n| n.as_bytes().to_vec()))
                .unwrap_or_else(|| b"root".to_vec());
            if paths.len() > 1 && !names.insert(name.clone()) {
                return Err(Error::invalid(
                    "ingest paths",
                    format!(
                        "two paths share the name {:?}",
                        String::from_utf8_lossy(&name)
                    ),
                ));
            }
            let node = walk.node(path, meta);
            roots.push((name, node));
        }
        Ok((walk, roots))
    }

    fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        let reason = reason.into();
        self.progress
            .warn(&format!("skipping {}: {reason}", path.display()));
        self.skipped.push(Skipped {
            path: path.display().to_string(),
            reason,
        });
    }

    /// Walks `path`; `None` when it is skipped.
    fn node(&mut self, path: &Path, meta: Metadata) -> Option<Node> {
        let ft = meta.file_type();
        if ft.is_file() {
            self.files.push(FileJob {
                path: path.to_path_buf(),
                stamp: FileStamp::of(&meta),
            });
            Some(Node::File {
                path: path.to_path_buf(),
                meta,
            })
        } else if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(t)
                    if !t.as_os_str().is_empty() && u16::try_from(t.as_os_str().len()).is_ok() =>
                {
                    Some(Node::Symlink {
                        meta,
                        target: t.as_os_str().as_bytes().to_vec(),
                    })
                }
                Ok(_) => {
                    self.skip(path, "symlink target is empty or too long");
                    None
                }
                Err(e) => {
                    self.skip(path, e.to_string());
                    None
                }
            }
        } else if ft.is_dir() {
            if self.own.contains(&(meta.dev(), meta.ino())) {
                self.progress.warn(&format!(
                    "{} is this repository's own folder; not stored",
                    path.display()
                ));
                return None;
            }
            let listing = match fs::read_dir(path) {
                Ok(l) => l,
                Err(e) => {
                    self.skip(path, e.to_string());
                    return None;
                }
            };
            let mut names = Vec::new();
            for item in listing {
                match item {
                    Ok(item) => names.push(item.file_name()),
                    Err(e) => self.skip(path, e.to_string()),
                }
            }
            names.sort();
            let mut children = Vec::with_capacity(names.len());
            for name in names {
                let child = path.join(&name);
                if name.len() > u16::MAX as usize {
                    self.skip(&child, "name too long");
                    continue;
                }
                match fs::symlink_metadata(&child) {
                    Ok(m) => {
                        if let Some(node) = self.node(&child, m) {
                            children.push((name.as_bytes().to_vec(), node));
                        }
                    }
                    Err(e) => self.skip(&child, e.to_string()),
                }
            }
            Some(Node::Dir { meta, children })
        } else {
            let kind = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "an unsupported file type"
            };
            self.skip(path, format!("{kind} is not stored"));
            None
        }
    }
}

pub(super) fn mtime(meta: &Metadata) -> (i64, u32) {
    (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
}
