//! A [`Backend`] over a local directory.
//!
//! Durable writes happen in one place, [`LocalBackend::put`]: write a
//! temporary file beside the target, fsync it, rename it over the target,
//! then fsync the folder so the rename itself survives a crash. Temporary
//! files end in `.tmp`; a crash can leave one behind, and listing skips them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::store::backend::Backend;
use crate::store::faults::FaultPlan;
use std::sync::Arc;

/// Suffix of unfinished writes.
const TMP_SUFFIX: &str = ".tmp";

/// Open read handles kept for ranged reads; beyond this many, all are
/// dropped and reopened on demand.
const MAX_HANDLES: usize = 256;

/// A backend rooted at a directory.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
    faults: Option<Arc<FaultPlan>>,
    /// Files opened by `get_range`, so restoring many small files does not
    /// open the same pack once per file. Values are never modified in
    /// place, so a cached handle always reads the current bytes.
    handles: Arc<Mutex<HashMap<PathBuf, Arc<File>>>>,
}

impl LocalBackend {
    /// A backend over `root`, which is created (with parents) if absent.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).at(&root)?;
        Ok(LocalBackend {
            root,
            faults: None,
            handles: Arc::default(),
        })
    }

    /// A backend over an existing directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let meta = fs::metadata(&root).at(&root)?;
        if !meta.is_dir() {
            return Err(Error::io(
                &root,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(LocalBackend {
            root,
            faults: None,
            handles: Arc::default(),
        })
    }

    /// Routes every durable step through `plan` (for crash tests).
    pub fn with_faults(mut self, plan: Arc<FaultPlan>) -> Self {
        self.faults = Some(plan);
        self
    }

    fn step(&self, what: &str, path: &Path) -> Result<()> {
        match &self.faults {
            Some(plan) => plan.step(what).at(path),
            None => Ok(()),
        }
    }

    /// The directory this backend lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        // Keys come from the engine, but refuse anything that could leave the
        // root rather than trust every caller.
        if key.is_empty()
            || key.starts_with('/')
            || key.split('/').any(|c| c.is_empty() || c == "..")
        {
            return Err(Error::invalid("storage key", format!("{key:?}")));
        }
        Ok(self.root.join(key))
    }
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).at(&dir)?;
            if let Some(grandparent) = dir.parent() {
                sync_dir(grandparent)?;
            }
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}{TMP_SUFFIX}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            self.step("write", &tmp)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .at(&tmp)?;
            file.write_all(data).at(&tmp)?;
            self.step("fsync", &tmp)?;
            file.sync_all().at(&tmp)?;
            self.step("rename", &path)?;
            fs::rename(&tmp, &path).at(&path)?;
            self.step("fsync dir", &dir)?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        fs::read(&path).at(&path)
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        let cached = self
            .handles
            .lock()
            .expect("handles lock")
            .get(&path)
            .cloned();
        let file = match cached {
            Some(f) => f,
            None => {
                let f = Arc::new(File::open(&path).at(&path)?);
                let mut handles = self.handles.lock().expect("handles lock");
                if handles.len() >= MAX_HANDLES {
                    handles.clear();
                }
                handles.insert(path.clone(), f.clone());
                f
            }
        };
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).at(&path)?;
        Ok(buf)
    }

    fn size(&self, key: &str) -> Result<u64> {
        let path = self.path(key)?;
        Ok(fs::metadata(&path).at(&path)?.len())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.at(&dir)?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // never written by the engine
                };
                let key = format!("{rel}{name}");
                let kind = entry.file_type().at(entry.path())?;
                if kind.is_dir() {
                    let folder = format!("{key}/");
                    if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                        stack.push((entry.path(), folder));
                    }
                } else if kind.is_file() && key.starts_with(prefix) && !key.ends_with(TMP_SUFFIX) {
                    out.push(key);
                }
            }
        }
        Ok(out)
    }

    fn sweep_unfinished(&self, dry_run: bool) -> Result<u64> {
        let mut freed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).at(&dir)? {
                let entry = entry.at(&dir)?;
                let path = entry.path();
                let kind = entry.file_type().at(&path)?;
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() && path.to_string_lossy().ends_with(TMP_SUFFIX) {
                    freed += entry.metadata().at(&path)?.len();
                    if !dry_run {
                        self.step("delete", &path)?;
                        fs::remove_file(&path).at(&path)?;
                    }
                }
            }
        }
        Ok(freed)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        self.step("delete", &path)?;
        self.handles.lock().expect("handles lock").remove(&path);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::is_not_found;

    #[test]
    fn put_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(dir.path().join("s")).unwrap();
        b.put("ab/one.pack", b"hello world").unwrap();
        b.put("top", b"x").unwrap();
        assert_eq!(b.get("ab/one.pack").unwrap(), b"hello world");
        assert_eq!(b.get_range("ab/one.pack", 6, 5).unwrap(), b"world");
        assert!(b.get_range("ab/one.pack", 6, 6).is_err());
        assert_eq!(b.size("ab/one.pack").unwrap(), 11);
        let mut keys = b.list("").unwrap();
        keys.sort();
        assert_eq!(keys, ["ab/one.pack", "top"]);
        assert_eq!(b.list("ab/").unwrap(), ["ab/one.pack"]);
        b.delete("ab/one.pack").unwrap();
        b.delete("ab/one.pack").unwrap();
        assert!(is_not_found(&b.get("ab/one.pack").unwrap_err()));
    }

    #[test]
    fn keys_that_would_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(dir.path()).unwrap();
        for key in ["../x", "/etc/passwd", "a//b", "", "a/../../b"] {
            assert!(b.put(key, b"x").is_err(), "{key}");
        }
    }
}
