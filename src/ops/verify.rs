//! `verify`: check that every snapshot can be restored, without restoring it.
//!
//! Structure (always): every snapshot record decodes and hashes to its id;
//! every tree it reaches reads back, hashes to its id and decodes; every
//! chunk a file names is in the index and points into a pack the index
//! lists, present in its shard with a trailer that parses; the Bloom filter
//! file, if present, is intact. Data (`read_data`): whole packs are read and
//! every record is decompressed and re-hashed against its id.
//!
//! Each finding names the chunk, the pack it lives in, and the snapshot files
//! it breaks (found by a second walk, only when something is wrong).

use std::collections::{HashMap, HashSet};
use std::fmt;

use rayon::prelude::*;
use serde::Serialize;

use crate::bloom::Bloom;
use crate::catalog::base::{ids_added_by, newest_manifest};
use crate::catalog::records;
use crate::catalog::segment;
use crate::catalog::{Location, PackInfo, LOOKUP_BATCH};
use crate::engine::{in_pool, Engine, Progress};
use crate::error::{Error, Result};
use crate::format::manifest::{Cataloged, Manifest};
use crate::format::pack::{check_layout, entries_of, trailer_len, FOOTER_SIZE};
use crate::format::record;
use crate::format::snapshot::{EntryKind, SnapshotId, SnapshotRecord};
use crate::id::ChunkId;
use crate::store::{is_not_found, PackEntry, PackId};

/// What kind of thing is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A chunk a snapshot needs is not in the index, or lives in a pack
    /// that is missing, damaged or unknown.
    MissingChunk,
    /// A chunk's bytes do not decode or hash to its id.
    DamagedChunk,
    /// An indexed pack is not in its shard.
    MissingPack,
    /// An indexed pack's trailer does not read.
    DamagedPack,
    /// A tree does not read, hash to its id, or decode.
    DamagedTree,
    /// A snapshot record does not decode or disagrees with its file.
    DamagedSnapshot,
    /// The saved Bloom filter does not decode.
    DamagedBloom,
    /// A shard cannot be used (missing, not mounted, not this
    /// repository's); its packs count as missing.
    UnavailableShard,
    /// The home's index families or their manifest do not read, point
    /// into packs their pack table lacks, or lack a chunk this machine's
    /// index holds (another machine would not find it).
    DamagedIndex,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::MissingChunk => "missing-chunk",
            ProblemKind::DamagedChunk => "damaged-chunk",
            ProblemKind::MissingPack => "missing-pack",
            ProblemKind::DamagedPack => "damaged-pack",
            ProblemKind::DamagedTree => "damaged-tree",
            ProblemKind::DamagedSnapshot => "damaged-snapshot",
            ProblemKind::DamagedBloom => "damaged-bloom",
            ProblemKind::UnavailableShard => "unavailable-shard",
            ProblemKind::DamagedIndex => "damaged-index",
        })
    }
}

/// One thing found wrong.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// One line for people.
    pub message: String,
    /// The chunk or tree, when one is involved.
    pub chunk: Option<ChunkId>,
    /// The snapshot, when one is involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    /// The pack, when one is involved.
    pub pack: Option<String>,
    /// Snapshot files this breaks, as `snapshot-prefix:path`.
    pub files: Vec<String>,
}

impl Problem {
    /// A problem with nothing named yet but its kind and message.
    fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            message: message.into(),
            chunk: None,
            snapshot: None,
            pack: None,
            files: Vec::new(),
        }
    }

    fn in_pack(mut self, pack: &PackId) -> Self {
        self.pack = Some(pack.to_hex());
        self
    }

    fn of_snapshot(mut self, id: &SnapshotId) -> Self {
        self.snapshot = Some(*id);
        self
    }
}

/// What `verify` checked and found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Snapshots walked.
    pub snapshots: u64,
    /// Distinct trees read.
    pub trees: u64,
    /// Distinct chunks referenced by snapshots.
    pub chunks: u64,
    /// Entries of the home's index families read and checked.
    pub index_entries: u64,
    /// Packs whose trailers were checked.
    pub packs: u64,
    /// Packs read in full and re-hashed.
    pub packs_read: u64,
    /// Chunks re-hashed.
    pub chunks_read: u64,
    /// Everything found wrong; empty when the repository is sound.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    /// What was checked, each problem with the pack and the files it
    /// breaks, and the verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} snapshots, {} trees, {} chunks, {} packs; re-hashed {} chunks in {} packs",
            self.snapshots, self.trees, self.chunks, self.packs, self.chunks_read, self.packs_read
        )?;
        for p in &self.problems {
            writeln!(f, "{}: {}", p.kind, p.message)?;
            if let Some(pack) = &p.pack {
                writeln!(f, "  pack {pack}")?;
            }
            for file in &p.files {
                writeln!(f, "  breaks {file}")?;
            }
        }
        if self.is_clean() {
            writeln!(f, "no problems found")
        } else {
            writeln!(f, "{} problems found", self.problems.len())
        }
    }
}

/// Bad chunks and trees found so far, each with its problem (files are
/// attached at the end).
type BadChunks = HashMap<ChunkId, Problem>;

/// Packs whose trailer did not read, with the kind of problem.
type BadPacks = HashMap<PackId, ProblemKind>;

/// Packs `verify --read-data` reads at once from an object store (whole
/// packs: at most this many times the pack size in memory).
const PACKS_AHEAD: usize = 8;

/// True when `pack` is in the share `share` (0.0 to 1.0) of packs picked
/// by `seed`: each pack is in or out independently, by a hash of the seed
/// and its id, so a different seed picks a different sample.
fn sampled(seed: [u8; 8], pack: &PackId, share: f64) -> bool {
    if share >= 1.0 {
        return true;
    }
    let mut input = seed.to_vec();
    input.extend_from_slice(&pack.0);
    let position = ChunkId::of(&input).ring_position();
    (position as f64) < share * u64::MAX as f64
}

/// The work of [`Repository::verify`](crate::Repository::verify).
pub(crate) fn verify(
    engine: &Engine,
    read_data: f64,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut bad = BadChunks::new();
    check_bloom(engine, &mut report)?;
    check_families(engine, &mut report)?;
    // Chunks are found through the families: with one damaged, lookups
    // would fail where it is needed; what verify found is the news, and
    // `repair index` the way on.
    if report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::DamagedIndex)
        && engine.index.is_overlay()
    {
        return Ok(report);
    }
    let packs = engine.index.packs()?;
    let bad_packs = check_trailers(engine, &packs, &mut report)?;
    let snapshots = check_snapshots(engine, &mut report)?;
    let referenced = check_trees(engine, &snapshots, &mut bad, &mut report)?;
    check_refs(engine, &referenced, &bad_packs, &mut bad)?;
    if read_data > 0.0 {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the operating system's random source failed");
        let chosen: Vec<_> = packs
            .iter()
            .filter(|(pack, _)| !bad_packs.contains_key(pack))
            .filter(|(pack, _)| sampled(seed, pack, read_data))
            .collect();
        progress.set_total(chosen.iter().map(|(_, p)| p.size).sum());
        // On an object store several packs are read at once (each
        // read a round trip), then checked in order.
        let (pool, ahead) = match engine.io_pool() {
            Some(pool) => (Some(pool), PACKS_AHEAD),
            None => (None, 1),
        };
        for batch in chosen.chunks(ahead) {
            let read: Vec<Result<Vec<u8>>> = in_pool(pool.as_ref(), || {
                batch
                    .par_iter()
                    .map(|(pack, info)| engine.shard(info.shard)?.backend.get(&pack.key()))
                    .collect()
            });
            for ((pack, info), bytes) in batch.iter().zip(read) {
                report.packs_read += 1;
                check_pack_data(engine, pack, info, &bytes?, &mut bad, &mut report)?;
                progress.advance(info.size);
            }
        }
    }
    attach_files(engine, &snapshots, bad, &mut report)?;
    Ok(report)
}

/// The Bloom filter is disposable, but a damaged one is still news.
fn check_bloom(engine: &Engine, report: &mut VerifyReport) -> Result<()> {
    let path = engine.cache.bloom();
    if let Some(bytes) = crate::engine::cache::CacheSlot::read(&path)? {
        if let Err(e) = Bloom::decode(&bytes, &path.display().to_string()) {
            report.problems.push(Problem::new(
                ProblemKind::DamagedBloom,
                format!("{e} (rebuilt from the index at the next write)"),
            ));
        }
    }
    Ok(())
}

/// The home's newest manifest and its families read, and hold what this
/// machine's index does (with the segments no manifest covers yet). A
/// family or pack part gone while read was superseded by a compaction
/// meanwhile: the check starts again from the newer manifest.
fn check_families(engine: &Engine, report: &mut VerifyReport) -> Result<()> {
    let mut attempt = 0;
    loop {
        match check_families_once(engine, report) {
            Err(e) if is_not_found(&e) && attempt < FAMILY_RETRIES => attempt += 1,
            Err(e) if is_not_found(&e) => {
                let message = format!("the index families keep vanishing while read: {e}");
                report
                    .problems
                    .push(Problem::new(ProblemKind::DamagedIndex, message));
                return Ok(());
            }
            other => return other,
        }
    }
}

/// Times [`check_families`] starts again after a compaction.
const FAMILY_RETRIES: u32 = 5;

/// One pass of [`check_families`].
fn check_families_once(engine: &Engine, report: &mut VerifyReport) -> Result<()> {
    let home = engine.files.as_ref();
    // The segments before the manifest: one written since covers any
    // segment listed that a compaction deleted meanwhile.
    let names = segment::names(home)?;
    let manifest = match newest_manifest(home, engine.crypt()) {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(()),
        Err(e) if is_not_found(&e) => return Err(e),
        Err(e @ Error::ObjectStore { .. }) => return Err(e),
        Err(e) => {
            let message = format!("the index manifest: {e}");
            report
                .problems
                .push(Problem::new(ProblemKind::DamagedIndex, message));
            return Ok(());
        }
    };
    let covered: HashSet<&str> = manifest.covers.iter().map(String::as_str).collect();
    let uncovered: Vec<String> = names
        .into_iter()
        .filter(|n| !covered.contains(n.as_str()))
        .collect();
    let added = ids_added_by(home, &uncovered)?;
    check_catalog(engine, &manifest, report)?;
    let mut problems = Vec::new();
    report.index_entries = engine
        .index
        .check_families(home, &manifest, &added, &mut |m| problems.push(m))?;
    report.problems.extend(
        problems
            .into_iter()
            .map(|m| Problem::new(ProblemKind::DamagedIndex, m)),
    );
    Ok(())
}

/// The record catalog of `manifest` reads, each record in it decodes and
/// matches its name, and each the index holds is the index's copy.
fn check_catalog(engine: &Engine, manifest: &Manifest, report: &mut VerifyReport) -> Result<()> {
    let home = engine.files.as_ref();
    for part in manifest.records.iter().flatten() {
        let entries = match records::read_parts(home, engine.crypt(), std::slice::from_ref(part)) {
            Ok(entries) => entries,
            Err(e) if is_not_found(&e) => return Err(e),
            Err(e) => {
                let message = format!("the record catalog: {e}");
                report
                    .problems
                    .push(Problem::new(ProblemKind::DamagedIndex, message));
                continue;
            }
        };
        for (id, entry) in entries {
            let Cataloged::Record(bytes) = entry else {
                continue;
            };
            let damaged = |message: String| {
                Problem::new(ProblemKind::DamagedSnapshot, message).of_snapshot(&id)
            };
            if let Err(e) = crate::engine::snapshots::decode_record(engine.crypt(), &bytes, &id) {
                report
                    .problems
                    .push(damaged(format!("record {id} in the catalog: {e}")));
            } else if engine
                .index
                .snapshot(&id)?
                .is_some_and(|held| held != bytes)
            {
                report.problems.push(damaged(format!(
                    "record {id} in the catalog differs from the index's copy"
                )));
            }
        }
    }
    Ok(())
}

/// Every indexed pack is present with a trailer that reads.
fn check_trailers(
    engine: &Engine,
    packs: &[(PackId, PackInfo)],
    report: &mut VerifyReport,
) -> Result<BadPacks> {
    let mut bad_packs = BadPacks::new();
    // A shard that is not there is one problem, not one per pack.
    let mut gone = HashSet::new();
    for shard in &engine.shards {
        if let Some(u) = shard.backend.unavailable() {
            gone.insert(shard.id);
            report.problems.push(Problem::new(
                ProblemKind::UnavailableShard,
                u.error().to_string(),
            ));
        }
    }
    let (lost, packs): (Vec<_>, Vec<_>) = packs
        .iter()
        .copied()
        .partition(|(_, info)| gone.contains(&info.shard));
    for (pack, _) in lost {
        report.packs += 1;
        bad_packs.insert(pack, ProblemKind::MissingPack);
    }
    for (pack, info, entries) in engine.trailers(&packs) {
        report.packs += 1;
        match entries {
            Ok(_) => {}
            // A store that cannot be reached says nothing about the
            // data: stop instead of reporting every pack on it damaged.
            Err(e @ Error::ObjectStore { .. }) => return Err(e),
            Err(e) => {
                let kind = if is_not_found(&e) {
                    ProblemKind::MissingPack
                } else {
                    ProblemKind::DamagedPack
                };
                let message = format!("pack {pack} on shard {}: {e}", info.shard);
                report
                    .problems
                    .push(Problem::new(kind, message).in_pack(pack));
                bad_packs.insert(*pack, kind);
            }
        }
    }
    Ok(bad_packs)
}

/// Each snapshot with the tree its walk starts from (see
/// `SnapshotRecord::top`) and its root tree (what paths are named
/// from); records that fail to decode, or disagree with their file
/// (what a rebuilt index would use), become problems.
fn check_snapshots(
    engine: &Engine,
    report: &mut VerifyReport,
) -> Result<Vec<(SnapshotId, ChunkId, ChunkId)>> {
    let mut out = Vec::new();
    let mut indexed = HashSet::new();
    for (id, bytes) in engine.index.snapshots()? {
        indexed.insert(id);
        let key = SnapshotRecord::key(&id);
        let damaged =
            |message| Problem::new(ProblemKind::DamagedSnapshot, message).of_snapshot(&id);
        // A record folded into the catalog has no file: this cache's copy
        // of the catalog is held against the index (and the home's
        // catalog against both by `check_catalog`).
        let stored = match engine.index.cataloged_record(&id)? {
            Some(cataloged) => Ok(cataloged),
            None => engine.files.get(&key),
        };
        match stored {
            Ok(file) if file == bytes => {}
            Ok(_) => report
                .problems
                .push(damaged(format!("{key} differs from the index's copy"))),
            // Forgotten since this reader listed the records (at open,
            // snapshots without a record file left its index): gone
            // on purpose, and a gc may have retired its chunks in the
            // segments this reader applied after, so it is not checked.
            Err(e) if is_not_found(&e) && !engine.is_writer() => continue,
            Err(e) => report.problems.push(damaged(format!("{key}: {e}"))),
        }
        match crate::engine::snapshots::decode_record(&engine.crypt, &bytes, &id) {
            Ok(r) => out.push((id, r.top(), r.tree)),
            Err(e) => report.problems.push(damaged(e.to_string())),
        }
    }
    // Record files the index lacks are adopted by the next writer,
    // unless they do not decode: those are news.
    let keys = engine.files.list(SnapshotRecord::FOLDER)?;
    for (id, key, bytes) in engine.unindexed_records(&keys, &indexed) {
        if let Err(e) = bytes {
            let message = format!("{key} is not adopted: {e}");
            let problem = Problem::new(ProblemKind::DamagedSnapshot, message);
            report.problems.push(problem.of_snapshot(&id));
        }
    }
    report.snapshots = out.len() as u64;
    Ok(out)
}

/// Every tree the snapshots reach reads and decodes; returns the
/// chunks their files name.
fn check_trees(
    engine: &Engine,
    snapshots: &[(SnapshotId, ChunkId, ChunkId)],
    bad: &mut BadChunks,
    report: &mut VerifyReport,
) -> Result<HashSet<ChunkId>> {
    let mut referenced = HashSet::new();
    engine.walk_trees(snapshots.iter().map(|(_, top, _)| *top), |id, tree| {
        report.trees += 1;
        match tree {
            Ok(tree) => referenced.extend(tree.chunk_ids()),
            Err(e) => {
                let problem = Problem::new(ProblemKind::DamagedTree, e.to_string());
                bad.insert(id, problem);
            }
        }
        Ok(())
    })?;
    report.chunks = referenced.len() as u64;
    Ok(referenced)
}

/// Every referenced chunk is in the index, in a pack it lists whose
/// trailer reads.
fn check_refs(
    engine: &Engine,
    referenced: &HashSet<ChunkId>,
    bad_packs: &BadPacks,
    bad: &mut BadChunks,
) -> Result<()> {
    let ids: Vec<ChunkId> = referenced.iter().copied().collect();
    for batch in ids.chunks(LOOKUP_BATCH) {
        for (id, loc) in batch.iter().zip(engine.index.chunks(batch)?) {
            if let Some(problem) = ref_problem(engine, id, loc, bad_packs) {
                bad.insert(*id, problem);
            }
        }
    }
    Ok(())
}

/// What is wrong with chunk `id`, found at `loc` in the index.
fn ref_problem(
    engine: &Engine,
    id: &ChunkId,
    loc: Option<Location>,
    bad_packs: &BadPacks,
) -> Option<Problem> {
    let missing = |message| Some(Problem::new(ProblemKind::MissingChunk, message));
    let Some(loc) = loc else {
        return missing(format!("chunk {id} is not in the index"));
    };
    let problem = match bad_packs.get(&loc.pack) {
        Some(kind) => missing(format!("chunk {id} lives in a {kind}")),
        None if engine.index.pack_shard(&loc.pack).is_none() => {
            missing(format!("chunk {id} points at unknown pack {}", loc.pack))
        }
        None => None,
    };
    problem.map(|p| p.in_pack(&loc.pack))
}

/// Re-hashes every record of a whole pack's `bytes`.
fn check_pack_data(
    engine: &Engine,
    pack: &PackId,
    info: &PackInfo,
    bytes: &[u8],
    bad: &mut BadChunks,
    report: &mut VerifyReport,
) -> Result<()> {
    let backend = &engine.shard(info.shard)?.backend;
    let location = format!("{}/{}", backend.location(), pack.key());
    let tail = trailer_len(&bytes[bytes.len().saturating_sub(FOOTER_SIZE)..], &location);
    let laid_out = |entries: &[PackEntry]| {
        let trailer_start = (bytes.len() - tail.as_ref().map_or(0, |n| *n)) as u64;
        check_layout(bytes, entries, trailer_start, &location, engine.crypt())
    };
    let entries =
        match entries_of(bytes, &location, engine.crypt()).and_then(|e| laid_out(&e).map(|()| e)) {
            Ok(e) => e,
            Err(e) => {
                let problem = Problem::new(ProblemKind::DamagedPack, e.to_string()).in_pack(pack);
                report.problems.push(problem);
                return Ok(());
            }
        };
    for e in entries {
        report.chunks_read += 1;
        let opened = e
            .stored_in(bytes, 0)
            .and_then(|stored| record::open_rehashed(pack, &e, stored, engine.crypt()));
        if let Err(err) = opened {
            // Only damage to the copy the index uses breaks anything.
            let indexed = engine.index.chunk(&e.id)?;
            if indexed.is_some_and(|l| l.is(pack, &e)) {
                let problem =
                    Problem::new(ProblemKind::DamagedChunk, err.to_string()).in_pack(pack);
                bad.insert(e.id, problem);
            }
        }
    }
    Ok(())
}

/// Adds the bad chunks and trees to the report, each with the snapshot
/// files (or folders) it breaks.
fn attach_files(
    engine: &Engine,
    snapshots: &[(SnapshotId, ChunkId, ChunkId)],
    bad: BadChunks,
    report: &mut VerifyReport,
) -> Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    let mut files = files_using(engine, snapshots, &bad)?;
    let mut bad: Vec<_> = bad.into_iter().collect();
    bad.sort_by_key(|(id, _)| *id);
    for (id, mut problem) in bad {
        problem.chunk = Some(id);
        problem.files = files.remove(&id).unwrap_or_default();
        report.problems.push(problem);
    }
    Ok(())
}

/// For each bad chunk or tree, the snapshot files (or folders) it
/// breaks, as `snapshot-prefix:path`. Paths multiply where folders
/// share subtrees, so the walk stops expanding after
/// [`PATH_BUDGET`] folders (a crafted graph could otherwise make it
/// exponential); the names found by then are reported.
fn files_using(
    engine: &Engine,
    snapshots: &[(SnapshotId, ChunkId, ChunkId)],
    bad: &BadChunks,
) -> Result<HashMap<ChunkId, Vec<String>>> {
    let mut out: HashMap<ChunkId, Vec<String>> = HashMap::new();
    // From the top (the root folder's own entry, where recorded), whose
    // one entry is the snapshot's root: its path stays empty.
    let roots = snapshots
        .iter()
        .map(|(snap, top, root)| {
            let prefix = snap.to_hex()[..12].to_string();
            (*top, (prefix, String::new(), top != root))
        })
        .collect();
    let mut budget = PATH_BUDGET;
    engine.walk_paths(roots, |(prefix, path, top), id, tree| {
        if budget == 0 {
            return Ok(Vec::new());
        }
        budget -= 1;
        if bad.contains_key(&id) {
            let shown = if path.is_empty() { "." } else { path };
            out.entry(id)
                .or_default()
                .push(format!("{prefix}:{shown}/"));
            return Ok(Vec::new());
        }
        let Ok(tree) = tree else {
            return Ok(Vec::new());
        };
        let mut subdirs = Vec::new();
        for e in tree.entries {
            let name = crate::engine::paths::escape_name(&e.name);
            let child = if *top {
                String::new()
            } else if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            match e.kind {
                EntryKind::File { chunks, .. } => {
                    for (c, _) in chunks {
                        if bad.contains_key(&c) {
                            let list = out.entry(c).or_default();
                            let entry = format!("{prefix}:{child}");
                            if list.last() != Some(&entry) {
                                list.push(entry);
                            }
                        }
                    }
                }
                EntryKind::Dir { tree } => {
                    subdirs.push((tree, (prefix.clone(), child, false)));
                }
                _ => {}
            }
        }
        Ok(subdirs)
    })?;
    Ok(out)
}

/// Folders [`Repository::files_using`] visits at most.
const PATH_BUDGET: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_takes_about_its_share_and_all_takes_all() {
        let packs: Vec<PackId> = (0..4000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                PackId(id)
            })
            .collect();
        let count = |seed: [u8; 8], share| packs.iter().filter(|p| sampled(seed, p, share)).count();
        let tenth = count([1; 8], 0.1);
        assert!((300..500).contains(&tenth), "{tenth} of 4000 for 10%");
        assert_eq!(count([1; 8], 1.0), 4000);
        assert_eq!(count([1; 8], 0.0), 0);
        let other: Vec<_> = packs.iter().filter(|p| sampled([2; 8], p, 0.1)).collect();
        let first: Vec<_> = packs.iter().filter(|p| sampled([1; 8], p, 0.1)).collect();
        assert_ne!(first, other, "another seed picks another sample");
    }

    #[test]
    fn problem_kinds_print_as_their_json_names() {
        for kind in [
            ProblemKind::MissingChunk,
            ProblemKind::DamagedChunk,
            ProblemKind::MissingPack,
            ProblemKind::DamagedPack,
            ProblemKind::DamagedTree,
            ProblemKind::DamagedSnapshot,
            ProblemKind::DamagedBloom,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}
