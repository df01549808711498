//! Little-endian encoding helpers for the binary formats (packs, trees, index
//! values).
//!
//! Writing is infallible appends to a `Vec<u8>`. Reading goes through
//! [`Reader`], which treats its input as untrusted: every read is bounds
//! checked and a short input is an [`Error::Corrupt`] naming the object, never
//! a panic.

use crate::error::{Error, Result};
use crate::id::ChunkId;

/// Appends little-endian integers and byte strings.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    fn put_id(&mut self, id: &ChunkId);

    /// Writes a `count:u32 (id[32] len:u32)*` chunk list.
    fn put_chunk_list(&mut self, chunks: &[(ChunkId, u32)]) {
        self.put_u32(chunks.len() as u32);
        for (id, len) in chunks {
            self.put_id(id);
            self.put_u32(*len);
        }
    }
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_id(&mut self, id: &ChunkId) {
        self.extend_from_slice(id.as_bytes());
    }
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
    location: &'a str,
}

impl<'a> Reader<'a> {
    /// `what` and `location` name the object in error messages.
    pub fn new(bytes: &'a [u8], what: &'static str, location: &'a str) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
            location,
        }
    }

    /// An error about this object.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.what, self.location, reason)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "truncated at byte {}: wanted {n} more, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn id(&mut self) -> Result<ChunkId> {
        Ok(ChunkId(self.array()?))
    }

    /// A count of items that each take at least `min_item_size` bytes:
    /// refused when the rest of the input could not possibly hold them, so a
    /// corrupt count never drives a huge allocation.
    pub fn count(&mut self, min_item_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_size) > self.remaining() {
            return Err(self.error(format!(
                "count {n} cannot fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// A `count:u32 (id[32] len:u32)*` chunk list and the sum of its lengths.
    pub fn chunk_list(&mut self) -> Result<(Vec<(ChunkId, u32)>, u64)> {
        let n = self.count(36)?;
        let mut chunks = Vec::with_capacity(n);
        let mut total = 0u64;
        for _ in 0..n {
            let id = self.id()?;
            let len = self.u32()?;
            total += u64::from(len);
            chunks.push((id, len));
        }
        Ok((chunks, total))
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}
