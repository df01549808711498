//! `dedup estimate`: which chunker suits some data, before a repository is
//! made for it.
//!
//! One read pass over the files; every block read is handed to every
//! chunker configuration at once (one configuration a core, through
//! rayon), each cutting, hashing and counting its distinct chunks as an
//! ingest into an empty repository would, compressing a sample of its new
//! chunks with the repository's codec, and encoding each folder's tree as
//! ingest would (trees list every chunk: small chunks make large trees).
//! Nothing is written anywhere.
//!
//! Each configuration keeps, between blocks, the bytes after its last
//! certain cut: a content-defined cut depends only on where the previous
//! one was, so cutting `carry ‖ block` gives the cuts a whole-file pass
//! gives (see [`ChunkerConfig::cut_parallel`]).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::bloom;
use crate::catalog::Location;
use crate::chunker::ChunkerConfig;
use crate::engine::Progress;
use crate::error::{Error, Result};
use crate::format::config::Compression;
use crate::format::pack::ENTRY_SIZE;
use crate::format::record::{self, ObjectKind};
use crate::format::snapshot::{Attrs, Entry, EntryKind, Tree};
use crate::id::ChunkId;
use crate::units::ratio;

/// Bytes read from a file at a time.
const BLOCK: usize = 8 << 20;
/// One new chunk in this many (by id) is compressed to estimate the
/// compression ratio; below [`SAMPLE_FLOOR`] sampled bytes, every one is.
const SAMPLE_EVERY: u8 = 8;
const SAMPLE_FLOOR: u64 = 4 << 20;
/// Bytes one chunk costs in the index: its id (the key) and location.
pub const INDEX_ENTRY_BYTES: u64 = 32 + Location::ENCODED_LEN as u64;
/// Bytes a chunk costs in a pack beyond its data: record header and
/// trailer entry.
const PACK_OVERHEAD: u64 = record::HEADER + ENTRY_SIZE as u64;
const TIB: f64 = (1u64 << 40) as f64;
/// Configurations whose total cost is within this share of the cheapest
/// count as equally cheap; the one with the largest chunks among them is
/// recommended (fewer chunks: a smaller index and filter, faster ingest).
const TIE: f64 = 0.01;

/// What to estimate.
#[derive(Clone, Debug)]
pub struct EstimateOptions {
    /// The configurations to compare.
    pub chunkers: Vec<ChunkerConfig>,
    /// The codec the repository would use.
    pub compression: Compression,
    /// Its zstd level.
    pub zstd_level: i32,
}

/// The configurations `estimate` compares when none are given.
pub fn default_chunkers() -> Vec<ChunkerConfig> {
    let k = |n: u32| n * 1024;
    [4, 8, 16, 32, 64, 128]
        .into_iter()
        .map(|n| ChunkerConfig::fastcdc(k(n)))
        .chain(
            [4, 64]
                .into_iter()
                .map(|n| ChunkerConfig::fixed(Some(k(n)))),
        )
        .collect()
}

/// A short name: `fastcdc:64K` (min and max at their defaults), `fixed:4K`.
pub fn label(c: &ChunkerConfig) -> String {
    let size = |n: u32| {
        if n.is_multiple_of(1 << 20) {
            format!("{}M", n >> 20)
        } else if n.is_multiple_of(1024) {
            format!("{}K", n >> 10)
        } else {
            n.to_string()
        }
    };
    match *c {
        ChunkerConfig::Fixed { size: s } => format!("fixed:{}", size(s)),
        ChunkerConfig::FastCdc { min, avg, max, .. } if min == avg / 4 && max == avg * 4 => {
            format!("fastcdc:{}", size(avg))
        }
        ChunkerConfig::FastCdc { min, avg, max, .. } => {
            format!("fastcdc:{}/{}/{}", size(min), size(avg), size(max))
        }
    }
}

/// What one configuration would store.
#[derive(Clone, Debug, Serialize)]
pub struct ChunkerEstimate {
    /// `fastcdc:64K`, `fixed:4K`.
    pub label: String,
    /// The configuration.
    pub chunker: ChunkerConfig,
    /// Chunk references (with repeats).
    pub chunks: u64,
    /// Distinct chunks.
    pub unique_chunks: u64,
    /// Their bytes.
    pub unique_bytes: u64,
    /// `logical / unique_bytes`: what deduplication saves.
    pub dedup_ratio: f64,
    /// `raw / compressed` over the sample of new chunks.
    pub compression_ratio: f64,
    /// Bytes on disk: the data as the sample's ratio compresses it, the
    /// trees as ingest would write them, pack overheads included.
    pub stored_bytes: u64,
    /// `logical / stored_bytes`.
    pub total_ratio: f64,
    /// Bytes of index entries for the distinct chunks and trees.
    pub index_bytes: u64,
    /// The same for a TiB of data like this one.
    pub index_bytes_per_tib: u64,
    /// Bytes of the Bloom filter a repository of this data would keep in
    /// memory (it has a floor: a filter is sized for 100 000 chunks at least).
    pub bloom_bytes: u64,
    /// The same for a TiB of data like this one.
    pub bloom_bytes_per_tib: u64,
    /// Of `stored_bytes`, the distinct trees' (folder listings, which
    /// name every chunk of every file: more chunks, larger trees).
    pub tree_bytes: u64,
    /// Stored and index bytes together: what the recommendation weighs.
    pub total_cost: u64,
    /// Seconds one core spent cutting, hashing and counting.
    pub seconds: f64,
    /// Bytes a second one core cut and hashed: the ceiling of an ingest's
    /// speed a core with this configuration.
    pub bytes_per_second: f64,
}

/// `dedup estimate`'s answer.
#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    /// The paths read.
    pub paths: Vec<String>,
    /// Regular files read.
    pub files: u64,
    /// Their bytes.
    pub logical_bytes: u64,
    /// Files that could not be read, with why (left out).
    pub skipped: Vec<String>,
    /// Wall-clock seconds of the whole pass.
    pub seconds: f64,
    /// One result per configuration, in the order asked.
    pub configurations: Vec<ChunkerEstimate>,
    /// The label of the configuration recommended.
    pub recommended: String,
    /// Why.
    pub reason: String,
}

/// One configuration's running state.
struct Counter {
    chunker: ChunkerConfig,
    compression: Compression,
    level: i32,
    carry: Vec<u8>,
    seen: HashMap<ChunkId, u32>,
    refs: u64,
    sampled_raw: u64,
    sampled_stored: u64,
    /// The chunks of the file being read.
    file: Vec<(ChunkId, u32)>,
    /// The entries of each folder open on the walk, innermost last.
    folders: Vec<Vec<Entry>>,
    /// Distinct trees, and their bytes on disk.
    trees: HashSet<ChunkId>,
    tree_stored: u64,
    busy: Duration,
}

impl Counter {
    fn new(chunker: ChunkerConfig, opts: &EstimateOptions) -> Self {
        Counter {
            chunker,
            compression: opts.compression,
            level: opts.zstd_level,
            carry: Vec::new(),
            seen: HashMap::new(),
            refs: 0,
            sampled_raw: 0,
            sampled_stored: 0,
            file: Vec::new(),
            folders: vec![Vec::new()],
            trees: HashSet::new(),
            tree_stored: 0,
            busy: Duration::ZERO,
        }
    }

    /// Takes the walk's next step.
    fn step(&mut self, step: &Step) {
        let started = Instant::now();
        match step {
            Step::Data { bytes, eof, entry } => {
                self.feed(bytes, *eof);
                if *eof {
                    let mut entry = entry.clone();
                    let size = self.file.iter().map(|c| u64::from(c.1)).sum();
                    entry.kind = EntryKind::File {
                        size,
                        chunks: std::mem::take(&mut self.file),
                    };
                    self.push(entry);
                }
            }
            Step::Failed => {
                // Ingest skips a file it cannot read: so does the tree.
                self.carry.clear();
                self.file.clear();
            }
            Step::Enter => self.folders.push(Vec::new()),
            Step::Entry(entry) => self.push(entry.clone()),
            Step::Leave(entry) => {
                let entries = self.folders.pop().unwrap_or_default();
                let tree = self.store_tree(entries);
                let mut entry = entry.clone();
                entry.kind = EntryKind::Dir { tree };
                self.push(entry);
            }
        }
        self.busy += started.elapsed();
    }

    fn push(&mut self, entry: Entry) {
        if let Some(folder) = self.folders.last_mut() {
            folder.push(entry);
        }
    }

    /// Encodes a folder's tree as ingest would and counts it if new.
    fn store_tree(&mut self, entries: Vec<Entry>) -> ChunkId {
        let mut tree = Tree { entries };
        tree.sort();
        let bytes = tree.encode();
        let id = ChunkId::of(&bytes);
        if self.trees.insert(id) {
            let (_, stored) = record::seal(&bytes, ObjectKind::Tree, self.compression, self.level);
            self.tree_stored += stored.len() as u64 + PACK_OVERHEAD;
        }
        id
    }

    /// The snapshot's root, as ingest makes it: one folder given is the
    /// root (with a one-entry tree holding its own metadata); anything
    /// else sits under a root of its own.
    fn finish_walk(&mut self) {
        let mut top = self.folders.pop().unwrap_or_default();
        match top.as_slice() {
            [Entry {
                kind: EntryKind::Dir { .. },
                ..
            }] => {
                let mut root = top.remove(0);
                root.name = crate::format::snapshot::tree::ROOT_NAME.to_vec();
                self.store_tree(vec![root]);
            }
            _ => {
                self.store_tree(top);
            }
        }
    }

    /// Cuts `carry ‖ block` (the end of a file when `eof`) and counts.
    fn feed(&mut self, block: &[u8], eof: bool) {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(block);
        let lengths = self.chunker.cut_parallel(&data, eof, 1);
        let mut at = 0;
        for len in lengths {
            let chunk = &data[at..at + len];
            at += len;
            let id = ChunkId::of(chunk);
            self.refs += 1;
            self.file.push((id, len as u32));
            if self.seen.insert(id, len as u32).is_none()
                && (id.as_bytes()[0].is_multiple_of(SAMPLE_EVERY)
                    || self.sampled_raw < SAMPLE_FLOOR)
            {
                let (_, stored) =
                    record::seal(chunk, ObjectKind::Data, self.compression, self.level);
                self.sampled_raw += len as u64;
                self.sampled_stored += stored.len() as u64;
            }
        }
        data.drain(..at);
        self.carry = data;
    }

    fn finish(self, logical: u64) -> ChunkerEstimate {
        let unique_chunks = self.seen.len() as u64;
        let unique_bytes: u64 = self.seen.values().map(|&l| u64::from(l)).sum();
        let compression_ratio = if self.sampled_stored == 0 {
            1.0
        } else {
            self.sampled_raw as f64 / self.sampled_stored as f64
        };
        let data_stored =
            (unique_bytes as f64 / compression_ratio) as u64 + unique_chunks * PACK_OVERHEAD;
        let stored_bytes = data_stored + self.tree_stored;
        let per_tib = |n: u64| {
            if logical == 0 {
                0
            } else {
                (n as f64 * TIB / logical as f64) as u64
            }
        };
        let objects = unique_chunks + self.trees.len() as u64;
        let index_bytes = objects * INDEX_ENTRY_BYTES;
        let bloom_bytes = bloom::memory_for(objects);
        let seconds = self.busy.as_secs_f64();
        ChunkerEstimate {
            label: label(&self.chunker),
            chunker: self.chunker,
            chunks: self.refs,
            unique_chunks,
            unique_bytes,
            dedup_ratio: ratio(logical, unique_bytes),
            compression_ratio,
            stored_bytes,
            total_ratio: ratio(logical, stored_bytes),
            index_bytes,
            index_bytes_per_tib: per_tib(index_bytes),
            bloom_bytes,
            bloom_bytes_per_tib: bloom::memory_for(per_tib(objects)),
            tree_bytes: self.tree_stored,
            total_cost: stored_bytes + index_bytes,
            seconds,
            bytes_per_second: if seconds > 0.0 {
                logical as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// One step of the walk, as every configuration sees it.
enum Step {
    /// A block of the current file's bytes; with `eof`, its last, and the
    /// file's entry (its kind filled in by each configuration).
    Data {
        bytes: Vec<u8>,
        eof: bool,
        entry: Entry,
    },
    /// The current file could not be read to its end: left out.
    Failed,
    /// A folder's entries follow.
    Enter,
    /// A symbolic link, FIFO or device: an entry with no content.
    Entry(Entry),
    /// The folder entered last is complete; its entry (kind filled in).
    Leave(Entry),
}

/// What the walk found, in the order it is read: depth first, names in
/// byte order, each folder's entries between its `Enter` and `Leave`.
enum Event {
    File(PathBuf, Entry, u64),
    Enter,
    Other(Entry),
    Leave(Entry),
}

/// An entry for `meta` as ingest makes it (without extended attributes,
/// which seldom weigh anything).
fn entry_of(name: Vec<u8>, meta: &fs::Metadata, names: &crate::engine::attrs::Names) -> Entry {
    let (mtime_s, mtime_ns) = crate::engine::attrs::mtime(meta);
    Entry {
        name,
        mode: meta.mode() & 0o7777,
        mtime_s,
        mtime_ns,
        kind: EntryKind::Fifo,
        attrs: Attrs {
            owner: Some(names.owner(meta.uid(), meta.gid())),
            xattrs: Vec::new(),
            link: 0,
        },
    }
}

/// Walks `paths`. A path that cannot be read at all is an error; an
/// unreadable entry below one is noted in `skipped` and left out.
fn walk(paths: &[PathBuf], skipped: &mut Vec<String>) -> Result<Vec<Event>> {
    let names = crate::engine::attrs::Names::default();
    let mut out = Vec::new();
    for path in paths {
        let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        }
        let name = path
            .file_name()
            .map_or_else(|| b"root".to_vec(), |n| n.as_bytes().to_vec());
        // (path, metadata, name, whether its Leave is due)
        let mut stack = vec![(path.clone(), meta, name, false)];
        while let Some((p, meta, name, leaving)) = stack.pop() {
            let entry = entry_of(name.clone(), &meta, &names);
            if leaving {
                out.push(Event::Leave(entry));
            } else if meta.is_file() {
                out.push(Event::File(p, entry, meta.len()));
            } else if meta.is_dir() {
                let listing = match fs::read_dir(&p) {
                    Ok(l) => l,
                    Err(e) => {
                        skipped.push(format!("{}: {e}", p.display()));
                        continue;
                    }
                };
                let mut entries: Vec<_> = listing
                    .filter_map(|e| {
                        match e.and_then(|e| Ok((e.path(), e.metadata()?, e.file_name()))) {
                            Ok(x) => Some(x),
                            Err(e) => {
                                skipped.push(format!("{}: {e}", p.display()));
                                None
                            }
                        }
                    })
                    .filter(|(_, meta, _)| !meta.file_type().is_socket())
                    .map(|(p, meta, n)| (p, meta, n.as_bytes().to_vec(), false))
                    .collect();
                entries.sort_by(|a, b| b.2.cmp(&a.2));
                out.push(Event::Enter);
                stack.push((p, meta, name, true));
                stack.extend(entries);
            } else {
                let mut entry = entry;
                let ft = meta.file_type();
                entry.kind = if ft.is_symlink() {
                    match fs::read_link(&p) {
                        Ok(target) => EntryKind::Symlink {
                            target: target.into_os_string().into_vec(),
                        },
                        Err(e) => {
                            skipped.push(format!("{}: {e}", p.display()));
                            continue;
                        }
                    }
                } else if ft.is_char_device() {
                    EntryKind::CharDevice { rdev: meta.rdev() }
                } else if ft.is_block_device() {
                    EntryKind::BlockDevice { rdev: meta.rdev() }
                } else {
                    EntryKind::Fifo
                };
                out.push(Event::Other(entry));
            }
        }
    }
    Ok(out)
}

/// Reads every file under `paths` once and estimates what each of
/// `opts.chunkers` would store.
pub fn estimate(
    paths: &[PathBuf],
    opts: &EstimateOptions,
    progress: &dyn Progress,
) -> Result<Estimate> {
    if opts.chunkers.is_empty() {
        return Err(Error::invalid("chunkers", "none given".to_string()));
    }
    for c in &opts.chunkers {
        c.validate()?;
    }
    let started = Instant::now();
    let mut skipped = Vec::new();
    let found = walk(paths, &mut skipped)?;
    progress.set_total(
        found
            .iter()
            .map(|f| match f {
                Event::File(_, _, size) => *size,
                _ => 0,
            })
            .sum(),
    );
    let mut counters: Vec<Counter> = opts
        .chunkers
        .iter()
        .map(|&chunker| Counter::new(chunker, opts))
        .collect();
    // A reader thread keeps the next blocks coming while the counters cut
    // the current one.
    let (tx, rx) = mpsc::sync_channel::<Step>(4);
    let (mut files, mut logical) = (0u64, 0u64);
    let found = &found;
    let failed = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_all(found, &tx, progress));
        for step in rx {
            if let Step::Data { bytes, eof, .. } = &step {
                logical += bytes.len() as u64;
                progress.advance(bytes.len() as u64);
                files += u64::from(*eof);
            }
            // Cutting and hashing a block, or encoding and compressing a
            // tree, is worth a core each; the other steps are not.
            if matches!(step, Step::Data { .. } | Step::Leave(_)) {
                counters.par_iter_mut().for_each(|c| c.step(&step));
            } else {
                for c in &mut counters {
                    c.step(&step);
                }
            }
        }
        reader.join().expect("the reader thread does not panic")
    });
    skipped.extend(failed);
    for c in &mut counters {
        c.finish_walk();
    }
    let configurations: Vec<ChunkerEstimate> = counters
        .into_par_iter()
        .map(|c| c.finish(logical))
        .collect();
    let (recommended, reason) = recommend(&configurations);
    Ok(Estimate {
        paths: paths.iter().map(|p| p.display().to_string()).collect(),
        files,
        logical_bytes: logical,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        recommended: configurations[recommended].label.clone(),
        reason,
        configurations,
    })
}

/// Sends the walk's steps, each file's bytes a block at a time (an empty
/// file is one empty block with `eof`); returns the files it could not
/// read, with why.
fn read_all(found: &[Event], tx: &mpsc::SyncSender<Step>, progress: &dyn Progress) -> Vec<String> {
    let mut failed = Vec::new();
    for f in found {
        let step = match f {
            Event::Enter => Step::Enter,
            Event::Other(e) => Step::Entry(e.clone()),
            Event::Leave(e) => Step::Leave(e.clone()),
            Event::File(path, entry, _) => {
                if let Err(e) = send_file(path, entry, tx) {
                    let line = format!("{}: {e}", path.display());
                    progress.warn(&line);
                    failed.push(line);
                    Step::Failed
                } else {
                    continue;
                }
            }
        };
        if tx.send(step).is_err() {
            break;
        }
    }
    failed
}

/// Sends one file's blocks.
fn send_file(path: &Path, entry: &Entry, tx: &mpsc::SyncSender<Step>) -> std::io::Result<()> {
    let mut file = fs::File::open(path)?;
    loop {
        let mut bytes = Vec::with_capacity(BLOCK);
        let n = (&mut file).take(BLOCK as u64).read_to_end(&mut bytes)?;
        let eof = n < BLOCK;
        let step = Step::Data {
            bytes,
            eof,
            entry: entry.clone(),
        };
        if tx.send(step).is_err() || eof {
            return Ok(());
        }
    }
}

/// The configuration to recommend, and why: the cheapest in stored,
/// index and tree bytes, or, among those within [`TIE`] of it, the one
/// with the largest chunks.
fn recommend(all: &[ChunkerEstimate]) -> (usize, String) {
    let cheapest = (0..all.len())
        .min_by_key(|&i| all[i].total_cost)
        .expect("at least one configuration");
    let best_cost = all[cheapest].total_cost as f64;
    let avg = |c: &ChunkerEstimate| c.unique_bytes as f64 / c.unique_chunks.max(1) as f64;
    let chosen = (0..all.len())
        .filter(|&i| all[i].total_cost as f64 <= best_cost * (1.0 + TIE))
        .max_by(|&a, &b| avg(&all[a]).total_cmp(&avg(&all[b])).then(b.cmp(&a)))
        .unwrap_or(cheapest);
    let c = &all[chosen];
    let human = crate::units::human_bytes;
    let reason = if chosen == cheapest {
        let runner = (0..all.len())
            .filter(|&i| i != chosen)
            .min_by_key(|&i| all[i].total_cost);
        match runner {
            Some(r) => format!(
                "it costs the least ({} on disk and in the index, dedup {:.2}x), \
                 {:.1}% less than the next best, {} ({})",
                human(c.total_cost),
                c.dedup_ratio,
                (1.0 - c.total_cost as f64 / all[r].total_cost as f64) * 100.0,
                all[r].label,
                human(all[r].total_cost)
            ),
            None => format!(
                "the only configuration asked for ({} on disk, dedup {:.2}x)",
                human(c.total_cost),
                c.dedup_ratio
            ),
        }
    } else {
        let b = &all[cheapest];
        format!(
            "it costs within {:.1}% of the least ({} on disk and in the index, against \
             {}'s {}) with {:.1}x fewer chunks: an index of {} instead of {} per TiB, and a \
             faster ingest",
            (c.total_cost as f64 / b.total_cost as f64 - 1.0) * 100.0,
            human(c.total_cost),
            b.label,
            human(b.total_cost),
            b.unique_chunks as f64 / c.unique_chunks.max(1) as f64,
            human(c.index_bytes_per_tib),
            human(b.index_bytes_per_tib)
        )
    };
    (chosen, reason)
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let human = crate::units::human_bytes;
        writeln!(
            f,
            "read {} files, {} in {:.1} s{}",
            self.files,
            human(self.logical_bytes),
            self.seconds,
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} skipped)", self.skipped.len())
            }
        )?;
        writeln!(
            f,
            "{:<14} {:>9} {:>7} {:>6} {:>10} {:>10} {:>11} {:>11} {:>10}",
            "chunker",
            "chunks",
            "dedup",
            "zstd",
            "stored",
            "index",
            "index/TiB",
            "bloom/TiB",
            "speed"
        )?;
        for c in &self.configurations {
            writeln!(
                f,
                "{:<14} {:>9} {:>6.2}x {:>5.2}x {:>10} {:>10} {:>11} {:>11} {:>8}/s{}",
                c.label,
                c.unique_chunks,
                c.dedup_ratio,
                c.compression_ratio,
                human(c.stored_bytes),
                human(c.index_bytes),
                human(c.index_bytes_per_tib),
                human(c.bloom_bytes_per_tib),
                human(c.bytes_per_second as u64),
                if c.label == self.recommended {
                    "  <"
                } else {
                    ""
                }
            )?;
        }
        writeln!(f, "recommended: {}: {}", self.recommended, self.reason)?;
        writeln!(
            f,
            "(speed: bytes a second one core cuts, hashes and lists; pick one with `dedup init --avg-size N` or `--chunker fixed --size N`)"
        )
    }
}
