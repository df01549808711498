//! A store over a local folder: both a [`PackStore`] and a [`MetaStore`].
//!
//! Durable writes happen in one place, `LocalStore::write_durably`:
//! write a temporary file beside the target, fsync it, rename it to the
//! target, then fsync the folder so the rename itself survives a crash.
//! A folder it has to create is made durable the same way, by syncing its
//! parent. Temporary files end in `.tmp`; a crash can leave one behind,
//! listing skips them, and [`PackStore::sweep_unfinished`] removes them.
//!
//! Every call goes through an [`Fs`], so crash tests can run this exact
//! code on the in-memory [`MemFs`](crate::store::MemFs) and see a missing
//! fsync.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::store::fs::{FileKind, Fs};
use crate::store::{check_key, MetaStore, PackId, PackStore};
use crate::Mode;

/// Suffix of unfinished writes.
const TMP_SUFFIX: &str = ".tmp";

/// What a durable write may do to an existing file of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    /// Refuse: packs are created once.
    Refuse,
    /// Replace it atomically: metadata files.
    Replace,
}

/// Whether a removal must survive a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durably {
    /// A pack: one that comes back after a crash is unindexed, and the
    /// next `gc` removes it again; not worth a folder fsync per pack.
    No,
    /// Metadata: a forgotten snapshot must stay forgotten.
    Yes,
}

/// A store rooted at a folder; see the module docs.
#[derive(Clone, Debug)]
pub struct LocalStore {
    fs: Arc<dyn Fs>,
    root: PathBuf,
}

/// The error for `path`, where a folder was expected and `kind` found.
fn not_a_folder(path: &Path, kind: FileKind) -> Error {
    let why = if kind == FileKind::Link {
        "is a symlink, which dedup never follows inside a repository"
    } else {
        "not a directory"
    };
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::NotADirectory, why),
    )
}

impl LocalStore {
    /// A store over `root`, which is created (with its parents, durably)
    /// if absent, and made its owner's only (0700) either way.
    /// A symlink at `root` is followed, once: the store is then used
    /// through its real path.
    pub fn create(fs: Arc<dyn Fs>, root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let root = fs.follow_root(&root).at(&root)?.unwrap_or(root);
        let store = LocalStore { fs, root };
        store.make_dir(&store.root.clone())?;
        store.fs.make_private(&store.root).at(&store.root)?;
        Ok(store)
    }

    /// A store over an existing folder, or over the folder a symlink at
    /// `root` leads to (a repository or shard moved to another disk and
    /// linked back), used through its real path. Links inside a store are
    /// never followed.
    pub fn open(fs: Arc<dyn Fs>, root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let root = fs.follow_root(&root).at(&root)?.unwrap_or(root);
        match fs.kind(&root).at(&root)? {
            FileKind::Dir => Ok(LocalStore { fs, root }),
            kind => Err(not_a_folder(&root, kind)),
        }
    }

    /// The folder this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates `dir` and any missing parents, each made durable by
    /// syncing the folder it was created in.
    fn make_dir(&self, dir: &Path) -> Result<()> {
        match self.fs.kind(dir) {
            Ok(FileKind::Dir) => return Ok(()),
            Ok(kind) => return Err(not_a_folder(dir, kind)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        self.make_dir(parent)?;
        match self.fs.create_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io(dir, e))
            }
            _ => {}
        }
        self.fs.sync_dir(parent).at(parent)
    }

    /// Writes `data` to `key` durably and atomically: temporary file,
    /// fsync, rename, fsync the folder.
    fn write_durably(&self, key: &str, data: &[u8], existing: Existing) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dir(&dir)?;
        if existing == Existing::Refuse && self.fs.kind(&path).is_ok() {
            return Err(Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            ));
        }
        let tmp = tmp_path(&path);
        let result = (|| {
            self.fs.write(&tmp, data).at(&tmp)?;
            self.fs.sync_file(&tmp).at(&tmp)?;
            match existing {
                Existing::Refuse => self.fs.rename_new(&tmp, &path).at(&path)?,
                Existing::Replace => self.fs.rename(&tmp, &path).at(&path)?,
            }
            self.fs.sync_dir(&dir).at(&dir)
        })();
        if result.is_err() {
            let _ = self.fs.remove_file(&tmp);
        }
        result
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        self.fs.read(&path).at(&path)
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match self.fs.read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for (name, kind) in entries {
                let key = format!("{rel}{name}");
                match kind {
                    FileKind::Dir => {
                        let folder = format!("{key}/");
                        if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                            stack.push((dir.join(&name), folder));
                        }
                    }
                    FileKind::File if key.starts_with(prefix) && !key.ends_with(TMP_SUFFIX) => {
                        out.push(key);
                    }
                    // A link where the folder asked for should be (a
                    // `snapshots/` planted elsewhere) is refused: listed as
                    // empty, it would make every record look deleted.
                    FileKind::Link
                        if !prefix.is_empty() && prefix.starts_with(&format!("{key}/")) =>
                    {
                        return Err(not_a_folder(&dir.join(&name), kind));
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Removes `key`; with [`Durably::Yes`], the removal survives a crash.
    fn remove(&self, key: &str, durably: Durably) -> Result<()> {
        let path = self.path(key)?;
        match self.fs.remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
            Ok(()) if durably == Durably::Yes => {
                let dir = path.parent().unwrap_or(&self.root);
                self.fs.sync_dir(dir).at(dir)
            }
            Ok(()) => Ok(()),
        }
    }
}

/// Where a durable write of `path` first writes: beside it, under a name
/// no other write (and nobody guessing) picks: `<name>.<pid>.<random>.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(
        ".{}.{:016x}{TMP_SUFFIX}",
        std::process::id(),
        u64::from_le_bytes(random)
    ));
    PathBuf::from(tmp)
}

/// The name a temporary file from [`tmp_path`] was going to get (or one
/// from before the random part, `<name>.<pid>.tmp`).
fn unfinished_target(name: &str) -> Option<&str> {
    let digits = |s: &str, radix| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    let rest = name.strip_suffix(TMP_SUFFIX)?;
    let (before, last) = rest.rsplit_once('.')?;
    match before.rsplit_once('.') {
        Some((target, pid)) if digits(pid, 10) && digits(last, 16) => Some(target),
        _ => digits(last, 10).then_some(before),
    }
}

/// True for the folders packs live in: two lowercase hex digits.
fn is_pack_folder(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl PackStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self, key: &str, data: &[u8]) -> Result<()> {
        self.write_durably(key, data, Existing::Refuse)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.read(key)
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        self.fs.read_at(&path, offset, len).at(&path)
    }

    fn size(&self, key: &str) -> Result<u64> {
        let path = self.path(key)?;
        self.fs.len(&path).at(&path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.keys(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.remove(key, Durably::No)
    }

    /// Removes only what this store's own pack writes leave: a file named
    /// `<pack>.<pid>.<random>.tmp` in one of the two-hex-digit folders. A
    /// shard folder may hold other things (it may be a disk's root), and
    /// those are never touched.
    fn sweep_unfinished(&self, mode: Mode) -> Result<u64> {
        let mut freed = 0;
        for (folder, kind) in self.fs.read_dir(&self.root).at(&self.root)? {
            if kind != FileKind::Dir || !is_pack_folder(&folder) {
                continue;
            }
            let dir = self.root.join(&folder);
            for (name, kind) in self.fs.read_dir(&dir).at(&dir)? {
                let unfinished = kind == FileKind::File
                    && unfinished_target(&name).is_some_and(|target| {
                        PackId::from_key(&format!("{folder}/{target}")).is_some()
                    });
                if unfinished {
                    let path = dir.join(&name);
                    freed += self.fs.len(&path).at(&path)?;
                    if mode == Mode::Apply {
                        self.fs.remove_file(&path).at(&path)?;
                    }
                }
            }
        }
        Ok(freed)
    }
}

impl MetaStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        match self.write_durably(key, data, Existing::Refuse) {
            Ok(()) => Ok(true),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.write_durably(key, data, Existing::Replace)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.read(key)
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        PackStore::get_range(self, key, offset, len)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.keys(prefix)
    }

    fn written(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        let mut out = Vec::new();
        for key in self.keys(prefix)? {
            let path = self.path(&key)?;
            match self.fs.modified(&path) {
                Ok(time) => out.push((key, time)),
                // Deleted since it was listed: as if never listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.remove(key, Durably::Yes)
    }

    /// Removes only files named as `tmp_path` names them.
    fn sweep_unfinished(&self, dirs: &[&str]) -> Result<u64> {
        let mut freed = 0;
        for dir in dirs {
            let dir = self.root.join(dir);
            let entries = match self.fs.read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for (name, kind) in entries {
                if kind == FileKind::File && unfinished_target(&name).is_some() {
                    let path = dir.join(&name);
                    freed += self.fs.len(&path).at(&path)?;
                    self.fs.remove_file(&path).at(&path)?;
                }
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{is_not_found, MemFs, OsFs};

    fn each_fs(test: impl Fn(Arc<dyn Fs>, PathBuf)) {
        let dir = tempfile::tempdir().unwrap();
        test(OsFs::shared(), dir.path().join("s"));
        test(Arc::new(MemFs::new()), PathBuf::from("/repo/s"));
    }

    #[test]
    fn get_many_answers_in_the_order_asked_each_key_its_own_result() {
        each_fs(|fs, root| {
            let b = LocalStore::create(fs, root).unwrap();
            let keys: Vec<String> = (0..40).map(|n| format!("k/{n}")).collect();
            for (n, key) in keys.iter().enumerate() {
                MetaStore::put(&b, key, n.to_string().as_bytes()).unwrap();
            }
            let mut asked: Vec<String> = keys.iter().rev().cloned().collect();
            asked.insert(7, "k/absent".into());
            let got = crate::store::get_many(&b, &asked, 6);
            assert_eq!(got.len(), asked.len());
            for (key, got) in asked.iter().zip(got) {
                match key.strip_prefix("k/").unwrap().parse::<usize>() {
                    Ok(n) => assert_eq!(got.unwrap(), n.to_string().as_bytes()),
                    Err(_) => assert!(crate::store::is_not_found(&got.unwrap_err())),
                }
            }
        });
    }

    #[test]
    fn create_get_range_list_delete() {
        each_fs(|fs, root| {
            let b = LocalStore::create(fs, root).unwrap();
            b.create("ab/one.pack", b"hello world").unwrap();
            MetaStore::put(&b, "top", b"x").unwrap();
            assert_eq!(PackStore::get(&b, "ab/one.pack").unwrap(), b"hello world");
            assert_eq!(
                PackStore::get_range(&b, "ab/one.pack", 6, 5).unwrap(),
                b"world"
            );
            assert!(PackStore::get_range(&b, "ab/one.pack", 6, 6).is_err());
            // A length from damaged metadata is refused, not allocated.
            assert!(PackStore::get_range(&b, "ab/one.pack", 0, usize::MAX / 2).is_err());
            assert_eq!(b.size("ab/one.pack").unwrap(), 11);
            let mut keys = PackStore::list(&b, "").unwrap();
            keys.sort();
            assert_eq!(keys, ["ab/one.pack", "top"]);
            assert_eq!(PackStore::list(&b, "ab/").unwrap(), ["ab/one.pack"]);
            PackStore::delete(&b, "ab/one.pack").unwrap();
            PackStore::delete(&b, "ab/one.pack").unwrap();
            assert!(is_not_found(
                &PackStore::get(&b, "ab/one.pack").unwrap_err()
            ));
        });
    }

    #[test]
    fn packs_are_never_replaced_and_metadata_is() {
        each_fs(|fs, root| {
            let b = LocalStore::create(fs, root).unwrap();
            b.create("p", b"first").unwrap();
            assert!(b.create("p", b"second").is_err());
            assert_eq!(PackStore::get(&b, "p").unwrap(), b"first");
            MetaStore::put(&b, "m", b"first").unwrap();
            MetaStore::put(&b, "m", b"second").unwrap();
            assert_eq!(MetaStore::get(&b, "m").unwrap(), b"second");
        });
    }

    #[test]
    fn of_many_creating_one_key_at_once_exactly_one_writes_it() {
        each_fs(|fs, root| {
            let b = LocalStore::create(fs, root).unwrap();
            for round in 0..20 {
                let key = format!("index/manifest.{round}");
                let won: Vec<usize> = std::thread::scope(|scope| {
                    let tries: Vec<_> = (0..6usize)
                        .map(|n| {
                            let (b, key) = (&b, &key);
                            scope.spawn(move || {
                                b.create_if_absent(key, n.to_string().as_bytes())
                                    .unwrap()
                                    .then_some(n)
                            })
                        })
                        .collect();
                    tries
                        .into_iter()
                        .filter_map(|t| t.join().unwrap())
                        .collect()
                });
                assert_eq!(won.len(), 1, "round {round}: {won:?}");
                let kept = MetaStore::get(&b, &key).unwrap();
                assert_eq!(kept, won[0].to_string().as_bytes());
            }
            // No temporary file is left behind by the ones that lost.
            assert_eq!(MetaStore::list(&b, "index/").unwrap().len(), 20);
        });
    }

    #[test]
    fn keys_that_would_leave_the_root_are_refused() {
        each_fs(|fs, root| {
            let b = LocalStore::create(fs, root).unwrap();
            for key in ["../x", "/etc/passwd", "a//b", "", "a/../../b"] {
                assert!(b.create(key, b"x").is_err(), "{key}");
                assert!(MetaStore::put(&b, key, b"x").is_err(), "{key}");
            }
        });
    }

    #[test]
    fn what_a_store_wrote_survives_a_crash_on_the_memory_fs() {
        let fs = Arc::new(MemFs::new());
        let b = LocalStore::create(fs.clone(), "/repo/shards/00").unwrap();
        b.create("ab/one.pack", b"pack").unwrap();
        MetaStore::put(&b, "config", b"v1").unwrap();
        MetaStore::put(&b, "config", b"v2").unwrap();
        MetaStore::put(&b, "snapshots/forgotten", b"x").unwrap();
        MetaStore::delete(&b, "snapshots/forgotten").unwrap();
        let crashed = LocalStore::open(Arc::new(fs.crash_image()), "/repo/shards/00").unwrap();
        assert_eq!(PackStore::get(&crashed, "ab/one.pack").unwrap(), b"pack");
        assert_eq!(MetaStore::get(&crashed, "config").unwrap(), b"v2");
        assert!(MetaStore::list(&crashed, "snapshots/").unwrap().is_empty());
    }
}
