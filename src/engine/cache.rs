//! This machine's cache of a repository: everything here can be made
//! again from the home, so deleting it costs time, never data.
//!
//! ```text
//! CACHE/                      --cache, $DEDUP_CACHE, else ~/.cache/dedup
//!   <repository id>/          slot 0
//!     lock                    flock: the one process using the slot
//!     index/                  RocksDB: an overlay on the home's index
//!                             families (what the segments since added),
//!                             the pack table, the snapshot records and
//!                             the record catalog, this machine's counters
//!     bloom                   the Bloom filter of the index's ids
//!     summaries/              the summaries of the index families (their
//!                             fences, hooks and Bloom slices), a file a
//!                             family version, read again only when new
//!     files/                  the file cache (path, size, times -> chunks)
//!   <repository id>.1/        slot 1: for a second process at the same time
//!   ...
//!   <repository id>.encrypted  this machine opened it encrypted: a plain
//!                             config for it is refused (a downgrade)
//!   <repository id>.key       the key file that last opened it, tried first
//! ```
//!
//! Each process has a slot to itself, so each RocksDB is opened by one
//! process only, read-write, and brought up to date with the home's
//! segments as that process opens it. A second process at the same time
//! (a `restore` during an `ingest`, two ingests) takes the next free slot;
//! the first time, that slot is built from the segments.

use std::path::{Path, PathBuf};

use crate::engine::lock::{open_own_file, WriteLock};
use crate::error::{Error, IoContext, Result};

/// Slots per repository: that many processes of one machine may use a
/// repository at once through one cache folder.
pub(crate) const SLOTS: usize = 16;

/// One process's slot in the cache of one repository.
pub(crate) struct CacheSlot {
    dir: PathBuf,
    /// Held while the slot is in use; released on drop.
    _lock: WriteLock,
}

impl CacheSlot {
    /// The cache folder when none is given: `dedup` in the platform's
    /// cache folder (`$XDG_CACHE_HOME`, else `~/.cache`).
    pub(crate) fn default_root() -> Result<PathBuf> {
        dirs::cache_dir().map(|d| d.join("dedup")).ok_or_else(|| {
            Error::invalid(
                "cache folder",
                "this user has none; pass --cache DIR or set DEDUP_CACHE",
            )
        })
    }

    /// Takes the first free slot for repository `id` under `root`,
    /// creating folders as needed (its owner's only: the file cache holds
    /// paths).
    pub(crate) fn take(root: &Path, id: &str) -> Result<Self> {
        check_id(id)?;
        let mut holders = Vec::new();
        for n in 0..SLOTS {
            let dir = if n == 0 {
                root.join(id)
            } else {
                root.join(format!("{id}.{n}"))
            };
            private_dir(&dir)?;
            match WriteLock::take(&dir.join("lock"), false)? {
                Ok(lock) => return Ok(CacheSlot { dir, _lock: lock }),
                Err(holder) => holders.push(holder),
            }
        }
        Err(Error::Locked {
            path: root.join(id),
            holder: format!(
                "{SLOTS} processes at once ({}, ...); let some finish, or give this one its own --cache",
                holders[0]
            ),
        })
    }

    /// Whether this machine's cache under `root` has opened repository
    /// `id` encrypted (see [`remember_encrypted`](Self::remember_encrypted)).
    pub(crate) fn seen_encrypted(root: &Path, id: &str) -> Result<bool> {
        check_id(id)?;
        Ok(std::fs::symlink_metadata(beside(root, id, "encrypted")).is_ok())
    }

    /// Remembers, beside the slots of repository `id` under `root`, that
    /// it is encrypted: a config that later says otherwise was replaced,
    /// and this machine refuses it rather than store plaintext. Best
    /// effort: a cache that cannot be written only forgets.
    pub(crate) fn remember_encrypted(root: &Path, id: &str) -> Result<()> {
        check_id(id)?;
        let marker = beside(root, id, "encrypted");
        if std::fs::symlink_metadata(&marker).is_err() {
            let _ = private_dir(root).and_then(|()| Self::replace(&marker, b""));
        }
        Ok(())
    }

    /// The key file that last opened repository `id` here, if known.
    pub(crate) fn remembered_key(root: &Path, id: &str) -> Option<String> {
        check_id(id).ok()?;
        let bytes = Self::read(&beside(root, id, "key")).ok()??;
        let key = String::from_utf8(bytes).ok()?;
        key.bytes().all(|b| b.is_ascii_hexdigit()).then_some(key)
    }

    /// Remembers `key` as the key file that opened repository `id` here,
    /// to be tried first next time. Best effort.
    pub(crate) fn remember_key(root: &Path, id: &str, key: &str) {
        if check_id(id).is_err() {
            return;
        }
        let _ = private_dir(root)
            .and_then(|()| Self::replace(&beside(root, id, "key"), key.as_bytes()));
    }

    /// The slot's folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index's RocksDB folder.
    pub(crate) fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// The saved Bloom filter.
    pub(crate) fn bloom(&self) -> PathBuf {
        self.dir.join("bloom")
    }

    /// The file cache's folder.
    pub(crate) fn files(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// Writes `bytes` to the slot's file `path` whole: to a temporary
    /// file renamed over it, so a reader finds the old bytes or the new.
    /// No fsync: a file lost to a crash is made again.
    /// The temporary file is made new (`O_EXCL`), so a link planted at
    /// its name is never written through.
    pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        // One a crash left behind (the same pid, another boot).
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .at(&tmp)?;
        std::fs::rename(&tmp, path).at(path)
    }

    /// The slot's file `path` read whole; `None` when there is none. A
    /// symlink or another user's file there is refused, never read.
    pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let Some(mut file) = open_own_file(path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(path)?;
        Ok(Some(bytes))
    }
}

/// Refuses a repository id that could not name a cache folder (one from
/// a hostile config could otherwise lead outside the cache).
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::invalid(
            "repository id",
            format!("{id:?} cannot name a cache folder"),
        ));
    }
    Ok(())
}

/// The file `<id>.<what>` beside repository `id`'s slots under `root`
/// (what this machine remembers of it: `encrypted`, `key`, `evidence`).
fn beside(root: &Path, id: &str, what: &str) -> PathBuf {
    root.join(format!("{id}.{what}"))
}

/// [`beside`], for the other modules of `repo`.
pub(crate) fn beside_path(root: &Path, id: &str, what: &str) -> PathBuf {
    beside(root, id, what)
}

/// Creates `dir` (and its parents) when absent, its owner's only. A slot
/// folder that is a symlink, or that another user owns, is refused: what
/// it holds (the index, the paths in the file cache) would be another's
/// to read or plant.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)?;
    let meta = std::fs::symlink_metadata(dir).at(dir)?;
    let refuse = |why: &str| Err(Error::io(dir, std::io::Error::other(why.to_string())));
    if meta.file_type().is_symlink() {
        return refuse("is a symlink, which dedup never follows (remove it)");
    }
    if meta.uid() != uzers::get_effective_uid() {
        return refuse(&format!(
            "belongs to user {}, not to this one (remove it, or give this user its own --cache)",
            meta.uid()
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).at(dir)
}

/// The summaries of the index families this slot keeps (its `summaries/`
/// folder, a file a family version), written and read as its other files.
pub(crate) struct SlotShelf(pub(crate) PathBuf);

impl crate::catalog::summary::Shelf for SlotShelf {
    fn get(&self, name: &str) -> Option<Vec<u8>> {
        CacheSlot::read(&self.0.join(name)).ok().flatten()
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        // Only a cache: what cannot be kept is read again next time.
        if std::fs::create_dir_all(&self.0).is_ok() {
            let _ = CacheSlot::replace(&self.0.join(name), bytes);
        }
    }

    fn keep_only(&self, names: &std::collections::HashSet<String>) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if !names.contains(entry.file_name().to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
