//! Creating and opening a repository, as named steps: the home, the
//! config unlocked and the lock taken, this machine's cache slot, the
//! index caught up with the home's segments, the shards attached, the
//! snapshot records adopted.

use super::cache::CacheSlot;
use super::home::{Hold, Home};
use super::snapshots::{read_unindexed_records, snapshot_ids, RecordFile};
use super::{fetch, home, joined, keys, Engine, OpenOptions, Shard, CONFIG, SNAPSHOTS};
use crate::bloom::Bloom;
use crate::catalog::base::manifest_epochs;
use crate::catalog::segment;
use crate::catalog::{Access, Index};
use crate::error::{Error, IoContext, Result};
use crate::format::config::{Config, ConfigHead, InitOptions, ShardConfig};
use crate::format::family::FamilyName;
use crate::format::filecache::FileCache;
use crate::format::snapshot::SnapshotRecord;
use crate::id::ChunkId;
use crate::store::{is_not_found, open_shard, shard, Create, Fs, LocalStore};
use crate::store::{MetaStore, PackId, PackStore};
use crate::store::{ShardMarker, Unavailable};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
        // The empty index, as the first manifest: a home with neither
        // segments nor a manifest has lost them (see `open_cache_index`).
        let empty = crate::format::manifest::Manifest::empty(0);
        files.put(
            &crate::format::manifest::manifest_key(0),
            &empty.encode(&crypt),
        )?;
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
        let has_records = !records.is_empty();
        let (index, names) = open_cache_index(&home, &files, &cache, &fs, !read_only, has_records)?;
        let index = index.with_sealer(Arc::new(crypt.clone()));
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
}

/// Where versions before the cache kept the index and the Bloom filter, in
/// the home; a writer moves them out (see [`open_cache_index`]).
const LEGACY_INDEX: &str = "index";

const LEGACY_BLOOM: &str = "bloom";

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
/// removes it), or compacted into a manifest, or new, or has lost them:
/// with no manifest, or with only init's empty one while it holds
/// snapshot records (`has_records`), that is an error, since an empty
/// index would make `gc` take every pack for garbage.
pub(crate) fn open_cache_index(
    home: &Home,
    files: &Arc<dyn MetaStore>,
    cache: &CacheSlot,
    fs: &Arc<dyn Fs>,
    writer: bool,
    has_records: bool,
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
        // Only init's empty manifest is empty: every later one comes
        // from a compaction of at least one segment, or from a repair.
        let epochs = manifest_epochs(files.as_ref())?;
        let lost = match epochs.as_slice() {
            [] => Some("no index segments and no manifest"),
            [0] if has_records => Some("snapshot records but no index segments"),
            _ => None,
        };
        if let Some(what) = lost {
            return Err(Error::Index {
                path: PathBuf::from(format!("{}/{}", files.location(), segment::FOLDER)),
                message: format!(
                    "missing: the repository has {what} \
                     (`dedup repair index` makes them from the packs)"
                ),
            });
        }
    }
    if let Some(legacy) = legacy.filter(|l| writer && l.join("CURRENT").exists()) {
        remove_legacy_index(&legacy)?;
        files.delete(LEGACY_BLOOM)?;
    }
    let shelf = super::cache::SlotShelf(cache.dir().join("summaries"));
    let index = index?
        .with_crash_points(fs.clone())
        .with_home(files.clone())
        .with_shelf(Arc::new(shelf));
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

/// Removes the files of the index that versions before segments kept in
/// the home's `index/` folder, now that a full segment holds it. That
/// folder is also where families live: their objects (named
/// `<prefix>.<epoch in 16 hex digits>`, `packs-<prefix>.<epoch>` and
/// `manifest.<epoch>`) stay.
fn remove_legacy_index(folder: &Path) -> Result<()> {
    let is_family_object = |name: &str| {
        name.rsplit_once('.').is_some_and(|(label, epoch)| {
            let label = label.strip_prefix("packs-").unwrap_or(label);
            epoch.len() == 16
                && epoch.bytes().all(|b| b.is_ascii_hexdigit())
                && (label == "manifest" || FamilyName::parse(label).is_ok())
        })
    };
    for entry in std::fs::read_dir(folder).at(folder)? {
        let entry = entry.at(folder)?;
        let path = entry.path();
        if entry.file_type().at(&path)?.is_dir() {
            std::fs::remove_dir_all(&path).at(&path)?;
        } else if !entry.file_name().to_str().is_some_and(is_family_object) {
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    if std::fs::read_dir(folder).at(folder)?.next().is_none() {
        std::fs::remove_dir(folder).at(folder)?;
    }
    Ok(())
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
