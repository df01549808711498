//! The library's one error type.
//!
//! Every variant carries what a user needs to act on it: the path, the chunk
//! id, the snapshot, the expected and found format version. The binary turns
//! these into one-line messages and exit codes; the library never panics on
//! bytes read from disk, it returns [`Error::Corrupt`] instead.

use std::path::PathBuf;

use crate::id::ChunkId;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// No repository at the given path.
    #[error("no dedup repository at {0} (run `dedup init` first)")]
    NoRepository(PathBuf),

    /// A repository already exists where `init` was asked to create one.
    #[error("a dedup repository already exists at {0}")]
    AlreadyExists(PathBuf),

    /// The repository was written by a format this build does not read.
    #[error(
        "{path}: repository format version {found}, this build reads versions 1 to {expected}"
    )]
    FormatVersion {
        /// The config file.
        path: PathBuf,
        /// The newest version this build understands.
        expected: u32,
        /// The version found on disk.
        found: u32,
    },

    /// A user-supplied parameter is out of range or inconsistent.
    #[error("invalid {what}: {reason}")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// Bytes read from disk do not decode.
    #[error("corrupt {what} ({location}): {reason}")]
    Corrupt {
        /// The kind of object (pack trailer, tree, snapshot record, ...).
        what: &'static str,
        /// Where it was read from (a path or an id).
        location: String,
        /// What was wrong.
        reason: String,
    },

    /// A chunk's bytes do not hash to its id.
    #[error("chunk {id} read from {location} does not match its id (found {found})")]
    ChunkMismatch {
        /// The expected id.
        id: ChunkId,
        /// The SHA-256 of the bytes actually read.
        found: ChunkId,
        /// The pack the bytes came from.
        location: String,
    },

    /// A chunk the repository should hold is not in the index.
    #[error("chunk {0} is not in the index")]
    MissingChunk(ChunkId),

    /// No snapshot matches the given id or prefix.
    #[error("no snapshot matches {0:?}")]
    UnknownSnapshot(String),

    /// A snapshot prefix matches more than one snapshot.
    #[error("snapshot prefix {0:?} is ambiguous")]
    AmbiguousSnapshot(String),

    /// A path inside a snapshot that names nothing there.
    #[error("snapshot {snapshot} has no {path:?}: {reason}")]
    NotInSnapshot {
        /// The snapshot (short id).
        snapshot: String,
        /// The path asked for.
        path: String,
        /// Where the path stopped leading anywhere.
        reason: String,
    },

    /// The repository holds no snapshot (for `latest`).
    #[error("the repository holds no snapshot yet")]
    NoSnapshots,

    /// No snapshot passes the `--host`, `--tag` and `--path` filters given.
    #[error("no snapshot matches {0}")]
    NoSnapshotMatches(String),

    /// A restore destination that is neither absent nor empty.
    #[error("restore destination {0} exists and is not empty")]
    DestinationNotEmpty(PathBuf),

    /// A snapshot entry whose name would leave the restore destination.
    #[error("refusing unsafe name {name:?} in snapshot: {reason}")]
    UnsafeName {
        /// The offending name, lossily printed.
        name: String,
        /// Why it is unsafe.
        reason: &'static str,
    },

    /// Another process holds the writer lock.
    #[error("repository is locked by {holder} ({path}); try again when it finishes")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: String,
    },

    /// An object store failed after its retries, or could not be reached,
    /// or refused a request (credentials, missing bucket, ...).
    #[error("object store {location}: {message}")]
    ObjectStore {
        /// The store's URL (`s3://bucket/prefix`): a shard's or a home's.
        location: String,
        /// What was being done and the store's answer.
        message: String,
    },

    /// A shard cannot be used: its folder is missing, holds no marker
    /// (a disk not mounted), or belongs to something else.
    #[error("shard {shard} ({location}) is unavailable: {reason}")]
    ShardUnavailable {
        /// The shard.
        shard: crate::id::ShardId,
        /// Where it should be.
        location: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// No key file of the repository opens with the password given.
    #[error(
        "wrong password: no key of this repository opens with it (or its key files are damaged)"
    )]
    WrongPassword,

    /// An encrypted repository without any key file.
    #[error(
        "the repository is encrypted but has no key file in keys/ (restore keys/ from a copy)"
    )]
    NoKey,

    /// A password was given for a repository whose config says it is not
    /// encrypted: refused, so that a replaced config cannot make a client
    /// that expects encryption store plaintext.
    #[error("{0} is not encrypted, but a password was given for it: refused, in case its config was replaced (give no password for a plain repository; for an encrypted one, restore config and keys/ from a copy)")]
    PasswordForPlain(PathBuf),

    /// The password opens only key files the repository no longer lists
    /// (removed by `key remove` or `key passwd`, and put back).
    #[error("key file {0} was removed from this repository (`key remove` or `key passwd`): it opens nothing, even put back")]
    RevokedKey(String),

    /// An encrypted repository was opened without a password source.
    #[error("the repository is encrypted: give its password with --password-file, $DEDUP_PASSWORD or $DEDUP_PASSWORD_COMMAND")]
    NoPassword,

    /// Maintenance that deletes (gc, forget --prune) refuses to while
    /// something it must mark (a snapshot record, a tree) cannot be read:
    /// the data only that thing reaches would look like garbage.
    #[error("{command} deletes nothing: {reason}")]
    WouldLoseData {
        /// The command that refused.
        command: &'static str,
        /// What cannot be read, and the way out.
        reason: String,
    },

    /// The RocksDB index reported an error.
    #[error("index {path}: {message}")]
    Index {
        /// The index directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A decode failure of on-disk bytes.
    pub fn corrupt(
        what: &'static str,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            what,
            location: location.into(),
            reason: reason.into(),
        }
    }

    /// A refused user parameter.
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            what,
            reason: reason.into(),
        }
    }
}

impl From<crate::id::ParseIdError> for Error {
    fn from(e: crate::id::ParseIdError) -> Self {
        Error::invalid(e.what, e.reason)
    }
}

/// Adds a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
