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

/// How a restore's files are read: batches of small files fetched with one
/// read each, and files read on their own.
struct ReadPlan<'a> {
    batches: Vec<Vec<SmallFile<'a>>>,
    singles: Vec<&'a (PathBuf, Entry)>,
}

/// A file whose chunks lie back to back in one pack.
struct SmallFile<'a> {
    path: &'a Path,
    entry: &'a Entry,
    ids: Vec<ChunkId>,
    locations: Vec<Location>,
}

impl SmallFile<'_> {
    /// The pack offset just past its last record.
    fn end(&self) -> u64 {
        let last = self.locations[self.locations.len() - 1];
        last.offset + RECORD_HEADER + u64::from(last.stored_len)
    }
}

/// How many runs of back-to-back records in one pack `locs` make.
fn runs_of(locs: &[Location]) -> usize {
    1 + locs
        .windows(2)
        .filter(|w| {
            let end = w[0].offset + RECORD_HEADER + u64::from(w[0].stored_len);
            w[1].pack != w[0].pack || w[1].offset != end
        })
        .count()
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

/// Gives a restored file its mode and times.
fn finish_file(path: &Path, entry: &Entry) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)).at(path)?;
    set_times(path, entry, false)
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
        let remote = pool.is_some();
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

        // From an object store, small files whose records lie near each
        // other in one pack are fetched together: one request for many
        // files instead of one each.
        let ReadPlan { batches, singles } = if remote {
            self.batch_small_files(&plan.files)?
        } else {
            ReadPlan {
                batches: Vec::new(),
                singles: plan.files.iter().collect(),
            }
        };
        let results: Vec<(PathBuf, Result<u64>)> = in_pool(pool.as_ref(), || {
            let mut out: Vec<_> = batches
                .par_iter()
                .flat_map_iter(|batch| self.restore_batch(batch, progress))
                .collect();
            out.par_extend(
                singles
                    .par_iter()
                    .map(|(path, entry)| (path.clone(), self.restore_file(path, entry, progress))),
            );
            out
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

    /// Splits `files` into batches of one-run files whose records lie close
    /// together in one pack (each batch is one ranged read) and the files
    /// restored one by one.
    fn batch_small_files<'a>(&self, files: &'a [(PathBuf, Entry)]) -> Result<ReadPlan<'a>> {
        let mut small = Vec::new();
        let mut singles = Vec::new();
        for file in files {
            let EntryKind::File { chunks, .. } = &file.1.kind else {
                unreachable!()
            };
            let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
            let locations = self.index.chunks(&ids)?;
            let runs = match locations.iter().copied().collect::<Option<Vec<Location>>>() {
                Some(locs) if !locs.is_empty() => runs_of(&locs),
                _ => 0, // empty, or a chunk is missing: the single path reports it
            };
            if runs == 1 {
                let locations: Vec<Location> = locations.into_iter().flatten().collect();
                small.push(SmallFile {
                    path: &file.0,
                    entry: &file.1,
                    ids,
                    locations,
                });
            } else {
                singles.push(file);
            }
        }
        small.sort_by_key(|f| (f.locations[0].pack, f.locations[0].offset));
        let mut batches: Vec<Vec<SmallFile<'a>>> = Vec::new();
        for file in small {
            let start = file.locations[0].offset;
            let joins = batches.last().is_some_and(|b: &Vec<SmallFile>| {
                let (first, last) = (&b[0], &b[b.len() - 1]);
                first.locations[0].pack == file.locations[0].pack
                    && start >= last.end()
                    && start - last.end() <= MAX_GAP
                    && file.end() - first.locations[0].offset <= MAX_READ
            });
            if joins {
                batches.last_mut().expect("checked").push(file);
            } else {
                batches.push(vec![file]);
            }
        }
        Ok(ReadPlan { batches, singles })
    }

    /// Restores a batch of small files from one ranged read.
    fn restore_batch(
        &self,
        batch: &[SmallFile<'_>],
        progress: &dyn Progress,
    ) -> Vec<(PathBuf, Result<u64>)> {
        let first = batch[0].locations[0];
        let span = batch[batch.len() - 1].end() - first.offset;
        let bytes = self.pack_shard(&first.pack).and_then(|shard| {
            shard
                .backend
                .get_range(&first.pack.key(), first.offset, span as usize)
        });
        batch
            .iter()
            .map(|f| {
                let result = match &bytes {
                    Ok(bytes) => self.write_small_file(f, first.offset, bytes, progress),
                    // Each file on its own then, and with its own error.
                    Err(_) => self.restore_file(f.path, f.entry, progress),
                };
                (f.path.to_path_buf(), result)
            })
            .collect()
    }

    /// Writes one file of a batch from the batch's bytes (which start at
    /// pack offset `base`).
    fn write_small_file(
        &self,
        f: &SmallFile<'_>,
        base: u64,
        bytes: &[u8],
        progress: &dyn Progress,
    ) -> Result<u64> {
        let file = create_file(f.path)?;
        let mut offset = 0;
        for (id, loc) in f.ids.iter().zip(&f.locations) {
            let start = (loc.offset - base + RECORD_HEADER) as usize;
            let stored = &bytes[start..start + loc.stored_len as usize];
            let raw = crate::repo::open_record(id, loc, stored)?;
            file.write_all_at(&raw, offset).at(f.path)?;
            offset += raw.len() as u64;
            progress.advance(raw.len() as u64);
        }
        drop(file);
        finish_file(f.path, f.entry)?;
        Ok(offset)
    }

    /// Writes one file; returns its length.
    fn restore_file(&self, path: &Path, entry: &Entry, progress: &dyn Progress) -> Result<u64> {
        let EntryKind::File { size, chunks } = &entry.kind else {
            unreachable!()
        };
        let file = create_file(path)?;
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        let locations = self.index.chunks(&ids)?;
        // Runs of chunks whose records lie back to back in one pack, each
        // fetched with one read: (first chunk, end chunk, file offset).
        let mut runs = Vec::new();
        let (mut i, mut file_offset) = (0, 0u64);
        while i < ids.len() {
            let first = locations[i].ok_or(Error::MissingChunk(ids[i]))?;
            let mut j = i + 1;
            let mut end = first.offset + RECORD_HEADER + u64::from(first.stored_len);
            while j < ids.len() {
                match locations[j] {
                    Some(l)
                        if l.pack == first.pack
                            && l.offset == end
                            && end - first.offset < MAX_READ =>
                    {
                        end = l.offset + RECORD_HEADER + u64::from(l.stored_len);
                        j += 1;
                    }
                    _ => break,
                }
            }
            runs.push((i, j, file_offset));
            file_offset += chunks[i..j].iter().map(|c| u64::from(c.1)).sum::<u64>();
            i = j;
        }
        // Runs are independent: a large file is fetched, decompressed,
        // checked and written (at its offset) on every core.
        runs.par_iter()
            .try_for_each(|&(i, j, mut offset)| -> Result<()> {
                let first = locations[i].expect("checked when building the run");
                let last = locations[j - 1].expect("checked when building the run");
                let end = last.offset + RECORD_HEADER + u64::from(last.stored_len);
                let shard = self.pack_shard(&first.pack)?;
                let bytes = shard.backend.get_range(
                    &first.pack.key(),
                    first.offset,
                    (end - first.offset) as usize,
                )?;
                for k in i..j {
                    let loc: Location = locations[k].expect("checked when building the run");
                    let start = (loc.offset - first.offset + RECORD_HEADER) as usize;
                    let stored = &bytes[start..start + loc.stored_len as usize];
                    let raw = crate::repo::open_record(&ids[k], &loc, stored)?;
                    file.write_all_at(&raw, offset).at(path)?;
                    offset += raw.len() as u64;
                    progress.advance(raw.len() as u64);
                }
                Ok(())
            })?;
        drop(file);
        finish_file(path, entry)?;
        Ok(*size)
    }
}
