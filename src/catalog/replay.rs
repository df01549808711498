//! Catching up with the home: the segments other writers published,
//! fetched and applied in order (each once, whatever the order they are
//! met in), full segments written and the ones they cover recorded.

use super::segment::{Op, Segment};
use super::{applied_key, retired_key, segment, Batch, Index, Location};
use super::{
    APPLIED, APPLIED_END, CHUNKS, COVERED, FORGOTTEN, LEGACY_FULL, META, PACKS, RETIRED, SNAPSHOTS,
};
use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotId;
use crate::id::ChunkId;
use crate::store::{MetaStore, PackEntry, PackId};
use std::collections::{HashMap, HashSet};

/// Reads and decodes the segment `name` of `home`.
#[cfg(feature = "engine")]
pub(super) fn read_segment(home: &dyn MetaStore, name: &str) -> Result<Segment> {
    let key = format!("{}{name}", segment::FOLDER);
    Segment::decode(&home.get(&key)?, &key)
}

/// Times a catch-up lists the home again after a segment it listed was
/// compacted away before it could fetch it.
pub(super) const CATCH_UP_RELISTS: u32 = 5;

/// Segments fetched at a time when catching up (then applied, in order).
pub(super) const CATCH_UP_BATCH: usize = 256;

/// Fetches in flight at once. On a real cluster a small object's GET can
/// take 40 ms: a fresh cache of a repository with 84 segments (1 GiB
/// ingested) read them in 0.23 s with 16 in flight, 0.08 s with 64.
pub(super) const CATCH_UP_READERS: usize = 64;

/// Reads the segments `names` of `home`, in order, several at once.
#[cfg(feature = "engine")]
pub(super) fn read_segments(home: &dyn MetaStore, names: &[&str]) -> Result<Vec<Segment>> {
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

impl Index {
    /// Brings this index up to date with the segments in `home` (named
    /// `names`, as [`segment::names`] lists them): the newest full segment
    /// first (starting over from it when it is new here), then every other
    /// segment it does not cover and this index has not applied, in name
    /// order (which does not matter, see `apply`). An older
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
    pub(super) fn catch_up_once(
        &self,
        home: &dyn MetaStore,
        names: &[String],
        added: &mut dyn FnMut(&ChunkId),
        applied: &mut u64,
    ) -> Result<()> {
        // Listed after the segments: a manifest written since covers
        // every segment listed that a compaction deleted meanwhile.
        let base = super::base::newest_manifest(home, self.sealer.as_ref())?;
        let mut gone = self.applied_gone(names)?;
        if base.is_none() && self.base()?.is_some() {
            return Err(Error::Index {
                path: std::path::PathBuf::from(format!("{}/index/", home.location())),
                message: "the manifest this index was loaded from is gone, and no other \
                          (`dedup repair index` makes the index again from the packs)"
                    .into(),
            });
        }
        if let Some(manifest) = &base {
            if self.base()? != Some(manifest.epoch) || !gone.is_empty() {
                let covered: HashSet<&str> = manifest.covers.iter().map(String::as_str).collect();
                gone.retain(|name| !covered.contains(name.as_str()));
                self.load_base(home, manifest, added)?;
                *applied += 1;
            }
        }
        // Full segments are the base only where no manifest is (a
        // repository that has not had its first compaction into families).
        let newest = match base {
            Some(_) => None,
            None => names.iter().rev().find(|n| segment::is_full(n)),
        };
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
    pub(super) fn covers_legacy(&self, full: &str) -> Result<bool> {
        Ok(self.meta(&applied_key(full))?.as_deref() == Some(LEGACY_FULL))
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
    pub(super) fn apply(
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
                    batch.inner.put_cf(chunks, id.as_bytes(), super::GONE);
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
    pub(super) fn settle_entries(
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
                // "Gone", not deleted: beneath an overlay a family may
                // hold the entry removed.
                match after {
                    Some(loc) => batch.inner.put_cf(chunks, id.as_bytes(), loc.encode()),
                    None => batch.inner.put_cf(chunks, id.as_bytes(), super::GONE),
                }
            }
        }
        Ok(touched)
    }

    /// True when `pack` has a tombstone here.
    pub(super) fn is_retired(&self, pack: &PackId) -> Result<bool> {
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

    /// Of `names` (sorted), the segments whose ops this index holds from
    /// applying them itself, and those a full segment or manifest it
    /// applied covered (a compaction folds the first, and covers both).
    pub fn applied_and_covered(&self, names: &[String]) -> Result<(Vec<String>, Vec<String>)> {
        // Before covers were written down, a full segment covered every
        // name before its own.
        let mut legacy = None;
        for name in names.iter().rev().filter(|n| segment::is_full(n)) {
            if self.has_applied(name)? && self.covers_legacy(name)? {
                legacy = Some(name);
                break;
            }
        }
        let (mut applied, mut covered) = (Vec::new(), Vec::new());
        for name in names {
            match self.meta(&applied_key(name))? {
                Some(mark) if mark == COVERED || legacy.is_some_and(|full| name < full) => {
                    covered.push(name.clone());
                }
                Some(_) => applied.push(name.clone()),
                None => {}
            }
        }
        Ok((applied, covered))
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
    pub(super) fn applied_gone(&self, names: &[String]) -> Result<Vec<String>> {
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

    pub(super) fn has_applied(&self, name: &str) -> Result<bool> {
        Ok(self.meta(&applied_key(name))?.is_some())
    }
}
