//! `dedup`: a content-addressable, deduplicating storage engine.
//!
//! Point it at directory trees; each distinct block of data is stored once,
//! any snapshot comes back byte for byte, and reports say what was saved and
//! where. The path of a byte:
//!
//! ```text
//! file ─► chunker (fixed | FastCDC) ─► SHA-256 id ─► Bloom filter ─► RocksDB index
//!      new chunk ─► consistent-hash ring ─► shard ─► pack (zstd) ─► fsync ─► index commit
//! ```
//!
//! ```no_run
//! use dedup::{InitOptions, Quiet, Repository};
//!
//! let repo = Repository::init("/tmp/repo", &InitOptions::default())?;
//! let outcome = repo.ingest(&["/home/me/src".into()], &Quiet)?;
//! println!("snapshot {} ({} new bytes)", outcome.id, outcome.record.summary.new_bytes);
//! repo.restore(&outcome.id, "/tmp/restored".as_ref(), &Quiet)?;
//! println!("{}", repo.report()?);
//! # Ok::<(), dedup::Error>(())
//! ```
//!
//! The on-disk format and the invariants are in `docs/design.md`.

// Without the engine only the formats remain; the index's plumbing idles.
#![cfg_attr(not(feature = "engine"), allow(dead_code, unused_imports))]

pub mod bloom;
pub mod chunker;
mod codec;
pub mod config;
#[cfg(feature = "engine")]
pub mod crypto;
pub mod error;
#[cfg(feature = "engine")]
pub mod estimate;
pub mod filecache;
pub mod id;
pub mod index;
pub mod locality;
pub mod location;
#[cfg(feature = "engine")]
pub mod policy;
#[cfg(feature = "engine")]
pub mod repo;
pub mod ring;
pub mod segment;
pub mod snapshot;
pub mod store;
pub mod units;

/// Whether a maintenance operation changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Do the work.
    Apply,
    /// Only report what would be done; change nothing.
    DryRun,
}

pub use chunker::ChunkerConfig;
pub use config::{Compression, Config, InitOptions, DEFAULT_ZSTD_LEVEL, ZSTD_LEVELS};
pub use error::{Error, Result};
pub use id::{ChunkId, SnapshotId};
#[cfg(feature = "engine")]
pub use repo::{
    Exclusions, GcReport, IngestOptions, IngestOutcome, OpenOptions, Progress, Quiet,
    RebalanceReport, RepairReport, Report, Repository, RestoreOptions, RestoreOutcome,
    UnreadableRecord, VerifyReport,
};
pub use snapshot::{IngestSummary, SnapshotRecord};
