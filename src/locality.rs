//! Stream locality: the chunks stored next to a chunk are likely the next
//! ones asked for.
//!
//! A stream ingested again (a new version of a disk image, a re-read
//! tree) brings its chunks back in about the order they were first
//! stored, and so in the order they sit in their packs. Once the index has
//! found two chunks in one pack close together, the ids of that whole pack
//! (from its trailer) are kept here, and the chunks after them are found without an
//! index lookup: at ten million chunks and more each lookup is a read of a
//! block of the index, while this is a hash-map probe. The idea is Data
//! Domain's (Zhu, Li and Patterson, "Avoiding the Disk Bottleneck in the
//! Data Domain Deduplication File System", FAST 2008).
//!
//! The cache holds at most [`Locality::MAX_PACKS`] packs, the oldest
//! loaded leaving first. It only answers "stored or not": what it holds
//! came from live packs (the index listed them when they were loaded, and
//! no pack is retired while an ingest holds the writer lock), and every id
//! in a live pack's trailer is indexed (gc, repair and shard removal drop
//! an entry only in the commit that retires its pack).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::id::ChunkId;
use crate::store::PackId;

/// Recently useful packs' ids; see the module docs.
#[derive(Debug, Default)]
pub struct Locality {
    /// Every id of every pack held, with the pack.
    ids: HashMap<ChunkId, PackId>,
    /// The packs held, oldest first, each with its ids.
    packs: VecDeque<(PackId, Vec<ChunkId>)>,
    /// The packs held.
    held: HashSet<PackId>,
    /// The packs of the last index hits, newest last.
    recent: VecDeque<PackId>,
}

impl Locality {
    /// Packs held at once: with 16 MiB packs of 64 KiB chunks, about
    /// 130 000 ids (some 7 MB).
    pub const MAX_PACKS: usize = 512;

    /// Index hits remembered: a pack is loaded when the index finds an id
    /// in it again within this many hits. A stream running through a pack
    /// does that at once (several files read at a time interleave theirs);
    /// ids asked for in no order almost never do, and then nothing is
    /// loaded in vain.
    const RECENT: usize = 8;

    /// True when `id` is in a pack held.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.ids.contains_key(id)
    }

    /// Notes that the index found an id in `pack`; true when that pack's
    /// ids should now be loaded (see [`load`](Self::load)).
    pub fn hit(&mut self, pack: PackId) -> bool {
        if self.held.contains(&pack) {
            return false;
        }
        if let Some(at) = self.recent.iter().position(|p| *p == pack) {
            self.recent.remove(at);
            return true;
        }
        if self.recent.len() == Self::RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(pack);
        false
    }

    /// Holds `ids`, the ids of `pack`, dropping the oldest pack held when
    /// full.
    pub fn load(&mut self, pack: PackId, ids: Vec<ChunkId>) {
        if !self.held.insert(pack) {
            return;
        }
        if self.packs.len() >= Self::MAX_PACKS {
            if let Some((old, old_ids)) = self.packs.pop_front() {
                self.held.remove(&old);
                for id in old_ids {
                    if self.ids.get(&id) == Some(&old) {
                        self.ids.remove(&id);
                    }
                }
            }
        }
        for id in &ids {
            self.ids.insert(*id, pack);
        }
        self.packs.push_back((pack, ids));
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pack: u8, n: u8) -> Vec<ChunkId> {
        (0..n).map(|i| ChunkId::of(&[pack, i])).collect()
    }

    #[test]
    fn a_pack_is_loaded_on_its_second_hit_close_by_and_the_oldest_leaves_first() {
        let mut cache = Locality::default();
        let first = PackId([0; 16]);
        assert!(!cache.hit(first), "one hit may be a lone shared chunk");
        // Hits far apart (ids asked for in no order) load nothing.
        for k in 1..=Locality::RECENT as u8 {
            assert!(!cache.hit(PackId([k; 16])));
        }
        assert!(!cache.hit(first), "the first hit was forgotten");
        assert!(cache.hit(first), "two hits close together");
        cache.load(first, ids(0, 10));
        assert!(cache.contains(&ids(0, 10)[9]));
        assert!(!cache.hit(first), "already held");
        for k in 1..=Locality::MAX_PACKS {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&(k as u64).to_le_bytes());
            cache.load(PackId(raw), ids((k % 251) as u8 + 1, 3));
        }
        assert!(!cache.contains(&ids(0, 10)[0]), "the oldest pack left");
        assert_eq!(cache.packs.len(), Locality::MAX_PACKS);
        // An id held by two packs stays while either holds it.
        assert!(cache.contains(&ids(2, 3)[0]));
        assert!(cache.len() <= 3 * Locality::MAX_PACKS);
    }
}
