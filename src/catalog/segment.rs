//! Index segments: the durable form of the index.
//!
//! Every index commit that adds, retires or forgets something is first
//! written to the repository's home as a segment: an immutable file under
//! `segments/` listing what the commit did. The RocksDB index is the
//! segments applied: a cache, which every process brings up to date at
//! open (and rebuilds from nothing when it is gone). A *full* segment holds
//! the whole index as of its writing and names the segments it covers
//! (written by `init`, `repair index`, the first writer of a repository
//! from before segments, and compaction); covered segments are never
//! applied again, so deleting them is only cleanup.
//!
//! Many processes write segments at once, and a cache may meet them in any
//! order, so applying one never depends on the order (see
//! `Index::apply`): a retired pack stays retired (a tombstone), a chunk
//! keeps the first live location it was given, and a forget or a retire
//! drops a chunk's entry only where it points into that pack.
//!
//! ```text
//! "DDSEG\0\0\x01" flags:u8 count:u32 op* sha256(everything before)[32]
//! op = 1 pack[16] info entries:u32 (id[32] offset:u64 raw:u32 stored:u32 flags:u8)*
//!    | 2 pack[16]                      (a retired pack: its tombstone)
//!    | 3 id[32]                        (forget a chunk wherever it is; before many writers)
//!    | 4 pack[16] ids:u32 id[32]*      (retire a pack; drop those of its ids that point into it)
//!    | 5 id[32] pack[16]               (drop a chunk's entry if it points into that pack)
//!    | 6 id[32] location[33]           (a chunk lives there: set unless that pack is retired)
//!    | 7 names:u32 (len:u8 name)*      (a full segment covers these segments)
//! ```
//!
//! Names are `<16 hex digits of nanoseconds since 1970>-<8 random hex>`,
//! with `-full` after a full segment's: they sort in the order one process
//! wrote them.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::codec::{Put, Reader};
use crate::format::values::{Location, PackInfo};
use crate::id::ChunkId;
use crate::store::{MetaStore, PackEntry, PackId};

/// Where segments live in the home.
pub const FOLDER: &str = "segments/";

const MAGIC: &[u8; 8] = b"DDSEG\0\0\x01";
const FULL: u8 = 1;

/// One change to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A pack became part of the repository, with these entries.
    AddPack {
        /// The pack.
        pack: PackId,
        /// Its summary.
        info: PackInfo,
        /// The records the index points at in it.
        entries: Vec<PackEntry>,
    },
    /// A pack left the repository (its file is deleted after), and every
    /// one of `ids` (the pack's) that points into it leaves the index. In
    /// a full segment, with no ids: the tombstone of a pack retired
    /// before.
    RetirePack {
        /// The pack.
        pack: PackId,
        /// Its chunk ids.
        ids: Vec<ChunkId>,
    },
    /// A chunk left the index, wherever it pointed (segments from before
    /// many writers; new ones say which pack, with [`Op::DropEntry`]).
    DeleteChunk(ChunkId),
    /// A chunk's entry leaves the index if it points into `pack`.
    DropEntry {
        /// The chunk.
        id: ChunkId,
        /// The pack its entry must point into.
        pack: PackId,
    },
    /// A chunk lives here (a copy another cache may not point at): its
    /// entry is set, unless the pack is retired.
    Locate(Location),
    /// The segments a full segment covers: never applied after it.
    Covers(Vec<String>),
}

/// A segment: what one commit did, or (`full`) the whole index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Holds the whole index: applying it starts from an empty one.
    pub full: bool,
    /// The changes, in order.
    pub ops: Vec<Op>,
}

impl Segment {
    /// The names of the segments a full segment covers.
    pub fn covers(&self) -> impl Iterator<Item = &str> {
        self.ops
            .iter()
            .flat_map(|op| match op {
                Op::Covers(names) => names.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
    }

    /// The bytes of the segment file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.put_u8(if self.full { FULL } else { 0 });
        out.put_u32(self.ops.len() as u32);
        for op in &self.ops {
            match op {
                Op::AddPack {
                    pack,
                    info,
                    entries,
                } => {
                    out.put_u8(1);
                    out.extend_from_slice(&pack.0);
                    out.extend_from_slice(&info.encode());
                    out.put_u32(entries.len() as u32);
                    for e in entries {
                        out.put_id(&e.id);
                        out.put_u64(e.offset);
                        out.put_u32(e.raw_len);
                        out.put_u32(e.stored_len);
                        out.put_u8(e.flags);
                    }
                }
                Op::RetirePack { pack, ids } if ids.is_empty() => {
                    out.put_u8(2);
                    out.extend_from_slice(&pack.0);
                }
                Op::RetirePack { pack, ids } => {
                    out.put_u8(4);
                    out.extend_from_slice(&pack.0);
                    out.put_u32(ids.len() as u32);
                    for id in ids {
                        out.put_id(id);
                    }
                }
                Op::DeleteChunk(id) => {
                    out.put_u8(3);
                    out.put_id(id);
                }
                Op::DropEntry { id, pack } => {
                    out.put_u8(5);
                    out.put_id(id);
                    out.extend_from_slice(&pack.0);
                }
                Op::Locate(loc) => {
                    out.put_u8(6);
                    out.put_id(&loc.entry.id);
                    out.extend_from_slice(&loc.encode());
                }
                Op::Covers(names) => {
                    out.put_u8(7);
                    out.put_u32(names.len() as u32);
                    for name in names {
                        out.put_u8(name.len() as u8);
                        out.extend_from_slice(name.as_bytes());
                    }
                }
            }
        }
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Decodes a segment file; `location` names it in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let corrupt = |reason: &str| Error::corrupt("index segment", location, reason);
        let Some(body_len) = bytes.len().checked_sub(32) else {
            return Err(corrupt("shorter than its checksum"));
        };
        let (body, sum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader::new(body, "index segment", location);
        if r.take(8)? != MAGIC {
            return Err(r.error("bad magic"));
        }
        let full = match r.u8()? {
            0 => false,
            FULL => true,
            _ => return Err(r.error("unknown flags")),
        };
        // The smallest op (covers with no names) is 5 bytes.
        let count = r.count(5)?;
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            ops.push(match r.u8()? {
                1 => {
                    let pack = pack_id(&mut r)?;
                    let info = PackInfo::decode(r.take(PackInfo::ENCODED_LEN)?, location)?;
                    let n = r.count(49)?;
                    let mut entries = Vec::with_capacity(n);
                    for _ in 0..n {
                        entries.push(PackEntry {
                            id: r.id()?,
                            offset: r.u64()?,
                            raw_len: r.u32()?,
                            stored_len: r.u32()?,
                            flags: r.u8()?,
                        });
                    }
                    Op::AddPack {
                        pack,
                        info,
                        entries,
                    }
                }
                2 => Op::RetirePack {
                    pack: pack_id(&mut r)?,
                    ids: Vec::new(),
                },
                3 => Op::DeleteChunk(r.id()?),
                4 => {
                    let pack = pack_id(&mut r)?;
                    let n = r.count(32)?;
                    let mut ids = Vec::with_capacity(n);
                    for _ in 0..n {
                        ids.push(r.id()?);
                    }
                    Op::RetirePack { pack, ids }
                }
                5 => Op::DropEntry {
                    id: r.id()?,
                    pack: pack_id(&mut r)?,
                },
                6 => {
                    let id = r.id()?;
                    Op::Locate(Location::decode(id, r.take(Location::ENCODED_LEN)?)?)
                }
                7 => {
                    let n = r.count(1)?;
                    let mut names = Vec::with_capacity(n);
                    for _ in 0..n {
                        let len = usize::from(r.u8()?);
                        let name = std::str::from_utf8(r.take(len)?)
                            .ok()
                            .filter(|n| is_name(n))
                            .ok_or_else(|| r.error("a covered name is not a segment name"))?;
                        names.push(name.to_string());
                    }
                    Op::Covers(names)
                }
                _ => return Err(r.error("unknown operation")),
            });
        }
        r.finish()?;
        Ok(Segment { full, ops })
    }
}

/// The segment names in `home`, oldest first.
pub fn names(home: &dyn MetaStore) -> Result<Vec<String>> {
    let mut names: Vec<String> = home
        .list(FOLDER)?
        .into_iter()
        .filter_map(|key| key.strip_prefix(FOLDER).map(str::to_string))
        .filter(|name| is_name(name))
        .collect();
    names.sort();
    Ok(names)
}

/// Writes `segment` to `home` under `name`.
pub fn put(home: &dyn MetaStore, name: &str, segment: &Segment) -> Result<()> {
    home.put(&format!("{FOLDER}{name}"), &segment.encode())
}

/// Deletes the segments `names` (which a full segment covers: never
/// applied again, they are only clutter).
pub fn delete(home: &dyn MetaStore, names: &[String]) -> Result<()> {
    for name in names {
        home.delete(&format!("{FOLDER}{name}"))?;
    }
    Ok(())
}

fn pack_id(r: &mut Reader<'_>) -> Result<PackId> {
    let mut id = [0u8; 16];
    id.copy_from_slice(r.take(16)?);
    Ok(PackId(id))
}

/// A name for a new segment, after every earlier one of this process.
pub fn new_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    // Strictly increasing within the process, whatever the clock does.
    let stamp = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .map_or(now, |last| now.max(last + 1));
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    format!("{stamp:016x}-{}", hex::encode(random))
}

/// A name for a new full segment: [`new_name`] marked full.
pub fn full_name() -> String {
    format!("{}{FULL_SUFFIX}", new_name())
}

/// What ends a full segment's name.
const FULL_SUFFIX: &str = "-full";

/// True for a name [`full_name`] makes.
pub fn is_full(name: &str) -> bool {
    name.ends_with(FULL_SUFFIX)
}

/// True for a name [`new_name`] or [`full_name`] makes.
pub fn is_name(name: &str) -> bool {
    let hex = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let base = name.strip_suffix(FULL_SUFFIX).unwrap_or(name);
    base.split_once('-')
        .is_some_and(|(stamp, random)| hex(stamp, 16) && hex(random, 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::ShardId;

    fn sample() -> Segment {
        let entries: Vec<PackEntry> = (0..3u8)
            .map(|i| PackEntry {
                id: ChunkId::of(&[i]),
                offset: 8 + u64::from(i) * 100,
                raw_len: 90,
                stored_len: 59,
                flags: i,
            })
            .collect();
        Segment {
            full: true,
            ops: vec![
                Op::AddPack {
                    pack: PackId([7; 16]),
                    info: PackInfo::of(ShardId(3), 1000, &entries),
                    entries,
                },
                Op::RetirePack {
                    pack: PackId([9; 16]),
                    ids: Vec::new(),
                },
                Op::RetirePack {
                    pack: PackId([8; 16]),
                    ids: vec![ChunkId::of(b"a"), ChunkId::of(b"b")],
                },
                Op::DeleteChunk(ChunkId::of(b"gone")),
                Op::DropEntry {
                    id: ChunkId::of(b"dropped"),
                    pack: PackId([6; 16]),
                },
                Op::Locate(Location {
                    pack: PackId([5; 16]),
                    entry: PackEntry {
                        id: ChunkId::of(b"here"),
                        offset: 77,
                        raw_len: 10,
                        stored_len: 9,
                        flags: 0,
                    },
                }),
                Op::Covers(vec![new_name(), full_name()]),
            ],
        }
    }

    #[test]
    fn segments_round_trip_and_any_damage_is_refused() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(Segment::decode(&bytes, "s").unwrap(), s);
        for at in [0, 8, 9, 40, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Segment::decode(&bad, "s").is_err(), "flip at {at}");
        }
        assert!(Segment::decode(&bytes[..bytes.len() - 1], "s").is_err());
        assert!(Segment::decode(&[], "s").is_err());
    }

    #[test]
    fn names_sort_in_the_order_they_were_made() {
        let names: Vec<String> = (0..1000).map(|_| new_name()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(names.iter().all(|n| is_name(n)));
        assert!(!is_name("0123-x") && !is_name(&format!("{}-zz", "0".repeat(16))));
    }
}
