//! The consistent-hash ring that names the shard a new chunk goes to.
//!
//! Each shard owns `vnodes × weight` points on a 64-bit ring, each point the
//! first 8 bytes of `SHA-256("dedup-ring" || shard id || point number)`. A
//! chunk belongs to the first point at or after its id's first 8 bytes,
//! wrapping around. Because a shard's points depend only on its own stable
//! id, adding a shard to N moves about 1/(N+1) of the chunks, all of them to
//! the new shard, and removing one moves only the chunks it owned.
//!
//! Pure: no I/O. The index records where each chunk actually lives, so a
//! lookup never depends on the ring; the ring only decides where new chunks go.

use crate::id::ChunkId;
use sha2::{Digest, Sha256};

/// Virtual nodes per unit of weight unless the config says otherwise.
pub const DEFAULT_VNODES: u32 = 256;

pub use crate::id::ShardId;

/// A sorted ring of `(position, shard)` points.
#[derive(Clone, Debug)]
pub struct Ring {
    points: Vec<(u64, ShardId)>,
}

impl Ring {
    /// Builds the ring for `(shard, weight)` pairs. Shards of weight 0 get no
    /// points (they receive nothing new). Returns `None` when no shard has
    /// any weight.
    pub fn new(shards: &[(ShardId, u32)], vnodes: u32) -> Option<Self> {
        let mut points = Vec::new();
        for &(shard, weight) in shards {
            for n in 0..vnodes.saturating_mul(weight) {
                let mut h = Sha256::new();
                h.update(b"dedup-ring");
                h.update(shard.0.to_le_bytes());
                h.update(n.to_le_bytes());
                let digest: [u8; 32] = h.finalize().into();
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest[..8]);
                points.push((u64::from_be_bytes(first), shard));
            }
        }
        if points.is_empty() {
            return None;
        }
        // Ties (astronomically rare) break by shard id, so every reader agrees.
        points.sort_unstable();
        Some(Ring { points })
    }

    /// The shard that owns `id`.
    pub fn locate(&self, id: &ChunkId) -> ShardId {
        let pos = id.ring_position();
        let i = self.points.partition_point(|&(p, _)| p < pos);
        self.points[if i == self.points.len() { 0 } else { i }].1
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Always false: a ring has at least one point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ids(n: u32) -> impl Iterator<Item = ChunkId> {
        (0..n).map(|i| ChunkId::of(&i.to_le_bytes()))
    }

    /// A million ids, as the ring's contract is stated for.
    const MANY: u32 = 1_000_000;

    #[test]
    fn adding_a_shard_moves_about_one_over_n_plus_one_and_only_to_it() {
        let all: Vec<ChunkId> = ids(MANY).collect();
        for n in [1u32, 2, 3, 4, 8, 16] {
            let old: Vec<_> = (0..n).map(|s| (ShardId(s), 1)).collect();
            let mut new = old.clone();
            new.push((ShardId(n), 1));
            let (a, b) = (
                Ring::new(&old, DEFAULT_VNODES).unwrap(),
                Ring::new(&new, DEFAULT_VNODES).unwrap(),
            );
            let total = all.len();
            let mut moved = 0;
            for id in &all {
                let (from, to) = (a.locate(id), b.locate(id));
                if from != to {
                    assert_eq!(to, ShardId(n), "a chunk moved between old shards");
                    moved += 1;
                }
            }
            let share = f64::from(moved) / total as f64;
            let ideal = 1.0 / f64::from(n + 1);
            assert!(
                share > 0.8 * ideal && share < 1.2 * ideal,
                "n={n}: moved {share}, ideal {ideal}"
            );
        }
    }

    #[test]
    fn each_shard_holds_its_weights_share_within_ten_percent() {
        let all: Vec<ChunkId> = ids(MANY).collect();
        let weighted = vec![
            (ShardId(0), 1),
            (ShardId(1), 2),
            (ShardId(2), 1),
            (ShardId(3), 4),
        ];
        let equal = |n: u32| (0..n).map(|s| (ShardId(s), 1)).collect::<Vec<_>>();
        for shards in [weighted, equal(2), equal(5), equal(8), equal(16)] {
            let ring = Ring::new(&shards, DEFAULT_VNODES).unwrap();
            let mut counts: HashMap<ShardId, u32> = HashMap::new();
            for id in &all {
                *counts.entry(ring.locate(id)).or_default() += 1;
            }
            let weight_sum: u32 = shards.iter().map(|s| s.1).sum();
            for &(shard, weight) in &shards {
                let expected = all.len() as f64 * f64::from(weight) / f64::from(weight_sum);
                let got = f64::from(counts[&shard]);
                assert!(
                    (got - expected).abs() < 0.1 * expected,
                    "{} shards, {shard}: {got} vs {expected}",
                    shards.len()
                );
            }
        }
    }

    #[test]
    fn zero_weight_shards_get_nothing_and_an_empty_ring_is_refused() {
        let ring = Ring::new(&[(ShardId(0), 0), (ShardId(1), 1)], 16).unwrap();
        assert!(ids(1000).all(|id| ring.locate(&id) == ShardId(1)));
        assert!(Ring::new(&[(ShardId(0), 0)], 16).is_none());
    }
}
