//! `repair index`: rebuild the index segments (and this machine's cached
//! index and Bloom filter) from `config`, `snapshots/` and the packs alone.
//!
//! The new index is built in the cache slot's `index.new`; only when it is
//! complete does it become the truth, as families, and then take the
//! old cached index's place. Until then the segments stay as they were. Each pack's
//! entries come from its trailer; a pack whose trailer is damaged is walked
//! from the front, keeping every record whose bytes still hash to its id
//! (in a new pack; the damaged one is deleted after the swap).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::base::{manifest_epochs, read_manifest};
use crate::catalog::records::{self, RecordFold};
use crate::catalog::scratch::in_scratch;
use crate::catalog::segment;
use crate::catalog::sweep::delete_superseded;
use crate::catalog::{Access, Index, PackInfo};
use crate::crypto::Crypt;
use crate::engine::cache::CacheSlot;
use crate::engine::history::tombstone_files;
use crate::engine::home::{Hold, Home};
use crate::engine::{Engine, OpenOptions, Progress, CONFIG};
use crate::error::{Error, IoContext, Result};
use crate::format::manifest::{Cataloged, Manifest};
use crate::format::pack::{entries_of, repack, scan_sealed_records};
use crate::format::record;
use crate::format::record::ObjectKind;
use crate::format::snapshot::{SnapshotId, SnapshotRecord};
use crate::id::ChunkId;
use crate::ring::ShardId;
use crate::store::read_entries;
use crate::store::{is_not_found, open_shard, Create, MetaStore};
use crate::store::{PackEntry, PackId, PackStore};

/// What a rebuild found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Packs indexed.
    pub packs: u64,
    /// Objects indexed.
    pub objects: u64,
    /// Snapshot records indexed.
    pub snapshots: u64,
    /// Packs whose trailer was damaged, salvaged record by record.
    pub salvaged_packs: Vec<String>,
    /// Files that could not be used at all, with the reason.
    pub unusable: Vec<String>,
}

impl RepairReport {
    /// True when every pack and record file was usable as it was.
    pub fn is_clean(&self) -> bool {
        self.unusable.is_empty() && self.salvaged_packs.is_empty()
    }
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "rebuilt the index: {} packs, {} objects, {} snapshots",
            self.packs, self.objects, self.snapshots
        )?;
        for p in &self.salvaged_packs {
            writeln!(f, "salvaged damaged pack {p}")?;
        }
        for u in &self.unusable {
            writeln!(f, "could not use {u}")?;
        }
        Ok(())
    }
}

/// The work of [`Repository::repair_index`](crate::Repository::repair_index).
pub(crate) fn repair_index(path: impl AsRef<Path>) -> Result<(Engine, RepairReport)> {
    repair_index_with(path, &OpenOptions::default())
}

/// The work of [`Repository::repair_index_with`](crate::Repository::repair_index_with).
pub(crate) fn repair_index_with(
    path: impl AsRef<Path>,
    opts: &OpenOptions,
) -> Result<(Engine, RepairReport)> {
    let root = path.as_ref();
    let fs = opts.file_system();
    let home = Home::open(root, &fs, false)?;
    let (bytes, head) = crate::engine::open::config_head(home.files().as_ref(), root)?;
    let cache_root = opts.cache_root()?;
    crate::engine::open::check_no_downgrade(&cache_root, root, &head, opts.password.as_ref())?;
    let (config, crypt, _) = crate::engine::open::unlock_config(
        home.files().as_ref(),
        root,
        &bytes,
        &head,
        opts.password.as_ref(),
        &cache_root,
    )?;
    let files = crate::engine::keys::files_for(home.files(), &crypt);
    let mut report = RepairReport::default();
    {
        let hold = Hold::writer(&home, false)?;
        let cache = CacheSlot::take(&opts.cache_root()?, &config.repository_id)?;
        // The new index is built aside and becomes the truth whole: a
        // repair cut short leaves the index as it was, never a partial
        // one that opens as valid (gc would take the packs it lacks for
        // orphans).
        let fresh = cache.dir().join("index.new");
        if fresh.exists() {
            fs::remove_dir_all(&fresh).at(&fresh)?;
        }
        let index = Index::open(&fresh, Access::Create)?
            .with_crash_points(fs.clone())
            .with_sealer(Arc::new(crypt.clone()));
        let mut damaged = Vec::new();
        for shard in &config.shards {
            let backend = open_shard(root, shard, Create::No, &fs)?;
            damaged.extend(index_shard(
                &index,
                shard.id,
                &backend,
                &crypt,
                &mut report,
            )?);
        }
        let records = index_snapshots(&index, files.as_ref(), &crypt, &mut report)?;
        // The rebuilt index becomes the truth: families made from it
        // alone, under a manifest that covers every segment there was,
        // after which none is applied again. The old manifests are not
        // read (they may be what was damaged); the new one comes after
        // the newest listed.
        let before = segment::names(files.as_ref())?;
        let epoch = manifest_epochs(files.as_ref())?.last().map_or(1, |e| e + 1);
        hold.check_alive()?;
        if !config.has_catalog() {
            home.files()
                .put(CONFIG, &config.with_catalog().encode_for(&crypt))?;
        }
        let manifest = write_families(
            &index,
            files.as_ref(),
            &crypt,
            &cache,
            &before,
            epoch,
            records,
        )?;
        index.adopt_base(files.as_ref(), &manifest)?;
        index.flush()?;
        drop(index);
        swap_in(&cache.index(), &fresh)?;
        hold.check_alive()?;
        delete_superseded(files.as_ref(), &manifest)?;
        segment::delete(files.as_ref(), &before)?;
        records::delete_folded(files.as_ref(), &crypt, &manifest)?;
        let bloom = cache.bloom();
        if bloom.exists() {
            fs::remove_file(&bloom).at(&bloom)?;
        }
        // Their good records are in the new index's packs now.
        for (pack, backend) in damaged {
            backend.delete(&pack.key())?;
        }
    }
    // Opening rebuilds the Bloom filter from the new index.
    let repo = Engine::open_with(root, opts)?;
    repo.save_bloom()?;
    Ok((repo, report))
}

/// `index` written to `home` as families of epoch `epoch` covering
/// `covers`, with `records` as its record catalog, the spill runs in the
/// cache slot (emptied after).
fn write_families(
    index: &Index,
    home: &dyn MetaStore,
    crypt: &Crypt,
    cache: &CacheSlot,
    covers: &[String],
    epoch: u64,
    records: RecordFold,
) -> Result<Manifest> {
    let tmp = cache.dir().join("compaction");
    let (manifest, _) = in_scratch(home, crypt, &tmp, Some(records), |c| {
        c.from_index(index, covers, epoch)
    })?;
    manifest.ok_or_else(|| Error::Index {
        path: cache.index(),
        message: format!(
            "another process wrote the index manifest of epoch {epoch} while this one held \
             the lock alone; run `dedup repair index` again"
        ),
    })
}

/// Replaces the cached index at `index_dir` with the complete one at
/// `fresh` (the families made from it are already written): the old one
/// moves aside, the new one takes its name, the old one goes. A crash
/// between the two renames leaves no index, which the next open makes
/// again from the segments.
fn swap_in(index_dir: &Path, fresh: &Path) -> Result<()> {
    let aside = index_dir.with_extension("old");
    if aside.exists() {
        fs::remove_dir_all(&aside).at(&aside)?;
    }
    if index_dir.exists() {
        fs::rename(index_dir, &aside).at(index_dir)?;
    }
    fs::rename(fresh, index_dir).at(index_dir)?;
    if aside.exists() {
        fs::remove_dir_all(&aside).at(&aside)?;
    }
    Ok(())
}

/// Indexes every pack of one shard from its trailer. A pack whose trailer
/// is damaged is salvaged: every record that still hashes to its id goes
/// into a new pack; the damaged packs are returned, to be deleted once the
/// new index is in place.
fn index_shard(
    index: &Index,
    shard: ShardId,
    backend: &Arc<dyn PackStore>,
    crypt: &Crypt,
    report: &mut RepairReport,
) -> Result<Vec<(PackId, Arc<dyn PackStore>)>> {
    let mut damaged = Vec::new();
    for key in backend.list("")? {
        let Some(pack) = PackId::from_key(&key) else {
            continue;
        };
        if let Ok(entries) = read_entries(backend.as_ref(), &key, None, crypt) {
            let info = PackInfo::of(shard, backend.size(&key)?, &entries);
            index.commit_pack(pack, &info, &entries)?;
            report.packs += 1;
            report.objects += entries.len() as u64;
            continue;
        }
        let bytes = backend.get(&key)?;
        let salvaged = scan_sealed_records(&bytes, crypt, |e, stored| {
            record::open(&pack, e, stored, crypt).is_ok()
        });
        let place = format!("{}/{key}", backend.location());
        if salvaged.is_empty() {
            report
                .unusable
                .push(format!("{place}: no readable records"));
            continue;
        }
        // The damaged file is kept beside it (gc never touches it), for
        // whatever a person can still get out of it.
        let kept = format!("{key}.damaged");
        if backend.size(&kept).is_err() {
            backend.create(&kept, &bytes)?;
        }
        let (new_bytes, entries) = repack(&pack, &bytes, 0, &salvaged, crypt)?;
        let mut batch = index.batch();
        let new_pack = batch.publish_pack(shard, backend.as_ref(), &new_bytes, &entries)?;
        index.commit(batch)?;
        damaged.push((pack, backend.clone()));
        report.salvaged_packs.push(format!(
            "{place} ({} records kept in pack {new_pack}; the damaged file is kept as {key}.damaged)",
            entries.len()
        ));
        report.packs += 1;
        report.objects += entries.len() as u64;
    }
    Ok(damaged)
}

/// Indexes every snapshot record that decodes and hashes to its name, in
/// a file or in the record catalog of the newest manifest that reads
/// (a part that does not read is named, its records lost to this repair
/// but not to `repair history`, which writes back what a machine holds);
/// returns all of them, with the catalog's and the listed tombstones, for
/// the catalog of the manifest the repair writes.
fn index_snapshots(
    index: &Index,
    files: &dyn MetaStore,
    crypt: &Crypt,
    report: &mut RepairReport,
) -> Result<RecordFold> {
    let mut fold = RecordFold::default();
    for (id, entry) in newest_catalog(files, crypt, &mut report.unusable)? {
        match entry {
            Cataloged::Record(bytes) => {
                match crate::engine::snapshots::decode_record(crypt, &bytes, &id) {
                    Ok(_) => drop(fold.records.insert(id, bytes)),
                    Err(e) => report
                        .unusable
                        .push(format!("record {id} in the catalog: {e}")),
                }
            }
            Cataloged::Forgotten(bytes) => {
                fold.forgotten.insert(id, bytes);
            }
        }
    }
    for key in files.list(SnapshotRecord::FOLDER)? {
        let name = key.trim_start_matches(SnapshotRecord::FOLDER);
        let decoded = name
            .parse::<SnapshotId>()
            .map_err(Error::from)
            .and_then(|id| {
                files.get(&key).and_then(|b| {
                    crate::engine::snapshots::decode_record(crypt, &b, &id).map(|_| (id, b))
                })
            });
        match decoded {
            Ok((id, _)) if fold.records.contains_key(&id) || fold.forgotten.contains_key(&id) => {}
            Ok((id, bytes)) => drop(fold.records.insert(id, bytes)),
            Err(e) => report.unusable.push(format!("{key}: {e}")),
        }
    }
    for (id, bytes) in tombstone_files(files, &HashSet::new())? {
        fold.records.remove(&id);
        fold.forgotten.insert(id, bytes);
    }
    fold.records
        .retain(|id, _| !fold.forgotten.contains_key(id));
    for (id, bytes) in &fold.records {
        index.put_snapshot(id, bytes)?;
        report.snapshots += 1;
    }
    Ok(fold)
}

/// The record catalog of the newest manifest of `home` that reads, its
/// parts that read (those that do not are named in `unusable`).
fn newest_catalog(
    home: &dyn MetaStore,
    crypt: &Crypt,
    unusable: &mut Vec<String>,
) -> Result<Vec<(SnapshotId, Cataloged)>> {
    for epoch in manifest_epochs(home)?.into_iter().rev() {
        let Ok(manifest) = read_manifest(home, crypt, epoch) else {
            continue;
        };
        let mut out = Vec::new();
        for part in manifest.records.iter().flatten() {
            match records::read_parts(home, crypt, std::slice::from_ref(part)) {
                Ok(entries) => out.extend(entries),
                Err(e) => unusable.push(format!("the record catalog: {e}")),
            }
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

/// What `repair packs` found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PackRepairReport {
    /// Packs read.
    pub packs: u64,
    /// Objects (chunks and trees) the index used and that read back intact.
    pub intact_objects: u64,
    /// Objects dropped from the index because their bytes are damaged or
    /// their pack is gone; an ingest of the same data stores them again.
    pub dropped_objects: u64,
    /// Of those, trees: the snapshots that reach them stay broken until
    /// an ingest stores the same folders again, or they are forgotten.
    pub dropped_trees: u64,
    /// Packs rewritten without their damaged records (the damaged file is
    /// kept as `<pack>.damaged`).
    pub rewritten_packs: Vec<String>,
    /// Packs the index listed that are gone.
    pub missing_packs: Vec<String>,
    /// Pack files kept (unindexed) because readers were open; the next gc
    /// deletes them.
    pub packs_kept_for_readers: u64,
}

impl PackRepairReport {
    /// True when nothing needed repair.
    pub fn is_clean(&self) -> bool {
        self.dropped_objects == 0
    }
}

impl std::fmt::Display for PackRepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "read {} packs: {} objects intact, {} dropped from the index",
            self.packs, self.intact_objects, self.dropped_objects
        )?;
        for p in &self.rewritten_packs {
            writeln!(f, "rewrote {p}")?;
        }
        for p in &self.missing_packs {
            writeln!(f, "forgot missing pack {p}")?;
        }
        if self.dropped_objects > 0 {
            writeln!(
                f,
                "ingest the same files again to store what was dropped; `dedup verify` names the snapshots still missing data"
            )?;
        }
        if self.dropped_trees > 0 {
            writeln!(
                f,
                "{} dropped objects are trees: gc refuses to run until the snapshots reaching them are whole again or forgotten",
                self.dropped_trees
            )?;
        }
        Ok(())
    }
}

/// One indexed pack as `repair packs` found it.
struct PackState {
    /// The records the index uses in it.
    used: Vec<PackEntry>,
    /// Its bytes, unless the file is gone.
    bytes: Option<Vec<u8>>,
}

/// The work of [`Repository::repair_packs`](crate::Repository::repair_packs).
pub(crate) fn repair_packs(engine: &Engine, progress: &dyn Progress) -> Result<PackRepairReport> {
    engine.check_alone("repair packs")?;
    let _alone = engine.reclaiming();
    engine.check_every_shard("repair packs")?;
    let packs = engine.index.packs()?;
    progress.set_total(packs.len() as u64);
    let mut report = PackRepairReport::default();
    // Packs whose trailer is gone or damaged: which records the index
    // uses in them is found in one pass over the index afterwards, and
    // they are read again then (holding every pack's bytes until then
    // would hold the repository in memory).
    let mut unlisted = Vec::new();
    for (pack, info) in &packs {
        progress.advance(1);
        report.packs += 1;
        let backend = &engine.shard(info.shard)?.backend;
        let location = format!("{}/{}", backend.location(), pack.key());
        let bytes = pack_bytes(engine, pack, info)?;
        match bytes
            .as_deref()
            .map(|b| entries_of(b, &location, engine.crypt()))
        {
            Some(Ok(entries)) => {
                let used = used_entries(engine, pack, entries)?;
                repair_pack(engine, *pack, info, PackState { used, bytes }, &mut report)?;
            }
            _ => unlisted.push((*pack, *info)),
        }
    }
    if !unlisted.is_empty() {
        let wanted = unlisted.iter().map(|(pack, _)| *pack).collect();
        let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        for loc in engine.index.chunks_in(&wanted)? {
            by_pack.entry(loc.pack).or_default().push(loc.entry);
        }
        for (pack, info) in unlisted {
            let used = by_pack.remove(&pack).unwrap_or_default();
            let bytes = pack_bytes(engine, &pack, &info)?;
            repair_pack(engine, pack, &info, PackState { used, bytes }, &mut report)?;
        }
    }
    if report.dropped_objects > 0 {
        engine.rebuild_bloom()?;
        engine.save_bloom()?;
    }
    Ok(report)
}

/// A whole pack, or `None` when its file is gone. Unreadable is not
/// damaged: any other error stops the repair, dropping nothing.
fn pack_bytes(engine: &Engine, pack: &PackId, info: &PackInfo) -> Result<Option<Vec<u8>>> {
    match engine.shard(info.shard)?.backend.get(&pack.key()) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of `pack` that are the copies the index uses.
fn used_entries(engine: &Engine, pack: &PackId, entries: Vec<PackEntry>) -> Result<Vec<PackEntry>> {
    let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
    Ok(entries
        .into_iter()
        .zip(engine.index.chunks(&ids)?)
        .filter(|(e, loc)| loc.is_some_and(|l| l.is(pack, e)))
        .map(|(e, _)| e)
        .collect())
}

/// Drops what is damaged in one pack from the index, keeping the rest.
fn repair_pack(
    engine: &Engine,
    pack: PackId,
    info: &PackInfo,
    state: PackState,
    report: &mut PackRepairReport,
) -> Result<()> {
    let backend = engine.shard(info.shard)?.backend.clone();
    let (good, bad): (Vec<PackEntry>, Vec<PackEntry>) = match &state.bytes {
        None => (Vec::new(), state.used),
        Some(bytes) => state.used.into_iter().partition(|e| {
            e.stored_in(bytes, 0)
                .and_then(|stored| record::open(&pack, e, stored, engine.crypt()))
                .is_ok()
        }),
    };
    report.intact_objects += good.len() as u64;
    if bad.is_empty() && state.bytes.is_some() {
        return Ok(());
    }
    report.dropped_objects += bad.len() as u64;
    report.dropped_trees += bad.iter().filter(|e| e.kind() == ObjectKind::Tree).count() as u64;
    let mut batch = engine.index.batch();
    for e in &bad {
        batch.drop_entry(&e.id, pack);
    }
    let mut ids: Vec<ChunkId> = good.iter().chain(&bad).map(|e| e.id).collect();
    if let Some(all) = state
        .bytes
        .as_deref()
        .and_then(|b| entries_of(b, &pack.key(), engine.crypt()).ok())
    {
        ids = all.iter().map(|e| e.id).collect();
    }
    match &state.bytes {
        None => report.missing_packs.push(pack.to_hex()),
        Some(bytes) => {
            // The damaged file stays, for whatever a person can still
            // get out of it; gc never touches it.
            let kept = format!("{}.damaged", pack.key());
            if backend.size(&kept).is_err() {
                backend.create(&kept, bytes)?;
            }
            if !good.is_empty() {
                let (new_bytes, entries) = repack(&pack, bytes, 0, &good, engine.crypt())?;
                batch.publish_pack(info.shard, backend.as_ref(), &new_bytes, &entries)?;
            }
            report.rewritten_packs.push(format!(
                "{pack}: {} records kept, {} dropped (the damaged file is kept as {kept})",
                good.len(),
                bad.len()
            ));
        }
    }
    batch.retire_pack(pack, ids, backend);
    report.packs_kept_for_readers += engine.commit_alone(batch)?;
    Ok(())
}
