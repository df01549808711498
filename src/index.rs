//! The RocksDB index: chunk id → location, packs, snapshots, metadata.
//!
//! Column families:
//!
//! | family      | key                | value                          |
//! |-------------|--------------------|--------------------------------|
//! | `chunks`    | chunk id (32)      | [`Location`] (33 bytes)        |
//! | `packs`     | pack id (16)       | [`PackInfo`] (53 bytes)        |
//! | `snapshots` | snapshot id (32)   | the snapshot record's bytes    |
//! | `meta`      | ASCII name         | small values (Bloom counters)  |
//!
//! The index is derived data: everything in it can be rebuilt from the
//! packs' trailers and the `snapshots/` folder. Invariant: a pack's chunk
//! entries and its pack entry are committed in one synced write batch, and
//! only after the pack itself is durable, so the index never points at bytes
//! that a crash could take away.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[cfg(feature = "engine")]
use rocksdb::{BlockBasedOptions, ColumnFamily, Options, WriteBatch, WriteOptions, DB};

use crate::codec::{Put, Reader};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::ring::ShardId;
use crate::segment::{self, Op, Segment};
use crate::snapshot::SnapshotId;
use crate::store::record::ObjectKind;
use crate::store::{Fs, MetaStore, PackEntry, PackId, PackStore};

const CHUNKS: &str = "chunks";
const PACKS: &str = "packs";
const SNAPSHOTS: &str = "snapshots";
const META: &str = "meta";
const FAMILIES: [&str; 4] = [CHUNKS, PACKS, SNAPSHOTS, META];

/// Ids looked up in one batched read by [`Index::chunks`].
pub const LOOKUP_BATCH: usize = 4096;

/// Where an object's bytes are: its pack, and its entry there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Its record in that pack.
    pub entry: PackEntry,
}

impl Location {
    /// Encodes as 33 bytes (the id is the key, so it is not repeated).
    pub fn encode(&self) -> Vec<u8> {
        let e = &self.entry;
        let mut v = Vec::with_capacity(33);
        v.extend_from_slice(&self.pack.0);
        v.put_u64(e.offset);
        v.put_u32(e.raw_len);
        v.put_u32(e.stored_len);
        v.put_u8(e.flags);
        v
    }

    /// True when this is where `entry` of `pack` lies: the index uses that
    /// copy (a pack may also hold copies the index has moved away from).
    pub fn is(&self, pack: &PackId, entry: &PackEntry) -> bool {
        self.pack == *pack && self.entry.offset == entry.offset
    }

    /// Decodes the index value stored under `id`.
    pub fn decode(id: ChunkId, bytes: &[u8]) -> Result<Self> {
        let location = id.to_hex();
        let mut r = Reader::new(bytes, "index entry", &location);
        let mut pack = [0u8; 16];
        pack.copy_from_slice(r.take(16)?);
        let loc = Location {
            pack: PackId(pack),
            entry: PackEntry {
                id,
                offset: r.u64()?,
                raw_len: r.u32()?,
                stored_len: r.u32()?,
                flags: r.u8()?,
            },
        };
        r.finish()?;
        Ok(loc)
    }
}

/// What the index knows of a pack: its shard and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackInfo {
    /// The shard it lives on.
    pub shard: ShardId,
    /// Its length in bytes, trailer included.
    pub size: u64,
    /// File-data chunks in it.
    pub data_chunks: u32,
    /// Their uncompressed bytes.
    pub data_raw: u64,
    /// Their stored bytes.
    pub data_stored: u64,
    /// Tree objects in it.
    pub tree_objects: u32,
    /// Their uncompressed bytes.
    pub tree_raw: u64,
    /// Their stored bytes.
    pub tree_stored: u64,
}

impl PackInfo {
    /// Summarises a sealed pack's entries.
    pub fn of(shard: ShardId, size: u64, entries: &[PackEntry]) -> Self {
        let mut info = PackInfo {
            shard,
            size,
            ..Default::default()
        };
        for e in entries {
            if e.kind() == ObjectKind::Tree {
                info.tree_objects += 1;
                info.tree_raw += u64::from(e.raw_len);
                info.tree_stored += u64::from(e.stored_len);
            } else {
                info.data_chunks += 1;
                info.data_raw += u64::from(e.raw_len);
                info.data_stored += u64::from(e.stored_len);
            }
        }
        info
    }

    /// The length of [`encode`](Self::encode)'s output.
    pub const ENCODED_LEN: usize = 53;

    /// Encodes as an index value (and inside index segments).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::ENCODED_LEN);
        v.put_u8(1);
        v.put_u32(self.shard.0);
        v.put_u64(self.size);
        v.put_u32(self.data_chunks);
        v.put_u64(self.data_raw);
        v.put_u64(self.data_stored);
        v.put_u32(self.tree_objects);
        v.put_u64(self.tree_raw);
        v.put_u64(self.tree_stored);
        v
    }

    /// Decodes an index value; `location` names it in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let mut r = Reader::new(bytes, "pack index entry", location);
        if r.u8()? != 1 {
            return Err(r.error("unknown version"));
        }
        let info = PackInfo {
            shard: ShardId(r.u32()?),
            size: r.u64()?,
            data_chunks: r.u32()?,
            data_raw: r.u64()?,
            data_stored: r.u64()?,
            tree_objects: r.u32()?,
            tree_raw: r.u64()?,
            tree_stored: r.u64()?,
        };
        r.finish()?;
        Ok(info)
    }
}

/// Changes applied to the index in one atomic write by [`Index::commit`].
///
/// Packs enter and leave the repository only through a batch, in the one
/// order that survives a crash at any instant (invariants 2 and 5):
/// [`publish_pack`](Self::publish_pack) writes a new pack durably before
/// the batch can point at it, the commit switches every entry over at once,
/// and only after it are the files of
/// [`retire_pack`](Self::retire_pack)ed packs handed back for deleting. The index keeps its
/// pack-to-shard map in step; no caller touches it.
#[cfg(feature = "engine")]
pub struct Batch<'i> {
    index: &'i Index,
    inner: WriteBatch,
    published: Vec<(PackId, ShardId)>,
    /// Packs leaving, with the store to delete each from (none when the
    /// batch replays a segment: the file is the writer's business).
    retired: Vec<(PackId, Option<Arc<dyn PackStore>>)>,
    /// What the batch does, for its segment.
    ops: Vec<Op>,
    /// The segment this batch applies (so it writes none of its own).
    replays: Option<String>,
    /// The batch starts from an empty index (it applies a full segment).
    wiped: bool,
}

#[cfg(feature = "engine")]
impl Batch<'_> {
    /// Writes a sealed pack (`bytes`, holding `entries`) durably to
    /// `backend`, shard `shard`, under a fresh id, and points every entry
    /// at it once the batch commits. Returns the new pack's id.
    pub fn publish_pack(
        &mut self,
        shard: ShardId,
        backend: &dyn PackStore,
        bytes: &[u8],
        entries: &[PackEntry],
    ) -> Result<PackId> {
        let pack = PackId::random();
        backend.create(&pack.key(), bytes)?;
        self.index_pack(
            pack,
            &PackInfo::of(shard, bytes.len() as u64, entries),
            entries,
        );
        Ok(pack)
    }

    /// Points every entry at `pack`, which is already durable, and records
    /// the pack's summary.
    pub fn index_pack(&mut self, pack: PackId, info: &PackInfo, entries: &[PackEntry]) {
        let chunks = self.index.cf(CHUNKS);
        for e in entries {
            let loc = Location { pack, entry: *e };
            self.inner.put_cf(chunks, e.id.as_bytes(), loc.encode());
        }
        self.inner
            .put_cf(self.index.cf(PACKS), pack.0, info.encode());
        self.published.push((pack, info.shard));
        self.ops.push(Op::AddPack {
            pack,
            info: *info,
            entries: entries.to_vec(),
        });
    }

    /// Forgets `pack` when the batch commits, and then deletes its file
    /// from `backend`. Entries still pointing into it must be deleted
    /// ([`delete_chunk`](Self::delete_chunk)) or re-pointed in this batch.
    pub fn retire_pack(&mut self, pack: PackId, backend: Arc<dyn PackStore>) {
        self.forget_pack(pack, Some(backend));
    }

    fn forget_pack(&mut self, pack: PackId, backend: Option<Arc<dyn PackStore>>) {
        self.inner.delete_cf(self.index.cf(PACKS), pack.0);
        self.retired.push((pack, backend));
        self.ops.push(Op::RetirePack(pack));
    }

    /// Forgets a chunk.
    pub fn delete_chunk(&mut self, id: &ChunkId) {
        self.inner.delete_cf(self.index.cf(CHUNKS), id.as_bytes());
        self.ops.push(Op::DeleteChunk(*id));
    }

    /// Empties the chunks and packs (and the record of applied segments):
    /// the first step of applying a full segment.
    fn wipe(&mut self) {
        let index = self.index;
        for family in [CHUNKS, PACKS] {
            self.inner
                .delete_range_cf(index.cf(family), &[][..], &[0xffu8; 33][..]);
        }
        self.inner
            .delete_range_cf(index.cf(META), APPLIED.as_bytes(), APPLIED_END.as_bytes());
        self.wiped = true;
    }

    /// Adds what `segment` says to the batch, which then stands for it.
    fn replay(&mut self, name: &str, segment: Segment) {
        if segment.full {
            self.wipe();
        }
        for op in segment.ops {
            match op {
                Op::AddPack {
                    pack,
                    info,
                    entries,
                } => self.index_pack(pack, &info, &entries),
                Op::RetirePack(pack) => self.forget_pack(pack, None),
                Op::DeleteChunk(id) => self.delete_chunk(&id),
            }
        }
        self.replays = Some(name.to_string());
    }

    /// Stores a snapshot record.
    pub fn put_snapshot(&mut self, id: &SnapshotId, record: &[u8]) {
        self.inner
            .put_cf(self.index.cf(SNAPSHOTS), id.as_bytes(), record);
    }
}

/// Packs a committed batch retired: the index no longer knows them, so
/// their files can go. A crash (or a caller that keeps them because
/// readers with an older view of the index are open) leaves unindexed
/// files, which the next `gc` removes.
#[derive(Default)]
pub struct Retired(Vec<(PackId, Option<Arc<dyn PackStore>>)>);

impl Retired {
    /// How many packs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the batch retired nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deletes their files.
    pub fn delete(self) -> Result<()> {
        for (pack, backend) in self.0 {
            if let Some(backend) = backend {
                backend.delete(&pack.key())?;
            }
        }
        Ok(())
    }
}

/// True for the errors a read-only open meets when the writer deletes a
/// log or table file between the open's listing and its read.
#[cfg(feature = "engine")]
fn is_open_race(e: &rocksdb::Error) -> bool {
    match e.kind() {
        rocksdb::ErrorKind::IOError => true,
        rocksdb::ErrorKind::Corruption => e.as_ref().contains("No such file or directory"),
        _ => false,
    }
}

/// How [`Index::open`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only, beside any writer.
    ReadOnly,
    /// Reads and writes an existing index.
    ReadWrite,
    /// Reads and writes, creating the index when absent.
    Create,
}

/// The open index.
#[cfg(feature = "engine")]
pub struct Index {
    db: DB,
    path: PathBuf,
    /// Told before each commit, so crash tests see commits among the
    /// file system's durable steps.
    crash_points: Option<Arc<dyn Fs>>,
    /// Every indexed pack's shard: what a read needs to find a pack.
    packs: RwLock<HashMap<PackId, ShardId>>,
    /// Commits so far (kept in `meta` too): held across each commit, so
    /// the stored count only grows.
    commits: Mutex<u64>,
    /// Told each new count once its commit is durable.
    on_commit: Option<Box<dyn Fn(u64) + Send + Sync>>,
    /// Where each commit first writes its segment (writers only).
    segments: Option<Arc<dyn MetaStore>>,
}

/// The `meta` key counting commits, over the index's whole life.
const COMMITS: &str = "commits";

/// `meta` keys `applied/<segment name>`: the segments this index holds.
const APPLIED: &str = "applied/";
/// Just past every `applied/` key.
const APPLIED_END: &str = "applied0";

fn applied_key(name: &str) -> String {
    format!("{APPLIED}{name}")
}

#[cfg(feature = "engine")]
impl Index {
    /// Opens the index at `path` for `access`. Read-only opens can run
    /// beside a writer: they see the state as of their opening.
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let read_only = access == Access::ReadOnly;
        let create = access == Access::Create;
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.create_missing_column_families(!read_only);
        opts.set_max_background_jobs(2);
        // Every family flushes in the same step, so that a read-only open
        // racing the writer sees all of them as of one moment, never the
        // chunks as of one commit and the packs as of another.
        opts.set_atomic_flush(true);
        opts.set_keep_log_file_num(2);
        let mut table = BlockBasedOptions::default();
        // Keys are random hashes: a per-file Bloom filter saves a disk read
        // on most misses, and whole-key filtering is all point lookups need.
        table.set_bloom_filter(10.0, false);
        // Filters and index blocks stay resident (about 1.5 bytes per chunk)
        // instead of competing with data blocks for the cache: with ten
        // million chunks, evicting them made every lookup of a present id
        // a disk read.
        table.set_cache_index_and_filter_blocks(false);
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(128 << 20));
        opts.set_block_based_table_factory(&table);
        let db = if read_only {
            // A read-only open lists the writer's log and table files and
            // then reads them; the writer may flush or compact one away in
            // between. That race is transient: try again on a fresh listing.
            let mut attempt = 0;
            loop {
                match DB::open_cf_for_read_only(&opts, path, FAMILIES, false) {
                    Err(e) if attempt < 40 && is_open_race(&e) => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(25));
                    }
                    other => break other,
                }
            }
        } else {
            DB::open_cf(&opts, path, FAMILIES)
        }
        .map_err(|e| Error::Index {
            path: path.to_path_buf(),
            message: e.into_string(),
        })?;
        let mut index = Index {
            db,
            path: path.to_path_buf(),
            crash_points: None,
            packs: RwLock::default(),
            commits: Mutex::new(0),
            on_commit: None,
            segments: None,
        };
        let packs = index
            .packs()?
            .into_iter()
            .map(|(id, info)| (id, info.shard));
        index.packs = RwLock::new(packs.collect());
        index.commits = Mutex::new(index.counter(COMMITS)?);
        Ok(index)
    }

    /// Calls `fs`'s [`crash_point`](Fs::crash_point) before each commit,
    /// so a file system that counts durable steps (crash tests) counts
    /// index commits among them.
    #[must_use]
    pub fn with_crash_points(mut self, fs: Arc<dyn Fs>) -> Self {
        self.crash_points = Some(fs);
        self
    }

    /// Calls `hook` with the new count after each commit is durable
    /// (writers publish it so readers can tell a stale view; see
    /// `repo::lock`).
    #[must_use]
    pub fn with_commit_hook(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_commit = Some(Box::new(hook));
        self
    }

    /// Writes each commit's segment to `home` before the commit itself.
    #[must_use]
    pub fn with_segments(mut self, home: Arc<dyn MetaStore>) -> Self {
        self.segments = Some(home);
        self
    }

    /// Applies, in order, the segments in `home` this index has not yet:
    /// from the newest full segment on (starting over from it when it is
    /// new here). Returns how many it applied.
    ///
    /// A cache that holds a segment the home does not (the home was put
    /// back from an older copy, or its segments were tampered with) is of
    /// another history: it is emptied and filled again from the home.
    pub fn catch_up(&self, home: &dyn MetaStore) -> Result<u64> {
        let names = segment::names(home)?;
        let start = names.iter().rposition(|n| segment::is_full(n)).unwrap_or(0);
        if self.ahead_of(&names[start..])? {
            let mut batch = self.batch();
            batch.wipe();
            let _ = self.commit(batch)?;
        }
        let mut applied = 0;
        for name in &names[start..] {
            if self.has_applied(name)? {
                continue;
            }
            let key = format!("{}{name}", segment::FOLDER);
            let segment = Segment::decode(&home.get(&key)?, &key)?;
            let mut batch = self.batch();
            batch.replay(name, segment);
            let _ = self.commit(batch)?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Writes a full segment of the index as it stands to `home` and marks
    /// it applied; returns its name. Segments before it are then never
    /// applied again.
    pub fn write_full_segment(&self, home: &dyn MetaStore) -> Result<String> {
        let mut entries: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        self.for_each_chunk(|id, value| {
            let loc = Location::decode(id, value)?;
            entries.entry(loc.pack).or_default().push(loc.entry);
            Ok(())
        })?;
        let ops = self
            .packs()?
            .into_iter()
            .map(|(pack, info)| Op::AddPack {
                pack,
                info,
                entries: entries.remove(&pack).unwrap_or_default(),
            })
            .collect();
        let name = segment::full_name();
        let bytes = Segment { full: true, ops }.encode();
        home.put(&format!("{}{name}", segment::FOLDER), &bytes)?;
        let mut batch = self.batch();
        // The marks of the segments before it go: they are never read again.
        batch.inner.delete_range_cf(
            self.cf(META),
            APPLIED.as_bytes(),
            applied_key(&name).as_bytes(),
        );
        batch.replays = Some(name.clone());
        let _ = self.commit(batch)?;
        Ok(name)
    }

    /// True when this index has applied a segment from `live` (the home's
    /// segments from its newest full one on) onward that the home lacks.
    /// A home without segments (one from before them) proves nothing.
    fn ahead_of(&self, live: &[String]) -> Result<bool> {
        let Some(first) = live.first() else {
            return Ok(false);
        };
        let from = applied_key(first);
        let mode = rocksdb::IteratorMode::From(from.as_bytes(), rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(META), mode) {
            let (key, _) = item.map_err(|e| self.err(e))?;
            let Some(name) = key
                .strip_prefix(APPLIED.as_bytes())
                .and_then(|n| std::str::from_utf8(n).ok())
            else {
                break;
            };
            if live.binary_search_by(|l| l.as_str().cmp(name)).is_err() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn has_applied(&self, name: &str) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(META), applied_key(name))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// How many commits this index has had, as of this view.
    pub fn commits(&self) -> u64 {
        *self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Index {
            path: self.path.clone(),
            message: e.into_string(),
        }
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// The location of `id`, if indexed.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<Location>> {
        match self
            .db
            .get_pinned_cf(self.cf(CHUNKS), id.as_bytes())
            .map_err(|e| self.err(e))?
        {
            Some(v) => Ok(Some(Location::decode(*id, &v)?)),
            None => Ok(None),
        }
    }

    /// The shard holding `pack`, when the index knows the pack.
    pub fn pack_shard(&self, pack: &PackId) -> Option<ShardId> {
        self.packs.read().expect("packs lock").get(pack).copied()
    }

    /// Some pack the index lists on `shard`, if any.
    pub fn some_pack_on(&self, shard: ShardId) -> Option<PackId> {
        self.packs
            .read()
            .expect("packs lock")
            .iter()
            .find_map(|(pack, s)| (*s == shard).then_some(*pack))
    }

    /// Locations of many ids, in the same order: batched reads of at
    /// most [`LOOKUP_BATCH`] ids each.
    pub fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        let cf = self.cf(CHUNKS);
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(LOOKUP_BATCH) {
            let keys = batch.iter().map(|id| id.as_bytes().as_slice());
            for (r, id) in self
                .db
                .batched_multi_get_cf(cf, keys, false)
                .into_iter()
                .zip(batch)
            {
                out.push(match r.map_err(|e| self.err(e))? {
                    Some(v) => Some(Location::decode(*id, &v)?),
                    None => None,
                });
            }
        }
        Ok(out)
    }

    /// Commits a durable pack's entries and summary in one synced batch.
    pub fn commit_pack(&self, pack: PackId, info: &PackInfo, entries: &[PackEntry]) -> Result<()> {
        let mut batch = self.batch();
        batch.index_pack(pack, info, entries);
        self.commit(batch).map(drop)
    }

    /// An empty batch of changes, applied atomically by [`commit`](Self::commit).
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            index: self,
            inner: WriteBatch::default(),
            published: Vec::new(),
            retired: Vec::new(),
            ops: Vec::new(),
            replays: None,
            wiped: false,
        }
    }

    /// Applies a batch atomically and durably (the write-ahead log is
    /// synced) and hands back the packs it retired, whose files may now
    /// be deleted: by [`Retired::delete`], or later by `gc`, which removes
    /// pack files the index does not know. Dropping them unused is safe.
    pub fn commit(&self, batch: Batch<'_>) -> Result<Retired> {
        let Batch {
            mut inner,
            published,
            retired,
            ops,
            replays,
            wiped,
            ..
        } = batch;
        // The segment first: it is the truth, this index its cache. A
        // crash after it leaves the segment for the next writer to apply.
        // Written before the count is taken, so that commits from several
        // threads (one per shard's pack) sync their segments in parallel;
        // their order does not matter, they touch different packs.
        let applied = match (replays, &self.segments) {
            (Some(name), _) => Some(name),
            (None, Some(home)) if !ops.is_empty() => {
                let name = segment::new_name();
                let bytes = Segment { full: false, ops }.encode();
                home.put(&format!("{}{name}", segment::FOLDER), &bytes)?;
                Some(name)
            }
            _ => None,
        };
        if let Some(name) = applied {
            inner.put_cf(self.cf(META), applied_key(&name), []);
        }
        let mut commits = self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = *commits + 1;
        inner.put_cf(self.cf(META), COMMITS, count.to_le_bytes());
        if let Some(fs) = &self.crash_points {
            fs.crash_point("index commit")
                .map_err(|e| Error::io(&self.path, e))?;
        }
        // New packs are in the map before any entry points at them, so a
        // concurrent reader that finds an entry also finds its pack.
        let mut packs = self.packs.write().expect("packs lock");
        if wiped {
            packs.clear();
        }
        packs.extend(published.iter().copied());
        drop(packs);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        if let Err(e) = self.db.write_opt(inner, &opts) {
            let mut packs = self.packs.write().expect("packs lock");
            for (pack, _) in &published {
                packs.remove(pack);
            }
            return Err(self.err(e));
        }
        *commits = count;
        if let Some(hook) = &self.on_commit {
            hook(count);
        }
        drop(commits);
        let mut packs = self.packs.write().expect("packs lock");
        for (pack, _) in &retired {
            packs.remove(pack);
        }
        drop(packs);
        Ok(Retired(retired))
    }

    /// Moves everything committed so far from the write-ahead log into table
    /// files. A writer does this when it closes, so the next writer has no
    /// log to replay at open: replaying (and deleting) it would race with
    /// read-only openers, which could then miss the replayed data.
    pub fn flush(&self) -> Result<()> {
        let families: Vec<&ColumnFamily> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db
            .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
            .map_err(|e| self.err(e))
    }

    /// Removes a snapshot record (synced).
    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let mut batch = self.batch();
        batch.inner.delete_cf(self.cf(SNAPSHOTS), id.as_bytes());
        self.commit(batch).map(drop)
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> Result<Vec<(PackId, PackInfo)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(PACKS), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id: [u8; 16] = k
                .as_ref()
                .try_into()
                .map_err(|_| Error::corrupt("pack index key", hex::encode(&k), "not 16 bytes"))?;
            let pack = PackId(id);
            out.push((pack, PackInfo::decode(&v, &pack.to_hex())?));
        }
        Ok(out)
    }

    /// Calls `f` with every indexed chunk id (for rebuilding the Bloom filter).
    pub fn for_each_chunk_id(&self, mut f: impl FnMut(ChunkId)) -> Result<()> {
        self.for_each_chunk(|id, _| {
            f(id);
            Ok(())
        })
    }

    /// Where every chunk whose indexed copy lies in one of `packs` is.
    pub fn chunks_in(&self, packs: &std::collections::HashSet<PackId>) -> Result<Vec<Location>> {
        let mut out = Vec::new();
        self.for_each_chunk(|id, value| {
            let loc = Location::decode(id, value)?;
            if packs.contains(&loc.pack) {
                out.push(loc);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every chunk id and its encoded location.
    fn for_each_chunk(&self, mut f: impl FnMut(ChunkId, &[u8]) -> Result<()>) -> Result<()> {
        for item in self
            .db
            .iterator_cf(self.cf(CHUNKS), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = ChunkId::from_slice(&k).ok_or_else(|| {
                Error::corrupt("chunk index key", hex::encode(&k), "not 32 bytes")
            })?;
            f(id, &v)?;
        }
        Ok(())
    }

    /// Stores a snapshot record (synced).
    pub fn put_snapshot(&self, id: &SnapshotId, record: &[u8]) -> Result<()> {
        let mut batch = self.batch();
        batch.put_snapshot(id, record);
        self.commit(batch).map(drop)
    }

    /// One snapshot record's bytes, if indexed.
    pub fn snapshot(&self, id: &SnapshotId) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(SNAPSHOTS), id.as_bytes())
            .map_err(|e| self.err(e))
    }

    /// Every snapshot record, by id.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(SNAPSHOTS), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = SnapshotId::from_slice(&k).ok_or_else(|| {
                Error::corrupt("snapshot index key", hex::encode(&k), "not 32 bytes")
            })?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    /// A metadata counter (0 when absent).
    pub fn counter(&self, name: &str) -> Result<u64> {
        match self
            .db
            .get_cf(self.cf(META), name)
            .map_err(|e| self.err(e))?
        {
            Some(v) => {
                let mut r = Reader::new(&v, "index counter", name);
                let n = r.u64()?;
                r.finish()?;
                Ok(n)
            }
            None => Ok(0),
        }
    }

    /// Adds to metadata counters in one write.
    pub fn add_counters(&self, deltas: &[(&str, u64)]) -> Result<()> {
        let mut batch = self.batch();
        for &(name, delta) in deltas {
            let value = self.counter(name)?.saturating_add(delta);
            batch.inner.put_cf(self.cf(META), name, value.to_le_bytes());
        }
        self.commit(batch).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "engine")]
    fn committed_pack_entries_are_found_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), Access::Create).unwrap();
        let pack = PackId::random();
        let entries: Vec<PackEntry> = (0..3u8)
            .map(|i| PackEntry {
                id: ChunkId::of(&[i]),
                offset: 8 + u64::from(i) * 100,
                raw_len: 50,
                stored_len: 40,
                flags: 0,
            })
            .collect();
        let info = PackInfo::of(ShardId(2), 400, &entries);
        index.commit_pack(pack, &info, &entries).unwrap();
        let loc = index.chunk(&entries[1].id).unwrap().unwrap();
        assert_eq!(
            loc,
            Location {
                pack,
                entry: entries[1]
            }
        );
        let many = index
            .chunks(&[entries[2].id, ChunkId::of(b"absent")])
            .unwrap();
        let second = Location {
            pack,
            entry: entries[2],
        };
        assert_eq!(many, vec![Some(second), None]);
        assert_eq!(index.pack_shard(&pack), Some(ShardId(2)));
        assert_eq!(index.packs().unwrap(), vec![(pack, info)]);
        assert_eq!(info.data_chunks, 3);
        assert_eq!(info.data_raw, 150);
        let mut n = 0;
        index.for_each_chunk_id(|_| n += 1).unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn damaged_index_values_are_errors_not_panics() {
        let id = ChunkId::of(b"x");
        assert!(Location::decode(id, &[0u8; 32]).is_err());
        assert!(Location::decode(id, &[0u8; 34]).is_err());
        assert!(PackInfo::decode(&[2u8; 61], "x").is_err());
        let loc = Location {
            pack: PackId([7; 16]),
            entry: PackEntry {
                id,
                offset: 9,
                raw_len: 3,
                stored_len: 2,
                flags: 1,
            },
        };
        assert_eq!(Location::decode(id, &loc.encode()).unwrap(), loc);
    }
}
