//! Trees, file entries and snapshot records, and their encodings. Restoring
//! them is `repo`'s job.

pub mod filter;
pub mod record;
pub mod tree;

pub use filter::{GroupBy, GroupKey, SnapshotFilter};
pub use record::{BloomStats, IngestSummary, Skipped, SnapshotId, SnapshotRecord};
pub use tree::{Attrs, Entry, EntryKind, Owner, Tree};
