//! Restore's file-system side: folders, files, links and special files
//! made inside the destination without ever following a link, modes,
//! owners and times set, and what was written read back.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::PoisonError;

use filetime::FileTime;
use rayon::prelude::*;

use crate::engine::deep::{self, LONG_PATH};
use crate::engine::Progress;
use crate::error::{Error, IoContext, Result};
use crate::format::snapshot::{Entry, EntryKind};

use super::{Overwrite, RestoreOutcome};

/// Where the kernel is asked for a destination path: the path itself, or,
/// for one longer than [`LONG_PATH`], the rest of it below the handle of a
/// folder above it (`/proc/self/fd/N/rest`). The handles are opened as the
/// folders are made and held for the whole restore, so a tree deeper than
/// `PATH_MAX` restores whole (one handle for every [`LONG_PATH`] bytes of
/// depth). Errors still name the path itself.
#[derive(Default)]
pub(super) struct Reach {
    pub(super) handles: std::sync::RwLock<HashMap<PathBuf, fs::File>>,
}

impl Reach {
    /// Where to reach `path`.
    pub(super) fn at<'p>(&self, path: &'p Path) -> std::borrow::Cow<'p, Path> {
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
    pub(super) fn made(&self, path: &Path) -> Result<()> {
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
pub(super) struct Apply {
    pub(super) root: bool,
    pub(super) numeric: bool,
    pub(super) users: std::sync::Mutex<HashMap<String, Option<u32>>>,
    pub(super) groups: std::sync::Mutex<HashMap<String, Option<u32>>>,
    pub(super) owners_left: AtomicU64,
    pub(super) xattrs_left: AtomicU64,
    pub(super) devices_left: AtomicU64,
    /// Where each destination path is reached.
    pub(super) reach: Reach,
}

impl Apply {
    pub(super) fn new(numeric: bool) -> Result<Self> {
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
    pub(super) fn ids(&self, entry: &Entry) -> Option<(u32, u32)> {
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
    pub(super) fn file(&self, file: &fs::File, path: &Path, entry: &Entry) -> Result<bool> {
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
    pub(super) fn path(&self, path: &Path, entry: &Entry) -> Result<bool> {
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
    pub(super) fn give(
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
    pub(super) fn warnings(&self) -> Vec<String> {
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
pub(super) fn create_file(path: &Path) -> Result<fs::File> {
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
pub(super) fn file_mode(stored: u32, owned: bool) -> u32 {
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
pub(super) fn finish_file(
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
pub(super) fn set_times(path: &Path, e: &Entry, reach: &Reach) -> Result<()> {
    let t = FileTime::from_unix_time(e.mtime_s, e.mtime_ns);
    filetime::set_symlink_file_times(reach.at(path), t, t).at(path)
}

/// Makes `dest` when absent; refuses one that is not safe to write in
/// ([`check_destination`]), or that is not empty unless `overwrite` says
/// what to do with what is there.
pub(super) fn prepare_destination(dest: &Path, overwrite: Overwrite) -> Result<()> {
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

/// Makes a folder to restore into. `create_dir`, not `create_dir_all`:
/// an existing entry of this name (a link, say) is an error, never
/// followed; when overwriting, an existing folder is used as it is and
/// anything else in the way is replaced (except by `never`).
pub(super) fn make_folder(path: &Path, overwrite: Overwrite, reach: &Reach) -> Result<()> {
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
pub(super) fn clear_the_way(
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
pub(super) fn make_links(
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
pub(super) fn finish_path(path: &Path, entry: &Entry, apply: &Apply) -> Result<()> {
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
pub(super) enum Room {
    /// Nothing (any entry that was there is removed): make it.
    Free,
    /// An entry the overwrite rule keeps.
    Keep,
    /// A folder, which restore never removes.
    Blocked,
}

impl Room {
    /// Whether to make the entry; what is kept or blocked is counted.
    pub(super) fn take(self, path: &Path, outcome: &mut RestoreOutcome) -> bool {
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
pub(super) fn room(
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
pub(super) fn make_room(
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
pub(super) fn make_hardlinks(
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
pub(super) fn make_specials(
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
pub(super) fn verify_written(
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
pub(super) fn read_back(
    path: &Path,
    at: &Path,
    entry: &Entry,
    crypt: &crate::crypto::Crypt,
) -> Result<()> {
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
pub(super) fn effective_uid() -> Result<u32> {
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
pub(super) fn check_destination(dest: &Path) -> Result<()> {
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

/// The id this machine gives `name` (looked up once, then from `cache`);
/// `None` for an empty or unknown name.
pub(super) fn by_name(
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
