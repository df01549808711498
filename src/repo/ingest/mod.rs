//! Ingest: walk directory trees, store their files and listings, record a
//! snapshot.
//!
//! Four phases. (1) Walk (`scan.rs`): read directory listings and
//! metadata, sorted by name, without following symlinks. (2) Files
//! (`read.rs`), in parallel: from the file cache when unchanged, else read
//! and cut, their new chunks stored. (3) Trees bottom-up. (4) The snapshot
//! record, written only after every pack is committed (invariant 3).
//! Output is deterministic: the same tree always gives the same root tree
//! id.

mod read;
mod scan;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use read::{fresh_cache_entries, FileResult};
use scan::{mtime, Node, Walk};

use crate::error::Result;
use crate::id::ChunkId;
use crate::repo::report::human_bytes;
use crate::repo::writer::ObjectWriter;
use crate::repo::{Progress, Repository};
use crate::snapshot::record::RECORD_VERSION;
use crate::snapshot::{Entry, EntryKind, IngestSummary, Skipped, SnapshotId, SnapshotRecord, Tree};
use crate::store::record::ObjectKind;

/// A file's chunks in order: `(id, length)`.
type ChunkList = Vec<(ChunkId, u32)>;

/// Index counters of the Bloom filter's work, summed over all ingests.
pub(crate) const BLOOM_LOOKUPS: &str = "bloom.lookups";
pub(crate) const BLOOM_SKIPPED: &str = "bloom.skipped";
pub(crate) const BLOOM_FALSE_POSITIVES: &str = "bloom.false_positives";

/// The result of one ingest.
#[derive(Clone, Debug)]
pub struct IngestOutcome {
    /// The new snapshot.
    pub id: SnapshotId,
    /// Its record (with the summary).
    pub record: SnapshotRecord,
}

impl std::fmt::Display for IngestOutcome {
    /// What people see after an ingest: the snapshot and what it cost.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.record.summary;
        writeln!(f, "snapshot {} saved", self.id)?;
        writeln!(
            f,
            "  {} files, {} folders, {} symlinks: {}",
            s.files,
            s.dirs,
            s.symlinks,
            human_bytes(s.logical_bytes)
        )?;
        writeln!(
            f,
            "  new:    {} in {} objects ({} on disk)",
            human_bytes(s.new_bytes),
            s.new_chunks,
            human_bytes(s.new_stored_bytes)
        )?;
        writeln!(f, "  reused: {}", human_bytes(s.reused_bytes))?;
        if s.unchanged_files > 0 {
            writeln!(
                f,
                "  unchanged since the last ingest (not re-read): {} files",
                s.unchanged_files
            )?;
        }
        writeln!(
            f,
            "  time:   {:.2} s ({}/s)",
            s.seconds,
            human_bytes((s.logical_bytes as f64 / s.seconds.max(1e-9)) as u64)
        )
    }
}

/// Options for [`Repository::ingest_with`].
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Reuse the chunk lists of files whose size, times, inode and device
    /// are unchanged since they were last read (see `filecache`). On by
    /// default; off re-reads and re-hashes everything.
    pub file_cache: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions { file_cache: true }
    }
}

impl Repository {
    /// Ingests `paths` as one snapshot. One directory becomes the snapshot's
    /// root; several paths (or a single file) appear under their base names.
    ///
    /// Files that cannot be read are skipped, listed in the summary's
    /// `skipped`, and reported through `progress`; everything else is stored.
    pub fn ingest(&self, paths: &[PathBuf], progress: &dyn Progress) -> Result<IngestOutcome> {
        self.ingest_with(paths, &IngestOptions::default(), progress)
    }

    /// [`ingest`](Self::ingest) with options.
    pub fn ingest_with(
        &self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestOutcome> {
        let _storing = self.storing();
        self.check_writable()?;
        // Other writers' chunks, committed since this handle opened.
        self.refresh()?;
        let started = Instant::now();
        let start_time = SystemTime::now();
        let (mut walk, roots) = Walk::roots(paths, self.own_folders(), progress)?;
        progress.set_total(walk.files.iter().map(|f| f.stamp.size).sum());
        let writer = ObjectWriter::new(self);
        let results = self.read_files(&writer, &walk.files, opts, progress)?;
        // Files read this time become the cache for the next ingest. Only
        // after `writer.finish` are their chunks indexed, so this waits.
        let fresh_cache = fresh_cache_entries(&walk.files, &results, start_time);
        let mut summary = IngestSummary::default();
        let root_tree = Self::store_root(&writer, roots, results, &mut walk.skipped, &mut summary)?;
        let stats = writer.finish()?;
        if let Some(cache) = &self.file_cache {
            // The cache only saves re-reading: a write that fails (a full
            // disk) costs the next ingest time, not this one its snapshot.
            if let Err(e) = cache.put_many(&fresh_cache) {
                progress.warn(&format!("file cache not updated: {e}"));
            }
        }
        summary.new_chunks = stats.new_objects;
        summary.new_bytes = stats.new_raw;
        summary.new_stored_bytes = stats.new_stored;
        summary.reused_bytes = summary.logical_bytes.saturating_sub(stats.new_data_raw);
        summary.bloom = stats.bloom;
        summary.skipped = walk.skipped;
        summary.seconds = started.elapsed().as_secs_f64();
        let record = SnapshotRecord {
            version: RECORD_VERSION,
            time: humantime::format_rfc3339_seconds(start_time).to_string(),
            time_unix_ns: start_time
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
            tree: root_tree,
            summary,
        };
        self.publish_snapshot(record, progress)
    }

    /// Phase 3: the trees, bottom-up, and the root tree's id. One folder
    /// given is the snapshot's root; anything else sits under its name.
    fn store_root(
        writer: &ObjectWriter<'_>,
        mut roots: scan::Roots,
        results: Vec<FileResult>,
        skipped: &mut Vec<Skipped>,
        summary: &mut IngestSummary,
    ) -> Result<ChunkId> {
        let children = match roots.pop() {
            Some((_, Some(Node::Dir { children, .. }))) if roots.is_empty() => {
                summary.dirs += 1;
                children
            }
            last => roots
                .into_iter()
                .chain(last)
                .filter_map(|(name, node)| Some((name, node?)))
                .collect(),
        };
        let mut results = results.into_iter();
        Self::store_tree(writer, children, &mut results, skipped, summary)
    }

    /// Phase 4: the snapshot record, durably into `snapshots/` and then
    /// into the index (invariant 3: every pack it reaches is committed),
    /// then the Bloom counters and filter. Once the record file is durable
    /// the snapshot is saved: what fails after it is a warning, not an
    /// error that would have the user ingest the same data twice.
    fn publish_snapshot(
        &self,
        record: SnapshotRecord,
        progress: &dyn Progress,
    ) -> Result<IngestOutcome> {
        let (id, bytes) = record.encode();
        self.hold.check_alive()?;
        self.files.put(&SnapshotRecord::key(&id), &bytes)?;
        let bloom = &record.summary.bloom;
        let after = [
            // A record the index lacks is adopted by the next writer.
            ("snapshot index entry", self.index.put_snapshot(&id, &bytes)),
            (
                "Bloom counters",
                self.index.add_counters(&[
                    (BLOOM_LOOKUPS, bloom.lookups),
                    (BLOOM_SKIPPED, bloom.skipped),
                    (BLOOM_FALSE_POSITIVES, bloom.false_positives),
                ]),
            ),
            // A stale filter is rebuilt by the next writer.
            ("Bloom filter", self.save_bloom()),
        ];
        for (what, result) in after {
            if let Err(e) = result {
                progress.warn(&format!(
                    "snapshot {id} is saved, but its {what} was not written (the next writer repairs it): {e}"
                ));
            }
        }
        Ok(IngestOutcome { id, record })
    }

    /// Stores the tree for `children` (and, first, every subtree), consuming
    /// file results in walk order.
    fn store_tree(
        writer: &ObjectWriter<'_>,
        children: Vec<(Vec<u8>, Node)>,
        results: &mut impl Iterator<Item = FileResult>,
        skipped: &mut Vec<Skipped>,
        summary: &mut IngestSummary,
    ) -> Result<ChunkId> {
        let mut tree = Tree::default();
        for (name, node) in children {
            let (meta, kind) = match node {
                Node::File { path, meta } => {
                    match results.next().expect("one result per walked file") {
                        FileResult::Stored {
                            chunks,
                            size,
                            reused,
                            changed,
                        } => {
                            summary.files += 1;
                            summary.unchanged_files += u64::from(reused);
                            if changed {
                                summary.changed.push(path.display().to_string());
                            }
                            summary.logical_bytes += size;
                            summary.total_chunks += chunks.len() as u64;
                            (meta, EntryKind::File { size, chunks })
                        }
                        FileResult::Unreadable(reason) => {
                            skipped.push(Skipped {
                                path: path.display().to_string(),
                                reason,
                            });
                            continue;
                        }
                    }
                }
                Node::Dir { meta, children } => {
                    summary.dirs += 1;
                    let tree = Self::store_tree(writer, children, results, skipped, summary)?;
                    (meta, EntryKind::Dir { tree })
                }
                Node::Symlink { meta, target } => {
                    summary.symlinks += 1;
                    (meta, EntryKind::Symlink { target })
                }
            };
            let (mtime_s, mtime_ns) = mtime(&meta);
            tree.entries.push(Entry {
                name,
                mode: meta.mode() & 0o7777,
                mtime_s,
                mtime_ns,
                kind,
            });
        }
        tree.sort();
        writer.store(&tree.encode(), ObjectKind::Tree)
    }
}
