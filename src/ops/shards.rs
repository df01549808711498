//! Growing and shrinking the shard set: add, re-weight, rebalance, remove.
//!
//! A shard change rewrites `config` (durably, whole) and so the ring. Data
//! already stored stays where it is until `rebalance`, which moves only the
//! chunks whose owner on the new ring differs from the shard holding them:
//! their stored bytes are copied into new packs on the new owner, the rest of
//! the pack into a new pack on its own shard, all written durably; one index
//! batch per pack then points the chunks at the copies and forgets the old
//! pack, which is deleted last (as `gc` does). A crash at any point leaves
//! every chunk reachable through the index (the old copy until the batch,
//! the new one after) and at worst unindexed pack files for `gc`. Removing a shard sets its weight to 0, rebalances (drains it),
//! and drops it from the config once nothing in the index lives there.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::Location;
use crate::engine::open::check_new_shard;
use crate::engine::{Engine, Mode, Progress, Shard};
use crate::error::{Error, Result};
use crate::format::config::{Config, ShardConfig};
use crate::format::pack::{entries_of, repack};
use crate::id::ChunkId;
use crate::ring::{Ring, ShardId};
use crate::store::{shard, PackEntry, PackId};
use crate::units::human_bytes;

/// What a rebalance moves (or, in a dry run, would move) for one shard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShardMoves {
    /// The shard.
    pub id: ShardId,
    /// Chunks leaving it.
    pub chunks_out: u64,
    /// Their stored bytes.
    pub bytes_out: u64,
    /// Chunks arriving.
    pub chunks_in: u64,
    /// Their stored bytes.
    pub bytes_in: u64,
}

/// The outcome of a rebalance.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RebalanceReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Objects in the index.
    pub total_objects: u64,
    /// Objects whose owner changed.
    pub moved_objects: u64,
    /// Their stored bytes.
    pub moved_bytes: u64,
    /// Per shard.
    pub shards: Vec<ShardMoves>,
    /// Old pack files left in place because a reader was open; the next
    /// `gc` without readers deletes them.
    pub packs_kept_for_readers: u64,
}

/// What [`Repository::remove_lost_shard`](crate::Repository::remove_lost_shard) forgot.
#[derive(Clone, Debug, Serialize)]
pub struct LostShard {
    /// The shard.
    pub id: ShardId,
    /// Packs the index listed there.
    pub packs: u64,
    /// Objects (chunks, trees) whose only indexed copy was there.
    pub objects: u64,
}

impl std::fmt::Display for LostShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "removed shard {}: forgot {} packs holding {} objects",
            self.id, self.packs, self.objects
        )?;
        if self.objects > 0 {
            writeln!(
                f,
                "run `dedup verify` to see which snapshots lost data; ingesting the same files again stores it anew"
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for RebalanceReport {
    /// One line for the whole move, then one per shard with chunks going
    /// or coming.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would move" } else { "moved" };
        writeln!(
            f,
            "{verb} {} of {} chunks ({:.1}%), {}",
            self.moved_objects,
            self.total_objects,
            100.0 * self.moved_objects as f64 / self.total_objects.max(1) as f64,
            human_bytes(self.moved_bytes)
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "  shard {}: {} chunks ({}) out, {} chunks ({}) in",
                s.id,
                s.chunks_out,
                human_bytes(s.bytes_out),
                s.chunks_in,
                human_bytes(s.bytes_in)
            )?;
        }
        if self.packs_kept_for_readers > 0 {
            writeln!(
                f,
                "{} old pack files kept while readers are open; the next gc deletes them",
                self.packs_kept_for_readers
            )?;
        }
        Ok(())
    }
}

/// Writes a new config and rebuilds the ring and shard list from it.
fn replace_config(engine: &mut Engine, config: Config) -> Result<()> {
    if let Some(s) = config
        .shards
        .iter()
        .find(|s| s.weight > ShardConfig::MAX_WEIGHT)
    {
        return Err(Error::invalid(
            "shard weight",
            format!("{} is more than {}", s.weight, ShardConfig::MAX_WEIGHT),
        ));
    }
    let ring = config.ring().ok_or_else(|| {
        Error::invalid(
            "shard weights",
            "at least one shard must keep a weight above 0",
        )
    })?;
    let mut shards = Vec::new();
    for s in &config.shards {
        let backend = match engine.shards.iter().find(|old| old.id == s.id) {
            Some(old) => old.backend.clone(),
            None => check_new_shard(&engine.root, &config.repository_id, s, &engine.fs)?,
        };
        shards.push(Shard { id: s.id, backend });
    }
    engine.write_config(&config)?;
    engine.config = config;
    engine.ring = ring;
    engine.shards = shards;
    Ok(())
}

/// The work of [`Repository::add_shard`](crate::Repository::add_shard).
pub(crate) fn add_shard(
    engine: &mut Engine,
    location: &str,
    weight: u32,
    options: BTreeMap<String, String>,
) -> Result<ShardId> {
    engine.check_alone("shard add")?;
    let path = ShardConfig::normalise(location)?;
    if engine
        .config
        .shards
        .iter()
        .any(|s| s.location(&engine.root) == path)
    {
        return Err(Error::invalid(
            "shard path",
            format!("{path} is already a shard"),
        ));
    }
    let id = ShardId(
        engine
            .config
            .shards
            .iter()
            .map(|s| s.id.0 + 1)
            .max()
            .unwrap_or(0),
    );
    let mut config = engine.config.clone();
    config.shards.push(ShardConfig {
        id,
        path,
        weight,
        options,
    });
    replace_config(engine, config)?;
    Ok(id)
}

/// The work of [`Repository::set_shard_weight`](crate::Repository::set_shard_weight).
pub(crate) fn set_shard_weight(engine: &mut Engine, id: ShardId, weight: u32) -> Result<()> {
    engine.check_alone("shard set-weight")?;
    let mut config = engine.config.clone();
    let shard = config
        .shards
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::invalid("shard", format!("no shard {id}")))?;
    shard.weight = weight;
    replace_config(engine, config)
}

/// The work of [`Repository::remove_shard`](crate::Repository::remove_shard).
pub(crate) fn remove_shard(
    engine: &mut Engine,
    id: ShardId,
    progress: &dyn Progress,
) -> Result<RebalanceReport> {
    engine.check_alone("shard remove")?;
    engine.check_every_shard("shard remove")?;
    set_shard_weight(engine, id, 0)?;
    let mut report = rebalance(engine, Mode::Apply, progress)?;
    if engine.index.packs()?.iter().any(|(_, p)| p.shard == id) {
        return Err(Error::invalid(
            "shard",
            format!("shard {id} still holds packs after draining"),
        ));
    }
    if report.packs_kept_for_readers > 0 {
        // Once the shard leaves the config no gc looks there again.
        progress.warn("waiting for open readers to close, to delete the drained packs");
        let shard = engine.shard(id)?;
        let drained = || -> Result<()> {
            for key in shard.backend.list("")? {
                if PackId::from_key(&key).is_some_and(|p| engine.index.pack_shard(&p).is_none()) {
                    shard.backend.delete(&key)?;
                }
            }
            Ok(())
        };
        engine.hold.after_readers(drained)??;
        report.packs_kept_for_readers = 0;
    }
    // The folder may be given to `shard add` again.
    engine.shard(id)?.backend.delete(shard::MARKER)?;
    let mut config = engine.config.clone();
    config.shards.retain(|s| s.id != id);
    replace_config(engine, config)?;
    Ok(report)
}

/// The work of [`Repository::remove_lost_shard`](crate::Repository::remove_lost_shard)(crate::Repository::remove_lost_shard).
pub(crate) fn remove_lost_shard(engine: &mut Engine, id: ShardId) -> Result<LostShard> {
    engine.check_alone("shard remove --lost")?;
    if engine.shard(id)?.backend.unavailable().is_none() {
        return Err(Error::invalid(
            "shard",
            format!("shard {id} is available: `shard remove` moves its data to the others"),
        ));
    }
    if engine.config.shards.len() == 1 {
        return Err(Error::invalid("shard", "cannot remove the only shard"));
    }
    let packs: std::collections::HashSet<PackId> = engine
        .index
        .packs()?
        .into_iter()
        .filter_map(|(pack, info)| (info.shard == id).then_some(pack))
        .collect();
    let objects = engine.index.chunks_in(&packs)?;
    let mut batch = engine.index.batch();
    let mut ids: std::collections::HashMap<PackId, Vec<ChunkId>> =
        packs.iter().map(|p| (*p, Vec::new())).collect();
    for object in &objects {
        batch.drop_entry(&object.entry.id, object.pack);
        ids.entry(object.pack).or_default().push(object.entry.id);
    }
    for (pack, ids) in ids {
        // Retired without a delete: the files are out of reach anyway.
        batch.retire_pack(pack, ids, engine.shard(id)?.backend.clone());
    }
    engine.hold.check_alive()?;
    let _ = engine.index.commit(batch)?;
    let mut config = engine.config.clone();
    config.shards.retain(|s| s.id != id);
    if config.ring().is_none() {
        // Every other shard has weight 0: the survivors share new data.
        for s in &mut config.shards {
            s.weight = 1;
        }
    }
    replace_config(engine, config)?;
    engine.rebuild_bloom()?;
    engine.save_bloom()?;
    Ok(LostShard {
        id,
        packs: packs.len() as u64,
        objects: objects.len() as u64,
    })
}

/// The work of [`Repository::rebalance`](crate::Repository::rebalance).
pub(crate) fn rebalance(
    engine: &Engine,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<RebalanceReport> {
    engine.check_alone("rebalance")?;
    let _alone = engine.reclaiming();
    engine.check_every_shard("rebalance")?;
    let packs = engine.index.packs()?;
    let mut moves: BTreeMap<ShardId, ShardMoves> = BTreeMap::new();
    let mut report = RebalanceReport {
        dry_run: mode == Mode::DryRun,
        ..Default::default()
    };
    progress.set_total(packs.len() as u64);
    for (pack, info, entries) in engine.trailers(&packs) {
        progress.advance(1);
        let entries = entries?;
        let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
        let locations = engine.index.chunks(&ids)?;
        let split = Split::of(pack, info.shard, &entries, &locations, &engine.ring);
        report.total_objects += split.indexed;
        if split.leaving.is_empty() {
            continue;
        }
        for (dest, es) in &split.leaving {
            let n = es.len() as u64;
            let b: u64 = es.iter().map(|e| u64::from(e.stored_len)).sum();
            report.moved_objects += n;
            report.moved_bytes += b;
            let out = moves
                .entry(info.shard)
                .or_insert_with(|| ShardMoves::new(info.shard));
            out.chunks_out += n;
            out.bytes_out += b;
            let into = moves.entry(*dest).or_insert_with(|| ShardMoves::new(*dest));
            into.chunks_in += n;
            into.bytes_in += b;
        }
        if mode == Mode::Apply {
            report.packs_kept_for_readers += apply_split(engine, pack, info.shard, split)?;
        }
    }
    report.shards = moves.into_values().collect();
    Ok(report)
}

/// Moves a pack's records as `split` says: the leaving records go to
/// their new owners and the staying ones into a fresh pack on this
/// shard; one index batch switches over and retires the old pack,
/// whose file is then deleted unless a reader is open (returns how
/// many files were kept: 0 or 1).
fn apply_split(engine: &Engine, pack: &PackId, shard: ShardId, split: Split) -> Result<u64> {
    let source = engine.shard(shard)?;
    let bytes = source.backend.get(&pack.key())?;
    let mut batch = engine.index.batch();
    let mut groups: Vec<(ShardId, Vec<PackEntry>)> = split.leaving.into_iter().collect();
    if !split.staying.is_empty() {
        groups.push((shard, split.staying));
    }
    for (dest, es) in groups {
        let (new_bytes, new_entries) = repack(pack, &bytes, 0, &es, engine.crypt())?;
        let backend = engine.shard(dest)?.backend.as_ref();
        batch.publish_pack(dest, backend, &new_bytes, &new_entries)?;
    }
    // Every id the file holds, copies the index does not use included.
    let ids = entries_of(&bytes, &pack.key(), engine.crypt())?
        .iter()
        .map(|e| e.id)
        .collect();
    batch.retire_pack(*pack, ids, source.backend.clone());
    engine.commit_alone(batch)
}

impl ShardMoves {
    fn new(id: ShardId) -> Self {
        ShardMoves {
            id,
            ..Default::default()
        }
    }
}

/// A pack's records the index uses, sorted by their owner on the ring.
#[derive(Debug, Default, PartialEq)]
struct Split {
    /// Records the index uses in this pack.
    indexed: u64,
    /// Those owned by the pack's own shard.
    staying: Vec<PackEntry>,
    /// Those owned by other shards, by owner.
    leaving: BTreeMap<ShardId, Vec<PackEntry>>,
}

impl Split {
    /// Splits `entries` of `pack` on `shard`, given where the index says
    /// each is (`locations`, same order): copies the index does not use
    /// are left behind.
    fn of(
        pack: &PackId,
        shard: ShardId,
        entries: &[PackEntry],
        locations: &[Option<Location>],
        ring: &Ring,
    ) -> Self {
        let mut split = Split::default();
        for (e, loc) in entries.iter().zip(locations) {
            if !loc.is_some_and(|l| l.is(pack, e)) {
                continue;
            }
            split.indexed += 1;
            let owner = ring.locate(&e.id);
            if owner == shard {
                split.staying.push(*e);
            } else {
                split.leaving.entry(owner).or_default().push(*e);
            }
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;

    #[test]
    fn a_pack_splits_by_owner_and_leaves_unused_copies_behind() {
        let ring = Ring::new(&[(ShardId(0), 1), (ShardId(1), 1)], 64).unwrap();
        let pack = PackId([3; 16]);
        let entries: Vec<PackEntry> = (0..40u32)
            .map(|i| PackEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                offset: 8 + u64::from(i) * 100,
                raw_len: 10,
                stored_len: 10,
                flags: 0,
            })
            .collect();
        let mut locations: Vec<Option<Location>> = entries
            .iter()
            .map(|e| Some(Location { pack, entry: *e }))
            .collect();
        locations[0] = None;
        locations[1] = Some(Location {
            pack: PackId([4; 16]),
            entry: entries[1],
        });
        let split = Split::of(&pack, ShardId(0), &entries, &locations, &ring);
        assert_eq!(split.indexed, 38);
        assert!(!split.staying.is_empty());
        assert_eq!(split.leaving.len(), 1);
        let leaving = &split.leaving[&ShardId(1)];
        assert_eq!(split.staying.len() + leaving.len(), 38);
        assert!(split
            .staying
            .iter()
            .all(|e| ring.locate(&e.id) == ShardId(0)));
        assert!(leaving.iter().all(|e| ring.locate(&e.id) == ShardId(1)));
        assert!(!split.staying.contains(&entries[0]) && !leaving.contains(&entries[1]));
    }
}
