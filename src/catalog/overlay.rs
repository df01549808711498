//! The index as an overlay on the home's families (issue 32, `docs/design.md`,
//! "the cache as an overlay"): a machine's RocksDB holds the pack table,
//! the record catalog and what the segments no manifest covers (and its
//! own commits) settled, a location or a "gone" mark where they removed
//! one; everything else is found in the families beneath, through the
//! base manifest's summary and one block read. A hit beneath in a pack the
//! pack table does not hold live is no hit: retirement lives there.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use super::base::{newest_manifest, read_manifest};
use super::summary::{IndexReads, Summary};
use super::Index;
use crate::error::Result;
use crate::format::family::Family;
use crate::format::manifest::Manifest;
use crate::format::values::Location;
use crate::id::{ChunkId, PackId};
use crate::store::is_not_found;

/// Family blocks a summary keeps (of about 65 KB each).
const CACHED_BLOCKS: usize = 1024;

impl Index {
    /// True when this index is an overlay on its home's families.
    pub fn is_overlay(&self) -> bool {
        self.home.is_some()
    }

    /// The summary of the base manifest's families (or of a newer one,
    /// read again after the base's were deleted), loaded the first time it
    /// is needed; `None` when this index is no overlay or has no base. A
    /// new base drops the summary held ([`set_summary`](Self::set_summary)),
    /// so one held is current: a lookup asks nothing more of RocksDB.
    pub(super) fn summary(&self) -> Result<Option<Arc<Summary>>> {
        if self.home.is_none() {
            return Ok(None);
        }
        let held = self
            .summary
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if held.is_some() {
            return Ok(held);
        }
        let Some(epoch) = self.base()? else {
            return Ok(None);
        };
        let home = self.home.as_ref().expect("checked above");
        let manifest = read_manifest(home.as_ref(), self.sealer.as_ref(), epoch)?;
        self.load_summary(&manifest).map(Some)
    }

    /// Reads the summary of `manifest`'s families and keeps it.
    pub(super) fn load_summary(&self, manifest: &Manifest) -> Result<Arc<Summary>> {
        let home = self.home.as_ref().expect("only an overlay loads a summary");
        let summary = Arc::new(Summary::load(
            home.as_ref(),
            self.sealer.as_ref(),
            manifest,
            CACHED_BLOCKS,
            self.shelf.as_deref(),
        )?);
        self.set_summary(Some(summary.clone()));
        Ok(summary)
    }

    /// Holds `summary` (`None`: none until the next lookup loads the
    /// base's); the reads of the one it replaces are kept for
    /// [`index_reads`](Self::index_reads).
    pub(super) fn set_summary(&self, summary: Option<Arc<Summary>>) {
        let replaced = std::mem::replace(
            &mut *self.summary.write().unwrap_or_else(PoisonError::into_inner),
            summary,
        );
        if let Some(old) = replaced {
            let mut earlier = self
                .earlier_reads
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *earlier = earlier.plus(old.fetched.reads());
        }
    }

    /// The reads of the families this index made so far (summaries and
    /// blocks): take two and [`since`](IndexReads::since) for one
    /// operation's.
    pub fn index_reads(&self) -> IndexReads {
        let earlier = *self
            .earlier_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self
            .summary
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.fetched.reads())
            .unwrap_or_default();
        earlier.plus(now)
    }

    /// Fills `out[i]`, for each `i` of `unknown` (ids of `ids` this index
    /// holds nothing of), from the families beneath. A family version gone
    /// (superseded and deleted after the grace period while this handle
    /// was open) is read again from the newest manifest, once: its
    /// families hold what the old ones did, folded further.
    pub(super) fn locate_beneath(
        &self,
        ids: &[ChunkId],
        unknown: &[usize],
        out: &mut [Option<Location>],
    ) -> Result<()> {
        let Some(summary) = self.summary()? else {
            return Ok(());
        };
        let home = self.home.as_ref().expect("a summary is an overlay's");
        let sealer = self.sealer.as_ref();
        let asked: Vec<ChunkId> = unknown.iter().map(|&i| ids[i]).collect();
        let found = match summary.locate(home.as_ref(), sealer, &asked) {
            Err(e) if is_not_found(&e) => match newest_manifest(home.as_ref(), sealer)? {
                Some(newest) if newest.epoch > summary.epoch => self
                    .load_summary(&newest)?
                    .locate(home.as_ref(), sealer, &asked)?,
                _ => return Err(e),
            },
            other => other?,
        };
        for (&i, loc) in unknown.iter().zip(found) {
            out[i] = loc.filter(|l| self.pack_shard(&l.pack).is_some());
        }
        Ok(())
    }

    /// False when `id` is surely in none of the families beneath (their
    /// Bloom slices say so), or there are none: what a writer's filter
    /// asks besides its own.
    pub fn may_hold_beneath(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.summary()?.is_some_and(|s| s.may_hold(id)))
    }

    /// Where every chunk whose indexed copy lies in one of `packs` is:
    /// what this index holds, then, beneath an overlay, what the families
    /// that point into those packs hold of the ids it does not (each read
    /// whole, one at a time).
    pub fn chunks_in(&self, packs: &HashSet<PackId>) -> Result<Vec<Location>> {
        let (mut out, settled) = self.held_in(packs)?;
        let Some(summary) = self.summary()? else {
            return Ok(out);
        };
        let home = self.home.as_ref().expect("a summary is an overlay's");
        let held: HashSet<ChunkId> = out.iter().map(|l| l.entry.id).collect();
        for family in summary.families() {
            if !family.packs.iter().any(|p| packs.contains(p)) {
                continue;
            }
            let key = family.key();
            let location = format!("{}/{key}", home.location());
            let whole = Family::read(
                &home.get(key)?,
                self.sealer.as_ref(),
                family.name(),
                family.version(),
                &location,
            )?;
            out.extend(whole.entries.into_iter().filter_map(|(id, loc)| {
                let mine = packs.contains(&loc.pack)
                    && !settled.contains(&id)
                    && !held.contains(&id)
                    && self.pack_shard(&loc.pack).is_some();
                mine.then_some(loc)
            }));
        }
        Ok(out)
    }
}
