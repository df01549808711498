//! The writer lock: one process writes a repository at a time.
//!
//! The lock is an advisory `flock` on the file `lock`, held for as long as
//! the writer runs; the file's JSON (pid, host, start time) only says who
//! holds it. The kernel drops a `flock` when its process dies, however it
//! dies, so there is no stale lock to judge: a lock file nobody holds is
//! simply taken, whatever pid it names (a pid reused after a reboot, a
//! container's), and taking it is atomic. Readers never lock: they open
//! the index read-only and see the state as of their opening.

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

impl WriteLock {
    /// Takes the lock in `root`, or says who holds it.
    pub fn acquire(root: &Path) -> Result<Self> {
        let path = root.join("lock");
        for _ in 0..ATTEMPTS {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .at(&path)?;
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
