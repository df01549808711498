//! Storing objects: decide what is new, pack it, commit it.
//!
//! The path of a chunk: hash → "seen in this session?" → locality cache
//! (the ids of packs this stream just ran through, see `locality.rs`) →
//! Bloom filter ("surely new" skips the index) → RocksDB lookup → ring → the shard's open
//! pack of the object's kind (trees are packed apart from data). A pack that reaches its target size is sealed (or the fullest one,
//! when the open packs of all shards hold two packs' worth), written durably,
//! and only then are its index entries committed in one synced batch; only
//! after that are its ids added to the Bloom filter (invariant 2).
//!
//! Many threads store at once. A chunk id is *claimed* in the `pending` set
//! by the one thread that will write it, so two files sharing a new chunk
//! store it once. An id stays pending until its pack is committed, so a
//! concurrent lookup always finds it in one of the two places.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crate::engine::Engine;
use crate::error::Result;
use crate::format::record::{self, ObjectKind};
use crate::format::snapshot::BloomStats;
use crate::id::ChunkId;
use crate::locality::Locality;
use crate::store::read_entries;
use crate::store::{PackBuilder, PackId};

/// What a writer added.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriterStats {
    pub new_objects: u64,
    pub new_raw: u64,
    pub new_data_raw: u64,
    pub new_stored: u64,
    pub bloom: BloomStats,
}

/// Window buffers kept for reuse: two per large file being read, on each
/// of two cores.
const SPARE_WINDOWS: usize = 4;

/// True when `data` is all zeros: most data is told by its first byte;
/// the rest is compared a block at a time, at memory speed.
pub(crate) fn is_zeros(data: &[u8]) -> bool {
    data.first().is_none_or(|&b| b == 0)
        && data
            .chunks(4096)
            .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// What the open packs may hold together: two packs' worth, however many
/// shards new chunks are spread over. With one or two shards every pack
/// fills to `pack_size`; with more, the fullest is sealed early once they
/// hold the budget together (with four shards, at 8 MiB or more of 16), so
/// an ingest's memory does not grow with the number of shards.
fn open_budget(pack_size: usize) -> usize {
    pack_size.saturating_mul(2)
}

/// Stores objects into a repository; see the module docs.
pub(crate) struct ObjectWriter<'r> {
    repo: &'r Engine,
    pending: Mutex<HashSet<ChunkId>>,
    /// Two open packs per shard, in shard order: data, then trees (see
    /// [`slot`](Self::slot)).
    open: Vec<Mutex<PackBuilder>>,
    /// Bytes in all of `open` together.
    buffered: AtomicUsize,
    /// Buffers of packs written, and of large files' windows read, kept
    /// for the next: allocating and freeing buffers this large over and
    /// over leaves much more memory resident than is ever in use.
    spare_packs: Mutex<Vec<Vec<u8>>>,
    spare_windows: Mutex<Vec<Vec<u8>>>,
    /// What `open` may hold together before its fullest pack is sealed
    /// early (see [`open_budget`]).
    budget: usize,
    new_objects: AtomicU64,
    new_raw: AtomicU64,
    new_data_raw: AtomicU64,
    new_stored: AtomicU64,
    lookups: AtomicU64,
    skipped: AtomicU64,
    locality: Mutex<Locality>,
    false_positives: AtomicU64,
    /// The ids of chunks of zeros met so far, by length.
    zero_ids: Mutex<std::collections::HashMap<usize, ChunkId>>,
    /// Count and compress new objects, write nothing (`ingest --dry-run`):
    /// a new id stays claimed, so it is counted once.
    dry_run: bool,
}

impl<'r> ObjectWriter<'r> {
    pub fn new(repo: &'r Engine) -> Self {
        ObjectWriter {
            repo,
            pending: Mutex::new(HashSet::new()),
            open: (0..repo.shards.len() * 2)
                .map(|_| Mutex::new(PackBuilder::new()))
                .collect(),
            buffered: AtomicUsize::new(0),
            spare_packs: Mutex::default(),
            spare_windows: Mutex::default(),
            budget: open_budget(repo.config.pack_size as usize),
            new_objects: AtomicU64::new(0),
            new_raw: AtomicU64::new(0),
            new_data_raw: AtomicU64::new(0),
            new_stored: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            locality: Mutex::default(),
            false_positives: AtomicU64::new(0),
            zero_ids: Mutex::default(),
            dry_run: false,
        }
    }

    /// A writer that only counts: what [`store`](Self::store) would add,
    /// compressed as it would be, with nothing written.
    pub fn counting(repo: &'r Engine) -> Self {
        ObjectWriter {
            dry_run: true,
            ..ObjectWriter::new(repo)
        }
    }

    /// Claims `id` for this thread; false when someone already did.
    fn claim(&self, id: ChunkId) -> bool {
        self.pending.lock().expect("pending lock").insert(id)
    }

    /// True when `id` is already stored or being stored; otherwise claims it.
    ///
    /// One narrow race remains, and it is harmless: if another thread's pack
    /// holding `id` is committed (Bloom insert, then pending removal) between
    /// our Bloom check and our claim, we store `id` a second time. Both copies
    /// are valid; the index points at the later one and gc reclaims the other.
    fn known_or_claim(&self, id: ChunkId) -> Result<bool> {
        self.lookups.fetch_add(1, Relaxed);
        if self.pending.lock().expect("pending lock").contains(&id) {
            return Ok(true);
        }
        if self.locality.lock().expect("locality lock").contains(&id) {
            return Ok(true);
        }
        // A counting writer may run on a read-only handle, whose filter is
        // empty: it asks the index about every id.
        let maybe = self.dry_run
            || self.repo.bloom.read().expect("bloom lock").may_contain(&id)
            || self.repo.index.may_hold_beneath(&id)?;
        if !maybe {
            self.skipped.fetch_add(1, Relaxed);
            return Ok(!self.claim(id));
        }
        if let Some(found) = self.repo.index.chunk(&id)? {
            self.near_pack(found.pack);
            return Ok(true);
        }
        // A pack committed between our pending check and the index lookup
        // would have shown in the index, so "absent" here is a real miss.
        self.false_positives.fetch_add(1, Relaxed);
        Ok(!self.claim(id))
    }

    /// After the index found an id in `pack`: on the pack's second such
    /// hit, its ids are read from its trailer into the locality cache, so
    /// the ids stored after it are found without the index. A trailer that
    /// cannot be read only costs the cache.
    fn near_pack(&self, pack: PackId) {
        if !self.locality.lock().expect("locality lock").hit(pack) {
            return;
        }
        let Some(shard) = self.repo.index.pack_shard(&pack) else {
            return;
        };
        let Ok(shard) = self.repo.shard(shard) else {
            return;
        };
        if let Ok(entries) =
            read_entries(shard.backend.as_ref(), &pack.key(), None, self.repo.crypt())
        {
            let ids = entries.into_iter().map(|e| e.id).collect();
            self.locality.lock().expect("locality lock").load(pack, ids);
        }
    }

    /// Stores `data` unless already present; returns its id. An object
    /// larger than a record can say is refused, never truncated.
    pub fn store(&self, data: &[u8], kind: ObjectKind) -> Result<ChunkId> {
        let raw_len = record::length(data.len(), kind)?;
        let crypt = self.repo.crypt();
        // A chunk of zeros (a sparse file's holes, a disk image's free
        // space) is hashed once per length, not once per chunk.
        let id = if kind == ObjectKind::Data && is_zeros(data) {
            *self
                .zero_ids
                .lock()
                .expect("zero ids lock")
                .entry(data.len())
                .or_insert_with(|| crypt.id_of(data))
        } else {
            crypt.id_of(data)
        };
        if self.known_or_claim(id)? {
            return Ok(id);
        }
        let config = &self.repo.config;
        let stored = record::seal_for(
            crypt,
            config.hides_lengths(),
            &id,
            data,
            kind,
            config.compression,
            config.zstd_level,
        )?;
        self.new_objects.fetch_add(1, Relaxed);
        self.new_raw.fetch_add(u64::from(raw_len), Relaxed);
        if kind == ObjectKind::Data {
            self.new_data_raw.fetch_add(u64::from(raw_len), Relaxed);
        }
        self.new_stored
            .fetch_add(stored.bytes.len() as u64, Relaxed);
        if self.dry_run {
            return Ok(id);
        }

        let slot = self.slot(&id, kind);
        let full = {
            let mut pack = self.open[slot].lock().expect("pack lock");
            let before = pack.len();
            pack.add_stored(id, raw_len, &stored);
            self.buffered.fetch_add(pack.len() - before, Relaxed);
            (pack.len() >= self.repo.config.pack_size as usize).then(|| self.take(&mut pack))
        };
        if let Some(pack) = full {
            self.commit(slot, pack)?;
        } else if self.buffered.load(Relaxed) > self.budget {
            self.seal_fullest()?;
        }
        Ok(id)
    }

    /// The open pack an object goes to: its shard's (by the ring), and
    /// of that shard's two the one of its kind. Trees go to packs of their
    /// own, as in restic and Borg: a walk of the folders (every restore,
    /// `ls`, `diff`, `verify`) then reads a few dense tree packs instead of
    /// a tree here and there between the data of every pack.
    fn slot(&self, id: &ChunkId, kind: ObjectKind) -> usize {
        let shard_id = self.repo.ring.locate(id);
        let shard = self
            .repo
            .shards
            .iter()
            .position(|s| s.id == shard_id)
            .expect("the ring only names configured shards");
        shard * 2 + usize::from(kind == ObjectKind::Tree)
    }

    /// Takes an open pack out to be committed, leaving an empty one.
    fn take(&self, pack: &mut PackBuilder) -> PackBuilder {
        self.buffered.fetch_sub(pack.len(), Relaxed);
        let buf = self.spare_packs.lock().expect("spare lock").pop();
        std::mem::replace(pack, buf.map(PackBuilder::reuse).unwrap_or_default())
    }

    /// An empty buffer for a window of a large file, with at least
    /// `capacity` bytes of room.
    pub fn window(&self, capacity: usize) -> Vec<u8> {
        let mut buf = self
            .spare_windows
            .lock()
            .expect("spare lock")
            .pop()
            .unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Gives back a window buffer for the next.
    pub fn recycle_window(&self, buf: Vec<u8>) {
        let mut spare = self.spare_windows.lock().expect("spare lock");
        if spare.len() < SPARE_WINDOWS {
            spare.push(buf);
        }
    }

    /// Commits the fullest open pack before it reaches the pack size, so
    /// that the open packs of many shards together stay within the budget.
    fn seal_fullest(&self) -> Result<()> {
        let fullest = (0..self.open.len())
            .max_by_key(|&slot| self.open[slot].lock().expect("pack lock").len());
        if let Some(slot) = fullest {
            let pack = self.take(&mut self.open[slot].lock().expect("pack lock"));
            if !pack.is_empty() {
                self.commit(slot, pack)?;
            }
        }
        Ok(())
    }

    /// Seals `pack`, writes it durably to the shard of open pack `slot`,
    /// then indexes it.
    fn commit(&self, slot: usize, pack: PackBuilder) -> Result<()> {
        let shard = &self.repo.shards[slot / 2];
        let (bytes, entries) = pack.seal_with(self.repo.crypt());
        let mut batch = self.repo.index.batch();
        batch.publish_pack(shard.id, shard.backend.as_ref(), &bytes, &entries)?;
        // Into the filter before the commit: a filter saved at any
        // generation then holds every id committed by it (an id of a
        // commit that fails is only a false positive).
        let mut bloom = self.repo.bloom.write().expect("bloom lock");
        for e in &entries {
            bloom.insert(&e.id);
        }
        drop(bloom);
        self.repo.index.commit(batch)?;
        let mut pending = self.pending.lock().expect("pending lock");
        for e in &entries {
            pending.remove(&e.id);
        }
        drop(pending);
        let mut spare = self.spare_packs.lock().expect("spare lock");
        if spare.len() < self.open.len() {
            spare.push(bytes);
        }
        Ok(())
    }

    /// Commits every open pack and returns what was added.
    pub fn finish(self) -> Result<WriterStats> {
        for (slot, pack) in self.open.iter().enumerate() {
            let pack = self.take(&mut pack.lock().expect("pack lock"));
            if !pack.is_empty() {
                self.commit(slot, pack)?;
            }
        }
        Ok(WriterStats {
            new_objects: self.new_objects.load(Relaxed),
            new_raw: self.new_raw.load(Relaxed),
            new_data_raw: self.new_data_raw.load(Relaxed),
            new_stored: self.new_stored.load(Relaxed),
            bloom: BloomStats {
                lookups: self.lookups.load(Relaxed),
                skipped: self.skipped.load(Relaxed),
                false_positives: self.false_positives.load(Relaxed),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::OpenOptions;
    use crate::format::config::InitOptions;

    #[test]
    fn the_open_packs_of_many_shards_stay_within_two_packs_worth() {
        let dir = tempfile::tempdir().unwrap();
        let pack_size = 256 << 10;
        let init = InitOptions {
            shards: 8,
            pack_size,
            compression: crate::format::config::Compression::None,
            ..Default::default()
        };
        let open = OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
            ..Default::default()
        };
        let repo = Engine::init_with(dir.path().join("repo"), &init, &open).unwrap();
        let writer = ObjectWriter::new(&repo);
        // Eight shards' open packs could hold 2 MiB; two packs' worth is 512 KiB.
        let budget = 2 * pack_size as usize;
        let object = 10_000;
        let mut ids = Vec::new();
        for i in 0u32..600 {
            let mut data = i.to_le_bytes().repeat(object / 4);
            data.push(1);
            ids.push(writer.store(&data, ObjectKind::Data).unwrap());
            let held: usize = writer.open.iter().map(|p| p.lock().unwrap().len()).sum();
            assert!(
                held <= budget + object + 64,
                "{held} bytes open after {i} objects"
            );
        }
        writer.finish().unwrap();
        let packs = repo.pack_infos().unwrap();
        let shards: std::collections::HashSet<_> = packs.iter().map(|(_, p)| p.shard).collect();
        assert_eq!(shards.len(), 8, "every shard got packs");
        for id in ids {
            assert!(repo.index.chunk(&id).unwrap().is_some());
        }
    }

    #[test]
    fn a_stream_stored_again_is_found_through_its_packs_and_new_objects_among_it_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let init = InitOptions {
            shards: 2,
            pack_size: 64 << 10,
            ..Default::default()
        };
        let open = OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
            ..Default::default()
        };
        let repo = Engine::init_with(dir.path().join("repo"), &init, &open).unwrap();
        let object = |i: u32, salt: u8| {
            let mut data = i.to_le_bytes().repeat(1000);
            data.push(salt);
            data
        };
        let first = ObjectWriter::new(&repo);
        for i in 0..300 {
            first.store(&object(i, 0), ObjectKind::Data).unwrap();
        }
        first.finish().unwrap();
        // The same stream again, with new objects in between.
        let again = ObjectWriter::new(&repo);
        let mut fresh = Vec::new();
        for i in 0..300 {
            again.store(&object(i, 0), ObjectKind::Data).unwrap();
            if i % 3 == 0 {
                fresh.push(again.store(&object(i, 1), ObjectKind::Data).unwrap());
            }
        }
        assert!(
            !again.locality.lock().unwrap().is_empty(),
            "the packs of the stream were loaded"
        );
        let stats = again.finish().unwrap();
        assert_eq!(
            stats.new_objects,
            fresh.len() as u64,
            "only the new ones stored"
        );
        for id in fresh {
            assert!(repo.index.chunk(&id).unwrap().is_some());
        }
    }
}
