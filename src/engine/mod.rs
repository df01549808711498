//! The engine: what every verb shares. [`Engine`] wires the parts
//! together (config, index, Bloom filter, ring, shards, the home and its
//! locks, this machine's cache) and opens them as named steps; the verbs
//! in `ops/` are free functions over it, and
//! [`Repository`](crate::Repository) is the handle a program holds.

pub(crate) mod attrs;
mod blob;
pub(crate) mod cache;
pub(crate) mod deep;
pub mod families;
pub(crate) mod fetch;
pub(crate) mod history;
pub(crate) mod home;
pub mod keys;
pub(crate) mod lock;
#[cfg(feature = "s3")]
pub(crate) mod objlock;
pub(crate) mod open;
pub(crate) mod paths;
pub(crate) mod snapshots;
pub(crate) mod walk;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use history::{describe as describe_evidence, Evidence, HistoryReport};
pub use lock::LockHolder;

use crate::bloom::Bloom;
use crate::catalog::segment;
use crate::catalog::{Index, PackInfo, Retired};
use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::format::filecache::FileCache;
use crate::format::record;
use crate::format::snapshot::{SnapshotId, SnapshotRecord};
use crate::id::ChunkId;
use crate::ring::{Ring, ShardId};
use crate::store::read_entries;
use crate::store::{Fs, OsFs};
use crate::store::{MetaStore, PackEntry, PackId, PackStore};
pub use crate::Mode;
use cache::CacheSlot;
use home::Hold;
use rayon::prelude::*;

/// Receives progress from long operations. All methods default to nothing.
pub trait Progress: Sync {
    /// The total bytes the operation expects to handle, once known.
    fn set_total(&self, _bytes: u64) {}
    /// `bytes` more to handle, found while the work is under way (an
    /// ingest finds its input as it walks it).
    fn add_total(&self, _bytes: u64) {}
    /// `bytes` more were handled.
    fn advance(&self, _bytes: u64) {}
    /// A non-fatal problem (an unreadable file that is skipped, say).
    fn warn(&self, _message: &str) {}
}

/// A [`Progress`] that ignores everything.
pub struct Quiet;
impl Progress for Quiet {}

/// How to open a repository.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Read only: no lock, no writes to the home; works beside a writer.
    pub read_only: bool,
    /// A writer among others (for `ingest` and `put`): takes the lock
    /// shared, so that many processes on many machines store at once.
    /// Maintenance (gc, forget, rebalance, shard changes, repair) needs
    /// the lock alone, which is the default.
    pub shared: bool,
    /// This machine's cache folder, which holds each repository's index,
    /// Bloom filter and file cache (all made again from the home when
    /// lost); `None` means `dedup` in the user's cache folder.
    pub cache_dir: Option<PathBuf>,
    /// The file system through which the repository's folder and its
    /// local shards are reached; `None` is the real one. Crash tests pass
    /// an in-memory [`MemFs`](crate::store::MemFs) or a fault-injecting
    /// [`FaultyFs`](crate::store::FaultyFs). The cache and the locks
    /// always live on the real disk (the locks at the repository's path).
    pub fs: Option<Arc<dyn Fs>>,
    /// The password of an encrypted repository (for `init`: of its first
    /// key). An unencrypted repository refuses one
    /// ([`Error::PasswordForPlain`]): whoever gives a password expects
    /// encryption, and a plain config may have been put in place of a
    /// sealed one.
    pub password: Option<keys::Password>,
    /// Argon2id's costs for key files made through this handle (`init`,
    /// `key add`, `key passwd`); `None`: tuned to about half a second here.
    pub key_params: Option<crate::crypto::KdfParams>,
}

impl OpenOptions {
    pub(crate) fn file_system(&self) -> Arc<dyn Fs> {
        self.fs.clone().unwrap_or_else(OsFs::shared)
    }

    pub(crate) fn cache_root(&self) -> Result<PathBuf> {
        match &self.cache_dir {
            Some(dir) => Ok(dir.clone()),
            None => CacheSlot::default_root(),
        }
    }
}

/// One shard as opened.
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) backend: Arc<dyn PackStore>,
}

/// An open repository.
pub struct Engine {
    pub(crate) root: PathBuf,
    pub(crate) config: Config,
    /// The file system local folders are reached through.
    pub(crate) fs: Arc<dyn Fs>,
    /// The repository's own small files: config, snapshot records, blob
    /// markers, index segments.
    pub(crate) files: Arc<dyn MetaStore>,
    pub(crate) index: Index,
    pub(crate) shards: Vec<Shard>,
    pub(crate) ring: Ring,
    pub(crate) bloom: RwLock<Bloom>,
    /// This machine's file cache for this repository (writers only).
    pub(crate) file_cache: Option<FileCache>,
    /// The cache slot the index, the filter and the file cache live in:
    /// after them, so that it is released only once they are closed.
    pub(crate) cache: CacheSlot,
    /// The locks held on the home while open: a writer's, or a reader's
    /// (writers delete pack files only while no reader is open).
    pub(crate) hold: Hold,
    /// Within this handle: storing (ingest, put) shares it, reclaiming
    /// (gc, rebalance, forget) takes it alone, so one handle never
    /// collects what its own ingest is in the middle of storing.
    pub(crate) work: RwLock<()>,
    /// One [`refresh`](Self::refresh) at a time.
    pub(crate) refreshing: std::sync::Mutex<()>,
    /// What stored bytes are sealed with (nothing when unencrypted).
    pub(crate) crypt: crate::crypto::Crypt,
    /// The home's files as stored (`files` is the view that seals and
    /// opens records and segments): for the config and the key files.
    pub(crate) raw_files: Arc<dyn MetaStore>,
    /// The key file this handle was opened with (encrypted repositories).
    pub(crate) key_id: Option<String>,
    /// Tree packs read whole from an object store, kept for every later
    /// walk and tree read of this handle ([`fetch`]).
    pub(crate) tree_packs: fetch::Kept,
    /// Record files of `snapshots/` the index lacks that could not be read
    /// or decoded when last listed: left out of every listing, named by
    /// every command, and a reason for `gc` to delete nothing.
    pub(crate) unreadable: std::sync::Mutex<Vec<UnreadableRecord>>,
    /// What this machine found the store lost or put back, not yet dealt
    /// with (see [`history`]).
    pub(crate) evidence: std::sync::Mutex<Vec<Evidence>>,
}

/// A snapshot record file in the home that could not be read or decoded.
/// Its snapshot is missing from every listing until it reads again, and
/// `gc` deletes nothing meanwhile (its chunks would look unreachable).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableRecord {
    /// The snapshot its name gives.
    pub id: SnapshotId,
    /// The file, as the home names it (`snapshots/<id>`).
    pub key: String,
    /// Why it could not be read.
    pub reason: String,
}

impl std::fmt::Display for UnreadableRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot record {} cannot be read ({}); put the file back from a copy, \
             or drop that snapshot with `dedup forget {}`",
            self.key, self.reason, self.id
        )
    }
}

/// The largest blob [`Repository::put`](crate::Repository::put) stores (a blob is one
/// object, held in memory whole).
pub const MAX_BLOB: u64 = 1 << 30;

pub(crate) const CONFIG: &str = "config";
pub(crate) const SNAPSHOTS: &str = "snapshots";

impl Engine {
    /// Shares the handle with other stores; waits for any reclaiming.
    pub(crate) fn storing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.work
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Has the handle alone: waits for every ingest and put to finish.
    pub(crate) fn reclaiming(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.work
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `delete` (of pack files the index no longer lists) unless a
    /// reader is open, whose older view of the index may still list them;
    /// returns whether it ran. Files left are unindexed, and the next `gc`
    /// without readers removes them.
    pub(crate) fn delete_unless_read(&self, delete: impl FnOnce() -> Result<()>) -> Result<bool> {
        Ok(match self.hold.when_alone(delete)? {
            Some(deleted) => {
                deleted?;
                true
            }
            None => false,
        })
    }

    /// Refuses to store while a shard that receives new chunks (weight
    /// above 0) cannot be used: its share of them would have nowhere to go.
    pub(crate) fn check_writable(&self) -> Result<()> {
        let receiving = self.config.shards.iter().filter(|s| s.weight > 0);
        self.refuse_unavailable(receiving.map(|s| s.id), |shard| {
            format!(" (to store new data on the other shards meanwhile: `dedup shard set-weight {shard} 0`)")
        })
    }

    /// Refuses maintenance (`what`: gc, rebalance) while any shard cannot be
    /// used: it would judge packs it cannot see.
    pub(crate) fn check_every_shard(&self, what: &str) -> Result<()> {
        self.refuse_unavailable(self.shards.iter().map(|s| s.id), |shard| {
            format!("; {what} needs every shard (a shard that is gone for good: `dedup shard remove {shard} --lost`)")
        })
    }

    /// The first of `shards` that cannot be used, as an error whose reason
    /// ends with `hint`.
    pub(crate) fn refuse_unavailable(
        &self,
        shards: impl Iterator<Item = ShardId>,
        hint: impl Fn(ShardId) -> String,
    ) -> Result<()> {
        for id in shards {
            if let Some(u) = self.shard(id)?.backend.unavailable() {
                return Err(Error::ShardUnavailable {
                    shard: u.shard,
                    location: u.location.clone(),
                    reason: format!("{}{}", u.reason, hint(u.shard)),
                });
            }
        }
        Ok(())
    }

    /// True for a writer, false for a reader.
    pub(crate) fn is_writer(&self) -> bool {
        self.hold.is_writer()
    }

    /// Refuses `what` (a maintenance command) unless this handle holds the
    /// lock alone.
    pub(crate) fn check_alone(&self, what: &str) -> Result<()> {
        if self.hold.is_exclusive() {
            return Ok(());
        }
        Err(Error::invalid(
            "repository",
            format!("{what} needs the repository's lock alone; open it for maintenance, not shared or read-only"),
        ))
    }

    /// Brings the index up to date with what other processes committed
    /// since this handle opened (their segments and snapshot records);
    /// a writer's Bloom filter follows.
    pub(crate) fn refresh(&self) -> Result<()> {
        let _one = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let records = self.files.list(SnapshotRecord::FOLDER)?;
        let names = segment::names(self.files.as_ref())?;
        let mut bloom = self.bloom.write().expect("bloom lock");
        let mut insert = |id: &ChunkId| bloom.insert(id);
        self.index
            .catch_up_with(self.files.as_ref(), &names, &mut insert)?;
        drop(bloom);
        self.adopt_snapshot_files(&records, Vec::new())
    }

    /// Commits a maintenance batch (one that drops entries or retires
    /// packs, which every writer applies) once this handle is known to
    /// still hold its lock, then deletes the files it retired, unless a
    /// reader is open, within that same check; returns how many files were
    /// kept for a later `gc`.
    pub(crate) fn commit_alone(&self, batch: crate::catalog::Batch<'_>) -> Result<u64> {
        self.hold.check_alive()?;
        let retired = self.index.commit(batch)?;
        self.release(retired)
    }

    /// Deletes the files of packs a commit retired, unless a reader is
    /// open; returns how many were kept for a later `gc`.
    pub(crate) fn release(&self, retired: Retired) -> Result<u64> {
        let n = retired.len() as u64;
        if n == 0 {
            return Ok(0);
        }
        let deleted = self.delete_unless_read(|| retired.delete())?;
        Ok(if deleted { 0 } else { n })
    }

    /// The folders an ingest must not store, by (device, inode): the
    /// repository's own, its local shards' and this machine's cache's
    /// (`dedup ingest ~` would otherwise store the repository into itself).
    pub(crate) fn own_folders(&self) -> std::collections::HashSet<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let local_shards = self
            .config
            .shards
            .iter()
            .filter(|s| !s.is_object_store())
            .map(|s| self.root.join(&s.path));
        std::iter::once(self.root.clone())
            .chain(local_shards)
            .chain(self.cache.dir().parent().map(Path::to_path_buf))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect()
    }

    /// The work of [`Repository::root`](crate::Repository::root).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The work of [`Repository::config`](crate::Repository::config).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Refills the filter from every id in the index.
    pub(crate) fn rebuild_bloom(&self) -> Result<()> {
        *self.bloom.write().expect("bloom lock") = open::rebuilt_bloom(&self.index)?;
        Ok(())
    }

    /// Writes the filter beside the index, stamped with the generation it
    /// reflects (writers insert ids before their commit, so every commit
    /// counted is in it).
    pub(crate) fn save_bloom(&self) -> Result<()> {
        let stamp = self.index.generation();
        let bytes = self.bloom.read().expect("bloom lock").encode(stamp);
        CacheSlot::replace(&self.cache.bloom(), &bytes)
    }

    pub(crate) fn shard(&self, id: ShardId) -> Result<&Shard> {
        self.shards.iter().find(|s| s.id == id).ok_or_else(|| {
            Error::corrupt(
                "index",
                id.to_string(),
                "names a shard the config does not list",
            )
        })
    }

    pub(crate) fn pack_shard(&self, pack: &PackId) -> Result<&Shard> {
        match self.index.pack_shard(pack) {
            Some(s) => self.shard(s),
            None => Err(Error::corrupt(
                "index",
                pack.to_hex(),
                "chunk points at a pack the index does not list",
            )),
        }
    }

    /// The work of [`Repository::read_object`](crate::Repository::read_object).
    pub fn read_object(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let loc = self.index.chunk(id)?.ok_or(Error::MissingChunk(*id))?;
        let shard = self.pack_shard(&loc.pack)?;
        let range = loc.entry.data_range();
        let stored =
            shard
                .backend
                .get_range(&loc.pack.key(), range.start, loc.entry.stored_len as usize)?;
        record::open(&loc.pack, &loc.entry, &stored, &self.crypt)
    }

    /// What this repository seals stored bytes with.
    pub(crate) fn crypt(&self) -> &crate::crypto::Crypt {
        &self.crypt
    }

    /// What the index knows about every pack.
    pub(crate) fn pack_infos(&self) -> Result<Vec<(PackId, PackInfo)>> {
        self.index.packs()
    }

    /// True when some packs (or the home) live on an object store, where
    /// every read is a network round trip.
    pub(crate) fn packs_are_remote(&self) -> bool {
        home::is_url(&self.root)
            || self
                .config
                .shards
                .iter()
                .any(crate::format::config::ShardConfig::is_object_store)
    }

    /// A pool for I/O-bound work when some shard is an object store: there
    /// each read mostly waits on the network, so many more reads than
    /// cores should be in flight. `None` (use the global pool) otherwise.
    pub(crate) fn io_pool(&self) -> Option<rayon::ThreadPool> {
        if !self.packs_are_remote() {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(REMOTE_READERS)
            .thread_name(|i| format!("dedup-io-{i}"))
            .build()
            .ok()
    }

    /// Every pack's entries, read from its trailer, in the order of
    /// `packs`. Trailers are read ahead in parallel, a batch at a time, so
    /// that walking the packs of an object store is not one round trip
    /// after another.
    pub(crate) fn trailers<'a>(
        &'a self,
        packs: &'a [(PackId, PackInfo)],
    ) -> impl Iterator<Item = (&'a PackId, &'a PackInfo, Result<Vec<PackEntry>>)> + 'a {
        let pool = self.io_pool();
        packs.chunks(TRAILER_BATCH).flat_map(move |batch| {
            let read = || -> Vec<Result<Vec<PackEntry>>> {
                batch
                    .par_iter()
                    .map(|(pack, info)| {
                        let shard = self.shard(info.shard)?;
                        read_entries(
                            shard.backend.as_ref(),
                            &pack.key(),
                            Some(info.size),
                            &self.crypt,
                        )
                    })
                    .collect()
            };
            let entries = in_pool(pool.as_ref(), read);
            batch
                .iter()
                .zip(entries)
                .map(|((pack, info), entries)| (pack, info, entries))
        })
    }
}

/// Reads in flight at once on object stores (see [`Repository::io_pool`]).
pub(crate) const REMOTE_READERS: usize = 32;

/// Pack trailers read ahead at a time by [`Repository::trailers`].
const TRAILER_BATCH: usize = 256;

/// Runs `f` on `pool` when there is one (its parallel iterators then use
/// that pool's threads), else on the global pool.
pub(crate) fn in_pool<T: Send>(
    pool: Option<&rayon::ThreadPool>,
    f: impl FnOnce() -> T + Send,
) -> T {
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Best effort, so the next open has no log to replay: a crash
        // skips this, and is still safe.
        let _ = self.index.flush();
    }
}

/// What a scoped thread returned; its panic goes on in this thread.
pub(crate) fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::home::Home;
    use crate::engine::open::{config_head, load_bloom, open_cache_index};
    use crate::format::config::InitOptions;

    fn repo_id(root: &Path) -> String {
        let home = Home::open(root, &OsFs::shared(), false).unwrap();
        config_head(home.files().as_ref(), root)
            .unwrap()
            .1
            .repository_id
    }

    #[test]
    fn the_saved_filter_is_used_and_caught_up_not_rebuilt_even_with_copies_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let cache = dir.path().join("cache");
        let opts = |shared| OpenOptions {
            shared,
            cache_dir: Some(cache.clone()),
            ..Default::default()
        };
        drop(Engine::init_with(&root, &InitOptions::default(), &opts(false)).unwrap());
        // Two writers at once (two cache slots) store the same blob: two
        // copies, which pack summaries count and the index does not.
        let (one, two) = (
            Engine::open_with(&root, &opts(true)).unwrap(),
            Engine::open_with(&root, &opts(true)).unwrap(),
        );
        one.put(b"the same bytes").unwrap();
        two.put(b"the same bytes").unwrap();
        drop((one, two));
        let packs = |r: &Engine| r.index.packs().unwrap().len();
        let repo = Engine::open_with(&root, &opts(false)).unwrap();
        assert_eq!(packs(&repo), 2, "both copies are there");
        repo.put(b"something new").unwrap();
        drop(repo);
        // The saved filter is current: used as it is, not rebuilt.
        let slot = CacheSlot::take(&cache, &repo_id(&root)).unwrap();
        let home = Home::open(&root, &OsFs::shared(), false).unwrap();
        let fs = OsFs::shared();
        let (index, _) = open_cache_index(&home, &home.files(), &slot, &fs, true, false).unwrap();
        assert!(
            load_bloom(&slot, &index).unwrap().1,
            "the saved filter was current"
        );
        drop(index);
        // Another writer (on another slot, this one being held) commits:
        // the filter saved here stays usable, and catching up adds the new
        // ids to it instead of rebuilding it.
        let other = Engine::open_with(&root, &opts(true)).unwrap();
        other.put(b"from elsewhere").unwrap();
        drop(other);
        let (index, names) =
            open_cache_index(&home, &home.files(), &slot, &fs, true, false).unwrap();
        let (mut bloom, current) = load_bloom(&slot, &index).unwrap();
        assert!(current, "current as of the segments it had applied");
        let fresh = ChunkId::of(b"from elsewhere");
        assert!(!bloom.may_contain(&fresh));
        index
            .catch_up_with(home.files().as_ref(), &names, &mut |id| bloom.insert(id))
            .unwrap();
        assert!(bloom.may_contain(&fresh));
        assert!(index.chunk(&fresh).unwrap().is_some());
    }
}
