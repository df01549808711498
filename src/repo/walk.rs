//! Reading every tree that some snapshots reach, each once, a level of
//! folders at a time. `gc` (what is live) and `verify` (what is referenced)
//! both walk this way; a level's trees are read in parallel, many at once
//! when packs live on an object store, where each read is a round trip.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::Result;
use crate::id::ChunkId;
use crate::repo::{in_pool, Repository};
use crate::snapshot::{EntryKind, Tree};

/// Trees read at once within one level, to bound memory on wide levels.
const READ_BATCH: usize = 1024;

impl Repository {
    /// Hands every distinct tree reachable from `roots` to `visit`, with
    /// its id, as read: the tree, or the error reading it (the children of
    /// a tree that cannot be read are not walked). Order is by level, and
    /// unspecified within one. An error returned by `visit` stops the walk.
    pub(crate) fn walk_trees(
        &self,
        roots: impl IntoIterator<Item = ChunkId>,
        mut visit: impl FnMut(ChunkId, Result<Tree>) -> Result<()>,
    ) -> Result<()> {
        let pool = self.io_pool();
        let mut seen = HashSet::new();
        let mut level: Vec<ChunkId> = roots.into_iter().filter(|id| seen.insert(*id)).collect();
        while !level.is_empty() {
            let mut next = Vec::new();
            for batch in level.chunks(READ_BATCH) {
                let trees: Vec<Result<Tree>> = in_pool(pool.as_ref(), || {
                    batch.par_iter().map(|id| self.read_tree(id)).collect()
                });
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
}
