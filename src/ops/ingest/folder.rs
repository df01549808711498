//! Phases 1 to 3 of an ingest, one folder at a time: list the folder,
//! store its children in parallel (files read or taken from the file
//! cache, subfolders the same way, recursively), then store its tree.
//!
//! Walking, reading and storing overlap, and nothing waits for the whole
//! walk: a folder's tree is stored as soon as its children are, so memory
//! holds the folders being worked on, not a map of the whole input.
//! Children are always taken in name order and their results gathered in
//! that order, so the same input gives the same root tree id and the same
//! summary however the work was spread over the cores.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::exclude::Exclusions;
use super::read::{self, FileJob, FileResult};
use super::ChunkList;
use crate::engine::attrs::{mtime, Names};
use crate::engine::deep::{self, LONG_PATH};
use crate::engine::writer::ObjectWriter;
use crate::engine::{Engine, Progress};
use crate::error::{Error, IoContext, Result};
use crate::format::filecache::{self, FileStamp};
use crate::format::record::ObjectKind;
use crate::format::snapshot::tree::ROOT_NAME;
use crate::format::snapshot::{Attrs, Entry, EntryKind, IngestSummary, Skipped, Tree};
use crate::id::ChunkId;

/// What a part of the input added up to, gathered in walk order.
#[derive(Default)]
pub(super) struct Tally {
    /// Counts, and the entries skipped or changed while read.
    pub(super) summary: IngestSummary,
    /// File-cache entries of the files read this time: `(key, value)`.
    pub(super) fresh_cache: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        let (s, o) = (&mut self.summary, other.summary);
        s.files += o.files;
        s.dirs += o.dirs;
        s.symlinks += o.symlinks;
        s.logical_bytes += o.logical_bytes;
        s.total_chunks += o.total_chunks;
        s.unchanged_files += o.unchanged_files;
        s.excluded += o.excluded;
        s.specials += o.specials;
        s.skipped.extend(o.skipped);
        s.changed.extend(o.changed);
        self.fresh_cache.extend(other.fresh_cache);
    }

    fn skip(&mut self, path: &Path, reason: impl Into<String>, progress: &dyn Progress) {
        let reason = reason.into();
        progress.warn(&format!("skipping {}: {reason}", path.display()));
        self.summary.skipped.push(Skipped {
            path: path.display().to_string(),
            reason,
        });
    }
}

/// One ingest's walk: what it needs at every folder.
pub(super) struct Walker<'a> {
    pub(super) repo: &'a Engine,
    pub(super) writer: &'a ObjectWriter<'a>,
    pub(super) progress: &'a dyn Progress,
    /// Use the file cache.
    pub(super) file_cache: bool,
    /// Folders never stored, by (device, inode): the repository's own.
    pub(super) own: HashSet<(u64, u64)>,
    /// What else to leave out.
    pub(super) exclude: &'a Exclusions,
    /// The file systems of the paths given (`--one-file-system` stays on
    /// them).
    pub(super) devices: HashSet<u64>,
    /// User and group names by id, looked up once each.
    pub(super) names: Names,
    /// When the ingest started, in nanoseconds since 1970: files changed
    /// too shortly before are not put in the file cache (see
    /// [`read::settled`]).
    pub(super) started_ns: i128,
}

impl Walker<'_> {
    /// Stores every given path (by absolute path: it is also the file
    /// cache's key) and returns the snapshot's root tree. One folder given
    /// is the root itself; anything else sits under its base name. A path
    /// that is missing or unreadable itself is an error; anything
    /// unreadable below it is skipped.
    pub(super) fn roots(&self, paths: &[PathBuf]) -> Result<(ChunkId, Tally)> {
        if paths.is_empty() {
            return Err(Error::invalid("ingest paths", "give at least one path"));
        }
        let mut roots = Vec::new();
        let mut names = HashSet::new();
        for given in paths {
            let path = std::path::absolute(given).at(given)?;
            let meta = fs::symlink_metadata(&path).at(given)?;
            if meta.is_dir() {
                fs::read_dir(&path).at(given)?;
            } else if meta.is_file() {
                File::open(&path).at(given)?;
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
            roots.push((path, name, meta));
        }
        match roots.as_slice() {
            [(path, _, meta)] if meta.is_dir() && !self.own(meta) => {
                let (tree, mut tally) = self.folder(path, None)?;
                tally.summary.dirs += 1;
                let tree = tree.ok_or_else(|| {
                    Error::invalid(
                        "ingest paths",
                        format!("{} cannot be listed", path.display()),
                    )
                })?;
                Ok((tree, tally))
            }
            _ => {
                let children = roots
                    .into_iter()
                    .map(|(path, name, meta)| Child {
                        path,
                        access: None,
                        name,
                        meta,
                    })
                    .collect();
                self.tree_of(children)
            }
        }
    }

    /// The one folder ingested, as an entry of its own (mode, time,
    /// owner, extended attributes) pointing at `tree`, stored as a tree of
    /// that one entry: its id, or `None` when `given` is not a folder.
    pub(super) fn root_entry(&self, given: &Path, tree: ChunkId) -> Result<Option<ChunkId>> {
        let path = std::path::absolute(given).at(given)?;
        let meta = fs::symlink_metadata(&path).at(given)?;
        if !meta.is_dir() || self.own(&meta) {
            return Ok(None);
        }
        let (mtime_s, mtime_ns) = mtime(&meta);
        let entry = Tree {
            entries: vec![Entry {
                name: ROOT_NAME.to_vec(),
                mode: meta.mode() & 0o7777,
                mtime_s,
                mtime_ns,
                kind: EntryKind::Dir { tree },
                attrs: self.attrs_of(&path, &meta),
            }],
        };
        Ok(Some(self.writer.store(&entry.encode(), ObjectKind::Tree)?))
    }

    /// Whether the rules leave out `name` in the folder at `dir` (reached
    /// at `access`; no path is built when there are no rules).
    fn excluded(&self, dir: &Path, access: &Path, name: &std::ffi::OsStr, meta: &Metadata) -> bool {
        !self.exclude.is_empty()
            && self
                .exclude
                .reason(&dir.join(name), &access.join(name), meta)
                .is_some()
    }

    fn own(&self, meta: &Metadata) -> bool {
        self.own.contains(&(meta.dev(), meta.ino()))
    }

    /// Stores the folder at `path` (reached at `access`, when not at
    /// `path` itself) and everything below it; its tree's id, or `None`
    /// when it cannot be listed (it is then skipped).
    ///
    /// A folder reached by a path longer than [`LONG_PATH`] is opened, and
    /// its entries are reached through that handle ([`deep`]), held while
    /// they are stored: a tree deeper than `PATH_MAX` is stored whole.
    fn folder(&self, path: &Path, access: Option<&Path>) -> Result<(Option<ChunkId>, Tally)> {
        let mut tally = Tally::default();
        let reached = access.unwrap_or(path);
        let anchor = if reached.as_os_str().len() > LONG_PATH {
            match deep::open_folder(reached) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tally.skip(path, e.to_string(), self.progress);
                    return Ok((None, tally));
                }
            }
        } else {
            None
        };
        // Where the entries are reached, when not by their own paths.
        let below = match &anchor {
            Some(handle) => Some(deep::through(handle)),
            None => access.map(Path::to_path_buf),
        };
        let base = below.as_deref().unwrap_or(path);
        let listing = match fs::read_dir(base) {
            Ok(listing) => listing,
            Err(e) => {
                tally.skip(path, e.to_string(), self.progress);
                return Ok((None, tally));
            }
        };
        let mut found: Vec<(OsString, Metadata)> = Vec::new();
        for item in listing {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    tally.skip(path, e.to_string(), self.progress);
                    continue;
                }
            };
            let name = item.file_name();
            if name.len() > usize::from(u16::MAX) {
                tally.skip(&path.join(&name), "name too long", self.progress);
                continue;
            }
            // Asked of the open folder (fstatat), not by path: no lookup
            // of every parent again, and symlinks are not followed.
            match item.metadata() {
                Ok(meta) if self.excluded(path, base, &name, &meta) => {
                    tally.summary.excluded += 1;
                }
                Ok(meta) => found.push((name, meta)),
                Err(e) => tally.skip(&path.join(&name), e.to_string(), self.progress),
            }
        }
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let children = found
            .into_iter()
            .map(|(name, meta)| Child {
                path: path.join(&name),
                access: below.as_ref().map(|b| b.join(&name)),
                name: name.into_vec(),
                meta,
            })
            .collect();
        let (tree, below) = self.tree_of(children)?;
        // Only now: every child was reached through it.
        drop(anchor);
        tally.absorb(below);
        Ok((Some(tree), tally))
    }

    /// Stores `children` (in parallel) and then the tree that lists them.
    fn tree_of(&self, children: Vec<Child>) -> Result<(ChunkId, Tally)> {
        self.progress.add_total(
            children
                .iter()
                .filter(|c| c.meta.is_file())
                .map(|c| c.meta.len())
                .sum(),
        );
        let cached = self.cached_chunk_lists(&children)?;
        let stored: Vec<(Option<Entry>, Tally)> = children
            .into_par_iter()
            .zip(cached)
            .map(|(child, cached)| self.child(child, cached))
            .collect::<Result<_>>()?;
        let mut tally = Tally::default();
        let mut tree = Tree::default();
        for (entry, below) in stored {
            tally.absorb(below);
            tree.entries.extend(entry);
        }
        tree.sort();
        let id = self.writer.store(&tree.encode(), ObjectKind::Tree)?;
        Ok((id, tally))
    }

    /// Stores one entry of a folder: its tree entry (`None`: skipped).
    fn child(&self, child: Child, cached: Option<ChunkList>) -> Result<(Option<Entry>, Tally)> {
        let Child {
            path,
            access,
            name,
            meta,
        } = child;
        let mut tally = Tally::default();
        let reached = access.as_deref().unwrap_or(&path);
        let attrs = self.attrs_of(reached, &meta);
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            self.file(path, access, &meta, cached, &mut tally)?
        } else if ft.is_dir() {
            self.subfolder(&path, access.as_deref(), &meta, &mut tally)?
        } else if ft.is_symlink() {
            symlink(&path, reached, &mut tally, self.progress)
        } else if ft.is_fifo() {
            tally.summary.specials += 1;
            Some(EntryKind::Fifo)
        } else if ft.is_char_device() {
            tally.summary.specials += 1;
            Some(EntryKind::CharDevice { rdev: meta.rdev() })
        } else if ft.is_block_device() {
            tally.summary.specials += 1;
            Some(EntryKind::BlockDevice { rdev: meta.rdev() })
        } else {
            let what = if ft.is_socket() {
                "a socket"
            } else {
                "an unsupported file type"
            };
            tally.skip(&path, format!("{what} is not stored"), self.progress);
            None
        };
        let entry = kind.map(|kind| {
            let (mtime_s, mtime_ns) = mtime(&meta);
            Entry {
                name,
                mode: meta.mode() & 0o7777,
                mtime_s,
                mtime_ns,
                kind,
                attrs,
            }
        });
        Ok((entry, tally))
    }

    /// A regular file (at `path`, reached at `access` when not there):
    /// from the file cache (`cached`), else read.
    fn file(
        &self,
        path: PathBuf,
        access: Option<PathBuf>,
        meta: &Metadata,
        cached: Option<ChunkList>,
        tally: &mut Tally,
    ) -> Result<Option<EntryKind>> {
        let job = FileJob {
            stamp: FileStamp::of(meta),
            path,
            access,
        };
        let result = match cached {
            Some(chunks) => {
                self.progress.advance(job.stamp.size);
                FileResult::Stored {
                    chunks,
                    size: job.stamp.size,
                    reused: true,
                    changed: false,
                }
            }
            None => read::store_file(self.writer, self.repo.config.chunker, &job, self.progress)?,
        };
        let (chunks, size, reused, changed) = match result {
            FileResult::Stored {
                chunks,
                size,
                reused,
                changed,
            } => (chunks, size, reused, changed),
            FileResult::Unreadable(reason) => {
                tally.summary.skipped.push(Skipped {
                    path: job.path.display().to_string(),
                    reason,
                });
                return Ok(None);
            }
        };
        let s = &mut tally.summary;
        s.files += 1;
        s.unchanged_files += u64::from(reused);
        if changed {
            s.changed.push(job.path.display().to_string());
        }
        s.logical_bytes += size;
        s.total_chunks += chunks.len() as u64;
        if !reused && !changed && read::settled(&job.stamp, self.started_ns) {
            tally.fresh_cache.push((
                job.path.as_os_str().as_bytes().to_vec(),
                filecache::encode(&job.stamp, &chunks),
            ));
        }
        Ok(Some(EntryKind::File { size, chunks }))
    }

    /// What the entry reached at `path` carries beside its content: owner
    /// (with names), extended attributes (not followed through a symlink;
    /// a file system without them has none), and for a multiply linked
    /// file its link key.
    pub(super) fn attrs_of(&self, path: &Path, meta: &Metadata) -> Attrs {
        let xattrs = match xattr::list(path) {
            Ok(names) => {
                let mut all: Vec<(Vec<u8>, Vec<u8>)> = names
                    .filter_map(|name| {
                        let value = xattr::get(path, &name).ok()??;
                        Some((name.into_vec(), value))
                    })
                    .filter(|(name, value)| {
                        u16::try_from(name.len()).is_ok() && u32::try_from(value.len()).is_ok()
                    })
                    .collect();
                all.sort();
                all.dedup_by(|a, b| a.0 == b.0);
                all.truncate(usize::from(u16::MAX));
                all
            }
            Err(_) => Vec::new(),
        };
        let link = if meta.is_file() && meta.nlink() > 1 {
            link_key(meta.dev(), meta.ino())
        } else {
            0
        };
        Attrs {
            owner: Some(self.names.owner(meta.uid(), meta.gid())),
            xattrs,
            link,
        }
    }

    /// A folder below the roots (reached at `access` when not at `path`),
    /// unless it is the repository's own.
    fn subfolder(
        &self,
        path: &Path,
        access: Option<&Path>,
        meta: &Metadata,
        tally: &mut Tally,
    ) -> Result<Option<EntryKind>> {
        if self.own(meta) {
            self.progress.warn(&format!(
                "{} is this repository's own folder; not stored",
                path.display()
            ));
            return Ok(None);
        }
        if self.exclude.one_file_system && !self.devices.contains(&meta.dev()) {
            // A mount point: kept, as an empty folder.
            tally.summary.dirs += 1;
            tally.summary.excluded += 1;
            let tree = self
                .writer
                .store(&Tree::default().encode(), ObjectKind::Tree)?;
            return Ok(Some(EntryKind::Dir { tree }));
        }
        let (tree, below) = self.folder(path, access)?;
        tally.absorb(below);
        Ok(tree.map(|tree| {
            tally.summary.dirs += 1;
            EntryKind::Dir { tree }
        }))
    }

    /// For each child that is a file, its chunk list from the file cache
    /// when its stamp is unchanged and every chunk is still indexed.
    fn cached_chunk_lists(&self, children: &[Child]) -> Result<Vec<Option<ChunkList>>> {
        let none = || vec![None; children.len()];
        let Some(cache) = self.repo.file_cache.as_ref().filter(|_| self.file_cache) else {
            return Ok(none());
        };
        let files: Vec<(usize, &Child)> = children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.meta.is_file())
            .collect();
        if files.is_empty() {
            return Ok(none());
        }
        let keys: Vec<&[u8]> = files
            .iter()
            .map(|(_, c)| c.path.as_os_str().as_bytes())
            .collect();
        let mut out = none();
        for ((at, child), value) in files.iter().zip(cache.get_many(&keys)) {
            // A damaged entry only costs a re-read.
            out[*at] = value
                .and_then(|v| filecache::decode(&v, &child.path.display().to_string()).ok())
                .filter(|(stamp, _)| *stamp == FileStamp::of(&child.meta))
                .map(|(_, chunks)| chunks);
        }
        read::drop_unindexed(self.repo, &mut out)?;
        Ok(out)
    }
}

/// The key all links of one inode share: the start of the SHA-256 of its
/// device and inode numbers (never 0, which means "no link").
fn link_key(dev: u64, ino: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&dev.to_le_bytes());
    bytes[8..].copy_from_slice(&ino.to_le_bytes());
    let id = ChunkId::of(&bytes);
    let mut key = [0u8; 8];
    key.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_le_bytes(key).max(1)
}

/// A symlink, stored as its target (never followed).
fn symlink(
    path: &Path,
    access: &Path,
    tally: &mut Tally,
    progress: &dyn Progress,
) -> Option<EntryKind> {
    match fs::read_link(access) {
        Ok(t) if !t.as_os_str().is_empty() && u16::try_from(t.as_os_str().len()).is_ok() => {
            tally.summary.symlinks += 1;
            Some(EntryKind::Symlink {
                target: t.as_os_str().as_bytes().to_vec(),
            })
        }
        Ok(_) => {
            tally.skip(path, "symlink target is empty or too long", progress);
            None
        }
        Err(e) => {
            tally.skip(path, e.to_string(), progress);
            None
        }
    }
}

/// An entry of a folder (or a path given), about to be stored.
struct Child {
    /// Its path, as it is named in messages and the file cache.
    path: PathBuf,
    /// Where the kernel is asked for it, when not at `path`: below a deep
    /// folder's handle (see [`Walker::folder`]).
    access: Option<PathBuf>,
    name: Vec<u8>,
    meta: Metadata,
}
