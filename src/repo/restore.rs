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
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::id::ChunkId;
use crate::index::Location;
use crate::repo::browse::{components, unescape_name, Found};
use crate::repo::deep::{self, LONG_PATH};
use crate::repo::globs::PathGlobs;
use crate::repo::{in_pool, Progress, Repository};
use crate::snapshot::{Entry, EntryKind, SnapshotId};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// Files that could not be restored (or read back as they should be),
    /// and folders whose listing could not be read (nothing below them is
    /// restored), each with the reason.
    pub failed: Vec<String>,
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

/// Options for [`Repository::restore_with`].
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

/// The id this machine gives `name` (looked up once, then from `cache`);
/// `None` for an empty or unknown name.
fn by_name(
    cache: &std::sync::Mutex<HashMap<String, Option<u32>>>,
    name: &str,
    lookup: impl FnOnce(&str) -> Option<u32>,
) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    *cache
        .lock()
        .expect("names lock")
        .entry(name.to_string())
        .or_insert_with(|| lookup(name))
}

/// Where the kernel is asked for a destination path: the path itself, or,
/// for one longer than [`LONG_PATH`], the rest of it below the handle of a
/// folder above it (`/proc/self/fd/N/rest`). The handles are opened as the
/// folders are made and held for the whole restore, so a tree deeper than
/// `PATH_MAX` restores whole (one handle for every [`LONG_PATH`] bytes of
/// depth). Errors still name the path itself.
#[derive(Default)]
struct Reach {
    handles: std::sync::RwLock<HashMap<PathBuf, fs::File>>,
}

impl Reach {
    /// Where to reach `path`.
    fn at<'p>(&self, path: &'p Path) -> std::borrow::Cow<'p, Path> {
        if path.as_os_str().len() <= LONG_PATH {
            return path.into();
        }
        let handles = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        for up in path.ancestors().skip(1) {
            if let Some(handle) = handles.get(up) {
                let rest = path.strip_prefix(up).expect("an ancestor");
                return deep::through(handle).join(rest).into();
            }
            // Only folders reached by a long path have handles.
            if up.as_os_str().len() < LONG_PATH / 2 {
                break;
            }
        }
        path.into()
    }

    /// Once the folder `path` is made: holds it open when it takes a long
    /// path to reach, for what is made below it.
    fn made(&self, path: &Path) -> Result<()> {
        let at = self.at(path);
        if at.as_os_str().len() <= LONG_PATH {
            return Ok(());
        }
        let handle = deep::open_folder(&at).at(path)?;
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_path_buf(), handle);
        Ok(())
    }
}

/// How restored entries get what they carry beyond content: owners (as
/// root only; by the names recorded where this machine knows them, unless
/// `numeric`), extended attributes, and what could not be set, counted for
/// one warning of each kind.
struct Apply {
    root: bool,
    numeric: bool,
    users: std::sync::Mutex<HashMap<String, Option<u32>>>,
    groups: std::sync::Mutex<HashMap<String, Option<u32>>>,
    owners_left: AtomicU64,
    xattrs_left: AtomicU64,
    devices_left: AtomicU64,
    /// Where each destination path is reached.
    reach: Reach,
}

impl Apply {
    fn new(numeric: bool) -> Result<Self> {
        Ok(Apply {
            root: effective_uid()? == 0,
            numeric,
            users: std::sync::Mutex::default(),
            groups: std::sync::Mutex::default(),
            owners_left: AtomicU64::new(0),
            xattrs_left: AtomicU64::new(0),
            devices_left: AtomicU64::new(0),
            reach: Reach::default(),
        })
    }

    /// The ids to give `entry`, or `None` when owners are not restored
    /// (not root, or a tree from before owners were kept).
    fn ids(&self, entry: &Entry) -> Option<(u32, u32)> {
        let owner = entry.attrs.owner.as_ref()?;
        if !self.root {
            self.owners_left.fetch_add(1, Relaxed);
            return None;
        }
        if self.numeric {
            return Some((owner.uid, owner.gid));
        }
        let uid = by_name(&self.users, &owner.user, |n| {
            uzers::get_user_by_name(n).map(|u| u.uid())
        });
        let gid = by_name(&self.groups, &owner.group, |n| {
            uzers::get_group_by_name(n).map(|g| g.gid())
        });
        let (uid, gid) = (uid.unwrap_or(owner.uid), gid.unwrap_or(owner.gid));
        Some((uid, gid))
    }

    /// Owner and extended attributes of a file still open; whether the
    /// owner was given (then setuid and setgid bits may stay).
    fn file(&self, file: &fs::File, path: &Path, entry: &Entry) -> Result<bool> {
        use xattr::FileExt as _;
        self.give(
            path,
            entry,
            |uid, gid| std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
            |name, value| file.set_xattr(name, value),
        )
    }

    /// Owner and extended attributes of a folder, link or special file,
    /// by path (a link itself, never what it points to).
    fn path(&self, path: &Path, entry: &Entry) -> Result<bool> {
        let at = self.reach.at(path);
        self.give(
            path,
            entry,
            |uid, gid| std::os::unix::fs::lchown(&at, Some(uid), Some(gid)),
            |name, value| xattr::set(&at, name, value),
        )
    }

    /// Gives `entry`'s owner (when restored) through `chown` and its
    /// extended attributes through `set`, counting those that fail.
    fn give(
        &self,
        path: &Path,
        entry: &Entry,
        chown: impl FnOnce(u32, u32) -> std::io::Result<()>,
        set: impl Fn(&std::ffi::OsStr, &[u8]) -> std::io::Result<()>,
    ) -> Result<bool> {
        let owned = match self.ids(entry) {
            Some((uid, gid)) => {
                chown(uid, gid).at(path)?;
                true
            }
            None => false,
        };
        for (name, value) in &entry.attrs.xattrs {
            if set(std::ffi::OsStr::from_bytes(name), value).is_err() {
                self.xattrs_left.fetch_add(1, Relaxed);
            }
        }
        Ok(owned)
    }

    /// One line for each kind of thing left unset.
    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let owners = self.owners_left.load(Relaxed);
        if owners > 0 {
            out.push(format!(
                "owners not restored on {owners} entries (only root can give files away; they \
                 belong to you, without setuid and setgid bits)"
            ));
        }
        let xattrs = self.xattrs_left.load(Relaxed);
        if xattrs > 0 {
            out.push(format!(
                "{xattrs} extended attributes not restored (security.* and trusted.* need root; \
                 some file systems take none)"
            ));
        }
        let devices = self.devices_left.load(Relaxed);
        if devices > 0 {
            out.push(format!(
                "{devices} device nodes not made (only root can make them)"
            ));
        }
        out
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

/// The mode a restored entry gets: the stored one, without setuid and
/// setgid unless its owner was restored too (else the file belongs to
/// whoever restores it, and a setuid file restored by root would run as
/// root).
fn file_mode(stored: u32, owned: bool) -> u32 {
    if owned {
        stored
    } else {
        stored & !0o6000
    }
}

/// Gives a restored file, still open, its owner, extended attributes,
/// mode and times, in that order (a change of owner clears setuid bits),
/// all through the open file: no lookup of its path again. Returns its
/// length.
fn finish_file(
    file: &fs::File,
    path: &Path,
    entry: &Entry,
    apply: &Apply,
    progress: &dyn Progress,
) -> Result<u64> {
    let owned = apply.file(file, path, entry)?;
    let mode = file_mode(entry.mode, owned);
    if mode != entry.mode {
        progress.warn(&format!(
            "{}: setuid/setgid bits not restored (the file's owner is not)",
            path.display()
        ));
    }
    let size = match entry.kind {
        EntryKind::File { size, .. } => size,
        _ => 0,
    };
    file.set_permissions(fs::Permissions::from_mode(mode))
        .at(path)?;
    let t = FileTime::from_unix_time(entry.mtime_s, entry.mtime_ns);
    filetime::set_file_handle_times(file, Some(t), Some(t)).at(path)?;
    Ok(size)
}

/// Sets an entry's times by path, on the entry itself (a link, not what
/// it points to), without opening it.
fn set_times(path: &Path, e: &Entry, reach: &Reach) -> Result<()> {
    let t = FileTime::from_unix_time(e.mtime_s, e.mtime_ns);
    filetime::set_symlink_file_times(reach.at(path), t, t).at(path)
}

impl Repository {
    /// Restores `snapshot` into `dest`, which must be absent or empty.
    /// Files that fail (a damaged chunk, say) are listed in the outcome's
    /// `failed`; the rest are restored.
    pub fn restore(
        &self,
        snapshot: &SnapshotId,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        self.restore_path(snapshot, "", dest, progress)
    }

    /// Restores what `path` names inside `snapshot` (see
    /// [`browse`](crate::repo::browse)) into `dest`, which must be absent
    /// or empty: a folder's contents (the root's for `""`), or a file or
    /// symlink under its own name.
    pub fn restore_path(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        self.restore_with(snapshot, path, dest, &RestoreOptions::default(), progress)
    }

    /// [`restore_path`](Self::restore_path) with options: globs that pick
    /// what is restored, what happens to entries already in `dest`, and a
    /// read-back check.
    pub fn restore_with(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        dest: &Path,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        let record = self.snapshot(snapshot)?;
        let found = self.lookup(snapshot, &record.tree, path)?;
        let at = in_snapshot(path)?;
        prepare_destination(dest, opts.overwrite)?;
        let apply = Apply::new(opts.numeric_owner)?;
        let pool = self.io_pool();
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
            (Some(tree), _) => self.plan(&tree, dest, &at, opts, &mut plan, &apply.reach)?,
            (None, Found::Entry(entry)) => {
                // Checked like every name when its tree was decoded.
                let path = dest.join(std::ffi::OsStr::from_bytes(&entry.name));
                if opts.exclude.matches(&at)
                    || !(opts.include.is_empty() || opts.include.matches(&at))
                {
                    plan.left_out += 1;
                } else {
                    plan.place(path, entry);
                }
            }
            (None, Found::Root(_)) => unreachable!("the root is a folder"),
        }
        let mut outcome = RestoreOutcome {
            dirs: plan.levels.iter().map(Vec::len).sum::<usize>() as u64,
            left_out: plan.left_out,
            ..Default::default()
        };
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
            self.restore_files(&files, &apply, progress)
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
            if let Some(entry) = self.read_tree(&root)?.entries.first() {
                finish_path(dest, entry, &apply)?;
            }
        }
        if opts.verify {
            let (crypt, reach) = (self.crypt(), &apply.reach);
            verify_written(crypt, reach, &files, &written, &mut outcome, progress);
        }
        outcome.warnings = apply.warnings();
        for w in &outcome.warnings {
            progress.warn(w);
        }
        Ok(outcome)
    }

    /// Walks tree `root` (at `at` in the snapshot) under `dest`, listing
    /// what to make (what the globs pass: a folder that no include
    /// matches is made only when something below it is restored), then
    /// makes its folders, a level at a time (each on every core).
    fn plan(
        &self,
        root: &ChunkId,
        dest: &Path,
        at: &Path,
        opts: &RestoreOptions,
        plan: &mut Plan,
        reach: &Reach,
    ) -> Result<()> {
        let everything = opts.include.is_empty();
        let start = (dest.to_path_buf(), at.to_path_buf(), 0, everything);
        self.walk_paths(
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
        &self,
        files: &[(PathBuf, Entry)],
        apply: &Apply,
        progress: &dyn Progress,
    ) -> Vec<(PathBuf, std::result::Result<u64, String>)> {
        let located: Vec<Result<Located<'_>>> = files
            .par_iter()
            .map(|(path, entry)| self.locate(path, entry))
            .collect();
        let mut out = Vec::new();
        let mut found = Vec::with_capacity(files.len());
        for ((path, _), f) in files.iter().zip(located) {
            match f {
                Ok(f) => found.push(f),
                Err(e) => out.push((path.clone(), Err(e.to_string()))),
            }
        }
        out.extend(self.restore_by_pack(&found, apply, progress));
        out
    }
}

/// Makes `dest` when absent; refuses one that is not safe to write in
/// ([`check_destination`]), or that is not empty unless `overwrite` says
/// what to do with what is there.
fn prepare_destination(dest: &Path, overwrite: Overwrite) -> Result<()> {
    check_destination(dest)?;
    match fs::read_dir(dest) {
        Ok(mut it) => {
            if overwrite == Overwrite::Refuse && it.next().is_some() {
                return Err(Error::DestinationNotEmpty(dest.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(dest).at(dest),
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// `path` (as `ls` prints paths) as a path from the snapshot's root, by
/// its names' bytes: what restore's globs match against.
fn in_snapshot(path: &str) -> Result<PathBuf> {
    let mut at = PathBuf::from("/");
    for part in components(path)? {
        at.push(std::ffi::OsStr::from_bytes(&unescape_name(part)?));
    }
    Ok(at)
}

/// Makes a folder to restore into. `create_dir`, not `create_dir_all`:
/// an existing entry of this name (a link, say) is an error, never
/// followed; when overwriting, an existing folder is used as it is and
/// anything else in the way is replaced (except by `never`).
fn make_folder(path: &Path, overwrite: Overwrite, reach: &Reach) -> Result<()> {
    let at = reach.at(path);
    match fs::create_dir(&at) {
        Err(e)
            if e.kind() == std::io::ErrorKind::AlreadyExists && overwrite != Overwrite::Refuse =>
        {
            let meta = fs::symlink_metadata(&at).at(path)?;
            if meta.is_dir() {
                return Ok(());
            }
            if overwrite == Overwrite::Never {
                return Err(Error::invalid(
                    "restore destination",
                    format!(
                        "{} is in the way of a folder, and --overwrite never leaves it",
                        path.display()
                    ),
                ));
            }
            fs::remove_file(&at).at(path)?;
            fs::create_dir(&at).at(path)
        }
        other => other.at(path),
    }
}

/// Before files are restored into a destination that has entries: drops
/// from `files` those an existing entry keeps (`never`; `if-changed` with
/// equal size and modification time) and those a folder is in the way of,
/// and removes the existing files the others replace (on every core).
fn clear_the_way(
    files: &mut Vec<(PathBuf, Entry)>,
    overwrite: Overwrite,
    reach: &Reach,
    outcome: &mut RestoreOutcome,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let rooms: Vec<Result<Room>> = files
        .par_iter()
        .map(|(path, entry)| {
            let unchanged = |meta: &fs::Metadata| {
                meta.is_file()
                    && matches!(entry.kind, EntryKind::File { size, .. } if size == meta.len())
                    && meta.mtime() == entry.mtime_s
                    && meta.mtime_nsec() == i64::from(entry.mtime_ns)
            };
            room(path, overwrite, reach, unchanged)
        })
        .collect();
    let mut go = Vec::with_capacity(files.len());
    for (file, room) in std::mem::take(files).into_iter().zip(rooms) {
        if room?.take(&file.0, outcome) {
            go.push(file);
        }
    }
    *files = go;
    Ok(())
}

/// Makes the symlinks, last (nothing is ever written through one); when
/// overwriting, an existing entry in the way is kept or replaced as
/// `overwrite` says.
fn make_links(
    links: &[(PathBuf, Entry)],
    overwrite: Overwrite,
    apply: &Apply,
    outcome: &mut RestoreOutcome,
) -> Result<()> {
    for (path, entry) in links {
        let EntryKind::Symlink { target } = &entry.kind else {
            unreachable!()
        };
        let target = std::ffi::OsStr::from_bytes(target);
        let at = apply.reach.at(path);
        let same = |meta: &fs::Metadata| {
            meta.file_type().is_symlink()
                && fs::read_link(&at).is_ok_and(|t| t.as_os_str() == target)
        };
        if !make_room(path, overwrite, &apply.reach, same, outcome)? {
            continue;
        }
        std::os::unix::fs::symlink(target, &at).at(path)?;
        apply.path(path, entry)?;
        set_times(path, entry, &apply.reach)?;
        outcome.symlinks += 1;
    }
    Ok(())
}

/// Gives a folder (or the destination, for the snapshot's root) or a
/// special file its owner, extended attributes, mode and times.
fn finish_path(path: &Path, entry: &Entry, apply: &Apply) -> Result<()> {
    let owned = apply.path(path, entry)?;
    fs::set_permissions(
        apply.reach.at(path),
        fs::Permissions::from_mode(file_mode(entry.mode, owned)),
    )
    .at(path)?;
    // Not following links, and never opening the entry: a FIFO would
    // block an open until someone opened its other end.
    set_times(path, entry, &apply.reach)
}

/// What a path restore is about to make holds.
enum Room {
    /// Nothing (any entry that was there is removed): make it.
    Free,
    /// An entry the overwrite rule keeps.
    Keep,
    /// A folder, which restore never removes.
    Blocked,
}

impl Room {
    /// Whether to make the entry; what is kept or blocked is counted.
    fn take(self, path: &Path, outcome: &mut RestoreOutcome) -> bool {
        match self {
            Room::Free => true,
            Room::Keep => {
                outcome.kept += 1;
                false
            }
            Room::Blocked => {
                outcome.failed.push(format!(
                    "{}: a folder is in the way; not replaced",
                    path.display()
                ));
                false
            }
        }
    }
}

/// Clears `path` for a new entry as the overwrite rule says: `same` tells
/// whether what is there equals what would replace it (for `if-changed`).
fn room(
    path: &Path,
    overwrite: Overwrite,
    reach: &Reach,
    same: impl FnOnce(&fs::Metadata) -> bool,
) -> Result<Room> {
    if overwrite == Overwrite::Refuse {
        return Ok(Room::Free);
    }
    let at = reach.at(path);
    let Ok(meta) = fs::symlink_metadata(&at) else {
        return Ok(Room::Free);
    };
    let keep = match overwrite {
        Overwrite::Never => true,
        Overwrite::IfChanged => same(&meta),
        _ => false,
    };
    if keep {
        return Ok(Room::Keep);
    }
    if meta.is_dir() {
        return Ok(Room::Blocked);
    }
    fs::remove_file(&at).at(path)?;
    Ok(Room::Free)
}

/// [`room`], counted into `outcome`: whether to make the entry.
fn make_room(
    path: &Path,
    overwrite: Overwrite,
    reach: &Reach,
    same: impl FnOnce(&fs::Metadata) -> bool,
    outcome: &mut RestoreOutcome,
) -> Result<bool> {
    Ok(room(path, overwrite, reach, same)?.take(path, outcome))
}

/// Links every further path of a multiply linked file to the path it was
/// restored at, so the set comes back as one inode.
fn make_hardlinks(
    hardlinks: &[(PathBuf, PathBuf)],
    written: &[PathBuf],
    overwrite: Overwrite,
    reach: &Reach,
    outcome: &mut RestoreOutcome,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let written: std::collections::HashSet<&Path> = written.iter().map(PathBuf::as_path).collect();
    for (path, first) in hardlinks {
        if !written.contains(first.as_path()) {
            outcome.failed.push(format!(
                "{}: not linked, as {} was not restored",
                path.display(),
                first.display()
            ));
            continue;
        }
        let first_at = reach.at(first);
        let same = |meta: &fs::Metadata| {
            fs::metadata(&first_at).is_ok_and(|f| (f.dev(), f.ino()) == (meta.dev(), meta.ino()))
        };
        if make_room(path, overwrite, reach, same, outcome)? {
            fs::hard_link(&first_at, reach.at(path)).at(path)?;
            outcome.hardlinks += 1;
        }
    }
    Ok(())
}

/// Makes FIFOs and device nodes (devices only as root: otherwise they
/// are counted for one warning).
fn make_specials(
    specials: &[(PathBuf, Entry)],
    overwrite: Overwrite,
    apply: &Apply,
    outcome: &mut RestoreOutcome,
) -> Result<()> {
    use rustix::fs::{FileType, Mode, CWD};
    for (path, entry) in specials {
        let (kind, rdev) = match entry.kind {
            EntryKind::Fifo => (FileType::Fifo, 0),
            EntryKind::CharDevice { rdev } => (FileType::CharacterDevice, rdev),
            EntryKind::BlockDevice { rdev } => (FileType::BlockDevice, rdev),
            _ => unreachable!("only special files are planned here"),
        };
        if kind != FileType::Fifo && !apply.root {
            apply.devices_left.fetch_add(1, Relaxed);
            continue;
        }
        if !make_room(path, overwrite, &apply.reach, |_| false, outcome)? {
            continue;
        }
        let at = apply.reach.at(path);
        rustix::fs::mknodat(CWD, &*at, kind, Mode::from_bits_truncate(0o600), rdev)
            .map_err(|e| Error::io(path, e.into()))?;
        finish_path(path, entry, apply)?;
        outcome.specials += 1;
    }
    Ok(())
}

/// Reads every file written back (on every core) and checks it against
/// its entry; a file that reads back different is failed.
fn verify_written(
    crypt: &crate::crypto::Crypt,
    reach: &Reach,
    files: &[(PathBuf, Entry)],
    written: &[PathBuf],
    outcome: &mut RestoreOutcome,
    progress: &dyn Progress,
) {
    let by_path: HashMap<&Path, &Entry> = files.iter().map(|(p, e)| (p.as_path(), e)).collect();
    let checked: Vec<Result<()>> = written
        .par_iter()
        .map(|path| read_back(path, &reach.at(path), by_path[path.as_path()], crypt))
        .collect();
    for (path, r) in written.iter().zip(checked) {
        match r {
            Ok(()) => outcome.verified += 1,
            Err(e) => {
                let message = format!("{}: {e}", path.display());
                progress.warn(&message);
                outcome.failed.push(message);
            }
        }
    }
}

/// Reads a restored file back and checks its length and every chunk
/// against the snapshot's ids.
fn read_back(path: &Path, at: &Path, entry: &Entry, crypt: &crate::crypto::Crypt) -> Result<()> {
    use std::io::Read;
    let EntryKind::File { size, chunks } = &entry.kind else {
        return Ok(());
    };
    let mut file = fs::File::open(at).at(path)?;
    let mut buf = Vec::new();
    for (k, (id, len)) in chunks.iter().enumerate() {
        buf.clear();
        (&mut file)
            .take(u64::from(*len))
            .read_to_end(&mut buf)
            .at(path)?;
        if buf.len() != *len as usize || crypt.id_of(&buf) != *id {
            return Err(Error::invalid(
                "restored file",
                format!("chunk {k} ({id}) reads back different"),
            ));
        }
    }
    let len = file.metadata().at(path)?.len();
    if len != *size {
        return Err(Error::invalid(
            "restored file",
            format!("{len} bytes read back, {size} expected"),
        ));
    }
    Ok(())
}

/// The user this process acts as (the kernel gives /proc/self its
/// effective user).
fn effective_uid() -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata("/proc/self").at("/proc/self")?.uid())
}

/// Refuses a destination another user could redirect. Restore works by
/// path: if someone else can rename entries in the destination or in any
/// folder above it, they can swap a folder restore has just made for a
/// link, and the files restored after it (as root, say) land wherever the
/// link points. So every folder from the destination (or, if it does not
/// exist yet, its nearest existing ancestor) up to `/` must belong to root
/// or to the caller and must not be writable by group or others, unless
/// its sticky bit is set (as on `/tmp`: others cannot rename what is not
/// theirs).
fn check_destination(dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = effective_uid()?;
    let absolute = std::path::absolute(dest).at(dest)?;
    let mut existing = absolute.as_path();
    while fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return Ok(()),
        }
    }
    let real = fs::canonicalize(existing).at(existing)?;
    for dir in real.ancestors() {
        let meta = fs::metadata(dir).at(dir)?;
        let owner_ok = meta.uid() == 0 || meta.uid() == me;
        let shared = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
        if !owner_ok || shared {
            return Err(Error::invalid(
                "restore destination",
                format!(
                    "{} is not safe to restore into: {} (owner uid {}, mode {:o}) lets another \
                     user swap what restore creates for a link; restore into a folder only \
                     you (or root) can write",
                    dest.display(),
                    dir.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            attrs: crate::snapshot::Attrs::default(),
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
            attrs: crate::snapshot::Attrs::default(),
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

impl Repository {
    /// Restores `files` planned by pack: every record they need, each
    /// once however many files hold it, grouped by pack and read in few
    /// large ranges (`fetch.rs`), many at once; each record is
    /// checked once and written to every place that needs it, and a file
    /// is finished (owner, mode, times) when its last chunk is written.
    /// Memory stays within the ranges in flight: records go straight to
    /// their files, at their offsets.
    fn restore_by_pack(
        &self,
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
        self.fetch_all(wanted, None, &|_, places: &[Place], raw| {
            // Checked once for all the places: a chunk of zeros is
            // left a hole, except where it ends a file.
            let zeros = raw.as_ref().is_ok_and(|raw| super::writer::is_zeros(raw));
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
}
