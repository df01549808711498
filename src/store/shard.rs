//! A shard's identity, and what stands in for a shard that is not there.
//!
//! Every shard holds a small file, [`MARKER`], naming the repository and the
//! shard id it belongs to. It is written when the shard joins (`init`,
//! `shard add`) and read when a repository opens, so that an unmounted
//! disk (an empty mount point), a folder of another repository or the
//! wrong bucket prefix is never taken for the shard: nothing is written
//! there, and reads say plainly what is wrong instead of reporting every
//! pack missing. A shard that cannot be used is opened as
//! [`Unavailable`], whose every call fails with that reason, so the other
//! shards keep working.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ring::ShardId;
use crate::store::{is_not_found, PackStore};
use crate::Mode;

/// The marker's key at a shard's root.
pub const MARKER: &str = "dedup-shard";

/// What the marker says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMarker {
    /// The repository's id (from its config).
    pub repository_id: String,
    /// The shard's id in that repository.
    pub shard: ShardId,
}

impl ShardMarker {
    /// Reads the marker of `store`: `None` when it has none.
    pub fn read(store: &dyn PackStore) -> Result<Option<Self>> {
        match store.get(MARKER) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt("shard marker", store.location(), e.to_string())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes this marker to `store`, durably (once: a marker never changes).
    pub fn write(&self, store: &dyn PackStore) -> Result<()> {
        store.create(MARKER, &serde_json::to_vec(self).expect("serialises"))
    }
}

impl std::fmt::Display for ShardMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} of repository {}",
            self.shard, self.repository_id
        )
    }
}

/// A shard that cannot be used: every call fails with why.
#[derive(Debug)]
pub struct Unavailable {
    /// The shard.
    pub shard: ShardId,
    /// Where it should be.
    pub location: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl Unavailable {
    /// The error every call on it returns.
    pub fn error(&self) -> Error {
        Error::ShardUnavailable {
            shard: self.shard,
            location: self.location.clone(),
            reason: self.reason.clone(),
        }
    }
}

impl PackStore for Unavailable {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn create(&self, _key: &str, _data: &[u8]) -> Result<()> {
        Err(self.error())
    }
    fn get(&self, _key: &str) -> Result<Vec<u8>> {
        Err(self.error())
    }
    fn get_range(&self, _key: &str, _offset: u64, _len: usize) -> Result<Vec<u8>> {
        Err(self.error())
    }
    fn size(&self, _key: &str) -> Result<u64> {
        Err(self.error())
    }
    fn list(&self, _prefix: &str) -> Result<Vec<String>> {
        Err(self.error())
    }
    fn delete(&self, _key: &str) -> Result<()> {
        Err(self.error())
    }
    fn sweep_unfinished(&self, _mode: Mode) -> Result<u64> {
        Err(self.error())
    }
    fn unavailable(&self) -> Option<&Unavailable> {
        Some(self)
    }
}
