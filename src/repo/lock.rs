//! The writer lock: one process writes a repository at a time.
//!
//! The lock is a file `lock` created with `O_EXCL`, holding the holder's pid,
//! host and start time as JSON. A lock whose holder is a process on this host
//! that no longer exists is stale and is taken over. Readers never lock: they
//! open the index read-only and see the state as of their opening.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

impl WriteLock {
    /// Takes the lock in `root`, or says who holds it.
    pub fn acquire(root: &Path) -> Result<Self> {
        let path = root.join("lock");
        let me = LockHolder {
            pid: std::process::id(),
            host: hostname(),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        // Two rounds: the second after removing a stale lock.
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let written = f
                        .write_all(&serde_json::to_vec(&me).expect("serialises"))
                        .and_then(|()| f.sync_all());
                    if let Err(e) = written {
                        // A half-written lock (a full disk, say) would
                        // refuse every later writer: it is not a lock.
                        let _ = fs::remove_file(&path);
                        return Err(Error::io(&path, e));
                    }
                    return Ok(WriteLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<LockHolder>(&b).ok());
                    match holder {
                        Some(h)
                            if h.host == me.host
                                && !Path::new(&format!("/proc/{}", h.pid)).exists() =>
                        {
                            // The holder died without releasing: take over.
                            fs::remove_file(&path).at(&path)?;
                        }
                        Some(h) => {
                            return Err(Error::Locked {
                                path,
                                holder: h.to_string(),
                            })
                        }
                        None => {
                            return Err(Error::Locked {
                                path,
                                holder: "an unknown process (unreadable lock file)".into(),
                            })
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Locked {
            path,
            holder: "another process that took it over first".into(),
        })
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
