//! Phase 2 of an ingest: each walked file's chunk list, from the file
//! cache when the file is unchanged, else by reading it. A small file is
//! read whole and cut in memory; a large one is cut as a stream while the
//! previous batch of its chunks is hashed, looked up and compressed on the
//! pool, so one large file still uses every core and memory stays bounded
//! (about two 8 MiB batches per file in flight).

use std::fs;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rayon::prelude::*;

use super::scan::FileJob;
use super::{ChunkList, IngestOptions};
use crate::error::Result;
use crate::filecache::{self, FileCache, FileStamp};
use crate::id::ChunkId;
use crate::index::LOOKUP_BATCH;
use crate::repo::writer::ObjectWriter;
use crate::repo::{Progress, Repository};
use crate::store::record::ObjectKind;

/// Bytes of chunks gathered before hashing and storing them in parallel.
const BATCH_BYTES: usize = 8 << 20;
/// Files up to this size are read whole and cut in memory.
const SMALL_FILE: u64 = 1 << 20;

/// What reading one file produced.
pub(super) enum FileResult {
    /// Read (or, with `reused`, taken from the file cache).
    Stored {
        chunks: ChunkList,
        size: u64,
        reused: bool,
        /// The size read differs from the size the walk saw.
        changed: bool,
    },
    Unreadable(String),
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
        Err(e) => return Ok(unreadable(path, &e, progress)),
    };
    // The same open file, asked again once it is read: a change during
    // the read that keeps the size shows in its times.
    let after = |file: &fs::File| file.metadata().ok().map(|m| FileStamp::of(&m));
    // Small files (most of a typical tree) are read whole and cut in
    // memory: no streaming buffer to fill, no batches to pipeline.
    let mut file = file;
    if job.stamp.size <= SMALL_FILE {
        let mut data = Vec::with_capacity(job.stamp.size as usize);
        if let Err(e) = (&mut file).take(SMALL_FILE + 1).read_to_end(&mut data) {
            return Ok(unreadable(path, &e, progress));
        }
        if data.len() as u64 <= SMALL_FILE {
            let mut chunks = Vec::new();
            let mut at = 0;
            for len in chunker.cut_slice(&data) {
                chunks.push((
                    writer.store(&data[at..at + len], ObjectKind::Data)?,
                    len as u32,
                ));
                at += len;
            }
            progress.advance(data.len() as u64);
            return Ok(stored(job, chunks, after(&file), progress));
        }
        // It grew past the small-file size while being read: stream it.
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Ok(unreadable(path, &e, progress));
        }
    }
    let mut cutter = chunker.chunks(&file);
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
    let store_batch = |batch: Vec<Vec<u8>>| -> Result<ChunkList> {
        batch
            .into_par_iter()
            .map(|data| {
                let len = data.len() as u32;
                progress.advance(u64::from(len));
                Ok((writer.store(&data, ObjectKind::Data)?, len))
            })
            .collect()
    };
    let mut chunks = Vec::new();
    let mut batch = match next_batch() {
        Ok(b) => b,
        Err(e) => return Ok(unreadable(path, &e, progress)),
    };
    while !batch.is_empty() {
        let (stored, next) = rayon::join(|| store_batch(batch), &mut next_batch);
        chunks.extend(stored?);
        batch = match next {
            Ok(b) => b,
            Err(e) => return Ok(unreadable(path, &e, progress)),
        };
    }
    Ok(stored(job, chunks, after(&file), progress))
}

/// The result for a file read completely; warns when it changed since the
/// walk: its size, or (`after`, its stamp once read) its times.
fn stored(
    job: &FileJob,
    chunks: ChunkList,
    after: Option<FileStamp>,
    progress: &dyn Progress,
) -> FileResult {
    let path = &job.path;
    let size: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
    let changed = size != job.stamp.size || after.is_some_and(|a| a != job.stamp);
    if size != job.stamp.size {
        progress.warn(&format!(
            "{} changed while being read ({} bytes expected, {size} read); stored as read",
            path.display(),
            job.stamp.size
        ));
    } else if changed {
        progress.warn(&format!(
            "{} was modified while being read; stored as read, which may mix old and new content",
            path.display()
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
    /// Phase 2: every walked file's chunk list, from the file cache when
    /// the file is unchanged, else by reading it (in parallel).
    pub(super) fn read_files(
        &self,
        writer: &ObjectWriter<'_>,
        files: &[FileJob],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileResult>> {
        let cached = match (opts.file_cache, &self.file_cache) {
            (true, Some(cache)) => self.cached_chunk_lists(cache, files)?,
            _ => vec![None; files.len()],
        };
        let chunker = self.config.chunker;
        files
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
                None => store_file(writer, chunker, job, progress),
            })
            .collect()
    }

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
        for batch in ids.chunks(LOOKUP_BATCH) {
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

/// The file-cache entries of the files read (not taken from the cache,
/// not changed while being read) by this ingest, which `started` then.
/// A file modified in the last [`RACY_SECONDS`] before that is left out:
/// on a file system with coarse timestamps a write later in the same tick
/// would leave its stamp unchanged, and the cache would vouch for content
/// it never saw.
pub(super) fn fresh_cache_entries(
    files: &[FileJob],
    results: &[FileResult],
    started: std::time::SystemTime,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let settled = started
        .checked_sub(std::time::Duration::from_secs(RACY_SECONDS))
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    files
        .iter()
        .zip(results)
        .filter(|(job, _)| job.stamp.mtime.0 < settled)
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
        .collect()
}

/// See [`fresh_cache_entries`].
const RACY_SECONDS: u64 = 2;

fn unreadable(path: &Path, e: &std::io::Error, progress: &dyn Progress) -> FileResult {
    progress.warn(&format!("skipping {}: {e}", path.display()));
    FileResult::Unreadable(e.to_string())
}
