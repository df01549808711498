//! The I/O seam: a narrow trait between the engine and wherever bytes live.
//!
//! Everything the engine writes outside RocksDB (packs, config, snapshot
//! records, the Bloom filter) goes through a [`Backend`]: a flat namespace of
//! keys (`/`-separated relative paths) holding immutable-once-written byte
//! strings. A shard is one backend; the repository's own small files are
//! another. Keeping the surface this small is what lets a shard be a local
//! directory, an object-store prefix, or a fault-injecting wrapper in tests.

use crate::error::{Error, Result};

/// Where bytes live. Implementations must be safe to share between threads.
pub trait Backend: Send + Sync {
    /// A human-readable location for messages (a path or a URL).
    fn location(&self) -> String;

    /// Stores `data` under `key` durably and atomically: after `Ok`, the
    /// whole value survives a crash; after a crash before `Ok`, either the
    /// old value (or nothing) is seen, never a torn one. Replaces an existing
    /// value.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;

    /// The whole value under `key`; `Error::Io` with `NotFound` when absent.
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// `len` bytes starting at `offset`; an error if the value is shorter.
    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// The value's length in bytes.
    fn size(&self, key: &str) -> Result<u64>;

    /// Every key that starts with `prefix` (a folder such as `"snapshots/"`,
    /// or `""` for all), in no particular order. Temporary files of
    /// unfinished puts are not listed.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Removes `key`; removing an absent key is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// Removes what interrupted `put`s left behind and returns the bytes
    /// freed (with `dry_run`, only counts them). Only safe while no `put`
    /// runs, that is under the writer lock. Backends whose puts are atomic
    /// leave nothing and keep this default.
    fn sweep_unfinished(&self, _dry_run: bool) -> Result<u64> {
        Ok(0)
    }
}

/// True when `err` says the thing asked for does not exist.
pub fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}
