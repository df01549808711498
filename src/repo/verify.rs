//! `verify`: check that every snapshot can be restored, without restoring it.
//!
//! Structure (always): every snapshot record decodes and hashes to its id;
//! every tree it reaches reads back, hashes to its id and decodes; every
//! chunk a file names is in the index and points into a pack the index
//! lists, present in its shard with a trailer that parses; the Bloom filter
//! file, if present, is intact. Data (`read_data`): whole packs are read and
//! every record is decompressed and re-hashed against its id.
//!
//! Each finding names the chunk, the pack it lives in, and the snapshot files
//! it breaks (found by a second walk, only when something is wrong).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::bloom::Bloom;
use crate::error::Result;
use crate::id::ChunkId;
use crate::index::Location;
use crate::repo::{Progress, Repository, BLOOM};
use crate::snapshot::{EntryKind, SnapshotId};
use crate::store::pack::{parse_trailer, trailer_len, FOOTER_SIZE};
use crate::store::{is_not_found, PackId};

/// One thing found wrong.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// `missing-chunk`, `damaged-chunk`, `missing-pack`, `damaged-pack`,
    /// `damaged-tree`, `damaged-snapshot` or `damaged-bloom`.
    pub kind: &'static str,
    /// One line for people.
    pub message: String,
    /// The chunk or tree, when one is involved.
    pub chunk: Option<ChunkId>,
    /// The pack, when one is involved.
    pub pack: Option<String>,
    /// Snapshot files this breaks, as `snapshot-prefix:path`.
    pub files: Vec<String>,
}

/// What `verify` checked and found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Snapshots walked.
    pub snapshots: u64,
    /// Distinct trees read.
    pub trees: u64,
    /// Distinct chunks referenced by snapshots.
    pub chunks: u64,
    /// Packs whose trailers were checked.
    pub packs: u64,
    /// Packs read in full and re-hashed.
    pub packs_read: u64,
    /// Chunks re-hashed.
    pub chunks_read: u64,
    /// Everything found wrong; empty when the repository is sound.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Bad chunks found so far: id → (kind, message, pack).
type BadChunks = HashMap<ChunkId, (&'static str, String, Option<String>)>;

impl Repository {
    /// Verifies the repository; `read_data` is the share of packs (0.0 to
    /// 1.0) to read in full and re-hash.
    pub fn verify(&self, read_data: f64, progress: &dyn Progress) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut bad: BadChunks = HashMap::new();

        // The Bloom filter is disposable, but a damaged one is still news.
        match self.files.get(BLOOM) {
            Ok(bytes) => {
                if let Err(e) = Bloom::decode(&bytes, BLOOM) {
                    report.problems.push(Problem {
                        kind: "damaged-bloom",
                        message: format!("{e} (rebuilt from the index at the next write)"),
                        chunk: None,
                        pack: None,
                        files: vec![],
                    });
                }
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }

        // Packs: present, trailer intact.
        let packs = self.index.packs()?;
        let mut bad_packs: HashMap<PackId, String> = HashMap::new();
        for (pack, info, entries) in self.trailers(&packs) {
            report.packs += 1;
            match entries {
                Ok(_) => {}
                // A store that cannot be reached says nothing about the
                // data: stop instead of reporting every pack on it damaged.
                Err(e @ crate::Error::ObjectStore { .. }) => return Err(e),
                Err(e) => {
                    let kind = if is_not_found(&e) {
                        "missing-pack"
                    } else {
                        "damaged-pack"
                    };
                    report.problems.push(Problem {
                        kind,
                        message: format!("pack {pack} on shard {}: {e}", info.shard),
                        chunk: None,
                        pack: Some(pack.to_hex()),
                        files: vec![],
                    });
                    bad_packs.insert(*pack, kind.to_string());
                }
            }
        }

        // Snapshots and trees; collect referenced chunks.
        let mut referenced: HashSet<ChunkId> = HashSet::new();
        let snapshots = self.snapshots_lenient(&mut report)?;
        report.snapshots = snapshots.len() as u64;
        self.walk_trees(snapshots.iter().map(|(_, tree)| *tree), |id, tree| {
            report.trees += 1;
            match tree {
                Ok(tree) => {
                    for e in tree.entries {
                        if let EntryKind::File { chunks, .. } = e.kind {
                            referenced.extend(chunks.into_iter().map(|c| c.0));
                        }
                    }
                }
                Err(e) => {
                    bad.insert(id, ("damaged-tree", e.to_string(), None));
                }
            }
            Ok(())
        })?;
        report.chunks = referenced.len() as u64;

        let ids: Vec<ChunkId> = referenced.into_iter().collect();
        for batch in ids.chunks(4096) {
            for (id, loc) in batch.iter().zip(self.index.chunks(batch)?) {
                match loc {
                    None => {
                        bad.insert(
                            *id,
                            (
                                "missing-chunk",
                                format!("chunk {id} is not in the index"),
                                None,
                            ),
                        );
                    }
                    Some(loc) => {
                        if let Some(kind) = bad_packs.get(&loc.pack) {
                            bad.insert(
                                *id,
                                (
                                    "missing-chunk",
                                    format!("chunk {id} lives in a {kind}"),
                                    Some(loc.pack.to_hex()),
                                ),
                            );
                        } else if !self
                            .packs
                            .read()
                            .expect("packs lock")
                            .contains_key(&loc.pack)
                        {
                            bad.insert(
                                *id,
                                (
                                    "missing-chunk",
                                    format!("chunk {id} points at unknown pack {}", loc.pack),
                                    Some(loc.pack.to_hex()),
                                ),
                            );
                        }
                    }
                }
            }
        }

        // Data: read whole packs and re-hash every record.
        if read_data > 0.0 {
            let mut seed = [0u8; 8];
            getrandom::fill(&mut seed).expect("the operating system's random source failed");
            let mut state = u64::from_le_bytes(seed) | 1;
            let total: u64 = packs.iter().map(|(_, p)| p.size).sum();
            progress.set_total(total);
            for (pack, info) in &packs {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if read_data < 1.0 && (state % 1_000_000) as f64 >= read_data * 1_000_000.0 {
                    continue;
                }
                if bad_packs.contains_key(pack) {
                    continue;
                }
                report.packs_read += 1;
                self.verify_pack_data(*pack, info.shard, &mut bad, &mut report)?;
                progress.advance(info.size);
            }
        }

        if !bad.is_empty() {
            let files = self.files_using(&snapshots, &bad)?;
            let mut bad: Vec<_> = bad.into_iter().collect();
            bad.sort_by_key(|(id, _)| *id);
            for (id, (kind, message, pack)) in bad {
                report.problems.push(Problem {
                    kind,
                    message,
                    chunk: Some(id),
                    pack,
                    files: files.get(&id).cloned().unwrap_or_default(),
                });
            }
        }
        Ok(report)
    }

    /// Snapshot roots; records that fail to decode become problems.
    fn snapshots_lenient(&self, report: &mut VerifyReport) -> Result<Vec<(SnapshotId, ChunkId)>> {
        let mut out = Vec::new();
        for (id, bytes) in self.index.snapshots()? {
            // The file is what a rebuilt index would use: it must agree.
            let key = crate::snapshot::SnapshotRecord::key(&id);
            match self.files.get(&key) {
                Ok(file) if file == bytes => {}
                Ok(_) => report.problems.push(Problem {
                    kind: "damaged-snapshot",
                    message: format!("{key} differs from the index's copy"),
                    chunk: Some(id),
                    pack: None,
                    files: vec![],
                }),
                Err(e) => report.problems.push(Problem {
                    kind: "damaged-snapshot",
                    message: format!("{key}: {e}"),
                    chunk: Some(id),
                    pack: None,
                    files: vec![],
                }),
            }
            match crate::snapshot::SnapshotRecord::decode(&bytes, &id) {
                Ok(r) => out.push((id, r.tree)),
                Err(e) => report.problems.push(Problem {
                    kind: "damaged-snapshot",
                    message: e.to_string(),
                    chunk: Some(id),
                    pack: None,
                    files: vec![],
                }),
            }
        }
        Ok(out)
    }

    fn verify_pack_data(
        &self,
        pack: PackId,
        shard: crate::ring::ShardId,
        bad: &mut BadChunks,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let backend = &self.shard(shard)?.backend;
        let bytes = backend.get(&pack.key())?;
        let location = format!("{}/{}", backend.location(), pack.key());
        let entries = trailer_len(&bytes[bytes.len().saturating_sub(FOOTER_SIZE)..], &location)
            .and_then(|n| {
                if n > bytes.len() {
                    return Err(crate::Error::corrupt(
                        "pack trailer",
                        &location,
                        "longer than the pack",
                    ));
                }
                parse_trailer(&bytes[bytes.len() - n..], bytes.len() as u64, &location)
            });
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(Problem {
                    kind: "damaged-pack",
                    message: e.to_string(),
                    chunk: None,
                    pack: Some(pack.to_hex()),
                    files: vec![],
                });
                return Ok(());
            }
        };
        for e in entries {
            report.chunks_read += 1;
            let loc = Location::of(pack, &e);
            if let Err(err) = crate::repo::open_record(&e.id, &loc, e.stored(&bytes)) {
                // Only damage to the copy the index uses breaks anything.
                let indexed = self.index.chunk(&e.id)?;
                if indexed == Some(loc) {
                    bad.insert(
                        e.id,
                        ("damaged-chunk", format!("{err}"), Some(pack.to_hex())),
                    );
                }
            }
        }
        Ok(())
    }

    /// For each bad chunk or tree, the snapshot files (or folders) it breaks.
    fn files_using(
        &self,
        snapshots: &[(SnapshotId, ChunkId)],
        bad: &BadChunks,
    ) -> Result<HashMap<ChunkId, Vec<String>>> {
        let mut out: HashMap<ChunkId, Vec<String>> = HashMap::new();
        for (snap, root) in snapshots {
            let prefix = &snap.to_hex()[..12];
            let mut stack = vec![(*root, String::new())];
            while let Some((id, path)) = stack.pop() {
                if bad.contains_key(&id) {
                    out.entry(id).or_default().push(format!(
                        "{prefix}:{}/",
                        if path.is_empty() { "." } else { &path }
                    ));
                    continue;
                }
                let Ok(tree) = self.read_tree(&id) else {
                    continue;
                };
                for e in tree.entries {
                    let name = String::from_utf8_lossy(&e.name);
                    let child = if path.is_empty() {
                        name.into_owned()
                    } else {
                        format!("{path}/{name}")
                    };
                    match e.kind {
                        EntryKind::File { chunks, .. } => {
                            for (c, _) in chunks {
                                if bad.contains_key(&c) {
                                    let list = out.entry(c).or_default();
                                    let entry = format!("{prefix}:{child}");
                                    if list.last() != Some(&entry) {
                                        list.push(entry);
                                    }
                                }
                            }
                        }
                        EntryKind::Dir { tree } => stack.push((tree, child)),
                        EntryKind::Symlink { .. } => {}
                    }
                }
            }
        }
        Ok(out)
    }
}
