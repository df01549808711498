//! `forget` and `gc`: drop snapshots, then reclaim what nothing reaches.
//!
//! Mark: every tree and chunk reachable from a snapshot, plus every blob
//! stored with `put` (their markers live in `blobs/`). Sweep, pack by pack:
//! a pack with nothing live is deleted; a pack mostly dead is rewritten (its
//! live records copied, as stored, into new packs on the same shard); packs
//! on disk that the index does not know (left by a crash) are deleted.
//!
//! Order for crash safety (invariant 5): new packs are written durably, then
//! one index batch points the live chunks at them and forgets the old pack,
//! and only then is the old file deleted. A crash anywhere leaves either the
//! old pack indexed and intact, or the new one; at worst an unindexed pack
//! file, which the next `gc` removes.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::Result;
use crate::id::ChunkId;
use crate::index::PackInfo;
use crate::repo::{Progress, Repository};
use crate::snapshot::{EntryKind, SnapshotId, SnapshotRecord};
use crate::store::pack::{repack, RECORD_HEADER};
use crate::store::{PackEntry, PackId};

/// A pack is rewritten when less than this share of its records' bytes is live.
const REWRITE_BELOW: f64 = 0.5;

/// What `gc` did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Live objects (chunks, trees, blobs).
    pub live_objects: u64,
    /// Packs examined.
    pub packs: u64,
    /// Packs deleted because nothing in them is live.
    pub packs_deleted: u64,
    /// Packs rewritten to drop their dead records.
    pub packs_rewritten: u64,
    /// Pack files no index entry knows (from interrupted runs), deleted.
    pub orphan_packs: u64,
    /// Dead objects dropped from the index.
    pub objects_removed: u64,
    /// Bytes of pack files freed.
    pub bytes_freed: u64,
    /// Packs skipped because their trailer could not be read.
    pub unreadable_packs: Vec<String>,
}

impl Repository {
    /// Removes snapshot records (their data stays until `gc`).
    pub fn forget(&self, ids: &[SnapshotId]) -> Result<()> {
        for id in ids {
            self.resolve_snapshot(&id.to_hex())?;
        }
        for id in ids {
            // Index first: a crash between the two leaves the record file,
            // which the next writer adopts again. Forgetting is retried, never
            // half-done in the direction that loses the record.
            self.index.delete_snapshot(id)?;
            self.files.delete(&SnapshotRecord::key(id))?;
        }
        Ok(())
    }

    /// Every object reachable from a snapshot or a stored blob.
    fn live_set(&self) -> Result<HashSet<ChunkId>> {
        let mut live = HashSet::new();
        let roots: Vec<ChunkId> = self.snapshots()?.iter().map(|(_, r)| r.tree).collect();
        self.walk_trees(roots, |id, tree| {
            live.insert(id);
            for e in tree?.entries {
                if let EntryKind::File { chunks, .. } = e.kind {
                    live.extend(chunks.into_iter().map(|c| c.0));
                }
            }
            Ok(())
        })?;
        for key in self.files.list("blobs/")? {
            if let Ok(id) = key.trim_start_matches("blobs/").parse::<ChunkId>() {
                live.insert(id);
            }
        }
        Ok(live)
    }

    /// Reclaims space; with `dry_run`, only reports what it would free.
    pub fn gc(&self, dry_run: bool, progress: &dyn Progress) -> Result<GcReport> {
        let live = self.live_set()?;
        let mut report = GcReport {
            dry_run,
            live_objects: live.len() as u64,
            ..Default::default()
        };
        let packs = self.index.packs()?;
        let mut known: HashSet<PackId> = packs.iter().map(|(p, _)| *p).collect();
        progress.set_total(packs.len() as u64);
        for (pack, info, entries) in self.trailers(&packs) {
            report.packs += 1;
            progress.advance(1);
            let shard = self.shard(info.shard)?;
            let entries = match entries {
                Ok(e) => e,
                // An unreachable store would make every pack on it look
                // unreadable; stop and let the user retry.
                Err(e @ crate::Error::ObjectStore { .. }) => return Err(e),
                Err(e) => {
                    progress.warn(&format!("gc skips pack {pack}: {e}"));
                    report.unreadable_packs.push(pack.to_hex());
                    continue;
                }
            };
            // A record is live when it is the copy the index uses and
            // something reaches it.
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            let locations = self.index.chunks(&ids)?;
            let mut live_entries = Vec::new();
            let mut dead_indexed = Vec::new();
            for (e, loc) in entries.iter().zip(locations) {
                let indexed_here = loc.is_some_and(|l| l.pack == *pack && l.offset == e.offset);
                if indexed_here && live.contains(&e.id) {
                    live_entries.push(*e);
                } else if indexed_here {
                    dead_indexed.push(e.id);
                }
            }
            let record_bytes = |es: &[PackEntry]| {
                es.iter()
                    .map(|e| RECORD_HEADER + u64::from(e.stored_len))
                    .sum::<u64>()
            };
            let live_bytes = record_bytes(&live_entries);
            let all_bytes = record_bytes(&entries).max(1);
            if live_entries.is_empty() {
                report.packs_deleted += 1;
                report.objects_removed += dead_indexed.len() as u64;
                report.bytes_freed += info.size;
                if !dry_run {
                    let mut batch = self.index.batch();
                    dead_indexed.iter().for_each(|id| batch.delete_chunk(id));
                    batch.delete_pack(pack);
                    self.index.commit(batch)?;
                    self.packs.write().expect("packs lock").remove(pack);
                    shard.backend.delete(&pack.key())?;
                }
            } else if (live_bytes as f64) < REWRITE_BELOW * all_bytes as f64 {
                report.packs_rewritten += 1;
                report.objects_removed += dead_indexed.len() as u64;
                let bytes = shard.backend.get(&pack.key())?;
                let (new_bytes, new_entries) = repack(&bytes, &live_entries);
                report.bytes_freed += info.size.saturating_sub(new_bytes.len() as u64);
                if !dry_run {
                    // The copies are re-checked before the old pack goes.
                    for e in &new_entries {
                        let loc = crate::index::Location::of(*pack, e);
                        crate::repo::open_record(&e.id, &loc, e.stored(&new_bytes))?;
                    }
                    let new_id = PackId::random();
                    known.insert(new_id);
                    shard.backend.put(&new_id.key(), &new_bytes)?;
                    let new_info = PackInfo::of(info.shard, new_bytes.len() as u64, &new_entries);
                    self.packs
                        .write()
                        .expect("packs lock")
                        .insert(new_id, info.shard);
                    let mut batch = self.index.batch();
                    batch.put_pack(new_id, &new_info, &new_entries);
                    dead_indexed.iter().for_each(|id| batch.delete_chunk(id));
                    batch.delete_pack(pack);
                    self.index.commit(batch)?;
                    self.packs.write().expect("packs lock").remove(pack);
                    shard.backend.delete(&pack.key())?;
                }
            }
        }
        // Pack files nothing indexes: written by an ingest that crashed
        // before its commit, or by a gc that crashed before its delete; and
        // temporary files of writes a crash interrupted.
        for shard in &self.shards {
            report.bytes_freed += shard.backend.sweep_unfinished(dry_run)?;
            for key in shard.backend.list("")? {
                let Some(pack) = PackId::from_key(&key) else {
                    continue;
                };
                if !known.contains(&pack) {
                    report.orphan_packs += 1;
                    report.bytes_freed += shard.backend.size(&key)?;
                    if !dry_run {
                        shard.backend.delete(&key)?;
                    }
                }
            }
        }
        if !dry_run {
            // Removed ids would linger in the filter as false positives.
            self.rebuild_bloom()?;
            self.save_bloom()?;
        }
        Ok(report)
    }
}
