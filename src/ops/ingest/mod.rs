//! Ingest: walk directory trees, store their files and listings, record a
//! snapshot.
//!
//! Folder by folder (`folder.rs`), in parallel: list a folder (sorted by
//! name, symlinks not followed), store its files (`read.rs`: from the file
//! cache when unchanged, else read and cut, their new chunks stored) and
//! subfolders, then its tree. Last, the snapshot record, written only
//! after every pack is committed (invariant 3). Output is deterministic:
//! the same tree always gives the same root tree id.

mod exclude;
mod folder;
mod read;

pub use exclude::Exclusions;

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use folder::Walker;

use crate::bloom::{BLOOM_FALSE_POSITIVES, BLOOM_LOOKUPS, BLOOM_SKIPPED};
use crate::catalog::summary::IndexReads;
use crate::engine::writer::ObjectWriter;
use crate::engine::{Engine, Progress};
use crate::error::{Error, Result};
use crate::format::record::ObjectKind;
use crate::format::snapshot::record::{record_path, RECORD_VERSION};
use crate::format::snapshot::tree::unsafe_name;
use crate::format::snapshot::{Entry, EntryKind, SnapshotId, SnapshotRecord, Tree};
use crate::id::ChunkId;
use crate::units::human_bytes;

/// A file's chunks in order: `(id, length)`.
type ChunkList = Vec<(ChunkId, u32)>;

/// The result of one ingest: its `Display` is what people see, its
/// `Serialize` what `--json` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IngestOutcome {
    /// The new snapshot.
    pub id: SnapshotId,
    /// Its record (with the summary).
    pub record: SnapshotRecord,
    /// Nothing was written: `id` is what the snapshot would have been.
    pub dry_run: bool,
    /// Reads of the index families it made (none while the index lives
    /// in this machine's cache).
    pub index: IndexReads,
}

impl std::fmt::Display for IngestOutcome {
    /// What people see after an ingest: the snapshot and what it cost.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.record.summary;
        if self.dry_run {
            writeln!(f, "dry run: nothing was written; the snapshot would hold")?;
        } else {
            writeln!(f, "snapshot {} saved", self.id)?;
        }
        writeln!(
            f,
            "  {} files, {} folders, {} symlinks: {}",
            s.files,
            s.dirs,
            s.symlinks,
            human_bytes(s.logical_bytes)
        )?;
        writeln!(
            f,
            "  new:    {} in {} objects ({} on disk)",
            human_bytes(s.new_bytes),
            s.new_chunks,
            human_bytes(s.new_stored_bytes)
        )?;
        writeln!(f, "  reused: {}", human_bytes(s.reused_bytes))?;
        if s.excluded > 0 {
            writeln!(f, "  excluded: {} entries", s.excluded)?;
        }
        if s.unchanged_files > 0 {
            writeln!(
                f,
                "  unchanged since the last ingest (not re-read): {} files",
                s.unchanged_files
            )?;
        }
        writeln!(
            f,
            "  time:   {:.2} s ({}/s)",
            s.seconds,
            human_bytes((s.logical_bytes as f64 / s.seconds.max(1e-9)) as u64)
        )
    }
}

/// Options for [`Repository::ingest_with`](crate::Repository::ingest_with).
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Reuse the chunk lists of files whose size, times, inode and device
    /// are unchanged since they were last read (see `filecache`). On by
    /// default; off re-reads and re-hashes everything.
    pub file_cache: bool,
    /// Labels for the snapshot (`ingest --tag`).
    pub tags: Vec<String>,
    /// The host name to record instead of this machine's.
    pub host: Option<String>,
    /// What to leave out.
    pub exclude: Exclusions,
    /// Read, cut, hash and compress everything and report what would be
    /// added, writing nothing (no packs, no record, no file cache). Works
    /// on a read-only handle too (which has no file cache: every file is
    /// read).
    pub dry_run: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            file_cache: true,
            tags: Vec::new(),
            host: None,
            exclude: Exclusions::default(),
            dry_run: false,
        }
    }
}

/// The work of [`Repository::ingest`](crate::Repository::ingest).
pub(crate) fn ingest(
    engine: &Engine,
    paths: &[PathBuf],
    progress: &dyn Progress,
) -> Result<IngestOutcome> {
    ingest_with(engine, paths, &IngestOptions::default(), progress)
}

/// The work of [`Repository::ingest_with`](crate::Repository::ingest_with)(crate::Repository::ingest_with).
pub(crate) fn ingest_with(
    engine: &Engine,
    paths: &[PathBuf],
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestOutcome> {
    let _storing = engine.storing();
    let start = begin_ingest(engine, opts)?;
    let writer = writer_for(engine, opts);
    let walker = Walker {
        repo: engine,
        writer: &writer,
        progress,
        file_cache: opts.file_cache,
        own: engine.own_folders(),
        exclude: &opts.exclude,
        devices: devices_of(paths),
        names: crate::engine::attrs::Names::default(),
        started_ns: start
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)),
    };
    let (root_tree, tally) = walk_pool()?.install(|| walker.roots(paths))?;
    let root = match paths {
        [only] => walker.root_entry(only, root_tree)?,
        _ => None,
    };
    let paths = paths.iter().map(|p| record_path(p)).collect();
    let tops = (root_tree, root);
    conclude(engine, &start, writer, tops, tally, paths, opts, progress)
}

/// The work of [`Repository::ingest_stream`](crate::Repository::ingest_stream).
pub(crate) fn ingest_stream(
    engine: &Engine,
    mut stream: impl std::io::Read + Send,
    name: &str,
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestOutcome> {
    if let Some(why) = unsafe_name(name.as_bytes()) {
        return Err(Error::invalid("stdin name", format!("{name:?}: {why}")));
    }
    if u16::try_from(name.len()).is_err() {
        return Err(Error::invalid(
            "stdin name",
            format!("{} bytes is too long", name.len()),
        ));
    }
    let _storing = engine.storing();
    let start = begin_ingest(engine, opts)?;
    let writer = writer_for(engine, opts);
    let chunks = walk_pool()?
        .install(|| read::stream_chunks(&writer, engine.config.chunker, &mut stream, progress))?;
    let chunks = chunks.map_err(|e| Error::Io {
        path: PathBuf::from("standard input"),
        source: e,
    })?;
    let size: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
    let mut tally = folder::Tally::default();
    tally.summary.files = 1;
    tally.summary.dirs = 1;
    tally.summary.logical_bytes = size;
    tally.summary.total_chunks = chunks.len() as u64;
    let now = start
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let tree = Tree {
        entries: vec![Entry {
            name: name.as_bytes().to_vec(),
            mode: 0o644,
            mtime_s: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            mtime_ns: now.subsec_nanos(),
            kind: EntryKind::File { size, chunks },
            attrs: crate::format::snapshot::Attrs {
                owner: Some(
                    crate::engine::attrs::Names::default()
                        .owner(uzers::get_current_uid(), uzers::get_current_gid()),
                ),
                ..Default::default()
            },
        }],
    };
    let root = writer.store(&tree.encode(), ObjectKind::Tree)?;
    let paths = vec![format!("/{name}")];
    conclude(
        engine,
        &start,
        writer,
        (root, None),
        tally,
        paths,
        opts,
        progress,
    )
}

/// What every ingest does first: check the shards can take data, and
/// see what other writers committed since this handle opened.
fn begin_ingest(engine: &Engine, opts: &IngestOptions) -> Result<IngestStart> {
    if !opts.dry_run {
        engine.check_writable()?;
    }
    engine.refresh()?;
    Ok(IngestStart {
        clock: Instant::now(),
        time: SystemTime::now(),
        reads: engine.index.index_reads(),
    })
}

/// What every ingest does last: commit the packs, update the file
/// cache, and write the record (in a dry run, only describe it).
#[allow(clippy::too_many_arguments)] // one call per kind of ingest, all internal
fn conclude(
    engine: &Engine,
    start: &IngestStart,
    writer: ObjectWriter<'_>,
    (root_tree, root): (ChunkId, Option<ChunkId>),
    tally: folder::Tally,
    paths: Vec<String>,
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestOutcome> {
    let stats = writer.finish()?;
    // Files read this time become the cache for the next ingest, once
    // their chunks are indexed (by `writer.finish`).
    if let (Some(cache), false) = (&engine.file_cache, opts.dry_run) {
        // The cache only saves re-reading: a write that fails (a full
        // disk) costs the next ingest time, not this one its snapshot.
        if let Err(e) = cache.put_many(&tally.fresh_cache) {
            progress.warn(&format!("file cache not updated: {e}"));
        }
    }
    let mut summary = tally.summary;
    summary.new_chunks = stats.new_objects;
    summary.new_bytes = stats.new_raw;
    summary.new_stored_bytes = stats.new_stored;
    summary.reused_bytes = summary.logical_bytes.saturating_sub(stats.new_data_raw);
    summary.bloom = stats.bloom;
    summary.seconds = start.clock.elapsed().as_secs_f64();
    let hostname = opts
        .host
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    let record = SnapshotRecord {
        version: RECORD_VERSION,
        time: humantime::format_rfc3339_seconds(start.time).to_string(),
        time_unix_ns: start
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        parent: parent_of(engine, &hostname, &paths)?,
        prev: engine.snapshots()?.last().map(|(id, _)| *id),
        hostname,
        username: uzers::get_current_username()
            .map(|u| u.to_string_lossy().into_owned())
            .unwrap_or_default(),
        paths,
        tags,
        tree: root_tree,
        root,
        summary,
    };
    if opts.dry_run {
        let (id, _) = crate::engine::snapshots::encode_record(&engine.crypt, &record);
        return Ok(IngestOutcome {
            id,
            record,
            dry_run: true,
            index: engine.index.index_reads().since(start.reads),
        });
    }
    let mut outcome = publish_snapshot(engine, record, progress)?;
    outcome.index = engine.index.index_reads().since(start.reads);
    Ok(outcome)
}

/// The newest snapshot of the same host and the same set of paths: the
/// one a new snapshot follows (restic's parent).
fn parent_of(engine: &Engine, hostname: &str, paths: &[String]) -> Result<Option<SnapshotId>> {
    let sorted = |p: &[String]| {
        let mut p = p.to_vec();
        p.sort();
        p
    };
    let want = sorted(paths);
    Ok(engine
        .snapshots()?
        .into_iter()
        .rev()
        .find(|(_, r)| r.hostname == hostname && sorted(&r.paths) == want)
        .map(|(id, _)| id))
}

/// Last, the snapshot record, durably into `snapshots/` and then
/// into the index (invariant 3: every pack it reaches is committed),
/// then the Bloom counters and filter. Once the record file is durable
/// the snapshot is saved: what fails after it is a warning, not an
/// error that would have the user ingest the same data twice.
fn publish_snapshot(
    engine: &Engine,
    record: SnapshotRecord,
    progress: &dyn Progress,
) -> Result<IngestOutcome> {
    let (id, bytes) = crate::engine::snapshots::encode_record(&engine.crypt, &record);
    engine.hold.check_alive()?;
    engine.files.put(&SnapshotRecord::key(&id), &bytes)?;
    let bloom = &record.summary.bloom;
    let after = [
        // A record the index lacks is adopted by the next writer.
        (
            "snapshot index entry",
            engine.index.put_snapshot(&id, &bytes),
        ),
        (
            "Bloom counters",
            engine.index.add_counters(&[
                (BLOOM_LOOKUPS, bloom.lookups),
                (BLOOM_SKIPPED, bloom.skipped),
                (BLOOM_FALSE_POSITIVES, bloom.false_positives),
            ]),
        ),
        // A stale filter is rebuilt by the next writer.
        ("Bloom filter", engine.save_bloom()),
    ];
    for (what, result) in after {
        if let Err(e) = result {
            progress.warn(&format!(
                "snapshot {id} is saved, but its {what} was not written (the next writer repairs it): {e}"
            ));
        }
    }
    Ok(IngestOutcome {
        id,
        record,
        dry_run: false,
        index: IndexReads::default(),
    })
}

/// When an ingest began.
struct IngestStart {
    clock: Instant,
    time: SystemTime,
    /// The index's reads of its families so far.
    reads: IndexReads,
}

/// The writer an ingest stores through: one that only counts in a dry run.
fn writer_for<'r>(repo: &'r Engine, opts: &IngestOptions) -> ObjectWriter<'r> {
    if opts.dry_run {
        ObjectWriter::counting(repo)
    } else {
        ObjectWriter::new(repo)
    }
}

/// The file systems the given paths are on.
fn devices_of(paths: &[PathBuf]) -> std::collections::HashSet<u64> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| m.dev())
        .collect()
}

/// Stack for each thread of an ingest: a folder's children are stored on
/// the pool, each level of folders nests a few frames, and folders nest as
/// deep as a path can be long (PATH_MAX, 4096 bytes: 2048 levels). Only
/// the pages touched are ever committed.
const WALK_STACK: usize = 64 << 20;

/// The pool an ingest walks, reads and stores on: one thread per core,
/// each with a stack deep enough for any folder depth (see [`WALK_STACK`]).
fn walk_pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .stack_size(WALK_STACK)
        .thread_name(|i| format!("dedup-ingest-{i}"))
        .build()
        .map_err(|e| Error::invalid("ingest", format!("cannot start its threads: {e}")))
}
