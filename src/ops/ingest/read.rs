//! Reading one file of an ingest into its chunk list. A small file is
//! read whole and cut in memory; a large one an 8 MiB window at a time, cut
//! on every core (`ChunkerConfig::cut_parallel`) and stored on every core
//! while the next window is read, so one large file uses every core and
//! memory stays bounded (two windows per file in flight).

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rayon::prelude::*;

use super::ChunkList;
use crate::catalog::LOOKUP_BATCH;
use crate::engine::writer::ObjectWriter;
use crate::engine::{Engine, Progress};
use crate::error::Result;
use crate::format::filecache::FileStamp;
use crate::format::record::ObjectKind;
use crate::id::ChunkId;

/// A regular file found by the walk.
pub(super) struct FileJob {
    /// Its path, as messages and the file cache name it.
    pub(super) path: std::path::PathBuf,
    /// Where it is opened, when not at `path`: below a deep folder's
    /// handle.
    pub(super) access: Option<std::path::PathBuf>,
    pub(super) stamp: FileStamp,
}

/// Bytes of a large file cut and stored at a time (two windows of each
/// large file being read are in memory at once).
const WINDOW: usize = 8 << 20;
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
/// A large file is cut a window at a time on every core, and its chunks
/// are stored while the next window is read.
pub(super) fn store_file(
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
        .open(job.access.as_deref().unwrap_or(path))
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
    // A sparse file (fewer blocks than its size needs) is read around its
    // holes: they are zeros, given without a read.
    let sparse = file
        .metadata()
        .is_ok_and(|m| m.blocks().saturating_mul(512) < m.len());
    let streamed = if sparse {
        let mut holes = Holes::new(&file);
        stream_chunks(writer, chunker, &mut holes, progress)?
    } else {
        stream_chunks(writer, chunker, &mut file, progress)?
    };
    match streamed {
        Ok(chunks) => Ok(stored(job, chunks, after(&file), progress)),
        Err(e) => Ok(unreadable(path, &e, progress)),
    }
}

/// Reads a file as `read` would, but gives the holes of a sparse file as
/// zeros without reading them (`SEEK_DATA` and `SEEK_HOLE`): a 20 GiB disk
/// image holding 1 GiB costs the reading of 1 GiB. Where the file system
/// cannot say, everything is data.
struct Holes<'f> {
    file: &'f fs::File,
    /// Where the next byte comes from.
    at: u64,
    /// Bytes from `at` known to be data (read them).
    data: u64,
    /// Bytes from `at` known to be a hole (zeros).
    hole: u64,
    /// The end of the file, once `SEEK_DATA` found no data after `at`.
    end: Option<u64>,
}

impl<'f> Holes<'f> {
    fn new(file: &'f fs::File) -> Self {
        Holes {
            file,
            at: 0,
            data: 0,
            hole: 0,
            end: None,
        }
    }

    /// Learns what lies at `at`: data up to the next hole, or a hole up to
    /// the next data (or the end of the file).
    fn look(&mut self) -> std::io::Result<()> {
        use rustix::fs::{seek, SeekFrom};
        let at = self.at;
        match seek(self.file, SeekFrom::Data(at)) {
            Ok(data) if data <= at => {
                let hole = seek(self.file, SeekFrom::Hole(at)).map_err(std::io::Error::from)?;
                // At least one byte, so that a file system that answers
                // oddly can never stop the read.
                self.data = hole.saturating_sub(at).max(1);
            }
            Ok(data) => self.hole = data - at,
            // No data after `at`: a hole to the end of the file, or the end.
            Err(rustix::io::Errno::NXIO) => {
                let end = self.file.metadata()?.len();
                self.end = Some(end);
                self.hole = end.saturating_sub(at);
            }
            // The file system keeps no map of holes: it is all data.
            Err(_) => self.data = u64::MAX,
        }
        Ok(())
    }
}

impl Read for Holes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.data == 0 && self.hole == 0 {
            if self.end.is_some_and(|end| self.at >= end) {
                return Ok(0);
            }
            self.look()?;
        }
        let n = if self.data > 0 {
            let want = buf
                .len()
                .min(usize::try_from(self.data).unwrap_or(usize::MAX));
            let n = self.file.read_at(&mut buf[..want], self.at)?;
            if n == 0 {
                // The file ended sooner than its map said (it shrank).
                self.data = 0;
                self.end = Some(self.at);
            } else {
                self.data -= n as u64;
            }
            n
        } else if self.hole > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.hole).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.hole -= n as u64;
            n
        } else {
            0
        };
        self.at += n as u64;
        Ok(n)
    }
}

/// Cuts and stores everything `input` holds, a window at a time: cut on
/// every core (the same cuts as the serial chunker), then its chunks
/// hashed, looked up and stored on every core while the next window is
/// read. The window's last chunk, which the bytes after it could still
/// change, is cut again with them. Memory: two windows. The outer error is
/// the repository's; the inner one, reading `input`'s.
pub(super) fn stream_chunks(
    writer: &ObjectWriter<'_>,
    chunker: crate::chunker::ChunkerConfig,
    input: &mut (dyn Read + Send),
    progress: &dyn Progress,
) -> Result<std::io::Result<ChunkList>> {
    let pieces = rayon::current_num_threads();
    let capacity = WINDOW + chunker.max_chunk() as usize;
    let mut chunks = Vec::new();
    let mut window = writer.window(capacity);
    let mut eof = match fill(input, &mut window) {
        Ok(eof) => eof,
        Err(e) => return Ok(Err(e)),
    };
    loop {
        let mut spans = Vec::new();
        let mut at = 0;
        for len in chunker.cut_parallel(&window, eof, pieces) {
            spans.push((at, len));
            at += len;
        }
        let mut next = writer.window(capacity);
        next.extend_from_slice(&window[at..]);
        let store = || -> Result<ChunkList> {
            spans
                .par_iter()
                .map(|&(at, len)| {
                    progress.advance(len as u64);
                    let id = writer.store(&window[at..at + len], ObjectKind::Data)?;
                    Ok((id, len as u32))
                })
                .collect()
        };
        let read_next = || {
            if eof {
                Ok(true)
            } else {
                fill(input, &mut next)
            }
        };
        let (stored, filled) = rayon::join(store, read_next);
        chunks.extend(stored?);
        writer.recycle_window(std::mem::replace(&mut window, next));
        if eof {
            writer.recycle_window(window);
            break;
        }
        eof = match filled {
            Ok(eof) => eof,
            Err(e) => return Ok(Err(e)),
        };
    }
    Ok(Ok(chunks))
}

/// Reads into `window` until it holds [`WINDOW`] bytes; true at the end of
/// the file.
fn fill(input: &mut (dyn Read + Send), window: &mut Vec<u8>) -> std::io::Result<bool> {
    let want = WINDOW.saturating_sub(window.len());
    let got = input.take(want as u64).read_to_end(window)?;
    Ok(got < want)
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

/// Forgets the cached chunk lists that name a chunk no longer indexed (a
/// gc may have dropped it since): those files are read again.
pub(super) fn drop_unindexed(repo: &Engine, lists: &mut [Option<ChunkList>]) -> Result<()> {
    let ids: Vec<ChunkId> = lists.iter().flatten().flatten().map(|c| c.0).collect();
    let mut missing = HashSet::new();
    for batch in ids.chunks(LOOKUP_BATCH) {
        for (id, loc) in batch.iter().zip(repo.index.chunks(batch)?) {
            if loc.is_none() {
                missing.insert(*id);
            }
        }
    }
    if !missing.is_empty() {
        for list in lists {
            if list
                .as_ref()
                .is_some_and(|c| c.iter().any(|(id, _)| missing.contains(id)))
            {
                *list = None;
            }
        }
    }
    Ok(())
}

/// Whether a file read by an ingest that started at `started_ns` may go
/// into the file cache. Not when it changed (its change time, which every
/// write and every change of its times moves, and which nothing can set
/// back) within a timestamp tick of the start: a write later in that same
/// tick would leave its stamp as it is, and the cache would vouch for
/// content it never saw. Times with nanoseconds come from a clock that
/// ticks every few milliseconds ([`RACY_FINE_NS`]); whole seconds may be
/// a file system that keeps only those, or FAT's two ([`RACY_COARSE_NS`]).
pub(super) fn settled(stamp: &FileStamp, started_ns: i128) -> bool {
    let ns = |(s, n): (i64, u32)| i128::from(s) * 1_000_000_000 + i128::from(n);
    let changed = ns(stamp.ctime).max(ns(stamp.mtime));
    let whole_seconds = stamp.mtime.1 == 0 && stamp.ctime.1 == 0;
    let window = if whole_seconds {
        RACY_COARSE_NS
    } else {
        RACY_FINE_NS
    };
    changed < started_ns - window
}

/// See [`settled`]: 25 ticks of a 250 Hz kernel clock.
const RACY_FINE_NS: i128 = 100_000_000;
/// See [`settled`].
const RACY_COARSE_NS: i128 = 2_000_000_000;

fn unreadable(path: &Path, e: &std::io::Error, progress: &dyn Progress) -> FileResult {
    progress.warn(&format!("skipping {}: {e}", path.display()));
    FileResult::Unreadable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime: (i64, u32), ctime: (i64, u32)) -> FileStamp {
        FileStamp {
            size: 1,
            mtime,
            ctime,
            ino: 1,
            dev: 1,
        }
    }

    #[test]
    fn only_files_changed_well_before_the_start_are_settled() {
        let start = 1_000 * 1_000_000_000_i128;
        // Nanosecond stamps: settled a tenth of a second before the start.
        assert!(settled(
            &stamp((999, 800_000_000), (999, 800_000_000)),
            start
        ));
        assert!(!settled(
            &stamp((999, 950_000_000), (999, 950_000_000)),
            start
        ));
        // An old modification time set after a recent write: the change
        // time says it is recent.
        assert!(!settled(&stamp((500, 1), (999, 990_000_000)), start));
        // Whole seconds: perhaps a file system that keeps only those, so
        // two seconds.
        assert!(settled(&stamp((997, 0), (997, 0)), start));
        assert!(!settled(&stamp((999, 0), (999, 0)), start));
        assert!(!settled(&stamp((998, 0), (998, 0)), start));
        // Before 1970 is long ago.
        assert!(settled(&stamp((-5, 3), (-5, 3)), start));
    }
}
