//! The verbs: one file or folder per command, each over the engine
//! (`crate::engine`). No verb reaches into another; what two of them
//! share lives in the engine.

pub mod browse;
pub mod estimate;
pub mod gc;
pub mod ingest;
pub mod repair;
pub mod report;
pub mod restore;
pub mod shards;
pub mod usage;
pub mod verify;
