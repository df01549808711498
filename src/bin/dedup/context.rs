//! What every command shares: where the repository is, how to open it
//! (password, lock wait, cache), how to print (`show`: a report's `Display`
//! for people, serde for `--json`), and the progress bar. Everything goes
//! to stdout through `write!`, so a closed pipe is an error `main` can
//! recognise, never a panic.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dedup::format::snapshot::SnapshotFilter;
use dedup::{Progress, Repository};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Cli;

/// An exit code: 0 all well, 1 the command ran but found problems.
pub(crate) type Code = anyhow::Result<u8>;

/// What every command shares: where the repository is and how to talk.
pub struct Context {
    pub(crate) repo: PathBuf,
    /// No `--repo` or `$DEDUP_REPO` was given: `ingest` may create it.
    pub(crate) is_default: bool,
    pub(crate) quiet: bool,
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
    pub(crate) fn shared_writer(&self) -> anyhow::Result<Repository> {
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
    pub(crate) quiet: bool,
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
