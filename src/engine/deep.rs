//! Trees deeper than `PATH_MAX` (4096 bytes), on both sides of a
//! repository: a folder whose path passes [`LONG_PATH`] is opened, and what
//! lies below it is reached through that handle (`/proc/self/fd/N/rest`),
//! so no path handed to the kernel comes near the limit. Ingest walks
//! through such handles; restore keeps them while it writes.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Paths longer than this are reached through the handle of a folder
/// above them.
pub(crate) const LONG_PATH: usize = 2048;

/// Opens the folder at `path` to reach what is below it: never through a
/// symlink swapped in since it was listed.
pub(crate) fn open_folder(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// The short path that reaches the folder `handle` holds open.
pub(crate) fn through(handle: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}
