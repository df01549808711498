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

use crate::catalog::segment;
use crate::catalog::{Location, PackInfo};
use crate::engine::{history, Evidence, Mode, Progress, Repository};
use crate::error::{Error, Result};
use crate::format::pack::repack;
use crate::format::snapshot::{GroupBy, SnapshotFilter, SnapshotId, SnapshotRecord};
use crate::id::ChunkId;
use crate::policy::{self, GroupDecisions, KeepPolicy};
use crate::store::read_entries;
use crate::store::{PackEntry, PackId};
use crate::units::human_bytes;

/// Segments kept before `gc` compacts them into one full segment.
const SEGMENTS_BEFORE_COMPACTION: usize = 64;

/// A pack is rewritten when less than this share of its records' bytes is live.
const REWRITE_BELOW: f64 = 0.5;

/// What gc does with one pack.
#[derive(Debug, PartialEq)]
enum Fate {
    /// Enough of it is live.
    Keep,
    /// Nothing in it is live: forget the `dead` entries, delete the file.
    Delete { dead: Vec<ChunkId> },
    /// Mostly dead: copy the `live` records into a new pack, forget the
    /// `dead` entries, delete the old file.
    Rewrite {
        live: Vec<PackEntry>,
        dead: Vec<ChunkId>,
    },
}

/// Decides a pack's fate from its `entries`, where the index says each
/// of them is (`locations`, in the same order) and what is `live`. A record
/// counts as live when it is the copy the index uses and something reaches
/// it; a copy the index does not use is dead weight, never an entry to
/// forget.
fn fate(
    pack: &PackId,
    entries: &[PackEntry],
    locations: &[Option<Location>],
    live: &HashSet<ChunkId>,
) -> Fate {
    let mut kept = Vec::new();
    let mut dead = Vec::new();
    for (e, loc) in entries.iter().zip(locations) {
        if !loc.is_some_and(|l| l.is(pack, e)) {
            continue;
        }
        if live.contains(&e.id) {
            kept.push(*e);
        } else {
            dead.push(e.id);
        }
    }
    let bytes = |es: &[PackEntry]| es.iter().map(PackEntry::record_len).sum::<u64>();
    if kept.is_empty() {
        Fate::Delete { dead }
    } else if (bytes(&kept) as f64) < REWRITE_BELOW * bytes(entries).max(1) as f64 {
        Fate::Rewrite { live: kept, dead }
    } else {
        Fate::Keep
    }
}

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
    /// Pack files the index did not know that hold live objects it lacks,
    /// indexed again instead of deleted.
    pub orphans_adopted: u64,
    /// Dead objects dropped from the index.
    pub objects_removed: u64,
    /// Bytes of pack files freed.
    pub bytes_freed: u64,
    /// Packs skipped because their trailer could not be read.
    pub unreadable_packs: Vec<String>,
    /// Pack files the index no longer lists but that stay on disk because
    /// a reader (restore, verify, ...) was open and may still read them;
    /// the next `gc` without readers deletes them.
    pub packs_kept_for_readers: u64,
    /// Their bytes.
    pub bytes_kept_for_readers: u64,
    /// Records of forgotten snapshots found beside their tombstones (a
    /// forget cut short, or a record put back) and deleted again.
    pub forgotten_records_deleted: Vec<SnapshotId>,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would free" } else { "freed" };
        writeln!(
            f,
            "{verb} {} : {} packs deleted, {} rewritten, {} orphan packs, {} dead objects ({} live objects in {} packs)",
            human_bytes(self.bytes_freed),
            self.packs_deleted,
            self.packs_rewritten,
            self.orphan_packs,
            self.objects_removed,
            self.live_objects,
            self.packs
        )?;
        if self.orphans_adopted > 0 {
            writeln!(
                f,
                "{} unindexed packs hold live data the index lacked: indexed again, not deleted",
                self.orphans_adopted
            )?;
        }
        if self.packs_kept_for_readers > 0 {
            writeln!(
                f,
                "{} pack files ({}) kept while readers are open; the next gc deletes them",
                self.packs_kept_for_readers,
                human_bytes(self.bytes_kept_for_readers)
            )?;
        }
        for id in &self.forgotten_records_deleted {
            let verb = if self.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            writeln!(f, "{verb} the record of forgotten snapshot {id} again")?;
        }
        for p in &self.unreadable_packs {
            writeln!(f, "skipped unreadable pack {p} (run `dedup verify`)")?;
        }
        Ok(())
    }
}

impl GcReport {
    /// Counts a pack of `size` bytes that leaves the index, replaced by
    /// `copy` bytes: freed if `deleted`, else kept for readers.
    fn freed(&mut self, deleted: bool, size: u64, copy: u64) {
        let gone = size.saturating_sub(copy);
        if deleted {
            self.bytes_freed += gone;
        } else {
            self.packs_kept_for_readers += 1;
            self.bytes_kept_for_readers += size;
        }
    }
}

impl Repository {
    /// Removes snapshot records (their data stays until `gc`), those whose
    /// file cannot be read included ([`unreadable_records`](Self::unreadable_records)),
    /// and forgotten ones that came back ([`evidence`](Self::evidence)).
    /// Each gets a tombstone first (see `history`).
    pub fn forget(&self, ids: &[SnapshotId]) -> Result<()> {
        self.check_alone("forget")?;
        let _alone = self.reclaiming();
        let unreadable = self.unreadable_records();
        let evidence = self.evidence();
        let known_otherwise = |id: &SnapshotId| {
            unreadable.iter().any(|r| r.id == *id)
                || evidence.contains(&Evidence::RecordBack { id: *id })
        };
        for id in ids {
            if !known_otherwise(id) {
                self.snapshot(id)?;
            }
        }
        self.hold.check_alive()?;
        self.forget_records(ids)?;
        self.unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|r| !ids.contains(&r.id));
        Ok(())
    }

    /// Applies a retention policy to the snapshots `filter` lets through,
    /// each group on its own (see [`policy`]); with [`Mode::Apply`],
    /// forgets every snapshot the policy does not keep. Periods are read
    /// in this machine's time zone. Returns every decision with its
    /// reasons, groups in key order, newest snapshot first.
    pub fn forget_by_policy(
        &self,
        filter: &SnapshotFilter,
        group_by: GroupBy,
        keep: &KeepPolicy,
        mode: Mode,
    ) -> Result<Vec<GroupDecisions>> {
        if keep.is_empty() {
            return Err(Error::invalid(
                "forget",
                "no --keep-* rule given (name the snapshots to forget, or give a policy)",
            ));
        }
        let snapshots = self.snapshots_matching(filter)?;
        let plan = policy::plan(
            &snapshots,
            group_by,
            keep,
            &jiff::tz::TimeZone::system(),
            jiff::Timestamp::now(),
        );
        if mode == Mode::Apply {
            let gone: Vec<SnapshotId> = plan
                .iter()
                .flat_map(|g| &g.snapshots)
                .filter(|d| !d.keep)
                .map(|d| d.id)
                .collect();
            if !gone.is_empty() {
                self.forget(&gone)?;
            }
        }
        Ok(plan)
    }

    /// Every object reachable from a snapshot or a stored blob, and how
    /// many unindexed packs it indexed on the way (never in a dry run,
    /// which changes nothing). Fails, so that nothing is deleted, while a
    /// snapshot record or a tree to mark cannot be read: first every
    /// record file is read (those the index lacks, again while some fail);
    /// then the trees are walked once, and only those that failed are
    /// walked again, up to [`MARK_TRIES`] times in all, after looking for
    /// trees the index lacks in the packs it does not know (a lost
    /// segment).
    fn live_set(&self, mode: Mode) -> Result<(HashSet<ChunkId>, u64)> {
        self.check_every_record()?;
        // What the home lost may be what this machine would need to put
        // it back: nothing is deleted until a person has looked. (A
        // forgotten record that is back is left out, and deleted below:
        // the forget stands.)
        let evidence: Vec<Evidence> = self
            .evidence()
            .into_iter()
            .filter(|e| !matches!(e, Evidence::RecordBack { .. }))
            .collect();
        if let Some(first) = evidence.first() {
            let more = match evidence.len() {
                1 => String::new(),
                n => format!(" ({} more findings like it)", n - 1),
            };
            return Err(Error::WouldLoseData {
                command: "gc",
                reason: format!("{first}{more}"),
            });
        }
        let snapshots = self.snapshots()?;
        let mut live = HashSet::new();
        let mut failed = self.mark(snapshots.iter().map(|(_, r)| r.top()), &mut live)?;
        let mut adopted = None;
        for _ in 1..MARK_TRIES {
            if failed.is_empty() {
                break;
            }
            let missing = failed
                .iter()
                .any(|(_, e)| matches!(e, Error::MissingChunk(_)));
            if missing && adopted.is_none() && mode == Mode::Apply {
                adopted = Some(self.adopt_unindexed_packs()?);
            }
            failed = self.mark(failed.into_iter().map(|(id, _)| id), &mut live)?;
        }
        if let Some((id, error)) = failed.first() {
            return Err(unmarkable(*id, error, &snapshots));
        }
        for key in self.files.list("blobs/")? {
            if let Ok(id) = key.trim_start_matches("blobs/").parse::<ChunkId>() {
                live.insert(id);
            }
        }
        Ok((live, adopted.unwrap_or(0)))
    }

    /// Adds to `live` every object reachable from the trees `roots`;
    /// returns the trees that could not be read, with why (what is below
    /// them is not marked).
    fn mark(
        &self,
        roots: impl IntoIterator<Item = ChunkId>,
        live: &mut HashSet<ChunkId>,
    ) -> Result<Vec<(ChunkId, Error)>> {
        let mut failed = Vec::new();
        self.walk_trees(roots, |id, tree| {
            match tree {
                Ok(tree) => {
                    live.insert(id);
                    live.extend(tree.chunk_ids());
                }
                // An unreachable store is no damaged tree: it stops gc as it is.
                Err(e @ Error::ObjectStore { .. }) => return Err(e),
                Err(e) => failed.push((id, e)),
            }
            Ok(())
        })?;
        Ok(failed)
    }

    /// Indexes the records of every pack file the index does not know
    /// whose ids it lacks (a segment lost or rolled back leaves them
    /// unindexed, trees among them); returns how many packs it indexed.
    /// What nothing reaches is then garbage like any other.
    fn adopt_unindexed_packs(&self) -> Result<u64> {
        let mut adopted = 0;
        for shard in &self.shards {
            for key in shard.backend.list("")? {
                let Some(pack) = PackId::from_key(&key) else {
                    continue;
                };
                if self.index.pack_shard(&pack).is_some() {
                    continue;
                }
                let size = shard.backend.size(&key)?;
                let Ok(entries) =
                    read_entries(shard.backend.as_ref(), &key, Some(size), self.crypt())
                else {
                    continue;
                };
                let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
                let missing: Vec<PackEntry> = entries
                    .iter()
                    .zip(self.index.chunks(&ids)?)
                    .filter(|(_, loc)| loc.is_none())
                    .map(|(e, _)| *e)
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let mut batch = self.index.batch();
                batch.index_pack(pack, &PackInfo::of(shard.id, size, &missing), &missing);
                self.index.commit(batch)?;
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    /// Reclaims space; a [`Mode::DryRun`] only reports what it would free.
    pub fn gc(&self, mode: Mode, progress: &dyn Progress) -> Result<GcReport> {
        self.check_alone("gc")?;
        let _alone = self.reclaiming();
        self.check_every_shard("gc")?;
        let (live, adopted) = self.live_set(mode)?;
        let mut report = GcReport {
            dry_run: mode == Mode::DryRun,
            live_objects: live.len() as u64,
            orphans_adopted: adopted,
            forgotten_records_deleted: self.delete_forgotten_records(mode)?,
            ..Default::default()
        };
        let packs = self.index.packs()?;
        progress.set_total(packs.len() as u64);
        // Retired in this run but kept for readers: not orphans to sweep.
        let mut kept = HashSet::new();
        for (pack, info, entries) in self.trailers(&packs) {
            report.packs += 1;
            progress.advance(1);
            let entries = match entries {
                Ok(e) => e,
                // An unreachable store would make every pack on it look
                // unreadable; stop and let the user retry.
                Err(e @ Error::ObjectStore { .. }) => return Err(e),
                Err(e) => {
                    progress.warn(&format!("gc skips pack {pack}: {e}"));
                    report.unreadable_packs.push(pack.to_hex());
                    continue;
                }
            };
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            let locations = self.index.chunks(&ids)?;
            match fate(pack, &entries, &locations, &live) {
                Fate::Keep => {}
                Fate::Delete { dead } => {
                    report.packs_deleted += 1;
                    report.objects_removed += dead.len() as u64;
                    let deleted =
                        mode == Mode::DryRun || self.replace_pack(pack, info, None, &dead, ids)?;
                    report.freed(deleted, info.size, 0);
                    if !deleted {
                        kept.insert(*pack);
                    }
                }
                Fate::Rewrite { live, dead } => {
                    report.packs_rewritten += 1;
                    report.objects_removed += dead.len() as u64;
                    let bytes = self.shard(info.shard)?.backend.get(&pack.key())?;
                    let (new_bytes, new_entries) = repack(pack, &bytes, 0, &live, self.crypt())?;
                    let copy = Some((&new_bytes[..], &new_entries[..]));
                    let deleted =
                        mode == Mode::DryRun || self.replace_pack(pack, info, copy, &dead, ids)?;
                    report.freed(deleted, info.size, new_bytes.len() as u64);
                    if !deleted {
                        kept.insert(*pack);
                    }
                }
            }
        }
        self.sweep_orphans(mode, &live, &kept, &mut report)?;
        if mode == Mode::Apply {
            // Removed ids would linger in the filter as false positives.
            self.rebuild_bloom()?;
            self.save_bloom()?;
            self.compact_segments()?;
        }
        Ok(report)
    }

    /// Deletes the records of forgotten snapshots that are back beside
    /// their tombstones (a forget cut short, or someone put them back):
    /// the forget stands. Returns their ids.
    fn delete_forgotten_records(&self, mode: Mode) -> Result<Vec<SnapshotId>> {
        let back: Vec<SnapshotId> = self
            .evidence()
            .into_iter()
            .filter_map(|e| match e {
                Evidence::RecordBack { id } => Some(id),
                _ => None,
            })
            .collect();
        if mode == Mode::Apply && !back.is_empty() {
            self.hold.check_alive()?;
            self.forget_records(&back)?;
        }
        Ok(back)
    }

    /// Forgets the records of `ids`, the caller holding the repository
    /// alone: each gets its tombstone first, so every client then knows it
    /// was forgotten, not lost, and must not come back (see `history`);
    /// then the index, then the record file. A crash before the file is
    /// deleted leaves it beside its tombstone, forgotten still, and the
    /// next gc deletes it.
    pub(crate) fn forget_records(&self, ids: &[SnapshotId]) -> Result<()> {
        let tombstone =
            serde_json::to_vec(&history::Tombstone::now()).expect("a tombstone always serialises");
        for id in ids {
            self.files.put(&history::tombstone_key(id), &tombstone)?;
            self.index.forget_snapshot(id)?;
            match self.files.delete(&SnapshotRecord::key(id)) {
                Err(e) if !crate::store::is_not_found(&e) => return Err(e),
                _ => {}
            }
        }
        self.forget_evidence(|e| match e {
            Evidence::RecordGone { id } | Evidence::RecordBack { id } => !ids.contains(id),
            _ => true,
        });
        Ok(())
    }

    /// Compacts the home's segments into one full segment when there are
    /// more than [`SEGMENTS_BEFORE_COMPACTION`], so a cache is rebuilt
    /// from a few files. Under the writer lock: nothing else writes them.
    fn compact_segments(&self) -> Result<()> {
        let names = segment::names(self.files.as_ref())?;
        if names.len() <= SEGMENTS_BEFORE_COMPACTION {
            return Ok(());
        }
        let covered = self.index.applied_of(&names)?;
        self.index
            .write_full_segment(self.files.as_ref(), &covered)?;
        self.hold.check_alive()?;
        segment::delete(self.files.as_ref(), &covered)
    }

    /// Retires `pack` (whose records hold `ids`), publishing `copy` (a
    /// sealed pack of its live records) on the same shard in the same index
    /// batch, and forgetting `dead`; then deletes the old file, unless a
    /// reader is open (returns whether it did).
    fn replace_pack(
        &self,
        pack: &PackId,
        info: &PackInfo,
        copy: Option<(&[u8], &[PackEntry])>,
        dead: &[ChunkId],
        ids: Vec<ChunkId>,
    ) -> Result<bool> {
        let shard = self.shard(info.shard)?;
        let mut batch = self.index.batch();
        if let Some((bytes, entries)) = copy {
            batch.publish_pack(info.shard, shard.backend.as_ref(), bytes, entries)?;
        }
        for id in dead {
            batch.drop_entry(id, *pack);
        }
        batch.retire_pack(*pack, ids, shard.backend.clone());
        Ok(self.commit_alone(batch)? == 0)
    }

    /// Deletes pack files nothing indexes (written by an ingest that
    /// crashed before its commit, or by a gc that crashed before its
    /// delete) and temporary files of writes a crash interrupted.
    fn sweep_orphans(
        &self,
        mode: Mode,
        live: &HashSet<ChunkId>,
        kept: &HashSet<PackId>,
        report: &mut GcReport,
    ) -> Result<()> {
        for shard in &self.shards {
            report.bytes_freed += shard.backend.sweep_unfinished(mode)?;
            for key in shard.backend.list("")? {
                let Some(pack) = PackId::from_key(&key) else {
                    continue;
                };
                if self.index.pack_shard(&pack).is_some() || kept.contains(&pack) {
                    continue;
                }
                let size = shard.backend.size(&key)?;
                // An orphan that holds live objects the index lacks (an
                // index rebuilt or restored without it) is the only copy
                // of them: it is indexed again, never deleted.
                let entries = read_entries(shard.backend.as_ref(), &key, Some(size), self.crypt());
                if let Ok(entries) = entries {
                    let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
                    let lost = lost_entries(&entries, &self.index.chunks(&ids)?, live);
                    if !lost.is_empty() {
                        report.orphans_adopted += 1;
                        if mode == Mode::Apply {
                            let info = PackInfo::of(shard.id, size, &lost);
                            let mut batch = self.index.batch();
                            batch.index_pack(pack, &info, &lost);
                            self.index.commit(batch)?;
                        }
                        continue;
                    }
                }
                report.orphan_packs += 1;
                if mode == Mode::Apply {
                    self.hold.check_alive()?;
                }
                let deleted = mode == Mode::DryRun
                    || self.delete_unless_read(|| shard.backend.delete(&key))?;
                report.freed(deleted, size, 0);
            }
        }
        Ok(())
    }
}

/// Times gc marks before it gives up on a tree that does not read.
const MARK_TRIES: u32 = 3;

/// The error for a tree `id` that could not be marked (`error`), naming
/// the snapshot whose top it is, if one is (a forgotten snapshot's record
/// put back after a gc, say), and the way out.
fn unmarkable(id: ChunkId, error: &Error, snapshots: &[(SnapshotId, SnapshotRecord)]) -> Error {
    let reason = match snapshots.iter().find(|(_, r)| r.top() == id) {
        Some((snapshot, r)) => format!(
            "snapshot {short} ({}, {}) names tree {id}, which cannot be read ({error}); \
             if it was forgotten before and its record put back, drop it with \
             `dedup forget {short}`; else `dedup repair index` finds what the index lost",
            r.hostname,
            r.time,
            short = &snapshot.to_hex()[..12],
        ),
        None => format!(
            "tree {id} cannot be read ({error}); `dedup verify` names the snapshots it \
             breaks (drop them with `dedup forget`), and `dedup repair index` finds what \
             the index lost"
        ),
    };
    Error::WouldLoseData {
        command: "gc",
        reason,
    }
}

/// The entries of an unindexed pack that are live but not in the index
/// (`locations`, in the same order, says where the index has each).
fn lost_entries(
    entries: &[PackEntry],
    locations: &[Option<Location>],
    live: &HashSet<ChunkId>,
) -> Vec<PackEntry> {
    entries
        .iter()
        .zip(locations)
        .filter(|(e, loc)| loc.is_none() && live.contains(&e.id))
        .map(|(e, _)| *e)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u64, stored_len: u32) -> PackEntry {
        PackEntry {
            id: ChunkId::of(&[n]),
            offset,
            raw_len: stored_len,
            stored_len,
            flags: 0,
        }
    }

    /// Three records of 100, 100 and 1000 stored bytes in one pack.
    fn pack() -> (PackId, Vec<PackEntry>) {
        let entries = vec![entry(1, 8, 100), entry(2, 149, 100), entry(3, 290, 1000)];
        (PackId([9; 16]), entries)
    }

    fn here(pack: PackId, entries: &[PackEntry]) -> Vec<Option<Location>> {
        entries
            .iter()
            .map(|e| Some(Location { pack, entry: *e }))
            .collect()
    }

    #[test]
    fn an_orphan_is_adopted_only_for_live_objects_the_index_lacks() {
        let (pack, entries) = pack();
        let elsewhere = PackId([8; 16]);
        let locations = vec![
            None,
            None,
            Some(Location {
                pack: elsewhere,
                entry: entries[2],
            }),
        ];
        let live = HashSet::from([entries[0].id, entries[2].id]);
        assert_eq!(lost_entries(&entries, &locations, &live), vec![entries[0]]);
        assert!(lost_entries(&entries, &here(pack, &entries), &live).is_empty());
        assert!(lost_entries(&entries, &locations, &HashSet::new()).is_empty());
    }

    #[test]
    fn a_pack_with_nothing_live_is_deleted_and_its_entries_forgotten() {
        let (pack, entries) = pack();
        let fate = fate(&pack, &entries, &here(pack, &entries), &HashSet::new());
        let dead = entries.iter().map(|e| e.id).collect();
        assert_eq!(fate, Fate::Delete { dead });
    }

    #[test]
    fn a_mostly_dead_pack_is_rewritten_with_its_live_records() {
        let (pack, entries) = pack();
        let live = HashSet::from([entries[0].id]);
        let fate = fate(&pack, &entries, &here(pack, &entries), &live);
        let dead = vec![entries[1].id, entries[2].id];
        assert_eq!(
            fate,
            Fate::Rewrite {
                live: vec![entries[0]],
                dead
            }
        );
    }

    #[test]
    fn a_mostly_live_pack_is_kept() {
        let (pack, entries) = pack();
        let live = HashSet::from([entries[2].id]);
        assert_eq!(
            fate(&pack, &entries, &here(pack, &entries), &live),
            Fate::Keep
        );
    }

    #[test]
    fn copies_the_index_does_not_use_are_never_forgotten() {
        let (pack, entries) = pack();
        let elsewhere = PackId([8; 16]);
        // Record 3 (most of the bytes) is live but indexed in another pack:
        // here it is dead weight, and its entry belongs to the other pack.
        let mut locations = here(pack, &entries);
        locations[2] = Some(Location {
            pack: elsewhere,
            entry: entries[2],
        });
        locations[1] = None;
        let live = HashSet::from([entries[0].id, entries[2].id]);
        assert_eq!(
            fate(&pack, &entries, &locations, &live),
            Fate::Rewrite {
                live: vec![entries[0]],
                dead: vec![]
            }
        );
        let live = HashSet::from([entries[2].id]);
        assert_eq!(
            fate(&pack, &entries, &locations, &live),
            Fate::Delete {
                dead: vec![entries[0].id]
            }
        );
    }
}
