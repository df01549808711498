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
//! The index is derived data, a cache on this machine: everything in it
//! is made again from the home's segments and `snapshots/` folder (and,
//! by `repair index`, from the packs' trailers). Invariant: a pack's chunk
//! entries and its pack entry are committed in one synced write batch, and
//! only after the pack itself is durable, so the index never points at bytes
//! that a crash could take away.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[cfg(feature = "engine")]
use rocksdb::{BlockBasedOptions, ColumnFamily, Options, WriteBatch, WriteOptions, DB};

use crate::error::{Error, Result};
use crate::format::codec::Reader;
use crate::id::ChunkId;
pub mod segment;
pub mod values;

use crate::format::snapshot::SnapshotId;
use crate::ring::ShardId;
use crate::store::{Fs, MetaStore, PackEntry, PackId, PackStore};
use segment::{Op, Segment};
pub use values::{Location, PackInfo};

const CHUNKS: &str = "chunks";
const PACKS: &str = "packs";
const SNAPSHOTS: &str = "snapshots";
const META: &str = "meta";
const FAMILIES: [&str; 4] = [CHUNKS, PACKS, SNAPSHOTS, META];

/// Ids looked up in one batched read by [`Index::chunks`].
pub const LOOKUP_BATCH: usize = 4096;

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
    /// batch applies a segment: the file is the writer's business).
    retired: Vec<(PackId, Option<Arc<dyn PackStore>>)>,
    /// The chunk ids of the packs leaving (writers' batches): where those
    /// that stay live elsewhere are goes into the segment (see `commit`).
    retired_ids: Vec<(PackId, Vec<ChunkId>)>,
    /// What the batch does, for its segment.
    ops: Vec<Op>,
    /// The segment this batch applies (so it writes none of its own).
    replays: Option<String>,
    /// The value its `applied/` mark gets (empty, or [`LEGACY_FULL`]).
    mark: &'static [u8],
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

    /// Forgets `pack` (whose records hold `ids`) when the batch commits,
    /// and then deletes its file from `backend`. Entries still pointing
    /// into it must be dropped ([`drop_entry`](Self::drop_entry)) or
    /// re-pointed in this batch.
    pub fn retire_pack(&mut self, pack: PackId, ids: Vec<ChunkId>, backend: Arc<dyn PackStore>) {
        self.tombstone(pack);
        self.retired.push((pack, Some(backend)));
        self.ops.push(Op::RetirePack {
            pack,
            ids: ids.clone(),
        });
        self.retired_ids.push((pack, ids));
    }

    /// Marks `pack` retired for good: no later segment brings it back.
    fn tombstone(&mut self, pack: PackId) {
        self.inner.delete_cf(self.index.cf(PACKS), pack.0);
        self.inner
            .put_cf(self.index.cf(META), retired_key(&pack), []);
    }

    /// Forgets the chunk `id`, whose entry points into `pack`.
    pub fn drop_entry(&mut self, id: &ChunkId, pack: PackId) {
        self.inner.delete_cf(self.index.cf(CHUNKS), id.as_bytes());
        self.ops.push(Op::DropEntry { id: *id, pack });
    }

    /// Empties the chunks, packs, tombstones and the record of applied
    /// segments: the first step of applying the newest full segment.
    fn wipe(&mut self) {
        let index = self.index;
        for family in [CHUNKS, PACKS] {
            self.inner
                .delete_range_cf(index.cf(family), &[][..], &[0xffu8; 33][..]);
        }
        for (from, to) in [(APPLIED, APPLIED_END), (RETIRED, RETIRED_END)] {
            self.inner
                .delete_range_cf(index.cf(META), from.as_bytes(), to.as_bytes());
        }
        self.wiped = true;
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

/// How [`Index::open`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
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
    /// Commits so far (kept in `meta` too), held across each commit so
    /// the stored count only grows: what a saved Bloom filter is stamped
    /// with.
    generation: Mutex<u64>,
    /// Where each commit first writes its segment (writers only).
    segments: Option<Arc<dyn MetaStore>>,
    /// Segments this index applied that a catch-up found gone from the
    /// home and covered by no full segment there (see
    /// [`take_gone`](Self::take_gone)).
    gone: Mutex<Vec<String>>,
}

/// The `meta` key counting commits, over the index's whole life.
const GENERATION: &str = "generation";

/// `meta` keys `applied/<segment name>`: the segments this index holds
/// (the value is empty, or `c` for one a full segment covered).
const APPLIED: &str = "applied/";
/// Just past every `applied/` key.
const APPLIED_END: &str = "applied0";
/// The value of an `applied/` key for a covered segment.
const COVERED: &[u8] = b"c";
/// The value of an `applied/` key for a full segment written before
/// covers: it covers every name before its own.
const LEGACY_FULL: &[u8] = b"f";

fn applied_key(name: &str) -> String {
    format!("{APPLIED}{name}")
}

/// `meta` keys `retired/<pack hex>`: tombstones of retired packs, which
/// no segment met later (in any order) brings back.
/// `meta` keys `forgotten/<snapshot id>`: snapshots this index saw
/// forgotten (a record of one that comes back is not one to adopt).
const FORGOTTEN: &str = "forgotten/";

const RETIRED: &str = "retired/";
/// Just past every `retired/` key.
const RETIRED_END: &str = "retired0";

fn retired_key(pack: &PackId) -> String {
    format!("{RETIRED}{}", pack.to_hex())
}

/// Reads and decodes the segment `name` of `home`.
#[cfg(feature = "engine")]
fn read_segment(home: &dyn MetaStore, name: &str) -> Result<Segment> {
    let key = format!("{}{name}", segment::FOLDER);
    Segment::decode(&home.get(&key)?, &key)
}

/// Times a catch-up lists the home again after a segment it listed was
/// compacted away before it could fetch it.
const CATCH_UP_RELISTS: u32 = 5;

/// Segments fetched at a time when catching up (then applied, in order).
const CATCH_UP_BATCH: usize = 256;
/// Fetches in flight at once. On a real cluster a small object's GET can
/// take 40 ms: a fresh cache of a repository with 84 segments (1 GiB
/// ingested) read them in 0.23 s with 16 in flight, 0.08 s with 64.
const CATCH_UP_READERS: usize = 64;

/// Reads the segments `names` of `home`, in order, several at once.
#[cfg(feature = "engine")]
fn read_segments(home: &dyn MetaStore, names: &[&str]) -> Result<Vec<Segment>> {
    let keys: Vec<String> = names
        .iter()
        .map(|name| format!("{}{name}", segment::FOLDER))
        .collect();
    crate::store::get_many(home, &keys, CATCH_UP_READERS)
        .into_iter()
        .zip(&keys)
        .map(|(bytes, key)| Segment::decode(&bytes?, key))
        .collect()
}

#[cfg(feature = "engine")]
impl Index {
    /// Opens the index at `path` for `access`; one process at a time.
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(access == Access::Create);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        // Every family flushes in the same step, so that the table files
        // never hold the chunks as of one commit and the packs as of
        // another.
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
        let db = DB::open_cf(&opts, path, FAMILIES).map_err(|e| Error::Index {
            path: path.to_path_buf(),
            message: e.into_string(),
        })?;
        let mut index = Index {
            db,
            path: path.to_path_buf(),
            crash_points: None,
            packs: RwLock::default(),
            generation: Mutex::new(0),
            gone: Mutex::default(),
            segments: None,
        };
        let packs = index
            .packs()?
            .into_iter()
            .map(|(id, info)| (id, info.shard));
        index.packs = RwLock::new(packs.collect());
        index.generation = Mutex::new(index.counter(GENERATION)?);
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

    /// Writes each commit's segment to `home` before the commit itself.
    #[must_use]
    pub fn with_segments(mut self, home: Arc<dyn MetaStore>) -> Self {
        self.segments = Some(home);
        self
    }

    /// Brings this index up to date with the segments in `home` (named
    /// `names`, as [`segment::names`] lists them): the newest full segment
    /// first (starting over from it when it is new here), then every other
    /// segment it does not cover and this index has not applied, in name
    /// order (which does not matter, see [`apply`](Self::apply)). An older
    /// full segment it does not cover (a compaction that raced it) is
    /// applied like any other, on top. Returns how many it applied.
    ///
    /// A cache that holds a segment the home lacks and the newest full one
    /// does not cover (the home was put back from an older copy, or its
    /// segments were tampered with) is of another history: it is emptied
    /// and filled again from the home.
    pub fn catch_up(&self, home: &dyn MetaStore, names: &[String]) -> Result<u64> {
        self.catch_up_with(home, names, &mut |_| {})
    }

    /// [`catch_up`](Self::catch_up), telling `added` every id a segment
    /// points somewhere (a superset of what entered the index), so that a
    /// Bloom filter follows without a rebuild.
    ///
    /// A segment listed but gone when fetched was compacted away meanwhile
    /// (by a gc, which does not wait for readers): the home is listed again
    /// and the newer full segment that covers it is applied instead.
    pub fn catch_up_with(
        &self,
        home: &dyn MetaStore,
        names: &[String],
        added: &mut dyn FnMut(&ChunkId),
    ) -> Result<u64> {
        let mut applied = 0;
        let mut listed = std::borrow::Cow::Borrowed(names);
        let mut attempt = 0;
        loop {
            match self.catch_up_once(home, &listed, added, &mut applied) {
                Err(e) if crate::store::is_not_found(&e) && attempt < CATCH_UP_RELISTS => {
                    attempt += 1;
                    listed = std::borrow::Cow::Owned(segment::names(home)?);
                }
                other => return other.map(|()| applied),
            }
        }
    }

    /// One pass of [`catch_up_with`](Self::catch_up_with) over `names`,
    /// counting the segments it applies in `applied`.
    fn catch_up_once(
        &self,
        home: &dyn MetaStore,
        names: &[String],
        added: &mut dyn FnMut(&ChunkId),
        applied: &mut u64,
    ) -> Result<()> {
        let newest = names.iter().rev().find(|n| segment::is_full(n));
        let mut gone = self.applied_gone(names)?;
        if let Some(full) = newest {
            let fresh = !self.has_applied(full)?;
            if fresh || !gone.is_empty() {
                let segment = read_segment(home, full)?;
                let covered: HashSet<&str> = segment.covers().collect();
                // Before covers were written down, a full segment covered
                // every name before its own.
                let legacy = !segment.ops.iter().any(|o| matches!(o, Op::Covers(_)));
                gone.retain(|name| !(covered.contains(name.as_str()) || legacy && name < full));
                self.apply(full, &segment, true, added)?;
                *applied += 1;
            }
        }
        if !gone.is_empty() {
            self.gone
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(gone);
        }
        let legacy = match newest {
            Some(full) => self.covers_legacy(full)?,
            None => false,
        };
        let mut todo = Vec::new();
        for name in names {
            if Some(name) == newest || self.has_applied(name)? {
                continue;
            }
            // Before covers were written down, a full segment covered
            // every name before its own.
            if legacy && newest.is_some_and(|full| name < full) {
                continue;
            }
            todo.push(name.as_str());
        }
        // Fetched many at a time (each is a round trip to an object
        // store), applied one by one.
        for batch in todo.chunks(CATCH_UP_BATCH) {
            for (name, segment) in batch.iter().zip(read_segments(home, batch)?) {
                self.apply(name, &segment, false, added)?;
                *applied += 1;
            }
        }
        Ok(())
    }

    /// True when the applied full segment `full` had no covers (it was
    /// written before them).
    fn covers_legacy(&self, full: &str) -> Result<bool> {
        Ok(self.meta(&applied_key(full))?.as_deref() == Some(LEGACY_FULL))
    }

    /// The `meta` value under `key`.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(META), key).map_err(|e| self.err(e))
    }

    /// Every `meta` key under `prefix` (the rest of it, as text) with its
    /// value, in key order.
    fn meta_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(META), prefix) {
            let (key, value) = item.map_err(|e| self.err(e))?;
            let Some(rest) = key
                .strip_prefix(prefix.as_bytes())
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                break;
            };
            out.push((rest.to_string(), value.to_vec()));
        }
        Ok(out)
    }

    /// Applies segment `name` in one commit, starting from an empty index
    /// when `wipe`. The result does not depend on the order in which a
    /// cache meets segments, since other processes write them at once and
    /// a slow one may land after a later one was applied:
    ///
    /// 1. every pack it retires gets a tombstone (forever: a segment met
    ///    later that adds it again is ignored for it);
    /// 2. packs it adds that are not retired join, and each of their
    ///    chunks points there unless it already points into a live pack
    ///    (the first live copy met stays);
    /// 3. a `Locate` points a chunk at a live copy, whatever it pointed at;
    /// 4. forgets and retires drop a chunk's entry only where it points
    ///    into the pack they name, so a copy elsewhere is never lost.
    ///
    /// A full segment also marks the segments it covers as applied.
    fn apply(
        &self,
        name: &str,
        segment: &Segment,
        wipe: bool,
        added: &mut dyn FnMut(&ChunkId),
    ) -> Result<()> {
        for op in &segment.ops {
            match op {
                Op::AddPack { entries, .. } => entries.iter().for_each(|e| added(&e.id)),
                Op::Locate(loc) => added(&loc.entry.id),
                _ => {}
            }
        }
        let mut batch = self.batch();
        if wipe {
            batch.wipe();
        }
        let retiring: HashSet<PackId> = segment
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::RetirePack { pack, .. } => Some(*pack),
                _ => None,
            })
            .collect();
        for pack in &retiring {
            batch.tombstone(*pack);
            batch.retired.push((*pack, None));
        }
        let dead = |pack: &PackId| -> Result<bool> {
            Ok(retiring.contains(pack) || (!wipe && self.is_retired(pack)?))
        };
        for op in &segment.ops {
            match op {
                Op::AddPack { pack, info, .. } if !dead(pack)? => {
                    batch.inner.put_cf(self.cf(PACKS), pack.0, info.encode());
                    batch.published.push((*pack, info.shard));
                }
                Op::Covers(names) => {
                    for covered in names {
                        batch
                            .inner
                            .put_cf(self.cf(META), applied_key(covered), COVERED);
                    }
                }
                _ => {}
            }
        }
        let touched = self.settle_entries(&mut batch, segment, &dead, &retiring, wipe)?;
        // A tombstone without ids (a full segment's) for a pack this index
        // holds: an older full segment applied on top, from a compaction
        // that raced the newest one. Its entries are found the slow way
        // (those the segment touched are settled already).
        let orphaned: HashSet<PackId> = segment
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::RetirePack { pack, ids } if ids.is_empty() && !wipe => Some(*pack),
                _ => None,
            })
            .filter(|pack| self.pack_shard(pack).is_some())
            .collect();
        if !orphaned.is_empty() {
            let chunks = self.cf(CHUNKS);
            self.for_each_chunk(|id, value| {
                if touched.binary_search(&id).is_err()
                    && orphaned.contains(&Location::decode(id, value)?.pack)
                {
                    batch.inner.delete_cf(chunks, id.as_bytes());
                }
                Ok(())
            })?;
        }
        batch.replays = Some(name.to_string());
        if segment.full && !segment.ops.iter().any(|o| matches!(o, Op::Covers(_))) {
            batch.mark = LEGACY_FULL;
        }
        self.commit(batch).map(drop)
    }

    /// Steps 2 to 4 of [`apply`](Self::apply) for the chunk entries
    /// `segment` touches: read as they stand, settled, written to `batch`.
    /// Returns those ids, sorted.
    fn settle_entries(
        &self,
        batch: &mut Batch<'_>,
        segment: &Segment,
        dead: &dyn Fn(&PackId) -> Result<bool>,
        retiring: &HashSet<PackId>,
        wipe: bool,
    ) -> Result<Vec<ChunkId>> {
        let mut touched: Vec<ChunkId> = Vec::new();
        for op in &segment.ops {
            match op {
                Op::AddPack { entries, .. } => touched.extend(entries.iter().map(|e| e.id)),
                Op::RetirePack { ids, .. } => touched.extend(ids.iter().copied()),
                Op::DeleteChunk(id) | Op::DropEntry { id, .. } => touched.push(*id),
                Op::Locate(loc) => touched.push(loc.entry.id),
                Op::Covers(_) => {}
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let before = if wipe {
            vec![None; touched.len()]
        } else {
            self.chunks(&touched)?
        };
        let mut now: HashMap<ChunkId, Option<Location>> = touched
            .iter()
            .copied()
            .zip(before.iter().copied())
            .collect();
        for op in &segment.ops {
            let Op::AddPack { pack, entries, .. } = op else {
                continue;
            };
            if dead(pack)? {
                continue;
            }
            for e in entries {
                let slot = now.entry(e.id).or_default();
                let keep = match slot {
                    Some(loc) => !dead(&loc.pack)?,
                    None => false,
                };
                if !keep {
                    *slot = Some(Location {
                        pack: *pack,
                        entry: *e,
                    });
                }
            }
        }
        for op in &segment.ops {
            if let Op::Locate(loc) = op {
                if !dead(&loc.pack)? {
                    now.insert(loc.entry.id, Some(*loc));
                }
            }
        }
        for op in &segment.ops {
            let drops: Vec<(ChunkId, Option<PackId>)> = match op {
                Op::DeleteChunk(id) => vec![(*id, None)],
                Op::DropEntry { id, pack } => vec![(*id, Some(*pack))],
                Op::RetirePack { pack, ids } => ids.iter().map(|id| (*id, Some(*pack))).collect(),
                _ => continue,
            };
            for (id, pack) in drops {
                let slot = now.entry(id).or_default();
                if pack.is_none() || slot.is_some_and(|l| Some(l.pack) == pack) {
                    *slot = None;
                }
            }
        }
        // Whatever still points into a pack retired here has nowhere to go.
        for slot in now.values_mut() {
            if slot.is_some_and(|l| retiring.contains(&l.pack)) {
                *slot = None;
            }
        }
        let chunks = self.cf(CHUNKS);
        for (id, was) in touched.iter().zip(before) {
            let after = now.get(id).copied().flatten();
            if after != was || wipe {
                match after {
                    Some(loc) => batch.inner.put_cf(chunks, id.as_bytes(), loc.encode()),
                    None => batch.inner.delete_cf(chunks, id.as_bytes()),
                }
            }
        }
        Ok(touched)
    }

    /// True when `pack` has a tombstone here.
    fn is_retired(&self, pack: &PackId) -> Result<bool> {
        Ok(self.meta(&retired_key(pack))?.is_some())
    }

    /// Writes a full segment of the index as it stands to `home`: every
    /// live pack with the entries that point into it, every tombstone, and
    /// the names of the segments it `covers` (which must all be applied
    /// here, or be replaced by this index, as `repair` does). Marks it
    /// applied and returns its name; the covered segments may then be
    /// deleted.
    pub fn write_full_segment(&self, home: &dyn MetaStore, covers: &[String]) -> Result<String> {
        let mut entries: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        self.for_each_chunk(|id, value| {
            let loc = Location::decode(id, value)?;
            entries.entry(loc.pack).or_default().push(loc.entry);
            Ok(())
        })?;
        let mut ops: Vec<Op> = self
            .packs()?
            .into_iter()
            .map(|(pack, info)| Op::AddPack {
                pack,
                info,
                entries: entries.remove(&pack).unwrap_or_default(),
            })
            .collect();
        for (hex, _) in self.meta_under(RETIRED)? {
            let pack = PackId::from_hex(&hex)
                .ok_or_else(|| Error::corrupt("index tombstone", &hex, "not a pack id"))?;
            ops.push(Op::RetirePack {
                pack,
                ids: Vec::new(),
            });
        }
        // What earlier full segments covered is carried forward, so that
        // a cache that applied a segment two compactions ago still finds
        // its absence accounted for (see `repo::history`).
        let mut all: Vec<String> = covers.to_vec();
        all.extend(
            self.meta_under(APPLIED)?
                .into_iter()
                .filter(|(_, value)| value == COVERED)
                .map(|(name, _)| name),
        );
        all.sort();
        all.dedup();
        let covers = &all[..];
        ops.push(Op::Covers(covers.to_vec()));
        let name = segment::full_name();
        segment::put(home, &name, &Segment { full: true, ops })?;
        let mut batch = self.batch();
        batch
            .inner
            .delete_range_cf(self.cf(META), APPLIED.as_bytes(), APPLIED_END.as_bytes());
        for c in covers {
            batch.inner.put_cf(self.cf(META), applied_key(c), COVERED);
        }
        batch.replays = Some(name.clone());
        let _ = self.commit(batch)?;
        Ok(name)
    }

    /// Of `names`, those this index has applied (or had covered).
    pub fn applied_of(&self, names: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for name in names {
            if self.has_applied(name)? {
                out.push(name.clone());
            }
        }
        Ok(out)
    }

    /// True when this index has applied (not merely had covered) a
    /// segment that is not in `names`, the home's: it is of another
    /// history.
    /// The segments this index applied (not merely had covered) that
    /// `names` (sorted) lacks: compacted away, or lost.
    fn applied_gone(&self, names: &[String]) -> Result<Vec<String>> {
        Ok(self
            .meta_under(APPLIED)?
            .into_iter()
            .filter(|(name, value)| {
                value != COVERED && names.binary_search_by(|l| l.cmp(name)).is_err()
            })
            .map(|(name, _)| name)
            .collect())
    }

    /// The segments catch-ups found gone from the home that no full
    /// segment there covers, since the last call: the home lost them, or
    /// was put back from an older copy (the index is then filled again
    /// from what the home holds).
    pub fn take_gone(&self) -> Vec<String> {
        std::mem::take(
            &mut self
                .gone
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Removes a snapshot record and remembers that it was forgotten
    /// (synced).
    pub fn forget_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let mut batch = self.batch();
        batch.inner.delete_cf(self.cf(SNAPSHOTS), id.as_bytes());
        batch
            .inner
            .put_cf(self.cf(META), format!("{FORGOTTEN}{id}"), b"");
        self.commit(batch).map(drop)
    }

    /// The snapshots this index saw forgotten.
    pub fn forgotten(&self) -> Result<HashSet<SnapshotId>> {
        Ok(self
            .meta_under(FORGOTTEN)?
            .into_iter()
            .filter_map(|(hex, _)| hex.parse().ok())
            .collect())
    }

    fn has_applied(&self, name: &str) -> Result<bool> {
        Ok(self.meta(&applied_key(name))?.is_some())
    }

    /// Commits so far: a saved Bloom filter stamped with another number
    /// is stale.
    pub fn generation(&self) -> u64 {
        *self
            .generation
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

    /// What the index knows of `pack`, if anything.
    pub fn pack(&self, pack: &PackId) -> Result<Option<PackInfo>> {
        match self
            .db
            .get_pinned_cf(self.cf(PACKS), pack.0)
            .map_err(|e| self.err(e))?
        {
            Some(v) => Ok(Some(PackInfo::decode(&v, &pack.to_hex())?)),
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
            retired_ids: Vec::new(),
            ops: Vec::new(),
            replays: None,
            mark: b"",
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
            retired_ids,
            mut ops,
            replays,
            mark,
            wiped,
            ..
        } = batch;
        // A retired pack's ids that this index has elsewhere (a copy
        // another writer stored at the same time): another cache may point
        // into the retired pack for them, so the segment says where they
        // are, and that cache moves over instead of losing them.
        let leaving: HashSet<PackId> = retired_ids.iter().map(|(p, _)| *p).collect();
        for (_, ids) in &retired_ids {
            for loc in self.chunks(ids)?.into_iter().flatten() {
                if !leaving.contains(&loc.pack) {
                    ops.push(Op::Locate(loc));
                }
            }
        }
        // The segment first: it is the truth, this index its cache. A
        // crash after it leaves the segment for the next writer to apply.
        // Written before the count is taken, so that commits from several
        // threads (one per shard's pack) sync their segments in parallel;
        // their order does not matter, they touch different packs.
        let applied = match (replays, &self.segments) {
            (Some(name), _) => Some(name),
            (None, Some(home)) if !ops.is_empty() => {
                let name = segment::new_name();
                segment::put(home.as_ref(), &name, &Segment { full: false, ops })?;
                Some(name)
            }
            _ => None,
        };
        if let Some(name) = applied {
            inner.put_cf(self.cf(META), applied_key(&name), mark);
        }
        let mut generation = self
            .generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = *generation + 1;
        inner.put_cf(self.cf(META), GENERATION, next.to_le_bytes());
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
        *generation = next;
        drop(generation);
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
        self.put_snapshots([(id, record)])
    }

    /// Adds (or replaces) snapshot records, in one commit (none when
    /// there are none).
    pub fn put_snapshots<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a SnapshotId, &'a [u8])>,
    ) -> Result<()> {
        let mut batch = self.batch();
        let mut any = false;
        for (id, record) in records {
            batch.put_snapshot(id, record);
            any = true;
        }
        if !any {
            return Ok(());
        }
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
        match self.meta(name)? {
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

    /// Entries for `ids`, one after the other in a pack.
    #[cfg(feature = "engine")]
    fn entries(ids: &[ChunkId]) -> Vec<PackEntry> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| PackEntry {
                id: *id,
                offset: 8 + i as u64 * 100,
                raw_len: 50,
                stored_len: 50,
                flags: 0,
            })
            .collect()
    }

    #[test]
    #[cfg(feature = "engine")]
    fn segments_applied_in_any_order_give_one_index_and_never_a_dangling_entry() {
        use crate::store::{LocalStore, OsFs};
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap());
        let open = |name: &str| {
            Index::open(&dir.path().join(name), Access::Create)
                .unwrap()
                .with_segments(home.clone())
        };
        let (x, y, z) = (ChunkId::of(b"x"), ChunkId::of(b"y"), ChunkId::of(b"z"));
        let (pa, pb) = (PackId([1; 16]), PackId([2; 16]));
        // Two writers store x at the same time, each in its own pack.
        let in_a = entries(&[x, y]);
        open("w1")
            .commit_pack(pa, &PackInfo::of(ShardId(0), 300, &in_a), &in_a)
            .unwrap();
        let in_b = entries(&[x, z]);
        open("w2")
            .commit_pack(pb, &PackInfo::of(ShardId(0), 300, &in_b), &in_b)
            .unwrap();
        // gc, from a cache that saw pa's x first, rewrites pb: its x is
        // the copy it does not use, z moves to a new pack.
        let gc = open("gc");
        gc.catch_up(home.as_ref(), &segment::names(home.as_ref()).unwrap())
            .unwrap();
        let first = gc.chunk(&x).unwrap().unwrap().pack;
        let (kept, other) = if first == pa { (pa, pb) } else { (pb, pa) };
        let rest = if other == pb { z } else { y };
        let copy = entries(&[rest]);
        let mut batch = gc.batch();
        let new = PackId([3; 16]);
        batch.index_pack(new, &PackInfo::of(ShardId(0), 200, &copy), &copy);
        let all = if other == pb { vec![x, z] } else { vec![x, y] };
        batch.retire_pack(other, all, home.clone());
        let _ = gc.commit(batch).unwrap();

        let names: Vec<String> = segment::names(home.as_ref()).unwrap();
        assert_eq!(names.len(), 3, "one segment a commit");
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let mut states = Vec::new();
        for (n, order) in orders.iter().enumerate() {
            let cache = Index::open(&dir.path().join(format!("c{n}")), Access::Create).unwrap();
            for &i in order {
                let name = &names[i];
                let key = format!("{}{name}", segment::FOLDER);
                let bytes = MetaStore::get(home.as_ref(), &key).unwrap();
                let seg = Segment::decode(&bytes, &key).unwrap();
                cache.apply(name, &seg, false, &mut |_| {}).unwrap();
            }
            let state: Vec<Option<PackId>> = [x, y, z]
                .iter()
                .map(|id| cache.chunk(id).unwrap().map(|l| l.pack))
                .collect();
            for pack in state.iter().flatten() {
                assert!(
                    cache.pack_shard(pack).is_some(),
                    "{order:?}: dangling {pack}"
                );
            }
            assert!(
                cache.pack_shard(&other).is_none(),
                "{order:?}: retired pack back"
            );
            states.push(state);
        }
        let expected = if other == pb {
            vec![Some(kept), Some(kept), Some(new)]
        } else {
            vec![Some(kept), Some(new), Some(kept)]
        };
        for (state, order) in states.iter().zip(orders) {
            assert_eq!(state, &expected, "order {order:?}");
        }
    }

    #[test]
    #[cfg(feature = "engine")]
    fn two_compactions_at_once_never_bring_back_what_one_retired() {
        use crate::store::{LocalStore, OsFs};
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap());
        let open = |name: &str| {
            Index::open(&dir.path().join(name), Access::Create)
                .unwrap()
                .with_segments(home.clone())
        };
        let names = || segment::names(home.as_ref()).unwrap();
        let (x, y) = (ChunkId::of(b"x"), ChunkId::of(b"y"));
        let (pa, pb) = (PackId([1; 16]), PackId([2; 16]));
        let writer = open("writer");
        for (pack, id) in [(pa, x), (pb, y)] {
            let e = entries(&[id]);
            writer
                .commit_pack(pack, &PackInfo::of(ShardId(0), 200, &e), &e)
                .unwrap();
        }
        // Two compactors see the same two segments...
        let (one, two) = (open("one"), open("two"));
        for c in [&one, &two] {
            c.catch_up(home.as_ref(), &names()).unwrap();
        }
        let seen = names();
        // ...then the first retires pa, compacts everything it applied and
        // deletes what it covered, while the second, not knowing, compacts
        // what it saw and deletes that.
        let mut batch = one.batch();
        batch.drop_entry(&x, pa);
        batch.retire_pack(pa, vec![x], home.clone());
        let _ = one.commit(batch).unwrap();
        let covered = one.applied_of(&names()).unwrap();
        one.write_full_segment(home.as_ref(), &covered).unwrap();
        segment::delete(home.as_ref(), &covered).unwrap();
        let stale = two.applied_of(&seen).unwrap();
        two.write_full_segment(home.as_ref(), &stale).unwrap();
        segment::delete(home.as_ref(), &stale).unwrap();

        // A new cache starts from the newest full segment (the second's,
        // which lists pa) and applies the first's on top: pa stays retired.
        let left = names();
        assert_eq!(left.len(), 2, "{left:?}");
        let fresh = open("fresh");
        fresh.catch_up(home.as_ref(), &left).unwrap();
        assert!(fresh.pack_shard(&pa).is_none(), "a retired pack came back");
        assert_eq!(fresh.chunk(&x).unwrap(), None);
        assert_eq!(fresh.chunk(&y).unwrap().map(|l| l.pack), Some(pb));
    }

    #[test]
    #[cfg(feature = "engine")]
    fn a_catch_up_that_meets_a_segment_compacted_away_lists_again() {
        use crate::store::{LocalStore, OsFs};
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap());
        let open = |name: &str| {
            Index::open(&dir.path().join(name), Access::Create)
                .unwrap()
                .with_segments(home.clone())
        };
        let writer = open("writer");
        let ids: Vec<ChunkId> = (0..3u8).map(|i| ChunkId::of(&[i])).collect();
        for (i, id) in ids.iter().enumerate() {
            let e = entries(&[*id]);
            let pack = PackId([i as u8 + 1; 16]);
            writer
                .commit_pack(pack, &PackInfo::of(ShardId(0), 200, &e), &e)
                .unwrap();
        }
        // A reader lists the segments; a gc compacts them and deletes them
        // before the reader fetches one.
        let listed = segment::names(home.as_ref()).unwrap();
        let covered = writer.applied_of(&listed).unwrap();
        writer.write_full_segment(home.as_ref(), &covered).unwrap();
        segment::delete(home.as_ref(), &covered).unwrap();
        let reader = open("reader");
        reader.catch_up(home.as_ref(), &listed).unwrap();
        for id in &ids {
            assert!(reader.chunk(id).unwrap().is_some());
        }
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
