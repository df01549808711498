//! Storing objects: decide what is new, pack it, commit it.
//!
//! The path of a chunk: hash → "seen in this session?" → Bloom filter
//! ("surely new" skips the index) → RocksDB lookup → ring → the shard's open
//! pack. A pack that reaches its target size is sealed, written durably,
//! and only then are its index entries committed in one synced batch; only
//! after that are its ids added to the Bloom filter (invariant 2).
//!
//! Many threads store at once. A chunk id is *claimed* in the `pending` set
//! by the one thread that will write it, so two files sharing a new chunk
//! store it once. An id stays pending until its pack is committed, so a
//! concurrent lookup always finds it in one of the two places.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::error::Result;
use crate::id::ChunkId;
use crate::repo::Repository;
use crate::snapshot::BloomStats;
use crate::store::record::{self, ObjectKind};
use crate::store::PackBuilder;

/// What a writer added.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriterStats {
    pub new_objects: u64,
    pub new_raw: u64,
    pub new_data_raw: u64,
    pub new_stored: u64,
    pub bloom: BloomStats,
}

/// Stores objects into a repository; see the module docs.
pub(crate) struct ObjectWriter<'r> {
    repo: &'r Repository,
    pending: Mutex<HashSet<ChunkId>>,
    open: Vec<Mutex<PackBuilder>>,
    new_objects: AtomicU64,
    new_raw: AtomicU64,
    new_data_raw: AtomicU64,
    new_stored: AtomicU64,
    lookups: AtomicU64,
    skipped: AtomicU64,
    false_positives: AtomicU64,
}

impl<'r> ObjectWriter<'r> {
    pub fn new(repo: &'r Repository) -> Self {
        ObjectWriter {
            repo,
            pending: Mutex::new(HashSet::new()),
            open: repo
                .shards
                .iter()
                .map(|_| Mutex::new(PackBuilder::new()))
                .collect(),
            new_objects: AtomicU64::new(0),
            new_raw: AtomicU64::new(0),
            new_data_raw: AtomicU64::new(0),
            new_stored: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            false_positives: AtomicU64::new(0),
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
        let maybe = self.repo.bloom.read().expect("bloom lock").may_contain(&id);
        if !maybe {
            self.skipped.fetch_add(1, Relaxed);
            return Ok(!self.claim(id));
        }
        if self.repo.index.chunk(&id)?.is_some() {
            return Ok(true);
        }
        // A pack committed between our pending check and the index lookup
        // would have shown in the index, so "absent" here is a real miss.
        self.false_positives.fetch_add(1, Relaxed);
        Ok(!self.claim(id))
    }

    /// Stores `data` unless already present; returns its id. An object
    /// larger than a record can say is refused, never truncated.
    pub fn store(&self, data: &[u8], kind: ObjectKind) -> Result<ChunkId> {
        let raw_len = record::length(data.len(), kind)?;
        let id = ChunkId::of(data);
        if self.known_or_claim(id)? {
            return Ok(id);
        }
        let config = &self.repo.config;
        let (flag, stored) = record::seal(data, kind, config.compression, config.zstd_level);
        self.new_objects.fetch_add(1, Relaxed);
        self.new_raw.fetch_add(u64::from(raw_len), Relaxed);
        if kind == ObjectKind::Data {
            self.new_data_raw.fetch_add(u64::from(raw_len), Relaxed);
        }
        self.new_stored.fetch_add(stored.len() as u64, Relaxed);

        let shard_id = self.repo.ring.locate(&id);
        let slot = self
            .repo
            .shards
            .iter()
            .position(|s| s.id == shard_id)
            .expect("the ring only names configured shards");
        let full = {
            let mut pack = self.open[slot].lock().expect("pack lock");
            pack.add(id, raw_len, flag, &stored);
            if pack.len() >= self.repo.config.pack_size as usize {
                Some(std::mem::take(&mut *pack))
            } else {
                None
            }
        };
        if let Some(pack) = full {
            self.commit(slot, pack)?;
        }
        Ok(id)
    }

    /// Seals `pack`, writes it durably to shard `slot`, then indexes it.
    fn commit(&self, slot: usize, pack: PackBuilder) -> Result<()> {
        let shard = &self.repo.shards[slot];
        let (bytes, entries) = pack.seal();
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
        Ok(())
    }

    /// Commits every open pack and returns what was added.
    pub fn finish(self) -> Result<WriterStats> {
        for (slot, pack) in self.open.iter().enumerate() {
            let pack = std::mem::take(&mut *pack.lock().expect("pack lock"));
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
