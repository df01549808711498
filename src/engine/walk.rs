//! Walking trees, a level of folders at a time, each level's trees read in
//! parallel (many at once when packs live on an object store, where each
//! read is a round trip). Two walks, as rustic has:
//!
//! - [`walk_trees`](Repository::walk_trees): every distinct tree that some
//!   roots reach, each once, without paths: what is live (`gc`), what is
//!   referenced (`verify`), what a snapshot holds (`report`).
//! - [`walk_paths`](Repository::walk_paths): every folder under some roots,
//!   with the path the caller builds for it: restore's plan, and the files
//!   a damaged chunk breaks (`verify`).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use crate::engine::{fetch, in_pool, Engine};
use crate::error::Result;
use crate::format::snapshot::{EntryKind, Tree};
use crate::id::ChunkId;

/// Trees read at once within one level, to bound memory on wide levels.
const READ_BATCH: usize = 4096;

impl Engine {
    /// The work of [`Repository::read_tree`](crate::Repository::read_tree).
    pub fn read_tree(&self, id: &ChunkId) -> Result<Tree> {
        if self.packs_are_remote() {
            let read = self.read_trees(None, &self.tree_packs, std::slice::from_ref(id));
            if let Some(tree) = read.into_iter().next() {
                return tree;
            }
        }
        self.read_tree_alone(id)
    }

    /// Reads and decodes a tree object with one read of its own.
    fn read_tree_alone(&self, id: &ChunkId) -> Result<Tree> {
        Tree::decode(&self.read_object(id)?, &id.to_hex())
    }

    /// Runs `f` with the ranges a walk keeps: on an object store this
    /// handle's tree packs, kept for later walks and reads; on local
    /// shards a set of its own, dropped after it.
    fn with_kept<R>(&self, f: impl FnOnce(&fetch::Kept) -> R) -> R {
        if self.packs_are_remote() {
            f(&self.tree_packs)
        } else {
            f(&fetch::Kept::default())
        }
    }

    /// Reads `ids`' trees, in their order: planned by pack ([`fetch`]), so
    /// a level of folders whose trees lie together in a few packs costs a
    /// few reads, not one per folder. A tree whose range could not be read
    /// is read again alone, for its own error.
    ///
    /// [`fetch`]: super::fetch
    fn read_trees(
        &self,
        pool: Option<&rayon::ThreadPool>,
        kept: &fetch::Kept,
        ids: &[ChunkId],
    ) -> Vec<Result<Tree>> {
        let Ok(locations) = self.index.chunks(ids) else {
            return in_pool(pool, || {
                ids.par_iter().map(|id| self.read_tree_alone(id)).collect()
            });
        };
        let wanted = locations
            .into_iter()
            .enumerate()
            .filter_map(|(n, loc)| Some((loc?, n)));
        let read: Mutex<Vec<Option<Result<Tree>>>> =
            Mutex::new((0..ids.len()).map(|_| None).collect());
        in_pool(pool, || {
            self.fetch_all(wanted, Some(kept), &|entry, at: &[usize], raw| {
                let Ok(raw) = raw else { return };
                // Decoded once, however often the batch holds it. One that
                // does not decode is read again alone at its other places,
                // each for its own error.
                let tree = Tree::decode(raw, &entry.id.to_hex());
                let mut read = read.lock().unwrap_or_else(PoisonError::into_inner);
                match tree {
                    Ok(tree) => at.iter().for_each(|&n| read[n] = Some(Ok(tree.clone()))),
                    Err(e) => read[at[0]] = Some(Err(e)),
                }
            });
        });
        let read = read.into_inner().unwrap_or_else(PoisonError::into_inner);
        // Trees the index lacks, or whose range failed: alone, for the error.
        in_pool(pool, || {
            read.into_par_iter()
                .zip(ids)
                .map(|(tree, id)| tree.unwrap_or_else(|| self.read_tree_alone(id)))
                .collect()
        })
    }

    /// Hands every distinct tree reachable from `roots` to `visit`, with
    /// its id, as read: the tree, or the error reading it (the children of
    /// a tree that cannot be read are not walked). Order is by level, and
    /// unspecified within one. An error returned by `visit` stops the walk.
    pub(crate) fn walk_trees(
        &self,
        roots: impl IntoIterator<Item = ChunkId>,
        visit: impl FnMut(ChunkId, Result<Tree>) -> Result<()>,
    ) -> Result<()> {
        self.with_kept(|kept| self.walk_trees_with(kept, roots, visit))
    }

    fn walk_trees_with(
        &self,
        kept: &fetch::Kept,
        roots: impl IntoIterator<Item = ChunkId>,
        mut visit: impl FnMut(ChunkId, Result<Tree>) -> Result<()>,
    ) -> Result<()> {
        let pool = self.io_pool();
        let mut seen = HashSet::new();
        let mut level: Vec<ChunkId> = roots.into_iter().filter(|id| seen.insert(*id)).collect();
        while !level.is_empty() {
            let mut next = Vec::new();
            for batch in level.chunks(READ_BATCH) {
                let trees = self.read_trees(pool.as_ref(), kept, batch);
                for (id, tree) in batch.iter().zip(trees) {
                    if let Ok(tree) = &tree {
                        for e in &tree.entries {
                            if let EntryKind::Dir { tree: child } = e.kind {
                                if seen.insert(child) {
                                    next.push(child);
                                }
                            }
                        }
                    }
                    visit(*id, tree)?;
                }
            }
            level = next;
        }
        Ok(())
    }

    /// Walks the folders under `roots`, each given with the path the
    /// caller calls it by (`P`: a destination path, a display string).
    /// `visit` gets a folder's path, its tree id and its tree as read (or
    /// the error reading it), and returns the sub-folders to walk next,
    /// each with its path. Parents are visited before their children, a
    /// level at a time; a folder that appears twice is walked twice. An
    /// error returned by `visit` stops the walk.
    pub(crate) fn walk_paths<P: Send + Sync>(
        &self,
        roots: Vec<(ChunkId, P)>,
        visit: impl FnMut(&P, ChunkId, Result<Tree>) -> Result<Vec<(ChunkId, P)>>,
    ) -> Result<()> {
        self.with_kept(|kept| self.walk_paths_with(kept, roots, visit))
    }

    fn walk_paths_with<P: Send + Sync>(
        &self,
        kept: &fetch::Kept,
        roots: Vec<(ChunkId, P)>,
        mut visit: impl FnMut(&P, ChunkId, Result<Tree>) -> Result<Vec<(ChunkId, P)>>,
    ) -> Result<()> {
        let pool = self.io_pool();
        let mut level = roots;
        while !level.is_empty() {
            let mut next = Vec::new();
            for batch in level.chunks(READ_BATCH) {
                let ids: Vec<ChunkId> = batch.iter().map(|(id, _)| *id).collect();
                let trees = self.read_trees(pool.as_ref(), kept, &ids);
                for ((id, path), tree) in batch.iter().zip(trees) {
                    next.extend(visit(path, *id, tree)?);
                }
            }
            level = next;
        }
        Ok(())
    }
}
