//! Evidence that the store lost, rolled back or put back what this
//! machine saw: deletion and rollback made evident.
//!
//! A store (or whoever can write to it) can delete a snapshot record or an
//! index segment, put back a forgotten record, or put the whole home back
//! from an older copy. None of that can be forged in an encrypted
//! repository (every record and segment is sealed and bound to its name),
//! but it can be hidden from a client that only reads what is there. Three
//! things make it evident:
//!
//! - **This machine's memory.** The index in the cache holds every record
//!   it read and names every segment it applied. A record it holds that
//!   the home lacks must have a forget's tombstone (`forgotten/<id>`,
//!   sealed in an encrypted repository); a segment it applied that the
//!   home lacks must be covered by a full segment there (whose covers
//!   carry forward the names every earlier full segment covered).
//! - **Tombstones.** `forget` writes `forgotten/<id>` before it deletes
//!   the record, and they are never deleted: a record that comes back is
//!   named, and left out, by every client.
//! - **A chain of records.** Each record names the newest record its
//!   writer's index held (`prev`), sealed inside it: a record deleted from
//!   the middle of the history is named even by a client that never saw
//!   it, once it reads one that followed it.
//!
//! What is found is kept beside the cache slots (`CACHE/<id>.evidence`),
//! named after every open until `dedup repair history` deals with it, and
//! meanwhile `gc` deletes nothing (but the records of forgotten snapshots
//! that are back: the forget stands). A record this machine holds and the home
//! lost stays listed and restorable from here (its trees and data are in
//! the packs); `repair history` writes it back. In an unencrypted
//! repository whoever writes to the store can forge anything, tombstones
//! included: there this catches accidental loss only.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::store::MetaStore;

use super::cache::CacheSlot;

/// Where forget's tombstones live in the home.
pub(crate) const FORGOTTEN: &str = "forgotten/";

/// The tombstone of a forgotten snapshot's record.
pub(crate) fn tombstone_key(id: &SnapshotId) -> String {
    format!("{FORGOTTEN}{id}")
}

/// What a tombstone says: when and where the snapshot was forgotten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The machine that forgot it.
    pub hostname: String,
}

impl Tombstone {
    /// A tombstone for a forget made now, here.
    pub(crate) fn now() -> Self {
        Tombstone {
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            hostname: super::lock::hostname(),
        }
    }
}

/// Of the snapshots `asked`, those whose records have a tombstone in
/// `home` (read through the view that opens sealed files: a tombstone that
/// does not open is not one). One listing, and a read only of the
/// tombstones asked about: the folder holds every forget ever made.
pub(crate) fn tombstoned(
    home: &dyn MetaStore,
    asked: &HashSet<SnapshotId>,
) -> Result<HashSet<SnapshotId>> {
    let mut out = HashSet::new();
    for key in home.list(FORGOTTEN)? {
        let Some(id) = key
            .strip_prefix(FORGOTTEN)
            .and_then(|hex| hex.parse::<SnapshotId>().ok())
            .filter(|id| asked.contains(id))
        else {
            continue;
        };
        let genuine = home
            .get(&key)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Tombstone>(&bytes).ok());
        if genuine.is_some() {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Every genuine tombstone file of `home` (one that opens and reads as a
/// tombstone) but those of `skip`, with its bytes: what a compaction
/// folds into the record catalog.
pub(crate) fn tombstone_files(
    home: &dyn MetaStore,
    skip: &HashSet<SnapshotId>,
) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
    let mut out = Vec::new();
    for key in home.list(FORGOTTEN)? {
        let Some(id) = key
            .strip_prefix(FORGOTTEN)
            .and_then(|hex| hex.parse::<SnapshotId>().ok())
            .filter(|id| !skip.contains(id))
        else {
            continue;
        };
        if let Ok(bytes) = home.get(&key) {
            if serde_json::from_slice::<Tombstone>(&bytes).is_ok() {
                out.push((id, bytes));
            }
        }
    }
    Ok(out)
}

/// One thing the store lost, or put back, that this machine saw
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Evidence {
    /// A snapshot record this machine read is gone from the home, and no
    /// forget's tombstone says it was forgotten.
    RecordGone {
        /// The snapshot.
        id: SnapshotId,
    },
    /// A snapshot that was forgotten is back: its record is in the home
    /// beside its tombstone (a forget cut short, or a record put back),
    /// or this machine saw it forgotten. `gc` deletes it again.
    RecordBack {
        /// The snapshot.
        id: SnapshotId,
    },
    /// A record names, as the newest its writer knew, a record the home
    /// lacks and no tombstone accounts for.
    EarlierRecordGone {
        /// The missing record.
        id: SnapshotId,
        /// The record that names it.
        named_by: SnapshotId,
    },
    /// An index segment this machine applied is gone from the home, and
    /// no full segment there covers it.
    SegmentGone {
        /// The segment's name.
        name: String,
    },
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::RecordGone { id } => write!(
                f,
                "snapshot {id} is gone from the store, and no forget removed it (this machine \
                 read its record): the store lost it or someone deleted it; this machine still \
                 lists it, and `dedup repair history` writes its record back (`dedup forget \
                 {id}` agrees that it is gone)"
            ),
            Evidence::RecordBack { id } => write!(
                f,
                "snapshot {id} was forgotten (its tombstone is in the store, or this machine \
                 saw it forgotten), and its record is there again: a forget cut short, or \
                 someone put it back; it is left out of every listing, and `dedup gc`, `dedup \
                 forget {id}` or `dedup repair history` deletes it again"
            ),
            Evidence::EarlierRecordGone { id, named_by } => write!(
                f,
                "snapshot {id} is gone from the store, and no forget removed it (snapshot \
                 {named_by} was written after it): the store lost it or someone deleted it; \
                 if it was forgotten with an older dedup, `dedup repair history` accepts that"
            ),
            Evidence::SegmentGone { name } => write!(
                f,
                "index segment segments/{name} is gone from the store, and no compaction \
                 covers it (this machine applied it): the home was put back from an older copy \
                 or someone deleted it; `dedup repair history` accepts that (and writes back \
                 the records this machine holds), then `dedup repair index` finds the packs \
                 the segment listed"
            ),
        }
    }
}

/// `all` as lines for a person: one a finding, the segments gone in one.
pub fn describe(all: &[Evidence]) -> Vec<String> {
    let segments: Vec<&str> = all
        .iter()
        .filter_map(|e| match e {
            Evidence::SegmentGone { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut lines: Vec<String> = all
        .iter()
        .filter(|e| !matches!(e, Evidence::SegmentGone { .. }))
        .map(ToString::to_string)
        .collect();
    match segments.as_slice() {
        [] => {}
        [name] => lines.push(
            Evidence::SegmentGone {
                name: (*name).to_string(),
            }
            .to_string(),
        ),
        [first, rest @ ..] => lines.push(format!(
            "{} index segments are gone from the store ({first} and {} more), and no \
             compaction covers them (this machine applied them): the home was put back from \
             an older copy or someone deleted them; `dedup repair history` accepts that (and \
             writes back the records this machine holds), then `dedup repair index` finds the \
             packs they listed",
            rest.len() + 1,
            rest.len()
        )),
    }
    lines
}

/// The file beside repository `id`'s cache slots that holds what was found.
fn evidence_file(cache_root: &Path, id: &str) -> PathBuf {
    super::cache::beside_path(cache_root, id, "evidence")
}

/// What this machine found of repository `id` and has not yet dealt
/// with.
pub(crate) fn load(cache_root: &Path, id: &str) -> Result<Vec<Evidence>> {
    let path = evidence_file(cache_root, id);
    match CacheSlot::read(&path)? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::corrupt("evidence file", path.display().to_string(), e.to_string())
        }),
    }
}

/// Adds `found` to what this machine keeps of repository `id` (each
/// once), drops what is `settled`, and returns the whole.
pub(crate) fn record(
    cache_root: &Path,
    id: &str,
    found: Vec<Evidence>,
    settled: impl Fn(&Evidence) -> bool,
) -> Result<Vec<Evidence>> {
    let before = load(cache_root, id)?;
    let all = merge(before.clone(), found, settled);
    if all != before {
        save(cache_root, id, &all)?;
    }
    Ok(all)
}

/// `known` and `found`, each once, without what is `settled`.
pub(crate) fn merge(
    mut known: Vec<Evidence>,
    found: Vec<Evidence>,
    settled: impl Fn(&Evidence) -> bool,
) -> Vec<Evidence> {
    known.extend(found);
    known.retain(|e| !settled(e));
    known.sort();
    known.dedup();
    known
}

/// Replaces what this machine keeps of repository `id` with `all`.
pub(crate) fn save(cache_root: &Path, id: &str, all: &[Evidence]) -> Result<()> {
    let path = evidence_file(cache_root, id);
    if all.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        };
    }
    let bytes = serde_json::to_vec_pretty(all).expect("evidence always serialises");
    CacheSlot::replace(&path, &bytes)
}

/// What `repair history` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HistoryReport {
    /// Snapshot records written back from this machine's cache.
    pub put_back: Vec<SnapshotId>,
    /// Forgotten snapshots' records that had come back, deleted again.
    pub deleted_again: Vec<SnapshotId>,
    /// Findings accepted as they are (segments gone, earlier records gone,
    /// records this machine no longer holds).
    pub accepted: Vec<Evidence>,
}

impl std::fmt::Display for HistoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for id in &self.put_back {
            writeln!(
                f,
                "put back the record of snapshot {id} from this machine's cache"
            )?;
        }
        for id in &self.deleted_again {
            writeln!(f, "deleted again the record of forgotten snapshot {id}")?;
        }
        for e in &self.accepted {
            writeln!(f, "accepted: {}", e.summary())?;
        }
        if self.put_back.is_empty() && self.deleted_again.is_empty() && self.accepted.is_empty() {
            writeln!(
                f,
                "nothing to repair: the store holds what this machine saw"
            )?;
        }
        Ok(())
    }
}

impl Evidence {
    /// The finding in a few words, without the way out.
    pub fn summary(&self) -> String {
        match self {
            Evidence::RecordGone { id } => format!("snapshot {id} gone from the store"),
            Evidence::RecordBack { id } => format!("forgotten snapshot {id} back in the store"),
            Evidence::EarlierRecordGone { id, named_by } => {
                format!("snapshot {id} (before {named_by}) gone from the store")
            }
            Evidence::SegmentGone { name } => format!("index segment {name} gone from the store"),
        }
    }
}

impl super::Engine {
    /// The work of [`Repository::repair_history`](crate::Repository::repair_history).
    pub fn repair_history(&self) -> Result<HistoryReport> {
        self.check_alone("repair history")?;
        let _alone = self.reclaiming();
        let mut report = HistoryReport::default();
        self.hold.check_alive()?;
        for e in self.evidence() {
            match &e {
                Evidence::RecordGone { id } => match self.index.snapshot(id)? {
                    Some(bytes) => {
                        self.files
                            .put(&crate::format::snapshot::SnapshotRecord::key(id), &bytes)?;
                        report.put_back.push(*id);
                    }
                    None => report.accepted.push(e),
                },
                Evidence::RecordBack { id } => {
                    self.forget_records(std::slice::from_ref(id))?;
                    report.deleted_again.push(*id);
                }
                Evidence::EarlierRecordGone { .. } | Evidence::SegmentGone { .. } => {
                    report.accepted.push(e);
                }
            }
        }
        self.forget_evidence(|_| false);
        Ok(report)
    }
}

impl super::Engine {
    /// Forgets the records of `ids`, the caller holding the repository
    /// alone: each gets its tombstone first, so every client then knows it
    /// was forgotten, not lost, and must not come back (see `history`);
    /// then the index, then the record file. A crash before the file is
    /// deleted leaves it beside its tombstone, forgotten still, and the
    /// next gc deletes it.
    pub(crate) fn forget_records(&self, ids: &[SnapshotId]) -> Result<()> {
        let tombstone =
            serde_json::to_vec(&Tombstone::now()).expect("a tombstone always serialises");
        for id in ids {
            self.files.put(&tombstone_key(id), &tombstone)?;
            self.index.forget_snapshot(id)?;
            match self
                .files
                .delete(&crate::format::snapshot::SnapshotRecord::key(id))
            {
                Err(e) if !crate::store::is_not_found(&e) => return Err(e),
                _ => {}
            }
        }
        self.forget_evidence(|e| match e {
            Evidence::RecordGone { id } | Evidence::RecordBack { id } => !ids.contains(id),
            _ => true,
        });
        Ok(())
    }
}
