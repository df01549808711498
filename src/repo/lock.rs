//! The writer lock: one process writes a repository at a time.
//!
//! The lock is an advisory `flock` on the file `lock`, held for as long as
//! the writer runs; the file's JSON (pid, host, start time) only says who
//! holds it. The kernel drops a `flock` when its process dies, however it
//! dies, so there is no stale lock to judge: a lock file nobody holds is
//! simply taken, whatever pid it names (a pid reused after a reboot, a
//! container's), and taking it is atomic.
//!
//! Readers never wait for the writer: they open the index read-only and
//! see the state as of their opening. For that view to stay readable,
//! two things must hold, and the file `readers` provides both:
//!
//! - **No pack the view lists is deleted while the reader runs.** Every
//!   read-only handle holds a shared `flock` on `readers`; a writer
//!   deletes a pack file only while it holds the exclusive one, which it
//!   merely tries for ([`ReadersLock::when_alone`]). When a reader is
//!   open, the files stay, unindexed, and the next `gc` without readers
//!   removes them. A reader that opens during a delete waits for that
//!   delete only.
//! - **The view is not older than the deletes already done.** RocksDB's
//!   read-only open, racing a writer that flushes and drops a log file,
//!   can silently see an older state. So after each commit the writer
//!   writes the index's commit count into `readers` (before any delete
//!   that commit allows), and a reader that finds its view's count below
//!   the one it read there, after taking its lock, opens again.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// A held lock; released on drop.
#[derive(Debug)]
pub struct WriteLock {
    path: PathBuf,
    /// The open file whose `flock` is the lock.
    file: File,
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Tries to take the lock again after its holder released it between our
/// open and our lock (see [`WriteLock::acquire`]).
const ATTEMPTS: usize = 10;

/// Opens (creating, owner only) a file whose `flock` is a lock; its
/// contents are never truncated by opening.
fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at(path)
}

impl WriteLock {
    /// Takes the lock in `root`, or says who holds it.
    pub fn acquire(root: &Path) -> Result<Self> {
        let path = root.join("lock");
        for _ in 0..ATTEMPTS {
            let mut file = open_lock_file(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = Vec::new();
                    let holder = file
                        .read_to_end(&mut text)
                        .ok()
                        .and_then(|_| serde_json::from_slice::<LockHolder>(&text).ok())
                        .map_or_else(|| "another process".to_string(), |h| h.to_string());
                    return Err(Error::Locked { path, holder });
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            // A holder that was releasing may have removed the file after
            // we opened it: then we hold a lock on a name nobody sees.
            let ours = file.metadata().at(&path)?;
            let named = fs::metadata(&path).ok();
            if named.is_none_or(|m| (m.dev(), m.ino()) != (ours.dev(), ours.ino())) {
                continue;
            }
            let me = LockHolder {
                pid: std::process::id(),
                host: hostname(),
                since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            };
            let text = serde_json::to_vec(&me).expect("serialises");
            file.set_len(0)
                .and_then(|()| file.write_all_at(&text, 0))
                .at(&path)?;
            return Ok(WriteLock { path, file });
        }
        Err(Error::Locked {
            path,
            holder: "other processes taking and releasing it".into(),
        })
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Removed while still held, so nobody takes a lock on a file that
        // is going away; closing the file then releases the lock.
        let _ = fs::remove_file(&self.path);
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
    /// before the index is opened, so a writer never deletes what this
    /// reader's view of the index still lists. `None` when the file is
    /// absent and cannot be made (a repository on read-only media, with
    /// no writer to delete anything).
    pub(crate) fn share(root: &Path) -> Result<Option<Self>> {
        let path = root.join(READERS);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match Self::create(root) {
                Ok(lock) => lock.file,
                Err(_) => return Ok(None),
            },
            Err(e) => return Err(Error::io(&path, e)),
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

    /// The commit count the writer last published (0 if none): a view of
    /// the index opened after this lock was taken has at least as many.
    pub(crate) fn published(&self) -> u64 {
        let mut count = [0u8; 8];
        match self.file.read_exact_at(&mut count, 0) {
            Ok(()) => u64::from_le_bytes(count),
            Err(_) => 0,
        }
    }

    /// Publishes the index's commit count; best effort (a count that is
    /// too low only weakens the check, and the next commit writes again).
    pub(crate) fn publish(&self, commits: u64) {
        let _ = self.file.write_all_at(&commits.to_le_bytes(), 0);
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
