//! The commands that tell people where their bytes went: `report` (with
//! `--by-dir` and `--html`), `snapshots --sizes`' figures, `explain` and
//! `estimate`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cmd::browse::split_target;
use crate::context::{print_json, show, Code, Context};

/// `dedup report [SNAPSHOT] [--by-dir [--depth N]] [--html FILE]`.
pub fn report(
    cx: &Context,
    snapshot: Option<&str>,
    by_dir: Option<u32>,
    html: Option<&Path>,
    json: bool,
) -> Code {
    let repo = cx.reader()?;
    match (snapshot, by_dir) {
        (Some(s), Some(depth)) => {
            let id = cx.resolve(&repo, s)?.0;
            show(&repo.usage()?.by_dir(&id, depth)?, json)?;
        }
        (Some(s), None) => show(&repo.snapshot_report(&cx.resolve(&repo, s)?.0)?, json)?,
        (None, _) => show(&whole_report(cx, &repo, html, json)?, json)?,
    }
    Ok(0)
}

/// The report on the whole repository; with `--json` or `--html`, what
/// each snapshot costs too, and with `--html` the page written.
fn whole_report(
    cx: &Context,
    repo: &dedup::Repository,
    html: Option<&Path>,
    json: bool,
) -> anyhow::Result<dedup::Report> {
    let mut report = repo.report()?;
    if !json && html.is_none() {
        return Ok(report);
    }
    let usage = repo.usage()?;
    report.snapshot_costs = usage.costs();
    if let Some(file) = html {
        let page = crate::html::page(repo, &report, &usage)?;
        std::fs::write(file, page).with_context(|| format!("cannot write {}", file.display()))?;
        if !cx.quiet() {
            eprintln!("wrote {}", file.display());
        }
    }
    Ok(report)
}

/// `dedup explain SNAPSHOT:PATH`.
pub fn explain(cx: &Context, target: &str, limit: usize, json: bool) -> Code {
    let repo = cx.reader()?;
    let (spec, path) = split_target(target);
    if path.is_empty() {
        anyhow::bail!("explain needs SNAPSHOT:PATH, naming a file (got {target:?})");
    }
    let id = cx.resolve(&repo, spec)?.0;
    let usage = repo.usage()?;
    show(&repo.explain(&usage, &id, path, limit)?, json)?;
    Ok(0)
}

/// `dedup estimate DIR...`.
pub fn estimate(
    cx: &Context,
    paths: &[PathBuf],
    opts: &dedup::ops::insight::estimate::EstimateOptions,
    json: bool,
) -> Code {
    let bar = cx.bar("read");
    let estimate = dedup::ops::insight::estimate::estimate(paths, opts, &bar)?;
    drop(bar);
    if json {
        print_json(&estimate)?;
    } else {
        let mut out = std::io::stdout().lock();
        write!(out, "{estimate}")?;
        for s in &estimate.skipped {
            writeln!(out, "skipped: {s}")?;
        }
    }
    Ok(0)
}
