//! `repair index`: rebuild the RocksDB index and the Bloom filter from
//! `config`, `snapshots/` and the packs alone.
//!
//! The old index is moved aside (`index.old`) rather than deleted, and
//! removed only once the new one is complete. Each pack's entries come from
//! its trailer; a pack whose trailer is damaged is walked from the front,
//! keeping every record whose bytes still hash to its id.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{IoContext, Result};
use crate::index::{Access, Index, PackInfo};
use crate::repo::lock::WriteLock;
use crate::repo::{open_home, read_config, OpenOptions, Repository, BLOOM, INDEX_DIR};
use crate::ring::ShardId;
use crate::snapshot::{SnapshotId, SnapshotRecord};
use crate::store::pack::{read_entries, repack, scan_records};
use crate::store::{open_shard, record, Create, LocalStore, MetaStore, PackId, PackStore};

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

impl Repository {
    /// Rebuilds `index/` and `bloom` for the repository at `path`, then opens it.
    pub fn repair_index(path: impl AsRef<Path>) -> Result<(Self, RepairReport)> {
        Self::repair_index_with(path, &OpenOptions::default())
    }

    /// [`repair_index`](Self::repair_index), the repository reached and
    /// then opened as `opts` say.
    pub fn repair_index_with(
        path: impl AsRef<Path>,
        opts: &OpenOptions,
    ) -> Result<(Self, RepairReport)> {
        let root = path.as_ref();
        let fs = opts.file_system();
        let files = open_home(root, &fs)?;
        let config = read_config(&files, root)?;
        let mut report = RepairReport::default();
        {
            let _lock = WriteLock::acquire(root)?;
            let index_dir = root.join(INDEX_DIR);
            let aside = root.join("index.old");
            if aside.exists() {
                fs::remove_dir_all(&aside).at(&aside)?;
            }
            if index_dir.exists() {
                fs::rename(&index_dir, &aside).at(&index_dir)?;
            }
            let index = Index::open(&index_dir, Access::Create)?.with_crash_points(fs.clone());
            for shard in &config.shards {
                let backend = open_shard(root, shard, Create::No, &fs)?;
                index_shard(&index, shard.id, &backend, &mut report)?;
            }
            index_snapshots(&index, &files, &mut report)?;
            MetaStore::delete(&files, BLOOM)?;
            drop(index);
            if aside.exists() {
                fs::remove_dir_all(&aside).at(&aside)?;
            }
        }
        // Opening rebuilds the Bloom filter from the new index.
        let repo = Repository::open_with(root, opts)?;
        repo.save_bloom()?;
        Ok((repo, report))
    }
}

/// Indexes every pack of one shard from its trailer; a pack whose trailer
/// is damaged is salvaged: every record that still hashes to its id goes
/// into a new pack, which replaces the damaged one.
fn index_shard(
    index: &Index,
    shard: ShardId,
    backend: &Arc<dyn PackStore>,
    report: &mut RepairReport,
) -> Result<()> {
    for key in backend.list("")? {
        let Some(pack) = PackId::from_key(&key) else {
            continue;
        };
        if let Ok(entries) = read_entries(backend.as_ref(), &key, None) {
            let info = PackInfo::of(shard, backend.size(&key)?, &entries);
            index.commit_pack(pack, &info, &entries)?;
            report.packs += 1;
            report.objects += entries.len() as u64;
            continue;
        }
        let bytes = backend.get(&key)?;
        let salvaged = scan_records(&bytes, |e, stored| record::open(&pack, e, stored).is_ok());
        let place = format!("{}/{key}", backend.location());
        if salvaged.is_empty() {
            report
                .unusable
                .push(format!("{place}: no readable records"));
            continue;
        }
        let (new_bytes, entries) = repack(&pack, &bytes, 0, &salvaged)?;
        let mut batch = index.batch();
        let new_pack = batch.publish_pack(shard, backend.as_ref(), &new_bytes, &entries)?;
        batch.retire_pack(pack, backend.clone());
        index.commit(batch)?;
        report.salvaged_packs.push(format!(
            "{place} ({} records kept in pack {new_pack})",
            entries.len()
        ));
        report.packs += 1;
        report.objects += entries.len() as u64;
    }
    Ok(())
}

/// Indexes every snapshot record file that decodes and hashes to its name.
fn index_snapshots(index: &Index, files: &LocalStore, report: &mut RepairReport) -> Result<()> {
    for key in MetaStore::list(files, "snapshots/")? {
        let name = key.trim_start_matches("snapshots/");
        let decoded = name.parse::<SnapshotId>().and_then(|id| {
            MetaStore::get(files, &key)
                .and_then(|b| SnapshotRecord::decode(&b, &id).map(|_| (id, b)))
        });
        match decoded {
            Ok((id, bytes)) => {
                index.put_snapshot(&id, &bytes)?;
                report.snapshots += 1;
            }
            Err(e) => report.unusable.push(format!("{key}: {e}")),
        }
    }
    Ok(())
}
