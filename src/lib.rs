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

// The ground floor: algorithms and names, no I/O.
pub mod bloom;
pub mod chunker;
#[cfg(feature = "engine")]
pub mod crypto;
pub mod error;
#[cfg(feature = "engine")]
pub(crate) mod globs;
pub mod id;
pub mod locality;
#[cfg(feature = "engine")]
pub mod policy;
pub mod ring;
pub mod units;

// The layers, bottom up: bytes on disk, the store seam, the catalog (the
// commit protocol and its index), the engine (shared machinery), the
// verbs, and the handle a program holds.
pub mod catalog;
#[cfg(feature = "engine")]
pub mod engine;
pub mod format;
#[cfg(feature = "engine")]
pub mod ops;
#[cfg(feature = "engine")]
mod repository;
pub mod store;

/// Whether a maintenance operation changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Do the work.
    Apply,
    /// Only report what would be done; change nothing.
    DryRun,
}

pub use chunker::ChunkerConfig;
#[cfg(feature = "engine")]
pub use engine::families::{CompactReport, Compacted};
#[cfg(feature = "engine")]
pub use engine::{OpenOptions, Progress, Quiet, UnreadableRecord};
pub use error::{Error, Result};
pub use format::config::{Compression, Config, InitOptions, DEFAULT_ZSTD_LEVEL, ZSTD_LEVELS};
pub use format::snapshot::{IngestSummary, SnapshotRecord};
pub use id::{ChunkId, SnapshotId};
#[cfg(feature = "engine")]
pub use ops::{
    gc::ForgetReport,
    gc::GcReport,
    ingest::{Exclusions, IngestOptions, IngestOutcome},
    insight::report::Report,
    repair::RepairReport,
    restore::{RestoreOptions, RestoreOutcome},
    shards::RebalanceReport,
    verify::VerifyReport,
};
#[cfg(feature = "engine")]
pub use repository::Repository;
