//! The commands that store: `init`, `ingest`, `put`, `get`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use dedup::format::config::Encryption;
use dedup::{ChunkerConfig, InitOptions, Repository};

use crate::cli::InitArgs;
use crate::context::{show, Code, Context};

/// `dedup init`.
pub fn init(cx: &Context, args: InitArgs) -> Code {
    let chunker = match &args.copy_chunker_params_from {
        Some(from) => chunker_of(cx, from, args.from_password_file.as_deref())?,
        None => args.chunker()?,
    };
    let (json, kdf_time) = (args.json, args.kdf_time);
    let opts = args.into_options(chunker);
    let mut open = cx.options();
    if opts.encryption == Encryption::Repokey {
        open.password = Some(cx.new_password(None, true)?);
        open.key_params = Some(crate::cmd::key::tuned(kdf_time)?);
    }
    let repo = Repository::init_with(&cx.repo, &opts, &open)?;
    let created = Created {
        repository: repo.root(),
        config: repo.config(),
    };
    show(&created, json)?;
    Ok(0)
}

/// What `init` made.
#[derive(serde::Serialize)]
struct Created<'a> {
    repository: &'a Path,
    config: &'a dedup::Config,
}

impl std::fmt::Display for Created<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.config;
        writeln!(
            f,
            "created repository {} ({}, {} shards, compression {:?})",
            self.repository.display(),
            c.chunker,
            c.shards.len(),
            c.compression
        )
    }
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

/// `dedup ingest`: exit 1 when entries were skipped.
pub fn ingest(cx: &Context, from: &Source, json: bool, opts: &dedup::IngestOptions) -> Code {
    let repo = ingest_into(cx, opts.dry_run)?;
    let bar = cx.bar("ingest");
    let outcome = match from {
        Source::Paths(paths) => repo.ingest_with(paths, opts, &bar)?,
        Source::Stdin(name) => repo.ingest_stream(std::io::stdin(), name, opts, &bar)?,
    };
    drop(bar);
    show(&outcome, json)?;
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

/// The repository an ingest stores into, opened as ingests open it
/// (beside each other); the default repository is created on first use,
/// except by a dry run, which writes nothing.
fn ingest_into(cx: &Context, dry_run: bool) -> anyhow::Result<Repository> {
    match cx.shared_writer() {
        Err(e)
            if matches!(e.downcast_ref(), Some(dedup::Error::NoRepository(_)))
                && cx.is_default
                && !dry_run =>
        {
            let repo = Repository::init_with(&cx.repo, &InitOptions::default(), &cx.options())?;
            if !cx.quiet {
                let at = cx.repo.display();
                eprintln!("dedup: created the default repository at {at}");
            }
            Ok(repo)
        }
        other => other,
    }
}

/// `dedup put FILE`: prints the blob's id.
pub fn put(cx: &Context, file: &Path, json: bool) -> Code {
    let reading = || format!("reading {}", file.display());
    let len = std::fs::metadata(file).with_context(reading)?.len();
    if len > dedup::engine::MAX_BLOB {
        bail!(
            "{}: {len} bytes is more than put takes (1 GiB); store it with `dedup ingest`",
            file.display()
        );
    }
    let repo = cx.shared_writer()?;
    let data = std::fs::read(file).with_context(reading)?;
    let put = Put {
        id: repo.put(&data)?,
        bytes: data.len(),
    };
    show(&put, json)?;
    Ok(0)
}

/// What `put` stored: people see the id alone.
#[derive(serde::Serialize)]
struct Put {
    id: dedup::ChunkId,
    bytes: usize,
}

impl std::fmt::Display for Put {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.id)
    }
}

/// `dedup get ID`: the blob's bytes on stdout.
pub fn get(cx: &Context, id: &str) -> Code {
    let data = cx.reader()?.get(&id.parse()?)?;
    std::io::stdout().lock().write_all(&data)?;
    Ok(0)
}
