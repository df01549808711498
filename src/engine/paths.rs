//! Paths inside a snapshot, and finding what one names.
//!
//! Paths inside a snapshot are relative to its root and written with `/`;
//! a leading `/` is allowed and `""` or `/` is the root itself. `.` and
//! empty components are skipped; `..` is refused (a snapshot has no way
//! up).
//!
//! Names are bytes. They are printed, and read back, with a few escapes
//! ([`escape_name`]): `\\` for a backslash, `\n`, `\t` and `\r`, and
//! `\xHH` for any other control character and for each byte that is not
//! UTF-8; so every name `ls` prints can be given back to `ls`, `cat` or
//! `restore SNAPSHOT:PATH`, and no name breaks a line.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::snapshot::{Entry, EntryKind, SnapshotId};
use crate::id::ChunkId;

/// What a path inside a snapshot names.
#[derive(Clone, Debug)]
pub enum Found {
    /// The snapshot's root folder (its own metadata, where kept, is the
    /// one entry of the tree `SnapshotRecord::root` names).
    Root(ChunkId),
    /// An entry below it.
    Entry(Entry),
}

impl Found {
    /// The tree of a folder; `None` for a file or a symlink.
    pub fn tree(&self) -> Option<ChunkId> {
        match self {
            Found::Root(tree)
            | Found::Entry(Entry {
                kind: EntryKind::Dir { tree },
                ..
            }) => Some(*tree),
            Found::Entry(_) => None,
        }
    }
}

/// `name` as `ls` prints it: UTF-8 as it is, but `\` doubled, newlines,
/// tabs and carriage returns as `\n`, `\t`, `\r`, other control
/// characters and bytes that are not UTF-8 as `\xHH`. [`unescape_name`]
/// reads it back.
pub fn escape_name(name: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes of a name written as [`escape_name`] writes it.
pub fn unescape_name(written: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| {
        Error::invalid(
            "snapshot path",
            format!("{written:?}: {why} (a backslash starts \\\\, \\n, \\t, \\r or \\xHH)"),
        )
    };
    let mut out = Vec::with_capacity(written.len());
    let mut rest = written.as_bytes();
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some((&e, after)) = rest.split_first() else {
            return Err(bad("it ends in a lone backslash"));
        };
        rest = after;
        match e {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let hex = rest
                    .get(..2)
                    .ok_or_else(|| bad("\\x wants two hex digits"))?;
                let byte = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("\\x wants two hex digits"))?;
                out.push(byte);
                rest = &rest[2..];
            }
            _ => return Err(bad("unknown escape")),
        }
    }
    Ok(out)
}

/// The components of a path inside a snapshot as written (escapes and
/// all), or why it is not one.
pub fn components(path: &str) -> Result<Vec<&str>> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::invalid(
                    "snapshot path",
                    format!("{path:?}: `..` does not lead anywhere inside a snapshot"),
                ))
            }
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// `path` (as `ls` prints paths) as a path from the snapshot's root, by
/// its names' bytes: what restore's globs match against.
pub(crate) fn in_snapshot(path: &str) -> Result<PathBuf> {
    let mut at = PathBuf::from("/");
    for part in components(path)? {
        at.push(OsStr::from_bytes(&unescape_name(part)?));
    }
    Ok(at)
}

impl Engine {
    /// What `path` names in the snapshot `snapshot` whose root tree is `root`.
    pub fn lookup(&self, snapshot: &SnapshotId, root: &ChunkId, path: &str) -> Result<Found> {
        let mut found = Found::Root(*root);
        let mut walked = String::new();
        for part in components(path)? {
            let Some(tree) = found.tree() else {
                return Err(Error::NotInSnapshot {
                    snapshot: snapshot.to_hex()[..16].to_string(),
                    path: path.to_string(),
                    reason: format!("{walked} is not a folder"),
                });
            };
            let tree = self.read_tree(&tree)?;
            walked.push('/');
            walked.push_str(part);
            let name = unescape_name(part)?;
            let entry = tree
                .entries
                .binary_search_by(|e| e.name.as_slice().cmp(&name))
                .ok()
                .map(|at| tree.entries[at].clone());
            found = match entry {
                Some(entry) => Found::Entry(entry),
                None => {
                    return Err(Error::NotInSnapshot {
                        snapshot: snapshot.to_hex()[..16].to_string(),
                        path: path.to_string(),
                        reason: format!("no {walked}"),
                    })
                }
            };
        }
        Ok(found)
    }
}
