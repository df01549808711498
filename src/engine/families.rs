//! The home's index compacted into families by the process that holds the
//! lock alone (`gc`), and the format version that says it has them.

use std::collections::HashSet;

use super::Engine;
use crate::catalog::base::{self, newest_manifest};
use crate::catalog::compact::in_scratch;
use crate::catalog::segment;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;

/// Segments no manifest covers kept before `gc` compacts them.
pub(crate) const SEGMENTS_BEFORE_COMPACTION: usize = 64;

/// What one compaction did, for gc's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    /// The epoch of the manifest written.
    pub epoch: u64,
    /// Segments folded in and deleted.
    pub segments: u64,
    /// Families the manifest names that hold anything.
    pub families: u64,
    /// Bytes of the families.
    pub family_bytes: u64,
    /// Most temporary disk in use at once.
    pub temporary_bytes: u64,
}

impl Engine {
    /// Folds the segments no manifest covers into a new version of the
    /// families when there are more than `at_least`, or when the
    /// repository has no families yet; then deletes what the new manifest
    /// supersedes and the segments it covers. Holding the lock alone:
    /// nothing else writes segments meanwhile, and this index has applied
    /// every one listed, so it becomes the base as it stands.
    ///
    /// A repository's first compaction raises its format version first,
    /// so that a build which would compact it into a full segment
    /// refuses it by name from then on.
    pub(crate) fn compact_index(&self, at_least: usize) -> Result<Option<Compacted>> {
        let home = self.files.as_ref();
        let names = segment::names(home)?;
        let previous = newest_manifest(home, &self.crypt)?;
        if self.index.base()? != previous.as_ref().map(|m| m.epoch) {
            return Err(Error::Index {
                path: self.cache.index(),
                message: "not loaded from the home's newest manifest; open the repository again"
                    .into(),
            });
        }
        let (applied, covered) = self.index.applied_and_covered(&names)?;
        let before: HashSet<&str> = previous
            .iter()
            .flat_map(|m| m.covers.iter().map(String::as_str))
            .collect();
        let input: Vec<String> = applied
            .into_iter()
            .filter(|n| !before.contains(n.as_str()))
            .collect();
        if let Some(previous) = previous.as_ref().filter(|_| input.len() <= at_least) {
            // What a compaction cut short after its manifest left: the
            // segments it covers, the objects it superseded.
            self.hold.check_alive()?;
            base::delete_superseded(home, previous)?;
            let left: Vec<String> = covered
                .into_iter()
                .filter(|n| before.contains(n.as_str()))
                .collect();
            segment::delete(home, &left)?;
            return Ok(None);
        }
        self.hold.check_alive()?;
        if !self.config.has_families() {
            self.write_config(&self.config.with_families())?;
        }
        let epoch = previous.as_ref().map_or(1, |m| m.epoch + 1);
        let (manifest, temporary_bytes) = self.fold(previous.as_ref(), &input, &covered, epoch)?;
        self.index.adopt_base(&manifest)?;
        self.hold.check_alive()?;
        base::delete_superseded(home, &manifest)?;
        let now: HashSet<&str> = manifest.covers.iter().map(String::as_str).collect();
        let gone: Vec<String> = names
            .into_iter()
            .filter(|n| now.contains(n.as_str()))
            .collect();
        segment::delete(home, &gone)?;
        Ok(Some(Compacted {
            epoch,
            segments: gone.len() as u64,
            families: manifest.families.iter().filter(|p| p.size > 0).count() as u64,
            family_bytes: manifest.families.iter().map(|p| p.size).sum(),
            temporary_bytes,
        }))
    }

    /// One compaction into `epoch`, its spill runs in this machine's
    /// cache (emptied before and after); with the most temporary disk it
    /// used at once.
    fn fold(
        &self,
        previous: Option<&Manifest>,
        input: &[String],
        covered: &[String],
        epoch: u64,
    ) -> Result<(Manifest, u64)> {
        let tmp = self.cache.dir().join("compaction");
        in_scratch(self.files.as_ref(), &self.crypt, &tmp, |c| {
            c.run_covering(previous, input, covered, epoch)
        })
    }
}
