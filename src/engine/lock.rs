//! The writer lock of a folder home: any number of writers share it,
//! maintenance holds it alone.
//!
//! The lock is an advisory `flock` on the file `lock`, held for as long as
//! the writer runs; the file's JSON (pid, host, start time) only says who
//! holds it. The kernel drops a `flock` when its process dies, however it
//! dies, so there is no stale lock to judge: a lock file nobody holds is
//! simply taken, whatever pid it names (a pid reused after a reboot, a
//! container's), and taking it is atomic. The same kind of lock keeps each
//! cache slot to one process (see `cache`).
//!
//! Readers never wait for the writer: each reads through its own cache
//! slot. What must hold is that **no pack a reader's index lists is
//! deleted while the reader runs**, and the file `readers` provides it:
//! every read-only handle holds a shared `flock` on it, taken before its
//! index is brought up to date; a writer deletes a pack file only while
//! it holds the exclusive one, which it merely tries for
//! ([`ReadersLock::when_alone`]). When a reader is open, the files stay,
//! unindexed, and the next `gc` without readers removes them. A reader
//! that opens during a delete waits for that delete only.
//!
//! Anyone who can write to the home (an NFS or SMB server among them) can
//! plant a symlink at `lock` or `readers`, and every writer would then
//! create or truncate its target: so these files, and the cache's, are
//! opened with `O_NOFOLLOW` and refused unless they are regular files of
//! this user or of the folder's owner ([`own_file`]).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When it was taken, RFC 3339.
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// How long a lock object of an object-store home may go unwritten
/// before it is stale (see `objlock`), and half the grace period before a
/// compaction beside writers deletes what it superseded:
/// `$DEDUP_LOCK_STALE_SECONDS`, else 30 minutes.
pub(crate) fn stale_after() -> Duration {
    std::env::var("DEDUP_LOCK_STALE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30 * 60), Duration::from_secs)
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct WriteLock {
    path: PathBuf,
    /// The open file whose `flock` is the lock.
    file: File,
    /// Held shared (with other writers), not alone.
    shared: bool,
}

pub(crate) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Tries to take the lock again after its holder released it between our
/// open and our lock (see [`WriteLock::acquire`]).
const ATTEMPTS: usize = 10;

/// Opens (creating, owner only) a file whose `flock` is a lock; its
/// contents are never truncated by opening. What someone planted there is
/// refused, never followed or written through ([`own_file`]).
fn open_lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| planted(path, e))?;
    own_file(path, &file)?;
    Ok(file)
}

/// Opens a file of the home or the cache for reading, refusing what was
/// planted there ([`own_file`]); `None` when there is none.
pub(crate) fn open_own_file(path: &Path) -> Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(planted(path, e)),
    };
    own_file(path, &file)?;
    Ok(Some(file))
}

/// An open that failed because `path` is a symlink (`O_NOFOLLOW`'s
/// `ELOOP`) said in words; other errors as they are.
pub(crate) fn planted(path: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::io(
            path,
            std::io::Error::other("is a symlink, which dedup never follows (remove it)"),
        );
    }
    Error::io(path, e)
}

/// Refuses `file` (opened at `path`) unless it is a regular file owned by
/// this user or by the owner of the folder that holds it: a lock or cache
/// file that someone else put there (a link's target, a device, another
/// user's file) is never written through.
pub(crate) fn own_file(path: &Path, file: &File) -> Result<()> {
    let meta = file.metadata().at(path)?;
    let refuse = |why: &str| Err(Error::io(path, std::io::Error::other(why.to_string())));
    if !meta.file_type().is_file() {
        return refuse("is not a regular file (remove it)");
    }
    let folder_owner = path
        .parent()
        .and_then(|p| fs::metadata(p).ok())
        .map(|m| m.uid());
    if meta.uid() != uzers::get_effective_uid() && Some(meta.uid()) != folder_owner {
        return refuse(&format!(
            "belongs to user {}, neither this user nor the folder's owner (remove it)",
            meta.uid()
        ));
    }
    Ok(())
}

impl WriteLock {
    /// Takes the lock in `root` alone (`shared`: beside other shared
    /// holders, as writers take it), or says who holds it.
    pub fn acquire(root: &Path, shared: bool) -> Result<Self> {
        let path = root.join("lock");
        Self::take(&path, shared)?.map_err(|holder| Error::Locked { path, holder })
    }

    /// Takes the lock whose file is `path`; `Err(holder)`, naming who
    /// holds it (the last to take it, when several share it), when another
    /// process does.
    pub(crate) fn take(path: &Path, shared: bool) -> Result<std::result::Result<Self, String>> {
        for _ in 0..ATTEMPTS {
            let mut file = open_lock_file(path)?;
            let taken = if shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match taken {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = Vec::new();
                    let holder = file
                        .read_to_end(&mut text)
                        .ok()
                        .and_then(|_| serde_json::from_slice::<LockHolder>(&text).ok())
                        .map_or_else(|| "another process".to_string(), |h| h.to_string());
                    return Ok(Err(holder));
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
            }
            // A holder that was releasing may have removed the file after
            // we opened it: then we hold a lock on a name nobody sees.
            let ours = file.metadata().at(path)?;
            let named = fs::metadata(path).ok();
            if named.is_none_or(|m| (m.dev(), m.ino()) != (ours.dev(), ours.ino())) {
                continue;
            }
            let me = LockHolder {
                pid: std::process::id(),
                host: hostname(),
                since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            };
            let text = serde_json::to_vec(&me).expect("serialises");
            // Best effort: the text only names the holder, and a full
            // disk must not stop a reader from using its cache slot.
            let _ = file.set_len(0).and_then(|()| file.write_all_at(&text, 0));
            return Ok(Ok(WriteLock {
                path: path.to_path_buf(),
                file,
                shared,
            }));
        }
        Ok(Err("other processes taking and releasing it".into()))
    }

    /// True when held beside other shared holders, not alone.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // A holder alone removes the file while still holding it, so
        // nobody takes a lock on a file that is going away; closing the
        // file then releases the lock. A shared holder leaves it to the
        // others still holding it.
        if !self.shared {
            let _ = fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

/// The readers' lock; see the module docs.
#[derive(Debug)]
pub(crate) struct ReadersLock {
    path: PathBuf,
    file: File,
}

const READERS: &str = "readers";

impl ReadersLock {
    /// A reader's hold on the repository in `root`: a shared lock, taken
    /// before its index is brought up to date, so a writer never deletes
    /// what this reader's index still lists. `None` when the file is
    /// absent and cannot be made (a repository on read-only media, with
    /// no writer to delete anything).
    pub(crate) fn share(root: &Path) -> Result<Option<Self>> {
        let path = root.join(READERS);
        let file = match open_own_file(&path)? {
            Some(file) => file,
            None => match Self::create(root) {
                Ok(lock) => lock.file,
                Err(_) => return Ok(None),
            },
        };
        file.lock_shared().at(&path)?;
        Ok(Some(ReadersLock { path, file }))
    }

    /// A writer's handle on the file, created when absent.
    pub(crate) fn create(root: &Path) -> Result<Self> {
        let path = root.join(READERS);
        let file = open_lock_file(&path)?;
        Ok(ReadersLock { path, file })
    }

    /// Runs `delete` holding the exclusive lock if no reader is open, and
    /// returns what it returned; `None`, without running it, when a
    /// reader is open.
    pub(crate) fn when_alone<T>(&self, delete: impl FnOnce() -> T) -> Option<T> {
        match self.file.try_lock() {
            Ok(()) => {
                let out = delete();
                let _ = self.file.unlock();
                Some(out)
            }
            Err(_) => None,
        }
    }

    /// Like [`when_alone`](Self::when_alone), but waits for the readers
    /// to close.
    pub(crate) fn after_readers<T>(&self, delete: impl FnOnce() -> T) -> Result<T> {
        self.file.lock().at(&self.path)?;
        let out = delete();
        let _ = self.file.unlock();
        Ok(out)
    }
}
