//! Reading a family version: its trailer, then the parts a reader needs,
//! each checked before it is believed.

use super::{hash16, FamilyName, Sealer, Section, Trailer};
use super::{
    BLOCK_KIND, END_MAGIC, ENTRY_LEN, FENCE_LEN, HOOK_LEN, HOOK_MASK, MAGIC, TRAILER_KIND,
};
use crate::bloom::Bloom;
use crate::error::{Error, Result};
use crate::format::codec::Reader;
use crate::format::values::Location;
use crate::id::{ChunkId, PackId};

/// Bytes at the end of the object that say how long the trailer is.
pub const FOOTER_LEN: usize = 4 + END_MAGIC.len();

/// The length of the stored trailer, from the object's last
/// [`FOOTER_LEN`] bytes.
pub fn trailer_len(footer: &[u8], location: &str) -> Result<usize> {
    let mut r = Reader::new(footer, "index family footer", location);
    let len = r.u32()? as usize;
    if r.take(END_MAGIC.len())? != END_MAGIC {
        return Err(r.error("it does not end with the family end magic"));
    }
    r.finish()?;
    Ok(len)
}

/// Opens and decodes the stored trailer `stored` (the bytes before the
/// footer) of `name` at `epoch`, in an object of `object_len` bytes.
pub fn open_trailer(
    stored: &[u8],
    sealer: &dyn Sealer,
    name: &FamilyName,
    epoch: u64,
    object_len: u64,
    location: &str,
) -> Result<Trailer> {
    let plain = sealer.open(
        &name.aad(epoch, TRAILER_KIND, 0),
        stored,
        "index family trailer",
        location,
    )?;
    Trailer::decode(&plain, name, epoch, object_len, location)
}

/// Opens section `section` of a version, stored as `stored`, after
/// checking its hash against the trailer's.
pub fn open_section(
    stored: &[u8],
    trailer: &Trailer,
    section: Section,
    sealer: &dyn Sealer,
    location: &str,
) -> Result<Vec<u8>> {
    let span = trailer.span(section);
    if stored.len() as u64 != span.len || hash16(stored) != span.hash {
        return Err(Error::corrupt(
            "index family",
            location,
            format!("its {section:?} section does not match the trailer's hash"),
        ));
    }
    sealer.open(
        &trailer.name.aad(trailer.epoch, section as u8, 0),
        stored,
        "index family section",
        location,
    )
}

/// One block's first id and the hash of its stored bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The first id in the block.
    pub first: ChunkId,
    /// The start of the SHA-256 of the block as stored.
    pub hash: [u8; 16],
}

/// Decodes the opened fence section: one fence a block, first ids
/// strictly increasing, each inside the family.
pub fn decode_fences(plain: &[u8], trailer: &Trailer, location: &str) -> Result<Vec<Fence>> {
    let mut r = Reader::new(plain, "index family fences", location);
    if plain.len() as u64 != trailer.blocks() * FENCE_LEN as u64 {
        return Err(r.error(format!(
            "{} bytes for {} blocks",
            plain.len(),
            trailer.blocks()
        )));
    }
    let mut fences: Vec<Fence> = Vec::with_capacity(plain.len() / FENCE_LEN);
    while r.remaining() > 0 {
        let first = r.id()?;
        let mut hash = [0u8; 16];
        hash.copy_from_slice(r.take(16)?);
        if !trailer.name.contains(&first) || fences.last().is_some_and(|f| f.first >= first) {
            return Err(r.error("fences out of order or outside the family"));
        }
        fences.push(Fence { first, hash });
    }
    Ok(fences)
}

/// The block that would hold `id`, if any.
pub fn block_for(fences: &[Fence], id: &ChunkId) -> Option<u64> {
    match fences.partition_point(|f| f.first <= *id) {
        0 => None,
        n => Some(n as u64 - 1),
    }
}

/// Opens block `n`, stored as `stored`, checks it against its fence, and
/// decodes its entries: ids strictly increasing, the first the fence's,
/// all below the next fence's and inside the family.
pub fn open_block(
    stored: &[u8],
    n: u64,
    trailer: &Trailer,
    fences: &[Fence],
    sealer: &dyn Sealer,
    location: &str,
) -> Result<Vec<(ChunkId, Location)>> {
    let bad = |reason: String| Error::corrupt("index family block", location, reason);
    let Some(fence) = usize::try_from(n).ok().and_then(|i| fences.get(i)) else {
        return Err(bad(format!("there is no block {n}")));
    };
    let (_, len) = trailer
        .block_at(n)
        .ok_or_else(|| bad(format!("no block {n}")))?;
    if stored.len() as u64 != len || hash16(stored) != fence.hash {
        return Err(bad(format!("block {n} does not match its fence's hash")));
    }
    let number = u32::try_from(n).map_err(|_| bad(format!("block {n} past any count")))?;
    let plain = sealer.open(
        &trailer.name.aad(trailer.epoch, BLOCK_KIND, number),
        stored,
        "index family block",
        location,
    )?;
    let next = fences.get(n as usize + 1).map(|f| f.first);
    let mut r = Reader::new(&plain, "index family block", location);
    let mut out: Vec<(ChunkId, Location)> = Vec::with_capacity(plain.len() / ENTRY_LEN);
    while r.remaining() > 0 {
        let id = r.id()?;
        let location_bytes = r.take(Location::ENCODED_LEN)?;
        let in_order = match out.last() {
            None => id == fence.first,
            Some((last, _)) => *last < id,
        };
        if !in_order || next.is_some_and(|next| id >= next) || !trailer.name.contains(&id) {
            return Err(r.error(format!(
                "entry {} out of order or outside the family",
                out.len()
            )));
        }
        out.push((id, Location::decode(id, location_bytes)?));
    }
    Ok(out)
}

/// Decodes the opened pack section: pack ids strictly increasing.
pub fn decode_packs(plain: &[u8], location: &str) -> Result<Vec<PackId>> {
    let mut r = Reader::new(plain, "index family packs", location);
    if !plain.len().is_multiple_of(16) {
        return Err(r.error(format!("{} bytes is not a list of pack ids", plain.len())));
    }
    let mut packs: Vec<PackId> = Vec::with_capacity(plain.len() / 16);
    while r.remaining() > 0 {
        let mut id = [0u8; 16];
        id.copy_from_slice(r.take(16)?);
        let id = PackId(id);
        if packs.last().is_some_and(|last| *last >= id) {
            return Err(r.error("pack ids out of order"));
        }
        packs.push(id);
    }
    Ok(packs)
}

/// A sampled id: its first 8 bytes and the pack that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// The id's first 8 bytes, big-endian.
    pub prefix: u64,
    /// The pack holding it.
    pub pack: PackId,
}

/// Decodes the opened hook section, whose pack numbers index `packs`.
pub fn decode_hooks(plain: &[u8], packs: &[PackId], location: &str) -> Result<Vec<Hook>> {
    let mut r = Reader::new(plain, "index family hooks", location);
    if !plain.len().is_multiple_of(HOOK_LEN) {
        return Err(r.error(format!("{} bytes is not a list of hooks", plain.len())));
    }
    let mut hooks: Vec<Hook> = Vec::with_capacity(plain.len() / HOOK_LEN);
    while r.remaining() > 0 {
        let prefix = u64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let number = r.u32()? as usize;
        let Some(&pack) = packs.get(number) else {
            return Err(r.error(format!("hook names pack {number} of {}", packs.len())));
        };
        if hooks.last().is_some_and(|last| last.prefix > prefix) {
            return Err(r.error("hooks out of order"));
        }
        hooks.push(Hook { prefix, pack });
    }
    Ok(hooks)
}

/// Decodes the opened tombstone section: retired pack ids, increasing.
pub fn decode_tombstones(plain: &[u8], location: &str) -> Result<Vec<PackId>> {
    decode_packs(plain, location)
}

/// Decodes the opened Bloom section.
pub fn decode_bloom(plain: &[u8], location: &str) -> Result<Bloom> {
    Bloom::decode(plain, location)
}

/// True when `id` is one of the sampled ids a family keeps as a hook.
pub fn is_hook(id: &ChunkId) -> bool {
    id.as_bytes()[31] & HOOK_MASK == 0
}

/// A whole family version in memory, read back and checked part by part:
/// what tests, `verify` and small repositories use. Large ones read the
/// parts they need with ranged reads instead.
#[derive(Debug)]
pub struct Family {
    /// Its trailer.
    pub trailer: Trailer,
    /// Its fences.
    pub fences: Vec<Fence>,
    /// Every entry, in id order.
    pub entries: Vec<(ChunkId, Location)>,
    /// The packs they point into.
    pub packs: Vec<PackId>,
    /// Its hooks.
    pub hooks: Vec<Hook>,
    /// Retired packs still to be folded.
    pub tombstones: Vec<PackId>,
    /// Its filter.
    pub bloom: Bloom,
}

impl Family {
    /// Reads `bytes`, the whole object of `name` at `epoch`.
    pub fn read(
        bytes: &[u8],
        sealer: &dyn Sealer,
        name: &FamilyName,
        epoch: u64,
        location: &str,
    ) -> Result<Self> {
        let bad = |reason: &str| Error::corrupt("index family", location, reason.to_string());
        if bytes.len() < MAGIC.len() + FOOTER_LEN || !bytes.starts_with(MAGIC) {
            return Err(bad("it does not start with the family magic"));
        }
        let footer_at = bytes.len() - FOOTER_LEN;
        let len = trailer_len(&bytes[footer_at..], location)?;
        let Some(start) = footer_at.checked_sub(len) else {
            return Err(bad("its trailer is longer than the object"));
        };
        let object_len = start as u64;
        let trailer = open_trailer(
            &bytes[start..footer_at],
            sealer,
            name,
            epoch,
            object_len,
            location,
        )?;
        let part = |section: Section| -> Result<Vec<u8>> {
            let span = trailer.span(section);
            let stored = &bytes[span.offset as usize..(span.offset + span.len) as usize];
            open_section(stored, &trailer, section, sealer, location)
        };
        if trailer.span(Section::Fences).offset + trailer.span(Section::Fences).len != object_len {
            return Err(bad("bytes between its last section and its trailer"));
        }
        let fences = decode_fences(&part(Section::Fences)?, &trailer, location)?;
        let mut entries = Vec::with_capacity(trailer.entries.min(1 << 24) as usize);
        for n in 0..trailer.blocks() {
            let (offset, len) = trailer.block_at(n).expect("n is below the count");
            let stored = &bytes[offset as usize..(offset + len) as usize];
            entries.extend(open_block(stored, n, &trailer, &fences, sealer, location)?);
        }
        let packs = decode_packs(&part(Section::Packs)?, location)?;
        if let Some((id, _)) = entries
            .iter()
            .find(|(_, l)| packs.binary_search(&l.pack).is_err())
        {
            return Err(bad(&format!(
                "the entry of {id} names a pack it does not list"
            )));
        }
        let hooks = decode_hooks(&part(Section::Hooks)?, &packs, location)?;
        let tombstones = decode_tombstones(&part(Section::Tombstones)?, location)?;
        let bloom = decode_bloom(&part(Section::Bloom)?, location)?;
        Ok(Family {
            trailer,
            fences,
            entries,
            packs,
            hooks,
            tombstones,
            bloom,
        })
    }

    /// Where `id` is, if the family holds it.
    pub fn get(&self, id: &ChunkId) -> Option<&Location> {
        self.entries
            .binary_search_by(|(e, _)| e.cmp(id))
            .ok()
            .map(|at| &self.entries[at].1)
    }
}
