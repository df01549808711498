//! Where a repository lives (its *home*): a folder, or a prefix of an
//! S3-compatible object store (`s3://bucket/prefix`). Both are reached
//! through the same seam, [`MetaStore`] for the repository's own files and
//! [`PackStore`](crate::store::PackStore) for the packs of the shards
//! inside it; only the locks differ, since an object store has no `flock`.

use std::path::Path;
use std::sync::Arc;

use crate::engine::lock::{ReadersLock, WriteLock};
#[cfg(feature = "s3")]
use crate::engine::objlock::{Kind, ObjectLock};
use crate::error::{Error, Result};
use crate::format::config::OBJECT_STORE_SCHEME;
#[cfg(feature = "s3")]
use crate::store::object::ObjectStoreBackend;
use crate::store::{is_not_found, Fs, LocalStore, MetaStore};

/// An opened home.
#[derive(Clone)]
pub(crate) enum Home {
    /// A folder, reached through a file system.
    Folder(Arc<LocalStore>),
    /// A prefix of an object store.
    #[cfg(feature = "s3")]
    Object(Arc<ObjectStoreBackend>),
}

/// True when `root` names an object store rather than a folder.
pub(crate) fn is_url(root: &Path) -> bool {
    root.to_str()
        .is_some_and(|s| s.starts_with(OBJECT_STORE_SCHEME))
}

impl Home {
    /// Opens the home at `root` (a folder on `fs`, or an `s3://` URL whose
    /// settings come from the `AWS_*` environment variables). With
    /// `create`, a missing folder is made; otherwise it is `NoRepository`.
    pub(crate) fn open(root: &Path, fs: &Arc<dyn Fs>, create: bool) -> Result<Home> {
        if is_url(root) {
            #[cfg(feature = "s3")]
            {
                let url = root.to_str().expect("checked by is_url");
                let store = ObjectStoreBackend::new(url, &std::collections::BTreeMap::new())?;
                return Ok(Home::Object(Arc::new(store)));
            }
            #[cfg(not(feature = "s3"))]
            return Err(Error::invalid(
                "repository",
                format!("{} needs a build with the `s3` feature", root.display()),
            ));
        }
        let store = if create {
            LocalStore::create(fs.clone(), root)
        } else {
            LocalStore::open(fs.clone(), root)
        };
        match store {
            Err(e) if is_not_found(&e) => Err(Error::NoRepository(root.to_path_buf())),
            other => Ok(Home::Folder(Arc::new(other?))),
        }
    }

    /// The home's files.
    pub(crate) fn files(&self) -> Arc<dyn MetaStore> {
        match self {
            Home::Folder(s) => s.clone(),
            #[cfg(feature = "s3")]
            Home::Object(s) => s.clone(),
        }
    }

    /// The folder, for a folder home.
    pub(crate) fn folder(&self) -> Option<&Path> {
        match self {
            Home::Folder(s) => Some(s.root()),
            #[cfg(feature = "s3")]
            Home::Object(_) => None,
        }
    }

    /// Everything under the home, for `init`'s check that it is empty.
    pub(crate) fn list_all(&self) -> Result<Vec<String>> {
        self.files().list("")
    }
}

/// What a handle holds on its home while it is open.
pub(crate) enum Hold {
    /// A folder home's writer: `flock`s on `lock` (alone, or shared with
    /// other writers) and on `readers` (tried alone before each delete).
    FolderWriter {
        lock: WriteLock,
        readers: ReadersLock,
    },
    /// A folder home's reader: a shared `flock` on `readers` (`None` when
    /// the folder is read-only media, where nobody deletes).
    FolderReader { _shared: Option<ReadersLock> },
    /// A lock object in an object-store home (see `objlock`).
    #[cfg(feature = "s3")]
    Object(ObjectLock, Kind),
}

impl Hold {
    /// Takes what a writer holds: the lock alone (maintenance), or
    /// `shared` with other writers (ingest, put).
    pub(crate) fn writer(home: &Home, shared: bool) -> Result<Hold> {
        match home {
            Home::Folder(s) => Ok(Hold::FolderWriter {
                lock: WriteLock::acquire(s.root(), shared)?,
                readers: ReadersLock::create(s.root())?,
            }),
            #[cfg(feature = "s3")]
            Home::Object(s) => {
                let kind = if shared {
                    Kind::Shared
                } else {
                    Kind::Exclusive
                };
                Ok(Hold::Object(ObjectLock::take(s.clone(), kind)?, kind))
            }
        }
    }

    /// Takes what a reader holds: before its index is brought up to date,
    /// so that nothing that index will list is deleted while it is open.
    pub(crate) fn reader(home: &Home) -> Result<Hold> {
        match home {
            Home::Folder(s) => Ok(Hold::FolderReader {
                _shared: ReadersLock::share(s.root())?,
            }),
            #[cfg(feature = "s3")]
            Home::Object(s) => Ok(Hold::Object(
                ObjectLock::take(s.clone(), Kind::Reader)?,
                Kind::Reader,
            )),
        }
    }

    /// True for a writer, shared or alone.
    pub(crate) fn is_writer(&self) -> bool {
        match self {
            Hold::FolderWriter { .. } => true,
            Hold::FolderReader { .. } => false,
            #[cfg(feature = "s3")]
            Hold::Object(_, kind) => *kind != Kind::Reader,
        }
    }

    /// True for the writer that holds the lock alone.
    pub(crate) fn is_exclusive(&self) -> bool {
        match self {
            Hold::FolderWriter { lock, .. } => !lock.is_shared(),
            Hold::FolderReader { .. } => false,
            #[cfg(feature = "s3")]
            Hold::Object(_, kind) => *kind == Kind::Exclusive,
        }
    }

    /// Fails when a writer can no longer be sure its lock is held (see
    /// `ObjectLock::check_alive`; a `flock` cannot be lost). Called before
    /// a writer records a snapshot or blob, and before maintenance commits
    /// (`Repository::commit_alone`, whose retired files are then deleted
    /// within the same check) or deletes on its own;
    /// [`after_readers`](Self::after_readers), which may wait long, calls
    /// it itself.
    pub(crate) fn check_alive(&self) -> Result<()> {
        match self {
            #[cfg(feature = "s3")]
            Hold::Object(lock, _) => lock.check_alive(),
            _ => Ok(()),
        }
    }

    /// A writer runs `delete` (of files the index no longer lists) unless a
    /// reader is open; `None` when one is, without running it.
    pub(crate) fn when_alone<T>(&self, delete: impl FnOnce() -> T) -> Result<Option<T>> {
        match self {
            Hold::FolderWriter { readers, .. } => Ok(readers.when_alone(delete)),
            #[cfg(feature = "s3")]
            Hold::Object(lock, Kind::Exclusive) => Ok(if lock.readers_open()? {
                None
            } else {
                Some(delete())
            }),
            _ => Err(not_alone()),
        }
    }

    /// Like [`when_alone`](Self::when_alone), but waits for the readers.
    pub(crate) fn after_readers<T>(&self, delete: impl FnOnce() -> T) -> Result<T> {
        match self {
            Hold::FolderWriter { readers, .. } => readers.after_readers(delete),
            #[cfg(feature = "s3")]
            Hold::Object(lock, Kind::Exclusive) => {
                while lock.readers_open()? {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                lock.check_alive()?;
                Ok(delete())
            }
            _ => Err(not_alone()),
        }
    }
}

fn not_alone() -> Error {
    Error::invalid(
        "repository",
        "deleting needs it opened for maintenance (alone), not read-only or shared",
    )
}
