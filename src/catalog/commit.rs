//! The commit protocol: a [`Batch`] of changes made durable in one
//! synced write, after the packs it points at and before the packs it
//! retires are deleted.

use super::segment::{Op, Segment};
use super::{applied_key, retired_key, segment, Index, Location, PackInfo};
use super::{
    APPLIED, APPLIED_END, CHUNKS, GENERATION, META, PACKS, RETIRED, RETIRED_END, SNAPSHOTS,
};
use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotId;
use crate::id::ChunkId;
use crate::ring::ShardId;
use crate::store::{PackEntry, PackId, PackStore};
use rocksdb::{WriteBatch, WriteOptions};
use std::collections::HashSet;
use std::sync::Arc;

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
    pub(super) index: &'i Index,
    pub(super) inner: WriteBatch,
    pub(super) published: Vec<(PackId, ShardId)>,
    /// Packs leaving, with the store to delete each from (none when the
    /// batch applies a segment: the file is the writer's business).
    pub(super) retired: Vec<(PackId, Option<Arc<dyn PackStore>>)>,
    /// The chunk ids of the packs leaving (writers' batches): where those
    /// that stay live elsewhere are goes into the segment (see `commit`).
    pub(super) retired_ids: Vec<(PackId, Vec<ChunkId>)>,
    /// What the batch does, for its segment.
    pub(super) ops: Vec<Op>,
    /// The segment this batch applies (so it writes none of its own).
    pub(super) replays: Option<String>,
    /// The value its `applied/` mark gets (empty, or [`LEGACY_FULL`]).
    pub(super) mark: &'static [u8],
    /// The batch starts from an empty index (it applies a full segment).
    pub(super) wiped: bool,
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
    pub(super) fn tombstone(&mut self, pack: PackId) {
        self.inner.delete_cf(self.index.cf(PACKS), pack.0);
        self.inner
            .put_cf(self.index.cf(META), retired_key(&pack), []);
    }

    /// Forgets the chunk `id`, whose entry points into `pack`.
    pub fn drop_entry(&mut self, id: &ChunkId, pack: PackId) {
        // "Gone", not deleted: beneath an overlay a family may hold it.
        self.inner
            .put_cf(self.index.cf(CHUNKS), id.as_bytes(), super::GONE);
        self.ops.push(Op::DropEntry { id: *id, pack });
    }

    /// Empties the chunks, packs, tombstones, the record of applied
    /// segments and the base: the first step of loading the newest
    /// manifest or applying the newest full segment.
    pub(super) fn wipe(&mut self) {
        let index = self.index;
        for family in [CHUNKS, PACKS] {
            self.inner
                .delete_range_cf(index.cf(family), &[][..], &[0xffu8; 33][..]);
        }
        for (from, to) in [(APPLIED, APPLIED_END), (RETIRED, RETIRED_END)] {
            self.inner
                .delete_range_cf(index.cf(META), from.as_bytes(), to.as_bytes());
        }
        self.inner.delete_cf(index.cf(META), super::base::BASE);
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

impl Index {
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
}
