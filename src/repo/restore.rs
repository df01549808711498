//! Restore: bring a snapshot back, byte for byte, into an empty folder.
//!
//! Trees are read and checked first (every name is one safe component, see
//! `snapshot::tree`), folders are created as they are met, then files are
//! written in parallel. Within a file, chunks that sit next to each other in
//! the same pack are fetched with one ranged read. When packs live on an
//! object store, where every read is a network round trip, a restore also
//! keeps 32 reads in flight (`Repository::io_pool`), reads each level of folders in
//! parallel, and fetches small files whose records lie near each other in
//! one pack with one read for the batch. Every chunk is checked
//! against its id before it is written (invariant 6). Symlinks are made
//! last and folders get their modes and times last, deepest first, so
//! nothing is ever written through a link (invariant 7): files are created
//! with `O_EXCL | O_NOFOLLOW` inside folders this restore just made.

use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::id::ChunkId;
use crate::index::Location;
use crate::repo::{in_pool, Progress, Repository};
use crate::snapshot::{Entry, EntryKind, SnapshotId, Tree};
use crate::store::pack::RECORD_HEADER;

/// Largest single ranged read when coalescing neighbouring chunks.
const MAX_READ: u64 = 16 << 20;

/// What a restore did.
#[derive(Clone, Debug, Default)]
pub struct RestoreOutcome {
    /// Files written completely.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Folders created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Files that could not be restored, each with the reason.
    pub failed: Vec<String>,
}

struct Plan {
    dirs: Vec<(PathBuf, Entry)>,
    files: Vec<(PathBuf, Entry)>,
    links: Vec<(PathBuf, Entry)>,
}

/// Two small files' records at most this far apart in a pack are fetched
/// in one read (the bytes between are read and dropped).
const MAX_GAP: u64 = 256 << 10;

/// A file to restore, with where its chunks are.
struct Located<'a> {
    path: &'a Path,
    entry: &'a Entry,
    ids: Vec<ChunkId>,
    locations: Vec<Location>,
    /// Its chunks grouped into runs, each fetched with one read.
    runs: Vec<Run>,
}

/// Chunks `start..end` of a file, whose records lie back to back in one
/// pack, to be written from `file_offset` on.
struct Run {
    start: usize,
    end: usize,
    file_offset: u64,
}

/// The pack offset just past `loc`'s record.
fn record_end(loc: &Location) -> u64 {
    loc.offset + RECORD_HEADER + u64::from(loc.stored_len)
}

impl Located<'_> {
    /// The pack offsets `run`'s records span.
    fn span(&self, run: &Run) -> (u64, u64) {
        let first = &self.locations[run.start];
        (first.offset, record_end(&self.locations[run.end - 1]))
    }
}

/// Creates a file to restore into: never an existing entry, never
/// through a link (invariant 7).
fn create_file(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at(path)
}

/// Gives a restored file its mode and times; returns its length.
fn finish_file(path: &Path, entry: &Entry) -> Result<u64> {
    fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)).at(path)?;
    set_times(path, entry, false)?;
    match entry.kind {
        EntryKind::File { size, .. } => Ok(size),
        _ => Ok(0),
    }
}

/// Writes `run` of `f` into `file` from `bytes`, which hold the pack from
/// offset `base` on; each record is checked against its id first.
fn write_run(
    file: &fs::File,
    f: &Located<'_>,
    run: &Run,
    base: u64,
    bytes: &[u8],
    progress: &dyn Progress,
) -> Result<()> {
    let mut offset = run.file_offset;
    for k in run.start..run.end {
        let loc = &f.locations[k];
        let start = (loc.offset - base + RECORD_HEADER) as usize;
        let stored = &bytes[start..start + loc.stored_len as usize];
        let raw = crate::repo::open_record(&f.ids[k], loc, stored)?;
        file.write_all_at(&raw, offset).at(f.path)?;
        offset += raw.len() as u64;
        progress.advance(raw.len() as u64);
    }
    Ok(())
}

fn set_times(path: &Path, e: &Entry, link: bool) -> Result<()> {
    let t = FileTime::from_unix_time(e.mtime_s, e.mtime_ns);
    if link {
        filetime::set_symlink_file_times(path, t, t).at(path)
    } else {
        filetime::set_file_times(path, t, t).at(path)
    }
}

impl Repository {
    /// Reads and decodes a tree object.
    pub fn read_tree(&self, id: &ChunkId) -> Result<Tree> {
        Tree::decode(&self.read_object(id)?, &id.to_hex())
    }

    /// Restores `snapshot` into `dest`, which must be absent or empty.
    /// Files that fail (a damaged chunk, say) are listed in the outcome's
    /// `failed`; the rest are restored.
    pub fn restore(
        &self,
        snapshot: &SnapshotId,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        let record = self.resolve_snapshot(&snapshot.to_hex())?.1;
        match fs::read_dir(dest) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::DestinationNotEmpty(dest.to_path_buf()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dest).at(dest)?
            }
            Err(e) => return Err(Error::io(dest, e)),
        }
        let pool = self.io_pool();
        let mut plan = Plan {
            dirs: Vec::new(),
            files: Vec::new(),
            links: Vec::new(),
        };
        in_pool(pool.as_ref(), || self.plan(&record.tree, dest, &mut plan))?;
        progress.set_total(
            plan.files
                .iter()
                .map(|(_, e)| match e.kind {
                    EntryKind::File { size, .. } => size,
                    _ => 0,
                })
                .sum(),
        );

        let results: Vec<(PathBuf, Result<u64>)> = in_pool(pool.as_ref(), || {
            if pool.is_some() {
                self.restore_remote(&plan.files, progress)
            } else {
                plan.files
                    .par_iter()
                    .map(|(path, entry)| (path.clone(), self.restore_file(path, entry, progress)))
                    .collect()
            }
        });
        let mut outcome = RestoreOutcome {
            dirs: plan.dirs.len() as u64,
            ..Default::default()
        };
        for (path, r) in results {
            match r {
                Ok(n) => {
                    outcome.files += 1;
                    outcome.bytes += n;
                }
                Err(e) => {
                    let message = format!("{}: {e}", path.display());
                    progress.warn(&message);
                    outcome.failed.push(message);
                }
            }
        }
        for (path, entry) in &plan.links {
            let EntryKind::Symlink { target } = &entry.kind else {
                unreachable!()
            };
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).at(path)?;
            set_times(path, entry, true)?;
            outcome.symlinks += 1;
        }
        // Deepest first, so setting a folder's time is not undone by
        // creating something inside it.
        for (path, entry) in plan.dirs.iter().rev() {
            fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)).at(path)?;
            set_times(path, entry, false)?;
        }
        Ok(outcome)
    }

    /// Walks tree `id` under `dir`, creating folders and listing the rest.
    /// One level of folders at a time, whose trees are read in parallel
    /// (from an object store each read is a round trip). Parents come
    /// before their children in `plan.dirs`.
    fn plan(&self, root: &ChunkId, dest: &Path, plan: &mut Plan) -> Result<()> {
        let mut level = vec![(*root, dest.to_path_buf())];
        while !level.is_empty() {
            let trees = level
                .par_iter()
                .map(|(id, _)| self.read_tree(id))
                .collect::<Result<Vec<Tree>>>()?;
            let mut next = Vec::new();
            for ((_, dir), tree) in level.iter().zip(trees) {
                for entry in tree.entries {
                    // Names were checked when the tree was decoded; a path
                    // built from them can only be a direct child of `dir`.
                    let path = dir.join(std::ffi::OsStr::from_bytes(&entry.name));
                    match &entry.kind {
                        EntryKind::Dir { tree } => {
                            let tree = *tree;
                            // `create_dir`, not `create_dir_all`: an existing
                            // entry of this name (a link, say) is an error,
                            // never followed.
                            fs::create_dir(&path).at(&path)?;
                            plan.dirs.push((path.clone(), entry));
                            next.push((tree, path));
                        }
                        EntryKind::File { .. } => plan.files.push((path, entry)),
                        EntryKind::Symlink { .. } => plan.links.push((path, entry)),
                    }
                }
            }
            level = next;
        }
        Ok(())
    }

    /// Looks up where `entry`'s chunks are and groups them into runs; an
    /// error names the first chunk the index does not have.
    fn locate<'a>(&self, path: &'a Path, entry: &'a Entry) -> Result<Located<'a>> {
        let EntryKind::File { chunks, .. } = &entry.kind else {
            unreachable!()
        };
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        let locations = ids
            .iter()
            .zip(self.index.chunks(&ids)?)
            .map(|(id, loc)| loc.ok_or(Error::MissingChunk(*id)))
            .collect::<Result<Vec<Location>>>()?;
        let mut runs = Vec::new();
        let (mut start, mut file_offset) = (0, 0u64);
        while start < ids.len() {
            let first = locations[start];
            let mut end = start + 1;
            while end < ids.len() {
                let next = locations[end];
                let joined = record_end(&locations[end - 1]);
                if next.pack != first.pack
                    || next.offset != joined
                    || joined - first.offset >= MAX_READ
                {
                    break;
                }
                end += 1;
            }
            runs.push(Run {
                start,
                end,
                file_offset,
            });
            file_offset += chunks[start..end]
                .iter()
                .map(|c| u64::from(c.1))
                .sum::<u64>();
            start = end;
        }
        Ok(Located {
            path,
            entry,
            ids,
            locations,
            runs,
        })
    }

    /// Writes one file; returns its length.
    fn restore_file(&self, path: &Path, entry: &Entry, progress: &dyn Progress) -> Result<u64> {
        self.restore_located(&self.locate(path, entry)?, progress)
    }

    /// Writes one located file, its runs fetched in parallel (a large
    /// file is fetched, decompressed, checked and written on every core).
    fn restore_located(&self, f: &Located<'_>, progress: &dyn Progress) -> Result<u64> {
        let file = create_file(f.path)?;
        f.runs.par_iter().try_for_each(|run| -> Result<()> {
            let (start, end) = f.span(run);
            let pack = f.locations[run.start].pack;
            let bytes = self.pack_shard(&pack)?.backend.get_range(
                &pack.key(),
                start,
                (end - start) as usize,
            )?;
            write_run(&file, f, run, start, &bytes, progress)
        })?;
        drop(file);
        finish_file(f.path, f.entry)
    }

    /// From an object store, where each read is a round trip: small files
    /// (one run) whose records lie near each other in one pack are fetched
    /// together, one read for many files; the rest one by one.
    fn restore_remote(
        &self,
        files: &[(PathBuf, Entry)],
        progress: &dyn Progress,
    ) -> Vec<(PathBuf, Result<u64>)> {
        let located: Vec<Result<Located<'_>>> = files
            .par_iter()
            .map(|(path, entry)| self.locate(path, entry))
            .collect();
        let mut out = Vec::new();
        let (mut small, mut rest) = (Vec::new(), Vec::new());
        for ((path, _), f) in files.iter().zip(located) {
            match f {
                Err(e) => out.push((path.clone(), Err(e))),
                Ok(f) if f.runs.len() == 1 => small.push(f),
                Ok(f) => rest.push(f),
            }
        }
        small.sort_by_key(|f| (f.locations[0].pack, f.locations[0].offset));
        let mut batches: Vec<Vec<Located<'_>>> = Vec::new();
        for f in small {
            let (start, end) = f.span(&f.runs[0]);
            let joins = batches.last().is_some_and(|b| {
                let batch_start = b[0].span(&b[0].runs[0]).0;
                let last = &b[b.len() - 1];
                let last_end = last.span(&last.runs[0]).1;
                b[0].locations[0].pack == f.locations[0].pack
                    && start >= last_end
                    && start - last_end <= MAX_GAP
                    && end - batch_start <= MAX_READ
            });
            match batches.last_mut() {
                Some(batch) if joins => batch.push(f),
                _ => batches.push(vec![f]),
            }
        }
        out.par_extend(
            batches
                .par_iter()
                .flat_map_iter(|batch| self.restore_batch(batch, progress)),
        );
        out.par_extend(
            rest.par_iter()
                .map(|f| (f.path.to_path_buf(), self.restore_located(f, progress))),
        );
        out
    }

    /// Restores a batch of one-run files from one ranged read.
    fn restore_batch(
        &self,
        batch: &[Located<'_>],
        progress: &dyn Progress,
    ) -> Vec<(PathBuf, Result<u64>)> {
        let start = batch[0].span(&batch[0].runs[0]).0;
        let last = &batch[batch.len() - 1];
        let end = last.span(&last.runs[0]).1;
        let pack = batch[0].locations[0].pack;
        let bytes = self.pack_shard(&pack).and_then(|shard| {
            shard
                .backend
                .get_range(&pack.key(), start, (end - start) as usize)
        });
        batch
            .iter()
            .map(|f| {
                let result = match &bytes {
                    Ok(bytes) => create_file(f.path).and_then(|file| {
                        write_run(&file, f, &f.runs[0], start, bytes, progress)?;
                        drop(file);
                        finish_file(f.path, f.entry)
                    }),
                    // Each file on its own then, and with its own error.
                    Err(_) => self.restore_located(f, progress),
                };
                (f.path.to_path_buf(), result)
            })
            .collect()
    }
}
