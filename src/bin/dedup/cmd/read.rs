//! The commands that read snapshots back: `snapshots` and `restore`
//! (`ls`, `cat`, `find` and `diff` are in `browse`).

use std::collections::HashMap;
use std::path::Path;

use dedup::ops::insight::usage::SnapshotCost;
use dedup::units::human_bytes;
use dedup::{SnapshotId, SnapshotRecord};

use crate::cmd::browse::split_target;
use crate::context::{show, Code, Context};

/// `dedup snapshots`: a table, oldest first; with `sizes`, what each
/// holds alone too.
pub fn snapshots(cx: &Context, sizes: bool, json: bool) -> Code {
    let repo = cx.reader()?;
    let mut costs: HashMap<SnapshotId, SnapshotCost> = HashMap::new();
    if sizes {
        costs = repo
            .usage()?
            .costs()
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
    }
    let rows = repo
        .snapshots_matching(&cx.filter)?
        .into_iter()
        .map(|(id, record)| Row {
            cost: costs.remove(&id),
            id,
            record,
        })
        .collect();
    show(&Listing { rows, sizes }, json)?;
    Ok(0)
}

/// `snapshots`' table; as JSON, the list of its rows.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Listing {
    rows: Vec<Row>,
    #[serde(skip)]
    sizes: bool,
}

/// One snapshot: its id, its record, and (with `--sizes`) what it alone
/// holds.
#[derive(serde::Serialize)]
struct Row {
    id: SnapshotId,
    record: SnapshotRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<SnapshotCost>,
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let alone = if self.sizes { "  exclusive" } else { "" };
        writeln!(
            f,
            "{:<16}  {:<20}  {:<12}  {:<12}  {:>10}  {:>10}{alone}  paths",
            "id", "time", "host", "tags", "size", "added"
        )?;
        for Row {
            id,
            record: r,
            cost,
        } in &self.rows
        {
            let alone = cost
                .as_ref()
                .map(|c| format!("  {:>9}", human_bytes(c.exclusive_stored_bytes)))
                .unwrap_or_default();
            writeln!(
                f,
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
        if self.sizes {
            writeln!(
                f,
                "added: stored on disk by its ingest; exclusive: on disk, held by no other \
                 snapshot (what forget of it alone, then gc, would free)"
            )?;
        }
        Ok(())
    }
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
    show(&outcome, json)?;
    if outcome.failed.is_empty() {
        return Ok(0);
    }
    let n = outcome.failed.len();
    eprintln!("dedup: {n} files or folders could not be restored:");
    for f in &outcome.failed {
        eprintln!("  {f}");
    }
    Ok(1)
}
