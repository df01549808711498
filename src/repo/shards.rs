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

use crate::config::{Config, ShardConfig};
use crate::error::{Error, Result};
use crate::index::PackInfo;
use crate::repo::{check_new_shard, Progress, Repository, Shard, CONFIG};
use crate::ring::ShardId;
use crate::store::pack::repack;
use crate::store::{PackEntry, PackId};

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
}

impl Repository {
    /// Writes a new config and rebuilds the ring and shard list from it.
    fn replace_config(&mut self, config: Config) -> Result<()> {
        let ring = config.ring().ok_or_else(|| {
            Error::invalid(
                "shard weights",
                "at least one shard must keep a weight above 0",
            )
        })?;
        let mut shards = Vec::new();
        for s in &config.shards {
            let backend = match self.shards.iter().find(|old| old.id == s.id) {
                Some(old) => old.backend.clone(),
                None => check_new_shard(&self.root, s)?,
            };
            shards.push(Shard { id: s.id, backend });
        }
        self.files.put(CONFIG, &config.encode())?;
        self.config = config;
        self.ring = ring;
        self.shards = shards;
        Ok(())
    }

    /// Adds a shard with `weight` and returns its id. `location` is a
    /// folder or an `s3://bucket/prefix`; `options` are object-store
    /// settings (see [`ShardConfig::options`]). The location must hold no
    /// packs yet, and an object store must answer. Nothing moves until
    /// [`rebalance`](Self::rebalance).
    pub fn add_shard(
        &mut self,
        location: &str,
        weight: u32,
        options: BTreeMap<String, String>,
    ) -> Result<ShardId> {
        let path = ShardConfig::normalise(location)?;
        if self
            .config
            .shards
            .iter()
            .any(|s| s.location(&self.root) == path)
        {
            return Err(Error::invalid(
                "shard path",
                format!("{path} is already a shard"),
            ));
        }
        let id = ShardId(
            self.config
                .shards
                .iter()
                .map(|s| s.id.0 + 1)
                .max()
                .unwrap_or(0),
        );
        let mut config = self.config.clone();
        config.shards.push(ShardConfig {
            id,
            path,
            weight,
            options,
        });
        self.replace_config(config)?;
        Ok(id)
    }

    /// Changes a shard's weight (0: it receives nothing new).
    pub fn set_shard_weight(&mut self, id: ShardId, weight: u32) -> Result<()> {
        let mut config = self.config.clone();
        let shard = config
            .shards
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::invalid("shard", format!("no shard {id}")))?;
        shard.weight = weight;
        self.replace_config(config)
    }

    /// Drains shard `id` (weight 0, rebalance, gc) and removes it from the
    /// config. Its folder is left in place, empty of packs.
    pub fn remove_shard(
        &mut self,
        id: ShardId,
        progress: &dyn Progress,
    ) -> Result<RebalanceReport> {
        self.set_shard_weight(id, 0)?;
        let report = self.rebalance(false, progress)?;
        if self.index.packs()?.iter().any(|(_, p)| p.shard == id) {
            return Err(Error::invalid(
                "shard",
                format!("shard {id} still holds packs after draining"),
            ));
        }
        let mut config = self.config.clone();
        config.shards.retain(|s| s.id != id);
        self.replace_config(config)?;
        Ok(report)
    }

    /// Moves every chunk whose owner on the current ring is not the shard
    /// holding it; the packs it leaves are rewritten without it.
    pub fn rebalance(&self, dry_run: bool, progress: &dyn Progress) -> Result<RebalanceReport> {
        let packs = self.index.packs()?;
        let mut moves: BTreeMap<ShardId, ShardMoves> = BTreeMap::new();
        let mut report = RebalanceReport {
            dry_run,
            ..Default::default()
        };
        progress.set_total(packs.len() as u64);
        for (pack, info, entries) in self.trailers(&packs) {
            progress.advance(1);
            let source = self.shard(info.shard)?;
            let entries = entries?;
            let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
            let mut leaving: BTreeMap<ShardId, Vec<PackEntry>> = BTreeMap::new();
            let mut staying = Vec::new();
            for (e, loc) in entries.iter().zip(self.index.chunks(&ids)?) {
                let indexed_here = loc.is_some_and(|l| l.pack == *pack && l.offset == e.offset);
                if !indexed_here {
                    continue;
                }
                report.total_objects += 1;
                let owner = self.ring.locate(&e.id);
                if owner == info.shard {
                    staying.push(*e);
                } else {
                    leaving.entry(owner).or_default().push(*e);
                }
            }
            if leaving.is_empty() {
                continue;
            }
            for (dest, es) in &leaving {
                let n = es.len() as u64;
                let b: u64 = es.iter().map(|e| u64::from(e.stored_len)).sum();
                report.moved_objects += n;
                report.moved_bytes += b;
                let out = moves.entry(info.shard).or_insert_with(|| ShardMoves {
                    id: info.shard,
                    ..Default::default()
                });
                out.chunks_out += n;
                out.bytes_out += b;
                let into = moves.entry(*dest).or_insert_with(|| ShardMoves {
                    id: *dest,
                    ..Default::default()
                });
                into.chunks_in += n;
                into.bytes_in += b;
            }
            if dry_run {
                continue;
            }
            // The leaving records go to their new owners and the staying
            // ones into a fresh pack on this shard; one index batch switches
            // over and forgets the old pack, which is deleted only then.
            let bytes = source.backend.get(&pack.key())?;
            let mut batch = self.index.batch();
            let mut groups: Vec<(ShardId, Vec<PackEntry>)> = leaving.into_iter().collect();
            if !staying.is_empty() {
                groups.push((info.shard, staying));
            }
            for (dest, es) in groups {
                let (new_bytes, new_entries) = repack(&bytes, &es);
                for e in &new_entries {
                    crate::repo::open_record(
                        &e.id,
                        &crate::index::Location::of(*pack, e),
                        e.stored(&new_bytes),
                    )?;
                }
                let new_pack = PackId::random();
                self.shard(dest)?.backend.put(&new_pack.key(), &new_bytes)?;
                batch.put_pack(
                    new_pack,
                    &PackInfo::of(dest, new_bytes.len() as u64, &new_entries),
                    &new_entries,
                );
                self.packs
                    .write()
                    .expect("packs lock")
                    .insert(new_pack, dest);
            }
            batch.delete_pack(pack);
            self.index.commit(batch)?;
            self.packs.write().expect("packs lock").remove(pack);
            source.backend.delete(&pack.key())?;
        }
        report.shards = moves.into_values().collect();
        Ok(report)
    }
}
