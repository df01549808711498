//! Where chunk bytes live: the backend seam, local directories, and the pack
//! format. Deciding what is new is not this module's job (see `repo`).

pub mod backend;
pub mod faults;
pub mod local;
pub mod pack;

pub use backend::{is_not_found, Backend};
pub use faults::FaultPlan;
pub use local::LocalBackend;
pub use pack::{PackBuilder, PackEntry, PackId};
