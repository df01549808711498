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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[cfg(feature = "engine")]
use rocksdb::{BlockBasedOptions, ColumnFamily, Options, DB};

use crate::error::{Error, Result};
use crate::format::codec::Reader;
use crate::id::ChunkId;
#[cfg(feature = "engine")]
pub mod base;
#[cfg(feature = "engine")]
mod commit;
#[cfg(feature = "engine")]
pub mod compact;
#[cfg(feature = "engine")]
mod overlay;
#[cfg(feature = "engine")]
pub mod records;
#[cfg(feature = "engine")]
mod replay;
#[cfg(feature = "engine")]
pub mod scratch;
pub mod segment;
#[cfg(feature = "engine")]
pub mod summary;
#[cfg(feature = "engine")]
pub mod sweep;

#[cfg(feature = "engine")]
pub use commit::{Batch, Retired};

#[cfg(feature = "engine")]
use crate::format::family::{Plain, Sealer};
use crate::format::snapshot::SnapshotId;
pub use crate::format::values::{Location, PackInfo};
use crate::ring::ShardId;
use crate::store::{Fs, MetaStore, PackId};

const CHUNKS: &str = "chunks";
const PACKS: &str = "packs";
const SNAPSHOTS: &str = "snapshots";
const META: &str = "meta";
const FAMILIES: [&str; 4] = [CHUNKS, PACKS, SNAPSHOTS, META];

/// Ids looked up in one batched read by [`Index::chunks`].
pub const LOOKUP_BATCH: usize = 4096;

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
    /// home and covered by no full segment or manifest there (see
    /// [`take_gone`](Self::take_gone)).
    gone: Mutex<Vec<String>>,
    /// Opens the home's manifests and families.
    sealer: Arc<dyn Sealer + Send + Sync>,
    /// The home whose families this index is an overlay on (see
    /// `overlay.rs`); without one (tests, `repair`'s index made from the
    /// packs), loading a manifest copies its entries in.
    home: Option<Arc<dyn MetaStore>>,
    /// The summary of the base manifest's families, once loaded.
    summary: RwLock<Option<Arc<summary::Summary>>>,
    /// Where the summaries read are kept on this machine.
    shelf: Option<Arc<dyn summary::Shelf>>,
    /// The reads of summaries this index has replaced since.
    earlier_reads: Mutex<summary::IndexReads>,
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

/// The value of a `chunks` key that says "no entry", over a family
/// beneath an overlay that may hold one (a location is never empty).
const GONE: &[u8] = &[];

/// `meta` keys `forgotten/<snapshot id>`: snapshots this index saw
/// forgotten (a record of one that comes back is not one to adopt).
const FORGOTTEN: &str = "forgotten/";

/// `meta` keys `retired/<pack hex>`: tombstones of retired packs, which
/// no segment met later (in any order) brings back.
const RETIRED: &str = "retired/";
/// Just past every `retired/` key.
const RETIRED_END: &str = "retired0";

fn retired_key(pack: &PackId) -> String {
    format!("{RETIRED}{}", pack.to_hex())
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
            sealer: Arc::new(Plain),
            home: None,
            summary: RwLock::new(None),
            shelf: None,
            earlier_reads: Mutex::default(),
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

    /// Opens the home's manifests and families with `sealer` (the
    /// repository's key; plain by default).
    #[must_use]
    pub fn with_sealer(mut self, sealer: Arc<dyn Sealer + Send + Sync>) -> Self {
        self.sealer = sealer;
        self
    }

    /// Makes this index an overlay on the families of `home`: loading a
    /// manifest keeps its summary, not its entries, and lookups the
    /// overlay cannot answer read the one family block that would.
    #[must_use]
    pub fn with_home(mut self, home: Arc<dyn MetaStore>) -> Self {
        self.home = Some(home);
        self
    }

    /// Keeps the summaries this index reads on `shelf` (its cache slot),
    /// so a family version is read from the home once.
    #[must_use]
    pub fn with_shelf(mut self, shelf: Arc<dyn summary::Shelf>) -> Self {
        self.shelf = Some(shelf);
        self
    }

    /// Writes each commit's segment to `home` before the commit itself.
    #[must_use]
    pub fn with_segments(mut self, home: Arc<dyn MetaStore>) -> Self {
        self.segments = Some(home);
        self
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
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Ok(Some(Location::decode(*id, &v)?)),
            None => {
                let mut out = [None];
                self.locate_beneath(std::slice::from_ref(id), &[0], &mut out)?;
                Ok(out[0])
            }
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
    /// most [`LOOKUP_BATCH`] ids each, then, for the ids this index holds
    /// nothing of, the families it is an overlay on.
    pub fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        let cf = self.cf(CHUNKS);
        let mut out = Vec::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for batch in ids.chunks(LOOKUP_BATCH) {
            let keys = batch.iter().map(|id| id.as_bytes().as_slice());
            for (r, id) in self
                .db
                .batched_multi_get_cf(cf, keys, false)
                .into_iter()
                .zip(batch)
            {
                out.push(match r.map_err(|e| self.err(e))? {
                    Some(v) if v.is_empty() => None,
                    Some(v) => Some(Location::decode(*id, &v)?),
                    None => {
                        unknown.push(out.len());
                        None
                    }
                });
            }
        }
        if !unknown.is_empty() {
            self.locate_beneath(ids, &unknown, &mut out)?;
        }
        Ok(out)
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

    /// Where every chunk this index holds whose copy lies in one of
    /// `packs` is, and the ids it holds "gone" (see `overlay.rs`).
    fn held_in(
        &self,
        packs: &std::collections::HashSet<PackId>,
    ) -> Result<(Vec<Location>, std::collections::HashSet<ChunkId>)> {
        let mut out = Vec::new();
        let mut gone = std::collections::HashSet::new();
        self.for_each_held(|id, v| {
            match v {
                Some(v) => {
                    let loc = Location::decode(id, v)?;
                    if packs.contains(&loc.pack) {
                        out.push(loc);
                    } else {
                        gone.insert(id);
                    }
                }
                None => drop(gone.insert(id)),
            }
            Ok(())
        })?;
        Ok((out, gone))
    }

    /// Calls `f` with every chunk id this index holds (not those of the
    /// families beneath an overlay) and its encoded location.
    fn for_each_chunk(&self, mut f: impl FnMut(ChunkId, &[u8]) -> Result<()>) -> Result<()> {
        // An overlay's "gone" over a family's entry is no entry.
        self.for_each_held(|id, v| v.map_or(Ok(()), |v| f(id, v)))
    }

    /// Calls `f` with every chunk id this index holds anything of: its
    /// encoded location, or `None` for a "gone" mark.
    fn for_each_held(&self, mut f: impl FnMut(ChunkId, Option<&[u8]>) -> Result<()>) -> Result<()> {
        for item in self
            .db
            .iterator_cf(self.cf(CHUNKS), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = ChunkId::from_slice(&k).ok_or_else(|| {
                Error::corrupt("chunk index key", hex::encode(&k), "not 32 bytes")
            })?;
            f(id, (!v.is_empty()).then_some(&v[..]))?;
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
    use crate::store::PackEntry;
    use segment::Segment;

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
