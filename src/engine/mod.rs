//! The engine: what every verb shares. [`Engine`] wires the parts
//! together (config, index, Bloom filter, ring, shards, the home and its
//! locks, this machine's cache) and opens them as named steps; the verbs
//! in `ops/` are free functions over it, and
//! [`Repository`](crate::Repository) is the handle a program holds.


pub(crate) mod attrs;
pub(crate) mod cache;
pub(crate) mod deep;
pub(crate) mod fetch;
pub(crate) mod history;
pub(crate) mod home;
pub mod keys;
pub(crate) mod lock;
#[cfg(feature = "s3")]
pub(crate) mod objlock;
pub(crate) mod paths;
pub(crate) mod walk;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use history::{describe as describe_evidence, Evidence, HistoryReport};
pub use lock::LockHolder;

use crate::bloom::Bloom;
use crate::catalog::segment;
use crate::catalog::{Access, Index, PackInfo, Retired};
use crate::error::{Error, IoContext, Result};
use crate::format::config::{Config, ConfigHead, InitOptions, ShardConfig};
use crate::format::filecache::FileCache;
use crate::format::record;
use crate::format::record::ObjectKind;
use crate::format::snapshot::{SnapshotFilter, SnapshotId, SnapshotRecord};
use crate::id::ChunkId;
use crate::ring::{Ring, ShardId};
use crate::store::read_entries;
use crate::store::{is_not_found, open_shard, shard, Create, Fs, LocalStore, OsFs};
use crate::store::{MetaStore, PackEntry, PackId, PackStore};
use crate::store::{ShardMarker, Unavailable};
pub use crate::Mode;
use cache::CacheSlot;
use home::{Hold, Home};
use rayon::prelude::*;
use writer::ObjectWriter;

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

/// The largest blob [`Repository::put`] stores (a blob is one object, held
/// in memory whole).
pub const MAX_BLOB: u64 = 1 << 30;

/// Snapshot record files read at once (a fresh cache reads them all).
const RECORD_READERS: usize = 64;

/// How often gc reads the snapshot records that fail before it gives up
/// (and deletes nothing).
const RECORD_TRIES: u32 = 3;

pub(crate) const CONFIG: &str = "config";
pub(crate) const SNAPSHOTS: &str = "snapshots";
/// Where versions before the cache kept the index and the Bloom filter, in
/// the home; a writer moves them out (see [`open_cache_index`]).
const LEGACY_INDEX: &str = "index";
const LEGACY_BLOOM: &str = "bloom";

impl Engine {
    /// The work of [`Repository::init`](crate::Repository::init).
    pub fn init(path: impl AsRef<Path>, opts: &InitOptions) -> Result<Self> {
        Self::init_with(path, opts, &OpenOptions::default())
    }

    /// The work of [`Repository::init_with`](crate::Repository::init_with).
    pub fn init_with(
        path: impl AsRef<Path>,
        opts: &InitOptions,
        open: &OpenOptions,
    ) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        let fs = open.file_system();
        let mut config = Config::new(opts)?;
        if config.encryption.is_none() && open.password.is_some() {
            return Err(Error::PasswordForPlain(root));
        }
        if home::is_url(&root) {
            let home = Home::open(&root, &fs, false)?;
            let keys = home.list_all()?;
            if keys.iter().any(|k| k == CONFIG) {
                return Err(Error::AlreadyExists(root));
            }
            if !keys.is_empty() {
                return Err(Error::invalid(
                    "repository",
                    format!(
                        "{} already holds objects; give an empty prefix",
                        root.display()
                    ),
                ));
            }
        } else {
            match fs.read_dir(&root) {
                Ok(entries) if entries.iter().any(|(name, _)| name == CONFIG) => {
                    return Err(Error::AlreadyExists(root))
                }
                Ok(entries) if !entries.is_empty() => {
                    return Err(Error::invalid(
                        "repository path",
                        format!("{} exists and is not empty", root.display()),
                    ))
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&root, e))
                }
                _ => {}
            }
        }
        // Object stores first: they may refuse (unreachable, bad settings)
        // before anything is created on disk.
        let mut shards: Vec<_> = config.shards.iter().collect();
        shards.sort_by_key(|s| !s.is_object_store());
        for shard in shards {
            check_new_shard(&root, &config.repository_id, shard, &fs)?;
        }
        let home = Home::open(&root, &fs, true)?;
        let raw_files = home.files();
        let crypt = match config.encryption {
            crate::format::config::Encryption::None => crate::crypto::Crypt::none(),
            crate::format::config::Encryption::Repokey => {
                let password = open.password.as_ref().ok_or(Error::NoPassword)?;
                let master = crate::crypto::MasterKey::generate()?;
                let id =
                    keys::add_key_file(raw_files.as_ref(), &master, password, open.key_params)?;
                config.keys = vec![id];
                crate::crypto::Crypt::with(master)
            }
        };
        let files = keys::files_for(raw_files.clone(), &crypt);
        if let Some(folder) = home.folder() {
            // An empty folder for the records, where people expect it.
            LocalStore::create(fs.clone(), folder.join(SNAPSHOTS))?;
            // The locks are `flock`s on the real disk even when the home's
            // files are on another file system (crash tests run them on a
            // `MemFs`).
            std::fs::create_dir_all(folder).at(folder)?;
        }
        // The empty index, as the first full segment: a home without
        // segments has lost them (see `open_cache_index`).
        let empty = segment::Segment {
            full: true,
            ops: vec![segment::Op::Covers(Vec::new())],
        };
        segment::put(files.as_ref(), &segment::full_name(), &empty)?;
        // The config goes last: a folder without one is not a repository, so
        // a crash during init leaves nothing that looks half-made.
        raw_files.put(CONFIG, &config.encode_for(&crypt))?;
        Self::open_with(&root, open)
    }

    /// The work of [`Repository::open`](crate::Repository::open).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// The work of [`Repository::open_read_only`](crate::Repository::open_read_only).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(
            path,
            &OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
    }

    /// The work of [`Repository::read_config`](crate::Repository::read_config).
    pub fn read_config(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Config> {
        let root = path.as_ref();
        let fs = opts.file_system();
        let home = Home::open(root, &fs, false)?;
        let raw_files = home.files();
        let (bytes, head) = config_head(raw_files.as_ref(), root)?;
        let cache_root = opts.cache_root()?;
        check_no_downgrade(&cache_root, root, &head, opts.password.as_ref())?;
        let password = opts.password.as_ref();
        unlock_config(
            raw_files.as_ref(),
            root,
            &bytes,
            &head,
            password,
            &cache_root,
        )
        .map(|(config, _, _)| config)
    }

    /// The work of [`Repository::open_with`](crate::Repository::open_with).
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Self> {
        let root = path.as_ref();
        let read_only = opts.read_only;
        let fs = opts.file_system();
        let home = Home::open(root, &fs, false)?;
        let raw_files = home.files();
        let (config_bytes, head) = config_head(raw_files.as_ref(), root)?;
        if read_only && legacy_index_only(&home)? {
            // Only a writer moves an index from before the cache out of
            // the home; it does at open, taking the lock for the moment.
            drop(Self::open_with(
                root,
                &OpenOptions {
                    read_only: false,
                    ..opts.clone()
                },
            )?);
        }
        let cache_root = opts.cache_root()?;
        check_no_downgrade(&cache_root, root, &head, opts.password.as_ref())?;
        let unlock = || {
            let password = opts.password.as_ref();
            let files = raw_files.as_ref();
            unlock_config(files, root, &config_bytes, &head, password, &cache_root)
        };
        let ((config, crypt, key_id), hold) = unlock_and_hold(&home, opts, unlock)?;
        let files = keys::files_for(raw_files.clone(), &crypt);
        let ring = config.ring().expect("checked by Config::decode");
        let cache = CacheSlot::take(&cache_root, &config.repository_id)?;
        // The records before the segments: a record is written only once
        // its chunks' segments are, so every record listed here has its
        // chunks in the segments listed next.
        let records = files.list(SnapshotRecord::FOLDER)?;
        let (index, names) = open_cache_index(&home, &files, &cache, &fs, !read_only)?;
        // A writer's filter as saved, then brought up to date with the
        // index (without a rebuild when it was current before).
        let mut bloom = if read_only {
            Bloom::new(0)
        } else {
            load_bloom(&cache, &index)?.0
        };
        let mut insert = |id: &ChunkId| bloom.insert(id);
        let mut ignore = |_: &ChunkId| {};
        let added: &mut dyn FnMut(&ChunkId) = if read_only { &mut ignore } else { &mut insert };
        let attach = || attach_shards(root, &config, &fs, !read_only);
        let (attached, records_read) = catch_up_beside(
            &index,
            files.as_ref(),
            &crypt,
            &names,
            added,
            &records,
            attach,
        )?;
        let shards = config
            .shards
            .iter()
            .zip(attached)
            .map(|(s, attached)| Shard {
                id: s.id,
                backend: attached.settle(root, s, &index),
            })
            .collect();
        let repo = Engine {
            root: root.to_path_buf(),
            config,
            fs,
            files,
            index,
            shards,
            ring,
            bloom: RwLock::new(bloom),
            // A cache that cannot be opened only costs re-reading files.
            file_cache: if read_only {
                None
            } else {
                FileCache::open(&cache.files()).ok()
            },
            cache,
            hold,
            work: RwLock::new(()),
            refreshing: std::sync::Mutex::new(()),
            tree_packs: fetch::Kept::default(),
            unreadable: std::sync::Mutex::default(),
            evidence: std::sync::Mutex::default(),
            crypt,
            raw_files,
            key_id,
        };
        if repo.hold.is_exclusive() {
            // What a crash left of the home's own durable writes (config,
            // records, blob markers, segments): a leftover is never read,
            // so failing to remove it is no reason to refuse the writer.
            // Only alone: a shared writer's are another's writes in flight.
            let _ = repo
                .files
                .sweep_unfinished(&["", SNAPSHOTS, "blobs", "segments", "forgotten"]);
            if let Some(old) = home.folder().and_then(FileCache::legacy_dir) {
                let _ = std::fs::remove_dir_all(old);
            }
        }
        repo.adopt_snapshot_files(&records, records_read)?;
        Ok(repo)
    }

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

    /// Snapshot files the index lacks (written by another process since this
    /// cache last saw the home, or by an ingest that crashed before it could
    /// copy them into the index) are complete (their chunks were indexed
    /// first), so they are adopted.
    ///
    /// The other way round, a snapshot the index lists whose record file is
    /// gone leaves the index: no crash makes that (records are written
    /// before they are indexed, and forgotten in the index first), so the
    /// home was put back from an older copy, or the file was removed by
    /// hand, and the home is the truth.
    ///
    /// `keys` lists `snapshots/`, taken before the index caught up; `read`
    /// are record files already read (those the index lacked before).
    ///
    /// What the home lost or got back against what this index saw is
    /// found here too (see [`history`]): a record this index holds that
    /// the home lacks stays, unless a forget's tombstone accounts for it; a
    /// forgotten record that is back is not adopted.
    pub(crate) fn adopt_snapshot_files(
        &self,
        keys: &[String],
        read: Vec<RecordFile>,
    ) -> Result<()> {
        let indexed = snapshot_ids(&self.index)?;
        let on_disk: std::collections::HashSet<SnapshotId> = keys
            .iter()
            .filter_map(|key| SnapshotRecord::id_of_key(key))
            .collect();
        let vanished: Vec<SnapshotId> = indexed.difference(&on_disk).copied().collect();
        // Those read already (and not indexed by the catch-up since), then
        // the rest the index lacks. A record that does not read is not
        // adopted, and must not stop every writer; it is kept aside, for
        // every command to name and for gc to refuse on.
        let mut skip = indexed.clone();
        skip.extend(read.iter().map(|r| r.0));
        let mut adopted = Vec::new();
        let mut unreadable = Vec::new();
        let unindexed = read
            .into_iter()
            .filter(|(id, _, _)| !indexed.contains(id))
            .chain(self.unindexed_records(keys, &skip));
        for (id, key, bytes) in unindexed {
            match bytes {
                Ok(bytes) => adopted.push((id, bytes)),
                Err(e) => unreadable.push(UnreadableRecord {
                    id,
                    key,
                    reason: e.to_string(),
                }),
            }
        }
        unreadable.sort_by(|a, b| a.key.cmp(&b.key));
        *self
            .unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = unreadable;
        let mut found: Vec<Evidence> = self
            .index
            .take_gone()
            .into_iter()
            .map(|name| Evidence::SegmentGone { name })
            .collect();
        if !vanished.is_empty() || !adopted.is_empty() {
            // Each new record's link: the record its writer knew newest.
            let links: Vec<(SnapshotId, SnapshotId)> = adopted
                .iter()
                .filter_map(|(id, bytes)| {
                    let prev = decode_record(&self.crypt, bytes, id).ok()?.prev?;
                    Some((prev, *id))
                })
                .collect();
            let asked = vanished
                .iter()
                .copied()
                .chain(adopted.iter().map(|(id, _)| *id))
                .chain(links.iter().map(|(prev, _)| *prev))
                .collect();
            let tombstones = history::tombstoned(self.files.as_ref(), &asked)?;
            let forgotten = self.index.forgotten()?;
            for id in vanished {
                if tombstones.contains(&id) {
                    self.index.forget_snapshot(&id)?;
                } else {
                    found.push(Evidence::RecordGone { id });
                }
            }
            adopted.retain(|(id, _)| {
                let back = tombstones.contains(id) || forgotten.contains(id);
                if back {
                    found.push(Evidence::RecordBack { id: *id });
                }
                !back
            });
            for (prev, named_by) in links {
                if !on_disk.contains(&prev) && !tombstones.contains(&prev) {
                    found.push(Evidence::EarlierRecordGone { id: prev, named_by });
                }
            }
        }
        // What the home holds again is no longer missing, and a record
        // gone again is no longer back.
        let settled = |e: &Evidence| match e {
            Evidence::RecordGone { id } | Evidence::EarlierRecordGone { id, .. } => {
                on_disk.contains(id)
            }
            Evidence::RecordBack { id } => !on_disk.contains(id),
            Evidence::SegmentGone { .. } => false,
        };
        self.note_evidence(found, settled);
        self.index
            .put_snapshots(adopted.iter().map(|(id, bytes)| (id, &bytes[..])))
    }

    /// Adds `found` to what this machine keeps of the repository's
    /// history (in memory when the cache cannot be written).
    /// What is `settled` is dropped.
    pub(crate) fn note_evidence(&self, found: Vec<Evidence>, settled: impl Fn(&Evidence) -> bool) {
        let root = self.cache.dir().parent().unwrap_or(self.cache.dir());
        let id = &self.config.repository_id;
        // A cache that cannot be written keeps what was found in memory.
        let all = history::record(root, id, found.clone(), &settled)
            .unwrap_or_else(|_| history::merge(self.evidence(), found, &settled));
        *self
            .evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }

    /// Drops what `keep` refuses from what this machine keeps of the
    /// repository's history.
    pub(crate) fn forget_evidence(&self, keep: impl Fn(&Evidence) -> bool) {
        let mut all = self.evidence();
        all.retain(|e| keep(e));
        let root = self.cache.dir().parent().unwrap_or(self.cache.dir());
        let _ = history::save(root, &self.config.repository_id, &all);
        *self
            .evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }

    /// The work of [`Repository::evidence`](crate::Repository::evidence).
    pub fn evidence(&self) -> Vec<Evidence> {
        self.evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The work of [`Repository::unreadable_records`](crate::Repository::unreadable_records).
    pub fn unreadable_records(&self) -> Vec<UnreadableRecord> {
        self.unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Lists `snapshots/` again and reads every record the index lacks, up
    /// to [`RECORD_TRIES`] times while some fail (a store that erred once,
    /// a record written as this runs): what reads is adopted. Fails,
    /// naming the records and the way out, when some still cannot be read:
    /// gc would free the data only they reach.
    pub(crate) fn check_every_record(&self) -> Result<()> {
        for attempt in 1..=RECORD_TRIES {
            let keys = self.files.list(SnapshotRecord::FOLDER)?;
            self.adopt_snapshot_files(&keys, Vec::new())?;
            let unreadable = self.unreadable_records();
            let Some(first) = unreadable.first() else {
                return Ok(());
            };
            if attempt == RECORD_TRIES {
                let more = match unreadable.len() {
                    1 => String::new(),
                    n => format!(" ({} more records cannot be read either)", n - 1),
                };
                return Err(Error::WouldLoseData {
                    command: "gc",
                    reason: format!("{first}{more}"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
        }
        unreachable!("the last attempt returns")
    }

    /// The work of [`Repository::unreadable_record`](crate::Repository::unreadable_record).
    pub fn unreadable_record(&self, spec: &str) -> Option<SnapshotId> {
        let spec = spec.to_ascii_lowercase();
        let came_back = self.evidence().into_iter().filter_map(|e| match e {
            Evidence::RecordBack { id } => Some(id),
            _ => None,
        });
        let mut matches = self
            .unreadable_records()
            .into_iter()
            .map(|r| r.id)
            .chain(came_back)
            .filter(|id| !spec.is_empty() && id.to_hex().starts_with(&spec));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// Of the record files `keys` (a listing of `snapshots/`), those whose
    /// snapshot is not `indexed`, read.
    pub(crate) fn unindexed_records(
        &self,
        keys: &[String],
        indexed: &std::collections::HashSet<SnapshotId>,
    ) -> Vec<RecordFile> {
        read_unindexed_records(self.files.as_ref(), &self.crypt, keys, indexed)
    }

    /// Refills the filter from every id in the index.
    pub(crate) fn rebuild_bloom(&self) -> Result<()> {
        *self.bloom.write().expect("bloom lock") = rebuilt_bloom(&self.index)?;
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

    /// The work of [`Repository::put`](crate::Repository::put).
    pub fn put(&self, data: &[u8]) -> Result<ChunkId> {
        let _storing = self.storing();
        if data.len() as u64 > MAX_BLOB {
            return Err(Error::invalid(
                "blob",
                format!(
                    "{} bytes is more than put takes (1 GiB); store large data with ingest",
                    data.len()
                ),
            ));
        }
        self.check_writable()?;
        let writer = ObjectWriter::new(self);
        let id = writer.store(data, ObjectKind::Data)?;
        writer.finish()?;
        // The marker makes the blob a garbage-collection root; it is written
        // after the blob is indexed, and survives an index rebuild.
        self.hold.check_alive()?;
        self.files.put(&format!("blobs/{id}"), b"")?;
        self.save_bloom()?;
        Ok(id)
    }

    /// The work of [`Repository::get`](crate::Repository::get).
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.read_object(id)
    }

    /// The work of [`Repository::snapshots`](crate::Repository::snapshots).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        let mut out = Vec::new();
        for (id, bytes) in self.index.snapshots()? {
            out.push((id, decode_record(&self.crypt, &bytes, &id)?));
        }
        out.sort_by_key(|(id, r)| (r.time_unix_ns, *id));
        Ok(out)
    }

    /// The work of [`Repository::snapshot`](crate::Repository::snapshot).
    pub fn snapshot(&self, id: &SnapshotId) -> Result<SnapshotRecord> {
        match self.index.snapshot(id)? {
            Some(bytes) => decode_record(&self.crypt, &bytes, id),
            None => Err(Error::UnknownSnapshot(id.to_hex())),
        }
    }

    /// The work of [`Repository::snapshots_matching`](crate::Repository::snapshots_matching).
    pub fn snapshots_matching(
        &self,
        filter: &SnapshotFilter,
    ) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        let mut all = self.snapshots()?;
        all.retain(|(_, r)| filter.matches(r));
        Ok(all)
    }

    /// The work of [`Repository::resolve_snapshot`](crate::Repository::resolve_snapshot).
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, SnapshotRecord)> {
        self.resolve_snapshot_in(spec, &SnapshotFilter::default())
    }

    /// The work of [`Repository::resolve_snapshot_in`](crate::Repository::resolve_snapshot_in).
    pub fn resolve_snapshot_in(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, SnapshotRecord)> {
        let all = self.snapshots()?;
        if spec == "latest" {
            if all.is_empty() {
                return Err(Error::NoSnapshots);
            }
            return all
                .into_iter()
                .rev()
                .find(|(_, r)| filter.matches(r))
                .ok_or_else(|| Error::NoSnapshotMatches(filter.to_string()));
        }
        let spec_lower = spec.to_ascii_lowercase();
        if spec_lower.is_empty() || !spec_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::UnknownSnapshot(spec.to_string()));
        }
        let mut matches = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_lower));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one),
            (Some(_), Some(_)) => Err(Error::AmbiguousSnapshot(spec.to_string())),
            (None, _) => Err(Error::UnknownSnapshot(spec.to_string())),
        }
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

/// A record file: its snapshot, its key, and its bytes if they read and
/// decode (else the error saying why not).
pub(crate) type RecordFile = (SnapshotId, String, Result<Vec<u8>>);

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

/// Opens (creating a folder) a shard that is about to join repository
/// `repository_id`, refuses it if it is not empty, and marks it as this
/// repository's shard. A folder or prefix holding anything but this
/// shard's own marker (left by an earlier, interrupted `shard add`) is
/// refused: its packs would belong to another repository (and `gc` here
/// would delete them as unindexed), and a folder of other files (a disk's
/// root, say) is no place for packs. For an object store this is also
/// the moment its settings are first tried, so a wrong endpoint, bucket or
/// credential is reported now, not in the middle of an ingest.
pub(crate) fn check_new_shard(
    root: &Path,
    repository_id: &str,
    shard: &ShardConfig,
    fs: &Arc<dyn Fs>,
) -> Result<Arc<dyn PackStore>> {
    let backend = open_shard(root, shard, Create::Yes, fs)?;
    let marker = ShardMarker {
        repository_id: repository_id.to_string(),
        shard: shard.id,
    };
    let existing = ShardMarker::read(backend.as_ref())?;
    let others = backend.list("")?.into_iter().any(|k| k != shard::MARKER);
    if others || existing.as_ref().is_some_and(|m| *m != marker) {
        let what = match existing {
            Some(m) if m != marker => format!("is {m}"),
            _ if others && shard.is_object_store() => "already holds objects".to_string(),
            _ => "is not empty".to_string(),
        };
        return Err(Error::invalid(
            "shard",
            format!(
                "{} {what}; give an empty folder or prefix",
                backend.location()
            ),
        ));
    }
    if existing.is_none() {
        marker.write(backend.as_ref())?;
    }
    Ok(backend)
}

/// A shard's store as opened, before the index has a say.
pub(crate) enum Attached {
    /// Usable, or unavailable with the reason.
    Settled(Arc<dyn PackStore>),
    /// No marker and no packs: usable, unless the index has packs on it
    /// (then its disk is likely not mounted).
    Empty(Arc<dyn PackStore>),
}

impl Attached {
    /// The store for `shard`, now that `index` is up to date.
    pub(crate) fn settle(
        self,
        root: &Path,
        shard: &ShardConfig,
        index: &Index,
    ) -> Arc<dyn PackStore> {
        match self {
            Attached::Empty(_) if index.some_pack_on(shard.id).is_some() => unavailable(
                root,
                shard,
                format!(
                    "no `{}` marker and none of its packs: is its disk mounted?",
                    shard::MARKER
                ),
            ),
            Attached::Settled(backend) | Attached::Empty(backend) => backend,
        }
    }
}

/// A stand-in for `shard`, whose every read and write fails with `reason`.
pub(crate) fn unavailable(root: &Path, shard: &ShardConfig, reason: String) -> Arc<dyn PackStore> {
    Arc::new(Unavailable {
        shard: shard.id,
        location: shard.location(root),
        reason,
    })
}

/// Brings `index` up to date with the segments `names`, and meanwhile
/// does what does not depend on it, each a round trip on an object store:
/// `attach` (the shards, their markers checked), and reading the record
/// files of `records` whose snapshots the index lacks so far (a fresh
/// cache lacks them all).
pub(crate) fn catch_up_beside(
    index: &Index,
    files: &dyn MetaStore,
    crypt: &crate::crypto::Crypt,
    names: &[String],
    added: &mut dyn FnMut(&ChunkId),
    records: &[String],
    attach: impl FnOnce() -> Vec<Attached> + Send,
) -> Result<(Vec<Attached>, Vec<RecordFile>)> {
    let indexed_before = snapshot_ids(index)?;
    std::thread::scope(|scope| {
        let attaching = scope.spawn(attach);
        let reading =
            scope.spawn(|| read_unindexed_records(files, crypt, records, &indexed_before));
        let caught_up = index.catch_up_with(files, names, added);
        let (attached, read) = (joined(attaching), joined(reading));
        caught_up.map(|_| (attached, read))
    })
}

/// Every shard of `config` attached ([`attach_shard`]), all at once.
pub(crate) fn attach_shards(
    root: &Path,
    config: &Config,
    fs: &Arc<dyn Fs>,
    writer: bool,
) -> Vec<Attached> {
    std::thread::scope(|scope| {
        let attaching: Vec<_> = config
            .shards
            .iter()
            .map(|s| scope.spawn(move || attach_shard(root, &config.repository_id, s, fs, writer)))
            .collect();
        attaching.into_iter().map(joined).collect()
    })
}

/// What a scoped thread returned; its panic goes on in this thread.
pub(crate) fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Opens a shard of the repository for use, checking that it is the one
/// the config means: its marker must name this repository and shard. What
/// cannot be used is opened as [`Unavailable`], so that the other shards
/// still work. Object stores are not contacted here (their marker was
/// checked when they joined).
///
/// A folder without a marker (a repository from before markers) is taken
/// as the shard when it holds packs (then a `writer` marks it), or when it
/// is empty and the index lists no pack there ([`Attached::settle`]). An
/// empty folder where the index expects packs is a disk that is not
/// mounted.
pub(crate) fn attach_shard(
    root: &Path,
    repository_id: &str,
    shard: &ShardConfig,
    fs: &Arc<dyn Fs>,
    writer: bool,
) -> Attached {
    let unavailable = |reason: String| Attached::Settled(unavailable(root, shard, reason));
    let backend = match open_shard(root, shard, Create::No, fs) {
        Ok(backend) => backend,
        Err(e) if is_not_found(&e) => return unavailable("its folder is missing".into()),
        Err(e) => return unavailable(e.to_string()),
    };
    if shard.is_object_store() {
        return Attached::Settled(backend);
    }
    let expected = ShardMarker {
        repository_id: repository_id.to_string(),
        shard: shard.id,
    };
    match ShardMarker::read(backend.as_ref()) {
        Ok(Some(marker)) if marker == expected => Attached::Settled(backend),
        Ok(Some(marker)) => unavailable(format!("it holds the marker of {marker}")),
        Err(e) => unavailable(e.to_string()),
        Ok(None) => match backend.list("") {
            Err(e) => unavailable(e.to_string()),
            Ok(keys) if keys.iter().any(|k| PackId::from_key(k).is_some()) => {
                if writer {
                    // Best effort: an unmarked shard still works, as before.
                    let _ = expected.write(backend.as_ref());
                }
                Attached::Settled(backend)
            }
            Ok(_) => Attached::Empty(backend),
        },
    }
}

/// The ids of the snapshots `index` lists.
pub(crate) fn snapshot_ids(index: &Index) -> Result<std::collections::HashSet<SnapshotId>> {
    Ok(index.snapshots()?.into_iter().map(|(id, _)| id).collect())
}

/// Of the record files `keys` (a listing of `snapshots/`), those whose
/// snapshot is not `indexed`, read (several at once) and checked.
pub(crate) fn read_unindexed_records(
    files: &dyn MetaStore,
    crypt: &crate::crypto::Crypt,
    keys: &[String],
    indexed: &std::collections::HashSet<SnapshotId>,
) -> Vec<RecordFile> {
    let unindexed: Vec<(SnapshotId, &String)> = keys
        .iter()
        .filter_map(|key| Some((SnapshotRecord::id_of_key(key)?, key)))
        .filter(|(id, _)| !indexed.contains(id))
        .collect();
    let names: Vec<&str> = unindexed.iter().map(|(_, key)| key.as_str()).collect();
    let read = crate::store::get_many(files, &names, RECORD_READERS);
    unindexed
        .into_iter()
        .zip(read)
        .map(|((id, key), bytes)| {
            let bytes = bytes.and_then(|b| decode_record(crypt, &b, &id).map(|_| b));
            (id, key.clone(), bytes)
        })
        .collect()
}

/// Opens the config (`unlock`) and takes what the handle holds on `home`
/// (a reader's hold before its index is brought up to date: what that
/// index lists stays while the reader lives).
pub(crate) fn unlock_and_hold<T: Send>(
    home: &Home,
    opts: &OpenOptions,
    unlock: impl FnOnce() -> Result<T> + Send,
) -> Result<(T, Hold)> {
    let take_hold = || {
        if opts.read_only {
            Hold::reader(home)
        } else {
            Hold::writer(home, opts.shared)
        }
    };
    if home.folder().is_some() {
        // Nothing to overlap in a folder, and a wrong password leaves no
        // lock file behind.
        let unlocked = unlock()?;
        return Ok((unlocked, take_hold()?));
    }
    // In an object store both are round trips: the key files are listed
    // (and one opened) while the lock is taken, which a wrong password
    // then gives back.
    let (unlocked, hold) = std::thread::scope(|scope| {
        let unlocking = scope.spawn(unlock);
        let hold = take_hold();
        (joined(unlocking), hold)
    });
    Ok((unlocked?, hold?))
}

/// A snapshot record's bytes and its id: in an encrypted repository keyed
/// like object ids (HMAC-SHA-256), so that a store reader cannot confirm
/// a record it guessed whole; the plain SHA-256 otherwise.
pub(crate) fn encode_record(
    crypt: &crate::crypto::Crypt,
    record: &SnapshotRecord,
) -> (SnapshotId, Vec<u8>) {
    let (plain, bytes) = record.encode();
    let id = if crypt.is_on() {
        SnapshotId(crypt.id_of(&bytes).0)
    } else {
        plain
    };
    (id, bytes)
}

/// A snapshot record named `id` decoded and checked against its name:
/// keyed ([`encode_record`]) or, for records written before names were
/// keyed, plain.
pub(crate) fn decode_record(
    crypt: &crate::crypto::Crypt,
    bytes: &[u8],
    id: &SnapshotId,
) -> Result<SnapshotRecord> {
    let keyed = crypt.is_on().then(|| SnapshotId(crypt.id_of(bytes).0));
    SnapshotRecord::decode_keyed(bytes, id, keyed)
}

/// The config's bytes and its plain head; `NoRepository` when there is
/// none.
pub(crate) fn config_head(files: &dyn MetaStore, root: &Path) -> Result<(Vec<u8>, ConfigHead)> {
    let bytes = match files.get(CONFIG) {
        Ok(bytes) => bytes,
        Err(e) if is_not_found(&e) => return Err(Error::NoRepository(root.to_path_buf())),
        Err(e) => return Err(e),
    };
    let head = Config::head(&bytes, &root.join(CONFIG))?;
    Ok((bytes, head))
}

/// Refuses a plain config that would have this client store plaintext
/// into a repository that is encrypted: one opened with a `password`
/// (whoever gives one expects encryption), or one this machine's cache
/// (under `cache_root`) has opened encrypted before. Anyone who can write
/// to the store can replace the config with a plain one and delete
/// `keys/`; only a client that knows better can tell. An encrypted one is
/// remembered.
pub(crate) fn check_no_downgrade(
    cache_root: &Path,
    root: &Path,
    head: &ConfigHead,
    password: Option<&keys::Password>,
) -> Result<()> {
    let id = &head.repository_id;
    if !head.encryption.is_none() {
        return CacheSlot::remember_encrypted(cache_root, id);
    }
    if password.is_some() {
        return Err(Error::PasswordForPlain(root.to_path_buf()));
    }
    if CacheSlot::seen_encrypted(cache_root, id)? {
        return Err(Error::corrupt(
            "config",
            root.join(CONFIG).display().to_string(),
            "it says the repository is not encrypted, but this machine has opened it \
             encrypted before: the config was replaced (restore config and keys/ from a copy)",
        ));
    }
    Ok(())
}

/// The config `bytes` (with `head`) opened: the key file `password`
/// opens (encrypted repositories), what stored bytes are sealed with, and
/// the config itself.
///
/// Only a key file the sealed config lists may open it (every one, in a
/// repository from before the list): one that was removed and put back is
/// passed over, and the others are tried. `cache_root` remembers which
/// key opened the repository here, and that one is tried first.
pub(crate) fn unlock_config(
    files: &dyn MetaStore,
    root: &Path,
    bytes: &[u8],
    head: &ConfigHead,
    password: Option<&keys::Password>,
    cache_root: &Path,
) -> Result<(Config, crate::crypto::Crypt, Option<String>)> {
    let preferred = CacheSlot::remembered_key(cache_root, &head.repository_id);
    let mut revoked = Vec::new();
    loop {
        let unlocked = keys::unlock(files, head, password, preferred.as_deref(), &revoked);
        let (crypt, key_id) = match unlocked {
            Err(Error::WrongPassword) if !revoked.is_empty() => {
                return Err(Error::RevokedKey(revoked.remove(0)));
            }
            other => other?,
        };
        let config = Config::open(bytes, &root.join(CONFIG), &crypt)?;
        match key_id {
            Some(id) if !config.keys.is_empty() && !config.keys.contains(&id) => revoked.push(id),
            key_id => {
                if let Some(id) = key_id
                    .as_deref()
                    .filter(|id| preferred.as_deref() != Some(id))
                {
                    CacheSlot::remember_key(cache_root, &head.repository_id, id);
                }
                return Ok((config, crypt, key_id));
            }
        }
    }
}

/// The index in `cache`, and the home's segments, which it is then brought
/// up to date with (made anew from them when the slot has none). A
/// writer's index writes each commit's segment first.
///
/// A home without segments is either from before them, with its index
/// still in the home (a writer makes a full segment of that index, then
/// removes it), or has lost them: that is an error, since an empty index
/// would make `gc` take every pack for garbage.
pub(crate) fn open_cache_index(
    home: &Home,
    files: &Arc<dyn MetaStore>,
    cache: &CacheSlot,
    fs: &Arc<dyn Fs>,
    writer: bool,
) -> Result<(Index, Vec<String>)> {
    let files = files.clone();
    let legacy = home.folder().map(|f| f.join(LEGACY_INDEX));
    // The cache's index opens while the segments are listed (a round
    // trip on an object store).
    let (names, index) = std::thread::scope(|scope| {
        let listing = scope.spawn(|| segment::names(files.as_ref()));
        let index = Index::open(&cache.index(), Access::Create);
        (joined(listing), index)
    });
    let mut names = names?;
    if names.is_empty() && legacy_index_only(home)? {
        let legacy = legacy.as_deref().expect("only folders have one");
        let full =
            Index::open(legacy, Access::ReadWrite)?.write_full_segment(files.as_ref(), &[])?;
        names.push(full);
    } else if names.is_empty() {
        return Err(Error::Index {
            path: PathBuf::from(format!("{}/{}", files.location(), segment::FOLDER)),
            message: "missing: the repository has no index segments \
                      (`dedup repair index` makes them from the packs)"
                .into(),
        });
    }
    if let Some(legacy) = legacy.filter(|l| writer && l.exists()) {
        std::fs::remove_dir_all(&legacy).at(&legacy)?;
        files.delete(LEGACY_BLOOM)?;
    }
    let index = index?.with_crash_points(fs.clone());
    let index = if writer {
        index.with_segments(files.clone())
    } else {
        index
    };
    Ok((index, names))
}

/// The saved filter of the slot `cache`, if it is current for `index`
/// (saved at its generation), else one rebuilt from it; and whether the
/// saved one was used.
pub(crate) fn load_bloom(cache: &CacheSlot, index: &Index) -> Result<(Bloom, bool)> {
    let path = cache.bloom();
    let saved = CacheSlot::read(&path)?
        .and_then(|bytes| Bloom::decode(&bytes, &path.display().to_string()).ok());
    match saved {
        Some(b) if b.stamp() == index.generation() => Ok((b, true)),
        _ => Ok((rebuilt_bloom(index)?, false)),
    }
}

/// A filter of every id in `index`, sized from its pack summaries.
pub(crate) fn rebuilt_bloom(index: &Index) -> Result<Bloom> {
    let objects: u64 = index
        .packs()?
        .iter()
        .map(|(_, p)| u64::from(p.data_chunks) + u64::from(p.tree_objects))
        .sum();
    let mut b = Bloom::new(objects * 2);
    index.for_each_chunk_id(|id| b.insert(&id))?;
    Ok(b)
}

/// True when the home keeps its index the way versions before segments
/// did: an index in the home (a folder), and no segments yet.
pub(crate) fn legacy_index_only(home: &Home) -> Result<bool> {
    let Some(folder) = home.folder() else {
        return Ok(false);
    };
    Ok(folder.join(LEGACY_INDEX).join("CURRENT").exists()
        && segment::names(home.files().as_ref())?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (index, _) = open_cache_index(&home, &home.files(), &slot, &fs, true).unwrap();
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
        let (index, names) = open_cache_index(&home, &home.files(), &slot, &fs, true).unwrap();
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
