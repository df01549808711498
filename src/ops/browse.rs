//! Looking inside a snapshot without restoring it: an entry by its path
//! (`SNAPSHOT:PATH` on the command line), a folder's listing, a file's
//! bytes.
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

use std::io::Write;

use crate::engine::Repository;
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

impl Repository {
    /// What `path` names in the tree `root` of `snapshot` (named in
    /// errors).
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

    /// Writes the bytes of the file `entry` to `out`, each chunk checked
    /// against its id first; returns how many.
    pub fn write_file(&self, entry: &Entry, out: &mut dyn Write) -> Result<u64> {
        let EntryKind::File { chunks, .. } = &entry.kind else {
            return Err(Error::invalid(
                "file",
                format!("{} is not a regular file", escape_name(&entry.name)),
            ));
        };
        let mut written = 0;
        for (id, _) in chunks {
            let data = self.read_object(id)?;
            out.write_all(&data)
                .map_err(|e| Error::io("standard output", e))?;
            written += data.len() as u64;
        }
        Ok(written)
    }
}

/// An entry [`Repository::find`] matched: its path from the snapshot's
/// root (with a leading `/`) and the entry.
#[derive(Clone, Debug)]
pub struct Match {
    /// `/`-separated, from the snapshot's root.
    pub path: String,
    /// What is there.
    pub entry: Entry,
}

impl Repository {
    /// Every entry under the tree `root` whose name (or, when `pattern`
    /// holds a `/`, whose whole path from the root) matches the glob
    /// `pattern`, as restic's `find` does: `*.rs`, `/src/*/mod.rs`. `*`,
    /// `?` and `[...]` never match a `/`; `**` matches across folders.
    /// `seen` carries what was found under trees already walked, so that
    /// the folders many snapshots share are read once across them.
    pub fn find(
        &self,
        root: &ChunkId,
        pattern: &glob::Pattern,
        seen: &mut FindMemo,
    ) -> Result<Vec<Match>> {
        let by_path = pattern.as_str().contains('/');
        let mut out = Vec::new();
        self.find_in(root, "", pattern, by_path, seen, &mut out)?;
        Ok(out)
    }

    fn find_in(
        &self,
        tree: &ChunkId,
        base: &str,
        pattern: &glob::Pattern,
        by_path: bool,
        seen: &mut FindMemo,
        out: &mut Vec<Match>,
    ) -> Result<()> {
        // A name pattern matches the same below a tree wherever it sits; a
        // path pattern depends on where.
        let key = (
            *tree,
            if by_path {
                base.to_string()
            } else {
                String::new()
            },
        );
        if let Some(found) = seen.0.get(&key) {
            out.extend(found.iter().map(|m| Match {
                path: format!("{base}{}", m.path),
                entry: m.entry.clone(),
            }));
            return Ok(());
        }
        let mut here = Vec::new();
        for entry in self.read_tree(tree)?.entries {
            let name = escape_name(&entry.name);
            let path = format!("{base}/{name}");
            let subject = if by_path {
                path.as_str()
            } else {
                name.as_str()
            };
            if pattern.matches_with(subject, crate::globs::MATCH) {
                here.push(Match {
                    path: path[base.len()..].to_string(),
                    entry: entry.clone(),
                });
            }
            if let EntryKind::Dir { tree } = &entry.kind {
                let mut below = Vec::new();
                self.find_in(tree, &path, pattern, by_path, seen, &mut below)?;
                here.extend(below.into_iter().map(|m| Match {
                    path: m.path[base.len()..].to_string(),
                    entry: m.entry,
                }));
            }
        }
        out.extend(here.iter().map(|m| Match {
            path: format!("{base}{}", m.path),
            entry: m.entry.clone(),
        }));
        seen.0.insert(key, here);
        Ok(())
    }
}

/// What [`Repository::find`] found under each tree it walked (paths
/// relative to the tree), kept across snapshots.
#[derive(Debug, Default)]
pub struct FindMemo(std::collections::HashMap<(ChunkId, String), Vec<Match>>);

/// How a path differs between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// A file's content or a symlink's target differs.
    Content,
    /// Same content, other mode or modification time.
    Metadata,
    /// A file became a folder, say.
    Kind,
}

/// One path [`Repository::diff`] reports, with its entry on each side.
#[derive(Clone, Debug)]
pub struct Difference {
    /// `/`-separated, from the snapshots' roots.
    pub path: String,
    /// What changed.
    pub change: Change,
    /// The entry in the first snapshot.
    pub before: Option<Entry>,
    /// The entry in the second.
    pub after: Option<Entry>,
}

impl Repository {
    /// What differs between the trees `a` and `b`, path by path in name
    /// order: a folder only on one side is reported with everything in
    /// it; folders whose tree ids are equal are not read.
    pub fn diff(&self, a: &ChunkId, b: &ChunkId) -> Result<Vec<Difference>> {
        let mut out = Vec::new();
        self.diff_trees(Some(a), Some(b), "", &mut out)?;
        Ok(out)
    }

    fn diff_trees(
        &self,
        first: Option<&ChunkId>,
        second: Option<&ChunkId>,
        base: &str,
        out: &mut Vec<Difference>,
    ) -> Result<()> {
        if first == second {
            return Ok(());
        }
        let read = |id: Option<&ChunkId>| -> Result<Vec<Entry>> {
            id.map_or(Ok(Vec::new()), |id| Ok(self.read_tree(id)?.entries))
        };
        let (before, after) = (read(first)?, read(second)?);
        let (mut at_before, mut at_after) = (0, 0);
        while at_before < before.len() || at_after < after.len() {
            let order = match (before.get(at_before), after.get(at_after)) {
                (Some(old), Some(new)) => old.name.cmp(&new.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (old, new) = match order {
                std::cmp::Ordering::Less => (Some(&before[at_before]), None),
                std::cmp::Ordering::Greater => (None, Some(&after[at_after])),
                std::cmp::Ordering::Equal => (Some(&before[at_before]), Some(&after[at_after])),
            };
            at_before += usize::from(old.is_some());
            at_after += usize::from(new.is_some());
            let name = escape_name(&old.or(new).expect("one side").name);
            self.diff_entry(old, new, &format!("{base}/{name}"), out)?;
        }
        Ok(())
    }

    fn diff_entry(
        &self,
        x: Option<&Entry>,
        y: Option<&Entry>,
        path: &str,
        out: &mut Vec<Difference>,
    ) -> Result<()> {
        let tree = |e: Option<&Entry>| match e.map(|e| &e.kind) {
            Some(EntryKind::Dir { tree }) => Some(*tree),
            _ => None,
        };
        let change = match (x, y) {
            (Some(_), None) => Some(Change::Removed),
            (None, Some(_)) => Some(Change::Added),
            (Some(x), Some(y)) => match (&x.kind, &y.kind) {
                (EntryKind::File { chunks: p, .. }, EntryKind::File { chunks: q, .. })
                    if p != q =>
                {
                    Some(Change::Content)
                }
                (EntryKind::Symlink { target: p }, EntryKind::Symlink { target: q }) if p != q => {
                    Some(Change::Content)
                }
                (EntryKind::CharDevice { rdev: p }, EntryKind::CharDevice { rdev: q })
                | (EntryKind::BlockDevice { rdev: p }, EntryKind::BlockDevice { rdev: q })
                    if p != q =>
                {
                    Some(Change::Content)
                }
                (p, q) if std::mem::discriminant(p) != std::mem::discriminant(q) => {
                    Some(Change::Kind)
                }
                _ if (x.mode, x.mtime_s, x.mtime_ns, &x.attrs)
                    != (y.mode, y.mtime_s, y.mtime_ns, &y.attrs) =>
                {
                    Some(Change::Metadata)
                }
                _ => None,
            },
            (None, None) => None,
        };
        if let Some(change) = change {
            out.push(Difference {
                path: path.to_string(),
                change,
                before: x.cloned(),
                after: y.cloned(),
            });
        }
        // What a folder holds: compared when both sides are folders, all
        // added or removed when only one is.
        let (ta, tb) = (tree(x), tree(y));
        if ta.is_some() || tb.is_some() {
            self.diff_trees(ta.as_ref(), tb.as_ref(), path, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_printed_on_one_line_and_read_back_to_its_bytes() {
        let names: [&[u8]; 7] = [
            b"plain.txt",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"latin1-\xe9t\xe9",
            b"with space\nand newline\tand tab\r",
            b"back\\slash",
            b"\x01\x7f bell",
            b"\xff\xfe",
        ];
        for name in names {
            let printed = escape_name(name);
            assert!(!printed.contains(['\n', '\r', '\t']), "{printed:?}");
            assert_eq!(unescape_name(&printed).unwrap(), name, "{printed:?}");
        }
        assert_eq!(escape_name(b"latin1-\xe9t\xe9"), "latin1-\\xe9t\\xe9");
        assert_eq!(escape_name("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape_name(b"a\\b"), "a\\\\b");
    }

    #[test]
    fn a_bad_escape_is_refused_with_the_syntax() {
        for bad in ["trailing\\", "\\q", "\\x4", "\\xzz"] {
            let e = unescape_name(bad).unwrap_err().to_string();
            assert!(e.contains("\\xHH"), "{bad}: {e}");
        }
    }
}
