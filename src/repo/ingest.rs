//! Ingest: walk directory trees, store their files and listings, record a
//! snapshot.
//!
//! Three phases. (1) Walk: read directory listings and metadata, sorted by
//! name, without following symlinks; entries that cannot be stored (sockets,
//! FIFOs, devices, unreadable folders) are skipped with a warning. (2) Files
//! in parallel (rayon): a file unchanged since the last ingest takes its
//! chunk list from the file cache (see `filecache`); a small one is read
//! whole and cut in memory; a large one is cut as a stream while the
//! previous batch of its chunks is hashed, looked up and compressed on the
//! pool, so one large file still uses every core and memory stays bounded
//! (about two 8 MiB batches per file in flight). (3) Trees
//! bottom-up, then the snapshot record, written only after every pack is
//! committed (invariant 3). Output is deterministic: the same tree always
//! gives the same root tree id.

use std::fs::{self, File, Metadata};
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::filecache::{self, FileCache, FileStamp};
use crate::id::ChunkId;
use crate::repo::writer::ObjectWriter;
use crate::repo::{Progress, Repository};
use crate::snapshot::record::RECORD_VERSION;
use crate::snapshot::{Entry, EntryKind, IngestSummary, Skipped, SnapshotId, SnapshotRecord, Tree};

/// A file's chunks in order: `(id, length)`.
type ChunkList = Vec<(ChunkId, u32)>;

/// Bytes of chunks gathered before hashing and storing them in parallel.
const BATCH_BYTES: usize = 8 << 20;
/// Files up to this size are read whole and cut in memory.
const SMALL_FILE: u64 = 1 << 20;

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
    /// Read (or, with `reused`, taken from the file cache).
    Stored {
        chunks: Vec<(ChunkId, u32)>,
        size: u64,
        reused: bool,
        /// The size read differs from the size the walk saw.
        changed: bool,
    },
    Unreadable(String),
}

/// A regular file found by the walk.
struct FileJob {
    path: PathBuf,
    stamp: FileStamp,
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

struct Walk<'p> {
    files: Vec<FileJob>,
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
            self.files.push(FileJob {
                path: path.to_path_buf(),
                stamp: FileStamp::of(&meta),
            });
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
        self.ingest_with(paths, &IngestOptions::default(), progress)
    }

    /// [`ingest`](Self::ingest) with options.
    pub fn ingest_with(
        &self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestOutcome> {
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
        for given in paths {
            // Walk by absolute path: it is also the file cache's key.
            let path = &std::path::absolute(given).at(given)?;
            let meta = fs::symlink_metadata(path).at(given)?;
            if meta.is_dir() {
                fs::read_dir(path).at(given)?;
            } else if meta.is_file() {
                File::open(path).at(given)?;
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
        if roots.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            if let Some((name, _)) = roots.iter().find(|(name, _)| !seen.insert(name.clone())) {
                return Err(Error::invalid(
                    "ingest paths",
                    format!(
                        "two paths share the name {:?}",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
        }

        let total: u64 = walk.files.iter().map(|f| f.stamp.size).sum();
        progress.set_total(total);
        let cached = if let (true, Some(cache)) = (opts.file_cache, &self.file_cache) {
            self.cached_chunk_lists(cache, &walk.files)?
        } else {
            vec![None; walk.files.len()]
        };
        let writer = ObjectWriter::new(self);
        let chunker = self.config.chunker;
        let results: Vec<FileResult> = walk
            .files
            .par_iter()
            .zip(cached)
            .map(|(job, cached)| match cached {
                Some(chunks) => {
                    progress.advance(job.stamp.size);
                    Ok(FileResult::Stored {
                        chunks,
                        size: job.stamp.size,
                        reused: true,
                        changed: false,
                    })
                }
                None => store_file(&writer, chunker, job, progress),
            })
            .collect::<Result<_>>()?;
        // Files read this time become the cache for the next ingest. Only
        // after `writer.finish` are their chunks indexed, so this waits.
        let fresh_cache: Vec<(Vec<u8>, Vec<u8>)> = walk
            .files
            .iter()
            .zip(&results)
            .filter_map(|(job, r)| match r {
                FileResult::Stored {
                    chunks,
                    reused: false,
                    changed: false,
                    ..
                } => Some((
                    job.path.as_os_str().as_bytes().to_vec(),
                    filecache::encode(&job.stamp, chunks),
                )),
                _ => None,
            })
            .collect();

        let mut summary = IngestSummary::default();
        let mut results = results.into_iter();
        // One folder is the snapshot's root; anything else sits under its name.
        let children = match roots.as_slice() {
            [(_, Some(Node::Dir { .. }))] => match roots.pop() {
                Some((_, Some(Node::Dir { children, .. }))) => {
                    summary.dirs += 1;
                    children
                }
                _ => unreachable!("matched just above"),
            },
            _ => roots
                .into_iter()
                .filter_map(|(name, node)| Some((name, node?)))
                .collect(),
        };
        let root_tree = self.store_tree(
            &writer,
            children,
            &mut results,
            &mut walk.skipped,
            &mut summary,
        )?;
        let stats = writer.finish()?;
        if let Some(cache) = &self.file_cache {
            cache.put_many(&fresh_cache)?;
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
        writer.store(&tree.encode(), true)
    }
}

/// Reads one file through the chunker and stores its chunks. I/O errors on
/// the file are not fatal (the file is skipped); repository errors are.
///
/// Cutting is sequential, but while one batch of chunks is hashed, looked up
/// and compressed on the pool, the next batch is read and cut.
fn store_file(
    writer: &ObjectWriter<'_>,
    chunker: crate::chunker::ChunkerConfig,
    job: &FileJob,
    progress: &dyn Progress,
) -> Result<FileResult> {
    let path = &job.path;
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
    // Small files (most of a typical tree) are read whole and cut in
    // memory: no streaming buffer to fill, no batches to pipeline.
    let mut file = file;
    if job.stamp.size <= SMALL_FILE {
        let mut data = Vec::with_capacity(job.stamp.size as usize);
        if let Err(e) = (&mut file).take(SMALL_FILE + 1).read_to_end(&mut data) {
            return Ok(unreadable(path, e, progress));
        }
        if data.len() as u64 <= SMALL_FILE {
            let mut chunks = Vec::new();
            let mut at = 0;
            for len in chunker.cut_slice(&data) {
                chunks.push((writer.store(&data[at..at + len], false)?, len as u32));
                at += len;
            }
            progress.advance(data.len() as u64);
            return Ok(stored(job, chunks, progress));
        }
        // It grew past the small-file size while being read: stream it.
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Ok(unreadable(path, e, progress));
        }
    }
    let mut cutter = chunker.chunks(file);
    let mut next_batch = || -> std::io::Result<Vec<Vec<u8>>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            match cutter.next() {
                Some(chunk) => {
                    let chunk = chunk?;
                    bytes += chunk.len();
                    batch.push(chunk);
                }
                None => break,
            }
        }
        Ok(batch)
    };
    let store_batch = |batch: Vec<Vec<u8>>| -> Result<Vec<(ChunkId, u32)>> {
        batch
            .into_par_iter()
            .map(|data| {
                let len = data.len() as u32;
                progress.advance(u64::from(len));
                Ok((writer.store(&data, false)?, len))
            })
            .collect()
    };
    let mut chunks = Vec::new();
    let mut batch = match next_batch() {
        Ok(b) => b,
        Err(e) => return Ok(unreadable(path, e, progress)),
    };
    while !batch.is_empty() {
        let (stored, next) = rayon::join(|| store_batch(batch), &mut next_batch);
        chunks.extend(stored?);
        batch = match next {
            Ok(b) => b,
            Err(e) => return Ok(unreadable(path, e, progress)),
        };
    }
    Ok(stored(job, chunks, progress))
}

/// The result for a file read completely; warns when its size changed
/// since the walk.
fn stored(job: &FileJob, chunks: Vec<(ChunkId, u32)>, progress: &dyn Progress) -> FileResult {
    let path = &job.path;
    let size: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
    let changed = size != job.stamp.size;
    if changed {
        progress.warn(&format!(
            "{} changed while being read ({} bytes expected, {size} read); stored as read",
            path.display(),
            job.stamp.size
        ));
    }
    FileResult::Stored {
        chunks,
        size,
        reused: false,
        changed,
    }
}

impl Repository {
    /// For each file, its chunk list from the file cache when its stamp is
    /// unchanged and every chunk is still indexed.
    fn cached_chunk_lists(
        &self,
        cache: &FileCache,
        files: &[FileJob],
    ) -> Result<Vec<Option<ChunkList>>> {
        let keys: Vec<Vec<u8>> = files
            .iter()
            .map(|f| f.path.as_os_str().as_bytes().to_vec())
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for (job, value) in files.iter().zip(cache.get_many(&keys)) {
            // A damaged entry only costs a re-read.
            let hit = value
                .and_then(|v| filecache::decode(&v, &job.path.display().to_string()).ok())
                .filter(|(stamp, _)| *stamp == job.stamp)
                .map(|(_, chunks)| chunks);
            out.push(hit);
        }
        // gc may have dropped chunks since: check they are all still there.
        let ids: Vec<ChunkId> = out.iter().flatten().flatten().map(|c| c.0).collect();
        let mut missing = std::collections::HashSet::new();
        for batch in ids.chunks(4096) {
            for (id, loc) in batch.iter().zip(self.index.chunks(batch)?) {
                if loc.is_none() {
                    missing.insert(*id);
                }
            }
        }
        if !missing.is_empty() {
            for entry in &mut out {
                if entry
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|(id, _)| missing.contains(id)))
                {
                    *entry = None;
                }
            }
        }
        Ok(out)
    }
}

fn unreadable(path: &Path, e: std::io::Error, progress: &dyn Progress) -> FileResult {
    progress.warn(&format!("skipping {}: {e}", path.display()));
    FileResult::Unreadable(e.to_string())
}
