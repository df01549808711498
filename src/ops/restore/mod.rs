//! Restore: bring a snapshot back, byte for byte, into an empty folder.
//!
//! Trees are read and checked first, a level of folders at a time (every
//! name is one safe component, see `snapshot::tree`), then folders are
//! made a level at a time, each level on every core. Files are restored
//! planned by pack (`fetch.rs`): every record the files need, each once
//! however many files hold it, grouped by pack and read in few large
//! ranges, many at once (32 in flight when packs live on an object store,
//! where every read is a network round trip: `Repository::io_pool`). Each
//! record is checked against its id (invariant 6) and written to every
//! place that needs it, and a file is finished, its mode and times set
//! through its open handle, when its last chunk is written. Symlinks are
//! made last and folders get their modes and times last, deepest level
//! first, so nothing is ever written through a link (invariant 7): files
//! are created with `O_EXCL | O_NOFOLLOW` inside folders this restore
//! just made.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::catalog::summary::IndexReads;
use crate::catalog::Location;
use crate::engine::paths::{in_snapshot, Found};
use crate::engine::{in_pool, Engine, Progress};
use crate::error::{Error, IoContext, Result};
use crate::format::snapshot::{Entry, EntryKind, SnapshotId};
use crate::globs::PathGlobs;
use crate::id::ChunkId;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

mod posix;
use posix::{
    clear_the_way, create_file, finish_file, finish_path, make_folder, make_hardlinks, make_links,
    make_specials, prepare_destination, verify_written, Apply, Reach,
};

/// What a restore did: its `Display` is what people see, its `Serialize`
/// what `--json` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreOutcome {
    /// The snapshot restored from.
    pub snapshot: SnapshotId,
    /// Where to.
    pub destination: PathBuf,
    /// Files written completely.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Folders created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Further links to files restored (each set of hard links comes back
    /// as one inode).
    pub hardlinks: u64,
    /// FIFOs and device nodes made.
    pub specials: u64,
    /// What could not be set, one line for each kind (owners as a normal
    /// user, say), not one per entry.
    pub warnings: Vec<String>,
    /// Entries already in the destination and left as they were
    /// (`--overwrite never`, or `if-changed` and unchanged).
    pub kept: u64,
    /// Entries the include and exclude globs left out.
    pub left_out: u64,
    /// Files read back and found to hold what the snapshot holds
    /// (`--verify`).
    pub verified: u64,
    /// Whether files were read back ([`RestoreOptions::verify`]).
    #[serde(skip)]
    pub read_back: bool,
    /// Files that could not be restored (or read back as they should be),
    /// and folders whose listing could not be read (nothing below them is
    /// restored), each with the reason.
    pub failed: Vec<String>,
    /// Reads of the index families it made (none while the index lives
    /// in this machine's cache).
    pub index: IndexReads,
}

impl RestoreOutcome {
    /// A restore of `snapshot` into `destination` before it has done
    /// anything.
    fn nothing_yet(snapshot: SnapshotId, destination: &Path, read_back: bool) -> Self {
        RestoreOutcome {
            snapshot,
            destination: destination.to_path_buf(),
            files: 0,
            bytes: 0,
            dirs: 0,
            symlinks: 0,
            hardlinks: 0,
            specials: 0,
            warnings: Vec::new(),
            kept: 0,
            left_out: 0,
            verified: 0,
            read_back,
            failed: Vec::new(),
            index: IndexReads::default(),
        }
    }
}

impl std::fmt::Display for RestoreOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "restored snapshot {} into {}: {} files ({}), {} folders, {} symlinks",
            &self.snapshot.to_hex()[..16],
            self.destination.display(),
            self.files,
            crate::units::human_bytes(self.bytes),
            self.dirs,
            self.symlinks
        )?;
        if self.hardlinks + self.specials > 0 {
            writeln!(
                f,
                "  also {} hard links and {} FIFOs and devices",
                self.hardlinks, self.specials
            )?;
        }
        if self.kept > 0 {
            writeln!(f, "  kept as they were: {} entries", self.kept)?;
        }
        if self.left_out > 0 {
            writeln!(
                f,
                "  left out by --include/--exclude: {} entries",
                self.left_out
            )?;
        }
        if self.read_back {
            writeln!(f, "  read back and verified: {} files", self.verified)?;
        }
        if self.index.gets > 0 {
            writeln!(
                f,
                "  index: {} reads of its families ({})",
                self.index.gets,
                crate::units::human_bytes(self.index.bytes_fetched)
            )?;
        }
        Ok(())
    }
}

/// What to do with an entry already in the destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse a destination that is not empty (the default).
    #[default]
    Refuse,
    /// Leave every existing entry as it is.
    Never,
    /// Replace an existing file only when its size or modification time
    /// differ from the snapshot's (a symlink, when its target does).
    IfChanged,
    /// Replace every existing file and symlink.
    Always,
}

/// Options for [`Repository::restore_with`](crate::Repository::restore_with).
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Restore only entries matching these (with everything below a
    /// matching folder, and the folders on the way); empty: everything.
    pub include: PathGlobs,
    /// Leave out entries matching these, and everything below them.
    pub exclude: PathGlobs,
    /// Entries already in the destination.
    pub overwrite: Overwrite,
    /// Read every restored file back and check it against its chunk ids.
    pub verify: bool,
    /// Give entries their owners by number, not by the names recorded.
    pub numeric_owner: bool,
}

struct Plan {
    /// Folders by level of the tree (`levels[0]`: in the destination),
    /// each with whether it is restored whole (an include matched it or a
    /// folder above it).
    levels: Vec<Vec<(PathBuf, Entry, bool)>>,
    files: Vec<(PathBuf, Entry)>,
    links: Vec<(PathBuf, Entry)>,
    /// FIFOs and device nodes.
    specials: Vec<(PathBuf, Entry)>,
    /// Further links of a file in `files`: (path, the file's path).
    hardlinks: Vec<(PathBuf, PathBuf)>,
    /// The first path restored for each link key.
    linked: HashMap<u64, PathBuf>,
    left_out: u64,
    /// Folders whose tree could not be read, each with why: made, but
    /// nothing below them is restored.
    damaged: Vec<String>,
}

impl Plan {
    /// Files an entry that is not a folder under the list it is made from.
    fn place(&mut self, path: PathBuf, entry: Entry) {
        match entry.kind {
            EntryKind::File { .. } if entry.attrs.link != 0 => {
                if let Some(first) = self.linked.get(&entry.attrs.link) {
                    self.hardlinks.push((path, first.clone()));
                } else {
                    self.linked.insert(entry.attrs.link, path.clone());
                    self.files.push((path, entry));
                }
            }
            EntryKind::File { .. } => self.files.push((path, entry)),
            EntryKind::Symlink { .. } => self.links.push((path, entry)),
            EntryKind::Dir { .. } => unreachable!("folders are planned by level"),
            EntryKind::Fifo | EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } => {
                self.specials.push((path, entry));
            }
        }
    }
}

/// The work of [`Repository::restore`](crate::Repository::restore).
pub(crate) fn restore(
    engine: &Engine,
    snapshot: &SnapshotId,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    restore_path(engine, snapshot, "", dest, progress)
}

/// The work of [`Repository::restore_path`](crate::Repository::restore_path).
pub(crate) fn restore_path(
    engine: &Engine,
    snapshot: &SnapshotId,
    path: &str,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    restore_with(
        engine,
        snapshot,
        path,
        dest,
        &RestoreOptions::default(),
        progress,
    )
}

/// The work of [`Repository::restore_with`](crate::Repository::restore_with).
pub(crate) fn restore_with(
    engine: &Engine,
    snapshot: &SnapshotId,
    path: &str,
    dest: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let reads = engine.index.index_reads();
    let record = engine.snapshot(snapshot)?;
    let found = engine.lookup(snapshot, &record.tree, path)?;
    let at = in_snapshot(path)?;
    prepare_destination(dest, opts.overwrite)?;
    let apply = Apply::new(opts.numeric_owner)?;
    let pool = engine.io_pool();
    let mut plan = Plan {
        levels: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
        specials: Vec::new(),
        hardlinks: Vec::new(),
        linked: HashMap::new(),
        left_out: 0,
        damaged: Vec::new(),
    };
    match (found.tree(), found) {
        (Some(tree), _) => plan_into(engine, &tree, dest, &at, opts, &mut plan, &apply.reach)?,
        (None, Found::Entry(entry)) => {
            // Checked like every name when its tree was decoded.
            let path = dest.join(std::ffi::OsStr::from_bytes(&entry.name));
            if opts.exclude.matches(&at) || !(opts.include.is_empty() || opts.include.matches(&at))
            {
                plan.left_out += 1;
            } else {
                plan.place(path, entry);
            }
        }
        (None, Found::Root(_)) => unreachable!("the root is a folder"),
    }
    let mut outcome = RestoreOutcome::nothing_yet(*snapshot, dest, opts.verify);
    outcome.dirs = plan.levels.iter().map(Vec::len).sum::<usize>() as u64;
    outcome.left_out = plan.left_out;
    for message in std::mem::take(&mut plan.damaged) {
        progress.warn(&message);
        outcome.failed.push(message);
    }
    let mut files = std::mem::take(&mut plan.files);
    if opts.overwrite != Overwrite::Refuse {
        clear_the_way(&mut files, opts.overwrite, &apply.reach, &mut outcome)?;
    }
    progress.set_total(
        files
            .iter()
            .map(|(_, e)| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum(),
    );

    let results = in_pool(pool.as_ref(), || {
        restore_files(engine, &files, &apply, progress)
    });
    let mut written = Vec::with_capacity(results.len());
    for (path, r) in results {
        match r {
            Ok(n) => {
                outcome.files += 1;
                outcome.bytes += n;
                written.push(path);
            }
            Err(e) => {
                let message = format!("{}: {e}", path.display());
                progress.warn(&message);
                outcome.failed.push(message);
            }
        }
    }
    make_hardlinks(
        &plan.hardlinks,
        &written,
        opts.overwrite,
        &apply.reach,
        &mut outcome,
    )?;
    make_specials(&plan.specials, opts.overwrite, &apply, &mut outcome)?;
    make_links(&plan.links, opts.overwrite, &apply, &mut outcome)?;
    // Everything inside is made, so no folder's time changes again.
    // Deepest first, so that a folder whose mode takes away its own
    // search bit is not walked through afterwards; a level at a time,
    // each on every core.
    for level in plan.levels.iter().rev() {
        level
            .par_iter()
            .try_for_each(|(path, entry, _)| finish_path(path, entry, &apply))?;
    }
    // The root folder's own metadata, for a whole snapshot.
    if let (Some(root), true) = (record.root, at == Path::new("/")) {
        if let Some(entry) = engine.read_tree(&root)?.entries.first() {
            finish_path(dest, entry, &apply)?;
        }
    }
    if opts.verify {
        let (crypt, reach) = (engine.crypt(), &apply.reach);
        verify_written(crypt, reach, &files, &written, &mut outcome, progress);
    }
    outcome.warnings = apply.warnings();
    for w in &outcome.warnings {
        progress.warn(w);
    }
    outcome.index = engine.index.index_reads().since(reads);
    Ok(outcome)
}

/// Walks tree `root` (at `at` in the snapshot) under `dest`, listing
/// what to make (what the globs pass: a folder that no include
/// matches is made only when something below it is restored), then
/// makes its folders, a level at a time (each on every core).
fn plan_into(
    engine: &Engine,
    root: &ChunkId,
    dest: &Path,
    at: &Path,
    opts: &RestoreOptions,
    plan: &mut Plan,
    reach: &Reach,
) -> Result<()> {
    let everything = opts.include.is_empty();
    let start = (dest.to_path_buf(), at.to_path_buf(), 0, everything);
    engine.walk_paths(
        vec![(*root, start)],
        |(dir, here, depth, whole), id, tree| {
            let mut subdirs = Vec::new();
            let tree = match tree {
                Ok(tree) => tree,
                // An unreachable store is no damaged tree.
                Err(e @ Error::ObjectStore { .. }) => return Err(e),
                Err(e) => {
                    plan.damaged.push(format!(
                        "{}: folder (tree {id}) cannot be read, nothing in it is restored: {e}",
                        dir.display()
                    ));
                    return Ok(subdirs);
                }
            };
            for entry in tree.entries {
                // Names were checked when the tree was decoded; a path
                // built from them can only be a direct child of `dir`.
                let name = std::ffi::OsStr::from_bytes(&entry.name);
                let (path, inside) = (dir.join(name), here.join(name));
                if opts.exclude.matches(&inside) {
                    plan.left_out += 1;
                    continue;
                }
                let taken = *whole || opts.include.matches(&inside);
                match &entry.kind {
                    EntryKind::Dir { tree } => {
                        subdirs.push((*tree, (path.clone(), inside, depth + 1, taken)));
                        if plan.levels.len() <= *depth {
                            plan.levels.push(Vec::new());
                        }
                        plan.levels[*depth].push((path, entry, taken));
                    }
                    _ if !taken => plan.left_out += 1,
                    _ => plan.place(path, entry),
                }
            }
            Ok(subdirs)
        },
    )?;
    if !everything {
        // Folders no include took stay only on the way to something
        // restored.
        let mut needed: std::collections::HashSet<&Path> = std::collections::HashSet::new();
        let taken_dirs = plan.levels.iter().flatten().filter(|l| l.2).map(|l| &l.0);
        let placed = plan.files.iter().chain(&plan.links).chain(&plan.specials);
        let hardlinks = plan.hardlinks.iter().map(|h| &h.0);
        for path in placed.map(|f| &f.0).chain(hardlinks).chain(taken_dirs) {
            for up in path.ancestors().skip(1) {
                if up == dest || !needed.insert(up) {
                    break;
                }
            }
        }
        let needed: std::collections::HashSet<PathBuf> =
            needed.into_iter().map(Path::to_path_buf).collect();
        for level in &mut plan.levels {
            let before = level.len();
            level.retain(|(path, _, taken)| *taken || needed.contains(path));
            plan.left_out += (before - level.len()) as u64;
        }
        plan.levels.retain(|l| !l.is_empty());
    }
    for level in &plan.levels {
        level.par_iter().try_for_each(|(path, _, _)| {
            make_folder(path, opts.overwrite, reach)?;
            reach.made(path)
        })?;
    }
    Ok(())
}

/// Looks up where `entry`'s chunks are; an error names the first
/// chunk the index does not have.
fn locate<'a>(engine: &Engine, path: &'a Path, entry: &'a Entry) -> Result<Located<'a>> {
    let EntryKind::File { chunks, .. } = &entry.kind else {
        unreachable!()
    };
    let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
    let locations = ids
        .iter()
        .zip(engine.index.chunks(&ids)?)
        .map(|(id, loc)| loc.ok_or(Error::MissingChunk(*id)))
        .collect::<Result<Vec<Location>>>()?;
    Ok(Located {
        path,
        entry,
        locations,
    })
}

/// Restores `files`, planned by pack ([`restore_by_pack`]); a file
/// the index cannot place fails with the reason.
///
/// [`restore_by_pack`]: Self::restore_by_pack
fn restore_files(
    engine: &Engine,
    files: &[(PathBuf, Entry)],
    apply: &Apply,
    progress: &dyn Progress,
) -> Vec<(PathBuf, std::result::Result<u64, String>)> {
    let located: Vec<Result<Located<'_>>> = files
        .par_iter()
        .map(|(path, entry)| locate(engine, path, entry))
        .collect();
    let mut out = Vec::new();
    let mut found = Vec::with_capacity(files.len());
    for ((path, _), f) in files.iter().zip(located) {
        match f {
            Ok(f) => found.push(f),
            Err(e) => out.push((path.clone(), Err(e.to_string()))),
        }
    }
    out.extend(restore_by_pack(engine, &found, apply, progress));
    out
}

/// A file to restore, with where its chunks are.
struct Located<'a> {
    path: &'a Path,
    entry: &'a Entry,
    locations: Vec<Location>,
}

/// Where a record goes: file number `file` of the restore, at `offset`;
/// `last` when it is that file's last chunk (always written, so the file
/// gets its length; other chunks of zeros are left holes).
#[derive(Debug, Clone, Copy)]
struct Place {
    file: u32,
    offset: u64,
    last: bool,
}

/// Files a restore keeps open between their records (a file whose
/// records lie in many packs waits for each); past this, such a file is
/// opened again for each record, so a restore never runs out of file
/// handles.
const KEPT_OPEN: usize = 256;

/// A file being written as its records arrive, in pack order.
#[derive(Default)]
struct Writing {
    created: bool,
    /// The file, kept open while chunks remain (one of [`KEPT_OPEN`]).
    open: Option<Arc<fs::File>>,
    /// Chunks not yet written.
    remaining: usize,
    /// The first thing that went wrong with it.
    failed: Option<String>,
    /// Its length, once every chunk is written and it is finished.
    done: Option<u64>,
}

impl Writing {
    /// Records the first failure, and closes the file.
    fn fail(&mut self, why: String, kept_open: &AtomicUsize) {
        self.failed.get_or_insert(why);
        self.close(kept_open);
    }

    /// Closes the file if it is kept open.
    fn close(&mut self, kept_open: &AtomicUsize) {
        if self.open.take().is_some() {
            kept_open.fetch_sub(1, Relaxed);
        }
    }
}

/// Opens file `f` of a restore for one more write: creates it the first
/// time (never through a link, never over an existing entry), keeps it
/// open while more of its chunks are to come (within [`KEPT_OPEN`]), and
/// otherwise opens the one this restore made again. `None` once it has
/// failed.
fn open_for_write(
    f: &Located<'_>,
    w: &mut Writing,
    kept_open: &AtomicUsize,
    reach: &Reach,
) -> Option<Arc<fs::File>> {
    if w.failed.is_some() {
        return None;
    }
    if let Some(file) = &w.open {
        return Some(Arc::clone(file));
    }
    let at = reach.at(f.path);
    let opened = if w.created {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&at)
            .at(f.path)
    } else {
        create_file(&at).map_err(|e| match e {
            Error::Io { source, .. } => Error::io(f.path, source),
            e => e,
        })
    };
    match opened {
        Ok(file) => {
            w.created = true;
            let file = Arc::new(file);
            if w.remaining > 1 && kept_open.fetch_add(1, Relaxed) < KEPT_OPEN {
                w.open = Some(Arc::clone(&file));
            } else if w.remaining > 1 {
                kept_open.fetch_sub(1, Relaxed);
            }
            Some(file)
        }
        Err(e) => {
            w.failed = Some(e.to_string());
            None
        }
    }
}

/// Restores `files` planned by pack: every record they need, each
/// once however many files hold it, grouped by pack and read in few
/// large ranges (`fetch.rs`), many at once; each record is
/// checked once and written to every place that needs it, and a file
/// is finished (owner, mode, times) when its last chunk is written.
/// Memory stays within the ranges in flight: records go straight to
/// their files, at their offsets.
fn restore_by_pack(
    engine: &Engine,
    files: &[Located<'_>],
    apply: &Apply,
    progress: &dyn Progress,
) -> Vec<(PathBuf, std::result::Result<u64, String>)> {
    let mut wanted = Vec::new();
    for (n, f) in files.iter().enumerate() {
        let mut offset = 0;
        for (k, loc) in f.locations.iter().enumerate() {
            let place = Place {
                file: n as u32,
                offset,
                last: k + 1 == f.locations.len(),
            };
            wanted.push((*loc, place));
            offset += u64::from(loc.entry.raw_len);
        }
    }
    let writing: Vec<Mutex<Writing>> = files
        .iter()
        .map(|f| {
            Mutex::new(Writing {
                remaining: f.locations.len(),
                ..Writing::default()
            })
        })
        .collect();
    let kept_open = AtomicUsize::new(0);
    let finish = |f: &Located<'_>, w: &mut Writing, file: &fs::File| {
        w.close(&kept_open);
        match finish_file(file, f.path, f.entry, apply, progress) {
            Ok(size) => w.done = Some(size),
            Err(e) => w.failed = Some(e.to_string()),
        }
    };
    // Files with no chunks (empty ones) are made at once.
    files
        .par_iter()
        .zip(&writing)
        .filter(|(f, _)| f.locations.is_empty())
        .for_each(|(f, w)| {
            let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(file) = open_for_write(f, &mut w, &kept_open, &apply.reach) {
                finish(f, &mut w, &file);
            }
        });
    engine.fetch_all(wanted, None, &|_, places: &[Place], raw| {
        // Checked once for all the places: a chunk of zeros is
        // left a hole, except where it ends a file.
        let zeros = raw
            .as_ref()
            .is_ok_and(|raw| crate::engine::writer::is_zeros(raw));
        for place in places {
            let (f, slot) = (&files[place.file as usize], &writing[place.file as usize]);
            let lock = || slot.lock().unwrap_or_else(PoisonError::into_inner);
            let raw = match &raw {
                Ok(raw) => raw,
                Err(e) => {
                    lock().fail(e.to_string(), &kept_open);
                    continue;
                }
            };
            let Some(file) = open_for_write(f, &mut lock(), &kept_open, &apply.reach) else {
                continue;
            };
            if !zeros || place.last {
                if let Err(e) = file.write_all_at(raw, place.offset).at(f.path) {
                    lock().fail(e.to_string(), &kept_open);
                    continue;
                }
            }
            progress.advance(raw.len() as u64);
            let mut w = lock();
            w.remaining -= 1;
            if w.remaining == 0 && w.failed.is_none() {
                finish(f, &mut w, &file);
            }
        }
    });
    files
        .iter()
        .zip(writing)
        .map(|(f, w)| {
            let w = w.into_inner().unwrap_or_else(PoisonError::into_inner);
            let result = match (w.failed, w.done) {
                (Some(why), _) => Err(why),
                (None, Some(size)) => Ok(size),
                (None, None) => Err(format!("{} chunks were never read", w.remaining)),
            };
            (f.path.to_path_buf(), result)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::posix::{file_mode, read_back};
    use super::*;

    #[test]
    fn a_file_with_more_to_come_stays_open_within_the_limit_and_past_it_is_opened_again() {
        let tmp = tempfile::tempdir().unwrap();
        let entry = Entry {
            name: b"f".to_vec(),
            mode: 0o644,
            mtime_s: 0,
            mtime_ns: 0,
            kind: EntryKind::File {
                size: 4,
                chunks: Vec::new(),
            },
            attrs: crate::format::snapshot::Attrs::default(),
        };
        let (kept_path, again_path) = (tmp.path().join("kept"), tmp.path().join("again"));
        let located = |path| Located {
            path,
            entry: &entry,
            locations: Vec::new(),
        };
        let writing = || Writing {
            remaining: 2,
            ..Writing::default()
        };
        // Room left: the file created for the first chunk is kept, and the
        // second chunk is written through the same handle.
        let (kept, room) = (located(&kept_path), AtomicUsize::new(0));
        let mut w = writing();
        let first = open_for_write(&kept, &mut w, &room, &Reach::default()).unwrap();
        first.write_all_at(b"ab", 0).unwrap();
        assert_eq!(room.load(Relaxed), 1);
        let second = open_for_write(&kept, &mut w, &room, &Reach::default()).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        second.write_all_at(b"cd", 2).unwrap();
        w.close(&room);
        assert_eq!(room.load(Relaxed), 0);
        assert!(w.open.is_none());
        // At the limit: not kept, and opened again (not created again,
        // which would fail on the existing file) for the second chunk.
        let (again, full) = (located(&again_path), AtomicUsize::new(KEPT_OPEN));
        let mut w = writing();
        open_for_write(&again, &mut w, &full, &Reach::default())
            .unwrap()
            .write_all_at(b"ab", 0)
            .unwrap();
        assert!(w.open.is_none());
        assert_eq!(full.load(Relaxed), KEPT_OPEN);
        open_for_write(&again, &mut w, &full, &Reach::default())
            .unwrap()
            .write_all_at(b"cd", 2)
            .unwrap();
        assert_eq!(fs::read(&kept_path).unwrap(), b"abcd");
        assert_eq!(fs::read(&again_path).unwrap(), b"abcd");
        // A failure closes a kept file and gives its place back.
        let mut w = writing();
        w.created = true;
        open_for_write(&kept, &mut w, &room, &Reach::default()).unwrap();
        assert_eq!(room.load(Relaxed), 1);
        w.fail("broken".into(), &room);
        assert_eq!(room.load(Relaxed), 0);
        assert!(open_for_write(&kept, &mut w, &room, &Reach::default()).is_none());
    }

    #[test]
    fn read_back_finds_a_changed_byte_a_short_file_and_a_long_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let (a, b) = (vec![1u8; 1000], vec![2u8; 500]);
        let entry = Entry {
            name: b"f".to_vec(),
            mode: 0o644,
            mtime_s: 0,
            mtime_ns: 0,
            kind: EntryKind::File {
                size: 1500,
                chunks: vec![(ChunkId::of(&a), 1000), (ChunkId::of(&b), 500)],
            },
            attrs: crate::format::snapshot::Attrs::default(),
        };
        let whole = [a.as_slice(), b.as_slice()].concat();
        fs::write(&path, &whole).unwrap();
        read_back(&path, &path, &entry, &crate::crypto::Crypt::none()).unwrap();
        let mut changed = whole.clone();
        changed[1200] ^= 1;
        fs::write(&path, &changed).unwrap();
        let e = read_back(&path, &path, &entry, &crate::crypto::Crypt::none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("chunk 1"), "{e}");
        fs::write(&path, &whole[..1400]).unwrap();
        assert!(read_back(&path, &path, &entry, &crate::crypto::Crypt::none()).is_err());
        fs::write(&path, [whole.as_slice(), b"x"].concat()).unwrap();
        let e = read_back(&path, &path, &entry, &crate::crypto::Crypt::none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("1501 bytes"), "{e}");
    }

    #[test]
    fn setuid_and_setgid_are_dropped_and_every_other_bit_kept() {
        assert_eq!(file_mode(0o4755, false), 0o755);
        assert_eq!(file_mode(0o2750, false), 0o750);
        assert_eq!(file_mode(0o7777, false), 0o1777);
        assert_eq!(file_mode(0o644, false), 0o644);
        // With the owner restored, they stay.
        assert_eq!(file_mode(0o4755, true), 0o4755);
    }
}
