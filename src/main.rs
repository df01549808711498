//! The `dedup` command line: parse arguments, draw progress, print, and map
//! errors to exit codes (0 ok, 1 problems found, 2 error). Everything else
//! is library code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use dedup::repo::report::human_bytes;
use dedup::{ChunkerConfig, Compression, InitOptions, Progress, Repository};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "dedup", version, about = "Content-addressable deduplicating storage", long_about = None)]
struct Cli {
    /// Repository folder [default: $DEDUP_REPO, else a repository in your data folder]
    #[arg(long, global = true, env = "DEDUP_REPO")]
    repo: Option<PathBuf>,
    /// No progress bars or warnings on stderr
    #[arg(long, short, global = true)]
    quiet: bool,
    /// When another process is writing, wait up to this many seconds for it
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0)]
    wait_lock: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ChunkerMode {
    Fastcdc,
    Fixed,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Zstd,
    None,
}

#[derive(Subcommand)]
enum ShardAction {
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
    },
    /// Change a shard's weight (nothing moves until `rebalance`)
    SetWeight {
        /// Shard id
        id: u32,
        /// New weight (0: receives nothing new)
        weight: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RepairWhat {
    /// The RocksDB index and the Bloom filter
    Index,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository
    Init {
        /// Chunking mode
        #[arg(long, value_enum, default_value = "fastcdc")]
        chunker: ChunkerMode,
        /// FastCDC average chunk size (a power of two) [default: 64KiB]
        #[arg(long, value_parser = parse_size)]
        avg_size: Option<u32>,
        /// FastCDC minimum chunk size [default: avg / 4]
        #[arg(long, value_parser = parse_size)]
        min_size: Option<u32>,
        /// FastCDC maximum chunk size [default: avg * 4]
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u32>,
        /// Fixed chunk size [default: 64KiB]
        #[arg(long, value_parser = parse_size)]
        size: Option<u32>,
        /// Number of shards inside the repository
        #[arg(long, default_value_t = 4, conflicts_with = "shard")]
        shards: u32,
        /// A shard: a folder anywhere or s3://bucket/prefix (repeat for several)
        #[arg(long)]
        shard: Vec<String>,
        /// An object-store setting for the s3:// shards, such as
        /// endpoint=http://127.0.0.1:9000 or region=eu-west-1 (repeatable;
        /// overrides the AWS_* environment variables)
        #[arg(long = "shard-option", value_name = "KEY=VALUE", value_parser = parse_option)]
        shard_option: Vec<(String, String)>,
        /// Per-chunk compression
        #[arg(long, value_enum, default_value = "zstd")]
        compression: CompressionArg,
        /// Pack target size
        #[arg(long, value_parser = parse_size, default_value = "16MiB")]
        pack_size: u32,
    },
    /// Store directories (or files) as a new snapshot
    Ingest {
        /// What to store
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the snapshot record as JSON
        #[arg(long)]
        json: bool,
        /// Re-read every file, even those unchanged since the last ingest
        #[arg(long)]
        rehash: bool,
    },
    /// List snapshots
    Snapshots {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot into an empty or absent folder
    Restore {
        /// Snapshot id, unique id prefix, or `latest`
        snapshot: String,
        /// Destination folder
        dest: PathBuf,
    },
    /// Dedup report for the repository or one snapshot
    Report {
        /// Snapshot id, prefix or `latest` (default: the whole repository)
        snapshot: Option<String>,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
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
    /// Remove snapshot records (their data is reclaimed by gc)
    Forget {
        /// Snapshot ids, prefixes or `latest`
        #[arg(required = true)]
        snapshots: Vec<String>,
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
    /// Rebuild derived state from the packs and snapshot records
    Repair {
        /// What to rebuild
        #[arg(value_enum)]
        what: RepairWhat,
    },
    /// List, add, re-weight or remove shards
    Shard {
        #[command(subcommand)]
        action: ShardAction,
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
    /// Store one file's bytes as a blob; prints its content id
    Put {
        /// The file
        file: PathBuf,
    },
    /// Write a blob's bytes to stdout
    Get {
        /// Content id (64 hex digits)
        id: String,
    },
}

/// Parses `4096`, `16K`, `16KiB`, `1MiB`, `2G` (binary units).
/// One line for a rebalance, then one per shard with chunks going or coming.
fn print_moves(verb: &str, report: &dedup::repo::RebalanceReport) {
    println!(
        "{verb} {} of {} chunks ({:.1}%), {}",
        report.moved_objects,
        report.total_objects,
        100.0 * report.moved_objects as f64 / report.total_objects.max(1) as f64,
        human_bytes(report.moved_bytes)
    );
    for s in &report.shards {
        println!(
            "  shard {}: {} chunks ({}) out, {} chunks ({}) in",
            s.id,
            s.chunks_out,
            human_bytes(s.bytes_out),
            s.chunks_in,
            human_bytes(s.bytes_in)
        );
    }
}

/// `KEY=VALUE`, for object-store settings.
fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_size(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4096, 64KiB or 1MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s} is too large"))
}

/// Parses `10%` or `10` as 0.10.
fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
    if !(0.0..=100.0).contains(&n) || n == 0.0 {
        return Err(format!("{s} is outside (0%, 100%]"));
    }
    Ok(n / 100.0)
}

/// Opens the repository as its writer, waiting up to `wait` seconds for
/// another writer to finish.
fn open_writer(path: &Path, wait: u64) -> dedup::Result<Repository> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        match Repository::open(path) {
            Err(dedup::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Progress on stderr: a bar when stderr is a terminal, warnings always
/// (unless `--quiet`).
struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Bar {
    fn new(quiet: bool, verb: &str) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{verb} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
                ))
                .expect("valid template"),
            );
            bar
        });
        Bar { bar, quiet }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
        }
    }
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
    fn warn(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("dedup: warning: {message}")),
            None => eprintln!("dedup: warning: {message}"),
        }
    }
}

fn default_repo() -> anyhow::Result<PathBuf> {
    let base =
        dirs::data_dir().context("no data folder for this user; pass --repo or set DEDUP_REPO")?;
    Ok(base.join("dedup").join("repo"))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let (repo_path, is_default) = match &cli.repo {
        Some(p) => (p.clone(), false),
        None => (default_repo()?, true),
    };
    let open_ro = |p: &Path| Repository::open_read_only(p);
    match cli.command {
        Command::Init {
            chunker,
            avg_size,
            min_size,
            max_size,
            size,
            shards,
            shard,
            shard_option,
            compression,
            pack_size,
        } => {
            let chunker = match chunker {
                ChunkerMode::Fixed => {
                    if avg_size.is_some() || min_size.is_some() || max_size.is_some() {
                        bail!("--avg-size, --min-size and --max-size are for --chunker fastcdc; use --size");
                    }
                    ChunkerConfig::Fixed {
                        size: size.unwrap_or(64 * 1024),
                    }
                }
                ChunkerMode::Fastcdc => {
                    if size.is_some() {
                        bail!("--size is for --chunker fixed; use --avg-size");
                    }
                    let avg = avg_size.unwrap_or(64 * 1024);
                    ChunkerConfig::FastCdc {
                        min: min_size.unwrap_or(avg / 4),
                        avg,
                        max: max_size.unwrap_or(avg.saturating_mul(4)),
                    }
                }
            };
            let opts = InitOptions {
                chunker,
                compression: match compression {
                    CompressionArg::Zstd => Compression::Zstd,
                    CompressionArg::None => Compression::None,
                },
                shard_locations: shard,
                shard_options: shard_option.into_iter().collect(),
                shards,
                pack_size,
            };
            let repo = Repository::init(&repo_path, &opts)?;
            println!(
                "created repository {} ({}, {} shards, compression {:?})",
                repo.root().display(),
                repo.config().chunker,
                repo.config().shards.len(),
                repo.config().compression
            );
            Ok(0)
        }
        Command::Ingest {
            paths,
            json,
            rehash,
        } => {
            let repo = match open_writer(&repo_path, cli.wait_lock) {
                Err(dedup::Error::NoRepository(_)) if is_default => {
                    let repo = Repository::init(&repo_path, &InitOptions::default())?;
                    if !cli.quiet {
                        eprintln!(
                            "dedup: created the default repository at {}",
                            repo_path.display()
                        );
                    }
                    repo
                }
                other => other?,
            };
            let bar = Bar::new(cli.quiet, "ingest");
            let opts = dedup::IngestOptions {
                file_cache: !rehash,
            };
            let outcome = repo.ingest_with(&paths, &opts, &bar);
            bar.finish();
            let outcome = outcome?;
            let s = &outcome.record.summary;
            if json {
                print_json(&serde_json::json!({ "id": outcome.id, "record": outcome.record }))?;
            } else {
                println!("snapshot {} saved", outcome.id);
                println!(
                    "  {} files, {} folders, {} symlinks: {}",
                    s.files,
                    s.dirs,
                    s.symlinks,
                    human_bytes(s.logical_bytes)
                );
                println!(
                    "  new:    {} in {} objects ({} on disk)",
                    human_bytes(s.new_bytes),
                    s.new_chunks,
                    human_bytes(s.new_stored_bytes)
                );
                println!("  reused: {}", human_bytes(s.reused_bytes));
                if s.unchanged_files > 0 {
                    println!(
                        "  unchanged since the last ingest (not re-read): {} files",
                        s.unchanged_files
                    );
                }
                println!(
                    "  time:   {:.2} s ({}/s)",
                    s.seconds,
                    human_bytes((s.logical_bytes as f64 / s.seconds.max(1e-9)) as u64)
                );
            }
            if !s.skipped.is_empty() {
                eprintln!("dedup: {} entries were skipped:", s.skipped.len());
                for sk in &s.skipped {
                    eprintln!("  {}: {}", sk.path, sk.reason);
                }
                return Ok(1);
            }
            Ok(0)
        }
        Command::Snapshots { json } => {
            let repo = open_ro(&repo_path)?;
            let snaps = repo.snapshots()?;
            if json {
                let list: Vec<_> = snaps
                    .iter()
                    .map(|(id, r)| serde_json::json!({ "id": id, "record": r }))
                    .collect();
                print_json(&list)?;
            } else {
                println!(
                    "{:<16}  {:<20}  {:>10}  {:>10}  paths",
                    "id", "time", "size", "new"
                );
                for (id, r) in &snaps {
                    println!(
                        "{:<16}  {:<20}  {:>10}  {:>10}  {}",
                        &id.to_hex()[..16],
                        r.time,
                        human_bytes(r.summary.logical_bytes),
                        human_bytes(r.summary.new_stored_bytes),
                        r.paths.join(" ")
                    );
                }
            }
            Ok(0)
        }
        Command::Restore { snapshot, dest } => {
            let repo = open_ro(&repo_path)?;
            let (id, _) = repo.resolve_snapshot(&snapshot)?;
            let bar = Bar::new(cli.quiet, "restore");
            let outcome = repo.restore(&id, &dest, &bar);
            bar.finish();
            let outcome = outcome?;
            println!(
                "restored snapshot {} into {}: {} files ({}), {} folders, {} symlinks",
                &id.to_hex()[..16],
                dest.display(),
                outcome.files,
                human_bytes(outcome.bytes),
                outcome.dirs,
                outcome.symlinks
            );
            if !outcome.failed.is_empty() {
                eprintln!(
                    "dedup: {} files could not be restored:",
                    outcome.failed.len()
                );
                for f in &outcome.failed {
                    eprintln!("  {f}");
                }
                return Ok(1);
            }
            Ok(0)
        }
        Command::Report { snapshot, json } => {
            let repo = open_ro(&repo_path)?;
            let report = match snapshot {
                Some(s) => {
                    let (id, _) = repo.resolve_snapshot(&s)?;
                    repo.snapshot_report(&id)?
                }
                None => repo.report()?,
            };
            if json {
                print_json(&report)?;
            } else {
                print!("{report}");
            }
            Ok(0)
        }
        Command::Verify {
            read_data,
            read_data_subset,
            json,
        } => {
            let repo = open_ro(&repo_path)?;
            let share = if read_data {
                1.0
            } else {
                read_data_subset.unwrap_or(0.0)
            };
            let bar = Bar::new(cli.quiet, "verify");
            let report = repo.verify(share, &bar);
            bar.finish();
            let report = report?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "checked {} snapshots, {} trees, {} chunks, {} packs; re-hashed {} chunks in {} packs",
                    report.snapshots, report.trees, report.chunks, report.packs, report.chunks_read, report.packs_read
                );
                for p in &report.problems {
                    println!("{}: {}", p.kind, p.message);
                    if let Some(pack) = &p.pack {
                        println!("  pack {pack}");
                    }
                    for f in &p.files {
                        println!("  breaks {f}");
                    }
                }
                if report.is_clean() {
                    println!("no problems found");
                } else {
                    println!("{} problems found", report.problems.len());
                }
            }
            Ok(if report.is_clean() { 0 } else { 1 })
        }
        Command::Forget { snapshots } => {
            let repo = open_writer(&repo_path, cli.wait_lock)?;
            let ids = snapshots
                .iter()
                .map(|s| repo.resolve_snapshot(s).map(|(id, _)| id))
                .collect::<dedup::Result<Vec<_>>>()?;
            repo.forget(&ids)?;
            for id in ids {
                println!("forgot snapshot {id}");
            }
            Ok(0)
        }
        Command::Gc { dry_run, json } => {
            let repo = open_writer(&repo_path, cli.wait_lock)?;
            let report = repo.gc(dry_run, &Bar::new(cli.quiet, "gc"))?;
            if json {
                print_json(&report)?;
            } else {
                let verb = if dry_run { "would free" } else { "freed" };
                println!(
                    "{verb} {} : {} packs deleted, {} rewritten, {} orphan packs, {} dead objects ({} live objects in {} packs)",
                    human_bytes(report.bytes_freed),
                    report.packs_deleted,
                    report.packs_rewritten,
                    report.orphan_packs,
                    report.objects_removed,
                    report.live_objects,
                    report.packs
                );
                for p in &report.unreadable_packs {
                    println!("skipped unreadable pack {p} (run `dedup verify`)");
                }
            }
            Ok(0)
        }
        Command::Repair {
            what: RepairWhat::Index,
        } => {
            let (_repo, report) = Repository::repair_index(&repo_path)?;
            println!(
                "rebuilt the index: {} packs, {} objects, {} snapshots",
                report.packs, report.objects, report.snapshots
            );
            for p in &report.salvaged_packs {
                println!("salvaged damaged pack {p}");
            }
            for u in &report.unusable {
                println!("could not use {u}");
            }
            Ok(
                if report.unusable.is_empty() && report.salvaged_packs.is_empty() {
                    0
                } else {
                    1
                },
            )
        }
        Command::Shard { action } => {
            match action {
                ShardAction::List => {
                    let repo = open_ro(&repo_path)?;
                    for s in repo.report()?.shards {
                        let options: Vec<String> =
                            s.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!(
                            "{}  weight {:>3}  {:>10}  {:>8} chunks  {:5.1}% (target {:5.1}%)  {}{}",
                            s.id,
                            s.weight,
                            human_bytes(s.bytes),
                            s.chunks,
                            s.share * 100.0,
                            s.target_share * 100.0,
                            s.path,
                            if options.is_empty() {
                                String::new()
                            } else {
                                format!("  ({})", options.join(", "))
                            }
                        );
                    }
                }
                ShardAction::Add {
                    location,
                    weight,
                    options,
                } => {
                    let mut repo = open_writer(&repo_path, cli.wait_lock)?;
                    let id = repo.add_shard(&location, weight, options.into_iter().collect())?;
                    let shard = repo.config().shards.iter().find(|s| s.id == id);
                    println!(
                        "added shard {id} at {} (run `dedup rebalance` to move chunks onto it)",
                        shard.map(|s| s.location(repo.root())).unwrap_or(location)
                    );
                }
                ShardAction::SetWeight { id, weight } => {
                    let mut repo = open_writer(&repo_path, cli.wait_lock)?;
                    repo.set_shard_weight(dedup::ring::ShardId(id), weight)?;
                    println!("shard {id:02} now has weight {weight} (run `dedup rebalance` to move chunks)");
                }
                ShardAction::Remove { id } => {
                    let mut repo = open_writer(&repo_path, cli.wait_lock)?;
                    let report =
                        repo.remove_shard(dedup::ring::ShardId(id), &Bar::new(cli.quiet, "drain"))?;
                    println!(
                        "removed shard {id:02}: moved {} chunks ({}) to the others",
                        report.moved_objects,
                        human_bytes(report.moved_bytes)
                    );
                }
            }
            Ok(0)
        }
        Command::Rebalance { dry_run, json } => {
            let repo = open_writer(&repo_path, cli.wait_lock)?;
            // People see the plan first (only pack trailers are read), then
            // the moves; JSON gets one or the other.
            if dry_run || !json {
                let plan = repo.rebalance(true, &Bar::new(cli.quiet, "plan"))?;
                if json {
                    print_json(&plan)?;
                } else {
                    print_moves("would move", &plan);
                }
                if dry_run || plan.moved_objects == 0 {
                    return Ok(0);
                }
            }
            let done = repo.rebalance(false, &Bar::new(cli.quiet, "rebalance"))?;
            if json {
                print_json(&done)?;
            } else {
                print_moves("moved", &done);
            }
            Ok(0)
        }
        Command::Put { file } => {
            let len = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            if len > dedup::repo::MAX_BLOB {
                bail!(
                    "{}: {len} bytes is more than put takes (1 GiB); store it with `dedup ingest`",
                    file.display()
                );
            }
            let repo = open_writer(&repo_path, cli.wait_lock)?;
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            println!("{}", repo.put(&data)?);
            Ok(0)
        }
        Command::Get { id } => {
            let repo = open_ro(&repo_path)?;
            let data = repo.get(&id.parse()?)?;
            std::io::stdout().lock().write_all(&data)?;
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // A closed pipe (`dedup get .. | head`) is not an error.
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            // Each cause once: the library's messages already include the
            // OS error they wrap.
            let mut message = String::new();
            for cause in err.chain() {
                let text = cause.to_string();
                if !message.contains(&text) {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&text);
                }
            }
            eprintln!("dedup: error: {message}");
            ExitCode::from(2)
        }
    }
}
