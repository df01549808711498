//! Dedup-ratio reports: what was stored, what it cost, and where it went.
//!
//! The repository report sums the pack summaries in the index (no scan of
//! chunks); a snapshot report walks that snapshot's trees and counts its
//! distinct chunks. Both fill the same [`Report`], so `--json` consumers see
//! one shape.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use crate::bloom::{BLOOM_FALSE_POSITIVES, BLOOM_LOOKUPS, BLOOM_SKIPPED};
use crate::catalog::LOOKUP_BATCH;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::snapshot::{BloomStats, EntryKind, SnapshotId};
use crate::id::ChunkId;
use crate::ring::ShardId;
pub use crate::units::human_bytes;
use crate::units::ratio;

/// One shard's share.
#[derive(Clone, Debug, Serialize)]
pub struct ShardReport {
    /// Stable shard id.
    pub id: ShardId,
    /// Where it lives: a folder or an `s3://` URL.
    pub path: String,
    /// Object-store settings, secrets hidden.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Configured weight.
    pub weight: u32,
    /// Chunks (file data) on it.
    pub chunks: u64,
    /// Bytes on it as stored (packs, trees included).
    pub bytes: u64,
    /// Its fraction of all stored bytes.
    pub share: f64,
    /// The fraction its weight asks for.
    pub target_share: f64,
    /// Why it cannot be used, when it cannot (missing, not mounted, not
    /// this repository's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl std::fmt::Display for ShardReport {
    /// One line (two when it cannot be used), as `shard list` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("  ({})", options.join(", "))
        };
        writeln!(
            f,
            "{}  weight {:>3}  {:>10}  {:>8} chunks  {:5.1}% (target {:5.1}%)  {}{options}",
            self.id,
            self.weight,
            human_bytes(self.bytes),
            self.chunks,
            self.share * 100.0,
            self.target_share * 100.0,
            self.path,
        )?;
        if let Some(why) = &self.unavailable {
            writeln!(f, "    unavailable: {why}")?;
        }
        Ok(())
    }
}

/// A dedup report for the whole repository or one snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `repository`, or the snapshot id.
    pub scope: String,
    /// Snapshots covered.
    pub snapshots: u64,
    /// Files covered (with repeats across snapshots).
    pub files: u64,
    /// Bytes of file content covered.
    pub logical_bytes: u64,
    /// Chunk references (with repeats).
    pub total_chunks: u64,
    /// Distinct data chunks.
    pub unique_chunks: u64,
    /// Their uncompressed bytes.
    pub unique_bytes: u64,
    /// Bytes on disk for them (after compression; for the repository, every
    /// pack byte, trees and pack trailers included).
    pub stored_bytes: u64,
    /// `logical_bytes / unique_bytes`: what deduplication alone saved.
    pub dedup_ratio: f64,
    /// `logical_bytes / stored_bytes`: deduplication and compression together.
    pub total_ratio: f64,
    /// `1 - stored / unique` for the data chunks: what compression saved.
    pub compression_saving: f64,
    /// `unique_bytes / unique_chunks`.
    pub average_chunk_size: f64,
    /// Tree objects (directory listings).
    pub tree_objects: u64,
    /// Pack files.
    pub packs: u64,
    /// Bloom filter effectiveness over all ingests (repository scope).
    pub bloom: BloomStats,
    /// Per-shard distribution.
    pub shards: Vec<ShardReport>,
    /// How far the shards are from their weights: the largest
    /// `|share / target_share - 1|` over shards with a weight, and 1.0 for
    /// a shard that holds bytes but has no weight (it is being drained).
    /// 0 is perfect; rebalancing after a shard change brings it back to
    /// what the ring's hashing gives (a few percent).
    pub shard_imbalance: f64,
    /// Each snapshot's cost when taken and what it holds alone now, oldest
    /// first (repository scope, `report --json`; see [`Usage::costs`]).
    ///
    /// [`Usage::costs`]: crate::ops::insight::usage::Usage::costs
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshot_costs: Vec<crate::ops::insight::usage::SnapshotCost>,
}

/// See [`Report::shard_imbalance`].
fn imbalance(shards: &[ShardReport]) -> f64 {
    shards
        .iter()
        .map(|s| match (s.target_share > 0.0, s.bytes > 0) {
            (true, _) => (s.share / s.target_share - 1.0).abs(),
            (false, true) => 1.0,
            (false, false) => 0.0,
        })
        .fold(0.0, f64::max)
}

fn shard_reports(engine: &Engine, per_shard: &HashMap<ShardId, (u64, u64)>) -> Vec<ShardReport> {
    let total_bytes: u64 = per_shard.values().map(|v| v.1).sum();
    let total_weight: u64 = engine
        .config
        .shards
        .iter()
        .map(|s| u64::from(s.weight))
        .sum();
    engine
        .config
        .shards
        .iter()
        .map(|s| {
            let (chunks, bytes) = per_shard.get(&s.id).copied().unwrap_or_default();
            ShardReport {
                id: s.id,
                path: s.location(&engine.root),
                options: s.shown_options(),
                weight: s.weight,
                chunks,
                bytes,
                share: ratio(bytes, total_bytes).min(1.0),
                target_share: ratio(u64::from(s.weight), total_weight),
                unavailable: engine
                    .shard(s.id)
                    .ok()
                    .and_then(|shard| shard.backend.unavailable())
                    .map(|u| u.reason.clone()),
            }
        })
        .collect()
}

/// The work of [`Repository::report`](crate::Repository::report).
pub(crate) fn report(engine: &Engine) -> Result<Report> {
    let snapshots = engine.snapshots()?;
    let packs = engine.pack_infos()?;
    let mut per_shard: HashMap<ShardId, (u64, u64)> = HashMap::new();
    let (mut unique_chunks, mut unique_bytes, mut data_stored, mut stored, mut trees) =
        (0, 0, 0, 0, 0);
    for (_, p) in &packs {
        unique_chunks += u64::from(p.data_chunks);
        unique_bytes += p.data_raw;
        data_stored += p.data_stored;
        stored += p.size;
        trees += u64::from(p.tree_objects);
        let e = per_shard.entry(p.shard).or_default();
        e.0 += u64::from(p.data_chunks);
        e.1 += p.size;
    }
    let logical: u64 = snapshots.iter().map(|(_, r)| r.summary.logical_bytes).sum();
    let shards = shard_reports(engine, &per_shard);
    Ok(Report {
        scope: "repository".into(),
        snapshots: snapshots.len() as u64,
        files: snapshots.iter().map(|(_, r)| r.summary.files).sum(),
        logical_bytes: logical,
        total_chunks: snapshots.iter().map(|(_, r)| r.summary.total_chunks).sum(),
        unique_chunks,
        unique_bytes,
        stored_bytes: stored,
        dedup_ratio: ratio(logical, unique_bytes),
        total_ratio: ratio(logical, stored),
        compression_saving: 1.0 - ratio(data_stored, unique_bytes).min(1.0),
        average_chunk_size: if unique_chunks == 0 {
            0.0
        } else {
            unique_bytes as f64 / unique_chunks as f64
        },
        tree_objects: trees,
        packs: packs.len() as u64,
        bloom: BloomStats {
            lookups: engine.index.counter(BLOOM_LOOKUPS)?,
            skipped: engine.index.counter(BLOOM_SKIPPED)?,
            false_positives: engine.index.counter(BLOOM_FALSE_POSITIVES)?,
        },
        shard_imbalance: imbalance(&shards),
        shards,
        snapshot_costs: Vec::new(),
    })
}

/// The work of [`Repository::snapshot_report`](crate::Repository::snapshot_report).
pub(crate) fn snapshot_report(engine: &Engine, id: &SnapshotId) -> Result<Report> {
    let record = engine.snapshot(id)?;
    // Each distinct tree is read once (in parallel, see `walk_trees`)
    // and summed up; a subtree that appears twice in the snapshot
    // counts twice in files and bytes, once in `distinct`.
    let mut distinct: HashMap<ChunkId, u32> = HashMap::new();
    let mut trees: HashMap<ChunkId, TreeSums> = HashMap::new();
    engine.walk_trees([record.tree], |id, tree| {
        let mut sums = TreeSums::default();
        for entry in tree?.entries {
            match entry.kind {
                EntryKind::File { size, chunks } => {
                    sums.files += 1;
                    sums.logical += size;
                    sums.refs += chunks.len() as u64;
                    distinct.extend(chunks);
                }
                EntryKind::Dir { tree } => sums.children.push(tree),
                _ => {}
            }
        }
        trees.insert(id, sums);
        Ok(())
    })?;
    let (files, logical, refs) = subtree_sums(&record.tree, &trees, &mut HashMap::new());
    let ids: Vec<ChunkId> = distinct.keys().copied().collect();
    let mut per_shard: HashMap<ShardId, (u64, u64)> = HashMap::new();
    let (mut unique_bytes, mut stored) = (0u64, 0u64);
    for batch in ids.chunks(LOOKUP_BATCH) {
        for (id, loc) in batch.iter().zip(engine.index.chunks(batch)?) {
            let loc = loc.ok_or(Error::MissingChunk(*id))?;
            unique_bytes += u64::from(loc.entry.raw_len);
            stored += u64::from(loc.entry.stored_len);
            let e = per_shard
                .entry(engine.pack_shard(&loc.pack)?.id)
                .or_default();
            e.0 += 1;
            e.1 += u64::from(loc.entry.stored_len);
        }
    }
    let shards = shard_reports(engine, &per_shard);
    Ok(Report {
        scope: id.to_hex(),
        snapshots: 1,
        files,
        logical_bytes: logical,
        total_chunks: refs,
        unique_chunks: ids.len() as u64,
        unique_bytes,
        stored_bytes: stored,
        dedup_ratio: ratio(logical, unique_bytes),
        total_ratio: ratio(logical, stored),
        compression_saving: 1.0 - ratio(stored, unique_bytes).min(1.0),
        average_chunk_size: if ids.is_empty() {
            0.0
        } else {
            unique_bytes as f64 / ids.len() as f64
        },
        tree_objects: trees.len() as u64,
        packs: 0,
        bloom: record.summary.bloom,
        shard_imbalance: imbalance(&shards),
        shards,
        snapshot_costs: Vec::new(),
    })
}

/// What one tree holds directly.
#[derive(Default)]
struct TreeSums {
    files: u64,
    logical: u64,
    refs: u64,
    children: Vec<ChunkId>,
}

/// Files, logical bytes and chunk references under tree `id`, counting a
/// subtree as often as it appears; `memo` keeps each subtree's sums. A
/// post-order walk on an explicit stack: a crafted chain of a million
/// nested trees must not overflow the thread's stack.
fn subtree_sums(
    id: &ChunkId,
    trees: &HashMap<ChunkId, TreeSums>,
    memo: &mut HashMap<ChunkId, (u64, u64, u64)>,
) -> (u64, u64, u64) {
    let mut stack = vec![(*id, false)];
    while let Some((tree, children_done)) = stack.pop() {
        if memo.contains_key(&tree) {
            continue;
        }
        let own = &trees[&tree];
        if children_done {
            let sums =
                own.children
                    .iter()
                    .fold((own.files, own.logical, own.refs), |acc, child| {
                        let c = memo[child];
                        (acc.0 + c.0, acc.1 + c.1, acc.2 + c.2)
                    });
            memo.insert(tree, sums);
        } else {
            stack.push((tree, true));
            stack.extend(
                own.children
                    .iter()
                    .filter(|c| !memo.contains_key(c))
                    .map(|c| (*c, false)),
            );
        }
    }
    memo[id]
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scope:              {}", self.scope)?;
        writeln!(f, "snapshots:          {}", self.snapshots)?;
        writeln!(f, "files:              {}", self.files)?;
        writeln!(
            f,
            "logical size:       {} ({} B)",
            human_bytes(self.logical_bytes),
            self.logical_bytes
        )?;
        writeln!(
            f,
            "unique data:        {} in {} chunks (average {})",
            human_bytes(self.unique_bytes),
            self.unique_chunks,
            human_bytes(self.average_chunk_size as u64)
        )?;
        writeln!(
            f,
            "stored on disk:     {} ({} B)",
            human_bytes(self.stored_bytes),
            self.stored_bytes
        )?;
        writeln!(f, "chunk references:   {}", self.total_chunks)?;
        writeln!(f, "dedup ratio:        {:.2}x", self.dedup_ratio)?;
        writeln!(
            f,
            "compression saving: {:.1}%",
            self.compression_saving * 100.0
        )?;
        writeln!(
            f,
            "overall ratio:      {:.2}x (logical / stored)",
            self.total_ratio
        )?;
        writeln!(f, "trees:              {}", self.tree_objects)?;
        if self.packs > 0 {
            writeln!(f, "packs:              {}", self.packs)?;
        }
        let b = &self.bloom;
        writeln!(
            f,
            "bloom filter:       {} lookups, {} index reads skipped ({:.1}%), {} false positives",
            b.lookups,
            b.skipped,
            ratio(b.skipped, b.lookups) * 100.0,
            b.false_positives
        )?;
        writeln!(
            f,
            "shards:             {:.1}% from their weights at most",
            self.shard_imbalance * 100.0
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "  {}  {:>10}  {:>8} chunks  {:5.1}% (target {:5.1}%)  {}",
                s.id,
                human_bytes(s.bytes),
                s.chunks,
                s.share * 100.0,
                s.target_share * 100.0,
                s.path
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_sums_walk_a_deep_chain_and_count_shared_subtrees_twice() {
        // A chain far deeper than a recursive walk's stack would take.
        let depth = 1_000_000u32;
        let id = |n: u32| ChunkId::of(&n.to_le_bytes());
        let mut trees: HashMap<ChunkId, TreeSums> = (0..depth)
            .map(|n| {
                let sums = TreeSums {
                    files: 1,
                    logical: 10,
                    refs: 2,
                    children: if n + 1 < depth {
                        vec![id(n + 1)]
                    } else {
                        Vec::new()
                    },
                };
                (id(n), sums)
            })
            .collect();
        let mut memo = HashMap::new();
        let chain = subtree_sums(&id(0), &trees, &mut memo);
        assert_eq!(
            chain,
            (
                u64::from(depth),
                10 * u64::from(depth),
                2 * u64::from(depth)
            )
        );
        // A folder holding the same subtree twice counts it twice.
        let top = ChunkId::of(b"top");
        trees.insert(
            top,
            TreeSums {
                files: 0,
                logical: 0,
                refs: 0,
                children: vec![id(depth - 2), id(depth - 2)],
            },
        );
        assert_eq!(subtree_sums(&top, &trees, &mut memo), (4, 40, 8));
    }
}
