//! Looking inside a snapshot without restoring it: an entry by its path
//! (`SNAPSHOT:PATH` on the command line), a folder's listing, a file's
//! bytes. Paths and names are written as `crate::engine::paths` says.

use std::io::Write;

pub use crate::engine::paths::{components, escape_name, unescape_name, Found};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::snapshot::{Entry, EntryKind};
use crate::id::ChunkId;

/// The work of [`Repository::write_file`](crate::Repository::write_file).
pub(crate) fn write_file(engine: &Engine, entry: &Entry, out: &mut dyn Write) -> Result<u64> {
    let EntryKind::File { chunks, .. } = &entry.kind else {
        return Err(Error::invalid(
            "file",
            format!("{} is not a regular file", escape_name(&entry.name)),
        ));
    };
    let mut written = 0;
    for (id, _) in chunks {
        let data = engine.read_object(id)?;
        out.write_all(&data)
            .map_err(|e| Error::io("standard output", e))?;
        written += data.len() as u64;
    }
    Ok(written)
}

/// An entry [`Repository::find`](crate::Repository::find) matched: its path from the snapshot's
/// root (with a leading `/`) and the entry.
#[derive(Clone, Debug)]
pub struct Match {
    /// `/`-separated, from the snapshot's root.
    pub path: String,
    /// What is there.
    pub entry: Entry,
}

/// The work of [`Repository::find`](crate::Repository::find)(crate::Repository::find).
pub(crate) fn find(
    engine: &Engine,
    root: &ChunkId,
    pattern: &glob::Pattern,
    seen: &mut FindMemo,
) -> Result<Vec<Match>> {
    let by_path = pattern.as_str().contains('/');
    let mut out = Vec::new();
    find_in(engine, root, "", pattern, by_path, seen, &mut out)?;
    Ok(out)
}

fn find_in(
    engine: &Engine,
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
    for entry in engine.read_tree(tree)?.entries {
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
            find_in(engine, tree, &path, pattern, by_path, seen, &mut below)?;
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

/// What [`Repository::find`](crate::Repository::find) found under each tree it walked (paths
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

/// One path [`Repository::diff`](crate::Repository::diff) reports, with its entry on each side.
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

/// The work of [`Repository::diff`](crate::Repository::diff)(crate::Repository::diff).
pub(crate) fn diff(engine: &Engine, a: &ChunkId, b: &ChunkId) -> Result<Vec<Difference>> {
    let mut out = Vec::new();
    diff_trees(engine, Some(a), Some(b), "", &mut out)?;
    Ok(out)
}

fn diff_trees(
    engine: &Engine,
    first: Option<&ChunkId>,
    second: Option<&ChunkId>,
    base: &str,
    out: &mut Vec<Difference>,
) -> Result<()> {
    if first == second {
        return Ok(());
    }
    let read = |id: Option<&ChunkId>| -> Result<Vec<Entry>> {
        id.map_or(Ok(Vec::new()), |id| Ok(engine.read_tree(id)?.entries))
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
        diff_entry(engine, old, new, &format!("{base}/{name}"), out)?;
    }
    Ok(())
}

fn diff_entry(
    engine: &Engine,
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
            (EntryKind::File { chunks: p, .. }, EntryKind::File { chunks: q, .. }) if p != q => {
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
            (p, q) if std::mem::discriminant(p) != std::mem::discriminant(q) => Some(Change::Kind),
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
        diff_trees(engine, ta.as_ref(), tb.as_ref(), path, out)?;
    }
    Ok(())
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
