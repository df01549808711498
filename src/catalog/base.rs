//! The base a cache's index starts from: the newest manifest of the
//! home's families (docs/design.md, "A petabyte index"), loaded into the
//! cache, or adopted by the process that compacted it. Segments no
//! manifest covers are applied on top, as before.

use super::{applied_key, retired_key, Index, CHUNKS, COVERED, META, PACKS};
use crate::error::{Error, Result};
use crate::format::family::{Family, Sealer};
use crate::format::manifest::{self, Manifest};
use crate::format::values::{Location, PackInfo};
use crate::id::{ChunkId, PackId};
use crate::store::MetaStore;

/// The `meta` key holding the epoch of the manifest the index was loaded
/// from (or adopted after compacting it), 8 bytes big-endian. Absent
/// while a load is under way: the next catch-up starts it again. (It was
/// `base` while a cache held a manifest's entries: a build from then
/// finds no base in an overlay, and loads the manifest whole again.)
pub(super) const BASE: &str = "base-overlay";

/// Bytes of changes a load gathers before committing them: a small index
/// loads in one atomic commit, a large one in steps of this size (the
/// base is marked in the last).
const LOAD_BATCH_BYTES: usize = 64 << 20;

/// What starts every manifest's key.
pub const MANIFEST_PREFIX: &str = "index/manifest.";

/// The epoch of the manifest whose key is `key`; `None` for a key that
/// is not a manifest's, or names an epoch past the last a version can
/// hold (`manifest::MAX_EPOCH`: no compaction writes one).
pub fn manifest_epoch(key: &str) -> Option<u64> {
    let hex = key.strip_prefix(MANIFEST_PREFIX)?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .filter(|&e| e < manifest::MAX_EPOCH)
}

/// The epochs of the manifests in `home`, oldest first (keys that are
/// not a manifest's are left alone).
pub fn manifest_epochs(home: &dyn MetaStore) -> Result<Vec<u64>> {
    let mut epochs: Vec<u64> = home
        .list(MANIFEST_PREFIX)?
        .iter()
        .filter_map(|key| manifest_epoch(key))
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// The manifest of `epoch` in `home`, opened with `sealer`.
pub fn read_manifest(home: &dyn MetaStore, sealer: &dyn Sealer, epoch: u64) -> Result<Manifest> {
    let key = manifest::manifest_key(epoch);
    let location = format!("{}/{key}", home.location());
    Manifest::decode(&home.get(&key)?, sealer, epoch, &location)
}

/// The newest manifest in `home`, if any.
pub fn newest_manifest(home: &dyn MetaStore, sealer: &dyn Sealer) -> Result<Option<Manifest>> {
    match manifest_epochs(home)?.last() {
        Some(&epoch) => read_manifest(home, sealer, epoch).map(Some),
        None => Ok(None),
    }
}

impl Index {
    /// The epoch of the manifest this index holds, if it holds one whole.
    pub fn base(&self) -> Result<Option<u64>> {
        match self.meta(BASE)? {
            None => Ok(None),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| {
                    Error::corrupt("index base", self.path.display().to_string(), "not 8 bytes")
                }),
        }
    }

    /// Empties this index and fills it with what `manifest` describes:
    /// its pack table, tombstones and families, its covered segments
    /// marked as such; `added` is told every id. Committed in steps of
    /// [`LOAD_BATCH_BYTES`], packs first (so no entry is ever met without
    /// its pack), the base marked last.
    pub(super) fn load_base(
        &self,
        home: &dyn MetaStore,
        manifest: &Manifest,
        added: &mut dyn FnMut(&ChunkId),
    ) -> Result<()> {
        let sealer = self.sealer.as_ref();
        let mut batch = self.batch();
        batch.wipe();
        for part in manifest.packs.iter().filter(|p| p.size > 0) {
            let key = manifest::packs_key(&part.name, part.version);
            let location = format!("{}/{key}", home.location());
            let bytes = home.get(&key)?;
            for (pack, info) in
                manifest::decode_packs(&bytes, sealer, &part.name, part.version, &location)?
            {
                batch.inner.put_cf(self.cf(PACKS), pack.0, info.encode());
                batch.published.push((pack, info.shard));
            }
        }
        for pack in &manifest.tombstones {
            batch.inner.put_cf(self.cf(META), retired_key(pack), []);
        }
        for name in &manifest.covers {
            batch
                .inner
                .put_cf(self.cf(META), applied_key(name), COVERED);
        }
        // An overlay keeps the families' summary, not their entries.
        let copied = if self.home.is_some() {
            Vec::new()
        } else {
            manifest.families.clone()
        };
        for part in copied.iter().filter(|p| p.size > 0) {
            let key = part.name.key(part.version);
            let location = format!("{}/{key}", home.location());
            let family = Family::read(
                &home.get(&key)?,
                sealer,
                &part.name,
                part.version,
                &location,
            )?;
            let chunks = self.cf(CHUNKS);
            for (id, loc) in &family.entries {
                added(id);
                batch.inner.put_cf(chunks, id.as_bytes(), loc.encode());
            }
            if batch.inner.size_in_bytes() > LOAD_BATCH_BYTES {
                self.commit(std::mem::replace(&mut batch, self.batch()))?;
            }
        }
        // The catalog before the base mark: a cache marked as loaded
        // from this manifest holds its catalog too (else its records
        // would look gone from the home). So does the summary.
        self.load_catalog(home, manifest)?;
        if self.home.is_some() {
            self.load_summary(manifest)?;
        }
        batch
            .inner
            .put_cf(self.cf(META), BASE, manifest.epoch.to_be_bytes());
        self.commit(batch).map(drop)
    }

    /// Marks `manifest`, just written from this index's own segments by
    /// the process that compacted them, as its base: the segments it
    /// covers are accounted for (they may be deleted) and nothing is
    /// loaded again (but the parts of its record catalog this cache does
    /// not hold, read from `home`).
    pub fn adopt_base(&self, home: &dyn MetaStore, manifest: &Manifest) -> Result<()> {
        let mut batch = self.batch();
        for name in &manifest.covers {
            batch
                .inner
                .put_cf(self.cf(META), applied_key(name), COVERED);
        }
        // The catalog before the base mark: a cache marked as loaded
        // from this manifest holds its catalog too (else its records
        // would look gone from the home).
        self.load_catalog(home, manifest)?;
        batch
            .inner
            .put_cf(self.cf(META), BASE, manifest.epoch.to_be_bytes());
        self.commit(batch)?;
        // The summary held is an older manifest's.
        self.set_summary(None);
        Ok(())
    }
}

/// The folder of the home that holds manifests, families and pack parts.
pub const INDEX_FOLDER: &str = "index/";

impl Index {
    /// Checks the home's families against this index, as a machine that
    /// loads them would see them: every family of `manifest` reads (each
    /// block against its fence, each sealed part with the key), points
    /// only into packs of the manifest's pack table, and, when this index
    /// was loaded from that manifest, together with `uncovered` (the ids
    /// the segments no manifest covers add) holds every id this index
    /// holds. Each finding goes to `problem`; returns
    /// the entries checked. Families are read one at a time, in id order.
    pub fn check_families(
        &self,
        home: &dyn MetaStore,
        manifest: &Manifest,
        uncovered: &std::collections::HashSet<ChunkId>,
        problem: &mut dyn FnMut(String),
    ) -> Result<u64> {
        let sealer = self.sealer.as_ref();
        let mut packs = std::collections::HashSet::new();
        for part in manifest.packs.iter().filter(|p| p.size > 0) {
            let key = manifest::packs_key(&part.name, part.version);
            let location = format!("{}/{key}", home.location());
            let read = home.get(&key).and_then(|bytes| {
                manifest::decode_packs(&bytes, sealer, &part.name, part.version, &location)
            });
            match read {
                Ok(list) => packs.extend(list.into_iter().map(|(pack, _)| pack)),
                // Superseded while read: the caller reads the newer one.
                Err(e) if crate::store::is_not_found(&e) => return Err(e),
                Err(e) => problem(format!("pack table part {location}: {e}")),
            }
        }
        let mut families: Vec<&manifest::Part> = manifest.families.iter().collect();
        families.sort_by(|a, b| a.name.digits().cmp(b.name.digits()));
        let mut checked = 0;
        // An index loaded from another manifest (a reader open since
        // before a compaction) holds another view: the families are only
        // read, not held against it.
        if self.base()? != Some(manifest.epoch) {
            for part in families {
                checked += self.read_family(home, part, &packs, problem)?.len() as u64;
            }
            return Ok(checked);
        }
        // The family now read, and its entries; which were read.
        let mut current: Option<(usize, Vec<(ChunkId, Location)>)> = None;
        let mut read = vec![false; families.len()];
        let mut missing = 0u64;
        self.for_each_chunk(|id, _| {
            let at = match &current {
                Some((n, _)) if families[*n].name.contains(&id) => *n,
                _ => {
                    let Some(at) = families.iter().position(|p| p.name.contains(&id)) else {
                        problem(format!(
                            "no family of manifest {} holds id {id}",
                            manifest.epoch
                        ));
                        return Ok(());
                    };
                    at
                }
            };
            if current.as_ref().is_none_or(|(n, _)| *n != at) {
                let entries = self.read_family(home, families[at], &packs, problem)?;
                checked += entries.len() as u64;
                read[at] = true;
                current = Some((at, entries));
            }
            let (_, entries) = current.as_ref().expect("read above");
            if entries.binary_search_by_key(&id, |(i, _)| *i).is_err() && !uncovered.contains(&id) {
                missing += 1;
                if missing <= 10 {
                    problem(format!(
                        "chunk {id} is in this machine's index but in no family of manifest {} \
                         nor any newer segment: another machine would not find it",
                        manifest.epoch
                    ));
                }
            }
            Ok(())
        })?;
        if missing > 10 {
            problem(format!("{} more chunks like that", missing - 10));
        }
        // An overlay holds no entry of most families: each is still read
        // and checked.
        for (part, _) in families.iter().zip(read).filter(|(_, read)| !read) {
            checked += self.read_family(home, part, &packs, problem)?.len() as u64;
        }
        Ok(checked)
    }

    /// The entries of family `part`, checked as it is read: none when it
    /// does not read, and those pointing into packs not in `packs` named.
    /// A family gone is an error (a compaction superseded it meanwhile).
    fn read_family(
        &self,
        home: &dyn MetaStore,
        part: &manifest::Part,
        packs: &std::collections::HashSet<PackId>,
        problem: &mut dyn FnMut(String),
    ) -> Result<Vec<(ChunkId, Location)>> {
        if part.size == 0 {
            return Ok(Vec::new());
        }
        let key = part.name.key(part.version);
        let location = format!("{}/{key}", home.location());
        let family = home.get(&key).and_then(|bytes| {
            Family::read(
                &bytes,
                self.sealer.as_ref(),
                &part.name,
                part.version,
                &location,
            )
        });
        match family {
            Ok(family) => {
                let strays = family
                    .entries
                    .iter()
                    .filter(|(_, loc)| !packs.contains(&loc.pack))
                    .count();
                if strays > 0 {
                    problem(format!(
                        "family {location}: {strays} entries point into packs its pack table lacks"
                    ));
                }
                Ok(family.entries)
            }
            Err(e) if crate::store::is_not_found(&e) => Err(e),
            Err(e) => {
                problem(format!("family {location}: {e}"));
                Ok(Vec::new())
            }
        }
    }
}

/// The ids the segments `names` of `home` add (packs they add, entries
/// they move): what a machine applies on top of the families.
pub fn ids_added_by(
    home: &dyn MetaStore,
    names: &[String],
) -> Result<std::collections::HashSet<ChunkId>> {
    let mut ids = std::collections::HashSet::new();
    for batch in names.chunks(super::replay::CATCH_UP_BATCH) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        for segment in super::replay::read_segments(home, &batch)? {
            for op in segment.ops {
                match op {
                    super::segment::Op::AddPack { entries, .. } => {
                        ids.extend(entries.iter().map(|e| e.id));
                    }
                    super::segment::Op::Locate(loc) => {
                        ids.insert(loc.entry.id);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(ids)
}

/// Every entry and every pack, each sorted.
pub type WholeIndex = (Vec<(ChunkId, Location)>, Vec<(PackId, PackInfo)>);

/// The whole index a manifest describes, read into memory: every entry
/// and every pack. For tests and small repositories.
pub fn read_all(
    home: &dyn MetaStore,
    sealer: &dyn Sealer,
    manifest: &Manifest,
) -> Result<WholeIndex> {
    let mut entries = Vec::new();
    for part in manifest.families.iter().filter(|p| p.size > 0) {
        let key = part.name.key(part.version);
        entries.extend(
            Family::read(&home.get(&key)?, sealer, &part.name, part.version, &key)?.entries,
        );
    }
    entries.sort_unstable_by_key(|(id, _)| *id);
    let mut packs = Vec::new();
    for part in manifest.packs.iter().filter(|p| p.size > 0) {
        let key = manifest::packs_key(&part.name, part.version);
        packs.extend(manifest::decode_packs(
            &home.get(&key)?,
            sealer,
            &part.name,
            part.version,
            &key,
        )?);
    }
    packs.sort_unstable_by_key(|(p, _)| *p);
    Ok((entries, packs))
}
