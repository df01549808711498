//! The bytes on disk and their encodings, with no I/O: pack records and
//! trailers, the config, snapshot records and trees, index values and
//! families, and the file cache's entries. Every decoder here takes its
//! input as untrusted (a damaged or hostile store); `fuzz/` builds against
//! this folder.

pub(crate) mod codec;
pub mod config;
pub mod family;
pub mod filecache;
pub mod manifest;
pub mod pack;
pub mod record;
pub mod snapshot;
pub mod values;
