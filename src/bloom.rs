//! The in-memory "surely new" filter in front of the index.
//!
//! A chunk the filter has never seen is new for certain, so its index lookup
//! is skipped; a chunk it may have seen goes to RocksDB. The filter has no
//! false negatives (an inserted id always tests positive) and about a 1%
//! false-positive rate, growing as chunks are added.
//!
//! The filter is an optimisation, never the truth. It is saved beside the
//! index as
//!
//! ```text
//! "DDBLOOM\x01" stamp:u64 sha256(stamp ‖ payload)[32] payload
//! ```
//!
//! where `stamp` is the index's generation (its count of commits) when the
//! filter was saved, and thrown away and rebuilt from the index when the
//! file is missing, damaged, or was saved at another generation (a crash
//! between an index commit and the next save, or segments of other writers
//! applied since).

use growable_bloom_filter::GrowableBloom;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::format::codec::{Put, Reader};
use crate::id::ChunkId;

/// Index counters of the Bloom filter's work, summed over all ingests.
pub(crate) const BLOOM_LOOKUPS: &str = "bloom.lookups";
pub(crate) const BLOOM_SKIPPED: &str = "bloom.skipped";
pub(crate) const BLOOM_FALSE_POSITIVES: &str = "bloom.false_positives";

const MAGIC: &[u8; 8] = b"DDBLOOM\x01";
/// Target false-positive rate.
pub const FALSE_POSITIVE_RATE: f64 = 0.01;

/// The filter, and the index generation it was saved at.
#[derive(Clone, Debug)]
pub struct Bloom {
    filter: GrowableBloom,
    stamp: u64,
}

impl Bloom {
    /// An empty filter sized for about `expected` chunks (it grows past that).
    pub fn new(expected: u64) -> Self {
        Self::sized(expected.clamp(MIN_EXPECTED, MAX_EXPECTED))
    }

    /// An empty filter sized for exactly `expected` chunks, however few:
    /// an index family's slice, whose count its writer knows.
    pub fn exact(expected: u64) -> Self {
        Self::sized(expected.clamp(MIN_EXACT, MAX_EXPECTED))
    }

    fn sized(expected: u64) -> Self {
        Bloom {
            filter: GrowableBloom::new(FALSE_POSITIVE_RATE, expected as usize),
            stamp: 0,
        }
    }

    /// False means `id` was certainly never inserted.
    pub fn may_contain(&self, id: &ChunkId) -> bool {
        self.filter.contains(id.as_bytes())
    }

    /// Records a newly indexed chunk.
    pub fn insert(&mut self, id: &ChunkId) {
        self.filter.insert(id.as_bytes());
    }

    /// The index generation the filter was saved at (0 for a new one).
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Serialises with a checksum, stamped with the index generation it
    /// reflects.
    pub fn encode(&self, stamp: u64) -> Vec<u8> {
        let payload = postcard::to_stdvec(&self.filter).expect("serialising to memory cannot fail");
        Self::frame(stamp, &payload)
    }

    /// Wraps a payload in the file's header and checksum (the fuzz target
    /// uses this to reach the payload decoder with arbitrary bytes).
    pub fn frame(stamp: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 48);
        out.extend_from_slice(MAGIC);
        out.put_u64(stamp);
        out.extend_from_slice(&checksum(stamp, payload));
        out.extend_from_slice(payload);
        out
    }

    /// Decodes a saved filter; an `Err` means the file is damaged.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let mut r = Reader::new(bytes, "bloom filter", location);
        if r.take(8)? != MAGIC {
            return Err(r.error("bad magic"));
        }
        let stamp = r.u64()?;
        let sum = r.take(32)?;
        let payload = r.take(r.remaining())?;
        if checksum(stamp, payload).as_slice() != sum {
            return Err(crate::Error::corrupt(
                "bloom filter",
                location,
                "checksum mismatch",
            ));
        }
        let corrupt = |reason: String| crate::Error::corrupt("bloom filter", location, reason);
        let shape: Shape = postcard::from_bytes(payload).map_err(|e| corrupt(e.to_string()))?;
        shape.check().map_err(|reason| corrupt(reason.into()))?;
        let filter = postcard::from_bytes(payload).map_err(|e| corrupt(e.to_string()))?;
        Ok(Bloom { filter, stamp })
    }
}

/// The layout `growable-bloom-filter` 2.1 serialises (postcard writes the
/// fields in order, without names), read to check what the crate itself
/// would trust: a filter with an empty bit field, more hash slices than
/// bits, or rates outside (0, 1) makes its lookups panic. The checksum
/// does not stop a crafted file, so the values are checked.
#[derive(serde::Deserialize)]
struct Shape {
    /// Each filter's bit field and its number of slices.
    blooms: Vec<(Vec<u8>, u64)>,
    error_rate: f64,
    estimated: u64,
    inserts: u64,
    capacity: u64,
    growth_factor: u64,
    tightening_ratio: f64,
}

impl Shape {
    fn check(&self) -> std::result::Result<(), &'static str> {
        // With no filter yet, the next insert must grow one first.
        if self.blooms.is_empty() && self.inserts < self.capacity {
            return Err("no filter to insert into");
        }
        for (bits, slices) in &self.blooms {
            if *slices == 0 || *slices > 64 || (bits.len() as u64) * 8 < *slices {
                return Err("a filter has fewer bits than hash slices");
            }
        }
        // Growth is the crate's own arithmetic on the saved parameters
        // (the next filter's rate is tightened once per filter there, its
        // capacity multiplied): crafted ones make it assert, overflow or
        // ask for terabytes. This module only ever writes its own, so
        // anything else is damage.
        let ours = self.error_rate == FALSE_POSITIVE_RATE
            && self.tightening_ratio == TIGHTENING_RATIO
            && self.growth_factor == GROWTH_FACTOR
            && (MIN_EXACT..=MAX_EXPECTED).contains(&self.estimated)
            && self.blooms.len() <= MAX_FILTERS;
        if !ours {
            return Err("parameters this build never writes");
        }
        // Each filter has exactly the size the crate gave it when it grew,
        // so the next one (twice the last) is bounded by what this file
        // already holds.
        for ((bits, slices), i) in self.blooms.iter().zip(0..) {
            if (bits.len() as u64, *slices) != grown_size(self.estimated, i) {
                return Err("a filter of a size growth never makes");
            }
        }
        Ok(())
    }
}

/// The bytes and hash slices of the `i`-th filter of a growable filter
/// sized for `estimated` ids, computed as growable-bloom-filter 2.1 does.
fn grown_size(estimated: u64, i: u16) -> (u64, u64) {
    let rate = FALSE_POSITIVE_RATE * TIGHTENING_RATIO.powi(i.into());
    let capacity = GROWTH_FACTOR
        .saturating_pow(i.into())
        .saturating_mul(estimated);
    let slices = (1.0 / rate).log2().ceil() as u64;
    let slice_bits = (capacity as f64 / std::f64::consts::LN_2).ceil() as u64;
    (slices.saturating_mul(slice_bits).div_ceil(8), slices)
}

/// Bytes of bit field a filter made by [`Bloom::new`]`(ids)` has once it
/// holds `ids` ids: one filter, or for more than it was sized for (past
/// its ceiling), the filters it grew.
pub fn memory_for(ids: u64) -> u64 {
    let estimated = ids.clamp(MIN_EXPECTED, MAX_EXPECTED);
    let (mut bytes, mut capacity) = (0u64, 0u64);
    for i in 0..MAX_FILTERS as u16 {
        bytes = bytes.saturating_add(grown_size(estimated, i).0);
        capacity = capacity.saturating_add(
            GROWTH_FACTOR
                .saturating_pow(i.into())
                .saturating_mul(estimated),
        );
        if capacity >= ids {
            break;
        }
    }
    bytes
}

/// Filters a saved Bloom file may hold: each growth doubles the capacity,
/// so a real file never has more than a few.
const MAX_FILTERS: usize = 16;

/// The growable filter's parameters as [`GrowableBloom::new`] sets them
/// (growable-bloom-filter 2.1), and the range [`Bloom::new`] sizes it in.
const GROWTH_FACTOR: u64 = 2;
const TIGHTENING_RATIO: f64 = 0.851_562_5;
const MIN_EXPECTED: u64 = 100_000;
/// The smallest filter [`Bloom::exact`] makes.
const MIN_EXACT: u64 = 16;
const MAX_EXPECTED: u64 = 1 << 32;

/// SHA-256 over the stamp and the payload, so neither can rot unnoticed.
fn checksum(stamp: u64, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(stamp.to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_for_is_the_size_of_a_real_filter() {
        for n in [1_000u64, 150_000, 400_000] {
            let mut b = Bloom::new(n);
            for i in 0..n {
                b.insert(&ChunkId::of(&i.to_le_bytes()));
            }
            let encoded = b.encode(0).len() as u64;
            let computed = memory_for(n);
            // The encoding adds a header and a few fields per filter.
            assert!(
                computed <= encoded && encoded - computed < 200,
                "{n}: {computed} vs {encoded}"
            );
        }
    }

    #[test]
    fn a_crafted_filter_that_would_panic_lookups_is_refused() {
        // One filter with an empty bit field and 2 slices, rate 0.01.
        let mut payload = vec![1, 0, 2];
        payload.extend_from_slice(&0.01f64.to_le_bytes());
        payload.extend_from_slice(&[0, 0, 0, 2]);
        payload.extend_from_slice(&0.9f64.to_le_bytes());
        let err = Bloom::decode(&Bloom::frame(0, &payload), "b").unwrap_err();
        assert!(err.to_string().contains("fewer bits"), "{err}");
        // The review's example: one slice over no bits.
        payload[2] = 1;
        assert!(Bloom::decode(&Bloom::frame(0, &payload), "b").is_err());
        // A real filter, any size, passes the same checks.
        // 350 000 ids grow a filter sized for 100 000 twice.
        for n in [0u32, 1, 5000, 350_000] {
            let mut b = Bloom::new(10);
            for i in 0..n {
                b.insert(&ChunkId::of(&i.to_le_bytes()));
            }
            let r = Bloom::decode(&b.encode(0), "b");
            assert!(r.is_ok(), "{n}: {:?}", r.err());
        }
    }

    #[test]
    fn a_filter_whose_growth_would_assert_overflow_or_explode_is_refused() {
        let mut b = Bloom::new(10);
        b.insert(&ChunkId::of(b"x"));
        let payload = b.encode(0)[48..].to_vec();
        let good = Bloom::decode(&Bloom::frame(0, &payload), "b");
        assert!(good.is_ok(), "{:?}", good.err());
        // The rates and growth factor are the payload's last 17 bytes:
        // growth factor (varint 2), tightening ratio (f64).
        let mut tightened = payload.clone();
        let n = tightened.len();
        tightened[n - 8..].copy_from_slice(&1e-300f64.to_le_bytes());
        let err = Bloom::decode(&Bloom::frame(0, &tightened), "b").unwrap_err();
        assert!(err.to_string().contains("never writes"), "{err}");
        let mut faster = payload;
        faster[n - 9] = 60;
        assert!(Bloom::decode(&Bloom::frame(0, &faster), "b").is_err());
    }

    #[test]
    fn save_load_round_trip_keeps_members_and_count() {
        let mut b = Bloom::new(1000);
        let ids: Vec<_> = (0..1000u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        for id in &ids {
            b.insert(id);
        }
        let back = Bloom::decode(&b.encode(1000), "t").unwrap();
        assert_eq!(back.stamp(), 1000);
        assert!(ids.iter().all(|id| back.may_contain(id)));
    }

    #[test]
    fn damaged_filter_files_are_refused() {
        let mut b = Bloom::new(10);
        b.insert(&ChunkId::of(b"x"));
        let good = b.encode(0);
        for i in [0, 9, 20, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(Bloom::decode(&bad, "t").is_err(), "flip at {i}");
        }
        assert!(Bloom::decode(&good[..good.len() - 1], "t").is_err());
    }
}
