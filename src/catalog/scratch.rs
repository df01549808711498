//! Where a compaction runs: its spill runs in a scratch folder of this
//! machine's cache, at the family size limit of the environment.

use std::path::Path;

use super::compact::{Compaction, DiskUse};
use super::records::RecordFold;
use crate::error::{Error, Result};
use crate::format::family::Sealer;
use crate::store::MetaStore;

/// The size past which a family is split: 48 MiB, or
/// `$DEDUP_INDEX_FAMILY_BYTES` (tests make it tiny).
pub fn family_limit() -> u64 {
    std::env::var("DEDUP_INDEX_FAMILY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n >= 4096)
        .unwrap_or(48 << 20)
}

/// Runs `work` on a compaction into `home` at the default limit (folding
/// `records` into the record catalog, see [`Compaction::records`]), its
/// spill runs in the folder `tmp` (emptied before, removed after, whatever
/// `work` returns); with the most temporary disk it used at once.
pub fn in_scratch<T>(
    home: &dyn MetaStore,
    sealer: &dyn Sealer,
    tmp: &Path,
    records: Option<RecordFold>,
    work: impl FnOnce(&Compaction<'_>) -> Result<T>,
) -> Result<(T, u64)> {
    let fresh = |create: bool| -> Result<()> {
        if tmp.exists() {
            std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
        }
        if create {
            std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
        }
        Ok(())
    };
    fresh(true)?;
    let compaction = Compaction {
        home,
        sealer,
        tmp,
        limit: family_limit(),
        disk: DiskUse::default(),
        records,
    };
    let done = work(&compaction);
    fresh(false)?;
    Ok((done?, compaction.disk.peak()))
}
