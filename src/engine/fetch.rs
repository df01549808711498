//! Reading many records at once, planned by pack.
//!
//! On an object store every request is a round trip through the cluster,
//! however few bytes it asks for, so a restore that reads record by record
//! (or file by file) is bound by latency, not by the link. The planner here
//! takes every record an operation needs, groups them by pack, sorts each
//! pack's by offset and merges neighbours into ranges: a gap between two
//! needed records is read through when it costs less than another request
//! would ([`Reads`]). Each range is then read once, with many requests in
//! flight, and each record in it is opened (checked against its id, or its
//! seal) once and handed to the caller, who may write it to many places.
//!
//! A walk keeps the ranges it read ([`Kept`]) while they fit in
//! [`KEPT_BYTES`], so reading its folders a level at a time reads each
//! region of the tree packs once, not once a level. On an object store a
//! tree pack is read whole at its first miss and kept by the handle, for
//! every later walk and single read (`ls`, `find`, `mount`): the trees of
//! a snapshot lie in a few tree packs, so a walk costs a round trip or
//! two, not one for each level of folders. A restore's files keep
//! nothing: each record is wanted once.
//!
//! Memory: the ranges being read and handed out, at most one per thread
//! of the pool (32 on object stores, the cores on local shards), each at
//! most [`Reads::max`] (8 MiB on object stores, 1 MiB locally), or a
//! whole tree pack of at most [`WHOLE_PACK`]; plus the kept ranges, at
//! most [`KEPT_BYTES`]: a walk's on local shards, dropped with the walk,
//! and on object stores the handle's, held while it is open.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

use rayon::prelude::*;

use crate::catalog::Location;
use crate::engine::Engine;
use crate::error::Error;
use crate::format::record;
use crate::store::{PackEntry, PackId};

/// The most records one range hands out. A long run of small records (a
/// pack of small files) is cut into several ranges, read at once, so that
/// writing the first records starts before the whole run has arrived.
/// (Within a range, records are handed out on every thread of the pool:
/// a whole tree pack may hold thousands.)
pub(crate) const MAX_RECORDS: usize = 512;

/// The most bytes of ranges one [`Kept`] holds.
pub(crate) const KEPT_BYTES: usize = 128 << 20;

/// The largest tree pack a walk on an object store reads whole: twice the
/// default pack size, since a pack closes only once it has passed it.
pub(crate) const WHOLE_PACK: u64 = 32 << 20;

/// How a store's ranges are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reads {
    /// How far apart two needed records of one pack may lie and still be
    /// fetched with one read (the bytes between are read and dropped).
    pub gap: u64,
    /// The largest single read: a range stops growing before it passes
    /// this (a record longer than this is read alone).
    pub max: u64,
}

impl Reads {
    /// Local shards: reading through costs a copy, and a range is copied
    /// into memory and then read again to check its records, so ranges
    /// stay near cache size (restoring 1 GiB of large files, 16 MiB
    /// ranges took 10% longer than a read per record and held 40-50 MiB
    /// more; 1 MiB ranges are within 5% and 2 MiB).
    pub(crate) const LOCAL: Reads = Reads {
        gap: 256 << 10,
        max: 1 << 20,
    };
    /// Object stores: a request costs a round trip of a few milliseconds,
    /// in which a link moves megabytes; reading 4 MiB through is cheaper
    /// than asking again, and few large reads fill the link. Restoring
    /// 1 GiB of large files from a 3-node Garage cluster, 8 MiB ranges
    /// took the same time as 16 MiB ones (medians 2.05 s and 2.18 s of
    /// five) and held 340-360 MiB instead of 510-640 MiB.
    pub(crate) const REMOTE: Reads = Reads {
        gap: 4 << 20,
        max: 8 << 20,
    };
}

/// One ranged read of a pack, and the records it fetches, each with what
/// the caller wants done with it.
#[derive(Debug)]
pub(crate) struct Range<T> {
    pub pack: PackId,
    pub start: u64,
    pub end: u64,
    pub records: Vec<(PackEntry, T)>,
}

/// Groups `wanted` records by pack and merges each pack's, in offset
/// order, into ranges: a record joins the range before it when the gap
/// between them is at most `reads.gap` and the range stays within
/// `reads.max` and [`MAX_RECORDS`]. Each record should be wanted once
/// ([`Repository::fetch_all`] merges what is wanted of one record into
/// one `T`). Ranges come ordered by pack and offset.
pub(crate) fn plan<T>(
    wanted: impl IntoIterator<Item = (Location, T)>,
    reads: Reads,
) -> Vec<Range<T>> {
    let mut wanted: Vec<(Location, T)> = wanted.into_iter().collect();
    wanted.sort_unstable_by_key(|(loc, _)| (loc.pack, loc.entry.offset));
    let mut ranges: Vec<Range<T>> = Vec::new();
    for (loc, what) in wanted {
        let (start, end) = (loc.entry.offset, loc.entry.record_end());
        if let Some(last) = ranges.last_mut() {
            if last.pack == loc.pack
                && start >= last.end
                && start - last.end <= reads.gap
                && end - last.start <= reads.max
                && last.records.len() < MAX_RECORDS
            {
                last.end = end;
                last.records.push((loc.entry, what));
                continue;
            }
        }
        ranges.push(Range {
            pack: loc.pack,
            start,
            end,
            records: vec![(loc.entry, what)],
        });
    }
    ranges
}

/// Kept ranges by pack and start offset: the range's bytes.
type KeptRanges = BTreeMap<(PackId, u64), Arc<Vec<u8>>>;

/// Ranges one operation has read, kept for its later steps: a record
/// inside one of them is opened from there, with no request. At most
/// [`KEPT_BYTES`]; ranges read once it is full are not kept.
#[derive(Default)]
pub(crate) struct Kept {
    ranges: RwLock<KeptRanges>,
    bytes: AtomicUsize,
}

impl Kept {
    /// The kept range that holds the whole of `pack`'s bytes `start..end`:
    /// its start and bytes.
    fn find(&self, pack: &PackId, start: u64, end: u64) -> Option<(u64, Arc<Vec<u8>>)> {
        let ranges = self.ranges.read().unwrap_or_else(PoisonError::into_inner);
        let ((at_pack, at), bytes) = ranges.range(..=(*pack, start)).next_back()?;
        (at_pack == pack && at + bytes.len() as u64 >= end).then(|| (*at, Arc::clone(bytes)))
    }

    /// Keeps a range just read, if there is room (and it is not kept
    /// already: two threads may read the same pack at once).
    fn keep(&self, pack: PackId, start: u64, bytes: &Arc<Vec<u8>>) {
        let len = bytes.len();
        let mut ranges = self.ranges.write().unwrap_or_else(PoisonError::into_inner);
        if ranges.contains_key(&(pack, start)) {
            return;
        }
        if self.bytes.fetch_add(len, Relaxed) + len > KEPT_BYTES {
            self.bytes.fetch_sub(len, Relaxed);
            return;
        }
        ranges.insert((pack, start), Arc::clone(bytes));
    }
}

/// What [`Repository::fetch_all`] hands each record to: its entry,
/// everything the caller wants done with it (one for each time it was
/// wanted), and its bytes, opened and checked (or the error that kept it
/// from being read: its range's read, or its own check).
pub(crate) type Each<'a, T> =
    dyn Fn(&PackEntry, &[T], std::result::Result<&[u8], &Error>) + Sync + 'a;

impl Engine {
    /// How ranges of this repository's packs are cut.
    fn reads(&self) -> Reads {
        if self.packs_are_remote() {
            Reads::REMOTE
        } else {
            Reads::LOCAL
        }
    }

    /// Fetches every `wanted` record and hands it to `each`, once however
    /// often it is wanted, with all it is wanted for: those inside a range
    /// `kept` holds from there, the rest planned ([`plan`]) and read, many
    /// ranges at once on the current rayon pool (callers reading object
    /// stores run this in [`io_pool`](Self::io_pool)). The ranges read go
    /// into `kept` while it has room; on an object store a tree pack a
    /// `kept` misses is read whole ([`whole_packs`](Self::whole_packs)).
    /// Without a `kept` (an operation that wants each record once, like a
    /// restore's files) nothing is kept. `each` runs on the pool's
    /// threads, for the records of one range as for those of many.
    pub(crate) fn fetch_all<T: Send + Sync>(
        &self,
        wanted: impl IntoIterator<Item = (Location, T)>,
        kept: Option<&Kept>,
        each: &Each<'_, T>,
    ) {
        let mut by_record: HashMap<(PackId, u64), (Location, Vec<T>)> = HashMap::new();
        for (loc, what) in wanted {
            by_record
                .entry((loc.pack, loc.entry.offset))
                .or_insert_with(|| (loc, Vec::new()))
                .1
                .push(what);
        }
        let mut hits = Vec::new();
        let mut misses = Vec::new();
        for (loc, what) in by_record.into_values() {
            let found =
                kept.and_then(|k| k.find(&loc.pack, loc.entry.offset, loc.entry.record_end()));
            match found {
                Some((start, bytes)) => hits.push((loc, what, start, bytes)),
                None => misses.push((loc, what)),
            }
        }
        hits.par_iter().for_each(|(loc, what, start, bytes)| {
            self.hand_out(&loc.pack, &loc.entry, what, bytes, *start, each);
        });
        let (mut ranges, misses) = match kept {
            Some(kept) if self.packs_are_remote() => self.whole_packs(kept, misses),
            _ => (Vec::new(), misses),
        };
        ranges.extend(plan(misses, self.reads()));
        ranges.par_iter().for_each(|range| {
            let read = self.pack_shard(&range.pack).and_then(|shard| {
                shard.backend.get_range(
                    &range.pack.key(),
                    range.start,
                    (range.end - range.start) as usize,
                )
            });
            match read {
                Err(e) => {
                    for (entry, what) in &range.records {
                        each(entry, what, Err(&e));
                    }
                }
                Ok(bytes) => {
                    let bytes = Arc::new(bytes);
                    if let Some(kept) = kept {
                        kept.keep(range.pack, range.start, &bytes);
                    }
                    // A whole pack may hold thousands: on every thread.
                    range.records.par_iter().for_each(|(entry, what)| {
                        self.hand_out(&range.pack, entry, what, &bytes, range.start, each);
                    });
                }
            }
        });
    }

    /// Splits `misses` into whole-pack ranges, one for each tree pack
    /// (a pack with no file data, as the index says) that is at most
    /// [`WHOLE_PACK`] and still fits in the room `kept` has left, and the
    /// records left to [`plan`].
    #[allow(clippy::type_complexity)]
    fn whole_packs<T>(
        &self,
        kept: &Kept,
        misses: Vec<(Location, T)>,
    ) -> (Vec<Range<T>>, Vec<(Location, T)>) {
        let mut by_pack: HashMap<PackId, Vec<(Location, T)>> = HashMap::new();
        for (loc, what) in misses {
            by_pack.entry(loc.pack).or_default().push((loc, what));
        }
        let mut room = KEPT_BYTES.saturating_sub(kept.bytes.load(Relaxed)) as u64;
        let (mut whole, mut rest) = (Vec::new(), Vec::new());
        for (pack, records) in by_pack {
            match self.index.pack(&pack).ok().flatten() {
                Some(info)
                    if info.data_chunks == 0 && info.size <= WHOLE_PACK && info.size <= room =>
                {
                    room -= info.size;
                    whole.push(Range {
                        pack,
                        start: 0,
                        end: info.size,
                        records: records.into_iter().map(|(loc, w)| (loc.entry, w)).collect(),
                    });
                }
                _ => rest.extend(records),
            }
        }
        (whole, rest)
    }

    /// Opens record `entry` of `pack` out of `bytes` (the pack's bytes
    /// from `start` on) and hands it to `each`.
    fn hand_out<T>(
        &self,
        pack: &PackId,
        entry: &PackEntry,
        what: &[T],
        bytes: &[u8],
        start: u64,
        each: &Each<'_, T>,
    ) {
        // A record stored as it is is handed out from the range itself.
        let raw = entry
            .stored_in(bytes, start)
            .and_then(|stored| record::open_borrowed(pack, entry, stored, self.crypt()));
        match raw {
            Ok(raw) => each(entry, what, Ok(&raw)),
            Err(e) => each(entry, what, Err(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;

    fn at(pack: u8, offset: u64, stored_len: u32) -> Location {
        Location {
            pack: PackId([pack; 16]),
            entry: PackEntry {
                id: ChunkId::of(&offset.to_le_bytes()),
                offset,
                raw_len: stored_len,
                stored_len,
                flags: 0,
            },
        }
    }

    fn spans<T>(ranges: &[Range<T>]) -> Vec<(u8, u64, u64, usize)> {
        ranges
            .iter()
            .map(|r| (r.pack.0[0], r.start, r.end, r.records.len()))
            .collect()
    }

    #[test]
    fn records_of_a_pack_merge_across_small_gaps_in_offset_order() {
        let header = record::HEADER;
        let a = at(1, 0, 100);
        let b = at(1, a.entry.record_end() + 1000, 100);
        let far = at(1, b.entry.record_end() + (300 << 10), 100);
        let other = at(2, 0, 100);
        // Given out of order, and the other pack's first.
        let wanted = [(far, 'f'), (other, 'o'), (b, 'b'), (a, 'a')];
        let local = plan(wanted, Reads::LOCAL);
        assert_eq!(
            spans(&local),
            [
                (1, 0, b.entry.record_end(), 2),
                (1, far.entry.offset, far.entry.record_end(), 1),
                (2, 0, header + 100, 1),
            ]
        );
        let what: Vec<char> = local[0].records.iter().map(|r| r.1).collect();
        assert_eq!(what, ['a', 'b']);
        // Remotely the 300 KiB gap is read through too.
        let remote = plan(wanted, Reads::REMOTE);
        assert_eq!(spans(&remote)[0], (1, 0, far.entry.record_end(), 3));
        assert_eq!(remote.len(), 2);
    }

    #[test]
    fn a_range_stops_before_the_largest_read() {
        let len = 3 << 20;
        let mut wanted = Vec::new();
        let mut offset = 0;
        for k in 0..5u32 {
            let loc = at(1, offset, len);
            offset = loc.entry.record_end();
            wanted.push((loc, k));
        }
        let wanted_again = wanted.clone();
        let ranges = plan(wanted, Reads::REMOTE);
        // 3 MiB records: two fit in 8 MiB, a third would not.
        assert_eq!(
            ranges.iter().map(|r| r.records.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(ranges.iter().all(|r| r.end - r.start <= Reads::REMOTE.max));
        // Locally each is read alone: longer than the largest local read.
        assert_eq!(plan(wanted_again, Reads::LOCAL).len(), 5);
    }

    #[test]
    fn a_long_run_of_small_records_is_cut_into_ranges_of_at_most_max_records() {
        let mut wanted = Vec::new();
        let mut offset = 0;
        for k in 0..(MAX_RECORDS * 2 + 3) {
            let loc = at(1, offset, 10);
            offset = loc.entry.record_end();
            wanted.push((loc, k));
        }
        let ranges = plan(wanted, Reads::REMOTE);
        let counts: Vec<usize> = ranges.iter().map(|r| r.records.len()).collect();
        assert_eq!(counts, [MAX_RECORDS, MAX_RECORDS, 3]);
        // Back to back: each byte is read by one range only.
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn a_kept_range_serves_only_records_wholly_inside_it_and_stops_at_its_bound() {
        let kept = Kept::default();
        let pack = PackId([7; 16]);
        kept.keep(pack, 100, &Arc::new(vec![0; 50]));
        assert_eq!(kept.find(&pack, 100, 150).map(|(at, _)| at), Some(100));
        assert_eq!(kept.find(&pack, 120, 130).map(|(at, _)| at), Some(100));
        assert!(kept.find(&pack, 120, 151).is_none(), "runs past the end");
        assert!(kept.find(&pack, 99, 120).is_none(), "starts before");
        assert!(
            kept.find(&PackId([8; 16]), 120, 130).is_none(),
            "another pack"
        );
        // Full: a range past the bound is not kept.
        kept.keep(pack, 1000, &Arc::new(vec![0; KEPT_BYTES]));
        assert!(kept.find(&pack, 1000, 1010).is_none());
        assert!(kept.find(&pack, 120, 130).is_some());
    }
}
