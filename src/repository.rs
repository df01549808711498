//! The front door: create, open, and use a repository.
//!
//! [`Repository`] wires the parts together (config, index, Bloom filter,
//! ring, shards) and holds the lock. Ingest, restore and reports live in
//! their own files beside this one. The command line is a thin layer over
//! this type; a program embedding `dedup` uses the same calls.
//!
//! A repository opened with [`Repository::open`] holds its lock alone, as
//! maintenance needs; opened with [`OpenOptions::shared`], it is one of any
//! number of writers (ingest, put) on any number of machines; any number
//! of [`Repository::open_read_only`] handles read beside them, each seeing
//! the repository as of its opening.
//!
//! The home (a folder, or a prefix of an object store; see `home`) holds
//! everything durable; each process reads and writes through its own slot
//! of this machine's cache (see `cache`), whose index it first brings up
//! to date with the home's segments.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::crypto::KdfParams;
use crate::engine::families::CompactReport;
use crate::engine::history::HistoryReport;
use crate::engine::keys::{KeyInfo, Password};
use crate::engine::{Engine, Evidence, OpenOptions, Progress, UnreadableRecord};
use crate::error::Result;
use crate::format::config::{Config, InitOptions};
use crate::format::snapshot::GroupBy;
use crate::format::snapshot::{Entry, SnapshotFilter, SnapshotId, SnapshotRecord, Tree};
use crate::id::{ChunkId, ShardId};
use crate::ops;
use crate::ops::browse::{Difference, FindMemo, Found, Match};
use crate::ops::gc::GcReport;
use crate::ops::ingest::{IngestOptions, IngestOutcome};
use crate::ops::insight::report::Report;
use crate::ops::insight::usage::{Explanation, Usage};
use crate::ops::repair::{PackRepairReport, RepairReport};
use crate::ops::restore::{RestoreOptions, RestoreOutcome};
use crate::ops::shards::{LostShard, RebalanceReport};
use crate::ops::verify::VerifyReport;
use crate::policy::{GroupDecisions, KeepPolicy};
use crate::Mode;
use std::collections::BTreeMap;

/// An open repository: every verb a program calls, each handed to its
/// file in `ops/` (or, for what the verbs share, to the engine).
pub struct Repository {
    pub(crate) engine: Engine,
}

impl Repository {
    /// Creates a repository at `path` (absent or an empty directory) and
    /// opens it for writing.
    pub fn init(path: impl AsRef<Path>, opts: &InitOptions) -> Result<Self> {
        Engine::init(path, opts).map(|engine| Repository { engine })
    }

    /// [`init`](Self::init), then opened with `open`.
    pub fn init_with(
        path: impl AsRef<Path>,
        opts: &InitOptions,
        open: &OpenOptions,
    ) -> Result<Self> {
        Engine::init_with(path, opts, open).map(|engine| Repository { engine })
    }

    /// Opens an existing repository as a writer holding its lock alone
    /// (maintenance, and everything else).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Engine::open(path).map(|engine| Repository { engine })
    }

    /// Opens an existing repository for reading only; works while a writer
    /// is active.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Engine::open_read_only(path).map(|engine| Repository { engine })
    }

    /// The config of the repository at `path`, unlocked with
    /// `opts.password` when it is encrypted: no lock taken, no cache
    /// built. What `init --copy-chunker-params-from` reads.
    pub fn read_config(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Config> {
        Engine::read_config(path, opts)
    }

    /// Opens with explicit options.
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Self> {
        Engine::open_with(path, opts).map(|engine| Repository { engine })
    }

    /// The repository's folder.
    pub fn root(&self) -> &Path {
        self.engine.root()
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }

    /// What this machine found the store lost, or put back, against what
    /// it saw before, and that `repair history` has not yet dealt with:
    /// a command should tell its user about each; `gc` deletes nothing
    /// meanwhile.
    pub fn evidence(&self) -> Vec<Evidence> {
        self.engine.evidence()
    }

    /// The snapshot record files of the home that could not be read or
    /// decoded when this handle last listed them (at its opening, or at
    /// the start of its last ingest or gc). Their snapshots are missing
    /// from [`snapshots`](Self::snapshots) meanwhile, and [`gc`](Self::gc)
    /// deletes nothing; a command should tell its user about each.
    pub fn unreadable_records(&self) -> Vec<UnreadableRecord> {
        self.engine.unreadable_records()
    }

    /// The snapshot whose record file cannot be read (see
    /// [`unreadable_records`](Self::unreadable_records)), or that was
    /// forgotten and came back ([`evidence`](Self::evidence)), that `spec`
    /// (a full id or a unique prefix of one) names, if any: what `forget`
    /// takes beside the listed snapshots.
    pub fn unreadable_record(&self, spec: &str) -> Option<SnapshotId> {
        self.engine.unreadable_record(spec)
    }

    /// Reads and checks one object (chunk, tree or blob) by id.
    pub fn read_object(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.engine.read_object(id)
    }

    /// Stores `data` as one object and returns its content id. Storing the
    /// same bytes twice stores them once. Use [`ingest`](Self::ingest) for
    /// files and trees; this is the plain key-value door, for blobs of up
    /// to [`MAX_BLOB`](crate::engine::MAX_BLOB) bytes.
    pub fn put(&self, data: &[u8]) -> Result<ChunkId> {
        self.engine.put(data)
    }

    /// The bytes stored under `id`, checked against it.
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.engine.get(id)
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        self.engine.snapshots()
    }

    /// One snapshot's record.
    pub fn snapshot(&self, id: &SnapshotId) -> Result<SnapshotRecord> {
        self.engine.snapshot(id)
    }

    /// The snapshots `filter` lets through, oldest first.
    pub fn snapshots_matching(
        &self,
        filter: &SnapshotFilter,
    ) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        self.engine.snapshots_matching(filter)
    }

    /// Finds a snapshot by `latest`, a full id, or a unique id prefix.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, SnapshotRecord)> {
        self.engine.resolve_snapshot(spec)
    }

    /// [`resolve_snapshot`](Self::resolve_snapshot), where `latest` means
    /// the newest snapshot `filter` lets through (as in restic: ids and
    /// prefixes name their snapshot whatever the filter).
    pub fn resolve_snapshot_in(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, SnapshotRecord)> {
        self.engine.resolve_snapshot_in(spec, filter)
    }

    /// The key files, oldest first; which one opened this handle is marked.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        self.engine.keys()
    }

    /// Adds a key file for `password` (Argon2 costs `params`, or tuned to
    /// about half a second here); returns its id.
    pub fn add_key(&self, password: &Password, params: Option<KdfParams>) -> Result<String> {
        self.engine.add_key(password, params)
    }

    /// Removes the key file `id` (a unique prefix will do). The key this
    /// handle was opened with, and the last key, are refused.
    pub fn remove_key(&self, id: &str) -> Result<String> {
        self.engine.remove_key(id)
    }

    /// Replaces the key this handle was opened with by one for `password`;
    /// returns the new key's id.
    pub fn change_password(
        &self,
        password: &Password,
        params: Option<KdfParams>,
    ) -> Result<String> {
        self.engine.change_password(password, params)
    }

    /// Reads and decodes a tree object: on an object store through the
    /// tree packs this handle keeps (its pack is read whole at the first
    /// miss, so browsing folder by folder costs a request for each tree
    /// pack, not one for each folder).
    pub fn read_tree(&self, id: &ChunkId) -> Result<Tree> {
        self.engine.read_tree(id)
    }

    /// Deals with what this machine found the store lost or put back
    /// ([`evidence`](Self::evidence)): each record this machine holds and
    /// the store lost is written back, each forgotten record that came
    /// back is deleted again, and the rest is accepted as the repository
    /// now is. `gc` works again afterwards.
    pub fn repair_history(&self) -> Result<HistoryReport> {
        self.engine.repair_history()
    }

    /// Ingests `paths` as one snapshot. One directory becomes the snapshot's
    /// root; several paths (or a single file) appear under their base names.
    ///
    /// Files that cannot be read are skipped, listed in the summary's
    /// `skipped`, and reported through `progress`; everything else is stored.
    pub fn ingest(&self, paths: &[PathBuf], progress: &dyn Progress) -> Result<IngestOutcome> {
        ops::ingest::ingest(&self.engine, paths, progress)
    }

    /// [`ingest`](Self::ingest) with options.
    pub fn ingest_with(
        &self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestOutcome> {
        ops::ingest::ingest_with(&self.engine, paths, opts, progress)
    }

    /// Ingests a stream (a database dump, a tar) as a snapshot holding one
    /// file, `name` (mode 0644, modified now), read through the chunker a
    /// window at a time: memory stays bounded however long the stream.
    /// The record's path is `/name`.
    pub fn ingest_stream(
        &self,
        stream: impl std::io::Read + Send,
        name: &str,
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestOutcome> {
        ops::ingest::ingest_stream(&self.engine, stream, name, opts, progress)
    }

    /// Restores `snapshot` into `dest`, which must be absent or empty.
    /// Files that fail (a damaged chunk, say) are listed in the outcome's
    /// `failed`; the rest are restored.
    pub fn restore(
        &self,
        snapshot: &SnapshotId,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        ops::restore::restore(&self.engine, snapshot, dest, progress)
    }

    /// Restores what `path` names inside `snapshot` (see
    /// [`browse`](crate::ops::browse)) into `dest`, which must be absent
    /// or empty: a folder's contents (the root's for `""`), or a file or
    /// symlink under its own name.
    pub fn restore_path(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        ops::restore::restore_path(&self.engine, snapshot, path, dest, progress)
    }

    /// [`restore_path`](Self::restore_path) with options: globs that pick
    /// what is restored, what happens to entries already in `dest`, and a
    /// read-back check.
    pub fn restore_with(
        &self,
        snapshot: &SnapshotId,
        path: &str,
        dest: &Path,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        ops::restore::restore_with(&self.engine, snapshot, path, dest, opts, progress)
    }

    /// What `path` names in the tree `root` of `snapshot` (named in
    /// errors).
    pub fn lookup(&self, snapshot: &SnapshotId, root: &ChunkId, path: &str) -> Result<Found> {
        self.engine.lookup(snapshot, root, path)
    }

    /// Writes the bytes of the file `entry` to `out`, each chunk checked
    /// against its id first; returns how many.
    pub fn write_file(&self, entry: &Entry, out: &mut dyn Write) -> Result<u64> {
        ops::browse::write_file(&self.engine, entry, out)
    }

    /// Every entry under the tree `root` whose name (or, when `pattern`
    /// holds a `/`, whose whole path from the root) matches the glob
    /// `pattern`, as restic's `find` does: `*.rs`, `/src/*/mod.rs`. `*`,
    /// `?` and `[...]` never match a `/`; `**` matches across folders.
    /// `seen` carries what was found under trees already walked, so that
    /// the folders many snapshots share are read once across them.
    pub fn find(
        &self,
        root: &ChunkId,
        pattern: &glob::Pattern,
        seen: &mut FindMemo,
    ) -> Result<Vec<Match>> {
        ops::browse::find(&self.engine, root, pattern, seen)
    }

    /// What differs between the trees `a` and `b`, path by path in name
    /// order: a folder only on one side is reported with everything in
    /// it; folders whose tree ids are equal are not read.
    pub fn diff(&self, a: &ChunkId, b: &ChunkId) -> Result<Vec<Difference>> {
        ops::browse::diff(&self.engine, a, b)
    }

    /// The report for the whole repository.
    pub fn report(&self) -> Result<Report> {
        ops::insight::report::report(&self.engine)
    }

    /// The report for one snapshot: its distinct chunks and what they cost.
    pub fn snapshot_report(&self, id: &SnapshotId) -> Result<Report> {
        ops::insight::report::snapshot_report(&self.engine, id)
    }

    /// Loads the trees of every snapshot into one graph, with owners and
    /// sizes (one walk of the distinct trees, batched index lookups).
    pub fn usage(&self) -> Result<Usage> {
        ops::insight::usage::usage(&self.engine)
    }

    /// Why the file at `path` of snapshot `id` dedups as it does, from
    /// `usage` (made by [`usage`](Self::usage)); up to `limit` holders are
    /// listed per chunk and similar files in all.
    pub fn explain(
        &self,
        usage: &Usage,
        id: &SnapshotId,
        path: &str,
        limit: usize,
    ) -> Result<Explanation> {
        usage.explain(&self.engine, id, path, limit)
    }

    /// Verifies the repository; `read_data` is the share of packs (0.0 to
    /// 1.0) to read in full and re-hash.
    pub fn verify(&self, read_data: f64, progress: &dyn Progress) -> Result<VerifyReport> {
        ops::verify::verify(&self.engine, read_data, progress)
    }

    /// Removes snapshot records (their data stays until `gc`), those whose
    /// file cannot be read included ([`unreadable_records`](Self::unreadable_records)),
    /// and forgotten ones that came back ([`evidence`](Self::evidence)).
    /// Each gets a tombstone first (see `history`).
    pub fn forget(&self, ids: &[SnapshotId]) -> Result<()> {
        ops::gc::forget(&self.engine, ids)
    }

    /// Applies a retention policy to the snapshots `filter` lets through,
    /// each group on its own (see [`policy`](crate::policy)); with [`Mode::Apply`],
    /// forgets every snapshot the policy does not keep. Periods are read
    /// in this machine's time zone. Returns every decision with its
    /// reasons, groups in key order, newest snapshot first.
    pub fn forget_by_policy(
        &self,
        filter: &SnapshotFilter,
        group_by: GroupBy,
        keep: &KeepPolicy,
        mode: Mode,
    ) -> Result<Vec<GroupDecisions>> {
        ops::gc::forget_by_policy(&self.engine, filter, group_by, keep, mode)
    }

    /// Reclaims space; a [`Mode::DryRun`] only reports what it would free.
    pub fn gc(&self, mode: Mode, progress: &dyn Progress) -> Result<GcReport> {
        ops::gc::gc(&self.engine, mode, progress)
    }

    /// Folds the index's segments that no manifest covers into a new
    /// version of its families, when there are more than `at_least`
    /// (`docs/design.md`, "Epochs and compaction beside writers"). Opened
    /// shared, it runs beside writers and readers, and deletes only what
    /// was superseded longer than the grace period ago; opened alone, it
    /// deletes what the new version supersedes at once.
    pub fn compact_index(&self, at_least: usize) -> Result<CompactReport> {
        self.engine.compact(at_least)
    }

    /// Rebuilds the index for the repository at `path`, then opens it.
    pub fn repair_index(path: impl AsRef<Path>) -> Result<(Self, RepairReport)> {
        ops::repair::repair_index(path).map(|(engine, report)| (Repository { engine }, report))
    }

    /// [`repair_index`](Self::repair_index), the repository reached and
    /// then opened as `opts` say.
    pub fn repair_index_with(
        path: impl AsRef<Path>,
        opts: &OpenOptions,
    ) -> Result<(Self, RepairReport)> {
        ops::repair::repair_index_with(path, opts)
            .map(|(engine, report)| (Repository { engine }, report))
    }

    /// Reads every pack and drops from the index each object whose bytes
    /// are damaged or whose pack is gone, so that the next ingest of the
    /// same data stores it again instead of deduplicating against what
    /// cannot be read (the file cache is checked against the index too).
    /// A pack with damaged records is rewritten with the intact ones and
    /// the damaged file kept as `<pack>.damaged`; nothing readable is lost.
    pub fn repair_packs(&self, progress: &dyn Progress) -> Result<PackRepairReport> {
        ops::repair::repair_packs(&self.engine, progress)
    }

    /// Adds a shard with `weight` and returns its id. `location` is a
    /// folder or an `s3://bucket/prefix`; `options` are object-store
    /// settings (see [`ShardConfig::options`](crate::format::config::ShardConfig::options)). The location must hold no
    /// packs yet, and an object store must answer. Nothing moves until
    /// [`rebalance`](Self::rebalance).
    pub fn add_shard(
        &mut self,
        location: &str,
        weight: u32,
        options: BTreeMap<String, String>,
    ) -> Result<ShardId> {
        ops::shards::add_shard(&mut self.engine, location, weight, options)
    }

    /// Changes a shard's weight (0: it receives nothing new).
    pub fn set_shard_weight(&mut self, id: ShardId, weight: u32) -> Result<()> {
        ops::shards::set_shard_weight(&mut self.engine, id, weight)
    }

    /// Drains shard `id` (weight 0, rebalance, gc) and removes it from the
    /// config. Its folder is left in place, empty of packs.
    pub fn remove_shard(
        &mut self,
        id: ShardId,
        progress: &dyn Progress,
    ) -> Result<RebalanceReport> {
        ops::shards::remove_shard(&mut self.engine, id, progress)
    }

    /// Removes shard `id` without reading it, for a shard that is gone for
    /// good (a dead disk, a deleted bucket): the index forgets every pack
    /// it listed there and every object in them, and the shard leaves the
    /// config. Snapshots that used those objects lose them (`verify` names
    /// them); an ingest of the same data stores it again. Nothing on the
    /// shard is touched.
    pub fn remove_lost_shard(&mut self, id: ShardId) -> Result<LostShard> {
        ops::shards::remove_lost_shard(&mut self.engine, id)
    }

    /// Moves every chunk whose owner on the current ring is not the shard
    /// holding it; the packs it leaves are rewritten without it. A
    /// [`Mode::DryRun`] only reports what would move.
    pub fn rebalance(&self, mode: Mode, progress: &dyn Progress) -> Result<RebalanceReport> {
        ops::shards::rebalance(&self.engine, mode, progress)
    }
}
