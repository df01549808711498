//! An in-memory file system that keeps what was written apart from what
//! is durable, for crash tests (after redb's `CrashState`).
//!
//! A file's bytes become durable when it is fsynced; a folder's entries
//! (files and folders created, renamed or removed in it) when the folder is
//! fsynced. [`MemFs::crash_image`] is what a power cut would leave: only
//! durable state, and nothing reachable only through a name that was never
//! made durable. So a store that forgets one fsync, of a file or of a
//! folder, loses data in the crash image, and a crash test sees it; the
//! real disk keeps unsynced writes and never could.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path};
use std::sync::Mutex;

use crate::store::fs::{FileKind, Fs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir(usize),
}

#[derive(Clone, Debug, Default)]
struct FileNode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
struct DirNode {
    live: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
}

#[derive(Clone, Debug)]
struct State {
    files: Vec<FileNode>,
    /// Folder 0 is `/`.
    dirs: Vec<DirNode>,
}

/// See the module docs. Paths must be absolute.
#[derive(Debug)]
pub struct MemFs {
    state: Mutex<State>,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn names(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(
                n.to_str()
                    .ok_or_else(|| io::Error::other("a name that is not UTF-8"))?
                    .to_string(),
            ),
            _ => {
                return Err(io::Error::other(format!(
                    "{} is not a plain absolute path",
                    path.display()
                )))
            }
        }
    }
    if !path.is_absolute() {
        return Err(io::Error::other(format!(
            "{} is not absolute",
            path.display()
        )));
    }
    Ok(out)
}

impl State {
    /// Moves the entry `from` to `to`, replacing what is there when
    /// `replace`, else failing with `AlreadyExists`.
    fn rename(&mut self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        if !replace && self.dirs[to_dir].live.contains_key(&to_name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let node = self.dirs[from_dir]
            .live
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        self.dirs[to_dir].live.insert(to_name, node);
        Ok(())
    }

    fn resolve(&self, path: &Path) -> io::Result<Node> {
        let mut node = Node::Dir(0);
        for name in names(path)? {
            let Node::Dir(d) = node else {
                return Err(not_found(path));
            };
            node = *self.dirs[d]
                .live
                .get(&name)
                .ok_or_else(|| not_found(path))?;
        }
        Ok(node)
    }

    /// The folder holding `path`, and `path`'s name in it.
    fn parent(&self, path: &Path) -> io::Result<(usize, String)> {
        let mut all = names(path)?;
        let name = all
            .pop()
            .ok_or_else(|| io::Error::other("the root has no parent"))?;
        let mut dir = 0;
        for n in all {
            match self.dirs[dir].live.get(&n) {
                Some(Node::Dir(d)) => dir = *d,
                _ => return Err(not_found(path)),
            }
        }
        Ok((dir, name))
    }

    fn file(&self, path: &Path) -> io::Result<usize> {
        match self.resolve(path)? {
            Node::File(f) => Ok(f),
            Node::Dir(_) => Err(io::Error::other(format!("{} is a folder", path.display()))),
        }
    }

    fn dir(&self, path: &Path) -> io::Result<usize> {
        match self.resolve(path)? {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a folder", path.display()),
            )),
        }
    }
}

impl MemFs {
    /// An empty file system: only `/`.
    pub fn new() -> Self {
        MemFs {
            state: Mutex::new(State {
                files: Vec::new(),
                dirs: vec![DirNode::default()],
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memfs lock")
    }

    /// What a power cut now would leave: only durable bytes and entries.
    #[must_use]
    pub fn crash_image(&self) -> MemFs {
        let mut state = self.state().clone();
        for f in &mut state.files {
            f.live = f.durable.clone();
        }
        for d in &mut state.dirs {
            d.live = d.durable.clone();
        }
        MemFs {
            state: Mutex::new(state),
        }
    }

    /// What a killed process would leave: everything written so far.
    #[must_use]
    pub fn live_image(&self) -> MemFs {
        MemFs {
            state: Mutex::new(self.state().clone()),
        }
    }
}

impl Fs for MemFs {
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        let (dir, name) = s.parent(path)?;
        if s.dirs[dir].live.contains_key(&name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        s.files.push(FileNode {
            live: data.to_vec(),
            durable: Vec::new(),
        });
        let f = s.files.len() - 1;
        s.dirs[dir].live.insert(name, Node::File(f));
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        let f = s.file(path)?;
        let file = &mut s.files[f];
        file.durable.clone_from(&file.live);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.state().rename(from, to, true)
    }

    fn rename_new(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.state().rename(from, to, false)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        let d = s.dir(path)?;
        let dir = &mut s.dirs[d];
        dir.durable.clone_from(&dir.live);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.file(path)?;
        let (dir, name) = s.parent(path)?;
        s.dirs[dir].live.remove(&name);
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        let (dir, name) = s.parent(path)?;
        if s.dirs[dir].live.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        s.dirs.push(DirNode::default());
        let d = s.dirs.len() - 1;
        s.dirs[dir].live.insert(name, Node::Dir(d));
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state();
        Ok(s.files[s.file(path)?].live.clone())
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.state();
        let bytes = &s.files[s.file(path)?].live;
        usize::try_from(offset)
            .ok()
            .and_then(|start| bytes.get(start..start.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
    }

    fn kind(&self, path: &Path) -> io::Result<FileKind> {
        Ok(match self.state().resolve(path)? {
            Node::File(_) => FileKind::File,
            Node::Dir(_) => FileKind::Dir,
        })
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let s = self.state();
        Ok(s.files[s.file(path)?].live.len() as u64)
    }

    /// Files keep no times here: every one was written just now, so
    /// nothing waits out a grace period in a crash test.
    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        self.state().file(path)?;
        Ok(std::time::SystemTime::now())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<(String, FileKind)>> {
        let s = self.state();
        let d = s.dir(path)?;
        Ok(s.dirs[d]
            .live
            .iter()
            .map(|(name, node)| {
                let kind = match node {
                    Node::File(_) => FileKind::File,
                    Node::Dir(_) => FileKind::Dir,
                };
                (name.clone(), kind)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn only_synced_bytes_and_entries_survive_a_crash() {
        let fs = MemFs::new();
        fs.create_dir(p("/a")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs.write(p("/a/synced"), b"one").unwrap();
        fs.sync_file(p("/a/synced")).unwrap();
        fs.write(p("/a/unsynced"), b"two").unwrap();
        fs.sync_dir(p("/a")).unwrap();
        fs.write(p("/a/late"), b"three").unwrap();
        fs.sync_file(p("/a/late")).unwrap();

        let live = fs.live_image();
        assert_eq!(live.read(p("/a/late")).unwrap(), b"three");
        let crashed = fs.crash_image();
        assert_eq!(crashed.read(p("/a/synced")).unwrap(), b"one");
        // Named durably, but its bytes were never synced.
        assert_eq!(crashed.read(p("/a/unsynced")).unwrap(), b"");
        // Synced bytes, but the name was never made durable.
        assert!(crashed.read(p("/a/late")).is_err());
    }

    #[test]
    fn a_rename_survives_only_once_its_folder_is_synced() {
        let fs = MemFs::new();
        fs.write(p("/f.tmp"), b"new").unwrap();
        fs.sync_file(p("/f.tmp")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs.rename(p("/f.tmp"), p("/f")).unwrap();
        let crashed = fs.crash_image();
        assert!(crashed.read(p("/f")).is_err());
        assert_eq!(crashed.read(p("/f.tmp")).unwrap(), b"new");
        fs.sync_dir(p("/")).unwrap();
        assert_eq!(fs.crash_image().read(p("/f")).unwrap(), b"new");
    }

    #[test]
    fn a_folder_not_synced_into_its_parent_is_lost_with_its_files() {
        let fs = MemFs::new();
        fs.create_dir(p("/d")).unwrap();
        fs.write(p("/d/x"), b"x").unwrap();
        fs.sync_file(p("/d/x")).unwrap();
        fs.sync_dir(p("/d")).unwrap();
        assert!(fs.crash_image().read(p("/d/x")).is_err());
        fs.sync_dir(p("/")).unwrap();
        assert_eq!(fs.crash_image().read(p("/d/x")).unwrap(), b"x");
    }

    #[test]
    fn reads_listings_and_errors_behave_like_a_file_system() {
        let fs = MemFs::new();
        fs.create_dir(p("/d")).unwrap();
        assert_eq!(
            fs.create_dir(p("/d")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs.write(p("/d/f"), b"hello").unwrap();
        assert_eq!(fs.read_at(p("/d/f"), 1, 3).unwrap(), b"ell");
        assert!(fs.read_at(p("/d/f"), 3, 3).is_err());
        assert_eq!(fs.len(p("/d/f")).unwrap(), 5);
        assert_eq!(fs.kind(p("/d")).unwrap(), FileKind::Dir);
        assert_eq!(
            fs.read_dir(p("/d")).unwrap(),
            [("f".into(), FileKind::File)]
        );
        assert_eq!(
            fs.read(p("/nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs.remove_file(p("/d/f")).unwrap();
        assert!(fs.read_dir(p("/d")).unwrap().is_empty());
        assert!(fs.write(p("relative"), b"").is_err());
    }
}
