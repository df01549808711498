//! Blobs: single objects stored and fetched by id (`dedup put` and
//! `dedup get`), outside any snapshot.

use super::writer::ObjectWriter;
use super::{Engine, MAX_BLOB};
use crate::error::{Error, Result};
use crate::format::record::ObjectKind;
use crate::id::ChunkId;

impl Engine {
    /// The work of [`Repository::put`](crate::Repository::put).
    pub fn put(&self, data: &[u8]) -> Result<ChunkId> {
        let _storing = self.storing();
        if data.len() as u64 > MAX_BLOB {
            return Err(Error::invalid(
                "blob",
                format!(
                    "{} bytes is more than put takes (1 GiB); store large data with ingest",
                    data.len()
                ),
            ));
        }
        self.check_writable()?;
        let writer = ObjectWriter::new(self);
        let id = writer.store(data, ObjectKind::Data)?;
        writer.finish()?;
        // The marker makes the blob a garbage-collection root; it is written
        // after the blob is indexed, and survives an index rebuild.
        self.hold.check_alive()?;
        self.files.put(&format!("blobs/{id}"), b"")?;
        self.save_bloom()?;
        Ok(id)
    }

    /// The work of [`Repository::get`](crate::Repository::get).
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.read_object(id)
    }
}
