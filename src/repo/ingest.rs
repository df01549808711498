//! Ingest: walk directory trees, store their files and listings, record a
//! snapshot.
//!
//! Three phases. (1) Walk: read directory listings and metadata, sorted by
//! name, without following symlinks; entries that cannot be stored (sockets,
//! FIFOs, devices, unreadable folders) are skipped with a warning. (2) Files
//! in parallel (rayon): each is cut by the chunker as a stream, and its
//! chunks are hashed, looked up and compressed in parallel batches, so one
//! large file still uses every core while memory stays bounded. (3) Trees
//! bottom-up, then the snapshot record, written only after every pack is
//! committed (invariant 3). Output is deterministic: the same tree always
//! gives the same root tree id.

use std::fs::{self, File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::id::ChunkId;
use crate::repo::writer::ObjectWriter;
use crate::repo::{Progress, Repository};
use crate::snapshot::record::RECORD_VERSION;
use crate::snapshot::{Entry, EntryKind, IngestSummary, Skipped, SnapshotId, SnapshotRecord, Tree};

/// Bytes of chunks gathered before hashing and storing them in parallel.
const BATCH_BYTES: usize = 8 << 20;

/// The result of one ingest.
#[derive(Clone, Debug)]
pub struct IngestOutcome {
    /// The new snapshot.
    pub id: SnapshotId,
    /// Its record (with the summary).
    pub record: SnapshotRecord,
}

/// A walked filesystem entry.
enum Node {
    File {
        path: PathBuf,
        meta: Metadata,
    },
    Dir {
        meta: Metadata,
        children: Vec<(Vec<u8>, Node)>,
    },
    Symlink {
        meta: Metadata,
        target: Vec<u8>,
    },
}

/// What reading one file produced.
enum FileResult {
    Stored {
        chunks: Vec<(ChunkId, u32)>,
        size: u64,
    },
    Unreadable(String),
}

struct Walk<'p> {
    files: Vec<(PathBuf, u64)>,
    skipped: Vec<Skipped>,
    progress: &'p dyn Progress,
}

impl Walk<'_> {
    fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        let reason = reason.into();
        self.progress
            .warn(&format!("skipping {}: {reason}", path.display()));
        self.skipped.push(Skipped {
            path: path.display().to_string(),
            reason,
        });
    }

    /// Walks `path`; `None` when it is skipped.
    fn node(&mut self, path: &Path, meta: Metadata) -> Option<Node> {
        let ft = meta.file_type();
        if ft.is_file() {
            self.files.push((path.to_path_buf(), meta.len()));
            Some(Node::File {
                path: path.to_path_buf(),
                meta,
            })
        } else if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(t) if !t.as_os_str().is_empty() && t.as_os_str().len() <= u16::MAX as usize => {
                    Some(Node::Symlink {
                        meta,
                        target: t.as_os_str().as_bytes().to_vec(),
                    })
                }
                Ok(_) => {
                    self.skip(path, "symlink target is empty or too long");
                    None
                }
                Err(e) => {
                    self.skip(path, e.to_string());
                    None
                }
            }
        } else if ft.is_dir() {
            let listing = match fs::read_dir(path) {
                Ok(l) => l,
                Err(e) => {
                    self.skip(path, e.to_string());
                    return None;
                }
            };
            let mut names = Vec::new();
            for item in listing {
                match item {
                    Ok(item) => names.push(item.file_name()),
                    Err(e) => self.skip(path, e.to_string()),
                }
            }
            names.sort();
            let mut children = Vec::with_capacity(names.len());
            for name in names {
                let child = path.join(&name);
                if name.len() > u16::MAX as usize {
                    self.skip(&child, "name too long");
                    continue;
                }
                match fs::symlink_metadata(&child) {
                    Ok(m) => {
                        if let Some(node) = self.node(&child, m) {
                            children.push((name.as_bytes().to_vec(), node));
                        }
                    }
                    Err(e) => self.skip(&child, e.to_string()),
                }
            }
            Some(Node::Dir { meta, children })
        } else {
            let kind = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "an unsupported file type"
            };
            self.skip(path, format!("{kind} is not stored"));
            None
        }
    }
}

fn mtime(meta: &Metadata) -> (i64, u32) {
    (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
}

impl Repository {
    /// Ingests `paths` as one snapshot. One directory becomes the snapshot's
    /// root; several paths (or a single file) appear under their base names.
    ///
    /// Files that cannot be read are skipped, listed in the summary's
    /// `skipped`, and reported through `progress`; everything else is stored.
    pub fn ingest(&self, paths: &[PathBuf], progress: &dyn Progress) -> Result<IngestOutcome> {
        let started = Instant::now();
        let start_time = SystemTime::now();
        if paths.is_empty() {
            return Err(Error::invalid("ingest paths", "give at least one path"));
        }
        let mut walk = Walk {
            files: Vec::new(),
            skipped: Vec::new(),
            progress,
        };
        let mut roots = Vec::new();
        for path in paths {
            let meta = fs::symlink_metadata(path).at(path)?;
            if meta.is_dir() {
                fs::read_dir(path).at(path)?;
            } else if meta.is_file() {
                File::open(path).at(path)?;
            }
            let name = path
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
                .or_else(|| path.file_name().map(|n| n.as_bytes().to_vec()))
                .unwrap_or_else(|| b"root".to_vec());
            let node = walk.node(path, meta);
            roots.push((name, node));
        }

        let total: u64 = walk.files.iter().map(|(_, len)| len).sum();
        progress.set_total(total);
        let writer = ObjectWriter::new(self);
        let chunker = self.config.chunker;
        let results: Vec<FileResult> = walk
            .files
            .par_iter()
            .map(|(path, _)| store_file(&writer, chunker, path, progress))
            .collect::<Result<_>>()?;

        let mut summary = IngestSummary::default();
        let mut results = results.into_iter();
        let root_tree = if let [(_, Some(Node::Dir { .. }))] = roots.as_slice() {
            let (_, node) = roots.pop().expect("one root");
            let Some(Node::Dir { children, .. }) = node else {
                unreachable!()
            };
            summary.dirs += 1;
            self.store_tree(
                &writer,
                children,
                &mut results,
                &mut walk.skipped,
                &mut summary,
            )?
        } else {
            let mut seen = std::collections::HashSet::new();
            let mut children = Vec::new();
            for (name, node) in roots {
                if !seen.insert(name.clone()) {
                    return Err(Error::invalid(
                        "ingest paths",
                        format!(
                            "two paths share the name {:?}",
                            String::from_utf8_lossy(&name)
                        ),
                    ));
                }
                if let Some(node) = node {
                    children.push((name, node));
                }
            }
            self.store_tree(
                &writer,
                children,
                &mut results,
                &mut walk.skipped,
                &mut summary,
            )?
        };
        let stats = writer.finish()?;

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
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
            tree: root_tree,
            summary,
        };
        let (id, bytes) = record.encode();
        self.files.put(&SnapshotRecord::key(&id), &bytes)?;
        self.index.put_snapshot(&id, &bytes)?;
        self.index.add_counters(&[
            ("bloom.lookups", stats.bloom.lookups),
            ("bloom.skipped", stats.bloom.skipped),
            ("bloom.false_positives", stats.bloom.false_positives),
        ])?;
        self.save_bloom()?;
        Ok(IngestOutcome { id, record })
    }

    /// Stores the tree for `children` (and, first, every subtree), consuming
    /// file results in walk order.
    fn store_tree(
        &self,
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
                        FileResult::Stored { chunks, size } => {
                            summary.files += 1;
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
                    let tree = self.store_tree(writer, children, results, skipped, summary)?;
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
        writer.store(tree.encode(), true)
    }
}

/// Reads one file through the chunker and stores its chunks. I/O errors on
/// the file are not fatal (the file is skipped); repository errors are.
fn store_file(
    writer: &ObjectWriter<'_>,
    chunker: crate::chunker::ChunkerConfig,
    path: &Path,
    progress: &dyn Progress,
) -> Result<FileResult> {
    // O_NONBLOCK: should the file have been swapped for a FIFO since the
    // walk, opening it must not hang. O_NOFOLLOW: nor follow a new symlink.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return Ok(unreadable(path, e, progress)),
    };
    let mut chunks = Vec::new();
    let mut size = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0;
    let mut flush = |batch: &mut Vec<Vec<u8>>| -> Result<()> {
        let lens: Vec<u32> = batch.iter().map(|c| c.len() as u32).collect();
        let ids: Vec<ChunkId> = std::mem::take(batch)
            .into_par_iter()
            .map(|data| writer.store(data, false))
            .collect::<Result<_>>()?;
        chunks.extend(ids.into_iter().zip(lens));
        Ok(())
    };
    for chunk in chunker.chunks(file) {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Ok(unreadable(path, e, progress)),
        };
        size += chunk.len() as u64;
        batch_bytes += chunk.len();
        progress.advance(chunk.len() as u64);
        batch.push(chunk);
        if batch_bytes >= BATCH_BYTES {
            flush(&mut batch)?;
            batch_bytes = 0;
        }
    }
    flush(&mut batch)?;
    Ok(FileResult::Stored { chunks, size })
}

fn unreadable(path: &Path, e: std::io::Error, progress: &dyn Progress) -> FileResult {
    progress.warn(&format!("skipping {}: {e}", path.display()));
    FileResult::Unreadable(e.to_string())
}
