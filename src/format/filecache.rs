//! The file cache: what a file's chunks were the last time it was read.
//!
//! Re-ingesting an unchanged tree should not re-read it. For every file it
//! reads, ingest records (keyed by the file's absolute path) the file's size,
//! modification time, change time, inode and device, and its chunk list.
//!
//! Paths, inodes and devices belong to the machine that read them, not to
//! the repository, so the cache lives in this machine's cache folder
//! (`~/.cache/dedup/files-<hash of the repository path>`, a small RocksDB),
//! like restic's. It is an optimisation only: deleting it costs one full
//! re-read. The next ingest reuses the chunk list only
//! when all five match and every chunk is still indexed; anything else (a
//! write, a `touch`, a rename over it, a restore from elsewhere, a gc that
//! dropped a chunk) sends the file through the chunker again. The change
//! time is what makes this safe: the kernel updates it on every write and
//! nothing can set it back.
//!
//! ```text
//! value = version:u8(=1) size:u64 mtime_s:i64 mtime_ns:u32 ctime_s:i64 ctime_ns:u32
//!         ino:u64 dev:u64 count:u32 (id[32] len:u32)*
//! ```

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[cfg(feature = "engine")]
use rocksdb::{Options, WriteBatch, DB};

use crate::error::Result;
use crate::format::codec::{Put, Reader};
use crate::id::ChunkId;

/// The identity of a file's content as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: (i64, u32),
    /// Inode change time.
    pub ctime: (i64, u32),
    /// Inode number.
    pub ino: u64,
    /// Device.
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of a file's current metadata.
    pub fn of(meta: &Metadata) -> Self {
        let ns = |n: i64| n.clamp(0, 999_999_999) as u32;
        FileStamp {
            size: meta.len(),
            mtime: (meta.mtime(), ns(meta.mtime_nsec())),
            ctime: (meta.ctime(), ns(meta.ctime_nsec())),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// The cache database of one repository on this machine.
#[cfg(feature = "engine")]
pub struct FileCache {
    db: DB,
}

#[cfg(feature = "engine")]
impl FileCache {
    /// Where versions before cache slots kept the cache of the
    /// repository at `root` (a writer removes it).
    pub fn legacy_dir(root: &Path) -> Option<PathBuf> {
        let root = std::path::absolute(root).ok()?;
        let tag = ChunkId::of(root.as_os_str().as_encoded_bytes()).to_hex();
        Some(
            dirs::cache_dir()?
                .join("dedup")
                .join(format!("files-{}", &tag[..16])),
        )
    }

    /// Opens (creating) the cache at `dir`, which holds paths and so is
    /// made its owner's only (0700).
    pub fn open(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let io = |e| crate::Error::io(dir, e);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(1);
        let db = DB::open(&opts, dir).map_err(|e| crate::Error::Index {
            path: dir.to_path_buf(),
            message: e.into_string(),
        })?;
        Ok(FileCache { db })
    }

    /// Cache values for many paths, in order. A read error counts as a miss.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Vec<u8>>> {
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| r.ok().flatten())
            .collect()
    }

    /// Stores cache values (not synced: losing them costs only a re-read).
    pub fn put_many(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            batch.put(k, v);
        }
        self.db.write(batch).map_err(|e| crate::Error::Index {
            path: self.db.path().to_path_buf(),
            message: e.into_string(),
        })
    }
}

/// Encodes a cache value.
pub fn encode(stamp: &FileStamp, chunks: &[(ChunkId, u32)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(61 + chunks.len() * 36);
    v.put_u8(1);
    v.put_u64(stamp.size);
    v.put_i64(stamp.mtime.0);
    v.put_u32(stamp.mtime.1);
    v.put_i64(stamp.ctime.0);
    v.put_u32(stamp.ctime.1);
    v.put_u64(stamp.ino);
    v.put_u64(stamp.dev);
    v.put_chunk_list(chunks);
    v
}

/// Decodes a cache value; `location` names it in errors.
pub fn decode(bytes: &[u8], location: &str) -> Result<(FileStamp, Vec<(ChunkId, u32)>)> {
    let mut r = Reader::new(bytes, "file cache entry", location);
    if r.u8()? != 1 {
        return Err(r.error("unknown version"));
    }
    let stamp = FileStamp {
        size: r.u64()?,
        mtime: (r.i64()?, r.u32()?),
        ctime: (r.i64()?, r.u32()?),
        ino: r.u64()?,
        dev: r.u64()?,
    };
    let (chunks, total) = r.chunk_list()?;
    r.finish()?;
    if total != stamp.size {
        return Err(crate::Error::corrupt(
            "file cache entry",
            location,
            "chunk lengths do not add up",
        ));
    }
    Ok((stamp, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_an_error() {
        let stamp = FileStamp {
            size: 7,
            mtime: (1, 2),
            ctime: (3, 4),
            ino: 5,
            dev: 6,
        };
        let chunks = vec![(ChunkId::of(b"a"), 3), (ChunkId::of(b"b"), 4)];
        let bytes = encode(&stamp, &chunks);
        assert_eq!(decode(&bytes, "t").unwrap(), (stamp, chunks));
        assert!(decode(&bytes[..bytes.len() - 1], "t").is_err());
        let mut bad = bytes.clone();
        bad[1] = 8; // size no longer matches the chunks
        assert!(decode(&bad, "t").is_err());
    }
}
