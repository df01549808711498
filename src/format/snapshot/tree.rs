//! Trees: the content-addressed listing of one directory.
//!
//! A tree is stored like file data (in packs, id = SHA-256 of its bytes,
//! flagged as a tree), so an unchanged directory encodes to the same bytes,
//! gets the same id, and costs nothing in the next snapshot.
//!
//! ```text
//! tree    = version:u8(=2) count:u32 entry*        entries sorted by name, unique
//! entry   = name_len:u16 name mode:u32 mtime_s:i64 mtime_ns:u32 kind:u8 body attrs
//! body    = file(0):    size:u64 chunks:u32 (id[32] len:u32)*
//!         | dir(1):     tree id[32]
//!         | symlink(2): target_len:u16 target
//!         | fifo(3)
//!         | char device(4) | block device(5): rdev:u64
//! attrs   = uid:u32 gid:u32 user_len:u8 user group_len:u8 group link:u64
//!           xattr_count:u16 (name_len:u16 name value_len:u32 value)*
//! ```
//!
//! Version 1 trees (no `attrs`, kinds 0 to 2 only) still decode, with no
//! owner: restore leaves such entries to whoever restores them. `link` is
//! 0, or a key that every link of one inode with more than one link
//! shares within a snapshot. Extended attributes are sorted by name, each
//! once.
//!
//! Names are raw bytes (Unix names need not be UTF-8). Decoding checks
//! everything restore relies on: each name is one safe path component (not
//! empty, `.` or `..`, no `/` or NUL), names are strictly increasing (so no
//! duplicates), chunk lengths add up to the file size.

use crate::error::Result;
use crate::format::codec::{Put, Reader};
use crate::id::ChunkId;

/// The name of the root folder's own entry (see `SnapshotRecord::root`).
pub const ROOT_NAME: &[u8] = b"root";

/// The tree format this build writes; version 1 is still read.
const VERSION: u8 = 2;

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
    /// A named pipe.
    Fifo,
    /// A character device (made again only by root).
    CharDevice {
        /// Its device number (`st_rdev`).
        rdev: u64,
    },
    /// A block device (made again only by root).
    BlockDevice {
        /// Its device number (`st_rdev`).
        rdev: u64,
    },
}

/// Who owns an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The user's name where this machine knows it (else empty).
    pub user: String,
    /// The group's name where this machine knows it (else empty).
    pub group: String,
}

/// What an entry carries beside its name, mode, time and content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Its owner; `None` in trees written before owners were kept.
    pub owner: Option<Owner>,
    /// Extended attributes (`user.*`, `security.*`, POSIX ACLs as
    /// `system.posix_acl_*`), sorted by name, each once.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// 0, or a key all links of one multiply linked inode share.
    pub link: u64,
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
    /// Owner, extended attributes, hard link.
    pub attrs: Attrs,
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
                EntryKind::Fifo => v.put_u8(3),
                EntryKind::CharDevice { rdev } => {
                    v.put_u8(4);
                    v.put_u64(*rdev);
                }
                EntryKind::BlockDevice { rdev } => {
                    v.put_u8(5);
                    v.put_u64(*rdev);
                }
            }
            let owner = e.attrs.owner.clone().unwrap_or_default();
            v.put_u32(owner.uid);
            v.put_u32(owner.gid);
            for name in [&owner.user, &owner.group] {
                // No account name is that long; cutting one could split a
                // character, so it is left out (the number stays).
                let name = if name.len() > 255 { "" } else { name.as_str() };
                v.put_u8(name.len() as u8);
                v.extend_from_slice(name.as_bytes());
            }
            v.put_u64(e.attrs.link);
            v.put_u16(e.attrs.xattrs.len() as u16);
            for (name, value) in &e.attrs.xattrs {
                v.put_u16(name.len() as u16);
                v.extend_from_slice(name);
                v.put_u32(value.len() as u32);
                v.extend_from_slice(value);
            }
        }
        v
    }

    /// Decodes and validates tree bytes; `location` (usually the tree id)
    /// names the tree in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let mut r = Reader::new(bytes, "tree", location);
        let version = r.u8()?;
        if version != 1 && version != VERSION {
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
                3 if version > 1 => EntryKind::Fifo,
                4 if version > 1 => EntryKind::CharDevice { rdev: r.u64()? },
                5 if version > 1 => EntryKind::BlockDevice { rdev: r.u64()? },
                other => return Err(r.error(format!("unknown entry kind {other}"))),
            };
            let attrs = if version == 1 {
                Attrs::default()
            } else {
                decode_attrs(&mut r)?
            };
            entries.push(Entry {
                name,
                mode,
                mtime_s,
                mtime_ns,
                kind,
                attrs,
            });
        }
        r.finish()?;
        Ok(Tree { entries })
    }
}

/// An entry's owner, link key and extended attributes (version 2).
fn decode_attrs(r: &mut Reader<'_>) -> Result<Attrs> {
    let uid = r.u32()?;
    let gid = r.u32()?;
    let mut names = [String::new(), String::new()];
    for name in &mut names {
        let len = usize::from(r.u8()?);
        *name = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| r.error("an owner's name is not UTF-8"))?;
    }
    let [user, group] = names;
    let link = r.u64()?;
    let count = usize::from(r.u16()?);
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(count.min(r.remaining() / 6));
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let name = r.take(len)?.to_vec();
        if name.is_empty() || name.contains(&0) {
            return Err(r.error("an extended attribute's name is empty or holds a NUL"));
        }
        if xattrs.last().is_some_and(|(prev, _)| *prev >= name) {
            return Err(r.error("extended attributes are out of order or repeated"));
        }
        let len = r.u32()? as usize;
        xattrs.push((name, r.take(len)?.to_vec()));
    }
    Ok(Attrs {
        owner: Some(Owner {
            uid,
            gid,
            user,
            group,
        }),
        xattrs,
        link,
    })
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
            attrs: Attrs::default(),
        }
    }

    #[test]
    fn every_kind_and_attribute_round_trips() {
        let mut with = entry(
            b"a",
            EntryKind::File {
                size: 0,
                chunks: Vec::new(),
            },
        );
        with.attrs = Attrs {
            owner: Some(Owner {
                uid: 1000,
                gid: 100,
                user: "ann".into(),
                group: "users".into(),
            }),
            xattrs: vec![
                (b"security.selinux".to_vec(), b"ctx\0".to_vec()),
                (b"user.mime".to_vec(), b"text/plain".to_vec()),
            ],
            link: 42,
        };
        let mut tree = Tree {
            entries: vec![
                with,
                entry(b"b", EntryKind::Fifo),
                entry(b"c", EntryKind::CharDevice { rdev: 0x0103 }),
                entry(b"d", EntryKind::BlockDevice { rdev: 0x0801 }),
            ],
        };
        // Entries written without an owner come back with the empty one.
        for e in &mut tree.entries[1..] {
            e.attrs.owner = Some(Owner::default());
        }
        assert_eq!(Tree::decode(&tree.encode(), "t").unwrap(), tree);
        // A name too long for its length byte is left out, never cut.
        let mut long = tree.clone();
        long.entries[0].attrs.owner.as_mut().unwrap().user = "é".repeat(200);
        let back = Tree::decode(&long.encode(), "t").unwrap();
        assert_eq!(back.entries[0].attrs.owner.as_ref().unwrap().user, "");
        assert_eq!(back.entries[0].attrs.owner.as_ref().unwrap().uid, 1000);
        // Attributes out of order are refused.
        tree.entries[0].attrs.xattrs.reverse();
        assert!(Tree::decode(&tree.encode(), "t").is_err());
    }

    #[test]
    fn version_1_trees_still_decode_without_owners() {
        // A version-1 tree of one symlink, as version 1 wrote it.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.push(b'l');
        v1.extend_from_slice(&0o777u32.to_le_bytes());
        v1.extend_from_slice(&5i64.to_le_bytes());
        v1.extend_from_slice(&6u32.to_le_bytes());
        v1.push(2);
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.push(b'x');
        let tree = Tree::decode(&v1, "t").unwrap();
        assert_eq!(tree.entries[0].attrs, Attrs::default());
        assert_eq!(tree.entries[0].mtime_s, 5);
        // Kinds that version 1 did not have are refused in it.
        let mut fifo = v1.clone();
        fifo[1 + 4 + 2 + 1 + 4 + 8 + 4] = 3;
        fifo.truncate(fifo.len() - 3);
        assert!(Tree::decode(&fifo, "t").is_err());
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
