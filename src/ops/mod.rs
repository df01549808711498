//! The verbs: one file or folder per command, each over the engine
//! (the `engine` folder). No verb reaches into another; what two of them
//! share lives in the engine.

pub mod browse;
pub mod gc;
pub mod ingest;
pub mod insight;
pub mod repair;
pub mod restore;
pub mod shards;
pub mod verify;
