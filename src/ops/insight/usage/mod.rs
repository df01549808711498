//! Who holds what: every snapshot's trees loaded once as one graph, and the
//! costs read off it: what each snapshot alone holds (what forgetting it
//! would free), where a snapshot's bytes went folder by folder, and why a
//! file deduplicates as it does.
//!
//! The graph is the union of the snapshots' tree DAGs. A tree many
//! snapshots share is read and stored once; chunk and tree ids are
//! numbered densely so the passes below work on vectors, not hash maps.
//! Ownership is worked out in one pass: a tree (or chunk) reached from one
//! snapshot belongs to it, from two or more to "many". A snapshot's walk
//! stops at a tree it already owns or that is already shared, so each tree
//! is expanded at most twice, whatever the number of snapshots.

mod explain;

pub use explain::{ChunkStatus, ExplainedChunk, Explanation, Holder, Similar};

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::catalog::LOOKUP_BATCH;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::snapshot::{EntryKind, SnapshotId, SnapshotRecord};
use crate::id::ChunkId;

/// No snapshot reaches it (yet).
const NOBODY: u32 = u32::MAX;
/// Two or more snapshots reach it.
const MANY: u32 = u32::MAX - 1;

fn merge(owner: &mut u32, snapshot: u32) -> bool {
    match *owner {
        NOBODY => *owner = snapshot,
        o if o == snapshot || o == MANY => return false,
        _ => *owner = MANY,
    }
    true
}

/// One file of a tree: its name and its run of the tree's chunk list.
struct FileNode {
    name: Box<str>,
    size: u64,
    chunks: std::ops::Range<u32>,
}

/// One distinct tree.
#[derive(Default)]
struct Node {
    /// Sub-folders, by name, with repeats where two names hold the same tree.
    children: Vec<(Box<str>, u32)>,
    files: Vec<FileNode>,
    /// Every file's chunks, in order, with repeats.
    chunks: Vec<u32>,
}

/// What the index says of one object.
#[derive(Clone, Copy, Default)]
struct Sizes {
    raw: u64,
    stored: u64,
}

/// The graph of every snapshot's trees, with each tree's and chunk's owner.
pub struct Usage {
    /// Oldest first.
    snapshots: Vec<(SnapshotId, SnapshotRecord)>,
    /// Each snapshot's `top()` and `tree`, as tree numbers.
    tops: Vec<(u32, u32)>,
    trees: Vec<Node>,
    tree_ids: Vec<ChunkId>,
    tree_sizes: Vec<Sizes>,
    tree_owner: Vec<u32>,
    chunk_ids: Vec<ChunkId>,
    chunk_sizes: Vec<Sizes>,
    chunk_owner: Vec<u32>,
}

/// What one snapshot cost when it was taken and what it alone holds now.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotCost {
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Its host.
    pub hostname: String,
    /// Bytes of file content it holds.
    pub logical_bytes: u64,
    /// Uncompressed bytes its ingest added to the repository.
    pub added_bytes: u64,
    /// Bytes its ingest added on disk, after compression.
    pub added_stored_bytes: u64,
    /// Chunks and trees no other snapshot reaches: what `forget` of it
    /// alone, then `gc`, drops from the index.
    pub exclusive_objects: u64,
    /// Their uncompressed bytes.
    pub exclusive_bytes: u64,
    /// Their bytes on disk: what forgetting it alone would free.
    pub exclusive_stored_bytes: u64,
}

/// One folder of a snapshot and what its bytes cost.
#[derive(Clone, Debug, Serialize)]
pub struct DirUsage {
    /// `/`-separated from the snapshot's root (`/` for the root).
    pub path: String,
    /// 0 for the root.
    pub depth: u32,
    /// Files below it, at any depth.
    pub files: u64,
    /// Bytes of those files.
    pub logical_bytes: u64,
    /// Uncompressed bytes of the distinct chunks below it.
    pub distinct_bytes: u64,
    /// Their bytes on disk, compressed.
    pub stored_bytes: u64,
    /// Of `distinct_bytes`, those no other folder of the snapshot and no
    /// other snapshot holds.
    pub unique_bytes: u64,
    /// Their bytes on disk: what the folder alone costs.
    pub unique_stored_bytes: u64,
    /// Of `distinct_bytes`, those another folder of this snapshot holds too.
    pub shared_in_snapshot: u64,
    /// Of `distinct_bytes`, those another snapshot holds too.
    pub shared_with_snapshots: u64,
}

/// `report SNAPSHOT --by-dir`: a snapshot's folders, costliest first.
#[derive(Clone, Debug, Serialize)]
pub struct DirReport {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The deepest folders listed (0: the root alone).
    pub depth: u32,
    /// Every folder down to `depth`, by `unique_stored_bytes`, largest first.
    pub folders: Vec<DirUsage>,
}

/// The work of [`Repository::usage`](crate::Repository::usage).
pub(crate) fn usage(engine: &Engine) -> Result<Usage> {
    let mut snapshots = engine.snapshots()?;
    snapshots.sort_by_key(|(_, r)| r.time_unix_ns);
    let mut u = Usage {
        snapshots: Vec::new(),
        tops: Vec::new(),
        trees: Vec::new(),
        tree_ids: Vec::new(),
        tree_sizes: Vec::new(),
        tree_owner: Vec::new(),
        chunk_ids: Vec::new(),
        chunk_sizes: Vec::new(),
        chunk_owner: Vec::new(),
    };
    let mut tree_no: HashMap<ChunkId, u32> = HashMap::new();
    let mut chunk_no: HashMap<ChunkId, u32> = HashMap::new();
    let mut intern = |u: &mut Usage, id: ChunkId| -> u32 {
        *tree_no.entry(id).or_insert_with(|| {
            u.tree_ids.push(id);
            u.trees.push(Node::default());
            (u.tree_ids.len() - 1) as u32
        })
    };
    for (_, r) in &snapshots {
        let top = intern(&mut u, r.top());
        let tree = intern(&mut u, r.tree);
        u.tops.push((top, tree));
    }
    let roots: Vec<ChunkId> = snapshots.iter().map(|(_, r)| r.top()).collect();
    engine.walk_trees(roots, |id, tree| {
        let tree = tree?;
        let mut node = Node::default();
        for entry in tree.entries {
            let name: Box<str> = crate::engine::paths::escape_name(&entry.name).into();
            match entry.kind {
                EntryKind::File { size, chunks } => {
                    let start = node.chunks.len() as u32;
                    for (c, _) in chunks {
                        let n = *chunk_no.entry(c).or_insert_with(|| {
                            u.chunk_ids.push(c);
                            (u.chunk_ids.len() - 1) as u32
                        });
                        node.chunks.push(n);
                    }
                    node.files.push(FileNode {
                        name,
                        size,
                        chunks: start..node.chunks.len() as u32,
                    });
                }
                EntryKind::Dir { tree } => {
                    let child = intern(&mut u, tree);
                    node.children.push((name, child));
                }
                _ => {}
            }
        }
        let at = intern(&mut u, id);
        u.trees[at as usize] = node;
        Ok(())
    })?;
    u.tree_sizes = sizes_of(engine, &u.tree_ids)?;
    u.chunk_sizes = sizes_of(engine, &u.chunk_ids)?;
    u.snapshots = snapshots;
    u.own();
    Ok(u)
}

/// What the index records of each object, in order.
fn sizes_of(engine: &Engine, ids: &[ChunkId]) -> Result<Vec<Sizes>> {
    let mut out = Vec::with_capacity(ids.len());
    for batch in ids.chunks(LOOKUP_BATCH) {
        for (id, loc) in batch.iter().zip(engine.index.chunks(batch)?) {
            let loc = loc.ok_or(Error::MissingChunk(*id))?;
            out.push(Sizes {
                raw: u64::from(loc.entry.raw_len),
                stored: u64::from(loc.entry.stored_len),
            });
        }
    }
    Ok(out)
}

impl Usage {
    /// Works out each tree's and chunk's owner (see the module doc).
    fn own(&mut self) {
        self.tree_owner = vec![NOBODY; self.trees.len()];
        self.chunk_owner = vec![NOBODY; self.chunk_ids.len()];
        for (s, &(top, _)) in self.tops.iter().enumerate() {
            let s = s as u32;
            let mut stack = vec![top];
            while let Some(t) = stack.pop() {
                if !merge(&mut self.tree_owner[t as usize], s) {
                    continue;
                }
                let node = &self.trees[t as usize];
                for &c in &node.chunks {
                    merge(&mut self.chunk_owner[c as usize], s);
                }
                stack.extend(node.children.iter().map(|(_, child)| *child));
            }
        }
    }

    /// The snapshots, oldest first.
    pub fn snapshots(&self) -> &[(SnapshotId, SnapshotRecord)] {
        &self.snapshots
    }

    /// Uncompressed sizes of every distinct data chunk the snapshots hold.
    pub fn chunk_lengths(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunk_sizes.iter().map(|s| s.raw)
    }

    /// What each snapshot added and holds alone, oldest first.
    pub fn costs(&self) -> Vec<SnapshotCost> {
        let n = self.snapshots.len();
        let mut exclusive = vec![(0u64, Sizes::default()); n];
        let owned = self
            .tree_owner
            .iter()
            .zip(&self.tree_sizes)
            .chain(self.chunk_owner.iter().zip(&self.chunk_sizes));
        for (&owner, sizes) in owned {
            if let Some(e) = exclusive.get_mut(owner as usize) {
                e.0 += 1;
                e.1.raw += sizes.raw;
                e.1.stored += sizes.stored;
            }
        }
        self.snapshots
            .iter()
            .zip(exclusive)
            .map(|((id, r), (objects, sizes))| SnapshotCost {
                id: *id,
                time: r.time.clone(),
                hostname: r.hostname.clone(),
                logical_bytes: r.summary.logical_bytes,
                added_bytes: r.summary.new_bytes,
                added_stored_bytes: r.summary.new_stored_bytes,
                exclusive_objects: objects,
                exclusive_bytes: sizes.raw,
                exclusive_stored_bytes: sizes.stored,
            })
            .collect()
    }

    /// The distinct trees under `top` (itself included), parents before
    /// their children.
    fn topological(&self, top: u32) -> Vec<u32> {
        let mut seen = HashSet::new();
        let mut post = Vec::new();
        let mut stack = vec![(top, false)];
        while let Some((t, done)) = stack.pop() {
            if done {
                post.push(t);
                continue;
            }
            if !seen.insert(t) {
                continue;
            }
            stack.push((t, true));
            for (_, child) in &self.trees[t as usize].children {
                if !seen.contains(child) {
                    stack.push((*child, false));
                }
            }
        }
        post.reverse();
        post
    }

    /// How often each chunk under `top` is referenced, a subtree counted
    /// as often as it appears; and the files and logical bytes.
    fn references(&self, top: u32) -> (HashMap<u32, u64>, u64, u64) {
        let order = self.topological(top);
        let mut times: HashMap<u32, u64> = HashMap::from([(top, 1)]);
        let mut refs: HashMap<u32, u64> = HashMap::new();
        let (mut files, mut logical) = (0, 0);
        for t in order {
            let m = times[&t];
            let node = &self.trees[t as usize];
            for (_, child) in &node.children {
                *times.entry(*child).or_default() += m;
            }
            for &c in &node.chunks {
                *refs.entry(c).or_default() += m;
            }
            files += m * node.files.len() as u64;
            logical += m * node.files.iter().map(|f| f.size).sum::<u64>();
        }
        (refs, files, logical)
    }

    fn snapshot_index(&self, id: &SnapshotId) -> Result<usize> {
        self.snapshots
            .iter()
            .position(|(s, _)| s == id)
            .ok_or_else(|| Error::UnknownSnapshot(id.to_hex()))
    }

    /// The folders of snapshot `id` down to `depth` and what they cost.
    pub fn by_dir(&self, id: &SnapshotId, depth: u32) -> Result<DirReport> {
        let s = self.snapshot_index(id)?;
        let (_, root) = self.tops[s];
        let (everywhere, _, _) = self.references(root);
        let mut memo: HashMap<u32, DirUsage> = HashMap::new();
        let mut folders = Vec::new();
        let mut stack = vec![(root, String::new(), 0u32)];
        while let Some((t, path, d)) = stack.pop() {
            let row = memo
                .entry(t)
                .or_insert_with(|| self.dir_usage(t, s as u32, &everywhere));
            folders.push(DirUsage {
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.clone()
                },
                depth: d,
                ..row.clone()
            });
            if d < depth {
                for (name, child) in &self.trees[t as usize].children {
                    stack.push((*child, format!("{path}/{name}"), d + 1));
                }
            }
        }
        folders.sort_by(|a, b| {
            b.unique_stored_bytes
                .cmp(&a.unique_stored_bytes)
                .then(b.logical_bytes.cmp(&a.logical_bytes))
                .then(a.path.cmp(&b.path))
        });
        Ok(DirReport {
            snapshot: *id,
            depth,
            folders,
        })
    }

    /// One folder's figures; `everywhere` counts the references of the
    /// whole snapshot `s`.
    fn dir_usage(&self, tree: u32, s: u32, everywhere: &HashMap<u32, u64>) -> DirUsage {
        let (here, files, logical) = self.references(tree);
        let mut row = DirUsage {
            path: String::new(),
            depth: 0,
            files,
            logical_bytes: logical,
            distinct_bytes: 0,
            stored_bytes: 0,
            unique_bytes: 0,
            unique_stored_bytes: 0,
            shared_in_snapshot: 0,
            shared_with_snapshots: 0,
        };
        for (c, n) in here {
            let sizes = self.chunk_sizes[c as usize];
            row.distinct_bytes += sizes.raw;
            row.stored_bytes += sizes.stored;
            let elsewhere_here = everywhere[&c] > n;
            let other_snapshots = self.chunk_owner[c as usize] != s;
            if elsewhere_here {
                row.shared_in_snapshot += sizes.raw;
            }
            if other_snapshots {
                row.shared_with_snapshots += sizes.raw;
            }
            if !elsewhere_here && !other_snapshots {
                row.unique_bytes += sizes.raw;
                row.unique_stored_bytes += sizes.stored;
            }
        }
        row
    }
}

impl std::fmt::Display for DirReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = crate::units::human_bytes;
        writeln!(
            f,
            "snapshot {}: folders to depth {}, by what each alone costs on disk",
            &self.snapshot.to_hex()[..16],
            self.depth
        )?;
        writeln!(
            f,
            "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}  path",
            "alone", "stored", "distinct", "logical", "in-snap", "elsewhere", "files"
        )?;
        for d in &self.folders {
            writeln!(
                f,
                "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}  {}",
                h(d.unique_stored_bytes),
                h(d.stored_bytes),
                h(d.distinct_bytes),
                h(d.logical_bytes),
                h(d.shared_in_snapshot),
                h(d.shared_with_snapshots),
                d.files,
                d.path
            )?;
        }
        writeln!(
            f,
            "alone: on disk, held by no other folder or snapshot; stored: its distinct chunks on \
             disk; in-snap / elsewhere: bytes other folders of this snapshot / other snapshots hold too"
        )
    }
}
