//! Where chunk bytes live: the backend seam, local directories, and the pack
//! format. Deciding what is new is not this module's job (see `repo`).

pub mod backend;
pub mod faults;
pub mod local;
#[cfg(feature = "s3")]
pub mod object;
pub mod pack;

pub use backend::{is_not_found, Backend};
pub use faults::FaultPlan;
pub use local::LocalBackend;
pub use pack::{PackBuilder, PackEntry, PackId};

use std::path::Path;
use std::sync::Arc;

use crate::config::ShardConfig;
use crate::error::{Error, Result};

/// Opens the backend a shard's config names: a local folder (created first
/// when `create`), or an `s3://bucket/prefix` object-store location, which
/// is not contacted until used. `faults` applies to local folders only.
pub fn open_shard(
    root: &Path,
    shard: &ShardConfig,
    create: bool,
    faults: Option<&Arc<FaultPlan>>,
) -> Result<Arc<dyn Backend>> {
    if shard.is_object_store() {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(object::ObjectStoreBackend::new(
            &shard.path,
            &shard.options,
        )?));
        #[cfg(not(feature = "s3"))]
        return Err(Error::invalid(
            "shard",
            format!("{} needs a build with the `s3` feature", shard.path),
        ));
    }
    if !shard.options.is_empty() {
        return Err(Error::invalid(
            "shard",
            format!(
                "options are for object-store shards, not the folder {}",
                shard.path
            ),
        ));
    }
    let dir = root.join(&shard.path);
    let local = if create {
        LocalBackend::create(dir)?
    } else {
        LocalBackend::open(dir)?
    };
    Ok(Arc::new(match faults {
        Some(plan) => local.with_faults(plan.clone()),
        None => local,
    }))
}
