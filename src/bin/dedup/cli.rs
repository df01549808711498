//! The command line's grammar: every command, option and argument (the
//! bigger argument groups and the value parsers are in `args`). What a
//! command does is in `cmd/`.

mod args;

use args::{parse_option, parse_percent};
pub use args::{EstimateArgs, FilterArgs, IngestArgs, InitArgs, KeepArgs, RestoreArgs};

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "dedup", version, about = "Content-addressable deduplicating storage", long_about = None)]
pub struct Cli {
    /// Repository folder [default: $DEDUP_REPO, else a repository in your data folder]
    #[arg(long, global = true, env = "DEDUP_REPO")]
    pub repo: Option<PathBuf>,
    /// This machine's cache folder (index, Bloom filter, file cache: all made again from the repository when lost) [default: $DEDUP_CACHE, else dedup in your cache folder]
    #[arg(long, global = true, env = "DEDUP_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// No progress bars or warnings on stderr
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Read an encrypted repository's password from this file (its first line); refused for a plain repository [else $DEDUP_PASSWORD_FILE, $DEDUP_PASSWORD, $DEDUP_PASSWORD_COMMAND, or a prompt, used only once the repository turns out to be encrypted]
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// When another process is writing, wait up to this many seconds for it
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0)]
    pub wait_lock: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ChunkerMode {
    Fastcdc,
    Fixed,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OverwriteArg {
    Never,
    IfChanged,
    Always,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EncryptionArg {
    /// Stored as they are (anyone who can read the store reads the data)
    None,
    /// A random master key, wrapped by passwords in keys/: every stored
    /// object encrypted and authenticated, ids keyed
    Repokey,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    None,
}

impl From<CompressionArg> for dedup::Compression {
    fn from(c: CompressionArg) -> Self {
        match c {
            CompressionArg::Zstd => dedup::Compression::Zstd,
            CompressionArg::None => dedup::Compression::None,
        }
    }
}

#[derive(Subcommand)]
pub enum ShardAction {
    /// Shards with their weight, chunks, bytes and share
    List,
    /// Add a shard (nothing moves until `rebalance`)
    Add {
        /// An empty folder, or s3://bucket/prefix on an S3-compatible store
        location: String,
        /// Relative share of chunks
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// An object-store setting, such as endpoint=http://127.0.0.1:9000
        /// or region=eu-west-1 (repeatable; overrides the AWS_* environment
        /// variables; secrets are better left in the environment)
        #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
    },
    /// Drain a shard onto the others, then drop it
    Remove {
        /// Shard id (see `shard list`)
        id: u32,
        /// The shard is gone for good (a dead disk): forget what only it
        /// held instead of moving it
        #[arg(long)]
        lost: bool,
    },
    /// Change a shard's weight (nothing moves until `rebalance`)
    SetWeight {
        /// Shard id
        id: u32,
        /// New weight (0: receives nothing new)
        weight: u32,
    },
}

#[derive(Subcommand)]
pub enum KeyAction {
    /// The key files, the one used marked
    List,
    /// Add a key for another password
    Add {
        /// Read the new password from this file [default: ask twice]
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Milliseconds the new key's derivation should take here
        #[arg(long, value_name = "MS", default_value_t = 500)]
        kdf_time: u64,
    },
    /// Remove a key (not the one this command was opened with)
    Remove {
        /// Key id, or a unique prefix (see `key list`)
        id: String,
    },
    /// Change the password of the key used to open
    Passwd {
        /// Read the new password from this file [default: ask twice]
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Milliseconds the new key's derivation should take here
        #[arg(long, value_name = "MS", default_value_t = 500)]
        kdf_time: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RepairWhat {
    /// The RocksDB index and the Bloom filter
    Index,
    /// Read every pack and drop damaged or missing objects from the index,
    /// so the next ingest stores them again
    Packs,
    /// Deal with what the store lost or got back against what this machine
    /// saw: write back the records it lost, delete again the forgotten
    /// ones that came back, accept the rest
    History,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a repository
    Init(InitArgs),
    /// Store directories (or files) as a new snapshot
    Ingest(IngestArgs),
    /// List snapshots
    Snapshots {
        #[command(flatten)]
        filter: FilterArgs,
        /// What each added when taken and holds alone now (what forgetting
        /// it alone would free); reads every snapshot's trees
        #[arg(long)]
        sizes: bool,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot, or a folder or file of it, into an absent or
    /// empty folder (or over what a folder holds, with --overwrite)
    Restore(RestoreArgs),
    /// List a folder of a snapshot (or one entry)
    Ls {
        /// SNAPSHOT or SNAPSHOT:PATH (default PATH: the snapshot's root)
        target: String,
        /// Type, mode, size and modification time too
        #[arg(long, short)]
        long: bool,
        /// Everything below, not only the folder's own entries
        #[arg(long, short = 'R')]
        recursive: bool,
        /// JSON output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Find entries by name (or by path, when the pattern holds a `/`) in
    /// every snapshot, or in those given
    Find {
        /// A glob: `*.rs`, `report-202?-*`, `/src/**/mod.rs`
        pattern: String,
        /// Look only in this snapshot (repeat for several)
        #[arg(long = "snapshot", value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
        /// JSON output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// What changed between two snapshots
    Diff {
        /// The earlier snapshot
        a: String,
        /// The later snapshot
        b: String,
        /// JSON output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show every snapshot as a read-only folder (FUSE) until unmounted
    Mount {
        /// An empty folder to mount on
        dir: PathBuf,
    },
    /// Write a file of a snapshot to standard output
    Cat {
        /// SNAPSHOT:PATH
        target: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Dedup report for the repository or one snapshot
    Report {
        /// Snapshot id, prefix or `latest` (default: the whole repository)
        snapshot: Option<String>,
        /// Where the snapshot's bytes went, folder by folder, costliest first
        #[arg(long, requires = "snapshot")]
        by_dir: bool,
        /// With --by-dir: the deepest folders listed (0: the root alone)
        #[arg(long, value_name = "N", default_value_t = 2, requires = "by_dir")]
        depth: u32,
        /// Also write the report as one self-contained HTML page with charts
        #[arg(long, value_name = "FILE", conflicts_with_all = ["snapshot", "json"])]
        html: Option<PathBuf>,
        /// JSON output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Why a file of a snapshot dedups as it does: its chunks, new or
    /// reused, and which other files and snapshots hold them
    Explain {
        /// SNAPSHOT:PATH
        target: String,
        /// Files listed per chunk, and similar files, at most
        #[arg(long, value_name = "N", default_value_t = 5)]
        limit: usize,
        /// JSON output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Which chunker suits some data: one read pass compares chunker
    /// configurations (dedup, compression, index size, speed); writes
    /// nothing
    Estimate(EstimateArgs),
    /// Check snapshots, trees, index and packs (and, with --read-data, every byte)
    Verify {
        /// Re-read and re-hash every chunk
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Re-read and re-hash a random share of the packs, e.g. 10%
        #[arg(long, value_name = "N%", value_parser = parse_percent)]
        read_data_subset: Option<f64>,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Remove snapshots by id, or by a policy of which to keep (their data
    /// is reclaimed by gc, or at once with --prune)
    Forget {
        /// Snapshot ids, prefixes or `latest` (none with a --keep-* policy)
        snapshots: Vec<String>,
        #[command(flatten)]
        keep: KeepArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Apply the policy to each group of snapshots sharing these:
        /// host, paths, tags, comma separated ("" for one group)
        #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
        group_by: dedup::format::snapshot::GroupBy,
        /// List what would be kept (and why) and removed; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Run gc afterwards, reclaiming the space at once
        #[arg(long)]
        prune: bool,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Reclaim space that no snapshot reaches
    Gc {
        /// Print what would be freed, change nothing
        #[arg(long)]
        dry_run: bool,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Fold the index's segments into families, beside running writers
    Compact {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Rebuild derived state from the packs and snapshot records
    Repair {
        /// What to rebuild
        #[arg(value_enum)]
        what: RepairWhat,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// List, add, re-weight or remove shards
    Shard {
        #[command(subcommand)]
        action: ShardAction,
        /// JSON output
        #[arg(long, global = true)]
        json: bool,
    },
    /// Move chunks whose shard on the current ring changed (then gc)
    Rebalance {
        /// Print what would move, change nothing
        #[arg(long)]
        dry_run: bool,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// List, add, remove or change an encrypted repository's keys
    Key {
        #[command(subcommand)]
        action: KeyAction,
        /// JSON output
        #[arg(long, global = true)]
        json: bool,
    },
    /// Store one file's bytes as a blob; prints its content id
    Put {
        /// The file
        file: PathBuf,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Write a blob's bytes to stdout
    Get {
        /// Content id (64 hex digits)
        id: String,
    },
}

impl Command {
    /// The snapshot filter the command was given, if it takes one.
    pub fn filter(&self) -> dedup::format::snapshot::SnapshotFilter {
        match self {
            Command::Snapshots { filter, .. }
            | Command::Restore(RestoreArgs { filter, .. })
            | Command::Ls { filter, .. }
            | Command::Find { filter, .. }
            | Command::Diff { filter, .. }
            | Command::Cat { filter, .. }
            | Command::Report { filter, .. }
            | Command::Explain { filter, .. }
            | Command::Forget { filter, .. } => filter.filter(),
            _ => dedup::format::snapshot::SnapshotFilter::default(),
        }
    }
}
