//! Snapshot records as the engine keeps them: read from the home into
//! the index (adopted), listed, resolved from what a person types, and
//! the records that fail to read or came back after a forget, kept aside
//! and named.

use super::history::{self, Evidence};
use super::{Engine, UnreadableRecord};
use crate::catalog::Index;
use crate::error::{Error, Result};
use crate::format::snapshot::{SnapshotFilter, SnapshotId, SnapshotRecord};
use crate::store::MetaStore;

impl Engine {
    /// Snapshot files the index lacks (written by another process since this
    /// cache last saw the home, or by an ingest that crashed before it could
    /// copy them into the index) are complete (their chunks were indexed
    /// first), so they are adopted.
    ///
    /// The other way round, a snapshot the index lists whose record file is
    /// gone leaves the index: no crash makes that (records are written
    /// before they are indexed, and forgotten in the index first), so the
    /// home was put back from an older copy, or the file was removed by
    /// hand, and the home is the truth.
    ///
    /// `keys` lists `snapshots/`, taken before the index caught up; `read`
    /// are record files already read (those the index lacked before).
    ///
    /// What the home lost or got back against what this index saw is
    /// found here too (see [`history`]): a record this index holds that
    /// the home lacks stays, unless a forget's tombstone accounts for it; a
    /// forgotten record that is back is not adopted.
    pub(crate) fn adopt_snapshot_files(
        &self,
        keys: &[String],
        read: Vec<RecordFile>,
    ) -> Result<()> {
        use std::collections::HashSet;
        let indexed = snapshot_ids(&self.index)?;
        // What the home holds: the record files listed, and the records
        // of the catalog of the manifest the index caught up with (after
        // the listing, so a file folded and swept before it is there).
        let catalog = self.index.cataloged()?;
        let listed: HashSet<SnapshotId> = keys
            .iter()
            .filter_map(|key| SnapshotRecord::id_of_key(key))
            .collect();
        let on_disk: HashSet<SnapshotId> = listed.union(&catalog.records).copied().collect();
        let vanished: Vec<SnapshotId> = indexed.difference(&on_disk).copied().collect();
        // The catalog's records held here: a forget since its fold has
        // only a tombstone file to show for it.
        let held_in_catalog: Vec<SnapshotId> = indexed
            .intersection(&catalog.records)
            .filter(|id| !listed.contains(id))
            .copied()
            .collect();
        let (mut adopted, cataloged_new) = self.read_unindexed(keys, read, &indexed, &catalog)?;
        let mut found: Vec<Evidence> = self
            .index
            .take_gone()
            .into_iter()
            .map(|name| Evidence::SegmentGone { name })
            .collect();
        if !vanished.is_empty() || !adopted.is_empty() || !held_in_catalog.is_empty() {
            // Each new record's link: the record its writer knew newest.
            let links: Vec<(SnapshotId, SnapshotId)> = adopted
                .iter()
                .filter_map(|(id, bytes)| {
                    let prev = decode_record(&self.crypt, bytes, id).ok()?.prev?;
                    Some((prev, *id))
                })
                .collect();
            let asked = vanished
                .iter()
                .chain(&held_in_catalog)
                .copied()
                .chain(adopted.iter().map(|(id, _)| *id))
                .chain(links.iter().map(|(prev, _)| *prev))
                .collect();
            // Forgotten: a tombstone file, or the catalog says so.
            let mut tombstones = history::tombstoned(self.files.as_ref(), &asked)?;
            tombstones.extend(catalog.forgotten.iter().copied());
            let forgotten = self.index.forgotten()?;
            for id in vanished {
                if tombstones.contains(&id) {
                    self.index.forget_snapshot(&id)?;
                } else {
                    found.push(Evidence::RecordGone { id });
                }
            }
            for id in held_in_catalog {
                if tombstones.contains(&id) {
                    self.index.forget_snapshot(&id)?;
                }
            }
            adopted.retain(|(id, _)| {
                let back = tombstones.contains(id) || forgotten.contains(id);
                // A catalog's record forgotten since its fold is not back:
                // the next fold moves its tombstone in.
                if back && !cataloged_new.contains(id) {
                    found.push(Evidence::RecordBack { id: *id });
                }
                !back
            });
            for (prev, named_by) in links {
                if !on_disk.contains(&prev) && !tombstones.contains(&prev) {
                    found.push(Evidence::EarlierRecordGone { id: prev, named_by });
                }
            }
        }
        // What the home holds again is no longer missing, and a record
        // gone again is no longer back.
        let settled = |e: &Evidence| match e {
            Evidence::RecordGone { id } | Evidence::EarlierRecordGone { id, .. } => {
                on_disk.contains(id)
            }
            Evidence::RecordBack { id } => !listed.contains(id),
            Evidence::SegmentGone { .. } => false,
        };
        self.note_evidence(found, settled);
        self.index
            .put_snapshots(adopted.iter().map(|(id, bytes)| (id, &bytes[..])))
    }

    /// The records the index lacks, read: those `read` already (and not
    /// indexed by the catch-up since), the catalog's (from this cache's
    /// copy of it: the sweep may have deleted their files), then the rest
    /// of the files `keys` lists. A record that does not read is not
    /// adopted, and must not stop every writer; it is kept aside, for
    /// every command to name and for gc to refuse on. Returns them, and
    /// which came from the catalog.
    fn read_unindexed(
        &self,
        keys: &[String],
        read: Vec<RecordFile>,
        indexed: &std::collections::HashSet<SnapshotId>,
        catalog: &crate::catalog::records::CatalogIds,
    ) -> Result<(Vec<Adopted>, std::collections::HashSet<SnapshotId>)> {
        let mut skip = indexed.clone();
        skip.extend(read.iter().map(|r| r.0));
        skip.extend(catalog.records.iter().copied());
        let from_catalog: Vec<RecordFile> = catalog
            .records
            .iter()
            .filter(|id| !indexed.contains(id))
            .map(|id| self.cataloged_record_file(id))
            .collect::<Result<_>>()?;
        let cataloged_new = from_catalog.iter().map(|r| r.0).collect();
        let mut adopted = Vec::new();
        let mut unreadable = Vec::new();
        let unindexed = read
            .into_iter()
            .filter(|(id, _, _)| !indexed.contains(id) && !catalog.records.contains(id))
            .chain(from_catalog)
            .chain(self.unindexed_records(keys, &skip));
        for (id, key, bytes) in unindexed {
            match bytes {
                Ok(bytes) => adopted.push((id, bytes)),
                // Gone since listed: forgotten, or folded into a catalog
                // and swept under `gc`; the next catch-up's catalog has it.
                Err(e) if crate::store::is_not_found(&e) => {}
                Err(e) => unreadable.push(UnreadableRecord {
                    id,
                    key,
                    reason: e.to_string(),
                }),
            }
        }
        unreadable.sort_by(|a, b| a.key.cmp(&b.key));
        *self
            .unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = unreadable;
        Ok((adopted, cataloged_new))
    }

    /// The record of snapshot `id` from this cache's copy of the record
    /// catalog, checked against its name as a file's is.
    fn cataloged_record_file(&self, id: &SnapshotId) -> Result<RecordFile> {
        let key = SnapshotRecord::key(id);
        let bytes = match self.index.cataloged_record(id)? {
            Some(bytes) => decode_record(&self.crypt, &bytes, id).map(|_| bytes),
            None => Err(Error::corrupt(
                "record catalog",
                &key,
                "held in this cache without its bytes",
            )),
        };
        Ok((*id, key, bytes))
    }

    /// Adds `found` to what this machine keeps of the repository's
    /// history (in memory when the cache cannot be written).
    /// What is `settled` is dropped.
    pub(crate) fn note_evidence(&self, found: Vec<Evidence>, settled: impl Fn(&Evidence) -> bool) {
        let root = self.cache.dir().parent().unwrap_or(self.cache.dir());
        let id = &self.config.repository_id;
        // A cache that cannot be written keeps what was found in memory.
        let all = history::record(root, id, found.clone(), &settled)
            .unwrap_or_else(|_| history::merge(self.evidence(), found, &settled));
        *self
            .evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }

    /// Drops what `keep` refuses from what this machine keeps of the
    /// repository's history.
    pub(crate) fn forget_evidence(&self, keep: impl Fn(&Evidence) -> bool) {
        let mut all = self.evidence();
        all.retain(|e| keep(e));
        let root = self.cache.dir().parent().unwrap_or(self.cache.dir());
        let _ = history::save(root, &self.config.repository_id, &all);
        *self
            .evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }

    /// The work of [`Repository::evidence`](crate::Repository::evidence).
    pub fn evidence(&self) -> Vec<Evidence> {
        self.evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The work of [`Repository::unreadable_records`](crate::Repository::unreadable_records).
    pub fn unreadable_records(&self) -> Vec<UnreadableRecord> {
        self.unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Lists `snapshots/` again and reads every record the index lacks, up
    /// to [`RECORD_TRIES`] times while some fail (a store that erred once,
    /// a record written as this runs): what reads is adopted. Fails,
    /// naming the records and the way out, when some still cannot be read:
    /// gc would free the data only they reach.
    pub(crate) fn check_every_record(&self) -> Result<()> {
        for attempt in 1..=RECORD_TRIES {
            let keys = self.files.list(SnapshotRecord::FOLDER)?;
            self.adopt_snapshot_files(&keys, Vec::new())?;
            let unreadable = self.unreadable_records();
            let Some(first) = unreadable.first() else {
                return Ok(());
            };
            if attempt == RECORD_TRIES {
                let more = match unreadable.len() {
                    1 => String::new(),
                    n => format!(" ({} more records cannot be read either)", n - 1),
                };
                return Err(Error::WouldLoseData {
                    command: "gc",
                    reason: format!("{first}{more}"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
        }
        unreachable!("the last attempt returns")
    }

    /// The work of [`Repository::unreadable_record`](crate::Repository::unreadable_record).
    pub fn unreadable_record(&self, spec: &str) -> Option<SnapshotId> {
        let spec = spec.to_ascii_lowercase();
        let came_back = self.evidence().into_iter().filter_map(|e| match e {
            Evidence::RecordBack { id } => Some(id),
            _ => None,
        });
        let mut matches = self
            .unreadable_records()
            .into_iter()
            .map(|r| r.id)
            .chain(came_back)
            .filter(|id| !spec.is_empty() && id.to_hex().starts_with(&spec));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// Of the record files `keys` (a listing of `snapshots/`), those whose
    /// snapshot is not `indexed`, read.
    pub(crate) fn unindexed_records(
        &self,
        keys: &[String],
        indexed: &std::collections::HashSet<SnapshotId>,
    ) -> Vec<RecordFile> {
        read_unindexed_records(self.files.as_ref(), &self.crypt, keys, indexed)
    }

    /// The work of [`Repository::snapshots`](crate::Repository::snapshots).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        let mut out = Vec::new();
        for (id, bytes) in self.index.snapshots()? {
            out.push((id, decode_record(&self.crypt, &bytes, &id)?));
        }
        out.sort_by_key(|(id, r)| (r.time_unix_ns, *id));
        Ok(out)
    }

    /// The work of [`Repository::snapshot`](crate::Repository::snapshot).
    pub fn snapshot(&self, id: &SnapshotId) -> Result<SnapshotRecord> {
        match self.index.snapshot(id)? {
            Some(bytes) => decode_record(&self.crypt, &bytes, id),
            None => Err(Error::UnknownSnapshot(id.to_hex())),
        }
    }

    /// The work of [`Repository::snapshots_matching`](crate::Repository::snapshots_matching).
    pub fn snapshots_matching(
        &self,
        filter: &SnapshotFilter,
    ) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        let mut all = self.snapshots()?;
        all.retain(|(_, r)| filter.matches(r));
        Ok(all)
    }

    /// The work of [`Repository::resolve_snapshot`](crate::Repository::resolve_snapshot).
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, SnapshotRecord)> {
        self.resolve_snapshot_in(spec, &SnapshotFilter::default())
    }

    /// The work of [`Repository::resolve_snapshot_in`](crate::Repository::resolve_snapshot_in).
    pub fn resolve_snapshot_in(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, SnapshotRecord)> {
        let all = self.snapshots()?;
        if spec == "latest" {
            if all.is_empty() {
                return Err(Error::NoSnapshots);
            }
            return all
                .into_iter()
                .rev()
                .find(|(_, r)| filter.matches(r))
                .ok_or_else(|| Error::NoSnapshotMatches(filter.to_string()));
        }
        let spec_lower = spec.to_ascii_lowercase();
        if spec_lower.is_empty() || !spec_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::UnknownSnapshot(spec.to_string()));
        }
        let mut matches = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_lower));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one),
            (Some(_), Some(_)) => Err(Error::AmbiguousSnapshot(spec.to_string())),
            (None, _) => Err(Error::UnknownSnapshot(spec.to_string())),
        }
    }
}

/// Snapshot record files read at once (a fresh cache reads them all).
const RECORD_READERS: usize = 64;

/// How often gc reads the snapshot records that fail before it gives up
/// (and deletes nothing).
const RECORD_TRIES: u32 = 3;

/// A record file: its snapshot, its key, and its bytes if they read and
/// decode (else the error saying why not).
pub(crate) type RecordFile = (SnapshotId, String, Result<Vec<u8>>);

/// A record read to adopt: its snapshot and bytes.
type Adopted = (SnapshotId, Vec<u8>);

/// The ids of the snapshots `index` lists.
pub(crate) fn snapshot_ids(index: &Index) -> Result<std::collections::HashSet<SnapshotId>> {
    Ok(index.snapshots()?.into_iter().map(|(id, _)| id).collect())
}

/// Of the record files `keys` (a listing of `snapshots/`), those whose
/// snapshot is not `indexed`, read (several at once) and checked.
pub(crate) fn read_unindexed_records(
    files: &dyn MetaStore,
    crypt: &crate::crypto::Crypt,
    keys: &[String],
    indexed: &std::collections::HashSet<SnapshotId>,
) -> Vec<RecordFile> {
    let unindexed: Vec<(SnapshotId, &String)> = keys
        .iter()
        .filter_map(|key| Some((SnapshotRecord::id_of_key(key)?, key)))
        .filter(|(id, _)| !indexed.contains(id))
        .collect();
    let names: Vec<&str> = unindexed.iter().map(|(_, key)| key.as_str()).collect();
    let read = crate::store::get_many(files, &names, RECORD_READERS);
    unindexed
        .into_iter()
        .zip(read)
        .map(|((id, key), bytes)| {
            let bytes = bytes.and_then(|b| decode_record(crypt, &b, &id).map(|_| b));
            (id, key.clone(), bytes)
        })
        .collect()
}

/// A snapshot record's bytes and its id: in an encrypted repository keyed
/// like object ids (HMAC-SHA-256), so that a store reader cannot confirm
/// a record it guessed whole; the plain SHA-256 otherwise.
pub(crate) fn encode_record(
    crypt: &crate::crypto::Crypt,
    record: &SnapshotRecord,
) -> (SnapshotId, Vec<u8>) {
    let (plain, bytes) = record.encode();
    let id = if crypt.is_on() {
        SnapshotId(crypt.id_of(&bytes).0)
    } else {
        plain
    };
    (id, bytes)
}

/// A snapshot record named `id` decoded and checked against its name:
/// keyed ([`encode_record`]) or, for records written before names were
/// keyed, plain.
pub(crate) fn decode_record(
    crypt: &crate::crypto::Crypt,
    bytes: &[u8],
    id: &SnapshotId,
) -> Result<SnapshotRecord> {
    let keyed = crypt.is_on().then(|| SnapshotId(crypt.id_of(bytes).0));
    SnapshotRecord::decode_keyed(bytes, id, keyed)
}
