//! Where an object lives, as the index and the segments record it: a
//! [`Location`] (its pack and its entry there, 33 bytes as a value) and a
//! pack's [`PackInfo`] (its shard and what it holds, 53 bytes). Formats
//! only: the index stores them, segments carry them.

use crate::error::Result;
use crate::format::codec::{Put, Reader};
use crate::format::record::ObjectKind;
use crate::id::{ChunkId, PackId, ShardId};
use crate::store::PackEntry;

/// Where an object's bytes are: its pack, and its entry there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Its record in that pack.
    pub entry: PackEntry,
}

impl Location {
    /// Bytes of [`encode`](Self::encode)'s output.
    pub const ENCODED_LEN: usize = 33;

    /// Encodes as 33 bytes (the id is the key, so it is not repeated).
    pub fn encode(&self) -> Vec<u8> {
        let e = &self.entry;
        let mut v = Vec::with_capacity(33);
        v.extend_from_slice(&self.pack.0);
        v.put_u64(e.offset);
        v.put_u32(e.raw_len);
        v.put_u32(e.stored_len);
        v.put_u8(e.flags);
        v
    }

    /// True when this is where `entry` of `pack` lies: the index uses that
    /// copy (a pack may also hold copies the index has moved away from).
    pub fn is(&self, pack: &PackId, entry: &PackEntry) -> bool {
        self.pack == *pack && self.entry.offset == entry.offset
    }

    /// Decodes the index value stored under `id`.
    pub fn decode(id: ChunkId, bytes: &[u8]) -> Result<Self> {
        let location = id.to_hex();
        let mut r = Reader::new(bytes, "index entry", &location);
        let mut pack = [0u8; 16];
        pack.copy_from_slice(r.take(16)?);
        let loc = Location {
            pack: PackId(pack),
            entry: PackEntry {
                id,
                offset: r.u64()?,
                raw_len: r.u32()?,
                stored_len: r.u32()?,
                flags: r.u8()?,
            },
        };
        r.finish()?;
        Ok(loc)
    }
}

/// What the index knows of a pack: its shard and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackInfo {
    /// The shard it lives on.
    pub shard: ShardId,
    /// Its length in bytes, trailer included.
    pub size: u64,
    /// File-data chunks in it.
    pub data_chunks: u32,
    /// Their uncompressed bytes.
    pub data_raw: u64,
    /// Their stored bytes.
    pub data_stored: u64,
    /// Tree objects in it.
    pub tree_objects: u32,
    /// Their uncompressed bytes.
    pub tree_raw: u64,
    /// Their stored bytes.
    pub tree_stored: u64,
}

impl PackInfo {
    /// Summarises a sealed pack's entries.
    pub fn of(shard: ShardId, size: u64, entries: &[PackEntry]) -> Self {
        let mut info = PackInfo {
            shard,
            size,
            ..Default::default()
        };
        for e in entries {
            if e.kind() == ObjectKind::Tree {
                info.tree_objects += 1;
                info.tree_raw += u64::from(e.raw_len);
                info.tree_stored += u64::from(e.stored_len);
            } else {
                info.data_chunks += 1;
                info.data_raw += u64::from(e.raw_len);
                info.data_stored += u64::from(e.stored_len);
            }
        }
        info
    }

    /// The length of [`encode`](Self::encode)'s output.
    pub const ENCODED_LEN: usize = 53;

    /// Encodes as an index value (and inside index segments).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::ENCODED_LEN);
        v.put_u8(1);
        v.put_u32(self.shard.0);
        v.put_u64(self.size);
        v.put_u32(self.data_chunks);
        v.put_u64(self.data_raw);
        v.put_u64(self.data_stored);
        v.put_u32(self.tree_objects);
        v.put_u64(self.tree_raw);
        v.put_u64(self.tree_stored);
        v
    }

    /// Decodes an index value; `location` names it in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let mut r = Reader::new(bytes, "pack index entry", location);
        if r.u8()? != 1 {
            return Err(r.error("unknown version"));
        }
        let info = PackInfo {
            shard: ShardId(r.u32()?),
            size: r.u64()?,
            data_chunks: r.u32()?,
            data_raw: r.u64()?,
            data_stored: r.u64()?,
            tree_objects: r.u32()?,
            tree_raw: r.u64()?,
            tree_stored: r.u64()?,
        };
        r.finish()?;
        Ok(info)
    }
}
