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

use crate::catalog::{Location, PackInfo};
use crate::engine::families::{Compacted, SEGMENTS_BEFORE_COMPACTION};
use crate::engine::{Engine, Evidence, Mode, Progress};
use crate::error::{Error, Result};
use crate::format::pack::repack;
use crate::format::snapshot::{GroupBy, SnapshotFilter, SnapshotId, SnapshotRecord};
use crate::id::ChunkId;
use crate::policy::{self, GroupDecisions, KeepPolicy};
use crate::store::read_entries;
use crate::store::{PackEntry, PackId};
use crate::units::human_bytes;

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
    /// The segments folded into a new version of the index families, when
    /// gc compacted them (more than 64 uncovered, or the first time).
    pub compacted: Option<Compacted>,
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
        if let Some(c) = &self.compacted {
            writeln!(f, "{c}")?;
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

/// What `forget` did (or, in a dry run, would do): its `Display` is what
/// people see, its `Serialize` what `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The policy in words (absent when snapshots were named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Each group's decisions, newest first (empty when snapshots were named).
    pub groups: Vec<GroupDecisions>,
    /// The snapshots forgotten (or, in a dry run, that would be).
    pub forgotten: Vec<SnapshotId>,
    /// What a `gc` run right after reclaimed (`forget --prune`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcReport>,
}

impl ForgetReport {
    /// Forgetting the snapshots `ids`, named one by one.
    pub fn named(ids: Vec<SnapshotId>, dry_run: bool) -> Self {
        ForgetReport {
            dry_run,
            policy: None,
            groups: Vec::new(),
            forgotten: ids,
            gc: None,
        }
    }

    /// Applying `policy`, whose decisions were `groups`
    /// ([`Repository::forget_by_policy`](crate::Repository::forget_by_policy)).
    pub fn of_policy(policy: &KeepPolicy, groups: Vec<GroupDecisions>, dry_run: bool) -> Self {
        let forgotten = groups
            .iter()
            .flat_map(|g| &g.snapshots)
            .filter(|d| !d.keep)
            .map(|d| d.id)
            .collect();
        ForgetReport {
            dry_run,
            policy: Some(policy.to_string()),
            groups,
            forgotten,
            gc: None,
        }
    }
}

impl std::fmt::Display for ForgetReport {
    /// Per group, each snapshot kept (and why) or removed; then what was
    /// done.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(policy) = &self.policy {
            writeln!(f, "applying the policy: {policy}")?;
        }
        for group in &self.groups {
            let kept = group.snapshots.iter().filter(|d| d.keep).count();
            let removed = group.snapshots.len() - kept;
            writeln!(f, "\n{}: keep {kept}, remove {removed}", group.group)?;
            for d in &group.snapshots {
                let verdict = if d.keep { "keep  " } else { "remove" };
                let id = &d.id.to_hex()[..16];
                let line = format!("  {verdict}  {id}  {}  {}", d.time, d.reasons.join(", "));
                writeln!(f, "{}", line.trim_end())?;
            }
        }
        if self.policy.is_some() {
            writeln!(f)?;
        }
        let n = self.forgotten.len();
        let snapshots = if n == 1 { "snapshot" } else { "snapshots" };
        if self.dry_run {
            return writeln!(f, "would forget {n} {snapshots} (dry run: nothing changed)");
        }
        if self.policy.is_none() {
            for id in &self.forgotten {
                writeln!(f, "forgot snapshot {id}")?;
            }
        } else {
            writeln!(f, "forgot {n} {snapshots}")?;
        }
        match &self.gc {
            Some(gc) => write!(f, "{gc}"),
            None if n > 0 => writeln!(f, "`dedup gc` reclaims the space they alone used"),
            None => Ok(()),
        }
    }
}

/// The work of [`Repository::forget`](crate::Repository::forget).
pub(crate) fn forget(engine: &Engine, ids: &[SnapshotId]) -> Result<()> {
    engine.check_alone("forget")?;
    let _alone = engine.reclaiming();
    let unreadable = engine.unreadable_records();
    let evidence = engine.evidence();
    let known_otherwise = |id: &SnapshotId| {
        unreadable.iter().any(|r| r.id == *id)
            || evidence.contains(&Evidence::RecordBack { id: *id })
    };
    for id in ids {
        if !known_otherwise(id) {
            engine.snapshot(id)?;
        }
    }
    engine.hold.check_alive()?;
    engine.forget_records(ids)?;
    engine
        .unreadable
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|r| !ids.contains(&r.id));
    Ok(())
}

/// The work of [`Repository::forget_by_policy`](crate::Repository::forget_by_policy).
pub(crate) fn forget_by_policy(
    engine: &Engine,
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
    let snapshots = engine.snapshots_matching(filter)?;
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
            forget(engine, &gone)?;
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
fn live_set(engine: &Engine, mode: Mode) -> Result<(HashSet<ChunkId>, u64)> {
    engine.check_every_record()?;
    // What the home lost may be what this machine would need to put
    // it back: nothing is deleted until a person has looked. (A
    // forgotten record that is back is left out, and deleted below:
    // the forget stands.)
    let evidence: Vec<Evidence> = engine
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
    let snapshots = engine.snapshots()?;
    let mut live = HashSet::new();
    let mut failed = mark(engine, snapshots.iter().map(|(_, r)| r.top()), &mut live)?;
    let mut adopted = None;
    for _ in 1..MARK_TRIES {
        if failed.is_empty() {
            break;
        }
        let missing = failed
            .iter()
            .any(|(_, e)| matches!(e, Error::MissingChunk(_)));
        if missing && adopted.is_none() && mode == Mode::Apply {
            adopted = Some(adopt_unindexed_packs(engine)?);
        }
        failed = mark(engine, failed.into_iter().map(|(id, _)| id), &mut live)?;
    }
    if let Some((id, error)) = failed.first() {
        return Err(unmarkable(*id, error, &snapshots));
    }
    for key in engine.files.list("blobs/")? {
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
    engine: &Engine,
    roots: impl IntoIterator<Item = ChunkId>,
    live: &mut HashSet<ChunkId>,
) -> Result<Vec<(ChunkId, Error)>> {
    let mut failed = Vec::new();
    engine.walk_trees(roots, |id, tree| {
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
fn adopt_unindexed_packs(engine: &Engine) -> Result<u64> {
    let mut adopted = 0;
    for shard in &engine.shards {
        for key in shard.backend.list("")? {
            let Some(pack) = PackId::from_key(&key) else {
                continue;
            };
            if engine.index.pack_shard(&pack).is_some() {
                continue;
            }
            let size = shard.backend.size(&key)?;
            let Ok(entries) =
                read_entries(shard.backend.as_ref(), &key, Some(size), engine.crypt())
            else {
                continue;
            };
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            let missing: Vec<PackEntry> = entries
                .iter()
                .zip(engine.index.chunks(&ids)?)
                .filter(|(_, loc)| loc.is_none())
                .map(|(e, _)| *e)
                .collect();
            if missing.is_empty() {
                continue;
            }
            let mut batch = engine.index.batch();
            batch.index_pack(pack, &PackInfo::of(shard.id, size, &missing), &missing);
            engine.index.commit(batch)?;
            adopted += 1;
        }
    }
    Ok(adopted)
}

/// The work of [`Repository::gc`](crate::Repository::gc).
pub(crate) fn gc(engine: &Engine, mode: Mode, progress: &dyn Progress) -> Result<GcReport> {
    engine.check_alone("gc")?;
    let _alone = engine.reclaiming();
    engine.check_every_shard("gc")?;
    let (live, adopted) = live_set(engine, mode)?;
    let mut report = GcReport {
        dry_run: mode == Mode::DryRun,
        live_objects: live.len() as u64,
        orphans_adopted: adopted,
        forgotten_records_deleted: delete_forgotten_records(engine, mode)?,
        ..Default::default()
    };
    let packs = engine.index.packs()?;
    progress.set_total(packs.len() as u64);
    // Retired in this run but kept for readers: not orphans to sweep.
    let mut kept = HashSet::new();
    for (pack, info, entries) in engine.trailers(&packs) {
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
        let locations = engine.index.chunks(&ids)?;
        match fate(pack, &entries, &locations, &live) {
            Fate::Keep => {}
            Fate::Delete { dead } => {
                report.packs_deleted += 1;
                report.objects_removed += dead.len() as u64;
                let deleted =
                    mode == Mode::DryRun || replace_pack(engine, pack, info, None, &dead, ids)?;
                report.freed(deleted, info.size, 0);
                if !deleted {
                    kept.insert(*pack);
                }
            }
            Fate::Rewrite { live, dead } => {
                report.packs_rewritten += 1;
                report.objects_removed += dead.len() as u64;
                let bytes = engine.shard(info.shard)?.backend.get(&pack.key())?;
                let (new_bytes, new_entries) = repack(pack, &bytes, 0, &live, engine.crypt())?;
                let copy = Some((&new_bytes[..], &new_entries[..]));
                let deleted =
                    mode == Mode::DryRun || replace_pack(engine, pack, info, copy, &dead, ids)?;
                report.freed(deleted, info.size, new_bytes.len() as u64);
                if !deleted {
                    kept.insert(*pack);
                }
            }
        }
    }
    sweep_orphans(engine, mode, &live, &kept, &mut report)?;
    if mode == Mode::Apply {
        // Removed ids would linger in the filter as false positives.
        engine.rebuild_bloom()?;
        engine.save_bloom()?;
        report.compacted = engine.compact_index(SEGMENTS_BEFORE_COMPACTION)?;
    }
    Ok(report)
}

/// Deletes the records of forgotten snapshots that are back beside
/// their tombstones (a forget cut short, or someone put them back):
/// the forget stands. Returns their ids.
fn delete_forgotten_records(engine: &Engine, mode: Mode) -> Result<Vec<SnapshotId>> {
    let back: Vec<SnapshotId> = engine
        .evidence()
        .into_iter()
        .filter_map(|e| match e {
            Evidence::RecordBack { id } => Some(id),
            _ => None,
        })
        .collect();
    if mode == Mode::Apply && !back.is_empty() {
        engine.hold.check_alive()?;
        engine.forget_records(&back)?;
    }
    Ok(back)
}

/// Retires `pack` (whose records hold `ids`), publishing `copy` (a
/// sealed pack of its live records) on the same shard in the same index
/// batch, and forgetting `dead`; then deletes the old file, unless a
/// reader is open (returns whether it did).
fn replace_pack(
    engine: &Engine,
    pack: &PackId,
    info: &PackInfo,
    copy: Option<(&[u8], &[PackEntry])>,
    dead: &[ChunkId],
    ids: Vec<ChunkId>,
) -> Result<bool> {
    let shard = engine.shard(info.shard)?;
    let mut batch = engine.index.batch();
    if let Some((bytes, entries)) = copy {
        batch.publish_pack(info.shard, shard.backend.as_ref(), bytes, entries)?;
    }
    for id in dead {
        batch.drop_entry(id, *pack);
    }
    batch.retire_pack(*pack, ids, shard.backend.clone());
    Ok(engine.commit_alone(batch)? == 0)
}

/// Deletes pack files nothing indexes (written by an ingest that
/// crashed before its commit, or by a gc that crashed before its
/// delete) and temporary files of writes a crash interrupted.
fn sweep_orphans(
    engine: &Engine,
    mode: Mode,
    live: &HashSet<ChunkId>,
    kept: &HashSet<PackId>,
    report: &mut GcReport,
) -> Result<()> {
    for shard in &engine.shards {
        report.bytes_freed += shard.backend.sweep_unfinished(mode)?;
        for key in shard.backend.list("")? {
            let Some(pack) = PackId::from_key(&key) else {
                continue;
            };
            if engine.index.pack_shard(&pack).is_some() || kept.contains(&pack) {
                continue;
            }
            let size = shard.backend.size(&key)?;
            // An orphan that holds live objects the index lacks (an
            // index rebuilt or restored without it) is the only copy
            // of them: it is indexed again, never deleted.
            let entries = read_entries(shard.backend.as_ref(), &key, Some(size), engine.crypt());
            if let Ok(entries) = entries {
                let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
                let lost = lost_entries(&entries, &engine.index.chunks(&ids)?, live);
                if !lost.is_empty() {
                    report.orphans_adopted += 1;
                    if mode == Mode::Apply {
                        let info = PackInfo::of(shard.id, size, &lost);
                        let mut batch = engine.index.batch();
                        batch.index_pack(pack, &info, &lost);
                        engine.index.commit(batch)?;
                    }
                    continue;
                }
            }
            report.orphan_packs += 1;
            if mode == Mode::Apply {
                engine.hold.check_alive()?;
            }
            let deleted =
                mode == Mode::DryRun || engine.delete_unless_read(|| shard.backend.delete(&key))?;
            report.freed(deleted, size, 0);
        }
    }
    Ok(())
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
