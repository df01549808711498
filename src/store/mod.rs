//! Where bytes live: the two stores the engine writes through, their
//! implementations on local folders and object stores, and the pack and
//! record formats. Deciding what is new is not this module's job (see
//! `repo`).
//!
//! The seam is two traits, one per contract:
//!
//! - [`PackStore`]: objects created once, whole, and never replaced
//!   (packs). On an object store a create-only PUT; on a folder a write to
//!   a temporary file, fsync, rename, fsync the folder.
//! - [`MetaStore`]: a few small files replaced whole (config, snapshot
//!   records, blob markers, the Bloom filter; later locks and index
//!   segments). On an object store a plain PUT; on a folder the same
//!   durable sequence, renaming over the old file.
//!
//! Both are implemented by [`LocalStore`] (over any [`Fs`]: the real one,
//! the in-memory [`MemFs`] of crash tests, the fault-injecting
//! [`FaultyFs`]) and, with the `s3` feature, by
//! [`object::ObjectStoreBackend`].

pub mod faults;
pub mod fs;
pub mod local;
pub mod memfs;
#[cfg(feature = "s3")]
pub mod object;
pub mod shard;

pub use crate::format::pack::{PackBuilder, PackEntry, PackId};
pub use faults::FaultPlan;
pub use fs::{FaultyFs, FileKind, Fs, OsFs};
pub use local::LocalStore;
pub use memfs::MemFs;
pub use shard::{ShardMarker, Unavailable};

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::config::ShardConfig;
use crate::format::pack;
use crate::Mode;

/// Where packs live: objects written once, whole, and never changed.
/// Keys are `/`-separated relative paths. Implementations must be safe to
/// share between threads.
pub trait PackStore: Send + Sync {
    /// A human-readable location for messages (a path or a URL).
    fn location(&self) -> String;

    /// Creates `key` holding `data`, durably and atomically: after `Ok`,
    /// the whole object survives a crash; after a crash before `Ok`,
    /// nothing is there, or an unfinished leftover that
    /// [`sweep_unfinished`](Self::sweep_unfinished) removes. A key that
    /// exists is an error, never replaced.
    fn create(&self, key: &str, data: &[u8]) -> Result<()>;

    /// The whole object; `Error::Io` with `NotFound` when absent.
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// `len` bytes starting at `offset`; an error if the object is shorter.
    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// The object's length in bytes.
    fn size(&self, key: &str) -> Result<u64>;

    /// Every key that starts with `prefix` (`""` for all), in no
    /// particular order. Unfinished writes are not listed.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Removes `key`; removing an absent key is not an error. The removal
    /// need not survive a crash: a pack that comes back is unindexed, and
    /// the next `gc` removes it.
    fn delete(&self, key: &str) -> Result<()>;

    /// Removes what interrupted `create`s left behind and returns the
    /// bytes freed (a dry run only counts them). Only safe while no
    /// `create` runs, that is under the writer lock. Stores whose creates
    /// are atomic leave nothing and keep this default.
    fn sweep_unfinished(&self, _mode: Mode) -> Result<u64> {
        Ok(0)
    }

    /// The stand-in this store is when its shard cannot be used at all
    /// (see [`shard::Unavailable`]); `None` for a store that may work.
    fn unavailable(&self) -> Option<&Unavailable> {
        None
    }
}

/// Where a repository keeps its small, replaceable files. Keys are
/// `/`-separated relative paths.
pub trait MetaStore: Send + Sync {
    /// A human-readable location for messages (a path or a URL).
    fn location(&self) -> String;

    /// Stores `data` under `key` durably and atomically, replacing what
    /// was there: after a crash, the old value (or nothing) or the new
    /// one, never a torn one.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;

    /// The whole value; `Error::Io` with `NotFound` when absent.
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// `len` bytes of the value from `offset` (one ranged GET on an object
    /// store); an error when the value is shorter. This default reads the
    /// whole value.
    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        range_of(
            &self.get(key)?,
            offset,
            len,
            &format!("{}/{key}", self.location()),
        )
    }

    /// Stores `data` under `key`, as [`put`](Self::put) does, only if
    /// nothing is there: true when this call wrote it, false when the key
    /// was taken (what is there stays). An object store refuses in the
    /// same request (`If-None-Match: *`); a folder links the written file
    /// to its name, which fails if one is there (`Fs::rename_new`): of
    /// many processes creating one key at once, exactly one writes it.
    fn create_if_absent(&self, key: &str, data: &[u8]) -> Result<bool>;

    /// Every key that starts with `prefix`, in no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// [`list`](Self::list), each key with when the store last wrote it,
    /// by the store's own clock (an object's `Last-Modified`, a file's
    /// modification time): ages are only ever compared with another of
    /// its times, never with this machine's clock.
    fn written(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>>;

    /// Removes `key`, durably; removing an absent key is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// Removes what interrupted `put`s left in the folders `dirs` (`""`
    /// for the root); only safe under the writer lock. Stores whose puts
    /// are atomic leave nothing and keep this default.
    fn sweep_unfinished(&self, _dirs: &[&str]) -> Result<u64> {
        Ok(0)
    }
}

/// `len` bytes of `all` (the value at `location`) from `offset`; an
/// error when it is shorter.
pub(crate) fn range_of(all: &[u8], offset: u64, len: usize, location: &str) -> Result<Vec<u8>> {
    let range = usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .filter(|r| r.end <= all.len());
    match range {
        Some(range) => Ok(all[range].to_vec()),
        None => Err(Error::io(
            location,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("asked for {len} bytes at {offset} of {}", all.len()),
            ),
        )),
    }
}

/// The values of `keys` in `store`, in their order, up to `at_once`
/// fetched at a time (on an object store each is a round trip).
pub fn get_many<K: AsRef<str> + Sync>(
    store: &dyn MetaStore,
    keys: &[K],
    at_once: usize,
) -> Vec<Result<Vec<u8>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};
    if keys.len() <= 1 {
        return keys.iter().map(|k| store.get(k.as_ref())).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<Vec<u8>>>>> =
        keys.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..at_once.clamp(1, keys.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else { return };
                let got = store.get(key.as_ref());
                *slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(got);
            });
        }
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .expect("every slot is filled")
        })
        .collect()
}

/// True when `err` says the thing asked for does not exist.
pub fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Refuses a key that could leave a store's root: keys come from the
/// engine, but no store trusts every caller.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.starts_with('/') || key.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(Error::invalid("storage key", format!("{key:?}")));
    }
    Ok(())
}

/// Whether opening a local store may create its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// The folder must exist.
    No,
    /// The folder (and its parents) are created, durably, when absent.
    Yes,
}

/// Opens the pack store a shard's config names: a local folder on `fs`
/// (relative paths inside `root`, the home, which may itself be an
/// `s3://` URL), or an `s3://bucket/prefix` location, which is not
/// contacted until used.
pub fn open_shard(
    root: &Path,
    shard: &ShardConfig,
    create: Create,
    fs: &Arc<dyn Fs>,
) -> Result<Arc<dyn PackStore>> {
    // A relative path is inside the home, which may be an object store.
    let inside = root.join(&shard.path);
    let url = if shard.is_object_store() {
        Some(shard.path.as_str())
    } else {
        inside
            .to_str()
            .filter(|p| p.starts_with(crate::format::config::OBJECT_STORE_SCHEME))
    };
    if let Some(url) = url {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(object::ObjectStoreBackend::new(
            url,
            &shard.options,
        )?));
        #[cfg(not(feature = "s3"))]
        return Err(Error::invalid(
            "shard",
            format!("{url} needs a build with the `s3` feature"),
        ));
    }
    if !shard.options.is_empty() {
        return Err(Error::invalid(
            "shard",
            format!(
                "options are for object-store shards, not the folder {}",
                shard.path
            ),
        ));
    }
    Ok(Arc::new(match create {
        Create::Yes => LocalStore::create(fs.clone(), inside)?,
        Create::No => LocalStore::open(fs.clone(), inside)?,
    }))
}

/// Reads a pack's entries from its trailer through `backend`. `known_size`
/// is the pack's length when the index knows it: then one ranged read
/// usually suffices, which matters on an object store, where each request
/// is a round trip. A pack whose real length differs fails to read or to
/// decode, as a damaged one should.
#[cfg(feature = "engine")]
pub fn read_entries(
    backend: &dyn PackStore,
    key: &str,
    known_size: Option<u64>,
    crypt: &crate::crypto::Crypt,
) -> Result<Vec<PackEntry>> {
    let location = format!("{}/{key}", backend.location());
    let size = match known_size {
        Some(size) => size,
        None => backend.size(key)?,
    };
    if size < (pack::PACK_MAGIC.len() + pack::FOOTER_SIZE) as u64 {
        return Err(Error::corrupt(
            "pack",
            location,
            format!("only {size} bytes long"),
        ));
    }
    let first = size.min(pack::TAIL_GUESS as u64);
    let mut tail = backend.get_range(key, size - first, first as usize)?;
    let tail_len = pack::trailer_len(&tail[tail.len() - pack::FOOTER_SIZE..], &location)?;
    if tail_len as u64 > size - pack::PACK_MAGIC.len() as u64 {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            "longer than the pack",
        ));
    }
    if tail_len > tail.len() {
        tail = backend.get_range(key, size - tail_len as u64, tail_len)?;
    }
    pack::parse_opened(&tail[tail.len() - tail_len..], size, &location, crypt)
}
