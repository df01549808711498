//! `repair index`: rebuild the RocksDB index and the Bloom filter from
//! `config`, `snapshots/` and the packs alone.
//!
//! The old index is moved aside (`index.old`) rather than deleted, and
//! removed only once the new one is complete. Each pack's entries come from
//! its trailer; a pack whose trailer is damaged is walked from the front,
//! keeping every record whose bytes still hash to its id.

use std::fs;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::index::{Index, Location, PackInfo};
use crate::repo::lock::WriteLock;
use crate::repo::{Repository, BLOOM, CONFIG, INDEX_DIR};
use crate::snapshot::{SnapshotId, SnapshotRecord};
use crate::store::pack::{read_entries, repack, scan_records};
use crate::store::{open_shard, Backend, LocalBackend, PackId};

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

impl Repository {
    /// Rebuilds `index/` and `bloom` for the repository at `path`, then opens it.
    pub fn repair_index(path: impl AsRef<std::path::Path>) -> Result<(Self, RepairReport)> {
        let root = path.as_ref();
        let config_path = root.join(CONFIG);
        let bytes = match fs::read(&config_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoRepository(root.to_path_buf()))
            }
            Err(e) => return Err(Error::io(config_path, e)),
        };
        let config = Config::decode(&bytes, &config_path)?;
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
            let index = Index::open(&index_dir, false, true)?;
            for shard in &config.shards {
                let backend = open_shard(root, shard, false, None)?;
                let backend = backend.as_ref();
                for key in backend.list("")? {
                    let Some(pack) = PackId::from_key(&key) else {
                        continue;
                    };
                    if let Ok(entries) = read_entries(backend, &key, None) {
                        let info = PackInfo::of(shard.id, backend.size(&key)?, &entries);
                        index.commit_pack(pack, &info, &entries)?;
                        report.packs += 1;
                        report.objects += entries.len() as u64;
                        continue;
                    }
                    // A damaged trailer: keep every record that still hashes
                    // to its id, in a new pack, then drop the damaged one.
                    let bytes = backend.get(&key)?;
                    let salvaged = scan_records(&bytes, |e, stored| {
                        crate::repo::open_record(&e.id, &Location::of(pack, e), stored).is_ok()
                    });
                    let place = format!("{}/{key}", backend.location());
                    if salvaged.is_empty() {
                        report
                            .unusable
                            .push(format!("{place}: no readable records"));
                        continue;
                    }
                    let (new_bytes, entries) = repack(&bytes, &salvaged);
                    let new_pack = PackId::random();
                    backend.put(&new_pack.key(), &new_bytes)?;
                    let info = PackInfo::of(shard.id, new_bytes.len() as u64, &entries);
                    index.commit_pack(new_pack, &info, &entries)?;
                    backend.delete(&key)?;
                    report.salvaged_packs.push(format!(
                        "{place} ({} records kept in pack {new_pack})",
                        entries.len()
                    ));
                    report.packs += 1;
                    report.objects += entries.len() as u64;
                }
            }
            let files = LocalBackend::open(root)?;
            for key in files.list("snapshots/")? {
                let name = key.trim_start_matches("snapshots/");
                let decoded = name.parse::<SnapshotId>().and_then(|id| {
                    files
                        .get(&key)
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
            files.delete(BLOOM)?;
            drop(index);
            if aside.exists() {
                fs::remove_dir_all(&aside).at(&aside)?;
            }
        }
        // Opening rebuilds the Bloom filter from the new index.
        let repo = Repository::open(root)?;
        repo.save_bloom()?;
        Ok((repo, report))
    }
}
