//! `shard list|add|set-weight|remove` and `rebalance`.

use std::io::Write;

use dedup::ring::ShardId;
use dedup::units::human_bytes;
use dedup::Mode;

use crate::context::{print_json, show, Code, Context};

/// `dedup shard list`.
pub fn shard_list(cx: &Context, json: bool) -> Code {
    let shards = cx.reader()?.report()?.shards;
    if json {
        print_json(&shards)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for s in shards {
        write!(out, "{s}")?;
    }
    Ok(0)
}

/// What `shard add` and `shard set-weight` did.
#[derive(serde::Serialize)]
struct ShardSet {
    shard: ShardId,
    /// Where the new shard is (absent for `set-weight`).
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    weight: u32,
}

impl std::fmt::Display for ShardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (id, weight) = (self.shard, self.weight);
        match &self.location {
            Some(at) => writeln!(
                f,
                "added shard {id} at {at} (run `dedup rebalance` to move chunks onto it)"
            ),
            None => writeln!(
                f,
                "shard {id} now has weight {weight} (run `dedup rebalance` to move chunks)"
            ),
        }
    }
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
    let set = ShardSet {
        shard: id,
        location: Some(shown),
        weight,
    };
    show(&set, json)?;
    Ok(0)
}

/// `dedup shard set-weight`.
pub fn shard_set_weight(cx: &Context, id: u32, weight: u32, json: bool) -> Code {
    cx.writer()?.set_shard_weight(ShardId(id), weight)?;
    let set = ShardSet {
        shard: ShardId(id),
        location: None,
        weight,
    };
    show(&set, json)?;
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
