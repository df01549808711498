//! The arguments of the commands with many (`init`, `ingest`, `restore`,
//! `estimate`), the groups several share (filters, retention, exclusions),
//! and the parsers for sizes, percentages and `KEY=VALUE` settings.

use std::path::PathBuf;

use clap::Args;
use dedup::policy::{Count, KeepPolicy, Within};

use super::{ChunkerMode, CompressionArg, EncryptionArg, OverwriteArg};

// What `estimate` reads and which chunkers it compares (a plain comment:
// a doc comment would replace the command's help text).
#[derive(Args)]
pub struct EstimateArgs {
    /// Folders or files to read
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Configurations: MODE:SIZE[,SIZE...] for fastcdc (average size)
    /// and fixed [default: fastcdc:4K,8K,16K,32K,64K,128K fixed:4K,64K]
    #[arg(long, value_name = "MODE:SIZES", num_args = 1.., value_parser = parse_chunkers)]
    pub chunkers: Vec<Vec<dedup::ChunkerConfig>>,
    /// The compression a repository would use
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
    /// Its zstd level
    #[arg(long, default_value_t = dedup::DEFAULT_ZSTD_LEVEL, allow_negative_numbers = true)]
    pub compression_level: i32,
    /// JSON output
    #[arg(long)]
    pub json: bool,
}

impl EstimateArgs {
    /// The library's options (the default configurations when none are given).
    pub fn options(&self) -> dedup::ops::insight::estimate::EstimateOptions {
        let chunkers = self.chunkers.concat();
        dedup::ops::insight::estimate::EstimateOptions {
            chunkers: if chunkers.is_empty() {
                dedup::ops::insight::estimate::default_chunkers()
            } else {
                chunkers
            },
            compression: self.compression.into(),
            zstd_level: self.compression_level,
        }
    }
}

// What `ingest` stores and how it labels it (a plain comment: a doc
// comment would replace the command's help text).
#[derive(Args)]
#[allow(clippy::struct_excessive_bools)] // each is a switch of the command line
pub struct IngestArgs {
    /// What to store
    #[arg(required_unless_present = "stdin")]
    pub paths: Vec<PathBuf>,
    /// Store standard input as one file (a dump, a tar) instead of paths
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
    /// The name standard input is stored under [default: stdin]
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Option<String>,
    /// Read and hash everything, report what would be added; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the snapshot record as JSON
    #[arg(long)]
    pub json: bool,
    /// Re-read every file, even those unchanged since the last ingest
    #[arg(long)]
    pub rehash: bool,
    /// Label the snapshot (repeat, or separate with commas, for several)
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Record this host name instead of the machine's
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub exclude: ExcludeArgs,
}

// What `restore` brings back, and where (a plain comment: a doc comment
// would replace the command's help text).
#[derive(Args)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:PATH; SNAPSHOT is an id, a unique id
    /// prefix, or `latest`; PATH is inside the snapshot
    pub snapshot: String,
    /// Destination folder
    pub dest: PathBuf,
    /// Restore only what matches (and folders on the way; repeatable)
    #[arg(long, short = 'i', value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out what matches, and all below it (repeatable)
    #[arg(long, short = 'e', value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Restore into a folder that has entries: leave them (never),
    /// replace those whose size or time differ (if-changed), or
    /// replace all (always) [default: refuse a folder with entries]
    #[arg(long, value_enum, value_name = "WHEN")]
    pub overwrite: Option<OverwriteArg>,
    /// Read every restored file back and check it against the snapshot
    #[arg(long)]
    pub verify: bool,
    /// As root, give entries their owners by the numbers recorded, not by
    /// the user and group names
    #[arg(long)]
    pub numeric_owner: bool,
    /// JSON output
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

impl RestoreArgs {
    /// The library's options; a bad glob is an error.
    pub fn options(&self) -> dedup::Result<dedup::RestoreOptions> {
        use dedup::ops::restore::Overwrite;
        let mut opts = dedup::RestoreOptions {
            verify: self.verify,
            numeric_owner: self.numeric_owner,
            overwrite: match self.overwrite {
                None => Overwrite::Refuse,
                Some(OverwriteArg::Never) => Overwrite::Never,
                Some(OverwriteArg::IfChanged) => Overwrite::IfChanged,
                Some(OverwriteArg::Always) => Overwrite::Always,
            },
            ..Default::default()
        };
        for glob in &self.include {
            opts.include.add(glob, "include pattern")?;
        }
        for glob in &self.exclude {
            opts.exclude.add(glob, "exclude pattern")?;
        }
        Ok(opts)
    }
}

impl IngestArgs {
    /// What to read: the paths, or standard input under its name.
    pub fn source(&self) -> anyhow::Result<crate::cmd::store::Source<'_>> {
        if self.stdin_name.is_some() && !self.stdin {
            anyhow::bail!("--stdin-name names what --stdin stores; give --stdin too");
        }
        Ok(if self.stdin {
            crate::cmd::store::Source::Stdin(self.stdin_name.as_deref().unwrap_or("stdin"))
        } else {
            crate::cmd::store::Source::Paths(&self.paths)
        })
    }

    /// The library's options; a bad exclusion is an error.
    pub fn options(&self) -> dedup::Result<dedup::IngestOptions> {
        Ok(dedup::IngestOptions {
            file_cache: !self.rehash,
            tags: self.tags.clone(),
            host: self.host.clone(),
            exclude: self.exclude.exclusions()?,
            dry_run: self.dry_run,
        })
    }
}

/// What `ingest` leaves out.
#[derive(Args)]
pub struct ExcludeArgs {
    /// Leave out paths matching this glob (`*.o`, `build/`, `/home/*/.cache`; repeatable)
    #[arg(long, short = 'e', value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read --exclude globs from this file, one a line (`#` comments)
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Leave out folders holding a file of this name (repeatable)
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Leave out folders holding a CACHEDIR.TAG (bford.info/cachedir)
    #[arg(long)]
    pub exclude_caches: bool,
    /// Stay on the file systems of the paths given (mount points stay, empty)
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Leave out files larger than this
    #[arg(long, value_name = "SIZE", value_parser = parse_size64)]
    pub exclude_larger_than: Option<u64>,
}

impl ExcludeArgs {
    /// The library's rules; a bad glob or an unreadable file is an error.
    pub fn exclusions(&self) -> dedup::Result<dedup::Exclusions> {
        let mut ex = dedup::Exclusions::default();
        for glob in &self.exclude {
            ex.add_pattern(glob)?;
        }
        for file in &self.exclude_file {
            ex.add_pattern_file(file)?;
        }
        for name in &self.exclude_if_present {
            ex.add_marker(name);
        }
        if self.exclude_caches {
            ex.exclude_caches();
        }
        ex.one_file_system = self.one_file_system;
        ex.larger_than = self.exclude_larger_than;
        Ok(ex)
    }
}

/// Which snapshots a command looks at; `latest` is the newest that passes.
#[derive(Args, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeat: of any of them)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with all these tags (repeat: any of the lists)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Only snapshots made of this path (repeat: of all of them)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

impl FilterArgs {
    /// The library's filter; paths are made absolute, as ingest records them.
    pub fn filter(&self) -> dedup::format::snapshot::SnapshotFilter {
        dedup::format::snapshot::SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self
                .tags
                .iter()
                .map(|list| list.split(',').map(str::to_string).collect())
                .collect(),
            paths: self
                .paths
                .iter()
                .map(|p| dedup::format::snapshot::record::record_path(p))
                .collect(),
        }
    }
}

/// A retention policy: restic's `--keep-*` options.
#[derive(Args, Clone, Default)]
#[allow(clippy::struct_field_names)] // the fields are the options, named as restic names them
pub struct KeepArgs {
    /// Keep the N newest snapshots
    #[arg(long, short = 'l', value_name = "N")]
    pub keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the N newest hours ("unlimited": every hour)
    #[arg(long, short = 'H', value_name = "N")]
    pub keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the N newest days
    #[arg(long, short = 'd', value_name = "N")]
    pub keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the N newest ISO weeks
    #[arg(long, short = 'w', value_name = "N")]
    pub keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the N newest months
    #[arg(long, short = 'm', value_name = "N")]
    pub keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the N newest years
    #[arg(long, short = 'y', value_name = "N")]
    pub keep_yearly: Option<Count>,
    /// Keep every snapshot within this span of the newest: 1y6m, 14d, 2d12h
    #[arg(long, value_name = "SPAN")]
    pub keep_within: Option<Within>,
    /// Keep the newest snapshot of each hour within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_hourly: Option<Within>,
    /// Keep the newest snapshot of each day within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_daily: Option<Within>,
    /// Keep the newest snapshot of each week within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_weekly: Option<Within>,
    /// Keep the newest snapshot of each month within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_monthly: Option<Within>,
    /// Keep the newest snapshot of each year within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_yearly: Option<Within>,
    /// Keep every snapshot with all these tags (repeat: any of the lists)
    #[arg(long, value_name = "TAG[,TAG]")]
    pub keep_tag: Vec<String>,
}

impl KeepArgs {
    /// The library's policy.
    pub fn policy(&self) -> KeepPolicy {
        let mut p = KeepPolicy {
            last: self.keep_last.unwrap_or_default(),
            within: self.keep_within,
            tags: self
                .keep_tag
                .iter()
                .map(|list| list.split(',').map(str::to_string).collect())
                .collect(),
            ..KeepPolicy::default()
        };
        let periods = [
            ("hourly", self.keep_hourly, self.keep_within_hourly),
            ("daily", self.keep_daily, self.keep_within_daily),
            ("weekly", self.keep_weekly, self.keep_within_weekly),
            ("monthly", self.keep_monthly, self.keep_within_monthly),
            ("yearly", self.keep_yearly, self.keep_within_yearly),
        ];
        for (name, count, within) in periods {
            if let Some(count) = count {
                p.set_period(name, count);
            }
            if let Some(within) = within {
                p.set_within_period(name, within);
            }
        }
        p
    }
}

// How a new repository chunks, compresses and spreads its data (a plain
// comment: a doc comment here would replace the help text of `init`).
#[derive(Args)]
pub struct InitArgs {
    /// Chunking mode
    #[arg(long, value_enum, default_value = "fastcdc")]
    pub chunker: ChunkerMode,
    /// FastCDC average chunk size (a power of two) [default: 64KiB]
    #[arg(long, value_parser = parse_size)]
    pub avg_size: Option<u32>,
    /// FastCDC minimum chunk size [default: avg / 4]
    #[arg(long, value_parser = parse_size)]
    pub min_size: Option<u32>,
    /// FastCDC maximum chunk size [default: avg * 4]
    #[arg(long, value_parser = parse_size)]
    pub max_size: Option<u32>,
    /// Fixed chunk size [default: 64KiB]
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u32>,
    /// Number of shards inside the repository
    #[arg(long, default_value_t = 4, conflicts_with = "shard")]
    pub shards: u32,
    /// A shard: a folder anywhere or s3://bucket/prefix (repeat for several)
    #[arg(long)]
    pub shard: Vec<String>,
    /// An object-store setting for the s3:// shards, such as
    /// endpoint=http://127.0.0.1:9000 or region=eu-west-1 (repeatable;
    /// overrides the AWS_* environment variables)
    #[arg(long = "shard-option", value_name = "KEY=VALUE", value_parser = parse_option)]
    pub shard_option: Vec<(String, String)>,
    /// Per-chunk compression
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
    /// zstd level: -7 (fastest, largest) to 19 (slowest, smallest)
    #[arg(long, default_value_t = dedup::DEFAULT_ZSTD_LEVEL, allow_negative_numbers = true)]
    pub compression_level: i32,
    /// Encryption (repokey: the first key's password from --password-file,
    /// $DEDUP_PASSWORD, $DEDUP_PASSWORD_COMMAND or a prompt)
    #[arg(long, value_enum, default_value = "none")]
    pub encryption: EncryptionArg,
    /// How long deriving the key from the password should take here, in
    /// milliseconds (Argon2id, 64 MiB; more is slower to guess)
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub kdf_time: u64,
    /// Pack target size
    #[arg(long, value_parser = parse_size, default_value = "16MiB")]
    pub pack_size: u32,
    /// Cut as the repository at REPO does (its chunker and sizes and,
    /// between two encrypted repositories, its keyed seed), so that
    /// copying between them needs no re-chunking
    #[arg(
        long,
        value_name = "REPO",
        conflicts_with_all = ["chunker", "avg_size", "min_size", "max_size", "size"]
    )]
    pub copy_chunker_params_from: Option<PathBuf>,
    /// The password of the repository --copy-chunker-params-from names
    /// (else $DEDUP_FROM_PASSWORD)
    #[arg(long, value_name = "FILE", requires = "copy_chunker_params_from")]
    pub from_password_file: Option<PathBuf>,
    /// JSON output
    #[arg(long)]
    pub json: bool,
}

impl InitArgs {
    /// The chunker these options ask for.
    pub fn chunker(&self) -> anyhow::Result<dedup::ChunkerConfig> {
        Ok(match self.chunker {
            ChunkerMode::Fixed => {
                if self.avg_size.is_some() || self.min_size.is_some() || self.max_size.is_some() {
                    anyhow::bail!(
                        "--avg-size, --min-size and --max-size are for --chunker fastcdc; use --size"
                    );
                }
                dedup::ChunkerConfig::fixed(self.size)
            }
            ChunkerMode::Fastcdc => {
                if self.size.is_some() {
                    anyhow::bail!("--size is for --chunker fixed; use --avg-size");
                }
                dedup::ChunkerConfig::fastcdc_with(self.avg_size, self.min_size, self.max_size)
            }
        })
    }

    /// The options a repository is made with, `chunker` decided.
    pub fn into_options(self, chunker: dedup::ChunkerConfig) -> dedup::InitOptions {
        dedup::InitOptions {
            chunker,
            compression: self.compression.into(),
            shard_locations: self.shard,
            shard_options: self.shard_option.into_iter().collect(),
            shards: self.shards,
            pack_size: self.pack_size,
            zstd_level: self.compression_level,
            encryption: match self.encryption {
                EncryptionArg::None => dedup::format::config::Encryption::None,
                EncryptionArg::Repokey => dedup::format::config::Encryption::Repokey,
            },
        }
    }
}

/// `KEY=VALUE`, for object-store settings.
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses `4096`, `16K`, `16KiB`, `1MiB`, `2G` (binary units).
pub fn parse_size(s: &str) -> Result<u32, String> {
    let n = parse_size64(s)?;
    u32::try_from(n).map_err(|_| format!("{s} is too large"))
}

/// [`parse_size`] for sizes of up to 16 EiB, with `T` too.
pub fn parse_size64(s: &str) -> Result<u64, String> {
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
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s} is too large"))
}

/// Parses `fastcdc:4K,64K` or `fixed:4K`: a mode and one or more sizes
/// (FastCDC's average; min and max at a quarter and four times it).
pub fn parse_chunkers(s: &str) -> Result<Vec<dedup::ChunkerConfig>, String> {
    let (mode, sizes) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not MODE:SIZES, like fastcdc:16K,64K or fixed:4K"))?;
    let make: fn(u32) -> dedup::ChunkerConfig = match mode {
        "fastcdc" => dedup::ChunkerConfig::fastcdc,
        "fixed" => |size| dedup::ChunkerConfig::fixed(Some(size)),
        other => return Err(format!("unknown chunker {other:?} (use fastcdc or fixed)")),
    };
    sizes
        .split(',')
        .map(|size| {
            let c = make(parse_size(size)?);
            c.validate().map_err(|e| e.to_string())?;
            Ok(c)
        })
        .collect()
}

/// Parses `10%` or `10` as 0.10.
pub fn parse_percent(s: &str) -> Result<f64, String> {
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
