//! Writing a family version, in one streaming pass.

use std::io::Write;

use super::{hash16, is_hook, FamilyName, Sealer, Span, Trailer, SECTIONS};
use super::{
    BLOCK_ENTRIES, BLOCK_KIND, END_MAGIC, ENTRY_LEN, FOOTER_LEN, HOOK_LEN, MAGIC, TRAILER_KIND,
};
use crate::bloom::Bloom;
use crate::error::{Error, Result};
use crate::format::codec::Put;
use crate::format::values::Location;
use crate::id::{ChunkId, PackId};

/// Writes one family version, streaming: entries go out a block at a
/// time; what a reader needs to find them is kept (fences, packs, hooks,
/// the filter: about 2 bytes an entry) and written at the end.
pub struct FamilyWriter<'s, W: Write> {
    out: W,
    sealer: &'s dyn Sealer,
    name: FamilyName,
    epoch: u64,
    written: u64,
    block: Vec<u8>,
    in_block: u16,
    blocks: u32,
    entries: u64,
    last: Option<ChunkId>,
    fences: Vec<u8>,
    packs: std::collections::BTreeSet<PackId>,
    hooks: Vec<(u64, PackId)>,
    bloom: Bloom,
}

impl<'s, W: Write> FamilyWriter<'s, W> {
    /// Starts version `epoch` of family `name` on `out`, for about
    /// `expected` entries (the filter's size).
    pub fn new(
        mut out: W,
        sealer: &'s dyn Sealer,
        name: FamilyName,
        epoch: u64,
        expected: u64,
    ) -> Result<Self> {
        out.write_all(MAGIC).map_err(write_error)?;
        Ok(FamilyWriter {
            out,
            sealer,
            name,
            epoch,
            written: MAGIC.len() as u64,
            block: Vec::with_capacity(usize::from(BLOCK_ENTRIES) * ENTRY_LEN),
            in_block: 0,
            blocks: 0,
            entries: 0,
            last: None,
            fences: Vec::new(),
            packs: std::collections::BTreeSet::new(),
            hooks: Vec::new(),
            bloom: Bloom::exact(expected),
        })
    }

    /// Adds `id` at `location`; ids come in strictly increasing order,
    /// all inside the family.
    pub fn push(&mut self, id: &ChunkId, location: &Location) -> Result<()> {
        if self.last.is_some_and(|last| last >= *id) || !self.name.contains(id) {
            return Err(Error::invalid(
                "index family",
                format!("{id} out of order or outside family {}", self.name.label()),
            ));
        }
        if self.in_block == 0 {
            self.fences.extend_from_slice(id.as_bytes());
        }
        self.block.extend_from_slice(id.as_bytes());
        self.block.extend_from_slice(&location.encode());
        self.in_block += 1;
        self.entries += 1;
        self.last = Some(*id);
        self.bloom.insert(id);
        self.packs.insert(location.pack);
        if is_hook(id) {
            let prefix = u64::from_be_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"));
            self.hooks.push((prefix, location.pack));
        }
        if self.in_block == BLOCK_ENTRIES {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes written so far (blocks only, until [`finish`](Self::finish)).
    pub fn written(&self) -> u64 {
        self.written
    }

    fn flush_block(&mut self) -> Result<()> {
        let number = self.blocks;
        self.blocks = number.checked_add(1).ok_or_else(|| {
            Error::invalid(
                "index family",
                "more blocks than a family can hold".to_string(),
            )
        })?;
        let aad = self.name.aad(self.epoch, BLOCK_KIND, number);
        let stored = self.sealer.seal(&aad, &self.block);
        self.fences.extend_from_slice(&hash16(&stored));
        self.put(&stored)?;
        self.block.clear();
        self.in_block = 0;
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(write_error)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the last block, the sections (with `tombstones`: retired
    /// packs still to be folded) and the trailer; returns the output and
    /// the trailer written.
    pub fn finish(mut self, tombstones: &[PackId]) -> Result<(W, Trailer)> {
        if self.in_block > 0 {
            self.flush_block()?;
        }
        let packs: Vec<PackId> = std::mem::take(&mut self.packs).into_iter().collect();
        let mut tombs = tombstones.to_vec();
        tombs.sort_unstable();
        tombs.dedup();
        let mut hooks = Vec::with_capacity(self.hooks.len() * HOOK_LEN);
        for (prefix, pack) in &self.hooks {
            let number = packs
                .binary_search(pack)
                .expect("every hook's pack is listed");
            hooks.extend_from_slice(&prefix.to_be_bytes());
            hooks.put_u32(number as u32);
        }
        let fences = std::mem::take(&mut self.fences);
        let parts: [Vec<u8>; 5] = [
            tombs.iter().flat_map(|p| p.0).collect(),
            packs.iter().flat_map(|p| p.0).collect(),
            hooks,
            self.bloom.encode(0),
            fences,
        ];
        let mut sections = [Span::default(); 5];
        for ((part, kind), span) in parts.iter().zip(SECTIONS).zip(&mut sections) {
            let stored = self
                .sealer
                .seal(&self.name.aad(self.epoch, kind as u8, 0), part);
            *span = Span {
                offset: self.written,
                len: stored.len() as u64,
                hash: hash16(&stored),
            };
            self.put(&stored)?;
        }
        let trailer = Trailer {
            name: self.name.clone(),
            epoch: self.epoch,
            entries: self.entries,
            block_entries: BLOCK_ENTRIES,
            block_len: (usize::from(BLOCK_ENTRIES) * ENTRY_LEN + self.sealer.overhead()) as u64,
            sections,
        };
        let stored = self.sealer.seal(
            &self.name.aad(self.epoch, TRAILER_KIND, 0),
            &trailer.encode(),
        );
        self.put(&stored)?;
        let len = u32::try_from(stored.len()).expect("a trailer is small");
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.put_u32(len);
        footer.extend_from_slice(END_MAGIC);
        self.put(&footer)?;
        self.out.flush().map_err(write_error)?;
        Ok((self.out, trailer))
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::io("index family being written", e)
}
