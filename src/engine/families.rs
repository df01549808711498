//! The home's index compacted into families, by `gc` holding the lock
//! alone or by `dedup compact` beside writers and readers, and the format
//! version that says it has them.

use std::collections::HashSet;
use std::time::Duration;

use super::history;
use super::lock::stale_after;
use super::Engine;
use crate::catalog::base::{newest_manifest, MANIFEST_PREFIX};
use crate::catalog::records::{self, RecordFold};
use crate::catalog::scratch::in_scratch;
use crate::catalog::segment;
use crate::catalog::sweep;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::snapshot::SnapshotRecord;
use crate::store::MetaStore;

/// Segments no manifest covers kept before `gc` compacts them.
pub(crate) const SEGMENTS_BEFORE_COMPACTION: usize = 64;

/// What one compaction did, for gc's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    /// The epoch of the manifest written.
    pub epoch: u64,
    /// Segments of the home the new manifest covers.
    pub segments: u64,
    /// Of those, the ones deleted (all under `gc`; none beside writers,
    /// where the next `gc` deletes them).
    pub segments_deleted: u64,
    /// Record files and forgets' tombstones folded into the record
    /// catalog.
    pub records: u64,
    /// Record and tombstone files the catalog holds, deleted (under `gc`;
    /// beside writers they stay for the grace period).
    pub records_deleted: u64,
    /// Families the manifest names that hold anything.
    pub families: u64,
    /// Bytes of the families.
    pub family_bytes: u64,
    /// Most temporary disk in use at once.
    pub temporary_bytes: u64,
}

/// What `dedup compact` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// The compaction written; `None` when there was nothing to fold, or
    /// another process folded it first.
    pub compacted: Option<Compacted>,
    /// Manifests, family versions and pack parts superseded longer than
    /// the grace period ago, deleted.
    pub objects_deleted: u64,
    /// Segments covered by a manifest older than the grace period,
    /// deleted.
    pub segments_deleted: u64,
    /// Record and tombstone files folded into the catalog of a manifest
    /// older than the grace period, deleted.
    pub records_deleted: u64,
}

impl std::fmt::Display for CompactReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.compacted {
            Some(c) => writeln!(f, "{c}")?,
            None => writeln!(
                f,
                "nothing compacted: every segment is in the families, or another process \
                 compacted them first"
            )?,
        }
        if self.objects_deleted + self.segments_deleted + self.records_deleted > 0 {
            writeln!(
                f,
                "deleted {}, {} and {} superseded longer than the grace period ago",
                many(self.objects_deleted, "index object"),
                many(self.segments_deleted, "segment"),
                many(self.records_deleted, "record or tombstone file")
            )?;
        }
        Ok(())
    }
}

/// `n` and what is counted, in the plural unless there is one.
fn many(n: u64, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// How long what a compaction superseded stays before a compaction
/// beside writers deletes it: `$DEDUP_GC_GRACE_SECONDS`, else twice the
/// lock staleness (an hour by default), so that a reader or writer that
/// listed it before is done with it, or lists again.
pub(crate) fn grace() -> Duration {
    std::env::var("DEDUP_GC_GRACE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or_else(|| 2 * stale_after(), Duration::from_secs)
}

impl std::fmt::Display for Compacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "index compacted: {} folded into {} ({}), epoch {}",
            many(self.segments, "segment"),
            match self.families {
                1 => "1 family".to_string(),
                n => format!("{n} families"),
            },
            crate::units::human_bytes(self.family_bytes),
            self.epoch
        )?;
        if self.records > 0 {
            write!(
                f,
                "; {} into the record catalog",
                many(self.records, "record or tombstone file")
            )?;
        }
        if self.segments_deleted < self.segments || self.records_deleted < self.records {
            write!(f, "; the files stay for the grace period")?;
        }
        Ok(())
    }
}

impl Engine {
    /// `dedup compact`: [`compact_index`](Self::compact_index) past
    /// `at_least` uncovered segments, then, beside writers, what was
    /// superseded longer than the [`grace`] period ago deleted. Holding
    /// the lock alone, the compaction deletes at once.
    pub(crate) fn compact(&self, at_least: usize) -> Result<CompactReport> {
        let compacted = self.compact_index(at_least)?;
        let mut report = CompactReport {
            compacted,
            ..CompactReport::default()
        };
        if !self.hold.is_exclusive() {
            self.hold.check_alive()?;
            let swept = sweep::delete_after_grace(self.files.as_ref(), &self.crypt, grace())?;
            report.objects_deleted = swept.objects;
            report.segments_deleted = swept.segments;
            report.records_deleted = swept.records;
        }
        Ok(report)
    }

    /// Folds the segments no manifest covers into a new version of the
    /// families when there are more than `at_least`, or when the
    /// repository has no families yet.
    ///
    /// Holding the lock alone (`gc`), nothing else writes segments
    /// meanwhile, and this index has applied every one listed: it becomes
    /// the base as it stands, and what the new manifest supersedes and the
    /// segments it covers are deleted at once. Holding it shared (`dedup
    /// compact`, beside writers and readers), the segments written since
    /// this handle caught up are left for the next compaction, nothing is
    /// deleted here (a reader may be loading the older manifest:
    /// [`compact`](Self::compact) deletes after the grace period), and a
    /// compaction that another one beat to the epoch's manifest removes
    /// what it wrote and reports nothing done.
    ///
    /// A repository's first compaction raises its format version first,
    /// so that a build which would compact it into a full segment
    /// refuses it by name from then on; that one is `gc`'s alone.
    pub(crate) fn compact_index(&self, at_least: usize) -> Result<Option<Compacted>> {
        let home = self.files.as_ref();
        let alone = self.hold.is_exclusive();
        if !self.hold.is_writer() {
            return Err(Error::invalid(
                "repository",
                "compacting the index needs a writer's lock; open it shared or alone, not \
                 read-only",
            ));
        }
        if !alone && !self.config.has_families() {
            return Err(Error::invalid(
                "repository",
                "its index has no families yet: run `dedup gc` once, which compacts it the \
                 first time",
            ));
        }
        let names = segment::names(home)?;
        let previous = newest_manifest(home, &self.crypt)?;
        if self.index.base()? != previous.as_ref().map(|m| m.epoch) {
            if !alone {
                // Another process compacted since this one caught up.
                return Ok(None);
            }
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
        // Records are folded where the format says so, or will once `gc`
        // has raised it; beside writers a repository of an older format
        // keeps its records as files.
        let raise = alone && !self.config.has_catalog();
        let records = if alone || self.config.has_catalog() {
            Some(self.records_to_fold()?)
        } else {
            None
        };
        let pending = records.as_ref().map_or(0, RecordFold::len);
        if let Some(previous) = previous
            .as_ref()
            .filter(|_| input.len() <= at_least && pending <= at_least && !raise)
        {
            if alone {
                // What a compaction cut short after its manifest left.
                self.delete_behind(previous, &previous.covered_of(names))?;
            }
            return Ok(None);
        }
        self.hold.check_alive()?;
        if raise {
            self.write_config(&self.config.with_catalog())?;
        }
        let epoch = previous.as_ref().map_or(1, |m| m.epoch + 1);
        let (manifest, temporary_bytes) =
            self.fold(previous.as_ref(), &input, &covered, epoch, records)?;
        let Some(manifest) = manifest else {
            if alone {
                return Err(Error::Index {
                    path: self.cache.index(),
                    message: format!(
                        "another process wrote the index manifest of epoch {epoch} while this \
                         one held the lock alone; run the command again"
                    ),
                });
            }
            return Ok(None);
        };
        self.index.adopt_base(self.files.as_ref(), &manifest)?;
        let folded = manifest.covered_of(names);
        let records_deleted = if alone {
            self.delete_behind(&manifest, &folded)?
        } else {
            0
        };
        Ok(Some(Compacted {
            epoch,
            segments: folded.len() as u64,
            segments_deleted: if alone { folded.len() as u64 } else { 0 },
            records: pending as u64,
            records_deleted,
            families: manifest.families.iter().filter(|p| p.size > 0).count() as u64,
            family_bytes: manifest.families.iter().map(|p| p.size).sum(),
            temporary_bytes,
        }))
    }

    /// What a compaction folds into the record catalog: the record files
    /// of the home this index adopted (so read and checked against their
    /// names) and the genuine tombstones, each that the catalog of the
    /// base manifest lacks. A record that did not read, or came back
    /// after a forget, stays a file.
    fn records_to_fold(&self) -> Result<RecordFold> {
        let home = self.files.as_ref();
        let catalog = self.index.cataloged()?;
        let mut fold = RecordFold::default();
        for key in home.list(SnapshotRecord::FOLDER)? {
            let Some(id) = SnapshotRecord::id_of_key(&key) else {
                continue;
            };
            if catalog.records.contains(&id) || catalog.forgotten.contains(&id) {
                continue;
            }
            if let Some(bytes) = self.index.snapshot(&id)? {
                fold.records.insert(id, bytes);
            }
        }
        fold.forgotten
            .extend(history::tombstone_files(home, &catalog.forgotten)?);
        Ok(fold)
    }

    /// Holding the lock alone: deletes every index object `manifest` (the
    /// newest) does not name, the segments `covered` it covers and the
    /// record and tombstone files its catalog holds; returns how many of
    /// those files it deleted.
    fn delete_behind(&self, manifest: &Manifest, covered: &[String]) -> Result<u64> {
        self.hold.check_alive()?;
        let home = self.files.as_ref();
        sweep::delete_superseded(home, manifest)?;
        segment::delete(home, covered)?;
        records::delete_folded(home, &self.crypt, manifest)
    }

    /// One compaction into `epoch`, its spill runs in this machine's
    /// cache (emptied before and after); with the most temporary disk it
    /// used at once. `None`: another compaction wrote the epoch first.
    fn fold(
        &self,
        previous: Option<&Manifest>,
        input: &[String],
        covered: &[String],
        epoch: u64,
        records: Option<RecordFold>,
    ) -> Result<(Option<Manifest>, u64)> {
        let tmp = self.cache.dir().join("compaction");
        let fence = || self.hold.check_alive();
        let home = Fenced {
            inner: self.files.as_ref(),
            fence: &fence,
        };
        in_scratch(&home, &self.crypt, &tmp, records, |c| {
            c.run_covering(previous, input, covered, epoch)
        })
    }
}

/// The home as a compaction writes to it: before the epoch's manifest,
/// what makes the compaction exist, the lock is checked as before a
/// snapshot record. A compactor suspended past its lock's staleness while
/// `gc` held the lock alone (and deleted the families it had written so
/// far) stops there instead of naming them.
struct Fenced<'a> {
    inner: &'a dyn MetaStore,
    fence: &'a (dyn Fn() -> Result<()> + Sync),
}

impl MetaStore for Fenced<'_> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.inner.put(key, data)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.inner.get(key)
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.get_range(key, offset, len)
    }

    fn create_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        if key.starts_with(MANIFEST_PREFIX) {
            (self.fence)()?;
        }
        self.inner.create_if_absent(key, data)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }

    fn written(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        self.inner.written(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::segment::{Op, Segment};
    use crate::format::family::Plain;
    use crate::format::values::PackInfo;
    use crate::id::{PackId, ShardId};
    use crate::store::{LocalStore, OsFs};

    #[test]
    fn a_compactor_whose_lock_is_lost_writes_its_families_but_never_their_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let home = LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap();
        let name = segment::new_name();
        let add = Op::AddPack {
            pack: PackId([7; 16]),
            info: PackInfo::of(ShardId(0), 100, &[]),
            entries: Vec::new(),
        };
        let ops = vec![add];
        segment::put(&home, &name, &Segment { full: false, ops }).unwrap();
        let lost = || {
            Err(Error::invalid(
                "lock",
                "may no longer be held (a test's fence)",
            ))
        };
        let fenced = Fenced {
            inner: &home,
            fence: &lost,
        };
        let tmp = dir.path().join("tmp");
        let done = in_scratch(&fenced, &Plain, &tmp, None, |c| c.run(None, &[name], 1));
        assert!(done.unwrap_err().to_string().contains("a test's fence"));
        let index = home.list("index/").unwrap();
        assert!(!index.is_empty(), "the pack table part was written");
        assert!(
            index.iter().all(|k| !k.starts_with(MANIFEST_PREFIX)),
            "{index:?}"
        );
    }
}
