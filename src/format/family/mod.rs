//! Index families: one object per id prefix and version, the index's
//! durable form at any size (`docs/design.md`, "A petabyte index").
//!
//! A family version is written in one streaming pass by
//! [`FamilyWriter`]: blocks of entries sorted by id, then the sections a
//! reader needs to find its way (tombstones, packs, hooks, Bloom filter,
//! fences) and a trailer saying where each is. A reader fetches the
//! trailer first, then only what it needs: the fences, hooks and filter
//! for a summary, one block for an exact answer. Every part is checked
//! before it is believed (a hash in the fence table or the trailer, or,
//! encrypted, its seal, bound to the family, the version and the part's
//! place), and every decoder here takes its input as untrusted.
//!
//! ```text
//! "DDFAM\0\0\x01" block* tombstones packs hooks bloom fences trailer
//!                 trailer-length:u32 "DDFAMEND"
//! ```

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::codec::{Put, Reader};
use crate::format::values::Location;
use crate::id::ChunkId;

mod read;
mod write;

pub use read::*;
pub use write::FamilyWriter;

/// The first bytes of every family object.
pub const MAGIC: &[u8; 8] = b"DDFAM\0\0\x01";
/// The last bytes of every family object.
pub const END_MAGIC: &[u8; 8] = b"DDFAMEND";
/// Entries in a full block: 1 008 × 65 = 65 520 bytes, one ranged GET.
pub const BLOCK_ENTRIES: u16 = 1008;
/// Bytes of one entry: the id, then its [`Location`].
pub const ENTRY_LEN: usize = 32 + Location::ENCODED_LEN;
/// Bytes of one fence: a block's first id and the start of the SHA-256 of
/// the block as stored.
pub const FENCE_LEN: usize = 32 + 16;
/// Bytes of one hook: an id's first 8 bytes and a pack number.
pub const HOOK_LEN: usize = 8 + 4;
/// About one id in 64 is a hook: those whose last byte is a multiple of 64.
pub const HOOK_MASK: u8 = 63;
/// The most hex digits a family prefix has (16^8 families is far past any
/// repository).
pub const MAX_DIGITS: usize = 8;

/// The sections after the blocks, in the order they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Section {
    /// Retired packs still to be folded.
    Tombstones = 1,
    /// The packs the entries point into, sorted.
    Packs = 2,
    /// The sampled ids.
    Hooks = 3,
    /// A Bloom filter of every id.
    Bloom = 4,
    /// The first id and hash of every block.
    Fences = 5,
}

/// Every section, in order.
pub const SECTIONS: [Section; 5] = [
    Section::Tombstones,
    Section::Packs,
    Section::Hooks,
    Section::Bloom,
    Section::Fences,
];

/// What the associated data of a sealed part names besides the family.
const BLOCK_KIND: u8 = 0;
const TRAILER_KIND: u8 = 6;

/// Hex digit `i` of `bytes` (`bytes` long enough).
pub fn nibble(bytes: &[u8], i: usize) -> u8 {
    let byte = bytes[i / 2];
    if i.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 15
    }
}

/// A family: the ids that start with these hex digits.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FamilyName {
    digits: Vec<u8>,
}

impl FamilyName {
    /// The family of every id.
    pub fn root() -> Self {
        FamilyName::default()
    }

    /// The family of the ids that start with `digits` (each 0..16).
    pub fn of(digits: &[u8]) -> Result<Self> {
        if digits.len() > MAX_DIGITS || digits.iter().any(|&d| d > 15) {
            return Err(Error::invalid(
                "index family",
                format!("{digits:?} is not a prefix of at most {MAX_DIGITS} hex digits"),
            ));
        }
        Ok(FamilyName {
            digits: digits.to_vec(),
        })
    }

    /// Its hex digits.
    pub fn digits(&self) -> &[u8] {
        &self.digits
    }

    /// Its 16 children, one more digit each.
    pub fn children(&self) -> Vec<FamilyName> {
        (0..16u8)
            .map(|d| {
                let mut digits = self.digits.clone();
                digits.push(d);
                FamilyName { digits }
            })
            .collect()
    }

    /// True when `id` belongs to it.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.holds(id.as_bytes())
    }

    /// True when `bytes` (a chunk id, or a pack id for the pack table)
    /// start with its digits.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.digits
            .iter()
            .enumerate()
            .all(|(i, &d)| i / 2 < bytes.len() && nibble(bytes, i) == d)
    }

    /// Its name in object keys: its hex digits, `-` for the root.
    pub fn label(&self) -> String {
        if self.digits.is_empty() {
            return "-".to_string();
        }
        self.digits
            .iter()
            .map(|&d| char::from_digit(u32::from(d), 16).expect("a digit is below 16"))
            .collect()
    }

    /// Reads a [`label`](Self::label) back.
    pub fn parse(label: &str) -> Result<Self> {
        if label == "-" {
            return Ok(FamilyName::root());
        }
        let bad = || Error::invalid("index family", format!("{label:?} is not a family name"));
        let digits = label
            .chars()
            .map(|c| match c {
                '0'..='9' | 'a'..='f' => c.to_digit(16).map(|d| d as u8),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        if digits.is_empty() {
            return Err(bad());
        }
        FamilyName::of(&digits).map_err(|_| bad())
    }

    /// The object key of its version `epoch` in the home.
    pub fn key(&self, epoch: u64) -> String {
        format!("index/{}.{epoch:016x}", self.label())
    }

    /// What a sealed part of version `epoch` is bound to: the family, the
    /// version, the part's kind and its number.
    pub fn aad(&self, epoch: u64, kind: u8, number: u32) -> Vec<u8> {
        let mut aad = b"dedup family".to_vec();
        aad.put_u8(self.digits.len() as u8);
        aad.extend_from_slice(&self.digits);
        aad.put_u64(epoch);
        aad.put_u8(kind);
        aad.put_u32(number);
        aad
    }
}

/// Seals and opens the parts of a family version: the repository's key,
/// or nothing for a plain repository.
pub trait Sealer {
    /// `part` as stored.
    fn seal(&self, aad: &[u8], part: &[u8]) -> Vec<u8>;
    /// `stored` opened; `what` and `location` name it in errors.
    fn open(
        &self,
        aad: &[u8],
        stored: &[u8],
        what: &'static str,
        location: &str,
    ) -> Result<Vec<u8>>;
    /// Bytes sealing adds to a part.
    fn overhead(&self) -> usize;
}

/// Parts stored as they are (an unencrypted repository).
pub struct Plain;

impl Sealer for Plain {
    fn seal(&self, _aad: &[u8], part: &[u8]) -> Vec<u8> {
        part.to_vec()
    }
    fn open(&self, _: &[u8], stored: &[u8], _: &'static str, _: &str) -> Result<Vec<u8>> {
        Ok(stored.to_vec())
    }
    fn overhead(&self) -> usize {
        0
    }
}

#[cfg(feature = "engine")]
impl Sealer for crate::crypto::Crypt {
    fn seal(&self, aad: &[u8], part: &[u8]) -> Vec<u8> {
        crate::crypto::Crypt::seal(self, aad, part).into_owned()
    }
    fn open(
        &self,
        aad: &[u8],
        stored: &[u8],
        what: &'static str,
        location: &str,
    ) -> Result<Vec<u8>> {
        crate::crypto::Crypt::open(self, aad, stored, what, location)
            .map(std::borrow::Cow::into_owned)
    }
    fn overhead(&self) -> usize {
        if self.is_on() {
            crate::crypto::OVERHEAD
        } else {
            0
        }
    }
}

/// The start of the SHA-256 of `bytes`.
fn hash16(bytes: &[u8]) -> [u8; 16] {
    let full = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Where a section lies in the object, and the hash of its stored bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Its first byte.
    pub offset: u64,
    /// Its length as stored.
    pub len: u64,
    /// The start of the SHA-256 of its stored bytes.
    pub hash: [u8; 16],
}

/// What a family version's trailer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// The family.
    pub name: FamilyName,
    /// The version (the epoch it was compacted at).
    pub epoch: u64,
    /// Entries in all its blocks.
    pub entries: u64,
    /// Entries in a full block.
    pub block_entries: u16,
    /// Bytes of a full block as stored.
    pub block_len: u64,
    /// The sections, in [`SECTIONS`] order.
    pub sections: [Span; 5],
}

impl Trailer {
    /// Blocks the version holds.
    pub fn blocks(&self) -> u64 {
        self.entries.div_ceil(u64::from(self.block_entries))
    }

    /// The span of `section`.
    pub fn span(&self, section: Section) -> Span {
        self.sections[section as usize - 1]
    }

    /// Where block `n` lies: its offset and its stored length.
    pub fn block_at(&self, n: u64) -> Option<(u64, u64)> {
        let blocks = self.blocks();
        if n >= blocks {
            return None;
        }
        let full = u64::from(self.block_entries);
        let entries = if n + 1 == blocks {
            self.entries - n * full
        } else {
            full
        };
        let overhead = self.block_len.checked_sub(full * ENTRY_LEN as u64)?;
        Some((
            n.checked_mul(self.block_len)?
                .checked_add(MAGIC.len() as u64)?,
            entries
                .checked_mul(ENTRY_LEN as u64)?
                .checked_add(overhead)?,
        ))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.put_u8(self.name.digits.len() as u8);
        out.extend_from_slice(&self.name.digits);
        out.put_u64(self.epoch);
        out.put_u64(self.entries);
        out.put_u16(self.block_entries);
        out.put_u64(self.block_len);
        for s in &self.sections {
            out.put_u64(s.offset);
            out.put_u64(s.len);
            out.extend_from_slice(&s.hash);
        }
        out
    }

    /// Decodes a trailer's plain bytes, checking that it is the one of
    /// `name` at `epoch` (what the object's key says) and that its spans
    /// fit in an object of `object_len` bytes.
    pub fn decode(
        bytes: &[u8],
        name: &FamilyName,
        epoch: u64,
        object_len: u64,
        location: &str,
    ) -> Result<Self> {
        let mut r = Reader::new(bytes, "index family trailer", location);
        let digits = usize::from(r.u8()?);
        if digits > MAX_DIGITS {
            return Err(r.error(format!("a prefix of {digits} digits")));
        }
        let found = FamilyName::of(r.take(digits)?).map_err(|_| r.error("a digit past f"))?;
        let found_epoch = r.u64()?;
        if found != *name || found_epoch != epoch {
            return Err(r.error(format!(
                "it is the trailer of family {} version {found_epoch:016x}, not of {} version {epoch:016x}",
                found.label(),
                name.label()
            )));
        }
        let entries = r.u64()?;
        let block_entries = r.u16()?;
        let block_len = r.u64()?;
        let mut sections = [Span::default(); 5];
        for s in &mut sections {
            s.offset = r.u64()?;
            s.len = r.u64()?;
            s.hash.copy_from_slice(r.take(16)?);
        }
        r.finish()?;
        let trailer = Trailer {
            name: found,
            epoch,
            entries,
            block_entries,
            block_len,
            sections,
        };
        trailer.check(object_len, location)?;
        Ok(trailer)
    }

    /// The layout's arithmetic holds: blocks, then the sections one after
    /// the other, all inside the object.
    fn check(&self, object_len: u64, location: &str) -> Result<()> {
        let bad = |reason: String| Err(Error::corrupt("index family trailer", location, reason));
        if self.block_entries == 0 {
            return bad("blocks of no entries".into());
        }
        let full = u64::from(self.block_entries) * ENTRY_LEN as u64;
        if self.block_len < full || self.block_len - full > 1024 {
            return bad(format!("a block of {} bytes", self.block_len));
        }
        let Some(blocks_end) =
            self.blocks()
                .checked_sub(1)
                .map_or(Some(MAGIC.len() as u64), |last| {
                    let (offset, len) = self.block_at(last)?;
                    offset.checked_add(len)
                })
        else {
            return bad("blocks past any size".into());
        };
        let mut at = blocks_end;
        for (s, kind) in self.sections.iter().zip(SECTIONS) {
            if s.offset != at {
                return bad(format!("section {kind:?} at {}, not {at}", s.offset));
            }
            let Some(end) = at.checked_add(s.len) else {
                return bad(format!("section {kind:?} past any size"));
            };
            at = end;
        }
        if at > object_len {
            return bad(format!(
                "sections end at {at}, past the object's {object_len} bytes"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::PackEntry;
    use crate::id::PackId;

    /// `n` distinct ids in order (of family `name`), each in one of
    /// `packs` packs.
    fn entries(name: &FamilyName, n: usize, packs: u8) -> Vec<(ChunkId, Location)> {
        let mut out: Vec<(ChunkId, Location)> = (0u64..1_000_000_000)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .filter(|id| name.contains(id))
            .take(n)
            .enumerate()
            .map(|(i, id)| {
                let pack = PackId([(i % usize::from(packs)) as u8 + 1; 16]);
                let entry = PackEntry {
                    id,
                    offset: 8 + i as u64 * 100,
                    raw_len: 100,
                    stored_len: 90,
                    flags: 0,
                };
                (id, Location { pack, entry })
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    fn write(
        sealer: &dyn Sealer,
        name: &FamilyName,
        epoch: u64,
        all: &[(ChunkId, Location)],
        tombstones: &[PackId],
    ) -> Vec<u8> {
        let mut w =
            FamilyWriter::new(Vec::new(), sealer, name.clone(), epoch, all.len() as u64).unwrap();
        for (id, location) in all {
            w.push(id, location).unwrap();
        }
        w.finish(tombstones).unwrap().0
    }

    /// The trailer of `bytes`, read as a reader with ranged GETs would:
    /// the footer, then the trailer before it.
    fn trailer_of(bytes: &[u8], sealer: &dyn Sealer, name: &FamilyName, epoch: u64) -> Trailer {
        let footer_at = bytes.len() - FOOTER_LEN;
        let len = trailer_len(&bytes[footer_at..], "t").unwrap();
        let start = footer_at - len;
        open_trailer(
            &bytes[start..footer_at],
            sealer,
            name,
            epoch,
            start as u64,
            "t",
        )
        .unwrap()
    }

    fn check_round_trip(sealer: &dyn Sealer) {
        let name = FamilyName::of(&[0xa]).unwrap();
        let all = entries(&name, 3_000, 7);
        let tombs = [PackId([9; 16]), PackId([8; 16])];
        let bytes = write(sealer, &name, 5, &all, &tombs);
        let family = Family::read(&bytes, sealer, &name, 5, "t").unwrap();
        assert_eq!(family.entries, all);
        assert_eq!(
            family.trailer.blocks(),
            3,
            "3 000 entries in blocks of 1 008"
        );
        assert_eq!(family.tombstones, vec![PackId([8; 16]), PackId([9; 16])]);
        assert_eq!(
            family.packs,
            (1..=7).map(|b| PackId([b; 16])).collect::<Vec<_>>()
        );
        let hooks: Vec<&ChunkId> = all
            .iter()
            .map(|(id, _)| id)
            .filter(|id| is_hook(id))
            .collect();
        assert_eq!(family.hooks.len(), hooks.len());
        assert!(
            !hooks.is_empty() && hooks.len() < 3_000 / 20,
            "about one in 64"
        );
        for ((id, location), hook) in all.iter().filter(|(id, _)| is_hook(id)).zip(&family.hooks) {
            assert_eq!(hook.prefix.to_be_bytes(), id.as_bytes()[..8]);
            assert_eq!(hook.pack, location.pack);
        }
        for (id, location) in &all {
            assert!(family.bloom.may_contain(id));
            assert_eq!(family.get(id), Some(location));
        }
        // One block at a time, as a reader with ranged reads finds an id.
        let trailer = trailer_of(&bytes, sealer, &name, 5);
        let span = trailer.span(Section::Fences);
        let stored = &bytes[span.offset as usize..(span.offset + span.len) as usize];
        let plain = open_section(stored, &trailer, Section::Fences, sealer, "t").unwrap();
        let fences = decode_fences(&plain, &trailer, "t").unwrap();
        for (id, location) in all.iter().step_by(97) {
            let n = block_for(&fences, id).unwrap();
            let (offset, len) = trailer.block_at(n).unwrap();
            let block = &bytes[offset as usize..(offset + len) as usize];
            let found = open_block(block, n, &trailer, &fences, sealer, "t").unwrap();
            assert_eq!(
                found.iter().find(|(e, _)| e == id).map(|(_, l)| l),
                Some(location)
            );
        }
        let absent = (1_000_000u64..2_000_000)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .find(|id| name.contains(id) && family.get(id).is_none())
            .unwrap();
        if let Some(n) = block_for(&fences, &absent) {
            let (offset, len) = trailer.block_at(n).unwrap();
            let block = &bytes[offset as usize..(offset + len) as usize];
            let found = open_block(block, n, &trailer, &fences, sealer, "t").unwrap();
            assert!(found.iter().all(|(e, _)| *e != absent));
        }
    }

    #[test]
    fn a_family_reads_back_whole_and_block_by_block() {
        check_round_trip(&Plain);
    }

    #[cfg(feature = "engine")]
    #[test]
    fn a_sealed_family_reads_back_whole_and_block_by_block() {
        let crypt = crate::crypto::Crypt::with(crate::crypto::MasterKey::generate().unwrap());
        check_round_trip(&crypt);
    }

    #[test]
    fn every_changed_byte_of_a_family_is_an_error_never_wrong_entries() {
        let name = FamilyName::root();
        let all = entries(&name, 40, 3);
        let bytes = write(&Plain, &name, 1, &all, &[PackId([7; 16])]);
        assert!(Family::read(&bytes, &Plain, &name, 1, "t").is_ok());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                Family::read(&bad, &Plain, &name, 1, "t").is_err(),
                "a change at byte {at} of {} went unnoticed",
                bytes.len()
            );
        }
        for len in 0..bytes.len() {
            assert!(Family::read(&bytes[..len], &Plain, &name, 1, "t").is_err());
        }
        // The same object under another name or version is refused.
        assert!(Family::read(&bytes, &Plain, &name, 2, "t").is_err());
        let other = FamilyName::of(&[3]).unwrap();
        assert!(Family::read(&bytes, &Plain, &other, 1, "t").is_err());
    }

    #[cfg(feature = "engine")]
    #[test]
    fn a_sealed_block_opens_only_as_the_block_of_its_family_version_and_place() {
        let crypt = crate::crypto::Crypt::with(crate::crypto::MasterKey::generate().unwrap());
        let name = FamilyName::root();
        let all = entries(&name, 2_500, 3);
        let one = write(&crypt, &name, 1, &all, &[]);
        let two = write(&crypt, &name, 2, &all, &[]);
        let (t1, t2) = (
            trailer_of(&one, &crypt, &name, 1),
            trailer_of(&two, &crypt, &name, 2),
        );
        let fences_of = |bytes: &[u8], t: &Trailer| {
            let span = t.span(Section::Fences);
            let stored = &bytes[span.offset as usize..(span.offset + span.len) as usize];
            decode_fences(
                &open_section(stored, t, Section::Fences, &crypt, "t").unwrap(),
                t,
                "t",
            )
            .unwrap()
        };
        let block = |bytes: &[u8], t: &Trailer, n: u64| {
            let (offset, len) = t.block_at(n).unwrap();
            bytes[offset as usize..(offset + len) as usize].to_vec()
        };
        // A store that could also fix the fence hashes (it cannot: they
        // are sealed) still cannot pass version 1's block 0 as version 2's,
        // nor block 1 as block 0.
        let mut fences = fences_of(&two, &t2);
        let old = block(&one, &t1, 0);
        fences[0].hash = hash16(&old);
        assert!(open_block(&old, 0, &t2, &fences, &crypt, "t").is_err());
        let mut fences = fences_of(&one, &t1);
        let moved = block(&one, &t1, 1);
        fences[0].hash = hash16(&moved);
        assert!(open_block(&moved, 0, &t1, &fences, &crypt, "t").is_err());
        assert!(open_block(
            &block(&one, &t1, 0),
            0,
            &t1,
            &fences_of(&one, &t1),
            &crypt,
            "t"
        )
        .is_ok());
        // No key, no family.
        assert!(Family::read(&one, &Plain, &name, 1, "t").is_err());
    }

    #[test]
    fn a_family_costs_about_67_bytes_an_entry() {
        let name = FamilyName::root();
        let all = entries(&name, 100_000, 200);
        let bytes = write(&Plain, &name, 0, &all, &[]);
        let family = Family::read(&bytes, &Plain, &name, 0, "t").unwrap();
        let per_entry = |n: u64| n as f64 / all.len() as f64;
        let span = |s: Section| per_entry(family.trailer.span(s).len);
        // 65 bytes of entry, 0.05 of fences, about 12/64 of hooks, and a
        // Bloom filter sized for its count (1%: 9.6 bits in theory).
        assert!(
            span(Section::Fences) < 0.06,
            "fences {}",
            span(Section::Fences)
        );
        assert!(
            span(Section::Hooks) < 0.25,
            "hooks {}",
            span(Section::Hooks)
        );
        assert!(span(Section::Bloom) < 1.5, "bloom {}", span(Section::Bloom));
        let total = per_entry(bytes.len() as u64);
        eprintln!(
            "family of {} entries: {total:.2} bytes an entry (fences {:.3}, hooks {:.3}, bloom {:.3})",
            all.len(),
            span(Section::Fences),
            span(Section::Hooks),
            span(Section::Bloom)
        );
        assert!(total < 67.0, "{total} bytes an entry");
    }

    #[test]
    fn a_family_over_many_packs_lists_each_pack_once() {
        let name = FamilyName::root();
        let mut all = entries(&name, 70_000, 1);
        for (i, (_, location)) in all.iter_mut().enumerate() {
            location.pack = PackId(u128::try_from(i).unwrap().to_be_bytes());
        }
        let bytes = write(&Plain, &name, 0, &all, &[]);
        let family = Family::read(&bytes, &Plain, &name, 0, "t").unwrap();
        assert_eq!(family.packs.len(), 70_000);
        assert_eq!(family.entries, all);
    }

    #[test]
    fn a_writer_refuses_ids_out_of_order_or_outside_its_family() {
        let name = FamilyName::of(&[1, 2]).unwrap();
        let all = entries(&name, 3, 1);
        let mut w = FamilyWriter::new(Vec::new(), &Plain, name.clone(), 0, 3).unwrap();
        w.push(&all[1].0, &all[1].1).unwrap();
        assert!(w.push(&all[0].0, &all[0].1).is_err());
        assert!(w.push(&all[1].0, &all[1].1).is_err());
        let outside = entries(&FamilyName::of(&[1, 3]).unwrap(), 1, 1);
        assert!(w.push(&outside[0].0, &outside[0].1).is_err());
    }

    #[test]
    fn family_names_partition_the_ids_and_read_back() {
        let id = ChunkId::of(b"x");
        let hex = id.to_hex();
        let digit = |i: usize| {
            hex[i..=i]
                .parse::<u8>()
                .ok()
                .or_else(|| u8::from_str_radix(&hex[i..=i], 16).ok())
        };
        let mut name = FamilyName::root();
        for i in 0..4 {
            assert!(name.contains(&id));
            let holding: Vec<FamilyName> = name
                .children()
                .into_iter()
                .filter(|c| c.contains(&id))
                .collect();
            assert_eq!(holding.len(), 1, "exactly one child holds an id");
            assert_eq!(holding[0].digits().last().copied(), digit(i));
            name = holding[0].clone();
        }
        assert_eq!(name.label(), hex[..4]);
        for n in [FamilyName::root(), name.clone()] {
            assert_eq!(FamilyName::parse(&n.label()).unwrap(), n);
        }
        assert_eq!(
            name.key(10),
            format!("index/{}.000000000000000a", &hex[..4])
        );
        for bad in ["", "g", "0123456789", "A"] {
            assert!(FamilyName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
