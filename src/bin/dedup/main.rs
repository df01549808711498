//! The `dedup` command line: parse arguments, dispatch to one function per
//! command (`commands.rs`), and map errors to exit codes (0 ok, 1 problems
//! found, 2 error). Everything else is library code.

mod cli;
mod cmd;
mod context;
mod html;
mod mount;
mod password;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, RepairWhat, ShardAction};
use cmd::{browse, insight, key, maintain, read, shard, store};
use context::Context;

/// Runs one command; the exit code it asks for, or the error that ended it.
fn run(cli: Cli) -> anyhow::Result<u8> {
    let cx = Context::new(&cli)?;
    match cli.command {
        Command::Init(args) => store::init(&cx, args),
        Command::Ingest(args) => store::ingest(&cx, &args.source()?, args.json, &args.options()?),
        Command::Snapshots { sizes, json, .. } => read::snapshots(&cx, sizes, json),
        Command::Restore(args) => {
            read::restore(&cx, &args.snapshot, &args.dest, &args.options()?, args.json)
        }
        Command::Ls {
            target,
            long,
            recursive,
            json,
            ..
        } => browse::ls(&cx, &target, long, recursive, json),
        Command::Cat { target, .. } => browse::cat(&cx, &target),
        Command::Mount { dir } => mount::mount(&cx, &dir),
        Command::Diff { a, b, json, .. } => browse::diff(&cx, &a, &b, json),
        Command::Find {
            pattern,
            snapshots,
            json,
            ..
        } => browse::find(&cx, &pattern, &snapshots, json),
        Command::Report {
            snapshot,
            by_dir,
            depth,
            html,
            json,
            ..
        } => insight::report(
            &cx,
            snapshot.as_deref(),
            by_dir.then_some(depth),
            html.as_deref(),
            json,
        ),
        Command::Explain {
            target,
            limit,
            json,
            ..
        } => insight::explain(&cx, &target, limit, json),
        Command::Key { action, json } => key::run(&cx, &action, json),
        Command::Estimate(args) => insight::estimate(&cx, &args.paths, &args.options(), args.json),
        Command::Verify {
            read_data,
            read_data_subset,
            json,
        } => maintain::verify(&cx, read_data, read_data_subset, json),
        Command::Forget {
            snapshots,
            keep,
            group_by,
            dry_run,
            prune,
            json,
            ..
        } => {
            let policy = keep.policy();
            let how = maintain::ForgetHow {
                group_by,
                dry_run,
                prune,
                json,
            };
            maintain::forget(&cx, &snapshots, &policy, &how)
        }
        Command::Gc { dry_run, json } => maintain::gc(&cx, dry_run, json),
        Command::Compact { json } => maintain::compact(&cx, json),
        Command::Repair {
            what: RepairWhat::Index,
            json,
        } => maintain::repair_index(&cx, json),
        Command::Repair {
            what: RepairWhat::Packs,
            json,
        } => maintain::repair_packs(&cx, json),
        Command::Repair {
            what: RepairWhat::History,
            json,
        } => maintain::repair_history(&cx, json),
        Command::Shard { action, json } => match action {
            ShardAction::List => shard::shard_list(&cx, json),
            ShardAction::Add {
                location,
                weight,
                options,
            } => shard::shard_add(&cx, &location, weight, options, json),
            ShardAction::SetWeight { id, weight } => shard::shard_set_weight(&cx, id, weight, json),
            ShardAction::Remove { id, lost } => shard::shard_remove(&cx, id, lost, json),
        },
        Command::Rebalance { dry_run, json } => shard::rebalance(&cx, dry_run, json),
        Command::Put { file, json } => store::put(&cx, &file, json),
        Command::Get { id } => store::get(&cx, &id),
    }
}

/// True when `err` is a write to a closed pipe (`dedup snapshots | head`):
/// the reader has what it wanted, so that is no error.
fn is_closed_pipe(err: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|cause| {
        let io = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        // JSON is written by serde, which wraps the write's error.
        let json = cause
            .downcast_ref::<serde_json::Error>()
            .and_then(serde_json::Error::io_error_kind);
        io == broken || json == broken
    })
}

/// The error and its causes on one line, each cause once: the library's
/// messages already include the OS error they wrap, so a cause whose text
/// ends the message so far is not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dedup: error: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}
