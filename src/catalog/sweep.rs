//! What compactions leave behind, deleted: the manifests, family versions
//! and pack parts a newer manifest superseded, the objects of a
//! compaction that lost its epoch or was cut short, and the segments a
//! manifest covers (`docs/design.md`, "Epochs and compaction beside
//! writers"). Holding the lock alone, everything the newest manifest does
//! not name goes at once; beside writers and readers, only what was
//! superseded longer ago than a grace period, by the store's clock.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::base::{manifest_epoch, read_manifest, INDEX_FOLDER};
use super::segment;
use crate::error::Result;
use crate::format::family::Sealer;
use crate::format::manifest::{epoch_of, Manifest};
use crate::store::MetaStore;

/// Deletes every object of `home`'s index folder that `manifest` (the
/// newest) does not name: older manifests, the family versions and pack
/// parts they alone named, and what a compaction cut short left. Only
/// under the writer lock held alone: a reader that was loading an older
/// manifest lists again and loads this one. Returns how many objects it
/// deleted.
pub fn delete_superseded(home: &dyn MetaStore, manifest: &Manifest) -> Result<usize> {
    let keep = manifest.named_keys();
    let mut deleted = 0;
    for key in home.list(INDEX_FOLDER)? {
        if !keep.contains(&key) {
            home.delete(&key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// What [`delete_after_grace`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Manifests, family versions and pack parts.
    pub objects: u64,
    /// Segments a manifest covers.
    pub segments: u64,
    /// Record files and forgets' tombstones a manifest's catalog holds.
    pub records: u64,
}

/// Keys with the store's time of their last write.
type Written = Vec<(String, SystemTime)>;

/// Every object of `home`'s index folder with the store's time of its
/// last write, and the store's time now: that of a small probe written
/// there, listed with them and deleted again (`None` if the listing
/// missed it).
fn listed_with_now(home: &dyn MetaStore) -> Result<(Written, Option<SystemTime>)> {
    let probe = format!("{INDEX_FOLDER}clock-{}", segment::new_name());
    home.put(&probe, b"")?;
    let listed = home.written(INDEX_FOLDER);
    home.delete(&probe)?;
    let mut listed = listed?;
    let now = listed.iter().find(|(k, _)| *k == probe).map(|(_, t)| *t);
    listed.retain(|(k, _)| *k != probe);
    Ok((listed, now))
}

/// The epoch of the version a family's key (`index/<prefix>.<version>`)
/// or a pack part's (`index/packs-<prefix>.<version>`) ends in; `None`
/// for a key of another shape.
fn version_epoch(key: &str) -> Option<u64> {
    let (_, hex) = key.rsplit_once('.')?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(epoch_of)
}

/// Beside writers and readers: finds the newest manifest `M` written
/// longer than `grace` ago by the store's clock, and deletes what every
/// manifest from `M` on supersedes (older manifests, the family versions
/// and pack parts only they named, and what a compaction of epoch `M` or
/// earlier left unnamed, having lost its epoch or been cut short), the
/// segments `M` covers and the record and tombstone files its catalog
/// holds. A reader that listed an older manifest or one of
/// those segments did so longer than `grace` ago, and lists again when
/// it meets one gone; objects of a compaction still running (of an epoch
/// after the newest manifest) are never touched.
pub fn delete_after_grace(
    home: &dyn MetaStore,
    sealer: &dyn Sealer,
    grace: Duration,
) -> Result<Swept> {
    let (listed, now) = listed_with_now(home)?;
    let Some(now) = now else {
        return Ok(Swept::default());
    };
    // The newest manifest old enough, by the store's clock.
    let mut epochs: Vec<(u64, SystemTime)> = listed
        .iter()
        .filter_map(|(key, t)| Some((manifest_epoch(key)?, *t)))
        .collect();
    epochs.sort_unstable();
    let old_enough = |t: &SystemTime| now.duration_since(*t).is_ok_and(|age| age >= grace);
    let settled = epochs
        .iter()
        .filter(|(_, t)| old_enough(t))
        .map(|(e, _)| *e)
        .max();
    let Some(settled) = settled else {
        return Ok(Swept::default());
    };
    let mut keep = HashSet::new();
    let mut oldest = None;
    for &(epoch, _) in epochs.iter().filter(|(e, _)| *e >= settled) {
        let manifest = read_manifest(home, sealer, epoch)?;
        keep.extend(manifest.named_keys());
        oldest.get_or_insert(manifest);
    }
    let mut swept = Swept::default();
    for (key, _) in &listed {
        if keep.contains(key) {
            continue;
        }
        let old = match manifest_epoch(key) {
            Some(e) => e < settled,
            None => version_epoch(key).is_some_and(|e| e <= settled),
        };
        if old {
            home.delete(key)?;
            swept.objects += 1;
        }
    }
    let Some(oldest) = oldest else {
        return Ok(swept);
    };
    let gone = oldest.covered_of(segment::names(home)?);
    segment::delete(home, &gone)?;
    swept.segments = gone.len() as u64;
    swept.records = super::records::delete_folded(home, sealer, &oldest)?;
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::base::manifest_epochs;
    use crate::catalog::segment::Segment;
    use crate::format::family::{FamilyName, Plain};
    use crate::format::manifest::{self, new_version, Part};
    use crate::store::{LocalStore, OsFs};

    #[test]
    fn beside_writers_only_what_was_superseded_a_grace_period_ago_goes() {
        let dir = tempfile::tempdir().unwrap();
        let home = LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap();
        let root = FamilyName::root();
        let part = |version| Part {
            name: root.clone(),
            version,
            size: 10,
        };
        let segments: Vec<String> = (0..4).map(|_| segment::new_name()).collect();
        for name in &segments {
            let empty = Segment {
                full: false,
                ops: Vec::new(),
            };
            segment::put(&home, name, &empty).unwrap();
        }
        let (v1, v2) = (new_version(1), new_version(2));
        let first = Manifest {
            epoch: 1,
            families: vec![part(v1)],
            packs: vec![part(v1)],
            records: None,
            tombstones: Vec::new(),
            covers: segments[..2].to_vec(),
        };
        // Epoch 2 rewrote the family, not the pack table.
        let second = Manifest {
            epoch: 2,
            families: vec![part(v2)],
            covers: segments[..3].to_vec(),
            ..first.clone()
        };
        for m in [&first, &second] {
            home.put(&manifest::manifest_key(m.epoch), &m.encode(&Plain))
                .unwrap();
        }
        let lost = root.key(new_version(2));
        let running = root.key(new_version(3));
        for key in [
            root.key(v1),
            root.key(v2),
            manifest::packs_key(&root, v1),
            lost,
            running.clone(),
        ] {
            home.put(&key, b"object").unwrap();
        }
        let index = || {
            let mut keys = home.list(INDEX_FOLDER).unwrap();
            keys.sort();
            keys
        };
        // A forged manifest of an epoch no version can hold is no manifest.
        home.put("index/manifest.ffffffffffffffff", b"forged")
            .unwrap();
        assert_eq!(manifest_epochs(&home).unwrap(), [1, 2]);
        let before = index();
        // Within the grace period, nothing goes.
        let hour = Duration::from_secs(3600);
        assert_eq!(
            delete_after_grace(&home, &Plain, hour).unwrap(),
            Swept::default()
        );
        assert_eq!(index(), before);
        assert_eq!(segment::names(&home).unwrap().len(), 4);
        // Past it: the older manifest, the family version only it named,
        // the lost compaction's object, and the segments epoch 2 covers.
        let swept = delete_after_grace(&home, &Plain, Duration::ZERO).unwrap();
        assert_eq!(
            swept,
            Swept {
                objects: 3,
                segments: 3,
                records: 0
            }
        );
        let mut left = vec![
            "index/manifest.ffffffffffffffff".to_string(),
            manifest::manifest_key(2),
            root.key(v2),
            manifest::packs_key(&root, v1),
            running,
        ];
        left.sort();
        assert_eq!(index(), left, "a running compaction's object stays");
        assert_eq!(segment::names(&home).unwrap(), segments[3..]);
    }
}
