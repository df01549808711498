//! Snapshot records: what one `ingest` produced.
//!
//! A record is a small JSON document (so a person can read it with `cat`)
//! naming the root tree and carrying the ingest's summary. Its id is the
//! SHA-256 of its bytes (in an encrypted repository, their keyed hash:
//! `repo::encode_record`); it is written to `snapshots/<id>` and copied into
//! the index. Written only after every chunk and tree it reaches is indexed
//! (invariant 3), never modified afterwards.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::ChunkId;

/// The record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

pub use crate::id::SnapshotId;

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Record format version.
    pub version: u32,
    /// When the ingest started, RFC 3339 UTC.
    pub time: String,
    /// The same instant as nanoseconds since the epoch (for sorting).
    pub time_unix_ns: u128,
    /// The machine that ran the ingest (or the name `ingest --host` gave).
    pub hostname: String,
    /// The user who ran the ingest (empty in records older than this field).
    #[serde(default)]
    pub username: String,
    /// The paths given to ingest, made absolute (records older than tags
    /// and users hold them as given).
    pub paths: Vec<String>,
    /// Labels given with `ingest --tag`, sorted, each once.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The snapshot of the same host and paths this one followed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// The root tree.
    pub tree: ChunkId,
    /// A tree of one entry, `root`: the folder ingested, with its own mode,
    /// time, owner and extended attributes, pointing at `tree` (absent for
    /// several paths, a file, or a stream, and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<ChunkId>,
    /// What the ingest found and stored.
    pub summary: IngestSummary,
    /// The newest snapshot the writer's index held when it wrote this one
    /// (any host): a link in the chain of records that makes a record
    /// deleted from the store evident to whoever reads one written after
    /// it (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<SnapshotId>,
}

/// Counters from one ingest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestSummary {
    /// Regular files stored.
    pub files: u64,
    /// Directories stored (the roots included).
    pub dirs: u64,
    /// Symbolic links stored.
    pub symlinks: u64,
    /// Bytes of file content seen.
    pub logical_bytes: u64,
    /// File-data chunk references in the snapshot (with repeats).
    pub total_chunks: u64,
    /// Chunks (and trees) this ingest added to the repository.
    pub new_chunks: u64,
    /// Uncompressed bytes this ingest added.
    pub new_bytes: u64,
    /// Bytes this ingest added on disk, after compression.
    pub new_stored_bytes: u64,
    /// Bytes of file content that were already stored.
    pub reused_bytes: u64,
    /// Wall-clock seconds the ingest took.
    pub seconds: f64,
    /// Filter effectiveness during this ingest.
    pub bloom: BloomStats,
    /// Entries left out, each with the reason.
    pub skipped: Vec<Skipped>,
    /// Files whose chunk lists came from the file cache (not re-read).
    #[serde(default)]
    pub unchanged_files: u64,
    /// Files whose size changed while they were read (stored as read).
    #[serde(default)]
    pub changed: Vec<String>,
    /// FIFOs and device nodes stored.
    #[serde(default)]
    pub specials: u64,
    /// Entries left out by the exclusion rules (a folder counts once, not
    /// what it holds; a mount point left empty counts once).
    #[serde(default)]
    pub excluded: u64,
}

/// How often the Bloom filter spared an index lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BloomStats {
    /// Chunk ids checked against the filter.
    pub lookups: u64,
    /// Ids the filter called surely new (index lookup skipped).
    pub skipped: u64,
    /// Ids the filter called maybe-seen that the index did not have.
    pub false_positives: u64,
}

/// An entry ingest could not store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its path, lossily printed.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A path as records keep it: absolute (symbolic links not resolved), so
/// `--path` filters and parents match however the path was typed.
pub fn record_path(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

impl SnapshotRecord {
    /// The tree everything the snapshot holds is reached from: the root
    /// folder's own entry when recorded, else the root tree (what gc and
    /// verify walk).
    pub fn top(&self) -> ChunkId {
        self.root.unwrap_or(self.tree)
    }

    /// The record's bytes and id.
    pub fn encode(&self) -> (SnapshotId, Vec<u8>) {
        let bytes = serde_json::to_vec_pretty(self).expect("a record always serialises");
        (SnapshotId::of(&bytes), bytes)
    }

    /// Decodes a record and checks it hashes to `id`.
    pub fn decode(bytes: &[u8], id: &SnapshotId) -> Result<Self> {
        Self::decode_keyed(bytes, id, None)
    }

    /// [`decode`](Self::decode) in a repository whose record names are
    /// keyed: `keyed` is the id its bytes have under the repository's key,
    /// and either that or their plain SHA-256 (a record written before
    /// names were keyed) must be `id`.
    pub fn decode_keyed(bytes: &[u8], id: &SnapshotId, keyed: Option<SnapshotId>) -> Result<Self> {
        let found = SnapshotId::of(bytes);
        if found != *id && keyed != Some(*id) {
            return Err(Error::corrupt(
                "snapshot record",
                id.to_hex(),
                format!("contents hash to {found}"),
            ));
        }
        let record: SnapshotRecord = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("snapshot record", id.to_hex(), e.to_string()))?;
        if record.version != RECORD_VERSION {
            return Err(Error::corrupt(
                "snapshot record",
                id.to_hex(),
                format!("unknown record version {}", record.version),
            ));
        }
        Ok(record)
    }

    /// The folder of record files in the repository.
    pub const FOLDER: &'static str = "snapshots/";

    /// The key of a record file in the repository.
    pub fn key(id: &SnapshotId) -> String {
        format!("{}{}", Self::FOLDER, id.to_hex())
    }

    /// The snapshot a record file's key names, if it names one.
    pub fn id_of_key(key: &str) -> Option<SnapshotId> {
        key.strip_prefix(Self::FOLDER)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tampering_is_caught() {
        let rec = SnapshotRecord {
            version: RECORD_VERSION,
            time: "2026-01-01T00:00:00Z".into(),
            time_unix_ns: 1,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/x".into()],
            tags: vec!["t".into()],
            parent: Some(SnapshotId::of(b"p")),
            tree: ChunkId::of(b"t"),
            root: None,
            summary: IngestSummary::default(),
            prev: None,
        };
        let (id, bytes) = rec.encode();
        assert_eq!(SnapshotRecord::decode(&bytes, &id).unwrap(), rec);
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(SnapshotRecord::decode(&bad, &id).is_err());
    }

    #[test]
    fn a_keyed_name_or_the_plain_one_is_accepted_nothing_else() {
        let (plain, bytes) = SnapshotRecord {
            version: RECORD_VERSION,
            time: "2026-01-01T00:00:00Z".into(),
            time_unix_ns: 1,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec![],
            tags: vec![],
            parent: None,
            tree: ChunkId::of(b"t"),
            root: None,
            summary: IngestSummary::default(),
            prev: None,
        }
        .encode();
        let keyed = SnapshotId::of(b"what a key would give");
        assert!(SnapshotRecord::decode_keyed(&bytes, &keyed, Some(keyed)).is_ok());
        // Written before names were keyed: still read.
        assert!(SnapshotRecord::decode_keyed(&bytes, &plain, Some(keyed)).is_ok());
        let other = SnapshotId::of(b"another name");
        assert!(SnapshotRecord::decode_keyed(&bytes, &other, Some(keyed)).is_err());
        assert!(SnapshotRecord::decode_keyed(&bytes, &keyed, None).is_err());
    }

    #[test]
    fn records_without_user_tags_or_parent_still_read() {
        let old = br#"{"version":1,"time":"2026-01-01T00:00:00Z","time_unix_ns":1,
            "hostname":"h","paths":["x"],"tree":"0000000000000000000000000000000000000000000000000000000000000000",
            "summary":{"files":0,"dirs":0,"symlinks":0,"logical_bytes":0,"total_chunks":0,
            "new_chunks":0,"new_bytes":0,"new_stored_bytes":0,"reused_bytes":0,"seconds":0.0,
            "bloom":{"lookups":0,"skipped":0,"false_positives":0},"skipped":[]}}"#;
        let rec = SnapshotRecord::decode(old, &SnapshotId::of(old)).unwrap();
        assert_eq!(rec.username, "");
        assert!(rec.tags.is_empty());
        assert_eq!(rec.parent, None);
    }
}
