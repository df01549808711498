//! One function per command: open the repository the way the command
//! needs, call the library, print its report (`Display` for people,
//! `--json` through serde), return the exit code.

pub mod browse;
pub mod insight;
pub mod key;
pub mod maintain;
pub mod read;
pub mod shard;
pub mod store;
