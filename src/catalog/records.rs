//! The record catalog: snapshot records and forgets' tombstones folded by
//! a compaction into sealed, sorted parts that the manifest names, so that
//! `snapshots/` and `forgotten/` hold only what came since
//! (`docs/design.md`, "Snapshot records").
//!
//! Three sides: the compaction's (the previous parts plus the record and
//! tombstone files it was handed, written as new parts), the sweep's (the
//! files a manifest folded, deleted), and a cache's (the parts of its base
//! manifest kept under `meta`, read again only when their version
//! changes; what a machine adopts and what counts as in the home come
//! from there and from the short listings).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::compact::Compaction;
use super::{Index, META};
use crate::error::Result;
use crate::format::family::{FamilyName, Sealer, MAX_DIGITS};
use crate::format::manifest::{self, cataloged_len, Cataloged, Manifest, Part};
use crate::format::snapshot::{SnapshotId, SnapshotRecord};
use crate::store::MetaStore;

/// Where forget's tombstones live in the home (as `engine::history` has
/// it).
const TOMBSTONES: &str = "forgotten/";

/// What a compaction folds into the catalog besides its previous parts:
/// record files and tombstone files of the home, read and checked by the
/// caller (a record against its name, a tombstone opened with the key).
#[derive(Clone, Debug, Default)]
pub struct RecordFold {
    /// Records, their bytes as stored.
    pub records: BTreeMap<SnapshotId, Vec<u8>>,
    /// Tombstones, their bytes as read.
    pub forgotten: BTreeMap<SnapshotId, Vec<u8>>,
}

impl RecordFold {
    /// True when there is nothing to fold.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.forgotten.is_empty()
    }

    /// How many record and tombstone files it folds.
    pub fn len(&self) -> usize {
        self.records.len() + self.forgotten.len()
    }
}

/// Reads the record-catalog parts `parts` of `home`, in id order.
pub fn read_parts(
    home: &dyn MetaStore,
    sealer: &dyn Sealer,
    parts: &[Part],
) -> Result<Vec<(SnapshotId, Cataloged)>> {
    let mut out = Vec::new();
    for part in parts.iter().filter(|p| p.size > 0) {
        out.extend(read_part(home, sealer, part)?);
    }
    Ok(out)
}

fn read_part(
    home: &dyn MetaStore,
    sealer: &dyn Sealer,
    part: &Part,
) -> Result<Vec<(SnapshotId, Cataloged)>> {
    if part.size == 0 {
        return Ok(Vec::new());
    }
    let key = manifest::records_key(&part.name, part.version);
    let location = format!("{}/{key}", home.location());
    manifest::decode_records(
        &home.get(&key)?,
        sealer,
        &part.name,
        part.version,
        &location,
    )
}

/// Deletes the record files and tombstone files of `home` that
/// `manifest`'s catalog holds (a record file whose snapshot it holds as a
/// record or as forgotten, a tombstone whose snapshot it holds as
/// forgotten); returns how many. Only for a manifest every machine that
/// could have listed those files before it has since seen, or would list
/// again: the newest under the lock held alone, one older than the grace
/// period beside writers.
pub fn delete_folded(
    home: &dyn MetaStore,
    sealer: &dyn Sealer,
    manifest: &Manifest,
) -> Result<u64> {
    let Some(parts) = &manifest.records else {
        return Ok(0);
    };
    let records = home.list(SnapshotRecord::FOLDER)?;
    let tombstones = home.list(TOMBSTONES)?;
    if records.is_empty() && tombstones.is_empty() {
        return Ok(0);
    }
    let catalog: HashMap<SnapshotId, bool> = read_parts(home, sealer, parts)?
        .into_iter()
        .map(|(id, entry)| (id, matches!(entry, Cataloged::Forgotten(_))))
        .collect();
    let mut deleted = 0;
    for key in records {
        let folded = SnapshotRecord::id_of_key(&key).is_some_and(|id| catalog.contains_key(&id));
        if folded {
            home.delete(&key)?;
            deleted += 1;
        }
    }
    for key in tombstones {
        let folded = key
            .strip_prefix(TOMBSTONES)
            .and_then(|hex| hex.parse::<SnapshotId>().ok())
            .is_some_and(|id| catalog.get(&id) == Some(&true));
        if folded {
            home.delete(&key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

impl Compaction<'_> {
    /// The catalog of `previous` (its parts; `None`: none yet) with
    /// `fold` added, written as version `version` where it changed: a
    /// part nothing new falls into keeps its version. A forgotten
    /// snapshot's record leaves, its tombstone stays (a record put back
    /// later is then known for one). Memory: one part and what falls
    /// into it.
    pub(super) fn fold_records(
        &self,
        previous: Option<&[Part]>,
        fold: &RecordFold,
        version: u64,
    ) -> Result<Vec<Part>> {
        let root = [Part {
            name: FamilyName::root(),
            version,
            size: 0,
        }];
        let mut parts = Vec::new();
        for part in previous.unwrap_or(&root) {
            let holds = |id: &&SnapshotId| part.name.holds(id.as_bytes());
            let mut new: BTreeMap<SnapshotId, Cataloged> = fold
                .records
                .iter()
                .filter(|(id, _)| holds(id))
                .map(|(id, b)| (*id, Cataloged::Record(b.clone())))
                .collect();
            let forgotten: Vec<_> = fold.forgotten.iter().filter(|(id, _)| holds(id)).collect();
            if new.is_empty() && forgotten.is_empty() {
                parts.push(part.clone());
                continue;
            }
            for (id, bytes) in forgotten {
                new.insert(*id, Cataloged::Forgotten(bytes.clone()));
            }
            let mut all: BTreeMap<SnapshotId, Cataloged> = read_part(self.home, self.sealer, part)?
                .into_iter()
                .collect();
            for (id, entry) in new {
                // Once forgotten, always: a record file of it is a put-back.
                if !matches!(all.get(&id), Some(Cataloged::Forgotten(_))) {
                    all.insert(id, entry);
                }
            }
            let all: Vec<(SnapshotId, Cataloged)> = all.into_iter().collect();
            parts.extend(self.write_records(&part.name, &all, version)?);
        }
        Ok(parts)
    }

    /// `entries` (sorted, all of part `name`) written as version `version`
    /// of record part `name`, or of its children if too big for one
    /// object.
    fn write_records(
        &self,
        name: &FamilyName,
        entries: &[(SnapshotId, Cataloged)],
        version: u64,
    ) -> Result<Vec<Part>> {
        let bytes: u64 = entries.iter().map(|(_, e)| cataloged_len(e)).sum();
        let d = name.digits().len();
        if bytes > self.limit && d < MAX_DIGITS && entries.len() > 1 {
            let mut parts = Vec::new();
            for child in name.children() {
                let mine: Vec<(SnapshotId, Cataloged)> = entries
                    .iter()
                    .filter(|(id, _)| child.holds(id.as_bytes()))
                    .cloned()
                    .collect();
                parts.extend(self.write_records(&child, &mine, version)?);
            }
            return Ok(parts);
        }
        if entries.is_empty() {
            return Ok(vec![Part {
                name: name.clone(),
                version,
                size: 0,
            }]);
        }
        let stored = manifest::encode_records(name, version, entries, self.sealer);
        self.create(&manifest::records_key(name, version), &stored)?;
        Ok(vec![Part {
            name: name.clone(),
            version,
            size: stored.len() as u64,
        }])
    }
}

/// `meta` keys `cataloged/<snapshot hex>`: the base manifest's catalog as
/// this cache holds it (the value: 0 and a record's bytes, or 1 and a
/// tombstone's).
const CATALOGED: &str = "cataloged/";
/// `meta` keys `catalog-part/<label>`: the version of each part of the
/// base manifest's catalog this cache holds.
const CATALOG_PART: &str = "catalog-part/";

/// The snapshots in the catalog this cache holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogIds {
    /// Those whose record it holds.
    pub records: HashSet<SnapshotId>,
    /// Those it holds forgotten.
    pub forgotten: HashSet<SnapshotId>,
}

/// The `meta` key range of the snapshots part `name` holds.
fn range_of(name: &FamilyName) -> (String, String) {
    let digits = if name.digits().is_empty() {
        String::new()
    } else {
        name.label()
    };
    (
        format!("{CATALOGED}{digits}"),
        format!("{CATALOGED}{digits}~"),
    )
}

impl Index {
    /// Brings the catalog this cache holds to `manifest`'s, reading only
    /// the parts whose version it does not hold already.
    pub(super) fn load_catalog(&self, home: &dyn MetaStore, manifest: &Manifest) -> Result<()> {
        let had: HashMap<String, Vec<u8>> = self.meta_under(CATALOG_PART)?.into_iter().collect();
        let parts = manifest.records.as_deref().unwrap_or_default();
        let named: HashSet<String> = parts.iter().map(|p| p.name.label()).collect();
        let mut batch = self.batch();
        let meta = self.cf(META);
        if parts.is_empty() {
            let (from, to) = range_of(&FamilyName::root());
            batch.inner.delete_range_cf(meta, from, to);
        }
        for label in had.keys().filter(|l| !named.contains(*l)) {
            batch
                .inner
                .delete_cf(meta, format!("{CATALOG_PART}{label}"));
        }
        for part in parts {
            let label = part.name.label();
            if had.get(&label).map(Vec::as_slice) == Some(&part.version.to_be_bytes()[..]) {
                continue;
            }
            let (from, to) = range_of(&part.name);
            batch.inner.delete_range_cf(meta, from, to);
            for (id, entry) in read_part(home, self.sealer.as_ref(), part)? {
                let (kind, bytes) = match entry {
                    Cataloged::Record(b) => (0u8, b),
                    Cataloged::Forgotten(b) => (1u8, b),
                };
                let mut value = vec![kind];
                value.extend_from_slice(&bytes);
                batch.inner.put_cf(meta, format!("{CATALOGED}{id}"), value);
            }
            batch.inner.put_cf(
                meta,
                format!("{CATALOG_PART}{label}"),
                part.version.to_be_bytes(),
            );
        }
        self.commit(batch).map(drop)
    }

    /// True when this cache's base manifest has a record catalog.
    pub fn has_catalog(&self) -> Result<bool> {
        Ok(!self.meta_under(CATALOG_PART)?.is_empty())
    }

    /// The snapshots of the catalog this cache holds (that of its base
    /// manifest).
    pub fn cataloged(&self) -> Result<CatalogIds> {
        let mut out = CatalogIds::default();
        for (hex, value) in self.meta_under(CATALOGED)? {
            let Ok(id) = hex.parse::<SnapshotId>() else {
                continue;
            };
            match value.first() {
                Some(0) => out.records.insert(id),
                Some(1) => out.forgotten.insert(id),
                _ => continue,
            };
        }
        Ok(out)
    }

    /// The record of snapshot `id` as the catalog this cache holds has
    /// it, if it has it.
    pub fn cataloged_record(&self, id: &SnapshotId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .meta(&format!("{CATALOGED}{id}"))?
            .filter(|v| v.first() == Some(&0))
            .map(|v| v[1..].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::compact::DiskUse;
    use crate::catalog::Access;
    use crate::format::family::Plain;
    use crate::store::{LocalStore, OsFs};

    fn id(n: u8) -> SnapshotId {
        SnapshotId::of(&[n])
    }

    /// One compaction of `home` into `epoch` on top of `previous`, with
    /// no segments and `fold` for the catalog, at `limit`.
    fn compact(
        home: &dyn MetaStore,
        tmp: &std::path::Path,
        previous: Option<&Manifest>,
        fold: RecordFold,
        epoch: u64,
        limit: u64,
    ) -> Manifest {
        std::fs::create_dir_all(tmp).unwrap();
        let c = Compaction {
            home,
            sealer: &Plain,
            tmp,
            limit,
            disk: DiskUse::default(),
            records: Some(fold),
        };
        c.run(previous, &[], epoch).unwrap().unwrap()
    }

    fn catalog(home: &dyn MetaStore, m: &Manifest) -> Vec<(SnapshotId, Cataloged)> {
        read_parts(home, &Plain, m.records.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn records_and_forgets_fold_into_the_catalog_and_the_sweep_deletes_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let home = LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap();
        let tmp = dir.path().join("tmp");
        for n in 0..3 {
            home.put(&SnapshotRecord::key(&id(n)), &[n]).unwrap();
        }
        let mut fold = RecordFold::default();
        for n in 0..2 {
            fold.records.insert(id(n), vec![n]);
        }
        let first = compact(&home, &tmp, None, fold, 1, 1 << 20);
        let mut want = vec![
            (id(0), Cataloged::Record(vec![0])),
            (id(1), Cataloged::Record(vec![1])),
        ];
        want.sort_by_key(|(id, _)| *id);
        assert_eq!(catalog(&home, &first), want);
        // The files the catalog holds go; the one it does not (written
        // after the compaction listed) stays.
        assert_eq!(delete_folded(&home, &Plain, &first).unwrap(), 2);
        assert_eq!(
            home.list(SnapshotRecord::FOLDER).unwrap(),
            vec![SnapshotRecord::key(&id(2))]
        );

        // Snapshot 0 is forgotten, 2 folded: the forgotten one's record
        // leaves, its tombstone stays, and the tombstone file goes.
        let tombstone = format!("{TOMBSTONES}{}", id(0));
        home.put(&tombstone, b"{}").unwrap();
        let mut fold = RecordFold::default();
        fold.records.insert(id(2), vec![2]);
        fold.forgotten.insert(id(0), b"{}".to_vec());
        let second = compact(&home, &tmp, Some(&first), fold, 2, 1 << 20);
        let got = catalog(&home, &second);
        assert!(got.contains(&(id(0), Cataloged::Forgotten(b"{}".to_vec()))));
        assert!(got.contains(&(id(1), Cataloged::Record(vec![1]))));
        assert!(got.contains(&(id(2), Cataloged::Record(vec![2]))));
        assert_eq!(got.len(), 3);
        // A record file of a forgotten snapshot put back: the catalog keeps
        // it forgotten, and the sweep deletes the file with the others.
        home.put(&SnapshotRecord::key(&id(0)), &[0]).unwrap();
        let mut fold = RecordFold::default();
        fold.records.insert(id(0), vec![0]);
        let third = compact(&home, &tmp, Some(&second), fold, 3, 1 << 20);
        assert_eq!(catalog(&home, &third), got);
        assert_eq!(delete_folded(&home, &Plain, &third).unwrap(), 3);
        assert!(home.list(SnapshotRecord::FOLDER).unwrap().is_empty());
        assert!(home.list(TOMBSTONES).unwrap().is_empty());
        // Nothing new: the part keeps its version, and the manifest names
        // the same object.
        let fourth = compact(&home, &tmp, Some(&third), RecordFold::default(), 4, 1 << 20);
        assert_eq!(fourth.records, third.records);
        assert!(fourth.named_keys().is_superset(
            &third
                .named_keys()
                .into_iter()
                .filter(|k| k.contains("records-"))
                .collect()
        ));
    }

    #[test]
    fn a_catalog_past_the_limit_splits_and_a_cache_holds_what_its_parts_hold() {
        let dir = tempfile::tempdir().unwrap();
        let home = LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap();
        let tmp = dir.path().join("tmp");
        let mut fold = RecordFold::default();
        for n in 0..64 {
            fold.records.insert(id(n), vec![n; 100]);
        }
        let first = compact(&home, &tmp, None, fold, 1, 2000);
        let parts = first.records.clone().unwrap();
        assert!(parts.len() >= 16, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.size <= 2000 + 200), "{parts:?}");
        assert_eq!(catalog(&home, &first).len(), 64);

        let index = Index::open(&dir.path().join("cache"), Access::Create).unwrap();
        index.load_catalog(&home, &first).unwrap();
        let held = index.cataloged().unwrap();
        assert_eq!(held.records.len(), 64);
        assert!(held.forgotten.is_empty());
        assert!(index.has_catalog().unwrap());
        assert_eq!(index.cataloged_record(&id(5)).unwrap(), Some(vec![5; 100]));

        // A forget rewrites one part; the cache follows it, and holds the
        // rest as it was.
        let mut fold = RecordFold::default();
        fold.forgotten.insert(id(5), b"{}".to_vec());
        let second = compact(&home, &tmp, Some(&first), fold, 2, 2000);
        let changed: Vec<_> = second
            .records
            .iter()
            .flatten()
            .filter(|p| !parts.contains(p))
            .collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        index.load_catalog(&home, &second).unwrap();
        let held = index.cataloged().unwrap();
        assert_eq!(held.records.len(), 63);
        assert_eq!(held.forgotten, HashSet::from([id(5)]));
        assert_eq!(index.cataloged_record(&id(5)).unwrap(), None);

        // A manifest without a catalog (a home put back from before it)
        // leaves the cache holding none.
        let older = Manifest {
            records: None,
            ..second.clone()
        };
        index.load_catalog(&home, &older).unwrap();
        assert_eq!(index.cataloged().unwrap(), CatalogIds::default());
        assert!(!index.has_catalog().unwrap());
    }
}
