//! Looking inside a snapshot without restoring it: an entry by its path
//! (`SNAPSHOT:PATH` on the command line), a folder's listing, a file's
//! bytes.
//!
//! Paths inside a snapshot are relative to its root and written with `/`;
//! a leading `/` is allowed and `""` or `/` is the root itself. `.` and
//! empty components are skipped; `..` is refused (a snapshot has no way
//! up).

use std::io::Write;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::repo::Repository;
use crate::snapshot::{Entry, EntryKind, SnapshotId};

/// What a path inside a snapshot names.
#[derive(Clone, Debug)]
pub enum Found {
    /// The snapshot's root folder (its own metadata is not kept).
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

/// The components of a path inside a snapshot, or why it is not one.
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
            let entry = tree
                .entries
                .binary_search_by(|e| e.name.as_slice().cmp(part.as_bytes()))
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
                format!(
                    "{} is not a regular file",
                    String::from_utf8_lossy(&entry.name)
                ),
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
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut here = Vec::new();
        for entry in self.read_tree(tree)?.entries {
            let name = String::from_utf8_lossy(&entry.name).into_owned();
            let path = format!("{base}/{name}");
            let subject = if by_path {
                path.as_str()
            } else {
                name.as_str()
            };
            if pattern.matches_with(subject, options) {
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
