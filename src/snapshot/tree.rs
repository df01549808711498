//! Trees: the content-addressed listing of one directory.
//!
//! A tree is stored like file data (in packs, id = SHA-256 of its bytes,
//! flagged as a tree), so an unchanged directory encodes to the same bytes,
//! gets the same id, and costs nothing in the next snapshot.
//!
//! ```text
//! tree    = version:u8(=1) count:u32 entry*        entries sorted by name, unique
//! entry   = name_len:u16 name mode:u32 mtime_s:i64 mtime_ns:u32 kind:u8 body
//! body    = file:    size:u64 chunks:u32 (id[32] len:u32)*
//!         | dir:     tree id[32]
//!         | symlink: target_len:u16 target
//! ```
//!
//! Names are raw bytes (Unix names need not be UTF-8). Decoding checks
//! everything restore relies on: each name is one safe path component (not
//! empty, `.` or `..`, no `/` or NUL), names are strictly increasing (so no
//! duplicates), chunk lengths add up to the file size.

use crate::codec::{Put, Reader};
use crate::error::Result;
use crate::id::ChunkId;

const VERSION: u8 = 1;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: its chunks in order.
    File {
        /// Length in bytes.
        size: u64,
        /// `(chunk id, chunk length)` in file order.
        chunks: Vec<(ChunkId, u32)>,
    },
    /// A directory: the id of its own tree.
    Dir {
        /// The subtree.
        tree: ChunkId,
    },
    /// A symbolic link, stored as its target, never followed.
    Symlink {
        /// The link's target bytes.
        target: Vec<u8>,
    },
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name, one path component.
    pub name: Vec<u8>,
    /// Unix permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime_s: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_ns: u32,
    /// What it is.
    pub kind: EntryKind,
}

/// A directory listing, entries sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The entries, strictly increasing by name.
    pub entries: Vec<Entry>,
}

/// Why a name cannot be restored, or `None` when it is a safe component.
pub fn unsafe_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == b"." || name == b".." {
        Some("a `.` or `..` component")
    } else if name.contains(&b'/') {
        Some("contains `/` (absolute or nested path)")
    } else if name.contains(&0) {
        Some("contains a NUL byte")
    } else {
        None
    }
}

impl Tree {
    /// The chunk ids its files name, in entry order, with repeats.
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.entries
            .iter()
            .flat_map(|e| match &e.kind {
                EntryKind::File { chunks, .. } => chunks.as_slice(),
                _ => &[],
            })
            .map(|(id, _)| *id)
    }

    /// Sorts entries by name (call before [`encode`](Self::encode)).
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The canonical bytes of this tree. Entries must be sorted.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.entries.len() * 96);
        v.put_u8(VERSION);
        v.put_u32(self.entries.len() as u32);
        for e in &self.entries {
            v.put_u16(e.name.len() as u16);
            v.extend_from_slice(&e.name);
            v.put_u32(e.mode);
            v.put_i64(e.mtime_s);
            v.put_u32(e.mtime_ns);
            match &e.kind {
                EntryKind::File { size, chunks } => {
                    v.put_u8(0);
                    v.put_u64(*size);
                    v.put_chunk_list(chunks);
                }
                EntryKind::Dir { tree } => {
                    v.put_u8(1);
                    v.put_id(tree);
                }
                EntryKind::Symlink { target } => {
                    v.put_u8(2);
                    v.put_u16(target.len() as u16);
                    v.extend_from_slice(target);
                }
            }
        }
        v
    }

    /// Decodes and validates tree bytes; `location` (usually the tree id)
    /// names the tree in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let mut r = Reader::new(bytes, "tree", location);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.error(format!("unknown tree version {version}")));
        }
        let count = r.count(2 + 4 + 8 + 4 + 1)?;
        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        for _ in 0..count {
            let name_len = r.u16()? as usize;
            let name = r.take(name_len)?.to_vec();
            if let Some(why) = unsafe_name(&name) {
                return Err(r.error(format!("entry {:?}: {why}", String::from_utf8_lossy(&name))));
            }
            if entries.last().is_some_and(|prev| prev.name >= name) {
                return Err(r.error(format!(
                    "entry {:?} is out of order or repeated",
                    String::from_utf8_lossy(&name)
                )));
            }
            let mode = r.u32()?;
            let mtime_s = r.i64()?;
            let mtime_ns = r.u32()?;
            if mtime_ns >= 1_000_000_000 {
                return Err(r.error("nanoseconds out of range"));
            }
            let kind = match r.u8()? {
                0 => {
                    let size = r.u64()?;
                    let (chunks, total) = r.chunk_list()?;
                    if total != size {
                        return Err(
                            r.error(format!("chunks add up to {total} bytes, file says {size}"))
                        );
                    }
                    EntryKind::File { size, chunks }
                }
                1 => EntryKind::Dir { tree: r.id()? },
                2 => {
                    let len = r.u16()? as usize;
                    let target = r.take(len)?.to_vec();
                    if target.is_empty() || target.contains(&0) {
                        return Err(r.error("symlink target is empty or holds a NUL"));
                    }
                    EntryKind::Symlink { target }
                }
                other => return Err(r.error(format!("unknown entry kind {other}"))),
            };
            entries.push(Entry {
                name,
                mode,
                mtime_s,
                mtime_ns,
                kind,
            });
        }
        r.finish()?;
        Ok(Tree { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8], kind: EntryKind) -> Entry {
        Entry {
            name: name.to_vec(),
            mode: 0o644,
            mtime_s: 1_700_000_000,
            mtime_ns: 5,
            kind,
        }
    }

    #[test]
    fn crafted_names_that_could_escape_are_refused_at_decode() {
        for name in [&b""[..], b".", b"..", b"/etc", b"a/../../x", b"nul\0"] {
            let tree = Tree {
                entries: vec![entry(
                    name,
                    EntryKind::Symlink {
                        target: b"x".to_vec(),
                    },
                )],
            };
            let err = Tree::decode(&tree.encode(), "t").unwrap_err().to_string();
            assert!(err.contains("corrupt tree"), "{name:?}: {err}");
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = entry(
            b"a",
            EntryKind::Dir {
                tree: ChunkId::of(b""),
            },
        );
        let tree = Tree {
            entries: vec![e.clone(), e],
        };
        assert!(Tree::decode(&tree.encode(), "t").is_err());
    }

    #[test]
    fn file_size_must_match_its_chunks() {
        let tree = Tree {
            entries: vec![entry(
                b"f",
                EntryKind::File {
                    size: 10,
                    chunks: vec![(ChunkId::of(b"x"), 9)],
                },
            )],
        };
        assert!(Tree::decode(&tree.encode(), "t").is_err());
    }
}
