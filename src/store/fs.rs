//! The file-system calls a local store makes, as a trait: the mechanism
//! under [`LocalStore`](crate::store::LocalStore), which orders them for
//! durability (write, fsync, rename, fsync the folder).
//!
//! Three implementations: [`OsFs`], the real one; [`MemFs`](crate::store::MemFs),
//! which keeps written and durable state apart so a crash test can see a
//! missing fsync; and [`FaultyFs`], a decorator around either that fails
//! the Nth durable step and every one after it, as a crash would.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::faults::FaultPlan;

/// What a folder entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link: never followed inside a store (only a store's
    /// own root may be one, see [`Fs::follow_root`]).
    Link,
    /// Anything else (a socket, a device): never written by the engine.
    Other,
}

/// The calls a local store makes. Paths are absolute or relative to the
/// process's working folder, as given. Nothing here is durable until
/// [`sync_file`](Fs::sync_file) (a file's bytes) or
/// [`sync_dir`](Fs::sync_dir) (a folder's entries: creations, renames,
/// removals) says so.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Creates `path`, which must not exist (`AlreadyExists`; a link there
    /// is never followed), and writes `data` to it.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Makes `path`'s bytes durable.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Renames `from` to `to` only if nothing is at `to` (`AlreadyExists`
    /// otherwise), in one step: of two processes renaming onto one name
    /// at once, exactly one succeeds. What create-only writes rely on
    /// where other writers share the folder.
    fn rename_new(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of folder `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one folder; its parent must exist.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes folder `path` reachable by its owner only (mode 0700): a
    /// repository's bytes are its owner's business.
    fn make_private(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `len` bytes from `offset`; `UnexpectedEof` when the file is shorter.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// What `path` is, without following a link; `NotFound` when absent.
    fn kind(&self, path: &Path) -> io::Result<FileKind>;
    /// A file's length.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// When a file was last written, by the clock of whatever keeps it
    /// (a file server's, for a network mount).
    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime>;
    /// The entries of folder `path`, by name (names that are not UTF-8
    /// are left out: the engine never writes one).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<(String, FileKind)>>;
    /// Where the symlink at `path` leads, resolved whole, when `path` is
    /// one; `None` when it is not (or is absent). Used once, on a store's
    /// root (a repository or shard moved to another disk and linked back);
    /// links inside a store are never followed. `None` by default.
    fn follow_root(&self, _path: &Path) -> io::Result<Option<PathBuf>> {
        Ok(None)
    }
    /// Called before the engine makes something durable outside this file
    /// system (an index commit), so that a decorator counting steps sees
    /// every durable step in order. Does nothing by default.
    fn crash_point(&self, _what: &str) -> io::Result<()> {
        Ok(())
    }
}

/// Read handles [`OsFs`] keeps open; past this many, one is dropped.
const MAX_HANDLES: usize = 256;

/// The operating system's file system. What it creates is its owner's
/// only: files 0600, folders 0700, whatever the umask.
#[derive(Debug, Default)]
pub struct OsFs {
    /// Files opened by `read_at`, each with its length, so restoring many
    /// small files neither opens nor measures the same pack once per file
    /// (the engine never changes a file in place). Dropped when their path
    /// is written, renamed over or removed.
    handles: Mutex<HashMap<PathBuf, (Arc<File>, u64)>>,
}

impl OsFs {
    /// A shared handle to the real file system.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(OsFs::default())
    }

    fn forget(&self, path: &Path) {
        self.handles.lock().expect("handles lock").remove(path);
    }

    fn handle(&self, path: &Path) -> io::Result<(Arc<File>, u64)> {
        if let Some(f) = self.handles.lock().expect("handles lock").get(path) {
            return Ok(f.clone());
        }
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let f = (Arc::new(file), len);
        let mut handles = self.handles.lock().expect("handles lock");
        if handles.len() >= MAX_HANDLES {
            if let Some(old) = handles.keys().next().cloned() {
                handles.remove(&old);
            }
        }
        handles.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }
}

fn kind_of(t: fs::FileType) -> FileKind {
    if t.is_file() {
        FileKind::File
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Link
    } else {
        FileKind::Other
    }
}

impl Fs for OsFs {
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.forget(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(path)?;
        file.write_all(data)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        fs::rename(from, to)
    }

    /// A hard link, which fails if `to` exists, then the old name
    /// removed; on a filesystem without hard links (some FUSE and SMB
    /// mounts), a check and a rename, atomic only under the writer lock.
    fn rename_new(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        match fs::hard_link(from, to) {
            Ok(()) => fs::remove_file(from),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
                ) =>
            {
                if fs::symlink_metadata(to).is_ok() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                fs::rename(from, to)
            }
            Err(e) => Err(e),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn make_private(&self, path: &Path) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let (file, file_len) = self.handle(path)?;
        // A length from damaged metadata must not size the buffer.
        if offset.saturating_add(len as u64) > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} run past the end of the file"),
            ));
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn kind(&self, path: &Path) -> io::Result<FileKind> {
        Ok(kind_of(fs::symlink_metadata(path)?.file_type()))
    }

    fn follow_root(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map(Some),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        fs::symlink_metadata(path)?.modified()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<(String, FileKind)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                out.push((name, kind_of(entry.file_type()?)));
            }
        }
        Ok(out)
    }
}

/// A decorator that routes every durable step (write, fsync, rename,
/// folder fsync, removal, folder creation, and the engine's crash points)
/// through a [`FaultPlan`], which fails step N and every step after it.
/// Reads pass through untouched.
#[derive(Debug)]
pub struct FaultyFs {
    inner: Arc<dyn Fs>,
    plan: Arc<FaultPlan>,
}

impl FaultyFs {
    /// `inner` with its durable steps counted (and failed) by `plan`.
    pub fn new(inner: Arc<dyn Fs>, plan: Arc<FaultPlan>) -> Self {
        FaultyFs { inner, plan }
    }
}

impl Fs for FaultyFs {
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.plan.step("write")?;
        self.inner.write(path, data)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.plan.step("fsync")?;
        self.inner.sync_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plan.step("rename")?;
        self.inner.rename(from, to)
    }

    fn rename_new(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plan.step("rename")?;
        self.inner.rename_new(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.plan.step("fsync dir")?;
        self.inner.sync_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.plan.step("delete")?;
        self.inner.remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.plan.step("mkdir")?;
        self.inner.create_dir(path)
    }

    fn make_private(&self, path: &Path) -> io::Result<()> {
        self.inner.make_private(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(path, offset, len)
    }

    fn kind(&self, path: &Path) -> io::Result<FileKind> {
        self.inner.kind(path)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        self.inner.len(path)
    }

    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        self.inner.modified(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<(String, FileKind)>> {
        self.inner.read_dir(path)
    }

    fn crash_point(&self, what: &str) -> io::Result<()> {
        self.plan.step(what)?;
        self.inner.crash_point(what)
    }
}
