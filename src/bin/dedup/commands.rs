//! One function per command: open the repository the way the command
//! needs, call the library, print its report. Human output is the reports'
//! `Display`; `--json` prints them with serde. Everything goes to stdout
//! through `writeln!`, so a closed pipe is an error `main` can recognise,
//! never a panic.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use dedup::format::snapshot::SnapshotFilter;
use dedup::ring::ShardId;
use dedup::units::human_bytes;
use dedup::{ChunkerConfig, Compression, InitOptions, Mode, Progress, Repository};
use indicatif::{ProgressBar, ProgressStyle};

use crate::browse::split_target;
use crate::cli::{ChunkerMode, Cli, CompressionArg, InitArgs};

/// An exit code: 0 all well, 1 the command ran but found problems.
pub(crate) type Code = anyhow::Result<u8>;

/// What every command shares: where the repository is and how to talk.
pub struct Context {
    repo: PathBuf,
    /// No `--repo` or `$DEDUP_REPO` was given: `ingest` may create it.
    is_default: bool,
    quiet: bool,
    wait_lock: Duration,
    /// How every command opens it (the cache folder; the password is
    /// added by [`options`](Self::options)).
    open: dedup::OpenOptions,
    /// The password given, or asked for once on a terminal.
    password: std::cell::RefCell<Option<dedup::engine::keys::Password>>,
    /// The command's `--host`, `--tag` and `--path` (what `latest` means).
    pub(crate) filter: SnapshotFilter,
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let (repo, is_default) = match &cli.repo {
            Some(p) => (p.clone(), false),
            None => (default_repo()?, true),
        };
        Ok(Context {
            repo,
            is_default,
            quiet: cli.quiet,
            wait_lock: Duration::from_secs(cli.wait_lock),
            open: dedup::OpenOptions {
                cache_dir: cli.cache.clone(),
                ..Default::default()
            },
            password: std::cell::RefCell::new(crate::password::given(
                cli.password_file.as_deref(),
            )?),
            filter: cli.command.filter(),
        })
    }

    /// The options every open starts from, with the password if known.
    pub(crate) fn options(&self) -> dedup::OpenOptions {
        dedup::OpenOptions {
            password: self.password.borrow().clone(),
            ..self.open.clone()
        }
    }

    /// Runs `open` with the options; when the repository turns out to be
    /// encrypted and no password was given, takes it from the environment
    /// (`$DEDUP_PASSWORD`, `$DEDUP_PASSWORD_COMMAND`) or asks for it on
    /// the terminal (once), and runs it again. A plain repository never
    /// gets a password: the library refuses one given by `--password-file`,
    /// and one in the environment is not even read.
    pub(crate) fn with_password<T>(
        &self,
        open: impl Fn(&dedup::OpenOptions) -> dedup::Result<T>,
    ) -> anyhow::Result<T> {
        match open(&self.options()) {
            Err(dedup::Error::NoPassword) if self.password.borrow().is_none() => {
                let password = if let Some(password) = crate::password::from_environment()? {
                    password
                } else {
                    let question = format!("password of {}: ", self.repo.display());
                    crate::password::prompt(&question, false)?
                };
                *self.password.borrow_mut() = Some(password);
                Ok(open(&self.options())?)
            }
            other => Ok(other?),
        }
    }

    /// The password for a new key (init, key add, key passwd): the one
    /// given (`--new-password-file`, else the usual sources at init), or
    /// asked twice on the terminal.
    pub(crate) fn new_password(
        &self,
        file: Option<&Path>,
        at_init: bool,
    ) -> anyhow::Result<dedup::engine::keys::Password> {
        if let Some(file) = file {
            return crate::password::given(Some(file))?
                .context("the new password file gave no password");
        }
        if at_init {
            if let Some(p) = self.password.borrow().clone() {
                return Ok(p);
            }
            if let Some(p) = crate::password::from_environment()? {
                return Ok(p);
            }
        }
        Ok(crate::password::prompt("new password: ", true)?)
    }

    /// Whether progress and warnings stay off stderr.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// The snapshot `spec` names (`latest`: the newest the filter passes).
    pub(crate) fn resolve(
        &self,
        repo: &Repository,
        spec: &str,
    ) -> dedup::Result<(dedup::SnapshotId, dedup::SnapshotRecord)> {
        repo.resolve_snapshot_in(spec, &self.filter)
    }

    /// Opens the repository for reading, beside any writer.
    pub(crate) fn reader(&self) -> anyhow::Result<Repository> {
        self.with_password(|opts| {
            let opts = dedup::OpenOptions {
                read_only: true,
                ..opts.clone()
            };
            Repository::open_with(&self.repo, &opts)
        })
        .inspect(|repo| self.warn(repo))
    }

    /// Opens the repository for maintenance (its lock alone), waiting up
    /// to `--wait-lock` for other writers to finish.
    pub(crate) fn writer(&self) -> anyhow::Result<Repository> {
        self.open_writer(false)
    }

    /// Opens the repository as one writer of many (ingest, put), waiting
    /// up to `--wait-lock` for maintenance to finish.
    fn shared_writer(&self) -> anyhow::Result<Repository> {
        self.open_writer(true)
    }

    fn open_writer(&self, shared: bool) -> anyhow::Result<Repository> {
        let deadline = Instant::now() + self.wait_lock;
        let opened = self.with_password(|opts| {
            let opts = dedup::OpenOptions {
                shared,
                ..opts.clone()
            };
            let mut told = false;
            loop {
                match Repository::open_with(&self.repo, &opts) {
                    Err(dedup::Error::Locked { holder, .. }) if Instant::now() < deadline => {
                        if !told && !self.quiet {
                            eprintln!(
                                "dedup: {} is locked by {holder}; waiting up to {} s",
                                self.repo.display(),
                                self.wait_lock.as_secs()
                            );
                            told = true;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    other => return other,
                }
            }
        });
        opened.inspect(|repo| self.warn(repo))
    }

    /// What an opened repository's user must hear, whatever `--quiet`
    /// says: the snapshot records it could not read, what the store lost
    /// or got back against what this machine saw, and a password in the
    /// environment that a plain repository did not use.
    fn warn(&self, repo: &Repository) {
        for record in repo.unreadable_records() {
            eprintln!("dedup: warning: {record}");
        }
        for line in dedup::engine::describe_evidence(&repo.evidence()) {
            eprintln!("dedup: warning: {line}");
        }
        if repo.config().encryption.is_none() {
            if let Some(name) = crate::password::in_environment() {
                eprintln!(
                    "dedup: warning: ${name} is set, but {} is not encrypted: no password was used",
                    self.repo.display()
                );
            }
        }
    }

    pub(crate) fn bar(&self, verb: &str) -> Bar {
        Bar::new(self.quiet, verb)
    }
}

fn default_repo() -> anyhow::Result<PathBuf> {
    let base =
        dirs::data_dir().context("no data folder for this user; pass --repo or set DEDUP_REPO")?;
    Ok(base.join("dedup").join("repo"))
}

/// Prints `value` as pretty JSON, or as its `Display`.
pub(crate) fn show(
    value: &(impl serde::Serialize + std::fmt::Display),
    json: bool,
) -> anyhow::Result<()> {
    if json {
        print_json(value)
    } else {
        write!(std::io::stdout().lock(), "{value}")?;
        Ok(())
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Progress on stderr: a bar when stderr is a terminal, warnings always
/// (unless `--quiet`).
pub(crate) struct Bar {
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
}

impl Drop for Bar {
    fn drop(&mut self) {
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
    fn add_total(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(bytes);
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

/// `dedup init`.
pub fn init(cx: &Context, args: InitArgs) -> Code {
    let json = args.json;
    let chunker = if let Some(from) = &args.copy_chunker_params_from {
        chunker_of(cx, from, args.from_password_file.as_deref())?
    } else {
        chunker_from_args(&args)?
    };
    let opts = InitOptions {
        chunker,
        compression: match args.compression {
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        },
        shard_locations: args.shard,
        shard_options: args.shard_option.into_iter().collect(),
        shards: args.shards,
        pack_size: args.pack_size,
        zstd_level: args.compression_level,
        encryption: match args.encryption {
            crate::cli::EncryptionArg::None => dedup::format::config::Encryption::None,
            crate::cli::EncryptionArg::Repokey => dedup::format::config::Encryption::Repokey,
        },
    };
    let mut open = cx.options();
    if opts.encryption == dedup::format::config::Encryption::Repokey {
        open.password = Some(cx.new_password(None, true)?);
        open.key_params = Some(crate::keycmd::tuned(args.kdf_time)?);
    }
    let repo = Repository::init_with(&cx.repo, &opts, &open)?;
    let config = repo.config();
    if json {
        print_json(&serde_json::json!({ "repository": repo.root(), "config": config }))?;
        return Ok(0);
    }
    writeln!(
        std::io::stdout().lock(),
        "created repository {} ({}, {} shards, compression {:?})",
        repo.root().display(),
        config.chunker,
        config.shards.len(),
        config.compression
    )?;
    Ok(0)
}

/// The chunker `init`'s options ask for.
fn chunker_from_args(args: &InitArgs) -> anyhow::Result<ChunkerConfig> {
    Ok(match args.chunker {
        ChunkerMode::Fixed => {
            if args.avg_size.is_some() || args.min_size.is_some() || args.max_size.is_some() {
                bail!(
                    "--avg-size, --min-size and --max-size are for --chunker fastcdc; use --size"
                );
            }
            ChunkerConfig::fixed(args.size)
        }
        ChunkerMode::Fastcdc => {
            if args.size.is_some() {
                bail!("--size is for --chunker fixed; use --avg-size");
            }
            ChunkerConfig::fastcdc_with(args.avg_size, args.min_size, args.max_size)
        }
    })
}

/// The chunker of the repository at `from` (its password from `file`, else
/// `$DEDUP_FROM_PASSWORD`, when it is encrypted).
fn chunker_of(cx: &Context, from: &Path, file: Option<&Path>) -> anyhow::Result<ChunkerConfig> {
    let password = match crate::password::given(file)? {
        Some(p) => Some(p),
        None => std::env::var_os("DEDUP_FROM_PASSWORD")
            .map(|p| dedup::engine::keys::Password::new(p.into_encoded_bytes())),
    };
    let opts = dedup::OpenOptions {
        password,
        read_only: true,
        ..cx.options()
    };
    match Repository::read_config(from, &opts) {
        Ok(config) => Ok(config.chunker),
        Err(dedup::Error::NoPassword) => bail!(
            "{} is encrypted: give its password with --from-password-file or $DEDUP_FROM_PASSWORD",
            from.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// What `ingest` stores.
pub enum Source<'a> {
    Paths(&'a [PathBuf]),
    /// Standard input, as one file of this name.
    Stdin(&'a str),
}

/// `dedup ingest`; creates the default repository on first use (not in
/// a dry run, which writes nothing; it opens the repository as ingests
/// do, beside them, for this machine's file cache).
pub fn ingest(cx: &Context, from: &Source, json: bool, opts: &dedup::IngestOptions) -> Code {
    let repo = {
        match cx.shared_writer() {
            Err(e)
                if matches!(e.downcast_ref(), Some(dedup::Error::NoRepository(_)))
                    && cx.is_default
                    && !opts.dry_run =>
            {
                let repo = Repository::init_with(&cx.repo, &InitOptions::default(), &cx.options())?;
                if !cx.quiet {
                    eprintln!(
                        "dedup: created the default repository at {}",
                        cx.repo.display()
                    );
                }
                repo
            }
            other => other?,
        }
    };
    let bar = cx.bar("ingest");
    let outcome = match from {
        Source::Paths(paths) => repo.ingest_with(paths, opts, &bar)?,
        Source::Stdin(name) => repo.ingest_stream(std::io::stdin(), name, opts, &bar)?,
    };
    drop(bar);
    if json {
        print_json(&serde_json::json!({
            "id": outcome.id,
            "record": outcome.record,
            "dry_run": outcome.dry_run,
        }))?;
    } else {
        write!(std::io::stdout().lock(), "{outcome}")?;
    }
    let skipped = &outcome.record.summary.skipped;
    if skipped.is_empty() {
        return Ok(0);
    }
    eprintln!("dedup: {} entries were skipped:", skipped.len());
    for sk in skipped {
        eprintln!("  {}: {}", sk.path, sk.reason);
    }
    Ok(1)
}

/// `dedup snapshots`: a table, oldest first; with `sizes`, what each
/// holds alone too.
pub fn snapshots(cx: &Context, sizes: bool, json: bool) -> Code {
    let repo = cx.reader()?;
    let snaps = repo.snapshots_matching(&cx.filter)?;
    let costs: std::collections::HashMap<
        dedup::SnapshotId,
        dedup::ops::insight::usage::SnapshotCost,
    > = if sizes {
        let usage = repo.usage()?;
        usage.costs().into_iter().map(|c| (c.id, c)).collect()
    } else {
        std::collections::HashMap::default()
    };
    if json {
        let list: Vec<_> = snaps
            .iter()
            .map(|(id, r)| match costs.get(id) {
                Some(cost) => serde_json::json!({ "id": id, "record": r, "cost": cost }),
                None => serde_json::json!({ "id": id, "record": r }),
            })
            .collect();
        print_json(&list)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    let alone = if sizes { "  exclusive" } else { "" };
    writeln!(
        out,
        "{:<16}  {:<20}  {:<12}  {:<12}  {:>10}  {:>10}{alone}  paths",
        "id", "time", "host", "tags", "size", "added"
    )?;
    for (id, r) in &snaps {
        let alone = costs
            .get(id)
            .map(|c| format!("  {:>9}", human_bytes(c.exclusive_stored_bytes)))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<16}  {:<20}  {:<12}  {:<12}  {:>10}  {:>10}{alone}  {}",
            &id.to_hex()[..16],
            r.time,
            r.hostname,
            r.tags.join(","),
            human_bytes(r.summary.logical_bytes),
            human_bytes(r.summary.new_stored_bytes),
            r.paths.join(" ")
        )?;
    }
    if sizes {
        writeln!(
            out,
            "added: stored on disk by its ingest; exclusive: on disk, held by no other snapshot \
             (what forget of it alone, then gc, would free)"
        )?;
    }
    Ok(0)
}

/// `dedup restore`: exit 1 when some file could not be restored (or
/// read back as it should be).
pub fn restore(
    cx: &Context,
    target: &str,
    dest: &Path,
    opts: &dedup::RestoreOptions,
    json: bool,
) -> Code {
    let repo = cx.reader()?;
    let (snapshot, path) = split_target(target);
    let (id, _) = cx.resolve(&repo, snapshot)?;
    let outcome = repo.restore_with(&id, path, dest, opts, &cx.bar("restore"))?;
    let mut out = std::io::stdout().lock();
    if json {
        print_json(&serde_json::json!({
            "snapshot": id,
            "destination": dest,
            "files": outcome.files,
            "bytes": outcome.bytes,
            "dirs": outcome.dirs,
            "symlinks": outcome.symlinks,
            "hardlinks": outcome.hardlinks,
            "specials": outcome.specials,
            "kept": outcome.kept,
            "left_out": outcome.left_out,
            "verified": outcome.verified,
            "warnings": outcome.warnings,
            "failed": outcome.failed,
        }))?;
    } else {
        writeln!(
            out,
            "restored snapshot {} into {}: {} files ({}), {} folders, {} symlinks",
            &id.to_hex()[..16],
            dest.display(),
            outcome.files,
            human_bytes(outcome.bytes),
            outcome.dirs,
            outcome.symlinks
        )?;
        if outcome.hardlinks + outcome.specials > 0 {
            writeln!(
                out,
                "  also {} hard links and {} FIFOs and devices",
                outcome.hardlinks, outcome.specials
            )?;
        }
        if outcome.kept > 0 {
            writeln!(out, "  kept as they were: {} entries", outcome.kept)?;
        }
        if outcome.left_out > 0 {
            writeln!(
                out,
                "  left out by --include/--exclude: {} entries",
                outcome.left_out
            )?;
        }
        if opts.verify {
            writeln!(out, "  read back and verified: {} files", outcome.verified)?;
        }
    }
    if outcome.failed.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "dedup: {} files or folders could not be restored:",
        outcome.failed.len()
    );
    for f in &outcome.failed {
        eprintln!("  {f}");
    }
    Ok(1)
}

/// `dedup verify`: exit 1 when something is wrong.
pub fn verify(cx: &Context, read_data: bool, subset: Option<f64>, json: bool) -> Code {
    let repo = cx.reader()?;
    let share = if read_data {
        1.0
    } else {
        subset.unwrap_or(0.0)
    };
    let report = repo.verify(share, &cx.bar("verify"))?;
    show(&report, json)?;
    Ok(u8::from(!report.is_clean()))
}

/// How `forget` runs, beside what it forgets.
pub struct ForgetHow {
    pub group_by: dedup::format::snapshot::GroupBy,
    pub dry_run: bool,
    pub prune: bool,
    pub json: bool,
}

/// `forget --json`.
#[derive(serde::Serialize)]
struct ForgetReport {
    dry_run: bool,
    /// The policy in words (absent when snapshots were named).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    /// Each group's decisions, newest first (empty when snapshots were named).
    groups: Vec<dedup::policy::GroupDecisions>,
    /// The snapshots forgotten (or, in a dry run, that would be).
    forgotten: Vec<dedup::SnapshotId>,
    /// What `--prune` reclaimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    gc: Option<dedup::GcReport>,
}

/// `dedup forget`: named snapshots, or those a policy does not keep.
pub fn forget(
    cx: &Context,
    specs: &[String],
    policy: &dedup::policy::KeepPolicy,
    how: &ForgetHow,
) -> Code {
    if !specs.is_empty() && !policy.is_empty() {
        bail!("give snapshots to forget or a --keep-* policy, not both");
    }
    if specs.is_empty() && policy.is_empty() {
        bail!("nothing to forget: name snapshots, or give a policy such as --keep-daily 7");
    }
    let repo = if how.dry_run {
        cx.reader()?
    } else {
        cx.writer()?
    };
    let mut report = ForgetReport {
        dry_run: how.dry_run,
        policy: None,
        groups: Vec::new(),
        forgotten: Vec::new(),
        gc: None,
    };
    if specs.is_empty() {
        report.policy = Some(policy.to_string());
        report.groups =
            repo.forget_by_policy(&cx.filter, how.group_by, policy, mode(how.dry_run))?;
        report.forgotten = report
            .groups
            .iter()
            .flat_map(|g| &g.snapshots)
            .filter(|d| !d.keep)
            .map(|d| d.id)
            .collect();
    } else {
        // A snapshot whose record cannot be read is named by its id.
        report.forgotten = specs
            .iter()
            .map(|s| match cx.resolve(&repo, s) {
                Ok((id, _)) => Ok(id),
                Err(e @ dedup::Error::UnknownSnapshot(_)) => repo.unreadable_record(s).ok_or(e),
                Err(e) => Err(e),
            })
            .collect::<dedup::Result<Vec<_>>>()?;
        if !how.dry_run {
            repo.forget(&report.forgotten)?;
        }
    }
    if how.prune && !how.dry_run {
        report.gc = Some(repo.gc(Mode::Apply, &cx.bar("gc"))?);
    }
    if how.json {
        print_json(&report)?;
    } else {
        print_forget(&report)?;
    }
    Ok(report
        .gc
        .as_ref()
        .map_or(0, |g| u8::from(!g.unreadable_packs.is_empty())))
}

/// `forget`'s report for people: per group, each snapshot kept (and why)
/// or removed; then what was done.
fn print_forget(report: &ForgetReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if let Some(policy) = &report.policy {
        writeln!(out, "applying the policy: {policy}")?;
    }
    for group in &report.groups {
        let kept = group.snapshots.iter().filter(|d| d.keep).count();
        writeln!(
            out,
            "\n{}: keep {kept}, remove {}",
            group.group,
            group.snapshots.len() - kept
        )?;
        for d in &group.snapshots {
            let verdict = if d.keep { "keep  " } else { "remove" };
            let line = format!(
                "  {verdict}  {}  {}  {}",
                &d.id.to_hex()[..16],
                d.time,
                d.reasons.join(", ")
            );
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    if report.policy.is_some() {
        writeln!(out)?;
    }
    let n = report.forgotten.len();
    let snapshots = if n == 1 { "snapshot" } else { "snapshots" };
    if report.dry_run {
        writeln!(
            out,
            "would forget {n} {snapshots} (dry run: nothing changed)"
        )?;
        return Ok(());
    }
    if report.policy.is_none() {
        for id in &report.forgotten {
            writeln!(out, "forgot snapshot {id}")?;
        }
    } else {
        writeln!(out, "forgot {n} {snapshots}")?;
    }
    match &report.gc {
        Some(gc) => write!(out, "{gc}")?,
        None if n > 0 => writeln!(out, "`dedup gc` reclaims the space they alone used")?,
        None => {}
    }
    Ok(())
}

fn mode(dry_run: bool) -> Mode {
    if dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    }
}

/// `dedup gc`: exit 1 when it had to pass over packs it could not read.
pub fn gc(cx: &Context, dry_run: bool, json: bool) -> Code {
    let report = cx.writer()?.gc(mode(dry_run), &cx.bar("gc"))?;
    show(&report, json)?;
    Ok(u8::from(!report.unreadable_packs.is_empty()))
}

/// `dedup repair index`: exit 1 when something could not be used as it was.
pub fn repair_index(cx: &Context, json: bool) -> Code {
    let (_repo, report) = cx.with_password(|opts| Repository::repair_index_with(&cx.repo, opts))?;
    show(&report, json)?;
    Ok(u8::from(!report.is_clean()))
}

/// `dedup repair packs`: exit 1 when something was dropped.
pub fn repair_packs(cx: &Context, json: bool) -> Code {
    let report = cx.writer()?.repair_packs(&cx.bar("read packs"))?;
    show(&report, json)?;
    Ok(u8::from(!report.is_clean()))
}

/// `dedup repair history`.
pub fn repair_history(cx: &Context, json: bool) -> Code {
    let report = cx.writer()?.repair_history()?;
    show(&report, json)?;
    Ok(0)
}

/// `dedup shard list`.
pub fn shard_list(cx: &Context, json: bool) -> Code {
    let shards = cx.reader()?.report()?.shards;
    if json {
        print_json(&shards)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for s in shards {
        let options: Vec<String> = s.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("  ({})", options.join(", "))
        };
        writeln!(
            out,
            "{}  weight {:>3}  {:>10}  {:>8} chunks  {:5.1}% (target {:5.1}%)  {}{options}",
            s.id,
            s.weight,
            human_bytes(s.bytes),
            s.chunks,
            s.share * 100.0,
            s.target_share * 100.0,
            s.path,
        )?;
        if let Some(why) = &s.unavailable {
            writeln!(out, "    unavailable: {why}")?;
        }
    }
    Ok(0)
}

/// `dedup shard add`.
pub fn shard_add(
    cx: &Context,
    location: &str,
    weight: u32,
    options: Vec<(String, String)>,
    json: bool,
) -> Code {
    let mut repo = cx.writer()?;
    let id = repo.add_shard(location, weight, options.into_iter().collect())?;
    let shard = repo.config().shards.iter().find(|s| s.id == id);
    let shown = shard.map_or_else(|| location.to_string(), |s| s.location(repo.root()));
    if json {
        print_json(&serde_json::json!({ "shard": id.0, "location": shown, "weight": weight }))?;
        return Ok(0);
    }
    writeln!(
        std::io::stdout().lock(),
        "added shard {id} at {shown} (run `dedup rebalance` to move chunks onto it)"
    )?;
    Ok(0)
}

/// `dedup shard set-weight`.
pub fn shard_set_weight(cx: &Context, id: u32, weight: u32, json: bool) -> Code {
    cx.writer()?.set_shard_weight(ShardId(id), weight)?;
    if json {
        print_json(&serde_json::json!({ "shard": id, "weight": weight }))?;
        return Ok(0);
    }
    writeln!(
        std::io::stdout().lock(),
        "shard {id:02} now has weight {weight} (run `dedup rebalance` to move chunks)"
    )?;
    Ok(0)
}

/// `dedup shard remove`.
pub fn shard_remove(cx: &Context, id: u32, lost: bool, json: bool) -> Code {
    if lost {
        let report = cx.writer()?.remove_lost_shard(ShardId(id))?;
        show(&report, json)?;
        return Ok(0);
    }
    let report = cx.writer()?.remove_shard(ShardId(id), &cx.bar("drain"))?;
    if json {
        print_json(&report)?;
        return Ok(0);
    }
    writeln!(
        std::io::stdout().lock(),
        "removed shard {id:02}: moved {} chunks ({}) to the others",
        report.moved_objects,
        human_bytes(report.moved_bytes)
    )?;
    Ok(0)
}

/// `dedup rebalance`: people see the plan first (only pack trailers are
/// read), then the moves; JSON gets one or the other.
pub fn rebalance(cx: &Context, dry_run: bool, json: bool) -> Code {
    let repo = cx.writer()?;
    if dry_run || !json {
        let plan = repo.rebalance(Mode::DryRun, &cx.bar("plan"))?;
        show(&plan, json)?;
        if dry_run || plan.moved_objects == 0 {
            return Ok(0);
        }
    }
    let done = repo.rebalance(Mode::Apply, &cx.bar("rebalance"))?;
    show(&done, json)?;
    Ok(0)
}

/// `dedup put FILE`: prints the blob's id.
pub fn put(cx: &Context, file: &Path, json: bool) -> Code {
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if len > dedup::engine::MAX_BLOB {
        bail!(
            "{}: {len} bytes is more than put takes (1 GiB); store it with `dedup ingest`",
            file.display()
        );
    }
    let repo = cx.shared_writer()?;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let id = repo.put(&data)?;
    if json {
        print_json(&serde_json::json!({ "id": id, "bytes": data.len() }))?;
        return Ok(0);
    }
    writeln!(std::io::stdout().lock(), "{id}")?;
    Ok(0)
}

/// `dedup get ID`: the blob's bytes on stdout.
pub fn get(cx: &Context, id: &str) -> Code {
    let data = cx.reader()?.get(&id.parse()?)?;
    std::io::stdout().lock().write_all(&data)?;
    Ok(0)
}
